// The writer's side of the store: schema and pragmas, leaf hashes and the stored Merkle
// tree, idempotency, rollback and failed inserts, reopen, append-only triggers, and who
// may open what. Hashes are recomputed from the bodies on disk with libsodium's SHA-256
// (the store uses libcrypto's), never taken from the store's own word.
#include <sodium.h>
#include <sys/stat.h>

#include <cctype>
#include <cstring>

#include "../../../seal/record.hpp"
#include "store_test.hpp"

using namespace store_test;

TestSuite(store_chain, .timeout = 60);

Test(store_chain, open_creates_the_schema_in_wal_mode_with_synchronous_full) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert_eq(sql_text(s->handle(), "PRAGMA journal_mode"), "wal");
  cr_assert_eq(sql_text(s->handle(), "PRAGMA synchronous"), "2", "2 is FULL");
  cr_assert_eq(sql_text(s->handle(), "SELECT value FROM meta WHERE key='schema_version'"), "5");
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM meta WHERE key='genesis'"), "0",
               "version 2 has no chain genesis");
  cr_assert_neq(sql_text(s->handle(), "SELECT value FROM meta WHERE key='created'"), "");
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM meta WHERE key IN ('origin', 'first_key')"), "0",
               "the store alone makes no key: cairnd does, when sealing is on");
  // Schema 4: no index on received, and the idem index leaves keyless events out (each
  // index is a page in every commit).
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM sqlite_schema WHERE name='events_received'"), "0");
  cr_assert(sql_text(s->handle(), "SELECT sql FROM sqlite_schema WHERE name='events_idem'").find("WHERE idem IS NOT NULL") !=
            std::string::npos);
  for (const char* name : {"events", "events_type", "events_actor",
                           "events_idem", "events_no_update", "events_no_delete", "tree", "tree_no_update",
                           "tree_no_delete"}) {
    std::string q = std::string("SELECT count(*) FROM sqlite_schema WHERE name='") + name + "'";
    cr_assert_eq(sql_text(s->handle(), q.c_str()), "1", "schema object %s missing", name);
  }
  cr_assert_eq(s->head_seq(), 0u);
  cr_assert(s->head_hash() == kGenesis);
  cr_assert(s->root() == sodium_sha256(""), "the empty tree's root is SHA-256 of nothing");
}

Test(store_chain, leaf_and_node_hashes_are_sha256_with_the_rfc6962_prefixes) {
  // Second path: libsodium's SHA-256 over the spelled-out concatenations.
  const unsigned char leaf_in[] = {0x00, 'b', 'o', 'd', 'y'};
  Hash want;
  crypto_hash_sha256(want.data(), leaf_in, sizeof leaf_in);
  cr_assert(seal::leaf_hash("body") == want, "leaf_hash differs from SHA-256(0x00 || body)");
  Hash l = seal::leaf_hash("l"), r = seal::leaf_hash("r");
  unsigned char node_in[65];
  node_in[0] = 0x01;
  std::memcpy(node_in + 1, l.data(), 32);
  std::memcpy(node_in + 33, r.data(), 32);
  crypto_hash_sha256(want.data(), node_in, sizeof node_in);
  cr_assert(seal::node_hash(l, r) == want, "node_hash differs from SHA-256(0x01 || left || right)");
  cr_assert(seal::leaf_hash("") != seal::empty_root(), "a leaf is never the empty tree");
}

Test(store_chain, appends_get_seqs_1_2_3_and_the_stored_leaves_and_node_are_rfc6962) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(s->begin().ok());
  std::string bodies[4];
  for (uint64_t i = 1; i <= 3; ++i) {
    auto e = event("UserLogin", "alice");
    auto tr = trusted(static_cast<int64_t>(i));
    bodies[i] = proto::event_canonical_body(e, tr);
    auto r = s->append(e, tr, bodies[i]);
    cr_assert(r.ok());
    cr_assert_eq(r.value().seq, i);
    cr_assert_not(r.value().duplicate);
  }
  cr_assert(s->commit().ok());
  // Compare with what is stored on disk, not with what the store says.
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(s->handle(), "SELECT seq, body, hash FROM events ORDER BY seq", -1, &st, nullptr);
  uint64_t n = 0;
  Hash leaf[4];
  while (sqlite3_step(st) == SQLITE_ROW) {
    ++n;
    cr_assert_eq(static_cast<uint64_t>(sqlite3_column_int64(st, 0)), n);
    std::string body(static_cast<const char*>(sqlite3_column_blob(st, 1)),
                     static_cast<size_t>(sqlite3_column_bytes(st, 1)));
    cr_assert(body == bodies[n], "stored body of seq %llu is the canonical body",
              static_cast<unsigned long long>(n));
    leaf[n] = ref_leaf(body);
    cr_assert_eq(sqlite3_column_bytes(st, 2), 32);
    cr_assert_eq(memcmp(sqlite3_column_blob(st, 2), leaf[n].data(), 32), 0, "hash of seq %llu",
                 static_cast<unsigned long long>(n));
  }
  sqlite3_finalize(st);
  cr_assert_eq(n, 3u);
  // Three leaves complete one interior node: (1,0) over seqs 1 and 2, at position 2.
  Hash n12 = ref_node(leaf[1], leaf[2]);
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM tree"), "1");
  cr_assert_eq(sql_text(s->handle(), "SELECT pos FROM tree"), "2");
  std::string want = seal::hex(n12);
  for (char& c : want) c = static_cast<char>(toupper(c));
  cr_assert_eq(sql_text(s->handle(), "SELECT hex(hash) FROM tree WHERE pos = 2"), want);
  cr_assert(s->root() == ref_node(n12, leaf[3]), "root of 3 = H(H(1, 2), 3)");
  cr_assert(s->head_hash() == leaf[3], "head is the last leaf hash");
}

Test(store_chain, the_tree_holds_n_minus_popcount_n_nodes_and_its_root_is_rfc6962_at_every_size) {
  TempDb t;
  auto s = open_store(t.path);
  // Transactions of 1, 2, 3 ... records: the tree must not depend on how appends batch.
  uint64_t n = 0;
  for (int batch = 1; n < 40; ++batch) {
    cr_assert(s->begin().ok());
    for (int i = 0; i < batch && n < 40; ++i, ++n) append(*s, event("A", "x"), static_cast<int64_t>(n));
    cr_assert(s->commit().ok());
    auto leaves = leaves_on_disk(s->handle());
    cr_assert_eq(leaves.size(), n);
    cr_assert(s->root() == ref_root(leaves, n), "root after %llu records", static_cast<unsigned long long>(n));
    cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM tree"), std::to_string(n - std::popcount(n)));
  }
}

Test(store_chain, indexed_columns_are_taken_from_event_and_trusted) {
  TempDb t;
  auto s = open_store(t.path);
  proto::Event e = event("FileRead", "bob", "idem-key-0001");
  e.severity = 3;
  e.action = "read";
  e.target = "/etc/shadow";
  e.outcome = proto::Outcome::failure;
  e.time = -5;
  proto::Trusted tr{123456789, 42, 1001, 1002, "sshd"};
  cr_assert(s->begin().ok());
  cr_assert(s->append(e, tr, proto::event_canonical_body(e, tr)).ok());
  cr_assert(s->commit().ok());
  cr_assert_eq(sql_text(s->handle(),
                        "SELECT received||'|'||time||'|'||type||'|'||severity||'|'||actor||'|'||"
                        "action||'|'||target||'|'||outcome||'|'||pid||'|'||uid||'|'||gid||'|'||"
                        "comm||'|'||hex(idem) FROM events"),
               "123456789|-5|FileRead|3|bob|read|/etc/shadow|2|42|1001|1002|sshd|" +
                   std::string("6964656D2D6B65792D30303031"));
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM events WHERE actor IS NULL OR time IS NULL"), "0");
}

Test(store_chain, absent_optional_fields_are_stored_as_null) {
  TempDb t;
  auto s = open_store(t.path);
  proto::Event e;
  e.type = "Boot";
  cr_assert(s->begin().ok());
  append(*s, e, 1);
  cr_assert(s->commit().ok());
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM events WHERE actor IS NULL AND "
                                     "action IS NULL AND target IS NULL AND time IS NULL AND "
                                     "idem IS NULL"), "1");
}

Test(store_chain, duplicate_idem_returns_the_original_seq_and_stores_nothing) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(s->begin().ok());
  auto a = append(*s, event("A", "x", "idem-key-0001"), 1);
  auto b = append(*s, event("B", "y"), 2);
  Hash head = s->head_hash();
  Hash root = s->root();
  auto c = append(*s, event("A", "x", "idem-key-0001"), 3);
  cr_assert(s->commit().ok());
  cr_assert_eq(a.seq, 1u);
  cr_assert_not(a.duplicate);
  cr_assert_eq(b.seq, 2u);
  cr_assert(c.duplicate);
  cr_assert_eq(c.seq, 1u);
  cr_assert_eq(s->head_seq(), 2u);
  cr_assert(s->head_hash() == head, "a duplicate does not move the head");
  cr_assert(s->root() == root, "nor the tree");
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM tree"), "1");
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM events"), "2");
  auto found = s->seq_for_idem(1000, "idem-key-0001");
  cr_assert(found.ok() && found.value() && *found.value() == 1u);
  auto missing = s->seq_for_idem(1000, "idem-key-9999");
  cr_assert(missing.ok() && !missing.value());
}

Test(store_chain, duplicate_idem_is_found_after_reopen) {
  TempDb t;
  {
    auto s = open_store(t.path);
    cr_assert(s->begin().ok());
    append(*s, event("A", "x"), 1);
    append(*s, event("A", "x", "idem-key-0002"), 2);
    cr_assert(s->commit().ok());
  }
  auto s = open_store(t.path);
  cr_assert(s->begin().ok());
  auto r = append(*s, event("A", "x", "idem-key-0002"), 3);
  cr_assert(s->commit().ok());
  cr_assert(r.duplicate);
  cr_assert_eq(r.seq, 2u);
  cr_assert_eq(s->head_seq(), 2u);
}

namespace {
AppendResult append_as(Store& s, const proto::Event& e, uint32_t uid, int64_t received) {
  proto::Trusted t{received, 10 + uid, uid, 100, "test"};
  auto r = s.append(e, t, proto::event_canonical_body(e, t));
  cr_assert(r.ok(), "append: %s", r.ok() ? "" : r.error().message.c_str());
  return r.value();
}
}  // namespace

// Issue 11: a user who sent a decoy under root's next key made root's event a
// "duplicate" that was never stored.
Test(store_chain, idem_keys_are_scoped_per_uid) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(s->begin().ok());
  auto decoy = append_as(*s, event("Decoy", "mallory", "order-000042"), 1001, 1);
  auto real = append_as(*s, event("TokenRevoked", "root", "order-000042"), 0, 2);
  cr_assert(s->commit().ok());
  cr_assert_not(decoy.duplicate);
  cr_assert_not(real.duplicate, "another uid's key does not make root's event a duplicate");
  cr_assert_not(real.conflict);
  cr_assert_eq(real.seq, 2u);
  cr_assert_eq(sql_text(s->handle(), "SELECT type FROM events WHERE seq = 2"), "TokenRevoked");
  auto mine = s->seq_for_idem(0, "order-000042");
  cr_assert(mine.ok() && mine.value() && *mine.value() == 2u);
}

Test(store_chain, the_same_key_with_a_different_event_is_a_conflict_and_stores_nothing) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(s->begin().ok());
  auto a = append_as(*s, event("A", "x", "idem-key-0003"), 1000, 1);
  // A resend: same event, new pid and receive time (the stamped fields).
  proto::Trusted later{99, 4242, 1000, 100, "other"};
  auto e = event("A", "x", "idem-key-0003");
  auto resend = s->append(e, later, proto::event_canonical_body(e, later));
  cr_assert(resend.ok());
  cr_assert(resend.value().duplicate);
  cr_assert_not(resend.value().conflict, "a resend differs only in what cairnd stamps");
  auto b = append_as(*s, event("A", "y", "idem-key-0003"), 1000, 3);
  cr_assert(s->commit().ok());
  cr_assert(b.conflict, "another actor under the same key is a conflict");
  cr_assert_eq(b.seq, a.seq, "the conflict names the original");
  cr_assert_eq(s->head_seq(), 1u);
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM events"), "1");
}

// A version 2 file (idem unique across the host) is converted when the writer opens it:
// same rows, same hashes, keys now per uid; verify passes before and after.
Test(store_chain, a_version_2_database_is_converted_to_per_uid_idem_keys) {
  TempDb t;
  {
    auto s = open_store(t.path);
    cr_assert(s->begin().ok());
    append_as(*s, event("A", "x", "idem-key-0004"), 1000, 1);
    append_as(*s, event("B", "y"), 1001, 2);
    cr_assert(s->commit().ok());
    // Back to the version 2 layout: idem UNIQUE on the column, no events_idem.
    exec(s->handle(),
         "BEGIN; DROP INDEX events_idem; DROP TRIGGER events_no_update; DROP TRIGGER events_no_delete;"
         "CREATE TABLE ev2 (seq INTEGER PRIMARY KEY, received INTEGER NOT NULL, time INTEGER,"
         " type TEXT NOT NULL, severity INTEGER NOT NULL, actor TEXT, action TEXT, target TEXT,"
         " outcome INTEGER NOT NULL, pid INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,"
         " comm TEXT, idem BLOB UNIQUE, body BLOB NOT NULL, hash BLOB NOT NULL);"
         "INSERT INTO ev2 SELECT * FROM events; DROP TABLE events; ALTER TABLE ev2 RENAME TO events;"
         "CREATE INDEX events_type ON events(type); CREATE INDEX events_actor ON events(actor);"
         "CREATE INDEX events_received ON events(received);"
         "CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN SELECT RAISE(ABORT, 'no'); END;"
         "CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'no'); END;"
         "UPDATE meta SET value = 2 WHERE key = 'schema_version'; COMMIT;");
  }
  std::string hashes_before;
  {
    auto r = open_store(t.path, OpenMode::readonly);
    cr_assert_eq(r->schema_version(), 2);
    auto v = r->verify();
    cr_assert(v.ok() && v.value().valid, "a version 2 file verifies: %s",
              v.ok() ? v.value().reason.c_str() : v.error().message.c_str());
    hashes_before = sql_text(r->handle(), "SELECT group_concat(hex(hash)) FROM events");
  }
  auto s = open_store(t.path);
  cr_assert_eq(sql_text(s->handle(), "SELECT value FROM meta WHERE key='schema_version'"), "5",
               "converted through 3 to 4");
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM sqlite_schema WHERE name='events_received'"), "0");
  cr_assert_eq(sql_text(s->handle(), "SELECT group_concat(hex(hash)) FROM events"), hashes_before);
  cr_assert(s->begin().ok());
  auto other = append_as(*s, event("C", "z", "idem-key-0004"), 1001, 3);
  cr_assert(s->commit().ok());
  cr_assert_not(other.duplicate, "after the conversion the key is per uid");
  auto v = s->verify();
  cr_assert(v.ok() && v.value().valid, "%s", v.ok() ? v.value().reason.c_str() : v.error().message.c_str());
  cr_assert_eq(v.value().checked, 3u);
}

Test(store_chain, rollback_restores_the_head_from_disk) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 3);
  Hash h3 = s->head_hash();
  Hash r3 = s->root();
  cr_assert(s->begin().ok());
  append(*s, event("X", "y"), 99);
  append(*s, event("X", "y"), 100);
  cr_assert_eq(s->head_seq(), 5u);
  s->rollback();
  cr_assert_not(s->in_transaction());
  cr_assert_eq(s->head_seq(), 3u);
  cr_assert(s->head_hash() == h3);
  cr_assert(s->root() == r3, "the frontier is re-read too");
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM tree"), "1", "the rolled-back nodes are gone");
  cr_assert_eq(sql_text(s->handle(), "SELECT max(seq) FROM events"), "3");
  cr_assert(s->begin().ok());
  cr_assert_eq(append(*s, event("X", "y"), 101).seq, 4u, "seq 4 is reused after a rollback");
  cr_assert(s->commit().ok());
  cr_assert(s->root() == ref_root(leaves_on_disk(s->handle()), 4));
  auto v = s->verify();
  cr_assert(v.ok() && v.value().valid, "%s", v.ok() ? v.value().reason.c_str() : "");
}

Test(store_chain, a_failed_insert_leaves_the_head_where_it_was) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 2);
  Hash h2 = s->head_hash();
  Hash r2 = s->root();
  cr_assert(s->begin().ok());
  // Someone else took seq 3 inside our transaction: the store's insert must fail.
  exec(s->handle(),
       "INSERT INTO events (seq, received, type, severity, outcome, pid, uid, gid, body, hash) "
       "VALUES (3, 0, 'X', 6, 0, 0, 0, 0, x'80', zeroblob(32))");
  auto e = event("Y", "z");
  auto tr = trusted(5);
  auto r = s->append(e, tr, proto::event_canonical_body(e, tr));
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().sqlite_code, SQLITE_CONSTRAINT_PRIMARYKEY, "%s", r.error().message.c_str());
  cr_assert(r.error().message.find("SQLITE_CONSTRAINT_PRIMARYKEY") != std::string::npos, "%s",
            r.error().message.c_str());
  cr_assert_eq(s->head_seq(), 2u);
  cr_assert(s->head_hash() == h2);
  cr_assert(s->root() == r2);
  s->rollback();
  cr_assert_eq(s->head_seq(), 2u);
  cr_assert(s->root() == r2);
}

Test(store_chain, append_and_commit_outside_a_transaction_are_refused) {
  TempDb t;
  auto s = open_store(t.path);
  auto e = event("A", "x");
  auto tr = trusted(1);
  auto r = s->append(e, tr, proto::event_canonical_body(e, tr));
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().kind, StoreErrorKind::misuse);
  auto c = s->commit();
  cr_assert_not(c.ok());
  cr_assert_eq(c.error().kind, StoreErrorKind::misuse);
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM events"), "0");
}

Test(store_chain, head_and_frontier_survive_reopen_and_the_tree_continues) {
  TempDb t;
  Hash h, r;
  {
    auto s = open_store(t.path);
    fill(*s, 10);
    h = s->head_hash();
    r = s->root();
  }
  auto s = open_store(t.path);
  cr_assert_eq(s->head_seq(), 10u);
  cr_assert(s->head_hash() == h);
  cr_assert(s->root() == r, "the frontier is loaded from the stored nodes");
  cr_assert(s->begin().ok());
  auto e = event("A", "x");
  auto tr = trusted(77);
  std::string body = proto::event_canonical_body(e, tr);
  cr_assert_eq(s->append(e, tr, body).value().seq, 11u);
  cr_assert(s->commit().ok());
  cr_assert(s->head_hash() == ref_leaf(body));
  cr_assert(s->root() == ref_root(leaves_on_disk(s->handle()), 11), "seq 11 extends the reopened tree");
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM tree"), "8", "11 - popcount(11) nodes");
  auto v = s->verify();
  cr_assert(v.ok());
  cr_assert(v.value().valid, "%s", v.value().reason.c_str());
  cr_assert_eq(v.value().checked, 11u);
}

Test(store_chain, update_and_delete_are_refused_by_triggers) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 2);
  char* err = nullptr;
  cr_assert_neq(sqlite3_exec(s->handle(), "UPDATE events SET actor='mallory' WHERE seq=1", nullptr,
                             nullptr, &err), SQLITE_OK);
  cr_assert(err && std::string(err).find("append-only") != std::string::npos);
  sqlite3_free(err);
  err = nullptr;
  cr_assert_neq(sqlite3_exec(s->handle(), "DELETE FROM events WHERE seq=2", nullptr, nullptr, &err),
                SQLITE_OK);
  cr_assert(err && std::string(err).find("append-only") != std::string::npos);
  sqlite3_free(err);
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM events WHERE actor='mallory'"), "0");
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM events"), "2");
  // The tree too.
  err = nullptr;
  cr_assert_neq(sqlite3_exec(s->handle(), "UPDATE tree SET hash = zeroblob(32)", nullptr, nullptr, &err), SQLITE_OK);
  cr_assert(err && std::string(err).find("append-only") != std::string::npos);
  sqlite3_free(err);
  err = nullptr;
  cr_assert_neq(sqlite3_exec(s->handle(), "DELETE FROM tree", nullptr, nullptr, &err), SQLITE_OK);
  cr_assert(err && std::string(err).find("append-only") != std::string::npos);
  sqlite3_free(err);
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM tree"), "1");
}

Test(store_chain, a_tampered_head_is_refused_on_open_as_corrupt) {
  TempDb t;
  {
    auto s = open_store(t.path);
    fill(*s, 3);
    exec(s->handle(), "DROP TRIGGER events_no_update");
    exec(s->handle(), "UPDATE events SET body = x'80' WHERE seq = 3");
  }
  auto s = Store::open(t.path, OpenMode::writer);
  cr_assert_not(s.ok());
  cr_assert_eq(s.error().kind, StoreErrorKind::corrupt, "%s", s.error().message.c_str());
  // A reader still opens it, so that verify can say where the chain breaks.
  auto r = open_store(t.path, OpenMode::readonly);
  auto v = r->verify();
  cr_assert(v.ok());
  cr_assert_not(v.value().valid);
  cr_assert_eq(*v.value().break_seq, 3u);
  cr_assert_eq(v.value().failure, "altered", "%s", v.value().reason.c_str());
}

Test(store_chain, a_missing_frontier_node_is_refused_on_open_as_corrupt) {
  TempDb t;
  {
    auto s = open_store(t.path);
    fill(*s, 12);  // 12 = 8 + 4: the frontier is nodes (3,0) and (2,2)
    exec(s->handle(), "DROP TRIGGER tree_no_delete");
    std::string q = "DELETE FROM tree WHERE pos = " + std::to_string(seal::postorder(3, 0));
    exec(s->handle(), q.c_str());
  }
  auto s = Store::open(t.path, OpenMode::writer);
  cr_assert_not(s.ok(), "a writer extended a tree it cannot read");
  cr_assert_eq(s.error().kind, StoreErrorKind::corrupt, "%s", s.error().message.c_str());
  cr_assert(s.error().message.find("missing a node") != std::string::npos, "%s", s.error().message.c_str());
  auto v = open_store(t.path, OpenMode::readonly)->verify();
  cr_assert(v.ok());
  cr_assert_eq(v.value().failure, "tree", "%s", v.value().reason.c_str());
}

Test(store_chain, a_writer_refuses_a_log_whose_tail_was_cut_behind_its_tree_nodes) {
  // Records 9 and 10 may have been acked; node (1,4) that record 10 wrote is still there.
  // Opening would hand out seq 9 again (and fail for good at seq 10's node).
  for (const char* cut : {"DELETE FROM events WHERE seq > 8", "DELETE FROM events"}) {
    TempDb t;
    {
      auto s = open_store(t.path);
      fill(*s, 10);
      exec(s->handle(), "DROP TRIGGER events_no_delete");
      exec(s->handle(), cut);
    }
    auto s = Store::open(t.path, OpenMode::writer);
    cr_assert_not(s.ok(), "a writer opened after: %s", cut);
    cr_assert_eq(s.error().kind, StoreErrorKind::corrupt, "%s", s.error().message.c_str());
    cr_assert(s.error().message.find("records after it were removed") != std::string::npos, "%s",
              s.error().message.c_str());
    // A reader still opens it: verify is how the operator learns what happened.
    auto v = open_store(t.path, OpenMode::readonly)->verify();
    cr_assert(v.ok());
    cr_assert_eq(v.value().failure, "tree", "%s", v.value().reason.c_str());
  }
}

Test(store_chain, cairnd_records_are_leaves_like_events_and_verify_reads_them) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 3);
  cr_assert(s->begin().ok());
  auto a = s->append_record(seal::kLostType, seal::lost_fields("acked before a power cut, not on disk"),
                            proto::Trusted{5000, 1, 0, 0, "cairnd"});
  cr_assert(a.ok(), "%s", a.ok() ? "" : a.error().message.c_str());
  cr_assert(s->commit().ok());
  cr_assert_eq(a.value(), 4u);
  cr_assert_eq(sql_text(s->handle(), "SELECT type || '|' || severity || '|' || comm FROM events WHERE seq = 4"),
               "cairn.lost|6|cairnd");
  cr_assert(s->root() == ref_root(leaves_on_disk(s->handle()), 4));
  auto body = s->body_of(4);
  cr_assert(body.ok() && body.value() && body.value()->find("acked before a power cut") != std::string::npos);
  auto v = s->verify();
  cr_assert(v.ok());
  cr_assert(v.value().valid, "%s", v.value().reason.c_str());
  cr_assert_eq(v.value().notes.size(), 1u);
  cr_assert(v.value().notes[0].find("seq 4 was lost") != std::string::npos, "%s", v.value().notes[0].c_str());
  // A cairn.* type verify does not know is not waved through.
  cr_assert(s->begin().ok());
  cr_assert(s->append_record("cairn.unknown", seal::lost_fields("x"), proto::Trusted{6000, 1, 0, 0, "cairnd"}).ok());
  cr_assert(s->commit().ok());
  v = s->verify();
  cr_assert(v.ok());
  cr_assert_eq(v.value().failure, "format", "%s", v.value().reason.c_str());
  cr_assert_eq(*v.value().break_seq, 5u);
}

Test(store_chain, a_second_writer_on_the_same_file_fails_fast_with_busy) {
  TempDb t;
  auto w = open_store(t.path);
  auto second = Store::open(t.path, OpenMode::writer);
  cr_assert_not(second.ok());
  cr_assert_eq(second.error().kind, StoreErrorKind::busy, "%s", second.error().message.c_str());
  w.reset();
  auto third = Store::open(t.path, OpenMode::writer);
  cr_assert(third.ok(), "the lock goes with the first writer");
}

Test(store_chain, a_database_of_another_schema_version_is_refused_untouched) {
  TempDb t;
  {
    auto w = open_store(t.path);
    exec(w->handle(), "UPDATE meta SET value = 99 WHERE key = 'schema_version'");
    exec(w->handle(), "DROP INDEX events_actor");
  }
  for (OpenMode m : {OpenMode::writer, OpenMode::readonly}) {
    auto s = Store::open(t.path, m);
    cr_assert_not(s.ok());
    cr_assert_eq(s.error().kind, StoreErrorKind::schema, "%s", s.error().message.c_str());
    cr_assert(s.error().message.find("99") != std::string::npos, "%s", s.error().message.c_str());
  }
  sqlite3* db = nullptr;
  sqlite3_open(t.path.c_str(), &db);
  cr_assert_eq(sql_text(db, "SELECT count(*) FROM sqlite_schema WHERE name='events_actor'"), "0",
               "the writer did not repair a database of another version");
  sqlite3_close(db);
}

Test(store_chain, another_programs_database_is_refused_and_not_modified) {
  TempDb t;
  exec_on_file(t.path, "CREATE TABLE contacts(name TEXT); INSERT INTO contacts VALUES ('x')");
  auto s = Store::open(t.path, OpenMode::writer);
  cr_assert_not(s.ok());
  cr_assert_eq(s.error().kind, StoreErrorKind::schema, "%s", s.error().message.c_str());
  sqlite3* db = nullptr;
  sqlite3_open(t.path.c_str(), &db);
  cr_assert_eq(sql_text(db, "SELECT group_concat(name) FROM sqlite_schema"), "contacts");
  cr_assert_eq(sql_text(db, "PRAGMA journal_mode"), "delete", "journal mode left alone");
  sqlite3_close(db);
}

Test(store_chain, a_file_that_is_not_a_database_is_reported_corrupt) {
  TempDb t;
  FILE* f = fopen(t.path.c_str(), "w");
  fputs("this is a text file, long enough to have a header of a hundred bytes or so, surely "
        "it is by now\n", f);
  fclose(f);
  auto s = Store::open(t.path, OpenMode::writer);
  cr_assert_not(s.ok());
  cr_assert_eq(s.error().kind, StoreErrorKind::corrupt, "%s", s.error().message.c_str());
  cr_assert(s.error().message.find("SQLITE_NOTADB") != std::string::npos, "%s",
            s.error().message.c_str());
}

Test(store_chain, readonly_open_of_a_missing_file_fails_without_creating_it) {
  TempDb t;
  auto s = Store::open(t.path, OpenMode::readonly);
  cr_assert_not(s.ok());
  cr_assert_eq(s.error().kind, StoreErrorKind::io);
  struct stat sb {};
  cr_assert_neq(stat(t.path.c_str(), &sb), 0, "readonly open created the file");
}

Test(store_chain, checkpoint_truncates_the_wal) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 100);
  struct stat sb {};
  cr_assert_eq(stat((t.path + "-wal").c_str(), &sb), 0);
  cr_assert_gt(sb.st_size, 0);
  cr_assert(s->checkpoint().ok());
  cr_assert_eq(stat((t.path + "-wal").c_str(), &sb), 0);
  cr_assert_eq(sb.st_size, 0);
  cr_assert_eq(sql_text(s->handle(), "SELECT count(*) FROM events"), "100");
}

// ---- files the writer creates or adopts (issue 11 items 7, 8) ----

Test(store_chain, files_are_created_0600_whatever_the_umask) {
  TempDb t;
  mode_t old = umask(0);  // the widest: files would be 0644/0666 if the umask decided
  {
    auto s = open_store(t.path);
    fill(*s, 2);  // -wal and -shm exist while the writer is open
    for (const char* suffix : {"", "-wal", "-shm", "-lock"}) {
      struct stat st {};
      std::string f = t.path + suffix;
      cr_assert_eq(stat(f.c_str(), &st), 0, "%s exists", f.c_str());
      cr_assert_eq(st.st_mode & 0777, 0600u, "%s has mode %o", f.c_str(), st.st_mode & 0777);
    }
  }
  umask(old);
}

Test(store_chain, a_planted_lock_symlink_is_refused_and_its_target_never_created) {
  TempDb t;
  std::string target = t.dir + "/victim";
  cr_assert_eq(symlink(target.c_str(), (t.path + "-lock").c_str()), 0);
  auto s = Store::open(t.path, OpenMode::writer);
  cr_assert_not(s.ok());
  cr_assert(s.error().message.find("symbolic link") != std::string::npos, "%s", s.error().message.c_str());
  struct stat st {};
  cr_assert_neq(lstat(target.c_str(), &st), 0, "the symlink's target was not created");
}

Test(store_chain, a_database_symlink_is_refused) {
  TempDb t;
  std::string real = t.dir + "/real.db";
  { auto s = open_store(real); }
  cr_assert_eq(symlink(real.c_str(), t.path.c_str()), 0);
  auto s = Store::open(t.path, OpenMode::writer);
  cr_assert_not(s.ok());
  cr_assert(s.error().message.find("symbolic link") != std::string::npos, "%s", s.error().message.c_str());
}

Test(store_chain, a_directory_others_can_write_is_refused_with_the_fix) {
  TempDb t;
  cr_assert_eq(chmod(t.dir.c_str(), 01777), 0);
  auto s = Store::open(t.path, OpenMode::writer);
  cr_assert_not(s.ok());
  cr_assert(s.error().message.find("chmod go-w " + t.dir) != std::string::npos, "%s", s.error().message.c_str());
  struct stat st {};
  cr_assert_neq(stat(t.path.c_str(), &st), 0, "nothing was created");
  auto r = Store::open(t.path, OpenMode::readonly);  // readers (forensics on a copy) are not refused for it
  cr_assert_not(r.ok());
}

Test(store_chain, a_database_owned_by_another_uid_is_refused_with_the_fix) {
  if (geteuid() != 0) cr_skip("needs root to give the file away");
  TempDb t;
  { auto s = open_store(t.path); fill(*s, 1); }
  cr_assert_eq(chown(t.path.c_str(), 4242, 4242), 0);
  auto s = Store::open(t.path, OpenMode::writer);
  cr_assert_not(s.ok());
  cr_assert(s.error().message.find("owned by uid 4242") != std::string::npos, "%s", s.error().message.c_str());
  cr_assert(s.error().message.find("chown") != std::string::npos, "%s", s.error().message.c_str());
  auto r = Store::open(t.path, OpenMode::readonly);
  cr_assert(r.ok(), "a reader may still open it (forensics)");
}
