// verify() at the store level, without seals: a clean log passes with the root of its
// bodies; each way of tampering that the file alone can show is reported with its class
// (verify.cpp's header lists them) at the seq where it happens, in one chunk or many.
// The append-only triggers are dropped through handle() to play the attacker.
//
// What the file alone cannot show — a record rewritten together with every tree node
// above it, a tail cut where no tree node was left behind — passes here, and must: that
// is what seals and saved checkpoints are for. Those cases are asserted as passing, with
// a saved checkpoint shown to catch them; the tamper suite plays them against seals.
#include <sodium.h>

#include <algorithm>
#include <functional>

#include "../../../daemon/store/query_engine.hpp"
#include "../../../seal/note.hpp"
#include "store_test.hpp"

using namespace store_test;

TestSuite(store_verify, .timeout = 60);

namespace {

proto::VerifyReport verify_ok(Store& s, const VerifyOptions& opt = {}) {
  auto v = s.verify(opt);
  cr_assert(v.ok(), "verify: %s", v.ok() ? "" : v.error().message.c_str());
  return v.value();
}

// Verify fails with class `cls` at `seq`, its reason containing `words`.
proto::VerifyReport expect_failure(Store& s, const char* cls, uint64_t seq, const char* words,
                                   const VerifyOptions& opt = {}) {
  auto v = verify_ok(s, opt);
  cr_assert_not(v.valid, "verify passed a damaged log (expected %s at %llu)", cls,
                static_cast<unsigned long long>(seq));
  cr_assert_eq(v.failure, cls, "class %s, reason: %s", v.failure.c_str(), v.reason.c_str());
  cr_assert(v.break_seq.has_value());
  cr_assert_eq(*v.break_seq, seq, "break at %llu, reason %s", static_cast<unsigned long long>(*v.break_seq),
               v.reason.c_str());
  cr_assert(v.reason.rfind("seq " + std::to_string(seq) + ": ", 0) == 0, "%s", v.reason.c_str());
  cr_assert(v.reason.find(words) != std::string::npos, "reason '%s' lacks '%s'", v.reason.c_str(), words);
  return v;
}

// A key and signed checkpoints for VerifyOptions, as an operator would have saved them.
struct Signer {
  std::string origin = "cairn/unit-test";
  seal::PublicKey pk{};
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  Signer() {
    cr_assert_geq(sodium_init(), 0);
    crypto_sign_keypair(pk.data(), sk);
  }
  std::string checkpoint(uint64_t size, const Hash& root) const {
    std::string text = seal::checkpoint_text(origin, size, root);
    return seal::format_note(text, origin, pk, seal::sign(sk, text));
  }
  VerifyOptions opts(std::vector<std::string> checkpoints) const {
    VerifyOptions o;
    o.key = seal::VKey{origin, pk};
    o.checkpoints = std::move(checkpoints);
    return o;
  }
};

// Rewrites record `seq` as an event of `actor` with a correct leaf hash and matching
// columns: everything about the row is consistent, only the tree above it is not.
void rewrite_row(Store& s, uint64_t seq, const char* actor) {
  auto e = event("UserLogin", actor);
  e.severity = static_cast<uint8_t>((seq - 1) % 8);
  auto tr = trusted(1000 + static_cast<int64_t>(seq) - 1);
  std::string body = proto::event_canonical_body(e, tr);
  Hash h = seal::leaf_hash(body);
  exec(s.handle(), "DROP TRIGGER IF EXISTS events_no_update");
  set_blob(s.handle(), seq, "body", body.data(), body.size());
  set_blob(s.handle(), seq, "hash", h.data(), 32);
  std::string q = "UPDATE events SET actor = '" + std::string(actor) + "', type = 'UserLogin' WHERE seq = " +
                  std::to_string(seq);
  exec(s.handle(), q.c_str());
}

// Makes the events_type index lose record `seq` while the schema still calls it a plain
// index: built as a partial index, then its definition rewritten with writable_schema.
// `cairn query --type` then misses the record (the hidden-row attack).
void drop_from_type_index(const std::string& path, uint64_t seq) {
  sqlite3* db = nullptr;
  cr_assert_eq(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string plain = sql_text(db, "SELECT sql FROM sqlite_schema WHERE name = 'events_type'");
  cr_assert_eq(plain, "CREATE INDEX events_type ON events(type)");
  std::string q = "DROP INDEX events_type; CREATE INDEX events_type ON events(type) WHERE seq <> " +
                  std::to_string(seq) + "; PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = '" + plain +
                  "' WHERE name = 'events_type'; PRAGMA writable_schema = OFF;";
  exec(db, q.c_str());
  sqlite3_close(db);
}

std::vector<uint64_t> seqs_of_type(Store& s, const char* type) {
  proto::QuerySpec q;
  q.type = type;
  q.limit = 1000;
  auto p = s.query(q);
  cr_assert(p.ok(), "%s", p.ok() ? "" : p.error().message.c_str());
  std::vector<uint64_t> out;
  for (const auto& e : p.value().events) out.push_back(e.seq);
  return out;
}

bool contains(const std::vector<uint64_t>& v, uint64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

Test(store_verify, a_clean_log_passes_and_reports_its_head_and_the_root_of_its_bodies) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 50);
  proto::Event e = event("Full", "carol", "idem-key-0003");
  e.action = "a";
  e.target = "t";
  e.time = 1;
  e.message = "hello";
  e.outcome = proto::Outcome::success;
  cr_assert(s->begin().ok());
  append(*s, e, 9999);
  cr_assert(s->commit().ok());
  auto v = verify_ok(*s);
  cr_assert(v.valid, "%s", v.reason.c_str());
  cr_assert_eq(v.failure, "");
  cr_assert_eq(v.checked, 51u);
  cr_assert_eq(v.head_seq, 51u);
  cr_assert(v.head_hash == s->head_hash());
  cr_assert(v.root == ref_root(leaves_on_disk(s->handle()), 51), "the root of the bodies on disk");
  cr_assert(v.root == s->root());
  cr_assert_not(v.break_seq.has_value());
  cr_assert_not(v.keyed, "no key given: nothing was checked against one");
  cr_assert_eq(v.epochs, 0u);
  cr_assert_eq(v.sealed_seq, 0u);
  cr_assert_eq(v.unsealed, 51u, "no seal: every record is attested by nothing yet");
}

Test(store_verify, an_empty_database_is_valid_with_the_empty_root) {
  TempDb t;
  auto s = open_store(t.path);
  auto v = verify_ok(*s);
  cr_assert(v.valid);
  cr_assert_eq(v.checked, 0u);
  cr_assert_eq(v.head_seq, 0u);
  cr_assert(v.head_hash == kGenesis);
  cr_assert(v.root == seal::empty_root());
}

Test(store_verify, a_tampered_body_is_altered_at_its_seq) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 20);
  exec(s->handle(), "DROP TRIGGER events_no_update");
  exec(s->handle(), "UPDATE events SET body = CAST(replace(CAST(body AS TEXT), 'bob', 'eve') AS BLOB) "
                    "WHERE seq = 13");
  auto v = expect_failure(*s, "altered", 13, "stored leaf hash is not the hash of the body");
  cr_assert_eq(v.checked, 12u, "rows verified before the break");
}

Test(store_verify, a_stored_hash_changed_alone_is_altered) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 5);
  exec(s->handle(), "DROP TRIGGER events_no_update");
  exec(s->handle(), "UPDATE events SET hash = zeroblob(32) WHERE seq = 2");
  expect_failure(*s, "altered", 2, "stored leaf hash");
}

Test(store_verify, a_row_rewritten_with_its_recomputed_leaf_hash_is_caught_by_the_tree) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 10);
  // Row 5 (leaf 4) is consistent in itself; node (1,2) over leaves 4 and 5, written when
  // seq 6 was appended, is not: the stored tree is wrong from size 6 on.
  rewrite_row(*s, 5, "eve");
  expect_failure(*s, "tree", 6, "differs from the recomputed one");
}

Test(store_verify, a_row_rewritten_with_every_node_above_it_passes_until_a_checkpoint_is_given) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 10);
  Hash before = s->root();
  Signer key;
  std::string saved = key.checkpoint(10, before);
  rewrite_row(*s, 5, "eve");
  rebuild_tree(s->handle());
  // The file alone is self-consistent again: that is the honest answer without a seal.
  auto v = verify_ok(*s);
  cr_assert(v.valid, "%s", v.reason.c_str());
  cr_assert(v.root != before, "but its root is not the one the log had");
  cr_assert(v.root == ref_root(leaves_on_disk(s->handle()), 10));
  // An operator who kept a checkpoint of the log sees the rewrite.
  expect_failure(*s, "consistency", 10, "do not have the saved checkpoint's root", key.opts({saved}));
}

Test(store_verify, a_deleted_row_is_a_gap) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 5);
  exec(s->handle(), "DROP TRIGGER events_no_delete");
  exec(s->handle(), "DELETE FROM events WHERE seq = 3");
  auto v = expect_failure(*s, "gap", 4, "expected seq 3 after 2");
  cr_assert_eq(v.checked, 2u);
}

Test(store_verify, a_deleted_first_row_is_a_gap) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 3);
  exec(s->handle(), "DROP TRIGGER events_no_delete");
  exec(s->handle(), "DELETE FROM events WHERE seq = 1");
  expect_failure(*s, "gap", 2, "expected seq 1");
}

Test(store_verify, a_deleted_tail_with_tree_nodes_left_behind_is_tree) {
  // 10 records; record 10 (leaf 9) completed node (1,4), record 8 completed (1,3), (2,1)
  // and (3,0). Cutting 1 to 3 records off the tail leaves nodes past the last record.
  for (uint64_t cut = 1; cut <= 3; ++cut) {
    TempDb t;
    auto s = open_store(t.path);
    fill(*s, 10);
    exec(s->handle(), "DROP TRIGGER events_no_delete");
    std::string q = "DELETE FROM events WHERE seq > " + std::to_string(10 - cut);
    exec(s->handle(), q.c_str());
    auto v = expect_failure(*s, "tree", 10 - cut + 1, "nodes past the last record");
    cr_assert_eq(v.checked, 10 - cut, "every remaining record was checked");
  }
}

Test(store_verify, a_deleted_tail_that_left_no_node_passes_until_a_checkpoint_is_given) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 9);  // record 9 (leaf 8) completes no node
  Signer key;
  std::string saved = key.checkpoint(9, s->root());
  exec(s->handle(), "DROP TRIGGER events_no_delete");
  exec(s->handle(), "DELETE FROM events WHERE seq = 9");
  auto v = verify_ok(*s);
  cr_assert(v.valid, "%s", v.reason.c_str());
  cr_assert_eq(v.head_seq, 8u);
  expect_failure(*s, "consistency", 8, "covers 9 records but the log has only 8", key.opts({saved}));
}

Test(store_verify, each_indexed_column_that_disagrees_with_the_body_is_named) {
  struct Case {
    const char* column;
    const char* set;
  } cases[] = {
      {"type", "type = 'Other'"},       {"severity", "severity = 0"},
      {"actor", "actor = 'mallory'"},   {"actor", "actor = NULL"},
      {"action", "action = 'x'"},       {"target", "target = 'x'"},
      {"outcome", "outcome = 1"},       {"time", "time = 5"},
      {"received", "received = 1"},     {"pid", "pid = 1"},
      {"uid", "uid = 0"},               {"gid", "gid = 0"},
      {"comm", "comm = 'evil'"},        {"idem", "idem = x'0102030405060708'"},
  };
  for (const Case& c : cases) {
    TempDb t;
    auto s = open_store(t.path);
    fill(*s, 5);
    exec(s->handle(), "DROP TRIGGER events_no_update");
    std::string sql = std::string("UPDATE events SET ") + c.set + " WHERE seq = 4";
    exec(s->handle(), sql.c_str());
    auto v = expect_failure(*s, "column", 4, (std::string("column ") + c.column + " differs from the body").c_str());
    cr_assert_eq(v.checked, 3u);
  }
}

Test(store_verify, a_column_stored_as_a_blob_with_the_same_bytes_is_a_hidden_row) {
  // Same bytes, another SQLite type: equal to the body byte for byte, but `type = ?`
  // never matches a BLOB, so `cairn query --type AuthFailure` would skip the record.
  struct Case {
    const char* column;
    const char* set;
  } cases[] = {
      {"type", "type = CAST(type AS BLOB)"},
      {"actor", "actor = CAST(actor AS BLOB)"},
      {"comm", "comm = CAST(comm AS BLOB)"},
      {"severity", "severity = CAST(severity AS BLOB)"},
      {"received", "received = CAST(received AS BLOB)"},
  };
  for (const Case& c : cases) {
    TempDb t;
    auto s = open_store(t.path);
    fill(*s, 6);  // seq 4 is event 3: AuthFailure, alice
    cr_assert(contains(seqs_of_type(*s, "AuthFailure"), 4));
    exec(s->handle(), "DROP TRIGGER events_no_update");
    std::string sql = std::string("UPDATE events SET ") + c.set + " WHERE seq = 4";
    exec(s->handle(), sql.c_str());
    cr_assert_eq(sql_text(s->handle(), (std::string("SELECT typeof(") + c.column + ") FROM events WHERE seq = 4").c_str()),
                 "blob");
    if (std::string(c.column) == "type")
      cr_assert_not(contains(seqs_of_type(*s, "AuthFailure"), 4), "the attack hides the record from queries");
    expect_failure(*s, "hidden_row", 4,
                   (std::string("column ") + c.column + " is stored with another SQLite type").c_str());
  }
}

Test(store_verify, a_record_missing_from_the_type_index_is_a_hidden_row) {
  TempDb t;
  { fill(*open_store(t.path), 9); }
  drop_from_type_index(t.path, 4);
  auto s = open_store(t.path, OpenMode::readonly);
  auto found = seqs_of_type(*s, "AuthFailure");
  cr_assert_not(contains(found, 4), "the attack hides seq 4 from cairn query --type");
  cr_assert(contains(found, 7));
  auto v = verify_ok(*s);
  cr_assert_not(v.valid, "verify passed a log whose index hides a record");
  cr_assert_eq(v.failure, "hidden_row", "%s", v.reason.c_str());
  cr_assert(v.reason.find("index events_type does not hold every record") != std::string::npos, "%s",
            v.reason.c_str());
}

Test(store_verify, a_partial_or_dropped_index_is_a_hidden_row) {
  for (const char* sql : {"DROP INDEX events_actor; CREATE INDEX events_actor ON events(actor) WHERE seq <> 2",
                          "DROP INDEX events_idem", "DROP INDEX events_type",
                          // An index cairn does not make: a query on received could pick it.
                          "CREATE INDEX events_received ON events(received) WHERE seq <> 2",
                          "DROP INDEX events_idem; CREATE UNIQUE INDEX events_idem ON events(uid, idem) "
                          "WHERE idem IS NOT NULL AND seq <> 7"}) {
    TempDb t;
    {
      auto w = open_store(t.path);
      fill(*w, 5);
      cr_assert(w->begin().ok());
      for (int i = 0; i < 3; ++i) append(*w, event("Keyed", "k", "key-" + std::to_string(i)), 2000 + i);  // seq 6..8
      cr_assert(w->commit().ok());
    }
    exec_on_file(t.path, sql);
    auto s = open_store(t.path, OpenMode::readonly);
    auto v = verify_ok(*s);
    cr_assert_not(v.valid, "verify passed after: %s", sql);
    cr_assert_eq(v.failure, "hidden_row", "%s: %s", sql, v.reason.c_str());
  }
}

Test(store_verify, an_edited_query_index_is_an_index_failure_and_an_intact_one_passes) {
  TempDb t;
  {
    auto w = open_store(t.path);
    fill(*w, 9);
    cr_assert(ensure_query_indexes(*w).ok());
    fill(*w, 4);  // counted by the trigger from here on
  }
  cr_assert(verify_ok(*open_store(t.path, OpenMode::readonly)).valid, "the maintained index agrees");
  for (const char* sql : {"UPDATE type_counts SET n = n - 1 WHERE type = 'AuthFailure'",
                          "DELETE FROM type_counts WHERE type = 'AuthFailure'",
                          "UPDATE time_seq SET hi = hi - 1 WHERE bucket = (SELECT MAX(bucket) FROM time_seq)",
                          "INSERT INTO time_seq (bucket, lo, hi) VALUES (1, 1, 1)"}) {
    TempDb c;
    std::filesystem::copy_file(t.path, c.path);
    exec_on_file(c.path, sql);
    auto v = verify_ok(*open_store(c.path, OpenMode::readonly));
    cr_assert_not(v.valid, "verify passed after: %s", sql);
    cr_assert_eq(v.failure, "index", "%s: %s", sql, v.reason.c_str());
    cr_assert_eq(v.checked, 13u, "every record was checked before: %s", v.reason.c_str());
    cr_assert(v.reason.find("query index: ") == 0, "%s", v.reason.c_str());
  }
}

Test(store_verify, saved_checkpoints_and_freshness_are_checked_without_seals) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 12);
  Signer key;
  Hash r7 = s->root_at(7).value();
  // Checkpoints the log extends: counted.
  auto v = verify_ok(*s, key.opts({key.checkpoint(7, r7), key.checkpoint(12, s->root())}));
  cr_assert(v.valid, "%s", v.reason.c_str());
  cr_assert(v.keyed);
  cr_assert_eq(v.checkpoints, 2u);
  // A fork: the same size, another root.
  Hash other = r7;
  other[0] ^= 1;
  expect_failure(*s, "consistency", 7, "saved checkpoint's root", key.opts({key.checkpoint(7, other)}));
  // A checkpoint beyond the log: truncated or rolled back.
  expect_failure(*s, "consistency", 12, "covers 20 records", key.opts({key.checkpoint(20, r7)}));
  // Not a signed note, or another log's.
  v = verify_ok(*s, key.opts({"not a note"}));
  cr_assert_eq(v.failure, "checkpoint", "%s", v.reason.c_str());
  Signer stranger;
  stranger.origin = "cairn/another-host";
  v = verify_ok(*s, key.opts({stranger.checkpoint(7, r7)}));
  cr_assert_eq(v.failure, "checkpoint", "%s", v.reason.c_str());
  // --fresh on a log that has never been sealed.
  VerifyOptions fresh;
  fresh.fresh_ns = 60'000'000'000;
  fresh.now_ns = 2'000'000'000;
  v = verify_ok(*s, fresh);
  cr_assert_eq(v.failure, "stale", "%s", v.reason.c_str());
}

// The same log verified in chunks of 7 records and in one chunk must give the same
// verdict: class, seq, root, head. A verify that pins the WAL less must not see less.
Test(store_verify, chunked_verify_gives_the_same_verdict_and_root_as_one_chunk) {
  struct Case {
    const char* name;
    std::function<void(Store&, const std::string&)> tamper;
  } cases[] = {
      {"untouched", [](Store&, const std::string&) {}},
      {"altered body", [](Store& s, const std::string&) {
         exec(s.handle(), "DROP TRIGGER events_no_update; UPDATE events SET body = body || x'00' WHERE seq = 50");
       }},
      {"rewritten row", [](Store& s, const std::string&) { rewrite_row(s, 37, "eve"); }},
      {"rewritten row at a chunk edge", [](Store& s, const std::string&) { rewrite_row(s, 63, "eve"); }},
      {"gap", [](Store& s, const std::string&) {
         exec(s.handle(), "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = 71");
       }},
      {"column", [](Store& s, const std::string&) {
         exec(s.handle(), "DROP TRIGGER events_no_update; UPDATE events SET actor = 'x' WHERE seq = 88");
       }},
      {"blob type", [](Store& s, const std::string&) {
         exec(s.handle(), "DROP TRIGGER events_no_update; UPDATE events SET type = CAST(type AS BLOB) WHERE seq = 29");
       }},
      {"deleted tail", [](Store& s, const std::string&) {
         exec(s.handle(), "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq > 93");
       }},
      {"tree node", [](Store& s, const std::string&) {  // leaves 40..43, written by seq 44
         std::string q = "DROP TRIGGER tree_no_update; UPDATE tree SET hash = zeroblob(32) WHERE pos = " +
                         std::to_string(seal::postorder(2, 10));
         exec(s.handle(), q.c_str());
       }},
      {"missing tree node", [](Store& s, const std::string&) {  // leaves 26, 27, written by seq 28
         std::string q = "DROP TRIGGER tree_no_delete; DELETE FROM tree WHERE pos = " +
                         std::to_string(seal::postorder(1, 13));
         exec(s.handle(), q.c_str());
       }},
      {"extra tree node", [](Store& s, const std::string&) {  // a leaf's position: never a node's
         std::string q = "INSERT INTO tree (pos, hash) VALUES (" + std::to_string(seal::postorder(0, 33)) +
                         ", zeroblob(32))";
         exec(s.handle(), q.c_str());
       }},
  };
  for (const Case& c : cases) {
    TempDb t;
    auto s = open_store(t.path);
    fill(*s, 100);
    c.tamper(*s, t.path);
    VerifyOptions one, seven, single;
    seven.chunk_rows = 7;
    single.chunk_rows = 1;
    auto a = verify_ok(*s, one);
    for (const VerifyOptions* o : {&seven, &single}) {
      auto b = verify_ok(*s, *o);
      cr_assert_eq(a.valid, b.valid, "%s, chunks of %llu", c.name, static_cast<unsigned long long>(o->chunk_rows));
      cr_assert_eq(a.failure, b.failure, "%s: %s vs %s (%s / %s)", c.name, a.failure.c_str(), b.failure.c_str(),
                   a.reason.c_str(), b.reason.c_str());
      cr_assert(a.break_seq == b.break_seq, "%s: break %llu vs %llu (%s / %s)", c.name,
                static_cast<unsigned long long>(a.break_seq.value_or(0)),
                static_cast<unsigned long long>(b.break_seq.value_or(0)), a.reason.c_str(), b.reason.c_str());
      cr_assert_eq(a.reason, b.reason, "%s", c.name);
      // How far the walk got before it stopped (head_seq, checked) may differ: tree nodes
      // are compared at the end of each chunk, after its records.
      if (a.valid) {
        cr_assert_eq(a.head_seq, b.head_seq, "%s", c.name);
        cr_assert_eq(a.checked, b.checked, "%s", c.name);
        cr_assert(a.root == b.root, "%s: roots differ", c.name);
        cr_assert(a.head_hash == b.head_hash, "%s", c.name);
      }
    }
    if (std::string(c.name) == "untouched") {
      cr_assert(a.valid, "%s", a.reason.c_str());
      cr_assert(a.root == ref_root(leaves_on_disk(s->handle()), 100));
    } else {
      cr_assert_not(a.valid, "%s passed verify", c.name);
    }
  }
}
