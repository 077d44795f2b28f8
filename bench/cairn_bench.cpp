// cairn-bench — load generator for cairnd, through libcairn (what real clients use).
//
//   cairn-bench append --socket S -c CONNS -n EVENTS_PER_CONN -w WINDOW --size BYTES
//                      [--critical FRACTION] [--pid DAEMON_PID]
//   cairn-bench query  --socket S -c CONNS --pages N --type T --limit 50
//
// Prints one JSON object: throughput, latency percentiles (microseconds), and for
// append the daemon's commit figures (from its stats op) and peak RSS (from /proc).
#include <cairn/cairn.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../protocol/message.hpp"

namespace {

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct Opts {
  std::string mode = "append";
  std::string socket;
  int conns = 1;
  long events = 1000;
  unsigned window = 1;
  size_t size = 256;
  double critical = 0;
  long pid = 0;
  long pages = 1000;
  std::string type = "DataAccess";
  unsigned limit = 50;
};

std::string pct_json(std::vector<int64_t>& v, const char* prefix) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) -> double {
    if (v.empty()) return 0;
    size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
    return static_cast<double>(v[i]) / 1000.0;
  };
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "\"%s_p50_us\":%.1f,\"%s_p90_us\":%.1f,\"%s_p95_us\":%.1f,\"%s_p99_us\":%.1f,"
                "\"%s_p999_us\":%.1f,\"%s_max_us\":%.1f,\"%s_count\":%zu",
                prefix, at(0.5), prefix, at(0.9), prefix, at(0.95), prefix, at(0.99), prefix,
                at(0.999), prefix, v.empty() ? 0.0 : static_cast<double>(v.back()) / 1000.0, prefix,
                v.size());
  return buf;
}

long rss_hwm_kib(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

cairn_client* connect(const Opts& o) {
  cairn_options co;
  cairn_options_init(&co);
  co.client_name = "cairn-bench";
  co.max_inflight = std::max(1u, o.window);
  co.reconnect_timeout_ms = 5000;
  cairn_client* c = nullptr;
  int rc = cairn_open(&c, o.socket.c_str(), &co);
  if (rc != 0) {
    std::fprintf(stderr, "cairn-bench: connect %s: %s\n", o.socket.c_str(), cairn_strerror(rc));
    std::exit(2);
  }
  return c;
}

// Reads commits/events_committed from the daemon's stats op.
bool daemon_stats(const Opts& o, cairn::proto::Stats& out) {
  cairn_client* c = connect(o);
  void* buf = nullptr;
  size_t len = 0;
  int rc = cairn_request(c, "stats", nullptr, 0, &buf, &len);
  cairn_close(c);
  if (rc != 0) return false;
  auto d = cairn::proto::Decoded::parse({static_cast<const uint8_t*>(buf), len}, 16);
  bool ok = false;
  if (d) {
    auto r = cairn::proto::reply_from(d.value());
    if (r) {
      auto s = cairn::proto::stats_from(r.value());
      if (s) {
        out = s.value();
        ok = true;
      }
    }
  }
  cairn_free(buf);
  return ok;
}

int run_append(const Opts& o) {
  std::mutex mu;
  std::vector<int64_t> lat, crit_lat;
  std::atomic<long> failed{0}, durable{0};
  cairn::proto::Stats before, after;
  bool have_stats = daemon_stats(o, before);
  std::string message(o.size > 120 ? o.size - 120 : 8, 'm');  // ~size bytes on the wire
  int64_t t0 = now_ns();
  std::vector<std::thread> threads;
  for (int t = 0; t < o.conns; ++t) {
    threads.emplace_back([&, t] {
      cairn_client* c = connect(o);
      std::vector<int64_t> my_lat, my_crit;
      my_lat.reserve(static_cast<size_t>(o.events));
      struct Sent {
        int64_t at;
        bool critical;
      };
      std::deque<Sent> inflight;
      uint64_t rnd = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(t + 1);
      auto collect = [&] {
        uint64_t ticket;
        cairn_ack ack{};
        int rc = cairn_next_ack(c, &ticket, &ack);
        int64_t d = now_ns() - inflight.front().at;
        if (rc != 0) ++failed;
        else if (ack.durable) ++durable;
        (inflight.front().critical ? my_crit : my_lat).push_back(d);
        inflight.pop_front();
      };
      for (long i = 0; i < o.events; ++i) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        bool critical = o.critical > 0 && static_cast<double>(rnd % 1'000'000) < o.critical * 1e6;
        cairn_event e{};
        e.type = critical ? "AuthFailure" : "DataAccess";
        e.severity = -1;
        e.actor = "bench-user";
        e.action = "read";
        e.target = "/srv/data/object";
        e.outcome = "success";
        e.message = message.c_str();
        uint64_t ticket;
        inflight.push_back({now_ns(), critical});
        if (cairn_append_async(c, &e, &ticket) != 0) {
          ++failed;
          inflight.pop_back();
          continue;
        }
        while (inflight.size() >= o.window) collect();
      }
      while (!inflight.empty()) collect();
      cairn_close(c);
      std::lock_guard lk(mu);
      lat.insert(lat.end(), my_lat.begin(), my_lat.end());
      crit_lat.insert(crit_lat.end(), my_crit.begin(), my_crit.end());
    });
  }
  for (auto& th : threads) th.join();
  int64_t t1 = now_ns();
  if (have_stats) have_stats = daemon_stats(o, after);
  double secs = static_cast<double>(t1 - t0) / 1e9;
  long total = static_cast<long>(lat.size() + crit_lat.size());
  std::vector<int64_t> all = lat;
  all.insert(all.end(), crit_lat.begin(), crit_lat.end());
  uint64_t commits = have_stats ? after.commits - before.commits : 0;
  uint64_t committed = have_stats ? after.events_committed - before.events_committed : 0;
  std::printf("{\"mode\":\"append\",\"conns\":%d,\"window\":%u,\"events\":%ld,\"seconds\":%.3f,"
              "\"events_per_s\":%.1f,\"failed\":%ld,\"durable\":%ld,%s,%s,\"commits\":%llu,"
              "\"events_per_commit\":%.1f,\"daemon_rss_hwm_kib\":%ld}\n",
              o.conns, o.window, total, secs, static_cast<double>(total) / secs, failed.load(),
              durable.load(), pct_json(all, "ack").c_str(), pct_json(crit_lat, "critical").c_str(),
              static_cast<unsigned long long>(commits),
              commits ? static_cast<double>(committed) / static_cast<double>(commits) : 0.0,
              o.pid ? rss_hwm_kib(o.pid) : 0L);
  return failed.load() ? 1 : 0;
}

int run_query(const Opts& o) {
  std::mutex mu;
  std::vector<int64_t> lat;
  std::atomic<long> failed{0}, rows{0};
  int64_t t0 = now_ns();
  std::vector<std::thread> threads;
  for (int t = 0; t < o.conns; ++t) {
    threads.emplace_back([&] {
      cairn_client* c = connect(o);
      std::vector<int64_t> my;
      uint64_t after = 0;  // 0: start from the newest page
      for (long p = 0; p < o.pages; ++p) {
        cairn::proto::QuerySpec spec;
        spec.type = o.type;
        spec.limit = o.limit;
        if (after != 0) spec.after = after;
        std::string args;
        cairn::proto::encode_query_args(args, spec);
        void* buf = nullptr;
        size_t len = 0;
        int64_t s = now_ns();
        int rc = cairn_request(c, "query", args.data(), args.size(), &buf, &len);
        my.push_back(now_ns() - s);
        if (rc != 0) {
          ++failed;
          continue;
        }
        // Follow the cursor; wrap to the newest page at the end.
        auto d = cairn::proto::Decoded::parse({static_cast<const uint8_t*>(buf), len}, 16);
        after = 0;
        if (d) {
          const msgpack_object* next = cairn::proto::map_get(d.value().root(), "next");
          const msgpack_object* evs = cairn::proto::map_get(d.value().root(), "events");
          if (evs && evs->type == MSGPACK_OBJECT_ARRAY) rows += evs->via.array.size;
          if (next && next->type == MSGPACK_OBJECT_POSITIVE_INTEGER) after = next->via.u64;
        }
        cairn_free(buf);
      }
      cairn_close(c);
      std::lock_guard lk(mu);
      lat.insert(lat.end(), my.begin(), my.end());
    });
  }
  for (auto& th : threads) th.join();
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  std::printf("{\"mode\":\"query\",\"conns\":%d,\"pages\":%zu,\"rows\":%ld,\"seconds\":%.3f,"
              "\"pages_per_s\":%.1f,\"failed\":%ld,%s}\n",
              o.conns, lat.size(), rows.load(), secs, static_cast<double>(lat.size()) / secs,
              failed.load(), pct_json(lat, "page").c_str());
  return failed.load() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Opts o;
  if (argc < 2) {
    std::fprintf(stderr, "usage: cairn-bench append|query --socket S [options]; see bench/README\n");
    return 2;
  }
  o.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "cairn-bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--socket") o.socket = val();
    else if (a == "-c") o.conns = std::atoi(val().c_str());
    else if (a == "-n") o.events = std::atol(val().c_str());
    else if (a == "-w") o.window = static_cast<unsigned>(std::atoi(val().c_str()));
    else if (a == "--size") o.size = static_cast<size_t>(std::atol(val().c_str()));
    else if (a == "--critical") o.critical = std::atof(val().c_str());
    else if (a == "--pid") o.pid = std::atol(val().c_str());
    else if (a == "--pages") o.pages = std::atol(val().c_str());
    else if (a == "--type") o.type = val();
    else if (a == "--limit") o.limit = static_cast<unsigned>(std::atoi(val().c_str()));
    else {
      std::fprintf(stderr, "cairn-bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (o.socket.empty() || o.conns < 1 || o.window < 1) {
    std::fprintf(stderr, "cairn-bench: --socket, -c >= 1 and -w >= 1 are required\n");
    return 2;
  }
  return o.mode == "query" ? run_query(o) : run_append(o);
}
