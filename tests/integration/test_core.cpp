// Integration tests of the core vertical slice: the real cairnd, real libcairn, real
// SQLite file. Verdicts come from the database file, read after the daemon is gone.
#include <cairn/cairn.h>
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "raw_client.hpp"
#include "streamer.hpp"
#include "../../protocol/frame.hpp"

using namespace cairn::test;

namespace {

std::string idem_for(int thread, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "t%03d-e%08d", thread, i);  // 14 bytes
  return buf;
}

cairn_client* open_client(const std::string& sock, int reconnect_ms = 0, unsigned window = 64) {
  cairn_options o;
  cairn_options_init(&o);
  o.client_name = "itest";
  o.reconnect_timeout_ms = reconnect_ms;
  o.max_inflight = window;
  cairn_client* c = nullptr;
  int rc = cairn_open(&c, sock.c_str(), &o);
  cr_assert_eq(rc, 0, "cairn_open(%s): %s", sock.c_str(), cairn_strerror(rc));
  return c;
}

cairn_event make_event(const char* type, const std::string& idem, const char* actor = "alice") {
  cairn_event e{};
  e.type = type;
  e.severity = -1;
  e.actor = actor;
  e.action = "login";
  e.outcome = "success";
  e.idem = idem.data();
  e.idem_len = idem.size();
  return e;
}

StreamOptions stream(int threads, int per_thread, const char* type, int reconnect_ms = 0) {
  StreamOptions o;
  o.threads = threads;
  o.per_thread = per_thread;
  o.type_for = [type](int, int) { return type; };
  o.reconnect_ms = reconnect_ms;
  return o;
}

// Every acked-durable event is in the file exactly once with its acked seq.
void expect_acked_present(const std::string& db, const std::map<std::string, AckRecord>& acked,
                          bool durable_only) {
  auto rows = read_rows(db);
  std::map<std::string, uint64_t> by_idem;
  for (const auto& r : rows) {
    cr_assert(by_idem.find(r.idem) == by_idem.end(), "idem %s stored twice", r.idem.c_str());
    by_idem[r.idem] = r.seq;
  }
  for (const auto& [idem, a] : acked) {
    if (durable_only && !a.durable) continue;
    auto it = by_idem.find(idem);
    cr_assert(it != by_idem.end(), "acked event %s (seq %llu) is missing after the crash",
              idem.c_str(), static_cast<unsigned long long>(a.seq));
    cr_assert_eq(it->second, a.seq, "event %s acked as seq %llu but stored as %llu", idem.c_str(),
                 static_cast<unsigned long long>(a.seq),
                 static_cast<unsigned long long>(it->second));
  }
}

}  // namespace

TestSuite(core, .timeout = 120);

Test(core, send_then_query_shows_event_with_senders_pid_and_uid) {
  TestDaemon d;
  cr_assert(d.start());
  cairn_client* c = open_client(d.socket());
  std::string idem = "query-test-0001";
  cairn_event e = make_event("UserLogin", idem, "bob");
  cairn_ack ack{};
  int rc = cairn_append(c, &e, &ack);
  cr_assert_eq(rc, 0, "append: %s", cairn_strerror(rc));
  cr_assert_eq(ack.seq, 1u);
  cr_assert(ack.durable, "immediate mode must ack durable");
  cairn_close(c);

  std::string out;
  int code = run_capture({cli_path(), "query", "--socket", d.socket(), "-o", "json"}, out);
  cr_assert_eq(code, 0, "cairn query exited %d: %s", code, out.c_str());
  cr_assert(out.find("\"seq\":1") != std::string::npos, "no seq 1 in: %s", out.c_str());
  cr_assert(out.find("\"type\":\"UserLogin\"") != std::string::npos, "no type in: %s", out.c_str());
  std::string pid = "\"pid\":" + std::to_string(getpid());
  std::string uid = "\"uid\":" + std::to_string(getuid());
  cr_assert(out.find(pid) != std::string::npos, "expected %s in: %s", pid.c_str(), out.c_str());
  cr_assert(out.find(uid) != std::string::npos, "expected %s in: %s", uid.c_str(), out.c_str());
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
}

Test(core, immediate_mode_sigkill_mid_stream_loses_no_acked_event) {
  TestDaemon d;
  cr_assert(d.start());
  Streamer s;
  s.run(d.socket(), stream(10, 1000, "DataAccess"));
  cr_assert(s.wait_count(2500, 60'000), "daemon acked only %llu events",
            static_cast<unsigned long long>(s.count.load()));
  d.kill9();
  s.join();
  cr_assert_geq(s.count.load(), 2500u);
  for (const auto& [idem, a] : s.acked) cr_assert(a.durable, "immediate ack not durable: %s", idem.c_str());
  expect_acked_present(d.db(), s.acked, true);
  std::string problem = check_database(d.db());
  cr_assert(problem.empty(), "database after SIGKILL: %s", problem.c_str());
  // And the daemon restarts on it, continuing the chain.
  cr_assert(d.start());
  cairn_client* c = open_client(d.socket());
  std::string idem = "after-restart-01";
  cairn_event e = make_event("DataAccess", idem);
  cairn_ack ack{};
  cr_assert_eq(cairn_append(c, &e, &ack), 0);
  cairn_close(c);
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  auto rows = read_rows(d.db());
  cr_assert(!rows.empty() && rows.back().seq == ack.seq && rows.back().idem == idem,
            "the event after the restart is the newest (seq %llu); %zu rows",
            static_cast<unsigned long long>(ack.seq), rows.size());
  problem = check_database(d.db());
  cr_assert(problem.empty(), "%s", problem.c_str());
}

Test(core, batched_mode_sigterm_commits_all_accepted_events) {
  TestDaemon d;
  cr_assert(d.start({.args = {"--flush-mode", "batched", "--batch-size", "1000000",
                              "--batch-interval-ms", "60000"}}));
  Streamer s;
  s.run(d.socket(), stream(4, 2500, "DataAccess"));
  s.join();
  cr_assert_eq(s.count.load(), 10000u);
  size_t nondurable = 0;
  for (const auto& [idem, a] : s.acked) nondurable += a.durable ? 0 : 1;
  cr_assert_eq(nondurable, 10000u, "batched acks must say durable:false until committed");
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  auto rows = read_rows(d.db());
  cr_assert_eq(rows.size(), 10000u, "after SIGTERM %zu of 10000 accepted events are stored",
               rows.size());
  expect_acked_present(d.db(), s.acked, false);
  std::string problem = check_database(d.db());
  cr_assert(problem.empty(), "%s", problem.c_str());
}

Test(core, hybrid_mode_critical_ack_is_durable_across_sigkill) {
  TestDaemon d;
  cr_assert(d.start({.args = {"--flush-mode", "hybrid", "--batch-size", "1000000",
                              "--batch-interval-ms", "60000"}}));
  cairn_client* c = open_client(d.socket());
  std::vector<std::string> keys;
  for (int i = 0; i < 50; ++i) {
    keys.push_back(idem_for(0, i));
    cairn_event e = make_event("DataAccess", keys.back());
    cairn_ack ack{};
    cr_assert_eq(cairn_append(c, &e, &ack), 0);
    cr_assert(!ack.durable, "routine event in hybrid mode acked durable");
  }
  std::string crit = "critical-event-1";
  cairn_event e = make_event("AuthFailure", crit);
  e.outcome = "failure";
  cairn_ack ack{};
  cr_assert_eq(cairn_append(c, &e, &ack), 0);
  cr_assert(ack.durable, "critical event must be acked durable");
  d.kill9();
  cairn_close(c);
  auto rows = read_rows(d.db());
  cr_assert_eq(rows.size(), 51u, "critical commit must include the 50 events before it");
  cr_assert_eq(rows.back().type, "AuthFailure");
  cr_assert_eq(rows.back().seq, ack.seq);
}

// Critical events jump the writer's queue in hybrid mode, taking their connection's
// earlier events along. Whatever jumps, each connection's events must be stored in the
// order it sent them, every ack must match the file, and every critical ack must be
// durable.
Test(core, hybrid_queue_jumping_keeps_each_connections_order) {
  TestDaemon d;
  cr_assert(d.start({.args = {"--flush-mode", "hybrid", "--batch-size", "1000000",
                              "--batch-interval-ms", "60000"}}));
  Streamer s;
  StreamOptions o = stream(8, 2000, "DataAccess");
  o.window = 64;
  o.type_for = [](int t, int i) { return (i * 7 + t) % 23 == 0 ? "AuthFailure" : "DataAccess"; };
  s.run(d.socket(), o);
  s.join();
  cr_assert_eq(s.count.load(), 16000u, "acked %llu of 16000",
               static_cast<unsigned long long>(s.count.load()));
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  expect_acked_present(d.db(), s.acked, false);
  for (int t = 0; t < 8; ++t) {
    uint64_t prev = 0;
    for (int i = 0; i < 2000; ++i) {
      const AckRecord& a = s.acked.at(stream_idem(o.prefix, t, i));
      cr_assert_gt(a.seq, prev, "connection %d: event %d stored as seq %llu, before its predecessor (seq %llu)",
                   t, i, static_cast<unsigned long long>(a.seq), static_cast<unsigned long long>(prev));
      prev = a.seq;
      if ((i * 7 + t) % 23 == 0) cr_assert(a.durable, "critical event %d of connection %d acked non-durable", i, t);
    }
  }
  std::string problem = check_database(d.db());
  cr_assert(problem.empty(), "%s", problem.c_str());
}

// A full writer queue pauses reading from every connection; they must all be resumed
// once it drains, whatever the order in which results and queue figures reach the loop.
// (A tiny queue makes the daemon pause and resume sessions thousands of times.)
Test(core, backpressure_pauses_and_always_resumes) {
  for (const char* mode : {"batched", "immediate", "hybrid"}) {
    TestDaemon d;
    cr_assert(d.start({.args = {"--flush-mode", mode, "--queue-max-events", "64"}}));
    Streamer s;
    StreamOptions o = stream(8, 3000, "DataAccess");
    o.window = 256;
    s.run(d.socket(), o);
    cr_assert(s.wait_count(24000, 60'000), "%s: only %llu of 24000 acked: sessions left paused",
              mode, static_cast<unsigned long long>(s.count.load()));
    s.join();
    cr_assert_eq(s.failures.load(), 0u, "%s", mode);
    cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
    expect_acked_present(d.db(), s.acked, false);
  }
}

Test(core, restart_continues_the_chain) {
  TestDaemon d;
  for (int run = 0; run < 2; ++run) {
    cr_assert(d.start());
    cairn_client* c = open_client(d.socket());
    for (int i = 0; i < 100; ++i) {
      std::string idem = idem_for(run, i);
      cairn_event e = make_event("Config.Change", idem);
      cairn_ack ack{};
      cr_assert_eq(cairn_append(c, &e, &ack), 0);
      // Gap-free seqs; each clean stop adds its seal record after the run's events.
      cr_assert_eq(ack.seq, static_cast<uint64_t>(run * 101 + i + 1));
    }
    cairn_close(c);
    cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  }
  std::string problem = check_database(d.db());
  cr_assert(problem.empty(), "%s", problem.c_str());
  std::string out;
  int code = run_capture({cli_path(), "verify", "--db", d.db()}, out);
  cr_assert_eq(code, 0, "cairn verify --db: %s", out.c_str());
  cr_assert(out.find("202 records") != std::string::npos, "200 events and 2 seals: %s", out.c_str());
}

namespace {

struct Expect {
  const char* name;
  std::string bytes;
  const char* error;
  const char* field;  // nullptr: don't care
  const char* rule;
  bool closes;
};

std::string frame_of(const std::string& payload) {
  std::string f;
  cairn::proto::frame_append(f, {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()});
  return f;
}

// Builds a msgpack map payload from raw pieces: fixmap header + entries.
std::string fixmap(int n, const std::string& entries) {
  return std::string(1, static_cast<char>(0x80 | n)) + entries;
}
std::string mstr(const std::string& s) {
  return std::string(1, static_cast<char>(0xa0 | s.size())) + s;  // < 32 bytes only
}
std::string req_append(const std::string& event_map) {
  return frame_of(fixmap(3, mstr("op") + mstr("append") + mstr("id") + "\x07" + mstr("event") + event_map));
}

}  // namespace

Test(core, malformed_input_gets_named_errors_and_other_clients_continue) {
  TestDaemon d;
  cr_assert(d.start());
  cairn_client* good = open_client(d.socket());
  std::vector<Expect> cases = {
      {"not msgpack", frame_of("\xc1\xc1\xc1"), "malformed", nullptr, nullptr, false},
      {"not a map", frame_of("\x93\x01\x02\x03"), "malformed", nullptr, nullptr, false},
      {"missing op", frame_of(fixmap(1, mstr("id") + "\x01")), "malformed", nullptr, nullptr, false},
      {"unknown op", frame_of(fixmap(2, mstr("op") + mstr("explode") + mstr("id") + "\x02")),
       "unknown_op", nullptr, nullptr, false},
      {"bad version", frame_of(fixmap(3, mstr("op") + mstr("hello") + mstr("id") + "\x03" +
                                             mstr("version") + "\x09")),
       "unsupported_version", nullptr, nullptr, false},
      {"missing type", req_append(fixmap(1, mstr("actor") + mstr("x"))), "invalid_field", "type",
       "required", false},
      {"bad type pattern", req_append(fixmap(1, mstr("type") + mstr("has space"))),
       "invalid_field", "type", "pattern", false},
      {"escape in actor", req_append(fixmap(2, mstr("type") + mstr("T") + mstr("actor") + mstr("a\x1b[31m"))),
       "invalid_field", "actor", "control_char", false},
      {"newline in target", req_append(fixmap(2, mstr("type") + mstr("T") + mstr("target") + mstr("a\nb"))),
       "invalid_field", "target", "control_char", false},
      {"bidi override", req_append(fixmap(2, mstr("type") + mstr("T") + mstr("actor") + mstr("ab\xe2\x80\xae"))),
       "invalid_field", "actor", "bidi", false},
      {"bom", req_append(fixmap(2, mstr("type") + mstr("T") + mstr("actor") + mstr("\xef\xbb\xbf" "a"))),
       "invalid_field", "actor", "bom", false},
      {"invalid utf8", req_append(fixmap(2, mstr("type") + mstr("T") + mstr("actor") + mstr("\xc3\x28"))),
       "invalid_field", "actor", "utf8", false},
      {"wrong type", req_append(fixmap(2, mstr("type") + mstr("T") + mstr("actor") + "\x05")),
       "invalid_field", "actor", "type", false},
      {"unknown key", req_append(fixmap(2, mstr("type") + mstr("T") + mstr("colour") + mstr("red"))),
       "invalid_field", "colour", "unknown_key", false},
      {"trusted pid", req_append(fixmap(2, mstr("type") + mstr("T") + mstr("pid") + "\x01")),
       "invalid_field", "pid", "trusted_field", false},
      {"severity range", req_append(fixmap(2, mstr("type") + mstr("T") + mstr("severity") + "\x09")),
       "invalid_field", "severity", "range", false},
  };
  for (const auto& tc : cases) {
    RawClient raw(d.socket());
    cr_assert(raw.connected());
    cr_assert(raw.send_bytes(tc.bytes), "%s: send", tc.name);
    auto f = raw.read_frame();
    cr_assert(f.has_value(), "%s: no reply", tc.name);
    auto r = decode_reply(*f);
    cr_assert(r.has_value(), "%s: undecodable reply", tc.name);
    cr_assert(!r->ok, "%s: accepted", tc.name);
    cr_assert_eq(r->error, tc.error, "%s: got %s (%s)", tc.name, r->error.c_str(), r->message.c_str());
    if (tc.field) cr_assert_eq(r->field, tc.field, "%s: field %s", tc.name, r->field.c_str());
    if (tc.rule) cr_assert_eq(r->rule, tc.rule, "%s: rule %s", tc.name, r->rule.c_str());
    // The connection goes on: a valid append on the same connection works.
    cr_assert(raw.send_bytes(append_frame(99, "AfterError")), "%s: send after error", tc.name);
    auto f2 = raw.read_frame();
    cr_assert(f2.has_value(), "%s: connection did not survive the error", tc.name);
    auto r2 = decode_reply(*f2);
    cr_assert(r2 && r2->ok && r2->id == 99, "%s: append after error failed: %s", tc.name,
              r2 ? r2->error.c_str() : "?");
    // And an unrelated client is unaffected.
    std::string idem = std::string("good-client-") + tc.name;
    cairn_event e = make_event("Unaffected", idem);
    cairn_ack ack{};
    cr_assert_eq(cairn_append(good, &e, &ack), 0, "%s: other client failed", tc.name);
  }
  // Broken frame boundaries: answered, then the connection is closed.
  {
    RawClient raw(d.socket());
    cr_assert(raw.send_bytes(std::string("\x7f\xff\xff\xff", 4)));
    auto f = raw.read_frame();
    cr_assert(f.has_value());
    auto r = decode_reply(*f);
    cr_assert(r && r->error == "frame_too_large", "oversize: %s", r ? r->error.c_str() : "?");
    cr_assert(raw.closed_by_peer(), "oversize frame must close the connection");
  }
  {
    RawClient raw(d.socket());
    cr_assert(raw.send_bytes(std::string("\x00\x00\x00\x00", 4)));
    auto f = raw.read_frame();
    cr_assert(f.has_value());
    auto r = decode_reply(*f);
    cr_assert(r && r->error == "malformed", "zero length: %s", r ? r->error.c_str() : "?");
    cr_assert(raw.closed_by_peer(), "zero-length frame must close the connection");
  }
  {
    // Half a frame, then the client vanishes: no row, nothing else disturbed.
    RawClient raw(d.socket());
    std::string f = append_frame(5, "HalfFrame");
    cr_assert(raw.send_bytes(f.substr(0, f.size() / 2)));
    raw.close_now();
  }
  std::string still = "still-fine-0001";
  cairn_event e = make_event("StillFine", still);
  cairn_ack ack{};
  cr_assert_eq(cairn_append(good, &e, &ack), 0);
  cairn_close(good);
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  for (const auto& r : read_rows(d.db())) cr_assert_neq(r.type, "HalfFrame");
  std::string problem = check_database(d.db());
  cr_assert(problem.empty(), "%s", problem.c_str());
}

Test(core, client_reconnects_across_daemon_restart_without_loss_or_duplicates) {
  TestDaemon d;
  cr_assert(d.start());
  Streamer s;
  s.run(d.socket(), stream(2, 3000, "DataAccess", /*reconnect_ms=*/30'000));
  cr_assert(s.wait_count(1000, 60'000));
  // SIGKILL: the harshest restart; unacked events must be resent and deduplicated.
  d.kill9();
  cr_assert(d.start());
  s.join();
  cr_assert_eq(s.count.load(), 6000u, "only %llu of 6000 events were acked",
               static_cast<unsigned long long>(s.count.load()));
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  auto rows = read_rows(d.db());
  cr_assert_eq(rows.size(), 6000u, "%zu rows for 6000 events (loss or duplicates)", rows.size());
  expect_acked_present(d.db(), s.acked, false);
  std::string problem = check_database(d.db());
  cr_assert(problem.empty(), "%s", problem.c_str());
}

Test(core, flush_barrier_makes_batched_events_durable_across_sigkill) {
  TestDaemon d;
  cr_assert(d.start({.args = {"--flush-mode", "batched", "--batch-size", "1000000",
                              "--batch-interval-ms", "60000"}}));
  cairn_client* c = open_client(d.socket());
  uint64_t last = 0;
  for (int i = 0; i < 100; ++i) {
    std::string idem = idem_for(7, i);
    cairn_event e = make_event("DataAccess", idem);
    cairn_ack ack{};
    cr_assert_eq(cairn_append(c, &e, &ack), 0);
    cr_assert_not(ack.durable);
    last = ack.seq;
  }
  uint64_t durable_seq = 0;
  int rc = cairn_flush(c, &durable_seq);
  cr_assert_eq(rc, 0, "flush: %s", cairn_strerror(rc));
  cr_assert_geq(durable_seq, last, "flush answered before seq %llu was durable",
                static_cast<unsigned long long>(last));
  d.kill9();
  cairn_close(c);
  cr_assert_eq(read_rows(d.db()).size(), 100u, "events before a flush must survive SIGKILL");
}

Test(core, query_from_an_unprivileged_uid_is_permission_denied_but_append_works) {
  if (getuid() != 0) cr_skip_test("needs root to switch to an unprivileged uid");
  TestDaemon d;
  cr_assert(d.start({.args = {"--socket-mode", "0666"}}));
  chmod(d.dir().c_str(), 0755);  // mkdtemp made it 0700: nobody could not reach the socket
  pid_t pid = fork();
  if (pid == 0) {
    // Child: become nobody, append (allowed) then query (refused). Report by exit code.
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
    RawClient raw(d.socket());
    if (!raw.connected()) _exit(11);
    raw.send_bytes(append_frame(1, "FromNobody"));
    auto a = raw.read_frame();
    auto ar = a ? decode_reply(*a) : std::nullopt;
    if (!ar || !ar->ok) _exit(12);
    std::string q;
    cairn::proto::QuerySpec spec;
    cairn::proto::encode_query(q, 2, spec);
    raw.send_bytes(q);
    auto r = raw.read_frame();
    auto rr = r ? decode_reply(*r) : std::nullopt;
    if (!rr || rr->ok || rr->error != "permission_denied") _exit(13);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  cr_assert_eq(exit_code(st), 0, "child step %d failed (12: append refused, 13: query allowed)",
               exit_code(st));
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  auto rows = read_rows(d.db());
  cr_assert_eq(rows.size(), 1u);
  cr_assert_eq(rows[0].uid, 65534u, "the trusted uid is the peer's, from SO_PEERCRED");
}

// More requests pipelined than max_inflight, then the client only waits (or half-closes):
// every one is answered, in order. Found by fuzz_session: a reply that freed the last
// in-flight slot was counted as still in flight, so the frames still buffered were never
// served and the connection hung (batched mode, tiny queues).
Test(core, pipelining_past_max_inflight_is_answered_in_full) {
  TestDaemon d;
  cr_assert(d.start({.args = {"--flush-mode", "batched", "--batch-size", "7", "--batch-interval-ms", "5",
                              "--max-inflight", "4", "--queue-max-events", "16"}}));
  for (bool half_close : {false, true}) {
    RawClient raw(d.socket());
    cr_assert(raw.connected());
    std::string all;
    constexpr uint64_t kRequests = 40;
    // Every fourth a flush: its reply waits for a commit while the appends behind it are
    // acked at once, so their replies are filled but held back behind it in slot order.
    for (uint64_t id = 1; id <= kRequests; ++id)
      all += id % 4 == 1 ? frame_of(fixmap(2, mstr("op") + mstr("flush") + mstr("id") + std::string(1, static_cast<char>(id))))
                         : append_frame(id, half_close ? "PipeHalf" : "PipeWait");
    cr_assert(raw.send_bytes(all));
    if (half_close) cr_assert(raw.half_close());
    for (uint64_t id = 1; id <= kRequests; ++id) {
      auto f = raw.read_frame();
      cr_assert(f.has_value(), "half_close=%d: no reply to request %llu of %llu", half_close,
                static_cast<unsigned long long>(id), static_cast<unsigned long long>(kRequests));
      auto r = decode_reply(*f);
      cr_assert(r && r->ok && r->id == id, "half_close=%d: reply %llu: %s", half_close,
                static_cast<unsigned long long>(id), r ? r->error.c_str() : "undecodable");
    }
    if (half_close) cr_assert(raw.closed_by_peer(), "the daemon must close a half-closed connection once answered");
  }
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  size_t n = 0;
  for (const auto& r : read_rows(d.db())) n += (r.type == "PipeWait" || r.type == "PipeHalf");
  cr_assert_eq(n, 60u, "stored %zu of 60 pipelined appends", n);
}
