// Shutdown and read limits against the real cairnd (issue 9, defects 3, 4, 5): SIGTERM
// answers reads that have not run `shutting_down` and interrupts running ones at the
// linger deadline; a linger of 0 still has deadlines; only one verify walks at a time.
// No timing is asserted: each test waits for a condition (the exit) with a deadline.
#include <criterion/criterion.h>
#include <signal.h>

#include <string>

#include "../../protocol/message.hpp"
#include "harness.hpp"
#include "raw_client.hpp"
#include "streamer.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

const std::vector<std::string> kFast = {"--flush-mode", "batched", "--batch-size", "100000",
                                        "--batch-interval-ms", "50"};

// A log long enough that one verify walk takes far longer than a loop turn.
void fill(TestDaemon& d, int events) {
  StreamOptions o;
  o.threads = 4;
  o.per_thread = events / 4;
  o.window = 256;
  o.prefix = "fill";
  Streamer s;
  s.run(d.socket(), o);
  s.join();
  cr_assert_eq(s.acked.size(), static_cast<size_t>(events), "only %zu of %d stored", s.acked.size(),
               events);
}

std::string verifies(int n, uint64_t first_id) {
  std::string out;
  for (int i = 0; i < n; ++i) proto::encode_simple(out, first_id + static_cast<uint64_t>(i), proto::Op::verify);
  return out;
}

// A round trip on `c`: once answered, everything sent on connections whose bytes
// reached the daemon earlier has been read by it.
void round_trip(RawClient& c, uint64_t id) {
  std::string ping;
  proto::encode_simple(ping, id, proto::Op::ping);
  cr_assert(c.send_bytes(ping));
  auto f = c.read_frame();
  cr_assert(f.has_value(), "ping %llu not answered", static_cast<unsigned long long>(id));
}

}  // namespace

TestSuite(shutdown, .timeout = 240);

// Defect 3: 30 pipelined verifies, then SIGTERM. Before the fix every one of them ran to
// the end (one after another) before cairnd exited. Now the waiting ones are answered
// shutting_down at once, and with --shutdown-linger-ms 0 the running walk is
// interrupted at the next turn of the loop and answered shutting_down too.
Test(shutdown, sigterm_answers_queued_and_running_verifies_shutting_down) {
  TestDaemon d;
  std::vector<std::string> args = kFast;
  args.insert(args.end(), {"--shutdown-linger-ms", "0"});
  cr_assert(d.start({.args = args}));
  fill(d, 60'000);  // enough that a verify walk is still running when SIGTERM comes, even unsanitized
  RawClient a(d.socket()), b(d.socket());
  cr_assert(a.connected() && b.connected());
  round_trip(a, 1);
  round_trip(b, 2);
  cr_assert(a.send_bytes(verifies(30, 100)));
  round_trip(b, 3);  // a's 30 verifies have been read and queued
  kill(d.pid(), SIGTERM);
  cr_assert(wait_exit(d.pid(), 120'000), "cairnd did not exit after SIGTERM; log %s",
            d.log_path().c_str());
  cr_assert_eq(exit_code(d.stop(0)), 0);
  int refused = 0;
  for (int i = 0; i < 30; ++i) {
    auto f = a.read_frame(5'000);
    cr_assert(f.has_value(), "verify %d of 30 got no answer", i + 1);
    auto r = decode_reply(*f);
    cr_assert(r.has_value());
    cr_assert_eq(r->id, 100u + static_cast<uint64_t>(i), "replies keep request order");
    cr_assert(!r->ok, "verify %d ran to the end after SIGTERM", i + 1);
    cr_assert_eq(r->error, "shutting_down", "verify %d: %s (%s)", i + 1, r->error.c_str(),
                 r->message.c_str());
    ++refused;
  }
  cr_assert_eq(refused, 30);
}

// Defect 4: a linger of 0 used to remove both shutdown deadlines, so a peer that sent
// two bytes of a frame kept cairnd alive for good. Zero means "do not wait".
Test(shutdown, linger_zero_still_ends_the_drain_of_a_half_sent_frame) {
  TestDaemon d;
  cr_assert(d.start({.args = {"--shutdown-linger-ms", "0"}}));
  RawClient good(d.socket());
  cr_assert(good.send_bytes(append_frame(1, "BeforeTerm")));
  auto ack = good.read_frame();
  cr_assert(ack.has_value());
  RawClient half(d.socket());
  std::string f = append_frame(2, "NeverFinished");
  cr_assert(half.send_bytes(f.substr(0, 2)));
  round_trip(good, 3);  // the two bytes have reached the daemon
  kill(d.pid(), SIGTERM);
  cr_assert(wait_exit(d.pid(), 60'000),
            "cairnd still running 60 s after SIGTERM with a half-sent frame; log %s",
            d.log_path().c_str());
  cr_assert_eq(exit_code(d.stop(0)), 0);
  auto rows = read_rows(d.db());
  bool found = false;
  for (const auto& r : rows) {
    cr_assert_neq(r.type, "NeverFinished");
    found = found || r.type == "BeforeTerm";
  }
  cr_assert(found, "the acked event is in the file");
}

// Defect 5: verify is an O(n) walk; only one runs at a time and a bounded number wait.
// A burst of 1000 from one connection: some are refused `overloaded` (a per-request
// error: the connection goes on), every other one gets a valid report.
Test(shutdown, only_a_bounded_number_of_verifies_wait_and_the_rest_are_overloaded) {
  TestDaemon d;
  cr_assert(d.start({.args = kFast}));
  fill(d, 100'000);
  RawClient c(d.socket());
  cr_assert(c.connected());
  constexpr int kBurst = 1000;
  cr_assert(c.send_bytes(verifies(kBurst, 1)));
  int overloaded = 0, valid = 0;
  for (int i = 0; i < kBurst; ++i) {
    auto f = c.read_frame(60'000);
    cr_assert(f.has_value(), "verify %d got no answer", i + 1);
    auto dec = proto::Decoded::parse({reinterpret_cast<const uint8_t*>(f->data()), f->size()}, 8);
    cr_assert(dec.ok());
    auto rep = proto::reply_from(dec.value());
    cr_assert(rep.ok());
    cr_assert_eq(rep.value().id, static_cast<uint64_t>(i + 1));
    if (rep.value().ok) {
      auto v = proto::verify_from(rep.value());
      cr_assert(v.ok() && v.value().valid, "verify %d: not a valid report", i + 1);
      cr_assert_gt(v.value().checked, 0u);
      ++valid;
    } else {
      cr_assert_eq(rep.value().error_name, "overloaded", "verify %d: %s", i + 1,
                   rep.value().error_name.c_str());
      ++overloaded;
    }
  }
  cr_assert_gt(overloaded, 0, "1000 verifies at once were all queued");
  cr_assert_gt(valid, 0);
  round_trip(c, 5000);  // the connection goes on
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
}
