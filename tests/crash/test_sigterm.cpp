// SIGTERM under load: batched mode with a 10-minute interval holds 100,000 accepted,
// uncommitted events; SIGTERM must commit every one, send every ack, and exit 0.
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <cstdio>

#include "harness.hpp"
#include "judge.hpp"
#include "streamer.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {
int64_t mono_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}
const std::vector<std::string> kLongBatch = {"--flush-mode", "batched", "--batch-size", "1000000",
                                             "--batch-interval-ms", "600000"};
}  // namespace

TestSuite(sigterm, .timeout = 300);

Test(sigterm, hundred_thousand_accepted_events_are_durable_after_sigterm) {
  TestDaemon d("cairn-sigterm");
  cr_assert(d.start({.args = kLongBatch}));
  StreamOptions o;
  o.threads = 4;
  o.per_thread = 25'000;
  o.window = 256;
  o.prefix = "t";
  Streamer s;
  s.run(d.socket(), o);
  s.join();
  cr_assert_eq(s.acked.size(), 100'000u);
  for (const auto& [idem, a] : s.acked) cr_assert_not(a.durable, "%s acked durable in batched mode", idem.c_str());
  int64_t t0 = mono_us();
  int status = d.stop(SIGTERM);
  int64_t t1 = mono_us();
  cr_assert_eq(exit_code(status), 0, "exit status after SIGTERM; log %s", d.log_path().c_str());
  crash::Verdict v = crash::judge(d.db(), s.acked, s.sent);
  cr_assert_eq(v.lost_nondurable + v.lost_durable + v.wrong_seq + v.never_sent, 0u, "%s",
               v.first_problem.c_str());
  cr_assert_eq(v.rows, 100'000u);
  cr_assert(v.chain.empty(), "%s", v.chain.c_str());
  std::printf("tally: scenario=sigterm/100k accepted=100000 stored=%llu signal_to_exit_ms=%.1f\n",
              static_cast<unsigned long long>(v.rows), static_cast<double>(t1 - t0) / 1000.0);
  std::fflush(stdout);
}

Test(sigterm, sigterm_mid_stream_acks_only_what_it_stores) {
  TestDaemon d("cairn-sigterm");
  cr_assert(d.start({.args = kLongBatch}));
  StreamOptions o;
  o.threads = 4;
  o.per_thread = 20'000;
  o.window = 64;
  o.prefix = "m";
  Streamer s;
  s.run(d.socket(), o);
  cr_assert(s.wait_count(20'000, 60'000));
  kill(d.pid(), SIGTERM);
  // A second SIGTERM must not skip the flush.
  kill(d.pid(), SIGTERM);
  int status = d.stop(0);
  s.join();
  cr_assert_eq(exit_code(status), 0);
  crash::Verdict v = crash::judge(d.db(), s.acked, s.sent);
  cr_assert_eq(v.lost_nondurable + v.lost_durable + v.wrong_seq + v.never_sent + v.duplicated, 0u,
               "%s", v.first_problem.c_str());
  cr_assert(v.chain.empty(), "%s", v.chain.c_str());
  std::printf("tally: scenario=sigterm/mid-stream acked=%zu stored=%llu refused_shutting_down=%zu\n",
              s.acked.size(), static_cast<unsigned long long>(v.rows), s.refused.size());
  std::fflush(stdout);
}
