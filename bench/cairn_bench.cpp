// cairn-bench — load generator for cairnd, through libcairn (what real clients use).
//
//   cairn-bench append --socket S -c CONNS -w WINDOW [-n EVENTS_PER_CONN] [--seconds T]
//                      [--size BYTES] [--critical FRACTION] [--pid DAEMON_PID]
//                      [--no-stats] [--trace FILE] [--warmup SECONDS]
//   cairn-bench query  --socket S -c CONNS [--seconds T | --pages N] [--depth PAGES]
//                      [--type T1,T2,...] [--limit 50]
//
// append: CONNS connections, each keeping up to WINDOW events in flight, until each has
// sent EVENTS_PER_CONN or T seconds have passed (whichever is first; then the window
// drains). Each event's append frame is BYTES long on the wire; FRACTION of them are
// critical (type AuthFailure) and reported separately. Latency is send -> ack as the
// client sees it. With --warmup, events sent in the first SECONDS (the start-up burst
// of C x W events at once) count for neither latency nor throughput.
// query: CONNS connections, each walking newest-first pages of `limit` events of one
// type (round-robin over the list) by cursor, back to the newest page after DEPTH pages
// or at the end of the log.
//
// Prints one JSON object on stdout: throughput, latency percentiles (microseconds), and
// for append the daemon's commits (from its stats op) and peak RSS (from /proc). All
// connections are opened before the clock starts.
#include <cairn/cairn.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <barrier>
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
#include "bench_event.hpp"

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
  long events = 0;        // per connection; 0 = no limit (then --seconds must be set)
  double seconds = 0;     // 0 = no limit
  double warmup = 0;      // append: seconds at the start left out of the figures
  unsigned window = 1;
  size_t size = 256;      // append frame bytes on the wire
  double critical = 0;
  long pid = 0;
  bool stats = true;
  std::string trace;
  long pages = 0;         // per connection (query); 0 = no limit
  long depth = 1000;      // pages walked before starting again from the newest
  std::vector<std::string> types{"DataAccess"};
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

long proc_status_kib(long pid, const char* key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  size_t n = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, n, key) == 0) return std::atol(line.c_str() + n);
  return 0;
}

cairn_client* connect(const Opts& o) {
  cairn_options co;
  cairn_options_init(&co);
  co.client_name = "cairn-bench";
  co.max_inflight = std::max(1u, o.window);
  co.reconnect_timeout_ms = 10000;
  cairn_client* c = nullptr;
  int rc = cairn_open(&c, o.socket.c_str(), &co);
  if (rc != 0) {
    std::fprintf(stderr, "cairn-bench: connect %s: %s\n", o.socket.c_str(), cairn_strerror(rc));
    std::exit(2);
  }
  return c;
}

// ---- a non-allocating msgpack walk, so the load generator spends its CPU on the
// protocol and not on unpacking pages it throws away (it shares 2 cores with cairnd) ----

bool read_be(const uint8_t*& p, const uint8_t* end, int bytes, uint64_t& out) {
  if (end - p < bytes) return false;
  out = 0;
  for (int i = 0; i < bytes; ++i) out = out << 8 | *p++;
  return true;
}

// Advances p past one msgpack object (containers included). False if truncated/invalid.
bool skip_object(const uint8_t*& p, const uint8_t* end) {
  uint64_t pending = 1;
  while (pending > 0) {
    if (p >= end) return false;
    uint8_t b = *p++;
    --pending;
    uint64_t n = 0;  // payload bytes after the header
    if (b <= 0x7f || b >= 0xe0) continue;
    if ((b & 0xf0) == 0x80) { pending += 2u * (b & 0x0fu); continue; }
    if ((b & 0xf0) == 0x90) { pending += b & 0x0fu; continue; }
    if ((b & 0xe0) == 0xa0) {
      n = b & 0x1fu;
    } else {
      uint64_t len = 0;
      switch (b) {
        case 0xc0: case 0xc2: case 0xc3: continue;
        case 0xc4: case 0xd9: if (!read_be(p, end, 1, len)) return false; n = len; break;
        case 0xc5: case 0xda: if (!read_be(p, end, 2, len)) return false; n = len; break;
        case 0xc6: case 0xdb: if (!read_be(p, end, 4, len)) return false; n = len; break;
        case 0xc7: if (!read_be(p, end, 1, len)) return false; n = len + 1; break;
        case 0xc8: if (!read_be(p, end, 2, len)) return false; n = len + 1; break;
        case 0xc9: if (!read_be(p, end, 4, len)) return false; n = len + 1; break;
        case 0xca: case 0xce: case 0xd2: n = 4; break;
        case 0xcb: case 0xcf: case 0xd3: n = 8; break;
        case 0xcc: case 0xd0: n = 1; break;
        case 0xcd: case 0xd1: n = 2; break;
        case 0xd4: n = 2; break;
        case 0xd5: n = 3; break;
        case 0xd6: n = 5; break;
        case 0xd7: n = 9; break;
        case 0xd8: n = 17; break;
        case 0xdc: if (!read_be(p, end, 2, len)) return false; pending += len; continue;
        case 0xdd: if (!read_be(p, end, 4, len)) return false; pending += len; continue;
        case 0xde: if (!read_be(p, end, 2, len)) return false; pending += 2 * len; continue;
        case 0xdf: if (!read_be(p, end, 4, len)) return false; pending += 2 * len; continue;
        default: return false;  // 0xc1 is never used
      }
    }
    if (static_cast<uint64_t>(end - p) < n) return false;
    p += n;
  }
  return true;
}

bool read_str(const uint8_t*& p, const uint8_t* end, std::string_view& out) {
  if (p >= end) return false;
  uint8_t b = *p++;
  uint64_t n = 0;
  if ((b & 0xe0) == 0xa0) n = b & 0x1fu;
  else if (b == 0xd9) { if (!read_be(p, end, 1, n)) return false; }
  else if (b == 0xda) { if (!read_be(p, end, 2, n)) return false; }
  else if (b == 0xdb) { if (!read_be(p, end, 4, n)) return false; }
  else return false;
  if (static_cast<uint64_t>(end - p) < n) return false;
  out = {reinterpret_cast<const char*>(p), n};
  p += n;
  return true;
}

// A query reply: ok, how many events, and the cursor (0 when `next` is nil).
struct PageInfo {
  bool ok = false;
  uint64_t events = 0;
  uint64_t next = 0;
};

bool scan_page(const uint8_t* p, const uint8_t* end, PageInfo& out) {
  if (p >= end) return false;
  uint64_t pairs = 0;
  uint8_t b = *p++;
  if ((b & 0xf0) == 0x80) pairs = b & 0x0fu;
  else if (b == 0xde) { if (!read_be(p, end, 2, pairs)) return false; }
  else if (b == 0xdf) { if (!read_be(p, end, 4, pairs)) return false; }
  else return false;
  for (uint64_t i = 0; i < pairs; ++i) {
    std::string_view key;
    if (!read_str(p, end, key)) return false;
    if (key == "ok" && p < end) {
      out.ok = *p == 0xc3;
    } else if (key == "events" && p < end) {
      uint8_t a = *p;
      uint64_t n = 0;
      const uint8_t* q = p + 1;
      if ((a & 0xf0) == 0x90) n = a & 0x0fu;
      else if (a == 0xdc) { if (!read_be(q, end, 2, n)) return false; }
      else if (a == 0xdd) { if (!read_be(q, end, 4, n)) return false; }
      out.events = n;
    } else if (key == "next" && p < end) {
      uint8_t v = *p;
      const uint8_t* q = p + 1;
      uint64_t n = 0;
      if (v <= 0x7f) n = v;
      else if (v == 0xcc) { if (!read_be(q, end, 1, n)) return false; }
      else if (v == 0xcd) { if (!read_be(q, end, 2, n)) return false; }
      else if (v == 0xce) { if (!read_be(q, end, 4, n)) return false; }
      else if (v == 0xcf) { if (!read_be(q, end, 8, n)) return false; }
      out.next = n;
    }
    if (!skip_object(p, end)) return false;
  }
  return true;
}

// Reads commits/events_committed/flush_mode from the daemon's stats op.
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

bool done_by(const Opts& o, long sent, int64_t deadline) {
  if (o.events > 0 && sent >= o.events) return true;
  return deadline != 0 && (sent & 15) == 0 && now_ns() >= deadline;
}

int run_append(const Opts& o) {
  std::mutex mu;
  std::vector<int64_t> lat, crit_lat;
  std::vector<std::pair<int64_t, int64_t>> trace;  // critical: send, ack (CLOCK_MONOTONIC)
  std::atomic<long> failed{0}, durable{0}, duplicate{0};
  cairn::proto::Stats before, after;
  bool have_stats = o.stats && daemon_stats(o, before);
  std::string message(cairn::bench::message_len(o.size), 'm');
  std::vector<cairn_client*> clients;
  for (int t = 0; t < o.conns; ++t) clients.push_back(connect(o));
  std::atomic<int64_t> t0{0}, deadline{0}, measure_from{0};
  std::barrier start(o.conns + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < o.conns; ++t) {
    threads.emplace_back([&, t] {
      cairn_client* c = clients[static_cast<size_t>(t)];
      std::vector<int64_t> my_lat, my_crit;
      std::vector<std::pair<int64_t, int64_t>> my_trace;
      struct Sent {
        int64_t at;
        bool critical;
      };
      std::deque<Sent> inflight;
      int64_t from = 0;  // events sent before this are warm-up
      uint64_t rnd = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(t + 1);
      auto collect = [&] {
        uint64_t ticket;
        cairn_ack ack{};
        int rc = cairn_next_ack(c, &ticket, &ack);
        int64_t now = now_ns();
        const Sent& s = inflight.front();
        if (rc != 0) {
          ++failed;
        } else if (s.at >= from) {
          if (ack.durable) ++durable;
          if (ack.duplicate) ++duplicate;
          (s.critical ? my_crit : my_lat).push_back(now - s.at);
          if (s.critical && !o.trace.empty()) my_trace.emplace_back(s.at, now);
        }
        inflight.pop_front();
      };
      start.arrive_and_wait();
      const int64_t end = deadline.load();
      from = measure_from.load();
      for (long i = 0; !done_by(o, i, end); ++i) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        bool critical = o.critical > 0 && static_cast<double>(rnd % 1'000'000) < o.critical * 1e6;
        cairn_event e{};
        e.type = critical ? cairn::bench::kCriticalType : cairn::bench::kType;
        e.severity = CAIRN_SEVERITY_UNSET;
        e.actor = cairn::bench::kActor;
        e.action = cairn::bench::kAction;
        e.target = cairn::bench::kTarget;
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
      std::lock_guard lk(mu);
      lat.insert(lat.end(), my_lat.begin(), my_lat.end());
      crit_lat.insert(crit_lat.end(), my_crit.begin(), my_crit.end());
      trace.insert(trace.end(), my_trace.begin(), my_trace.end());
    });
  }
  t0 = now_ns();
  deadline = o.seconds > 0 ? t0 + static_cast<int64_t>(o.seconds * 1e9) : 0;
  measure_from = t0 + static_cast<int64_t>(o.warmup * 1e9);
  start.arrive_and_wait();
  for (auto& th : threads) th.join();
  int64_t t1 = now_ns();
  long rss_hwm = o.pid ? proc_status_kib(o.pid, "VmHWM:") : 0;
  long rss_now = o.pid ? proc_status_kib(o.pid, "VmRSS:") : 0;
  for (auto* c : clients) cairn_close(c);
  if (have_stats) have_stats = daemon_stats(o, after);
  double secs = static_cast<double>(t1 - measure_from.load()) / 1e9;
  long total = static_cast<long>(lat.size() + crit_lat.size());
  std::vector<int64_t> all = lat;
  all.insert(all.end(), crit_lat.begin(), crit_lat.end());
  uint64_t commits = have_stats ? after.commits - before.commits : 0;
  uint64_t committed = have_stats ? after.events_committed - before.events_committed : 0;
  if (!o.trace.empty()) {
    if (FILE* f = std::fopen(o.trace.c_str(), "w")) {
      std::sort(trace.begin(), trace.end());
      for (auto& [s, a] : trace) std::fprintf(f, "%lld %lld\n", static_cast<long long>(s), static_cast<long long>(a));
      std::fclose(f);
    }
  }
  std::printf("{\"mode\":\"append\",\"conns\":%d,\"window\":%u,\"frame_bytes\":%zu,\"events\":%ld,"
              "\"warmup_s\":%.3f,\"seconds\":%.3f,\"events_per_s\":%.1f,\"failed\":%ld,\"durable\":%ld,\"duplicate\":%ld,"
              "%s,%s,%s,\"commits\":%llu,\"events_per_commit\":%.1f,\"daemon_fsync_p50_us\":%llu,"
              "\"daemon_fsync_p99_us\":%llu,\"flush_mode\":\"%s\",\"daemon_rss_hwm_kib\":%ld,"
              "\"daemon_rss_kib\":%ld}\n",
              o.conns, o.window, o.size, total, o.warmup, secs, static_cast<double>(total) / secs, failed.load(),
              durable.load(), duplicate.load(), pct_json(all, "ack").c_str(),
              pct_json(lat, "routine").c_str(), pct_json(crit_lat, "critical").c_str(),
              static_cast<unsigned long long>(commits),
              commits ? static_cast<double>(committed) / static_cast<double>(commits) : 0.0,
              static_cast<unsigned long long>(have_stats ? after.fsync_p50_us : 0),
              static_cast<unsigned long long>(have_stats ? after.fsync_p99_us : 0),
              have_stats ? after.flush_mode.c_str() : "", rss_hwm, rss_now);
  return failed.load() ? 1 : 0;
}

int run_query(const Opts& o) {
  std::mutex mu;
  std::vector<int64_t> lat;
  std::atomic<long> failed{0}, rows{0}, wraps{0};
  std::vector<cairn_client*> clients;
  for (int t = 0; t < o.conns; ++t) clients.push_back(connect(o));
  std::atomic<int64_t> deadline{0};
  std::barrier start(o.conns + 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < o.conns; ++t) {
    threads.emplace_back([&, t] {
      cairn_client* c = clients[static_cast<size_t>(t)];
      cairn::proto::QuerySpec spec;
      spec.type = o.types[static_cast<size_t>(t) % o.types.size()];
      spec.limit = o.limit;
      std::vector<int64_t> my;
      std::string args;
      uint64_t after = 0;  // 0: start from the newest page
      long walked = 0;     // pages into the current walk
      long my_rows = 0;
      start.arrive_and_wait();
      const int64_t end = deadline.load();
      for (long p = 0; (o.pages == 0 || p < o.pages) && (end == 0 || now_ns() < end); ++p) {
        if (after != 0) spec.after = after;
        else spec.after.reset();
        args.clear();
        cairn::proto::encode_query_args(args, spec);
        void* buf = nullptr;
        size_t len = 0;
        int64_t s = now_ns();
        int rc = cairn_request(c, "query", args.data(), args.size(), &buf, &len);
        my.push_back(now_ns() - s);
        PageInfo page;
        if (rc != 0 || !scan_page(static_cast<const uint8_t*>(buf), static_cast<const uint8_t*>(buf) + len, page) ||
            !page.ok) {
          ++failed;
          after = 0;
        } else {
          my_rows += static_cast<long>(page.events);
          // Follow the cursor; start again from the newest page at the end or at depth.
          after = page.next;
          if (++walked >= o.depth || after == 0) {
            after = 0;
            walked = 0;
            ++wraps;
          }
        }
        cairn_free(buf);
      }
      std::lock_guard lk(mu);
      rows += my_rows;
      lat.insert(lat.end(), my.begin(), my.end());
    });
  }
  int64_t t0 = now_ns();
  deadline = o.seconds > 0 ? t0 + static_cast<int64_t>(o.seconds * 1e9) : 0;
  start.arrive_and_wait();
  for (auto& th : threads) th.join();
  double secs = static_cast<double>(now_ns() - t0) / 1e9;
  for (auto* c : clients) cairn_close(c);
  double rows_per_page = lat.empty() ? 0.0 : static_cast<double>(rows.load()) / static_cast<double>(lat.size());
  std::printf("{\"mode\":\"query\",\"conns\":%d,\"pages\":%zu,\"rows\":%ld,\"rows_per_page\":%.1f,"
              "\"walks\":%ld,\"seconds\":%.3f,\"pages_per_s\":%.1f,\"failed\":%ld,%s}\n",
              o.conns, lat.size(), rows.load(), rows_per_page, wraps.load(), secs,
              static_cast<double>(lat.size()) / secs, failed.load(), pct_json(lat, "page").c_str());
  return failed.load() ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Opts o;
  if (argc < 2) {
    std::fprintf(stderr, "usage: cairn-bench append|query --socket S [options] (see the top of bench/cairn_bench.cpp)\n");
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
    else if (a == "--seconds") o.seconds = std::atof(val().c_str());
    else if (a == "--warmup") o.warmup = std::atof(val().c_str());
    else if (a == "-w") o.window = static_cast<unsigned>(std::atoi(val().c_str()));
    else if (a == "--size") o.size = static_cast<size_t>(std::atol(val().c_str()));
    else if (a == "--critical") o.critical = std::atof(val().c_str());
    else if (a == "--pid") o.pid = std::atol(val().c_str());
    else if (a == "--no-stats") o.stats = false;
    else if (a == "--trace") o.trace = val();
    else if (a == "--pages") o.pages = std::atol(val().c_str());
    else if (a == "--depth") o.depth = std::atol(val().c_str());
    else if (a == "--type") o.types = cairn::bench::split(val());
    else if (a == "--limit") o.limit = static_cast<unsigned>(std::atoi(val().c_str()));
    else {
      std::fprintf(stderr, "cairn-bench: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  bool bounded = o.mode == "query" ? (o.pages > 0 || o.seconds > 0) : (o.events > 0 || o.seconds > 0);
  if (o.socket.empty() || o.conns < 1 || o.window < 1 || !bounded || o.types.empty() || o.depth < 1) {
    std::fprintf(stderr, "cairn-bench: --socket, -c >= 1, -w >= 1 and a bound (-n/--pages or --seconds) are required\n");
    return 2;
  }
  if (o.mode != "append" && o.mode != "query") {
    std::fprintf(stderr, "cairn-bench: mode must be append or query\n");
    return 2;
  }
  return o.mode == "query" ? run_query(o) : run_append(o);
}
