// kill -9 loop: writers stream in each flush mode while cairnd is SIGKILLed at random
// moments and restarted on the same database. Judged from the file after every kill
// (see judge.hpp for what must hold), plus `cairn verify --db --key` and integrity_check.
// cairnd seals every 50 ms, so many kills land inside a seal or its key handover: every
// restart must continue the key chain, and verify must accept every seal with its key.
//
//   CAIRN_CRASH_CYCLES      cycles (default 50; tests/crash/soak runs 1,000)
//   CAIRN_CRASH_SEED        replays a run's kill moments (the seed is printed)
//   CAIRN_CRASH_FULL_EVERY  integrity_check + `cairn verify --db` every N cycles (default
//                           1: after every cycle; the soak uses 25 so that a million-row
//                           file is not re-read a thousand times). Rows, seq, chain and
//                           acks are checked after every cycle regardless.
#include <criterion/criterion.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include "harness.hpp"
#include "judge.hpp"
#include "streamer.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

struct Mode {
  const char* name;
  std::vector<std::string> args;
  uint64_t window;  // most events acked durable:false that one crash may lose (batch size)
};

// How a cycle ends. Most kills land mid-stream after a random number of acks; some right
// after READY=1 (nothing in flight yet), some before it (during open and WAL recovery).
enum class KillAt { before_ready, after_ready, mid_stream };

constexpr int kThreads = 4;
constexpr int kPerThread = 1000;
constexpr uint64_t kBatch = 200;

}  // namespace

Test(crash, kill9_loop_never_loses_a_durable_ack, .timeout = 14400) {
  const long cycles = crash::env_long("CAIRN_CRASH_CYCLES", 50);
  const long full_every = std::max(1L, crash::env_long("CAIRN_CRASH_FULL_EVERY", 1));
  const long seed_env = crash::env_long("CAIRN_CRASH_SEED", -1);
  const uint64_t seed =
      seed_env >= 0 ? static_cast<uint64_t>(seed_env) : static_cast<uint64_t>(time(nullptr));
  std::printf(
      "kill9 loop: %ld cycles, seed %llu (CAIRN_CRASH_SEED=%llu replays the kill moments)\n",
      cycles, static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  std::mt19937_64 rng(seed);
  const std::string batch = std::to_string(kBatch);
  const Mode modes[] = {
      {"immediate", {}, 0},
      {"hybrid",
       {"--flush-mode", "hybrid", "--batch-size", batch, "--batch-interval-ms", "50"},
       kBatch},
      {"batched",
       {"--flush-mode", "batched", "--batch-size", batch, "--batch-interval-ms", "50"},
       kBatch},
  };
  TestDaemon d("cairn-kill9");
  crash::IncrementalJudge judge(d.db());
  std::set<std::string> all_sent;
  crash::Verdict sums[3];
  long per_mode[3] = {0, 0, 0};
  uint64_t kills[3][3] = {};  // [mode][KillAt]
  uint64_t max_lost[3] = {0, 0, 0};
  const auto t_start = std::chrono::steady_clock::now();
  std::string key;  // the log's key, read once it exists
  for (long cycle = 0; cycle < cycles; ++cycle) {
    const int m = static_cast<int>(cycle % 3);
    Mode mode = modes[m];
    mode.args.insert(mode.args.end(), {"--seal-interval", "50ms"});
    const std::string scenario = std::string("kill9/") + mode.name;
    const uint64_t r = rng() % 20;
    const KillAt how = r == 0   ? KillAt::before_ready
                       : r == 1 ? KillAt::after_ready
                                : KillAt::mid_stream;
    const uint64_t total = static_cast<uint64_t>(kThreads) * kPerThread;
    const uint64_t kill_after = std::uniform_int_distribution<uint64_t>(1, total)(rng);
    const int pre_ready_us = static_cast<int>(rng() % 20'000);
    ++kills[m][static_cast<int>(how)];

    Streamer s;
    if (how == KillAt::before_ready) {
      cr_assert(d.start({.args = mode.args, .wait_ready = false}), "cycle %ld (%s): spawn failed",
                cycle, scenario.c_str());
      // The random moment itself, not a wait for anything: somewhere in exec, open,
      // WAL recovery or the chain-head check.
      std::this_thread::sleep_for(std::chrono::microseconds(pre_ready_us));
    } else {
      cr_assert(d.start({.args = mode.args}),
                "cycle %ld (%s, seed %llu): cairnd did not become "
                "ready on the file the previous kill left; log %s",
                cycle, scenario.c_str(), static_cast<unsigned long long>(seed),
                d.log_path().c_str());
      if (how == KillAt::mid_stream) {
        StreamOptions o;
        o.threads = kThreads;
        o.per_thread = kPerThread;
        o.window = 32;
        o.prefix = "c" + std::to_string(cycle);
        // hybrid: every 20th event is critical and must come back durable.
        o.type_for = [m](int, int i) {
          return m == 1 && i % 20 == 0 ? "AuthFailure" : "DataAccess";
        };
        s.run(d.socket(), o);
        cr_assert(s.wait_count(kill_after, 60'000),
                  "cycle %ld (%s): only %llu of %llu acks "
                  "arrived before the kill moment (daemon stalled or died); log %s",
                  cycle, scenario.c_str(), static_cast<unsigned long long>(s.count.load()),
                  static_cast<unsigned long long>(kill_after), d.log_path().c_str());
      }
    }
    int status = d.kill9();
    s.join();
    cr_assert_eq(exit_code(status), 128 + SIGKILL,
                 "cycle %ld (%s): cairnd was not alive to be "
                 "killed (exit %d); log %s",
                 cycle, scenario.c_str(), exit_code(status), d.log_path().c_str());
    {
      std::lock_guard lk(s.mu);
      all_sent.insert(s.sent.begin(), s.sent.end());
      for (const auto& [idem, a] : s.acked) {
        std::string conn;
        long i = 0;
        crash::parse_stream_idem(idem, conn, i);
        if (m == 0 || (m == 1 && i % 20 == 0))
          cr_assert(a.durable, "cycle %ld (%s): %s (seq %llu) must be acked durable", cycle,
                    scenario.c_str(), idem.c_str(), static_cast<unsigned long long>(a.seq));
        if (m == 2)
          cr_assert_not(a.durable, "cycle %ld (%s): %s (seq %llu) acked durable in batched mode",
                        cycle, scenario.c_str(), idem.c_str(),
                        static_cast<unsigned long long>(a.seq));
      }
    }
    const bool full = (cycle + 1) % full_every == 0 || cycle + 1 == cycles;
    std::string why;
    if (!crash::has_events_table(d.db(), why, /*writable=*/false)) {
      // Killed before the schema was ever committed (only possible before anything was
      // acked, i.e. in the first cycles): nothing to judge yet.
      uint64_t acked_ever = 0;
      for (const auto& sum : sums) acked_ever += sum.durable_acked + sum.nondurable_acked;
      cr_assert(acked_ever == 0 && s.acked.empty(),
                "cycle %ld (%s, seed %llu): the database has "
                "no events table (%s) after %llu events were acked",
                cycle, scenario.c_str(), static_cast<unsigned long long>(seed), why.c_str(),
                static_cast<unsigned long long>(acked_ever + s.acked.size()));
      ++per_mode[m];
      continue;
    }
    crash::Verdict v = judge.cycle(s.acked, all_sent, full);
    cr_assert_eq(v.hard_errors(), 0u, "cycle %ld (%s, seed %llu): %s", cycle, scenario.c_str(),
                 static_cast<unsigned long long>(seed), v.first_problem.c_str());
    cr_assert_leq(v.lost_nondurable, mode.window,
                  "cycle %ld (%s, seed %llu): %llu events acked durable:false were lost, more than "
                  "the batch window of %llu",
                  cycle, scenario.c_str(), static_cast<unsigned long long>(seed),
                  static_cast<unsigned long long>(v.lost_nondurable),
                  static_cast<unsigned long long>(mode.window));
    if (key.empty()) {
      std::string k;
      if (run_capture({cli_path(), "key", "--db", d.db()}, k) == 0) key = k.substr(0, k.find('\n'));
    }
    if (full) {
      std::string out;
      std::vector<std::string> argv = {cli_path(), "verify", "--db", d.db()};
      if (!key.empty()) argv.insert(argv.end(), {"--key", key});
      int code = run_capture(argv, out);
      cr_assert_eq(code, 0, "cycle %ld (%s, seed %llu): cairn verify --db exited %d: %s", cycle,
                   scenario.c_str(), static_cast<unsigned long long>(seed), code, out.c_str());
    }
    max_lost[m] = std::max(max_lost[m], v.lost_nondurable);
    crash::add(sums[m], v);
    ++per_mode[m];
    if (cycles >= 200 && (cycle + 1) % 100 == 0) {  // progress for long soaks
      std::printf("kill9 loop: %ld/%ld cycles, %llu rows, all checks passed so far\n", cycle + 1,
                  cycles, static_cast<unsigned long long>(v.rows));
      std::fflush(stdout);
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  for (int m = 0; m < 3; ++m) {
    char extra[256];
    std::snprintf(
        extra, sizeof extra,
        " max_lost_nondurable_per_kill=%llu window=%llu kills_mid_stream=%llu "
        "kills_after_ready=%llu kills_before_ready=%llu seed=%llu",
        static_cast<unsigned long long>(max_lost[m]),
        static_cast<unsigned long long>(modes[m].window),
        static_cast<unsigned long long>(kills[m][2]), static_cast<unsigned long long>(kills[m][1]),
        static_cast<unsigned long long>(kills[m][0]), static_cast<unsigned long long>(seed));
    crash::emit_tally(crash::tally_line(std::string("kill9/") + modes[m].name,
                                        static_cast<uint64_t>(per_mode[m]), sums[m]) +
                      extra);
  }
  std::printf("kill9 loop: %ld cycles in %.1f s (%.0f ms per cycle)\n", cycles, secs,
              cycles > 0 ? 1000.0 * secs / static_cast<double>(cycles) : 0.0);
  std::fflush(stdout);
}
