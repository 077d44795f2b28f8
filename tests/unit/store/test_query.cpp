// Queries: newest first, each filter, keyset paging without overlap or gap, plans that
// use an index and never sort, readers beside a live writer or after it is gone, info.
#include <sys/stat.h>
#include <sys/wait.h>

#include <set>
#include <vector>

#include "store_test.hpp"

using namespace store_test;

TestSuite(store_query, .timeout = 60);

namespace {

std::vector<uint64_t> seqs(Store& s, const proto::QuerySpec& q) {
  auto p = s.query(q);
  cr_assert(p.ok(), "query: %s", p.ok() ? "" : p.error().message.c_str());
  std::vector<uint64_t> out;
  for (const auto& e : p.value().events) out.push_back(e.seq);
  return out;
}

// Every seq in [1, n] (event i-1 of fill()) for which keep(i-1) holds, newest first.
template <class F>
std::vector<uint64_t> expected(int n, F keep) {
  std::vector<uint64_t> out;
  for (int i = n - 1; i >= 0; --i)
    if (keep(i)) out.push_back(static_cast<uint64_t>(i + 1));
  return out;
}

std::string plan_of(sqlite3* db, const char* sql) {
  std::string eqp = std::string("EXPLAIN QUERY PLAN ") + sql;
  sqlite3_stmt* st = nullptr;
  cr_assert_eq(sqlite3_prepare_v2(db, eqp.c_str(), -1, &st, nullptr), SQLITE_OK, "%s", sql);
  std::string plan;
  while (sqlite3_step(st) == SQLITE_ROW) {
    plan += reinterpret_cast<const char*>(sqlite3_column_text(st, 3));
    plan += "; ";
  }
  sqlite3_finalize(st);
  return plan;
}

}  // namespace

Test(store_query, pages_are_newest_first_and_keyset_paging_covers_every_row_once) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 250);
  proto::QuerySpec q;
  q.limit = 40;
  std::set<uint64_t> seen;
  uint64_t last = UINT64_MAX;
  int pages = 0;
  for (;;) {
    auto p = s->query(q);
    cr_assert(p.ok());
    ++pages;
    cr_assert_leq(p.value().events.size(), 40u);
    for (const auto& e : p.value().events) {
      cr_assert_lt(e.seq, last, "not newest first, or overlapping pages");
      cr_assert_eq(last == UINT64_MAX ? 250u : last - 1, e.seq, "gap before seq %llu",
                   static_cast<unsigned long long>(e.seq));
      last = e.seq;
      cr_assert(seen.insert(e.seq).second);
      cr_assert_not(e.body.empty());
    }
    if (!p.value().next) break;
    cr_assert_eq(*p.value().next, last, "next is the last seq of a full page");
    q.after = p.value().next;
  }
  cr_assert_eq(seen.size(), 250u);
  cr_assert_eq(pages, 7, "6 full pages and a short one");
}

Test(store_query, a_page_returns_the_stored_hash_and_body) {
  TempDb t;
  auto s = open_store(t.path);
  auto e = event("A", "x");
  auto tr = trusted(1);
  std::string body = proto::event_canonical_body(e, tr);
  cr_assert(s->begin().ok());
  cr_assert(s->append(e, tr, body).ok());
  cr_assert(s->commit().ok());
  proto::QuerySpec q;
  auto p = s->query(q);
  cr_assert_eq(p.value().events.size(), 1u);
  cr_assert(p.value().events[0].body == body);
  cr_assert(p.value().events[0].hash == ref_leaf(body), "the record's RFC 6962 leaf hash");
  cr_assert_not(p.value().next.has_value());
}

Test(store_query, an_exactly_full_last_page_is_followed_by_an_empty_one) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 10);
  proto::QuerySpec q;
  q.limit = 10;
  auto p = s->query(q);
  cr_assert_eq(p.value().events.size(), 10u);
  cr_assert(p.value().next.has_value());
  q.after = p.value().next;
  auto p2 = s->query(q);
  cr_assert(p2.value().events.empty());
  cr_assert_not(p2.value().next.has_value());
}

Test(store_query, each_filter_selects_exactly_its_rows) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 60, 1000);  // event i: received 1000+i, AuthFailure if i%3==0, alice if odd, severity i%8
  auto auth = [](int i) { return i % 3 == 0; };
  auto alice = [](int i) { return i % 2 == 1; };
  proto::QuerySpec q;
  q.limit = 1000;
  q.type = "AuthFailure";
  cr_assert(seqs(*s, q) == expected(60, auth), "type");
  q.actor = "alice";
  cr_assert(seqs(*s, q) == expected(60, [&](int i) { return auth(i) && alice(i); }), "type+actor");
  q.type.reset();
  cr_assert(seqs(*s, q) == expected(60, alice), "actor");

  proto::QuerySpec r;
  r.limit = 1000;
  r.since = 1010;
  cr_assert(seqs(*s, r) == expected(60, [](int i) { return i >= 10; }), "since is inclusive");
  r.until = 1020;
  cr_assert(seqs(*s, r) == expected(60, [](int i) { return i >= 10 && i < 20; }), "until is exclusive");
  r.since.reset();
  cr_assert(seqs(*s, r) == expected(60, [](int i) { return i < 20; }), "until alone");

  proto::QuerySpec sv;
  sv.limit = 1000;
  sv.severity = 3;
  cr_assert(seqs(*s, sv) == expected(60, [](int i) { return i % 8 <= 3; }), "severity this or worse");
  sv.severity = 0;
  sv.type = "UserLogin";
  sv.since = 1000;
  sv.until = 1040;
  sv.actor = "bob";
  cr_assert(seqs(*s, sv) == expected(60, [&](int i) {
              return i % 8 == 0 && !auth(i) && !alice(i) && i < 40;
            }), "all filters at once");

  proto::QuerySpec none;
  none.type = "NoSuchType";
  cr_assert(seqs(*s, none).empty());
}

Test(store_query, keyset_paging_within_a_filter_walks_all_its_rows) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 100);
  proto::QuerySpec q;
  q.type = "UserLogin";
  q.limit = 7;
  std::vector<uint64_t> all;
  for (;;) {
    auto p = s->query(q);
    for (const auto& e : p.value().events) all.push_back(e.seq);
    if (!p.value().next) break;
    q.after = p.value().next;
  }
  cr_assert(all == expected(100, [](int i) { return i % 3 != 0; }));
}

Test(store_query, a_cursor_beyond_int64_means_from_the_newest) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 5);
  proto::QuerySpec q;
  q.after = UINT64_MAX;
  cr_assert_eq(seqs(*s, q).size(), 5u);
  q.after = 0;
  cr_assert(seqs(*s, q).empty());
}

Test(store_query, offset_pages_match_keyset_pages) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 30);
  proto::QuerySpec q;
  q.limit = 8;
  q.actor = "alice";
  std::vector<uint64_t> keyset, offset;
  for (;;) {
    auto p = s->query(q);
    for (const auto& e : p.value().events) keyset.push_back(e.seq);
    if (!p.value().next) break;
    q.after = p.value().next;
  }
  for (uint64_t off = 0;; off += 8) {
    auto p = s->query_offset(q, off);
    cr_assert(p.ok());
    for (const auto& e : p.value().events) offset.push_back(e.seq);
    if (p.value().events.size() < 8) break;
  }
  cr_assert(keyset == offset);
  cr_assert_eq(keyset.size(), 15u);
}

// Runs every combination of filters through the store, then asks SQLite for the plan of
// each statement the store actually prepared (sqlite3_next_stmt), so the test follows
// the store's SQL wherever it changes.
Test(store_query, every_filter_combination_uses_an_index_and_never_sorts) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 30);
  for (unsigned mask = 0; mask < 64; ++mask) {
    proto::QuerySpec q;
    if (mask & 1) q.type = "AuthFailure";
    if (mask & 2) q.actor = "alice";
    if (mask & 4) q.since = 1005;
    if (mask & 8) q.until = 1025;
    if (mask & 16) q.severity = 5;
    if (mask & 32) q.after = 20;
    cr_assert(s->query(q).ok());
  }
  int checked = 0;
  std::vector<std::string> sqls;
  for (sqlite3_stmt* st = sqlite3_next_stmt(s->handle(), nullptr); st;
       st = sqlite3_next_stmt(s->handle(), st)) {
    std::string sql = sqlite3_sql(st);
    if (sql.rfind("SELECT seq, hash, body FROM events WHERE", 0) == 0) sqls.push_back(sql);
  }
  for (const std::string& sql : sqls) {
    std::string plan = plan_of(s->handle(), sql.c_str());
    cr_assert(plan.find("TEMP B-TREE") == std::string::npos, "%s sorts: %s", sql.c_str(), plan.c_str());
    cr_assert(plan.find("USING INDEX") != std::string::npos ||
                  plan.find("USING INTEGER PRIMARY KEY") != std::string::npos,
              "%s scans: %s", sql.c_str(), plan.c_str());
    if (sql.find("type = ") != std::string::npos && sql.find("actor = ") == std::string::npos)
      cr_assert(plan.find("events_type") != std::string::npos, "%s: %s", sql.c_str(), plan.c_str());
    if (sql.find("actor = ") != std::string::npos)
      cr_assert(plan.find("events_actor") != std::string::npos, "%s: %s", sql.c_str(), plan.c_str());
    ++checked;
  }
  cr_assert_eq(checked, 32, "one cached statement per combination of the five filters");
  // The typical page spelled out, as the design note has it.
  std::string plan = plan_of(s->handle(),
                             "SELECT seq, hash, body FROM events WHERE type = ?1 AND seq < ?6 "
                             "ORDER BY seq DESC LIMIT 50");
  cr_assert(plan.find("USING INDEX events_type") != std::string::npos, "%s", plan.c_str());
  cr_assert(plan.find("TEMP B-TREE") == std::string::npos, "%s", plan.c_str());
}

Test(store_query, repeated_queries_compile_no_new_statements) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 10);
  proto::QuerySpec q;
  q.type = "UserLogin";
  cr_assert(s->query(q).ok());
  auto count = [&] {
    int n = 0;
    for (sqlite3_stmt* st = sqlite3_next_stmt(s->handle(), nullptr); st;
         st = sqlite3_next_stmt(s->handle(), st))
      ++n;
    return n;
  };
  int before = count();
  for (int i = 0; i < 20; ++i) {
    q.type = i % 2 ? "UserLogin" : "AuthFailure";
    q.after = static_cast<uint64_t>(10 - i % 5);
    cr_assert(s->query(q).ok());
  }
  cr_assert_eq(count(), before);
}

Test(store_query, a_reader_queries_while_the_writer_holds_the_database) {
  TempDb t;
  auto w = open_store(t.path);
  fill(*w, 7);
  auto r = open_store(t.path, OpenMode::readonly);
  proto::QuerySpec q;
  cr_assert_eq(seqs(*r, q).size(), 7u);
  // The writer commits more while the reader is open; the next query sees them.
  fill(*w, 3);
  cr_assert_eq(seqs(*r, q).size(), 10u);
  cr_assert_eq(seqs(*r, q).front(), 10u);
  auto b = r->begin();
  cr_assert_not(b.ok(), "a read-only store refuses to write");
  cr_assert_eq(b.error().kind, StoreErrorKind::misuse);
  auto v = r->verify();
  cr_assert(v.ok() && v.value().valid && v.value().checked == 10u);
}

Test(store_query, a_reader_opens_the_database_after_the_writer_is_gone) {
  TempDb t;
  { fill(*open_store(t.path), 12); }
  auto r = open_store(t.path, OpenMode::readonly);
  proto::QuerySpec q;
  cr_assert_eq(seqs(*r, q).size(), 12u);
  cr_assert_eq(r->head_seq(), 12u);
}

// An operator running `cairn query --db` as a user who can read the file but not
// write its directory, with cairnd stopped: SQLite cannot create the -shm file, so the
// store must fall back to reading the (fully checkpointed) file as immutable.
Test(store_query, a_reader_that_cannot_write_the_directory_still_reads_a_closed_database) {
  TempDb t;
  { fill(*open_store(t.path), 4); }
  struct stat sb {};
  cr_assert_neq(stat((t.path + "-wal").c_str(), &sb), 0, "the writer's close removed the WAL");
  cr_assert_eq(chmod(t.path.c_str(), 0644), 0);
  cr_assert_eq(chmod(t.dir.c_str(), 0555), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    // root ignores directory permissions: drop to nobody for the open.
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
    auto r = Store::open(t.path, OpenMode::readonly);
    if (!r.ok()) {
      fprintf(stderr, "open: %s\n", r.error().message.c_str());
      _exit(1);
    }
    proto::QuerySpec q;
    auto p = r.value()->query(q);
    _exit(p.ok() && p.value().events.size() == 4 ? 0 : 2);
  }
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status));
  cr_assert_eq(WEXITSTATUS(status), 0, "child exit %d (1 open failed, 2 wrong rows, 3 setuid)",
               WEXITSTATUS(status));
  cr_assert_neq(stat((t.path + "-wal").c_str(), &sb), 0, "the reader created nothing");
}

Test(store_query, info_counts_all_events_and_each_type_most_first) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 9);
  auto i = s->info();
  cr_assert(i.ok());
  cr_assert_eq(i.value().events, 9u);
  cr_assert_eq(i.value().by_type.size(), 2u);
  cr_assert_eq(i.value().by_type[0].first, "UserLogin");
  cr_assert_eq(i.value().by_type[0].second, 6u);
  cr_assert_eq(i.value().by_type[1].first, "AuthFailure");
  cr_assert_eq(i.value().by_type[1].second, 3u);
  struct stat a {}, b {};
  stat(t.path.c_str(), &a);
  stat((t.path + "-wal").c_str(), &b);
  cr_assert_eq(i.value().db_bytes, static_cast<uint64_t>(a.st_size + b.st_size));
  auto r = open_store(t.path, OpenMode::readonly);
  auto ri = r->info();
  cr_assert(ri.ok());
  cr_assert_eq(ri.value().events, 9u, "a reader sees the same counts");
}
