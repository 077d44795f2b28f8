// cairn-baselines — what cairn is measured against, in the same run on the same disk.
//
//   cairn-baselines fsync  --dir D [--seconds S]      256-byte append + fdatasync loop
//   cairn-baselines sqlite-batch --db PATH [--seconds S]
//                          store schema, WAL + synchronous=FULL, 1,000-row transactions,
//                          insert statement prepared once and reused
//   cairn-baselines naive  --db PATH [--seconds S]    one transaction + fsync per event
//   cairn-baselines gen-db --db PATH --events N       a realistic log to query (bench input)
//   cairn-baselines offset --db PATH -c C [--seconds S] [--depth PAGES] [--type T1,T2]
//                          newest-first pages by LIMIT/OFFSET, in-process, one read-only
//                          connection per thread
//   cairn-baselines head   --db PATH                  newest seq in the file (read-only)
//
// sqlite-batch and naive append to PATH (created if missing), so bench/run can measure
// them in slices between the daemon's, against a table that grows like the daemon's.
// Each prints one JSON object. The SQLite baselines go through cairn::store::Store, so
// schema, indexes, triggers and the hash chain are exactly the daemon's, and they insert
// the event cairn-bench sends (same fields and size, a time-ordered idempotency key like
// libcairn's, a fresh `received`).
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
#include "../protocol/pack.hpp"
#include "../seal/hash.hpp"
#include "bench_event.hpp"

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

void put_be64(std::string& s, size_t at, uint64_t v) {
  for (int k = 0; k < 8; ++k) s[at + static_cast<size_t>(k)] = static_cast<char>(v >> (56 - 8 * k));
}

// The event cairn-bench sends (bench_event.hpp; --size is its append frame on the wire),
// stamped the way the daemon stamps it.
size_t g_frame_bytes = 256;
struct Sample {
  proto::Event e;
  proto::Trusted t;
  Sample() {
    e.type = bench::kType;
    e.actor = bench::kActor;
    e.action = bench::kAction;
    e.target = bench::kTarget;
    e.outcome = proto::Outcome::success;
    e.message = std::string(bench::message_len(g_frame_bytes), 'm');
    e.idem.assign(16, '\0');
    t = proto::Trusted{0, 4242, 1000, 1000, "cairn-bench"};
  }
  // Per-row fields; returns the canonical body.
  std::string stamp(uint64_t counter) {
    t.received = wall_ns();
    put_be64(e.idem, 0, static_cast<uint64_t>(t.received));
    put_be64(e.idem, 8, counter);
    return proto::event_canonical_body(e, t);
  }
};

std::unique_ptr<store::Store> open_store(const std::string& path, store::OpenMode mode = store::OpenMode::writer) {
  auto s = store::Store::open(path, mode);
  if (!s) {
    std::fprintf(stderr, "cairn-baselines: open %s: %s\n", path.c_str(), s.error().message.c_str());
    std::exit(1);
  }
  return std::move(s.value());
}

int fail(const char* what) {
  std::fprintf(stderr, "cairn-baselines: %s failed\n", what);
  return 1;
}

int run_fsync(const std::string& dir, double seconds) {
  std::string path = dir + "/fsync-baseline.dat";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return fail("open");
  char buf[256];
  std::fill(buf, buf + sizeof buf, 'x');
  std::vector<int64_t> lat;
  int64_t t0 = now_ns(), end = t0 + static_cast<int64_t>(seconds * 1e9);
  while (now_ns() < end) {
    int64_t s = now_ns();
    if (write(fd, buf, sizeof buf) != static_cast<ssize_t>(sizeof buf) || fdatasync(fd) != 0) return fail("write/fdatasync");
    lat.push_back(now_ns() - s);
  }
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  close(fd);
  unlink(path.c_str());
  size_t n = lat.size();
  std::printf("{\"baseline\":\"fsync\",\"ops\":%zu,\"seconds\":%.3f,\"per_s\":%.1f,\"p50_us\":%.1f,"
              "\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n",
              n, secs, static_cast<double>(n) / secs, pct(lat, 0.5), pct(lat, 0.9), pct(lat, 0.99),
              pct(lat, 0.999), pct(lat, 1.0));
  return 0;
}

int run_sqlite_batch(const std::string& path, double seconds) {
  auto s = open_store(path);
  Sample x;
  long rows = 0;
  int64_t t0 = now_ns(), end = t0 + static_cast<int64_t>(seconds * 1e9);
  while (now_ns() < end) {
    if (!s->begin()) return fail("begin");
    for (int k = 0; k < 1000; ++k, ++rows) {
      std::string body = x.stamp(static_cast<uint64_t>(rows));
      if (!s->append(x.e, x.t, body)) return fail("append");
    }
    if (!s->commit()) return fail("commit");
  }
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  s.reset();
  std::printf("{\"baseline\":\"sqlite_batch\",\"rows\":%ld,\"seconds\":%.3f,\"per_s\":%.1f,\"sqlite\":\"%s\"}\n",
              rows, secs, static_cast<double>(rows) / secs, sqlite3_libversion());
  return 0;
}

int run_naive(const std::string& path, double seconds) {
  auto s = open_store(path);
  Sample x;
  std::vector<int64_t> lat;
  int64_t t0 = now_ns(), end = t0 + static_cast<int64_t>(seconds * 1e9);
  for (uint64_t i = 0; now_ns() < end; ++i) {
    int64_t st = now_ns();
    std::string body = x.stamp(i);
    if (!s->begin() || !s->append(x.e, x.t, body) || !s->commit()) return fail("naive transaction");
    lat.push_back(now_ns() - st);
  }
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  s.reset();
  std::printf("{\"baseline\":\"naive\",\"events\":%zu,\"seconds\":%.3f,\"per_s\":%.1f,\"p50_us\":%.1f,"
              "\"p99_us\":%.1f}\n",
              lat.size(), secs, static_cast<double>(lat.size()) / secs, pct(lat, 0.5), pct(lat, 0.99));
  return 0;
}

// ---- a realistic log for the query and restart scenarios ----

struct TypeMix {
  const char* type;
  int weight;  // out of 100
  uint8_t severity;
  const char* action;
  proto::Outcome outcome;
};
constexpr TypeMix kMix[] = {
    {"DataAccess", 40, 6, "read", proto::Outcome::success},
    {"UserLogin", 18, 6, "login", proto::Outcome::success},
    {"UserLogout", 12, 6, "logout", proto::Outcome::success},
    {"ConfigChange", 8, 5, "update", proto::Outcome::success},
    {"TokenIssued", 8, 6, "issue", proto::Outcome::success},
    {"AuthFailure", 5, 4, "login", proto::Outcome::failure},
    {"PermissionChange", 4, 5, "grant", proto::Outcome::success},
    {"TokenRevoked", 2, 5, "revoke", proto::Outcome::success},
    {"PolicyViolation", 2, 3, "deny", proto::Outcome::failure},
    {"SuspiciousActivity", 1, 2, "flag", proto::Outcome::unknown},
};

struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

const TypeMix& pick_type(Rng& r) {
  int x = static_cast<int>(r.below(100));
  for (const auto& m : kMix) {
    if (x < m.weight) return m;
    x -= m.weight;
  }
  return kMix[0];
}

struct Peer {
  uint32_t pid, uid, gid;
  const char* comm;
};
constexpr Peer kPeers[] = {{812, 0, 0, "sshd"},
                           {1304, 33, 33, "nginx"},
                           {2210, 1000, 1000, "billing-api"},
                           {2977, 1001, 1001, "etl-worker"},
                           {3150, 0, 0, "sudo"}};

// One event of the mix, received at `received` (ns). Bodies are 200-400 bytes.
std::string realistic(Rng& r, uint64_t counter, int64_t received, proto::Event& e, proto::Trusted& t) {
  const TypeMix& m = pick_type(r);
  e = proto::Event{};
  e.type = m.type;
  e.severity = m.severity;
  char buf[96];
  bool service = m.type == std::string_view("DataAccess") && r.below(4) == 0;
  if (service) std::snprintf(buf, sizeof buf, "svc-%02u", static_cast<unsigned>(r.below(20)));
  else std::snprintf(buf, sizeof buf, "u%04u", static_cast<unsigned>(r.below(500)));
  e.actor = buf;
  e.action = m.action;
  std::snprintf(buf, sizeof buf, "/srv/data/p%02u/obj-%05u", static_cast<unsigned>(r.below(50)),
                static_cast<unsigned>(r.below(100000)));
  e.target = buf;
  e.outcome = m.outcome;
  if (r.below(2) == 0) {
    static const char* kMessages[] = {
        "access granted by role policy", "session opened from a known device",
        "rate limit close to threshold for this principal",
        "configuration value changed through the admin console; previous value kept in history",
        "token scope narrowed to read-only"};
    e.message = kMessages[r.below(5)];
  }
  // fields: canonical, keys sorted bytewise.
  std::string f;
  proto::detail::Packer pk(f);
  std::snprintf(buf, sizeof buf, "10.%u.%u.%u", static_cast<unsigned>(r.below(256)),
                static_cast<unsigned>(r.below(256)), static_cast<unsigned>(r.below(256)));
  if (m.type == std::string_view("DataAccess")) {
    pk.map(3);
    pk.str("bytes");
    pk.u64(r.below(1 << 20));
    pk.str("ip");
    pk.str(buf);
    pk.str("rows");
    pk.u64(r.below(5000));
  } else {
    pk.map(2);
    pk.str("ip");
    pk.str(buf);
    pk.str("method");
    pk.str(r.below(3) == 0 ? "password" : "publickey");
  }
  e.fields = std::move(f);
  e.idem.assign(16, '\0');
  put_be64(e.idem, 0, static_cast<uint64_t>(received));
  put_be64(e.idem, 8, counter);
  const Peer& p = kPeers[r.below(sizeof kPeers / sizeof kPeers[0])];
  t = proto::Trusted{received, p.pid, p.uid, p.gid, p.comm};
  return proto::event_canonical_body(e, t);
}

// Tops the database at `path` up to `events` rows, spread over the last 30 days. Bench
// input only: it runs with synchronous=OFF, since a crash here just means regenerating.
int run_gen_db(const std::string& path, long events) {
  auto s = open_store(path);
  sqlite3_exec(s->handle(), "PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;", nullptr, nullptr, nullptr);
  long have = static_cast<long>(s->head_seq());
  int64_t t0 = now_ns();
  const int64_t span = 30LL * 24 * 3600 * 1'000'000'000;
  const int64_t start = wall_ns() - span;
  Rng r{0x2545f4914f6cdd1dull ^ static_cast<uint64_t>(have)};
  proto::Event e;
  proto::Trusted t;
  for (long i = have; i < events;) {
    if (!s->begin()) return fail("begin");
    for (int k = 0; k < 50000 && i < events; ++k, ++i) {
      int64_t received = start + static_cast<int64_t>(static_cast<double>(span) * static_cast<double>(i) / static_cast<double>(events));
      std::string body = realistic(r, static_cast<uint64_t>(i), received, e, t);
      if (!s->append(e, t, body)) return fail("append");
    }
    if (!s->commit()) return fail("commit");
  }
  if (!s->checkpoint()) return fail("checkpoint");
  std::printf("{\"gen_db\":\"%s\",\"events\":%ld,\"added\":%ld,\"seconds\":%.1f}\n", path.c_str(), events,
              std::max(0L, events - have), static_cast<double>(now_ns() - t0) / 1e9);
  return 0;
}

// The same walk as cairn-bench query (newest first, `depth` pages deep, then again from
// the newest page), but by OFFSET: page p costs skipping p * 50 rows.
int run_offset(const std::string& path, int conns, double seconds, long depth, const std::vector<std::string>& types) {
  std::mutex mu;
  std::vector<int64_t> lat;
  std::atomic<long> failed{0};
  int64_t t0 = now_ns(), end = t0 + static_cast<int64_t>(seconds * 1e9);
  std::vector<std::thread> threads;
  for (int c = 0; c < conns; ++c) {
    threads.emplace_back([&, c] {
      auto s = open_store(path, store::OpenMode::readonly);
      std::vector<int64_t> my;
      proto::QuerySpec q;
      q.type = types[static_cast<size_t>(c) % types.size()];
      q.limit = 50;
      long p = 0;
      while (now_ns() < end) {
        int64_t st = now_ns();
        auto r = s->query_offset(q, static_cast<uint64_t>(p) * q.limit);
        my.push_back(now_ns() - st);
        if (!r) {
          ++failed;
          break;
        }
        p = (r.value().events.size() < q.limit || p + 1 >= depth) ? 0 : p + 1;
      }
      std::lock_guard lk(mu);
      lat.insert(lat.end(), my.begin(), my.end());
    });
  }
  for (auto& t : threads) t.join();
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  std::printf("{\"baseline\":\"offset\",\"pages\":%zu,\"seconds\":%.3f,\"pages_per_s\":%.1f,\"p50_us\":%.1f,"
              "\"p95_us\":%.1f,\"p99_us\":%.1f,\"failed\":%ld}\n",
              lat.size(), secs, static_cast<double>(lat.size()) / secs, pct(lat, 0.5), pct(lat, 0.95),
              pct(lat, 0.99), failed.load());
  return failed.load() ? 1 : 0;
}

// The raw SHA-256 rate over the same bytes verify hashes: every record's body read in
// seq order and leaf-hashed, nothing else (the floor for cairn verify, same run).
int run_hash_db(const std::string& path) {
  auto s = open_store(path, store::OpenMode::readonly);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(s->handle(), "SELECT body FROM events ORDER BY seq", -1, &st, nullptr);
  int64_t t0 = now_ns();
  uint64_t n = 0, bytes = 0;
  uint8_t acc = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    std::string_view b(static_cast<const char*>(sqlite3_column_blob(st, 0)),
                       static_cast<size_t>(sqlite3_column_bytes(st, 0)));
    acc ^= seal::leaf_hash(b)[0];
    ++n;
    bytes += b.size();
  }
  sqlite3_finalize(st);
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  std::printf("{\"records\":%llu,\"bytes\":%llu,\"seconds\":%.2f,\"per_s\":%.0f,\"x\":%d}\n",
              static_cast<unsigned long long>(n), static_cast<unsigned long long>(bytes), secs,
              static_cast<double>(n) / secs, acc);
  return 0;
}

// Bytes on disk per table and index (SQLite's dbstat), and per record.
int run_db_bytes(const std::string& path) {
  auto s = open_store(path, store::OpenMode::readonly);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(s->handle(), "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name", -1, &st, nullptr) !=
      SQLITE_OK)
    return fail("dbstat (SQLite without SQLITE_ENABLE_DBSTAT_VTAB?)");
  std::string out = "{\"records\":" + std::to_string(s->head_seq());
  while (sqlite3_step(st) == SQLITE_ROW)
    out += ",\"" + std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) +
           "\":" + std::to_string(sqlite3_column_int64(st, 1));
  sqlite3_finalize(st);
  std::printf("%s}\n", out.c_str());
  return 0;
}

int run_head(const std::string& path) {
  auto s = open_store(path, store::OpenMode::readonly);
  std::printf("{\"head_seq\":%llu}\n", static_cast<unsigned long long>(s->head_seq()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: cairn-baselines fsync|sqlite-batch|naive|gen-db|offset|head ... (see bench/baselines.cpp)\n");
    return 2;
  }
  std::string cmd = argv[1];
  std::string dir = arg(argc, argv, "--dir", ".");
  double seconds = std::atof(arg(argc, argv, "--seconds", "3").c_str());
  std::string db = arg(argc, argv, "--db", "bench.db");
  g_frame_bytes = static_cast<size_t>(std::atol(arg(argc, argv, "--size", "256").c_str()));
  if (cmd == "fsync") return run_fsync(dir, seconds);
  if (cmd == "sqlite-batch") return run_sqlite_batch(db, seconds);
  if (cmd == "naive") return run_naive(db, seconds);
  if (cmd == "gen-db") return run_gen_db(db, std::atol(arg(argc, argv, "--events", "1000000").c_str()));
  if (cmd == "offset") {
    auto types = cairn::bench::split(arg(argc, argv, "--type", "DataAccess"));
    if (types.empty()) return 2;
    return run_offset(db, std::atoi(arg(argc, argv, "-c", "40").c_str()), seconds,
                      std::max(1L, std::atol(arg(argc, argv, "--depth", "200").c_str())), types);
  }
  if (cmd == "head") return run_head(db);
  if (cmd == "hash-db") return run_hash_db(db);
  if (cmd == "db-bytes") return run_db_bytes(db);
  std::fprintf(stderr, "cairn-baselines: unknown command %s\n", cmd.c_str());
  return 2;
}
