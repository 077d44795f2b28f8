// kill -9 loop: writers stream in each flush mode while cairnd is SIGKILLed at random
// moments and restarted on the same database. Judged from the file after every kill.
#include <criterion/criterion.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "harness.hpp"
#include "judge.hpp"
#include "streamer.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

struct Mode {
  const char* name;
  std::vector<std::string> args;
  uint64_t window;  // most events acked durable:false that one crash may lose
};

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : def;
}

}  // namespace

Test(crash, kill9_loop_never_loses_a_durable_ack, .timeout = 1800) {
  const int cycles = env_int("CAIRN_CRASH_CYCLES", 50);
  const unsigned seed = static_cast<unsigned>(env_int("CAIRN_CRASH_SEED", static_cast<int>(time(nullptr))));
  std::printf("kill9 loop: %d cycles, seed %u (CAIRN_CRASH_SEED=%u replays it)\n", cycles, seed, seed);
  std::mt19937 rng(seed);
  const Mode modes[] = {
      {"immediate", {}, 0},
      {"hybrid", {"--flush-mode", "hybrid", "--batch-size", "200", "--batch-interval-ms", "50"}, 200},
      {"batched", {"--flush-mode", "batched", "--batch-size", "200", "--batch-interval-ms", "50"}, 200},
  };
  TestDaemon d("cairn-kill9");
  crash::IncrementalJudge judge(d.db());
  std::set<std::string> all_sent;
  crash::Verdict sums[3];
  int per_mode[3] = {0, 0, 0};
  for (int cycle = 0; cycle < cycles; ++cycle) {
    const int m = cycle % 3;
    const Mode& mode = modes[m];
    cr_assert(d.start({.args = mode.args}), "cycle %d (%s): cairnd did not become ready; log %s",
              cycle, mode.name, d.log_path().c_str());
    StreamOptions o;
    o.threads = 3;
    o.per_thread = 800;
    o.window = 32;
    o.prefix = "c" + std::to_string(cycle);
    // hybrid: every 20th event is critical and must come back durable.
    o.type_for = [m](int, int i) { return m == 1 && i % 20 == 0 ? "AuthFailure" : "DataAccess"; };
    Streamer s;
    s.run(d.socket(), o);
    uint64_t kill_at = std::uniform_int_distribution<uint64_t>(1, 2000)(rng);
    s.wait_count(kill_at, 30'000);
    d.kill9();
    s.join();
    {
      std::lock_guard lk(s.mu);
      all_sent.insert(s.sent.begin(), s.sent.end());
      if (m == 1) {
        for (const auto& [idem, a] : s.acked) {
          int i = std::atoi(idem.substr(idem.rfind('-') + 1).c_str());
          if (i % 20 == 0)
            cr_assert(a.durable, "cycle %d hybrid: critical event %s acked durable:false", cycle,
                      idem.c_str());
        }
      }
      if (m == 0)
        for (const auto& [idem, a] : s.acked)
          cr_assert(a.durable, "cycle %d immediate: %s acked durable:false", cycle, idem.c_str());
    }
    // Every 25th cycle (and the last) also runs integrity_check and `cairn verify --db`
    // over the whole file; in between only what this cycle added is checked.
    const bool full = cycle % 25 == 24 || cycle + 1 == cycles;
    crash::Verdict v = judge.cycle(s.acked, all_sent, full);
    uint64_t lost_now = v.lost_nondurable;
    cr_assert_eq(v.lost_durable, 0u, "cycle %d (%s, seed %u): %s", cycle, mode.name, seed,
                 v.first_problem.c_str());
    cr_assert_eq(v.wrong_seq + v.never_sent + v.duplicated, 0u, "cycle %d (%s, seed %u): %s",
                 cycle, mode.name, seed, v.first_problem.c_str());
    cr_assert(v.chain.empty(), "cycle %d (%s, seed %u): %s", cycle, mode.name, seed, v.chain.c_str());
    cr_assert_leq(lost_now, mode.window,
                  "cycle %d (%s): %llu non-durable acks lost, more than the batch window %llu",
                  cycle, mode.name, static_cast<unsigned long long>(lost_now),
                  static_cast<unsigned long long>(mode.window));
    if (full) {
      std::string out;
      int code = run_capture({cli_path(), "verify", "--db", d.db()}, out);
      cr_assert_eq(code, 0, "cycle %d (%s): cairn verify --db: %s", cycle, mode.name, out.c_str());
    }
    crash::Verdict cycle_v;
    cycle_v.rows = v.rows;
    cycle_v.lost_nondurable = lost_now;
    {
      std::lock_guard lk(s.mu);
      for (const auto& [idem, a] : s.acked) (a.durable ? cycle_v.durable_acked : cycle_v.nondurable_acked)++;
    }
    crash::add(sums[m], cycle_v);
    ++per_mode[m];
  }
  for (int m = 0; m < 3; ++m)
    std::printf("%s\n", crash::tally_line(std::string("kill9/") + modes[m].name, per_mode[m], sums[m]).c_str());
  std::fflush(stdout);
}
