// The query engine (issue 12): filters on every column, fields and text, oldest first,
// time windows through time_seq, counts from type_counts, bounded scans resumed by
// cursor, and the query index built in place and checked against the events.
#include <algorithm>
#include <set>
#include <vector>

#include "../../../daemon/store/query_engine.hpp"
#include "store_test.hpp"

using namespace store_test;

TestSuite(store_engine, .timeout = 60);

namespace {

// Every match of q, page after page (pages of `limit`), in the order served.
std::vector<uint64_t> walk(QueryEngine& e, proto::QuerySpec q, int* pages = nullptr) {
  std::vector<uint64_t> out;
  for (int n = 0; n < 100000; ++n) {
    auto p = e.page(q);
    cr_assert(p.ok(), "page: %s", p.ok() ? "" : p.error().message.c_str());
    for (const auto& ev : p.value().events) out.push_back(ev.seq);
    if (pages) *pages = n + 1;
    if (!p.value().next) return out;
    q.after = p.value().next;
  }
  cr_assert_fail("the walk never ended");
  return out;
}

// Event i (seq i+1) of fill_rich: received 1e9*i (one per second, so one per bucket
// roughly), type A/B/C by i%3, actor u<i%5>, outcome failure when i%4==0, comm c<i%2>,
// message "Hello <i>", fields {ip: "10.0.0.<i%7>", n: i}.
void fill_rich(Store& s, int n) {
  cr_assert(s.begin().ok());
  for (int i = 0; i < n; ++i) {
    proto::Event e;
    e.type = std::string(1, static_cast<char>('A' + i % 3));
    e.actor = "u" + std::to_string(i % 5);
    e.outcome = i % 4 == 0 ? proto::Outcome::failure : proto::Outcome::success;
    e.message = "Hello " + std::to_string(i);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    std::string ip = "10.0.0." + std::to_string(i % 7);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "ip", 2);
    msgpack_pack_str_with_body(&pk, ip.data(), ip.size());
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_int64(&pk, i);
    e.fields.assign(sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    proto::Trusted t{static_cast<int64_t>(i) * 1'000'000'000 + 5, 10, 1000 + static_cast<uint32_t>(i % 3), 100,
                     "c" + std::to_string(i % 2)};
    auto r = s.append(e, t, proto::event_canonical_body(e, t));
    cr_assert(r.ok(), "append: %s", r.ok() ? "" : r.error().message.c_str());
  }
  cr_assert(s.commit().ok());
}

template <class F>
std::vector<uint64_t> expect(int n, F keep, bool newest = true) {
  std::vector<uint64_t> out;
  for (int i = 0; i < n; ++i)
    if (keep(i)) out.push_back(static_cast<uint64_t>(i + 1));
  if (newest) std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace

Test(store_engine, each_filter_and_combination_selects_exactly_its_rows) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(ensure_query_indexes(*s).ok());
  const int n = 300;
  fill_rich(*s, n);
  QueryEngine e(*s);
  proto::QuerySpec q;
  q.limit = 7;
  q.match.push_back({proto::Column::type, {"A", "C"}, {}});
  cr_assert(walk(e, q) == expect(n, [](int i) { return i % 3 != 1; }), "type A or C");
  q = {};
  q.limit = 50;
  q.match.push_back({proto::Column::outcome, {}, {static_cast<int64_t>(proto::Outcome::failure)}});
  q.match.push_back({proto::Column::comm, {"c0"}, {}});
  cr_assert(walk(e, q) == expect(n, [](int i) { return i % 4 == 0; }), "failure (all even: comm c0)");
  q = {};
  q.match.push_back({proto::Column::uid, {}, {1001, 1002}});
  q.actor = "u3";
  cr_assert(walk(e, q) == expect(n, [](int i) { return i % 3 != 0 && i % 5 == 3; }), "uid and actor");
  q = {};
  q.fields.push_back({"ip", {"10.0.0.3"}});
  cr_assert(walk(e, q) == expect(n, [](int i) { return i % 7 == 3; }), "fields.ip");
  q.fields.push_back({"n", {"21", "24", "28"}});
  cr_assert(walk(e, q) == expect(n, [](int i) { return i == 24; }), "fields.ip and fields.n (int as text)");
  q = {};
  q.text = "hELLO 29";  // case-insensitive substring: 29, 290..299
  cr_assert(walk(e, q) == expect(n, [](int i) { return i == 29 || (i >= 290 && i <= 299); }), "text");
  q.oldest_first = true;
  cr_assert(walk(e, q) == expect(n, [](int i) { return i == 29 || (i >= 290 && i <= 299); }, false),
            "text, oldest first");
}

Test(store_engine, time_windows_anywhere_match_the_received_filter_in_both_directions) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(ensure_query_indexes(*s).ok());
  const int n = 400;
  fill_rich(*s, n);
  QueryEngine e(*s);
  const int64_t sec = 1'000'000'000;
  for (auto [a, b] : {std::pair{0, 1}, std::pair{3, 4}, std::pair{100, 160}, std::pair{398, 400},
                      std::pair{399, 1000}, std::pair{500, 600}}) {
    proto::QuerySpec q;
    q.since = a * sec;
    q.until = b * sec;
    q.limit = 9;
    auto want = expect(n, [&](int i) { return i >= a && i < b; });
    cr_assert(walk(e, q) == want, "window [%d, %d)", a, b);
    q.oldest_first = true;
    std::reverse(want.begin(), want.end());
    cr_assert(walk(e, q) == want, "window [%d, %d) oldest first", a, b);
  }
}

Test(store_engine, a_clock_that_steps_back_still_finds_every_event_of_a_window) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(ensure_query_indexes(*s).ok());
  cr_assert(s->begin().ok());
  const int64_t sec = 1'000'000'000;
  int64_t rec[] = {100 * sec, 200 * sec, 50 * sec, 300 * sec, 101 * sec};  // steps back twice
  for (int64_t r : rec) append(*s, event("T", "x"), r);
  cr_assert(s->commit().ok());
  QueryEngine e(*s);
  proto::QuerySpec q;
  q.since = 100 * sec;
  q.until = 150 * sec;
  cr_assert(walk(e, q) == std::vector<uint64_t>({5, 1}));
}

Test(store_engine, a_filter_no_index_serves_is_bounded_per_page_and_resumes_by_cursor) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(ensure_query_indexes(*s).ok());
  const int n = 1000;
  fill_rich(*s, n);
  QueryEngine e(*s);
  proto::QuerySpec q;
  q.text = "Hello 7";  // 7, 70-79, 700-799
  q.scan = 64;
  q.limit = 1000;
  auto p = e.page(q);
  cr_assert(p.ok());
  cr_assert_eq(p.value().scanned, 64u, "one span walked");
  cr_assert_eq(p.value().events.size(), 0u, "seqs 937-1000 hold no match");
  cr_assert(p.value().next.has_value() && *p.value().next == 937u, "resume below the span");
  int pages = 0;
  auto all = walk(e, q, &pages);
  cr_assert(all == expect(n, [](int i) { return i == 7 || (i >= 70 && i <= 79) || (i >= 700 && i <= 799); }));
  cr_assert_geq(pages, n / 64, "every page was bounded");
}

Test(store_engine, a_common_type_pages_the_same_where_it_is_locally_rare) {
  // Type A is half of the log, so its pages walk seq before the type index
  // (query_engine.cpp, walk_span), but the newest 400 events hold no A and the middle
  // 400 only every other one: walks there come up short and the index finishes the
  // page. Every page must still be full (all but the last) and the rows exactly A's.
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(ensure_query_indexes(*s).ok());
  const int n = 1200;
  auto is_a = [](int i) { return i < 400 || (i < 800 && i % 2 == 0); };
  cr_assert(s->begin().ok());
  for (int i = 0; i < n; ++i) {
    proto::Event e = event(is_a(i) ? "A" : "B", "u");
    proto::Trusted tr = trusted(static_cast<int64_t>(i) * 1'000'000'000);
    cr_assert(s->append(e, tr, proto::event_canonical_body(e, tr)).ok());
  }
  cr_assert(s->commit().ok());
  QueryEngine e(*s);
  for (bool oldest : {false, true}) {
    for (uint32_t limit : {1u, 10u, 50u, 333u}) {
      proto::QuerySpec q;
      q.type = "A";
      q.limit = limit;
      q.oldest_first = oldest;
      std::vector<uint64_t> got;
      for (int pages = 0;; ++pages) {
        cr_assert_lt(pages, n, "the walk never ended");
        auto p = e.page(q);
        cr_assert(p.ok(), "page: %s", p.ok() ? "" : p.error().message.c_str());
        for (const auto& ev : p.value().events) got.push_back(ev.seq);
        if (!p.value().next) break;
        cr_assert_eq(p.value().events.size(), limit, "a page before the last is full (limit %u, %s first)", limit,
                     oldest ? "oldest" : "newest");
        q.after = p.value().next;
      }
      cr_assert(got == expect(n, is_a, !oldest), "A's rows, limit %u, %s first", limit, oldest ? "oldest" : "newest");
    }
  }
}

Test(store_engine, counts_and_windows_come_from_the_query_index_built_in_place) {
  TempDb t;
  auto s = open_store(t.path);
  fill_rich(*s, 200);  // before the index exists: an older database
  auto built = ensure_query_indexes(*s);
  cr_assert(built.ok() && built.value() == 200u, "backfilled all 200");
  cr_assert(ensure_query_indexes(*s).value() == 0u, "a second call changes nothing");
  fill_rich(*s, 100);  // kept by the writer's commits from now on
  QueryEngine e(*s);
  auto info = e.info();
  cr_assert(info.ok());
  cr_assert_eq(info.value().events, 300u);
  cr_assert_eq(info.value().by_type.size(), 3u);
  uint64_t sum = 0;
  for (auto& [ty, c] : info.value().by_type) sum += c;
  cr_assert_eq(sum, 300u);
  cr_assert(info.value().by_type == s->info().value().by_type, "the same as counting the index");
  auto chk = check_query_indexes(*s);
  cr_assert(chk.ok() && !chk.value().has_value(), "%s", chk.ok() && chk.value() ? chk.value()->c_str() : "");
  // A rolled-back append leaves no count behind.
  cr_assert(s->begin().ok());
  append(*s, event("Z", "x"), 5);
  s->rollback();
  cr_assert(!check_query_indexes(*s).value().has_value());
  cr_assert_eq(e.info().value().by_type.size(), 3u);
  // The writer reopens the store after a failed commit: it goes on keeping them.
  cr_assert(s->reopen().ok());
  fill_rich(*s, 50);
  auto after = check_query_indexes(*s);
  cr_assert(after.ok() && !after.value().has_value(), "%s",
            after.ok() && after.value() ? after.value()->c_str() : "");
  cr_assert_eq(QueryEngine(*s).info().value().events, 350u);
  // Tampering with a count is found.
  cr_assert_eq(sqlite3_exec(s->handle(), "UPDATE type_counts SET n = n + 1 WHERE type = 'A'", nullptr, nullptr, nullptr),
               SQLITE_OK);
  auto bad = check_query_indexes(*s);
  cr_assert(bad.ok() && bad.value().has_value(), "a changed count is reported");
}

Test(store_engine, a_database_without_the_query_index_still_answers_windows_and_stats) {
  TempDb t;
  auto s = open_store(t.path);
  fill_rich(*s, 120);
  QueryEngine e(*s);
  cr_assert_not(e.has_index());
  proto::QuerySpec q;
  q.since = 10'000'000'000;
  q.until = 20'000'000'000;
  cr_assert(walk(e, q) == expect(120, [](int i) { return i >= 10 && i < 20; }));
  cr_assert_eq(e.info().value().events, 120u);
}

namespace {
int64_t meta_through(Store& s) {
  std::string v = sql_text(s.handle(), "SELECT IFNULL((SELECT value FROM meta WHERE key = 'index_through'), -1)");
  return std::stoll(v);
}

// Types counted from the events themselves, most first: what stats must say.
std::vector<std::pair<std::string, uint64_t>> true_counts(Store& s) {
  std::vector<std::pair<std::string, uint64_t>> out;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(s.handle(), "SELECT type, COUNT(*) AS n FROM events GROUP BY type ORDER BY n DESC, type", -1,
                     &st, nullptr);
  while (sqlite3_step(st) == SQLITE_ROW)
    out.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)),
                     static_cast<uint64_t>(sqlite3_column_int64(st, 1)));
  sqlite3_finalize(st);
  return out;
}
}  // namespace

// Schema 5 (issue 15): the writer writes time_seq and type_counts once every
// kIndexTailMax records, not in every commit; the records past meta.index_through are
// counted from `events` by every reader, so stats and time windows are exact after every
// commit, across a reopen, and verify still finds a count or a watermark changed by hand.
Test(store_engine, the_tail_past_index_through_is_counted_exactly_at_every_commit) {
  TempDb t;
  auto s = open_store(t.path);
  cr_assert(ensure_query_indexes(*s).ok());
  cr_assert_eq(meta_through(*s), 0);
  const int64_t sec = 1'000'000'000;
  const char* types[] = {"A", "B", "B"};
  int n = 0;
  auto one = [&](int64_t received) {  // one record per transaction, as a lone client's
    cr_assert(s->begin().ok());
    append(*s, event(types[n % 3], "x"), received);
    cr_assert(s->commit().ok());
    ++n;
  };
  auto exact = [&](const char* when) {
    QueryEngine e(*s);
    auto info = e.info();
    cr_assert(info.ok(), "%s", when);
    cr_assert_eq(info.value().events, static_cast<uint64_t>(n), "%s", when);
    cr_assert(info.value().by_type == true_counts(*s), "stats counts every record %s", when);
    auto chk = check_query_indexes(*s);
    cr_assert(chk.ok() && !chk.value().has_value(), "%s: %s", when,
              chk.ok() && chk.value() ? chk.value()->c_str() : "");
    // A window over the newest seconds finds the newest records, whether counted or not.
    proto::QuerySpec q;
    q.since = (n - 3) * sec;
    q.limit = 10;
    cr_assert(walk(e, q) == std::vector<uint64_t>({static_cast<uint64_t>(n), static_cast<uint64_t>(n - 1),
                                                   static_cast<uint64_t>(n - 2)}),
              "newest window %s", when);
    // And a window that ends before the tail is served from the buckets alone.
    q.since = 0;
    q.until = 2 * sec;
    cr_assert(walk(e, q) == std::vector<uint64_t>({2, 1}), "oldest window %s", when);
  };
  for (int i = 0; i < 10; ++i) one(i * sec);
  cr_assert_eq(meta_through(*s), 0, "ten lone commits leave the tables alone");
  cr_assert_eq(sql_text(s->handle(), "SELECT COUNT(*) FROM type_counts"), "0");
  cr_assert_eq(s->index_tail(), 10u);
  exact("with a tail of 10");
  for (int i = 10; i < 300; ++i) one(i * sec);
  cr_assert_eq(meta_through(*s), static_cast<int64_t>(Store::kIndexTailMax), "written once the tail reached the cap");
  cr_assert_eq(s->index_tail(), 300u - Store::kIndexTailMax);
  exact("after one write of the tables");
  // A reopen (cairnd's restart, or its reopen after a failed commit) counts the tail from
  // the file: later writes of the tables include it.
  cr_assert(s->reopen().ok());
  cr_assert_eq(s->index_tail(), 300u - Store::kIndexTailMax);
  one(300 * sec);
  exact("after a reopen");
  // A rolled-back append leaves nothing in the tail.
  cr_assert(s->begin().ok());
  append(*s, event("Z", "x"), 400 * sec);
  s->rollback();
  cr_assert_eq(s->index_tail(), 301u - Store::kIndexTailMax);
  s->request_index_flush();
  one(301 * sec);
  cr_assert_eq(meta_through(*s), 302, "a requested write brings the tables to the head");
  cr_assert_eq(s->index_tail(), 0u);
  exact("with no tail");
  // A watermark moved by hand double-counts (lowered) or hides (raised) records: found.
  for (const char* sql : {"UPDATE meta SET value = 290 WHERE key = 'index_through'",
                          "UPDATE meta SET value = 400 WHERE key = 'index_through'"}) {
    cr_assert_eq(sqlite3_exec(s->handle(), sql, nullptr, nullptr, nullptr), SQLITE_OK);
    auto bad = check_query_indexes(*s);
    cr_assert(bad.ok() && bad.value().has_value(), "%s is reported", sql);
    cr_assert_eq(sqlite3_exec(s->handle(), "UPDATE meta SET value = 302 WHERE key = 'index_through'", nullptr,
                              nullptr, nullptr),
                 SQLITE_OK);
    cr_assert(!check_query_indexes(*s).value().has_value());
  }
}
