// SIGTERM under load: batched mode with a 10-minute interval holds 100,000 accepted,
// uncommitted events (every ack said durable:false); on SIGTERM cairnd must commit every
// one, answer every request it had received, and exit 0. Time from signal to exit is
// printed, never asserted. Judged from the file once the process is gone.
#include <cairn/cairn.h>
#include <criterion/criterion.h>
#include <signal.h>
#include <time.h>

#include <cstdio>

#include "../../protocol/message.hpp"
#include "harness.hpp"
#include "judge.hpp"
#include "raw_client.hpp"
#include "streamer.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

int64_t mono_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

const std::vector<std::string> kLongBatch = {
    "--flush-mode", "batched", "--batch-size", "1000000", "--batch-interval-ms", "600000"};

std::string append_with_idem(uint64_t id, const std::string& idem) {
  proto::EventView ev;
  ev.type = "Pending";
  ev.idem = idem;
  std::string out;
  proto::encode_append(out, id, ev);
  return out;
}

}  // namespace

TestSuite(sigterm, .timeout = 300);

Test(sigterm, hundred_thousand_accepted_events_are_durable_after_sigterm) {
  const char* sc = "sigterm/100k";
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
  cr_assert_eq(s.acked.size(), 100'000u, "%s: only %zu of 100000 accepted", sc, s.acked.size());
  for (const auto& [idem, a] : s.acked)
    cr_assert_not(a.durable, "%s: %s (seq %llu) acked durable in batched mode", sc, idem.c_str(),
                  static_cast<unsigned long long>(a.seq));

  // Requests still in flight at the signal: a raw client (known to be accepted: its ping
  // was answered) writes 1,000 appends without reading, and the signal follows at once.
  constexpr int kPending = 1000;
  RawClient raw(d.socket());
  cr_assert(raw.connected());
  std::string ping;
  proto::encode_simple(ping, 1, proto::Op::ping);
  cr_assert(raw.send_bytes(ping));
  cr_assert(raw.read_frame().has_value(), "%s: ping not answered", sc);
  std::string burst;
  for (int i = 0; i < kPending; ++i) {
    char idem[32];
    std::snprintf(idem, sizeof idem, "pending-%06d", i);
    burst += append_with_idem(static_cast<uint64_t>(100 + i), idem);
  }
  cr_assert(raw.send_bytes(burst));

  int64_t t0 = mono_us();
  kill(d.pid(), SIGTERM);
  int status = d.stop(0);  // waits for the exit; signal 0 sends nothing
  int64_t t1 = mono_us();
  cr_assert_eq(exit_code(status), 0, "%s: exit status %d after SIGTERM; log %s", sc,
               exit_code(status), d.log_path().c_str());

  // Every pending request got its answer (they stay readable after the daemon is gone).
  std::map<std::string, AckRecord> acked = s.acked;
  std::set<std::string> sent = s.sent;
  std::set<std::string> refused;
  for (int i = 0; i < kPending; ++i) {
    char idem[32];
    std::snprintf(idem, sizeof idem, "pending-%06d", i);
    sent.insert(idem);
    auto f = raw.read_frame(5'000);
    cr_assert(f.has_value(), "%s: request %d of %d in flight at SIGTERM (%s) got no answer", sc,
              i + 1, kPending, idem);
    auto r = decode_reply(*f);
    cr_assert(r.has_value() && r->id == static_cast<uint64_t>(100 + i), "%s: bad reply to %s", sc,
              idem);
    if (r->ok)
      acked[idem] = AckRecord{r->seq, r->durable, r->duplicate, 0};
    else {
      cr_assert_eq(r->error, "shutting_down", "%s: %s answered %s (%s)", sc, idem, r->error.c_str(),
                   r->message.c_str());
      refused.insert(idem);
    }
  }

  crash::Verdict v = crash::judge(d.db(), acked, sent);
  cr_assert_eq(v.hard_errors() + v.lost_nondurable, 0u, "%s: %s", sc, v.first_problem.c_str());
  cr_assert_eq(v.events, acked.size(), "%s: %llu events stored for %zu acked", sc,
               static_cast<unsigned long long>(v.events), acked.size());
  for (const auto& r : read_rows_from(d.db(), 1))
    cr_assert(refused.count(r.idem) == 0,
              "%s: %s was answered shutting_down but stored as seq %llu", sc, r.idem.c_str(),
              static_cast<unsigned long long>(r.seq));
  std::string out;
  cr_assert_eq(run_capture({cli_path(), "verify", "--db", d.db()}, out), 0, "%s: cairn verify: %s",
               sc, out.c_str());
  char line[256];
  std::snprintf(
      line, sizeof line,
      "tally: scenario=%s accepted=%zu stored=%llu pending_at_signal=%d pending_acked=%zu "
      "pending_shutting_down=%zu lost=0 exit_status=0 signal_to_exit_ms=%.1f",
      sc, s.acked.size(), static_cast<unsigned long long>(v.events), kPending,
      acked.size() - s.acked.size(), refused.size(), static_cast<double>(t1 - t0) / 1000.0);
  crash::emit_tally(line);
}

Test(sigterm, sigterm_mid_stream_acks_exactly_what_it_stores) {
  const char* sc = "sigterm/mid-stream";
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
  int64_t t0 = mono_us();
  kill(d.pid(), SIGTERM);
  // A second SIGTERM must not skip the flush.
  kill(d.pid(), SIGTERM);
  int status = d.stop(0);
  int64_t t1 = mono_us();
  s.join();
  cr_assert_eq(exit_code(status), 0, "%s: exit status %d; log %s", sc, exit_code(status),
               d.log_path().c_str());
  uint64_t shutting_down = 0, other = 0;
  for (const auto& [idem, rc] : s.refused) (rc == CAIRN_E_SHUTTING_DOWN ? shutting_down : other)++;
  crash::Verdict v = crash::judge(d.db(), s.acked, s.sent);
  cr_assert_eq(v.hard_errors() + v.lost_nondurable, 0u, "%s: %s", sc, v.first_problem.c_str());
  // Stored but never acked would be an ack the shutdown dropped.
  cr_assert_eq(v.events, s.acked.size(),
               "%s: %llu events stored but %zu acked: acks were lost in "
               "the shutdown",
               sc, static_cast<unsigned long long>(v.events), s.acked.size());
  char line[256];
  std::snprintf(line, sizeof line,
                "tally: scenario=%s acked=%zu stored=%llu refused_shutting_down=%llu "
                "connection_errors=%llu lost=0 exit_status=0 signal_to_exit_ms=%.1f",
                sc, s.acked.size(), static_cast<unsigned long long>(v.events),
                static_cast<unsigned long long>(shutting_down),
                static_cast<unsigned long long>(other), static_cast<double>(t1 - t0) / 1000.0);
  crash::emit_tally(line);
}
