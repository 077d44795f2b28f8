// cairn-query-bench — the query engine on a big database, in process (issue 12 rows of
// bench/run): one-second time windows near the start and near the end of the log, stats
// from the maintained counts, and a field and a text filter walking 1M events by bounded
// pages. Prints one JSON object. Builds the query index first if the file lacks it
// (timed: the in-place upgrade cairnd does at start).
//
//   cairn-query-bench --db FILE [--windows N] [--scan-events N]
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../daemon/store/query_engine.hpp"

using namespace cairn;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string arg(int argc, char** argv, const char* name, const char* def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  return def;
}

struct Pct {
  double p50 = 0, p99 = 0;
};
Pct pct(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

int64_t scalar(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
  int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_finalize(st);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = arg(argc, argv, "--db", "");
  int windows = std::atoi(arg(argc, argv, "--windows", "300").c_str());
  uint64_t scan_events = std::strtoull(arg(argc, argv, "--scan-events", "1000000").c_str(), nullptr, 10);
  if (path.empty()) {
    std::fprintf(stderr, "usage: cairn-query-bench --db FILE [--windows N] [--scan-events N]\n");
    return 2;
  }
  double build_ms = 0;
  uint64_t built = 0;
  {
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      std::fprintf(stderr, "open %s: %s\n", path.c_str(), sqlite3_errmsg(db));
      return 1;
    }
    sqlite3_busy_timeout(db, 5000);
    auto t0 = Clock::now();
    auto r = store::ensure_query_indexes_on(db);
    build_ms = ms_since(t0);
    if (!r) {
      std::fprintf(stderr, "%s\n", r.error().message.c_str());
      return 1;
    }
    built = r.value();
    sqlite3_close(db);
  }
  auto s = store::Store::open(path, store::OpenMode::readonly);
  if (!s) {
    std::fprintf(stderr, "%s\n", s.error().message.c_str());
    return 1;
  }
  store::QueryEngine e(*s.value());
  int64_t lo = scalar(s.value()->handle(), "SELECT received FROM events ORDER BY seq LIMIT 1");
  int64_t hi = scalar(s.value()->handle(), "SELECT received FROM events ORDER BY seq DESC LIMIT 1");
  const int64_t sec = 1'000'000'000;
  std::string out = "{\"index_built_events\":" + std::to_string(built) + ",\"index_build_ms\":" + std::to_string(build_ms);
  // Windows one second wide, a little apart, in the first and the last tenth of the log.
  for (int end = 0; end < 2; ++end) {
    std::vector<double> t;
    uint64_t rows = 0;
    int64_t span = (hi - lo) / 10;
    for (int i = 0; i < windows; ++i) {
      proto::QuerySpec q;
      q.since = (end ? hi - span : lo) + span / windows * i;
      q.until = *q.since + sec;
      q.limit = 1000;
      auto t0 = Clock::now();
      auto p = e.page(q);
      t.push_back(ms_since(t0));
      if (!p) return 1;
      rows += p.value().events.size();
    }
    Pct p = pct(t);
    char buf[200];
    std::snprintf(buf, sizeof buf, ",\"window_%s\":{\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"events\":%llu}", end ? "end" : "start",
                  p.p50, p.p99, static_cast<unsigned long long>(rows));
    out += buf;
  }
  {
    std::vector<double> t;
    for (int i = 0; i < 200; ++i) {
      auto t0 = Clock::now();
      auto r = e.info();
      t.push_back(ms_since(t0));
      if (!r) return 1;
    }
    Pct p = pct(t);
    char buf[120];
    std::snprintf(buf, sizeof buf, ",\"stats\":{\"p50_ms\":%.3f,\"p99_ms\":%.3f}", p.p50, p.p99);
    out += buf;
  }
  for (int kind = 0; kind < 2; ++kind) {
    proto::QuerySpec q;
    if (kind == 0) q.fields.push_back({"ip", {"203.0.113.254"}});
    else q.text = "no such words in any message";
    q.limit = 1000;
    uint64_t scanned = 0, matched = 0;
    int pages = 0;
    std::vector<double> page_ms;
    auto t0 = Clock::now();
    while (scanned < scan_events) {
      auto p0 = Clock::now();
      auto p = e.page(q);
      page_ms.push_back(ms_since(p0));
      if (!p) return 1;
      ++pages;
      scanned += p.value().scanned;
      matched += p.value().events.size();
      if (!p.value().next) break;
      q.after = p.value().next;
    }
    double d = ms_since(t0);
    Pct p = pct(page_ms);
    char buf[240];
    std::snprintf(buf, sizeof buf,
                  ",\"%s\":{\"scanned\":%llu,\"matched\":%llu,\"ms\":%.0f,\"events_per_s\":%.0f,\"pages\":%d,\"page_p99_ms\":%.1f}",
                  kind == 0 ? "field_filter" : "text_filter", static_cast<unsigned long long>(scanned),
                  static_cast<unsigned long long>(matched), d, scanned / d * 1000, pages, p.p99);
    out += buf;
  }
  std::printf("%s}\n", out.c_str());
  return 0;
}
