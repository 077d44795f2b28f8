// Clients that die mid-frame, or between frame and ack, leave no partial row and do
// not disturb the others.
#include <criterion/criterion.h>
#include <signal.h>

#include <thread>

#include "harness.hpp"
#include "judge.hpp"
#include "raw_client.hpp"
#include "streamer.hpp"

using namespace cairn;
using namespace cairn::test;

TestSuite(midframe, .timeout = 120);

Test(midframe, dying_clients_leave_no_partial_rows_and_disturb_nobody) {
  TestDaemon d("cairn-midframe");
  cr_assert(d.start());
  StreamOptions o;
  o.threads = 2;
  o.per_thread = 3000;
  o.prefix = "ok";
  Streamer s;
  s.run(d.socket(), o);
  int full_frames = 0;
  for (int i = 0; i < 60; ++i) {
    RawClient raw(d.socket());
    cr_assert(raw.connected());
    std::string f = append_frame(static_cast<uint64_t>(i + 1), i % 2 ? "FullFrame" : "HalfFrame");
    if (i % 2) {
      raw.send_bytes(f);  // whole frame, then gone before the ack
      ++full_frames;
    } else {
      raw.send_bytes(f.substr(0, 3 + static_cast<size_t>(i) % (f.size() - 3)));  // cut anywhere
    }
    raw.close_now();
  }
  s.join();
  cr_assert_eq(s.acked.size(), 6000u, "the well-behaved client lost acks: %zu", s.acked.size());
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  auto rows = read_rows(d.db());
  int half = 0, full = 0;
  for (const auto& r : rows) {
    if (r.type == "HalfFrame") ++half;
    if (r.type == "FullFrame") ++full;
  }
  cr_assert_eq(half, 0, "a half-sent frame was stored");
  cr_assert_leq(full, full_frames);
  std::set<std::string> sent = s.sent;
  // Raw frames carry no idem: they are stored with a NULL key, which judge() reads as "".
  sent.insert("");
  crash::Verdict v = crash::judge(d.db(), s.acked, sent);
  cr_assert_eq(v.lost_durable + v.wrong_seq + v.never_sent, 0u, "%s", v.first_problem.c_str());
  cr_assert(v.chain.empty(), "%s", v.chain.c_str());
  std::printf("tally: scenario=midframe clients_killed=60 full_frames_stored=%d/%d half_frames_stored=0 "
              "other_client_acked=%zu lost=0\n", full, full_frames, s.acked.size());
}
