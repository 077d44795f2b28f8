// cairn-baselines — what cairn is measured against, in the same run on the same disk.
//
//   cairn-baselines fsync  --dir D [--seconds S]      256-byte append + fdatasync loop
//   cairn-baselines sqlite-batch --dir D [--rows N]   store schema, WAL+FULL, 1,000-row
//                                                     transactions, statement reused
//   cairn-baselines naive  --dir D [--events N]       one transaction + fsync per event
//   cairn-baselines gen-db --db PATH --events N       build a large db fast (bench input)
//   cairn-baselines offset --db PATH -c C --pages N   OFFSET paging, in-process
//
// Each prints one JSON object. The SQLite baselines go through cairn::store::Store, so
// schema, indexes, triggers and the hash chain are exactly the daemon's.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../daemon/store/store.hpp"

using namespace cairn;

namespace {

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t wall_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

double pct(std::vector<int64_t>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))]) / 1000.0;
}

std::string arg(int argc, char** argv, const char* name, const char* def) {
  for (int i = 2; i + 1 < argc; ++i)
    if (std::string(argv[i]) == name) return argv[i + 1];
  return def;
}

// The event cairn-bench sends (same fields, ~256 bytes of body), stamped the way the
// daemon stamps it: fresh `received`, and a time-ordered idempotency key like libcairn's.
struct Sample {
  proto::Event e;
  proto::Trusted t;
  explicit Sample(int i) {
    e.type = (i % 100 == 0) ? "AuthFailure" : "DataAccess";
    e.actor = "bench-user";
    e.action = "read";
    e.target = "/srv/data/object";
    e.outcome = proto::Outcome::success;
    e.message = std::string(136, 'm');
    t = proto::Trusted{0, 4242, 1000, 1000, "cairn-bench"};
  }
  // Per-row fields; returns the canonical body.
  std::string stamp(uint64_t counter) {
    t.received = wall_ns();
    e.idem.resize(16);
    for (int k = 0; k < 8; ++k) e.idem[k] = static_cast<char>(static_cast<uint64_t>(t.received) >> (56 - 8 * k));
    for (int k = 0; k < 8; ++k) e.idem[8 + k] = static_cast<char>(counter >> (56 - 8 * k));
    return proto::event_canonical_body(e, t);
  }
};

std::unique_ptr<store::Store> open_store(const std::string& path) {
  auto s = store::Store::open(path, store::OpenMode::writer);
  if (!s) {
    std::fprintf(stderr, "open %s: %s\n", path.c_str(), s.error().message.c_str());
    std::exit(1);
  }
  return std::move(s.value());
}

int run_fsync(const std::string& dir, double seconds) {
  std::string path = dir + "/fsync-baseline.dat";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return 1;
  char buf[256];
  std::fill(buf, buf + sizeof buf, 'x');
  std::vector<int64_t> lat;
  int64_t end = now_ns() + static_cast<int64_t>(seconds * 1e9), t0 = now_ns();
  while (now_ns() < end) {
    int64_t s = now_ns();
    if (write(fd, buf, sizeof buf) != static_cast<ssize_t>(sizeof buf) || fdatasync(fd) != 0) return 1;
    lat.push_back(now_ns() - s);
  }
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  close(fd);
  unlink(path.c_str());
  size_t n = lat.size();
  std::printf("{\"baseline\":\"fsync\",\"ops\":%zu,\"per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
              "\"max_us\":%.1f}\n",
              n, static_cast<double>(n) / secs, pct(lat, 0.5), pct(lat, 0.99), pct(lat, 1.0));
  return 0;
}

int run_sqlite_batch(const std::string& dir, long rows) {
  std::string path = dir + "/batch-baseline.db";
  unlink(path.c_str());
  auto s = open_store(path);
  Sample x(1);
  int64_t t0 = now_ns();
  for (long i = 0; i < rows;) {
    if (!s->begin()) return 1;
    for (int k = 0; k < 1000 && i < rows; ++k, ++i) {
      std::string body = x.stamp(static_cast<uint64_t>(i));
      if (!s->append(x.e, x.t, body)) return 1;
    }
    if (!s->commit()) return 1;
  }
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  s.reset();
  for (const char* suf : {"", "-wal", "-shm", "-lock"}) unlink((path + suf).c_str());
  std::printf("{\"baseline\":\"sqlite_batch\",\"rows\":%ld,\"per_s\":%.1f}\n", rows,
              static_cast<double>(rows) / secs);
  return 0;
}

int run_naive(const std::string& dir, long events) {
  std::string path = dir + "/naive-baseline.db";
  unlink(path.c_str());
  auto s = open_store(path);
  Sample x(1);
  std::vector<int64_t> lat;
  int64_t t0 = now_ns();
  for (long i = 0; i < events; ++i) {
    int64_t st = now_ns();
    std::string body = x.stamp(static_cast<uint64_t>(i));
    if (!s->begin() || !s->append(x.e, x.t, body) || !s->commit()) return 1;
    lat.push_back(now_ns() - st);
  }
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  s.reset();
  for (const char* suf : {"", "-wal", "-shm", "-lock"}) unlink((path + suf).c_str());
  std::printf("{\"baseline\":\"naive\",\"events\":%ld,\"per_s\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
              events, static_cast<double>(events) / secs, pct(lat, 0.5), pct(lat, 0.99));
  return 0;
}

int run_gen_db(const std::string& path, long events) {
  auto s = open_store(path);
  long have = static_cast<long>(s->head_seq());
  int64_t t0 = now_ns();
  std::vector<Sample> samples;
  for (int i = 0; i < 100; ++i) samples.emplace_back(i);
  for (long i = have; i < events;) {
    if (!s->begin()) return 1;
    for (int k = 0; k < 20000 && i < events; ++k, ++i) {
      Sample& x = samples[static_cast<size_t>(i % 100)];
      std::string body = x.stamp(static_cast<uint64_t>(i));
      if (!s->append(x.e, x.t, body)) return 1;
    }
    if (!s->commit()) return 1;
  }
  (void)s->checkpoint();
  std::printf("{\"gen_db\":\"%s\",\"events\":%ld,\"added\":%ld,\"seconds\":%.1f}\n", path.c_str(),
              events, std::max(0L, events - have), static_cast<double>(now_ns() - t0) / 1e9);
  return 0;
}

int run_offset(const std::string& path, int conns, long pages) {
  std::mutex mu;
  std::vector<int64_t> lat;
  int64_t t0 = now_ns();
  std::vector<std::thread> threads;
  for (int c = 0; c < conns; ++c) {
    threads.emplace_back([&] {
      auto s = store::Store::open(path, store::OpenMode::readonly);
      if (!s) return;
      std::vector<int64_t> my;
      proto::QuerySpec q;
      q.type = "DataAccess";
      q.limit = 50;
      for (long p = 0; p < pages; ++p) {
        int64_t st = now_ns();
        auto r = s.value()->query_offset(q, static_cast<uint64_t>(p) * 50);
        my.push_back(now_ns() - st);
        if (!r) break;
      }
      std::lock_guard lk(mu);
      lat.insert(lat.end(), my.begin(), my.end());
    });
  }
  for (auto& t : threads) t.join();
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  std::printf("{\"baseline\":\"offset\",\"pages\":%zu,\"pages_per_s\":%.1f,\"p50_us\":%.1f,"
              "\"p99_us\":%.1f}\n",
              lat.size(), static_cast<double>(lat.size()) / secs, pct(lat, 0.5), pct(lat, 0.99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: cairn-baselines fsync|sqlite-batch|naive|gen-db|offset ...\n");
    return 2;
  }
  std::string cmd = argv[1];
  std::string dir = arg(argc, argv, "--dir", ".");
  if (cmd == "fsync") return run_fsync(dir, std::atof(arg(argc, argv, "--seconds", "3").c_str()));
  if (cmd == "sqlite-batch") return run_sqlite_batch(dir, std::atol(arg(argc, argv, "--rows", "200000").c_str()));
  if (cmd == "naive") return run_naive(dir, std::atol(arg(argc, argv, "--events", "2000").c_str()));
  if (cmd == "gen-db")
    return run_gen_db(arg(argc, argv, "--db", "bench.db"), std::atol(arg(argc, argv, "--events", "1000000").c_str()));
  if (cmd == "offset")
    return run_offset(arg(argc, argv, "--db", "bench.db"), std::atoi(arg(argc, argv, "-c", "40").c_str()),
                      std::atol(arg(argc, argv, "--pages", "200").c_str()));
  std::fprintf(stderr, "cairn-baselines: unknown command %s\n", cmd.c_str());
  return 2;
}
