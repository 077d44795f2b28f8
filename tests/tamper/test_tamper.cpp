// The tamper suite: an attacker with root, who has read every document, changes a copy
// of a real log; `cairn verify` run on the file must name the class of each attack, and
// pass the untouched log. Verdicts come only from the CLI's report on the file.
#include <criterion/criterion.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "../../seal/merkle.hpp"
#include "../../seal/note.hpp"
#include "harness.hpp"
#include "tamper_kit.hpp"

using namespace cairn;
using namespace cairn::tamper;

TestSuite(tamper, .timeout = 120);

namespace {

void expect(const Verdict& v, const char* cls) {
  cr_assert_eq(v.exit, 1, "verify exit %d (want 1, class %s): %s", v.exit, cls, v.json.c_str());
  cr_assert_not(v.valid, "verify passed a tampered log: %s", v.json.c_str());
  cr_assert_str_eq(v.failure.c_str(), cls, "wrong class: %s", v.json.c_str());
}

// The smart attacker: change the records, then recompute every column, leaf and node.
template <class F>
std::string attack(const char* name, F&& change) {
  std::string dir = copy_golden(name);
  sqlite3* db = open_rw(dir);
  auto recs = read_records(db);
  change(recs);
  rebuild(db, recs);
  sqlite3_close(db);
  return dir;
}

size_t nth_of_type(const std::vector<Rec>& recs, const std::string& type, size_t n) {
  for (size_t i = 0; i < recs.size(); ++i)
    if (type_of(recs[i].body) == type && n-- == 0) return i;
  cr_assert_fail("no %zu-th record of type %s", n, type.c_str());
  return 0;
}

void write_file(const std::string& path, const std::string& s) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << s;
}

std::string origin_of(const std::string& key) { return key.substr(0, key.find('+')); }

// A forged record: a real one with another actor and no idempotency key (keys are unique).
std::string forge(const std::string& body) { return without(with_str(body, "actor", "ghost"), "idem"); }

}  // namespace

Test(tamper, an_untouched_log_passes_with_every_check) {
  const Golden& g = golden();
  std::string dir = copy_golden("clean");
  write_file(dir + "/cp.txt", g.checkpoint);
  Verdict v = verify(dir, {"--checkpoint", dir + "/cp.txt", "--fresh", "3650d"});
  cr_assert_eq(v.exit, 0, "%s", v.json.c_str());
  cr_assert(v.valid);
  cr_assert(v.json.find("\"unsealed\":0") != std::string::npos, "clean stop seals everything: %s", v.json.c_str());
  cr_assert(v.json.find("\"checkpoints\":1") != std::string::npos, "%s", v.json.c_str());
}

Test(tamper, truncating_the_tail_is_caught_by_the_key_file) {
  for (size_t cut : {size_t{1}, size_t{10}, size_t{399}}) {
    std::string dir = attack("cut", [&](std::vector<Rec>& r) { r.resize(r.size() - std::min(cut, r.size())); });
    expect(verify(dir), "truncated");
  }
  std::string dir = attack("cut-all", [](std::vector<Rec>& r) { r.clear(); });
  expect(verify(dir), "truncated");
}

Test(tamper, truncating_below_a_saved_checkpoint_is_inconsistent_even_without_the_key_file) {
  const Golden& g = golden();
  std::string dir = attack("cut-cp", [](std::vector<Rec>& r) { r.resize(100); });
  write_file(dir + "/cp.txt", g.checkpoint);
  expect(verify(dir, {"--key-file", "none", "--checkpoint", dir + "/cp.txt"}), "consistency");
}

Test(tamper, a_deleted_key_file_is_named) {
  std::string dir = copy_golden("nokey");
  unlink((dir + "/cairn.db.key").c_str());
  expect(verify(dir), "key_file");
}

Test(tamper, an_edited_body_is_altered_and_a_rehashed_one_breaks_the_sealed_root) {
  std::string dir = copy_golden("edit-naive");
  sqlite3* db = open_rw(dir);
  auto recs = read_records(db);
  std::string forged = with_str(recs[41].body, "actor", "nobody");
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "UPDATE events SET body = ?1, actor = 'nobody' WHERE seq = 42", -1, &st, nullptr);
  sqlite3_bind_blob(st, 1, forged.data(), static_cast<int>(forged.size()), SQLITE_TRANSIENT);
  sqlite3_step(st);
  sqlite3_finalize(st);
  sqlite3_close(db);
  expect(verify(dir), "altered");

  dir = attack("edit", [](std::vector<Rec>& r) { r[41].body = with_str(r[41].body, "actor", "nobody"); });
  expect(verify(dir), "root");
}

Test(tamper, deleting_inserting_swapping_and_rewriting_records_break_the_sealed_root) {
  expect(verify(attack("delete", [](std::vector<Rec>& r) { r.erase(r.begin() + 49); })), "root");
  expect(verify(attack("insert", [](std::vector<Rec>& r) {
           r.insert(r.begin() + 60, Rec{forge(r[59].body)});
         })),
         "root");
  expect(verify(attack("swap", [](std::vector<Rec>& r) { std::swap(r[10], r[11]); })), "root");
  expect(verify(attack("rewrite", [](std::vector<Rec>& r) {
           for (auto& x : r)
             if (type_of(x.body) == "AuthFailure") x.body = with_str(x.body, "type", "UserLogin");
         })),
         "root");
  // Forged records slipped in before the final seal.
  expect(verify(attack("append-sealed", [](std::vector<Rec>& r) {
           r.insert(r.end() - 1, Rec{forge(r[5].body)});
         })),
         "root");
}

Test(tamper, records_appended_after_the_last_seal_are_reported_as_unsealed) {
  // Nothing on one host can tell these from real ones (README threat model): verify
  // must not call them sealed.
  std::string dir = attack("append", [](std::vector<Rec>& r) {
    for (int i = 0; i < 3; ++i) r.push_back(Rec{forge(r[5].body)});
  });
  Verdict v = verify(dir);
  cr_assert(v.json.find("\"unsealed\":3") != std::string::npos, "%s", v.json.c_str());
}

Test(tamper, deleting_or_reordering_handovers_breaks_the_key_chain) {
  expect(verify(attack("drop-seal", [](std::vector<Rec>& r) { r.erase(r.begin() + nth_of_type(r, "cairn.seal", 1)); })),
         "key_chain");
  expect(verify(attack("reorder-seals", [](std::vector<Rec>& r) {
           std::swap(r[nth_of_type(r, "cairn.seal", 0)], r[nth_of_type(r, "cairn.seal", 1)]);
         })),
         "key_chain");
}

Test(tamper, resealing_rewritten_history_with_the_current_key_fails_the_old_epochs_seal) {
  const Golden& g = golden();
  std::string dir = copy_golden("reseal");
  auto sk = current_secret(dir + "/cairn.db.key");
  sqlite3* db = open_rw(dir);
  auto recs = read_records(db);
  recs[3].body = with_str(recs[3].body, "actor", "nobody");
  // Recompute every seal's root over the rewritten records and sign it with the key the
  // attacker holds (the current epoch's): CVE-2023-31439's attack on journald.
  seal::Frontier tree;
  for (auto& r : recs) {
    if (type_of(r.body) == "cairn.seal") r.body = resign_seal(r.body, origin_of(g.key), sk.data(), tree.root().data());
    tree.push(seal::leaf_hash(r.body), [](unsigned, uint64_t, const seal::Hash&) {});
  }
  rebuild(db, recs);
  sqlite3_close(db);
  expect(verify(dir), "seal");
}

Test(tamper, hiding_a_record_from_queries_is_a_hidden_row) {
  std::string dir = copy_golden("blob-type");
  sqlite3* db = open_rw(dir);
  exec(db, "UPDATE events SET type = CAST(type AS BLOB) WHERE seq = 5");
  sqlite3_close(db);
  expect(verify(dir), "hidden_row");

  dir = copy_golden("text-severity");
  db = open_rw(dir);
  // An INTEGER column turns text that looks like a number back into one; a BLOB it keeps,
  // and `severity <= 6` never matches a BLOB.
  exec(db, "UPDATE events SET severity = CAST(severity AS BLOB) WHERE seq = 7");
  sqlite3_close(db);
  expect(verify(dir), "hidden_row");

  dir = copy_golden("index");
  db = open_rw(dir);
  exec(db, "DROP INDEX events_type; CREATE INDEX events_type ON events(type) WHERE seq != 5");
  sqlite3_close(db);
  expect(verify(dir), "hidden_row");

  // The subtle one: an index built without seq 9's entry (as a partial index), then its
  // schema text rewritten to the plain definition. SQLite now trusts an index that misses
  // a row, and `cairn query --actor` would not show seq 9.
  dir = copy_golden("index-entry");
  db = open_rw(dir);
  exec(db, "DROP INDEX events_actor; CREATE INDEX events_actor ON events(actor) WHERE seq != 9;"
           "PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql='CREATE INDEX events_actor ON events(actor)' "
           "WHERE name='events_actor'; PRAGMA writable_schema=OFF;");
  sqlite3_close(db);
  expect(verify(dir), "hidden_row");
}

Test(tamper, editing_the_maintained_counts_or_time_buckets_is_an_index_failure) {
  // `cairn stats` reads type_counts and time windows read time_seq; neither is signed,
  // so verify recomputes both from the events. Each edit below leaves every record,
  // hash and seal intact.
  struct {
    const char* name;
    const char* sql;
    const char* names;  // what the reason must mention
  } edits[] = {
      {"count-raised", "UPDATE type_counts SET n = n + 1000 WHERE type = 'cairn.seal'", "cairn.seal"},
      {"count-dropped", "DELETE FROM type_counts WHERE type = 'cairn.seal'", "cairn.seal"},
      {"count-invented", "INSERT INTO type_counts (type, n) VALUES ('Invented', 5)", "Invented"},
      {"bucket-narrowed", "UPDATE time_seq SET lo = lo + 1 WHERE bucket = (SELECT MIN(bucket) FROM time_seq)",
       "time_seq"},
      {"bucket-dropped", "DELETE FROM time_seq WHERE bucket = (SELECT MAX(bucket) FROM time_seq)", "time_seq"},
  };
  for (const auto& e : edits) {
    std::string dir = copy_golden(e.name);
    sqlite3* db = open_rw(dir);
    exec(db, e.sql);
    sqlite3_close(db);
    Verdict v = verify(dir);
    expect(v, "index");
    cr_assert(v.reason.find(e.names) != std::string::npos, "%s: the reason names %s: %s", e.name, e.names,
              v.json.c_str());
  }
}

Test(tamper, rolling_back_to_an_older_copy_is_caught) {
  const Golden& g = golden();
  std::string dir = copy_golden("rollback");
  std::ifstream in(g.old_db, std::ios::binary);
  std::ofstream out(dir + "/cairn.db", std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
  out.close();
  expect(verify(dir), "truncated");
  // Off the host, with only the newest checkpoint kept elsewhere.
  std::string cp;
  cr_assert_eq(test::run_capture({test::cli_path(), "checkpoint", "--db", g.dir + "/cairn.db"}, cp), 0);
  write_file(dir + "/cp.txt", cp);
  expect(verify(dir, {"--key-file", "none", "--checkpoint", dir + "/cp.txt"}), "consistency");
}

Test(tamper, the_database_keys_copy_is_not_trusted) {
  std::string dir = copy_golden("meta");
  sqlite3* db = open_rw(dir);
  unsigned char pk[32], sk[64];
  crypto_sign_keypair(pk, sk);
  seal::PublicKey p;
  std::memcpy(p.data(), pk, 32);
  exec(db, "UPDATE meta SET value = '" + seal::b64(p) + "' WHERE key = 'first_key'");
  sqlite3_close(db);
  Verdict keyed = verify(dir);
  cr_assert_eq(keyed.exit, 0, "with --key, meta is not used: %s", keyed.json.c_str());
  Verdict unkeyed;
  unkeyed.exit = test::run_capture({test::cli_path(), "verify", "--db", dir + "/cairn.db", "-o", "json"}, unkeyed.json);
  cr_assert_eq(unkeyed.exit, 1, "the database's own (edited) key does not verify the seals: %s", unkeyed.json.c_str());
}

Test(tamper, an_older_or_edited_key_file_is_named_and_refused_at_start) {
  const Golden& g = golden();
  std::string dir = copy_golden("oldkey");
  {
    std::ifstream in(g.old_key, std::ios::binary);
    std::ofstream out(dir + "/cairn.db.key", std::ios::binary | std::ios::trunc);
    out << in.rdbuf();
  }
  expect(verify(dir), "key_chain");
  test::TestDaemon d("tamper-oldkey");
  test::DaemonOptions o;
  o.args = {"--db", dir + "/cairn.db"};
  cr_assert_not(d.start(o), "cairnd started with an older key file");

  dir = copy_golden("editkey");
  {
    std::fstream f(dir + "/cairn.db.key", std::ios::in | std::ios::out | std::ios::binary);
    for (long off : {100L, 612L}) {  // a seed byte in both slots
      f.seekg(off);
      char c = 0;
      f.read(&c, 1);
      c ^= 1;
      f.seekp(off);
      f.write(&c, 1);
    }
  }
  expect(verify(dir), "key_file");
  test::TestDaemon d2("tamper-editkey");
  o.args = {"--db", dir + "/cairn.db"};
  cr_assert_not(d2.start(o), "cairnd started with a damaged key file");
}

Test(tamper, a_bundle_proves_one_record_and_fails_when_altered) {
  const Golden& g = golden();
  std::string dir = copy_golden("prove");
  std::string bundle;
  cr_assert_eq(test::run_capture({test::cli_path(), "prove", "77", "--db", dir + "/cairn.db"}, bundle), 0);
  write_file(dir + "/p.txt", bundle);
  std::string out;
  cr_assert_eq(test::run_capture({test::cli_path(), "verify", "--proof", dir + "/p.txt", "--key", g.key}, out), 0, "%s",
               out.c_str());
  // Another record's body in the bundle.
  std::string other;
  cr_assert_eq(test::run_capture({test::cli_path(), "prove", "78", "--db", dir + "/cairn.db"}, other), 0);
  std::string rec78 = other.substr(other.find("record "), other.find('\n', other.find("record ")) - other.find("record "));
  std::string forged = bundle;
  size_t at = forged.find("record ");
  forged.replace(at, forged.find('\n', at) - at, rec78);
  write_file(dir + "/f.txt", forged);
  cr_assert_eq(test::run_capture({test::cli_path(), "verify", "--proof", dir + "/f.txt", "--key", g.key}, out), 1);
  cr_assert(out.find("inclusion") != std::string::npos, "%s", out.c_str());
  // Another log's key.
  unsigned char pk[32], sk[64];
  crypto_sign_keypair(pk, sk);
  seal::PublicKey p;
  std::memcpy(p.data(), pk, 32);
  std::string wrong = seal::format_vkey(origin_of(g.key), p);
  cr_assert_eq(test::run_capture({test::cli_path(), "verify", "--proof", dir + "/p.txt", "--key", wrong}, out), 1);
  cr_assert(out.find("key chain") != std::string::npos, "%s", out.c_str());
}

Test(tamper, deleting_the_wal_after_sigkill_is_caught_refused_at_start_and_an_accepted_loss_is_recorded) {
  test::TestDaemon d("tamper-wal");
  test::DaemonOptions o;
  o.args = {"--seal-interval", "100ms"};
  cr_assert(d.start(o));
  uint64_t acked = send_events(d.socket(), d.dir(), 1, 107);
  cr_assert_geq(acked, 107u);
  wait_seal_after(d.db(), acked);
  std::string key;
  cr_assert_eq(test::run_capture({test::cli_path(), "key", "--db", d.db()}, key), 0);
  key.erase(key.find_last_not_of('\n') + 1);
  d.kill9();
  // Every acked event and the seals after them live in the WAL until a checkpoint.
  unlink((d.db() + "-wal").c_str());
  unlink((d.db() + "-shm").c_str());
  Verdict v = verify(d.dir(), {}, key);
  expect(v, "truncated");

  cr_assert_not(d.start(o), "cairnd started on a database behind its key file");
  std::ifstream log(d.log_path());
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  cr_assert(text.find("records are missing") != std::string::npos, "start-up says what is missing: %s", text.c_str());

  // The operator accepts the loss: it is written into the log, and no acked seq is
  // handed out again.
  o.args.push_back("--accept-loss");
  cr_assert(d.start(o), "cairnd --accept-loss did not start");
  uint64_t next = send_events(d.socket(), d.dir(), 500, 1);
  cr_assert_gt(next, acked, "seq %llu handed out again (acked up to %llu before the loss)",
               static_cast<unsigned long long>(next), static_cast<unsigned long long>(acked));
  cr_assert_eq(test::exit_code(d.stop(SIGTERM)), 0);
  v = verify(d.dir(), {}, key);
  expect(v, "loss");
  cr_assert(v.json.find("operator accepted the loss") != std::string::npos, "%s", v.json.c_str());
}
