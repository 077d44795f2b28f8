// verify(): a clean chain passes; a tampered body, a rewritten row, a gap and a column
// that disagrees with its body are each reported at the seq where they happen. The
// append-only triggers are dropped through handle() to play the attacker.
#include "store_test.hpp"

using namespace store_test;

TestSuite(store_verify, .timeout = 60);

namespace {

proto::VerifyReport verify_ok(Store& s) {
  auto v = s.verify();
  cr_assert(v.ok(), "verify: %s", v.ok() ? "" : v.error().message.c_str());
  return v.value();
}

// The chain breaks at `seq`, with `checked` rows verified before it.
void expect_break(Store& s, uint64_t seq, uint64_t checked, const char* words) {
  auto v = verify_ok(s);
  cr_assert_not(v.valid, "verify passed a damaged chain");
  cr_assert(v.break_seq.has_value());
  cr_assert_eq(*v.break_seq, seq, "break at %llu, reason %s",
               static_cast<unsigned long long>(*v.break_seq), v.reason.c_str());
  cr_assert_eq(v.checked, checked, "rows verified before the break");
  cr_assert(v.reason.rfind("seq " + std::to_string(seq) + ": ", 0) == 0, "%s", v.reason.c_str());
  cr_assert(v.reason.find(words) != std::string::npos, "reason '%s' lacks '%s'", v.reason.c_str(), words);
}

}  // namespace

Test(store_verify, a_clean_chain_passes_and_reports_the_head) {
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
  cr_assert_eq(v.checked, 51u);
  cr_assert_eq(v.head_seq, 51u);
  cr_assert(v.head_hash == s->head_hash());
  cr_assert_not(v.break_seq.has_value());
}

Test(store_verify, an_empty_database_is_valid_with_the_genesis_head) {
  TempDb t;
  auto s = open_store(t.path);
  auto v = verify_ok(*s);
  cr_assert(v.valid);
  cr_assert_eq(v.checked, 0u);
  cr_assert_eq(v.head_seq, 0u);
  cr_assert(v.head_hash == kGenesis);
}

Test(store_verify, a_tampered_body_is_a_hash_mismatch_at_its_seq) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 20);
  exec(s->handle(), "DROP TRIGGER events_no_update");
  exec(s->handle(), "UPDATE events SET body = CAST(replace(CAST(body AS TEXT), 'bob', 'eve') AS BLOB) "
                    "WHERE seq = 13");
  expect_break(*s, 13, 12, "hash mismatch (stored ");
}

Test(store_verify, a_row_rewritten_with_its_own_hash_breaks_the_next_row) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 10);
  // The attacker changes row 5 and stores a correct hash for it; row 6 still chains
  // from the old hash of row 5.
  auto e = event("UserLogin", "eve");
  e.severity = 4;
  auto tr = trusted(1004);
  std::string body = proto::event_canonical_body(e, tr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(s->handle(), "SELECT hash FROM events WHERE seq = 4", -1, &st, nullptr);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  Hash h4;
  std::memcpy(h4.data(), sqlite3_column_blob(st, 0), 32);
  sqlite3_finalize(st);
  Hash h5 = chain_hash(h4, 5, body);
  exec(s->handle(), "DROP TRIGGER events_no_update");
  sqlite3_prepare_v2(s->handle(), "UPDATE events SET body = ?1, hash = ?2, actor = 'eve' WHERE seq = 5",
                     -1, &st, nullptr);
  sqlite3_bind_blob(st, 1, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, h5.data(), 32, SQLITE_STATIC);
  cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  expect_break(*s, 6, 5, "hash mismatch");
}

Test(store_verify, a_deleted_row_is_a_gap) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 5);
  exec(s->handle(), "DROP TRIGGER events_no_delete");
  exec(s->handle(), "DELETE FROM events WHERE seq = 3");
  expect_break(*s, 4, 2, "expected seq 3 after 2 (gap)");
}

Test(store_verify, a_deleted_first_row_is_a_gap) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 3);
  exec(s->handle(), "DROP TRIGGER events_no_delete");
  exec(s->handle(), "DELETE FROM events WHERE seq = 1");
  auto v = verify_ok(*s);
  cr_assert_not(v.valid);
  cr_assert_eq(*v.break_seq, 2u);
  cr_assert(v.reason.find("gap") != std::string::npos, "%s", v.reason.c_str());
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
    expect_break(*s, 4, 3, (std::string("column ") + c.column + " differs from body").c_str());
  }
}
