// libcairn against a scripted fake daemon (fake_daemon.hpp): reconnect and resend,
// refusals, local limits, replies it cannot read, and the severity ABI.
#include <criterion/criterion.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cairn/cairn.h>

#include <dlfcn.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "../../../protocol/frame.hpp"
#include "../../../protocol/message.hpp"
#include "fake_daemon.hpp"

using namespace cairn;

namespace {

using testing::FakeDaemon;
using testing::Request;

cairn_client* open_client(const FakeDaemon& d, int reconnect_ms, unsigned window = 64) {
  cairn_options o;
  cairn_options_init(&o);
  o.client_name = "test";
  o.reconnect_timeout_ms = reconnect_ms;
  o.max_inflight = window;
  cairn_client* c = nullptr;
  int rc = cairn_open(&c, d.path().c_str(), &o);
  cr_assert_eq(rc, 0, "cairn_open: %s", cairn_strerror(rc));
  return c;
}

cairn_event event(const char* type) {
  cairn_event ev{};  // zero-initialised: every optional member "not sent"
  ev.type = type;
  return ev;
}

void assert_clean(FakeDaemon& d) {
  d.join();
  cr_assert(d.problems.empty(), "fake daemon: %s", d.problems.c_str());
}

}  // namespace

TestSuite(libcairn, .timeout = 30);

// The daemon stores events 1-5 of 8 but acks only 1-3, then the connection drops. The
// client must resend exactly the unacked 4-8, in order, with their original idem bytes;
// the daemon answers 4-5 duplicate:true with their original seqs.
Test(libcairn, lost_connection_resends_unacked_frames_with_the_same_idem) {
  std::vector<std::string> first, second;
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    std::vector<uint64_t> ids;
    for (int i = 0; i < 8; ++i) {
      Request r = s.append(fd);
      first.push_back(r.idem);
      ids.push_back(r.id);
    }
    for (int i = 0; i < 3; ++i) s.ack(fd, ids[i], i + 1);
    close(fd);  // events 4 and 5 are "stored" but their acks are lost
    fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    for (int i = 3; i < 8; ++i) {
      Request r = s.append(fd);
      second.push_back(r.idem);
      s.ack(fd, r.id, i + 1, /*duplicate=*/i < 5);
    }
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  std::vector<uint64_t> tickets(8);
  for (auto& t : tickets) {
    cairn_event ev = event("Test.Event");
    cr_assert_eq(cairn_append_async(c, &ev, &t), 0);
  }
  for (int i = 0; i < 8; ++i) {
    uint64_t ticket = 0;
    cairn_ack ack{};
    int rc = cairn_next_ack(c, &ticket, &ack);
    cr_assert_eq(rc, 0, "event %d: %s", i, cairn_strerror(rc));
    cr_assert_eq(ticket, tickets[i], "acks come in send order");
    cr_assert_eq(ack.seq, static_cast<uint64_t>(i + 1));
    cr_assert_eq(ack.duplicate, i == 3 || i == 4 ? 1 : 0, "event %d", i);
  }
  uint64_t ticket = 0;
  cairn_ack ack{};
  cr_assert_eq(cairn_next_ack(c, &ticket, &ack), CAIRN_E_INVALID_ARG, "nothing outstanding");
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 2);
  cr_assert_eq(second.size(), 5u);
  for (size_t i = 0; i < second.size(); ++i) {
    cr_assert_eq(first[3 + i].size(), 16u, "generated idem keys are 16 bytes");
    cr_assert(second[i] == first[3 + i], "resent event %zu carries its original idem", 3 + i);
  }
  for (size_t i = 1; i < first.size(); ++i) cr_assert(first[i] != first[i - 1], "idem keys differ");
}

// A draining daemon answers shutting_down (to the event, then to the next hello): the
// event is resent to the next daemon with the same idem, and the caller sees only the ack.
Test(libcairn, shutting_down_reply_is_resent_after_reconnect_not_reported) {
  std::string idem1, idem3;
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request r = s.append(fd);
    idem1 = r.idem;
    s.error(fd, r.id, proto::ErrorCode::shutting_down);
    close(fd);
    fd = s.accept_one();  // still draining: refuses the hello too
    if (fd < 0) return;
    Request h = s.read_request(fd);
    s.error(fd, h.id, proto::ErrorCode::shutting_down);
    close(fd);
    fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    r = s.append(fd);
    idem3 = r.idem;
    s.ack(fd, r.id, 7);
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  cairn_event ev = event("Test.Event");
  ev.idem = "idem-key-0001";
  ev.idem_len = 13;
  cairn_ack ack{};
  int rc = cairn_append(c, &ev, &ack);
  cr_assert_eq(rc, 0, "%s", cairn_strerror(rc));
  cr_assert_eq(ack.seq, 7u);
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 3);
  cr_assert_eq(idem1, "idem-key-0001", "a caller's idem is sent as given");
  cr_assert_eq(idem3, idem1);
}

// invalid_field, storage_failed and rate_limited belong to their event: reported with
// the daemon's details, not resent, and the connection carries on.
Test(libcairn, refusals_are_reported_per_event_and_not_resent) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request a = s.append(fd), b = s.append(fd), e = s.append(fd);
    s.error(fd, a.id, proto::ErrorCode::invalid_field, "fields.user", "control_char");
    s.ack(fd, b.id, 1);
    s.error(fd, e.id, proto::ErrorCode::storage_failed);
    Request r = s.append(fd);
    s.error(fd, r.id, proto::ErrorCode::rate_limited);
    Request p = s.read_request(fd);
    if (p.op != "ping") s.problem("expected ping");
    std::string f;
    proto::encode_pong(f, p.id);
    s.send_all(fd, f);
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  for (int i = 0; i < 4; ++i) {
    cairn_event ev = event("Test.Event");
    uint64_t t = 0;
    cr_assert_eq(cairn_append_async(c, &ev, &t), 0);
  }
  uint64_t t = 0;
  cairn_ack ack{};
  cr_assert_eq(cairn_next_ack(c, &t, &ack), CAIRN_E_REJECTED);
  const char *code = nullptr, *field = nullptr, *rule = nullptr, *msg = nullptr;
  cr_assert_eq(cairn_last_error(c, &code, &field, &rule, &msg), 0);
  cr_assert_str_eq(code, "invalid_field");
  cr_assert_str_eq(field, "fields.user");
  cr_assert_str_eq(rule, "control_char");
  cr_assert_eq(cairn_next_ack(c, &t, &ack), 0);
  cr_assert_eq(ack.seq, 1u);
  cr_assert_eq(cairn_next_ack(c, &t, &ack), CAIRN_E_STORAGE);
  cairn_last_error(c, &code, nullptr, nullptr, nullptr);
  cr_assert_str_eq(code, "storage_failed");
  // A rate limit has its own code, so a caller can tell "later" from "never".
  cr_assert_eq(cairn_next_ack(c, &t, &ack), CAIRN_E_RATE_LIMITED);
  cairn_last_error(c, &code, nullptr, nullptr, nullptr);
  cr_assert_str_eq(code, "rate_limited");
  cr_assert_eq(cairn_ping(c), 0);
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 1, "no reconnect for a refusal");
  cr_assert_eq(d.ops.size(), 6u, "hello, four appends, ping: nothing resent");
}

Test(libcairn, without_reconnect_a_lost_connection_fails_the_event_never_acks_it) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    s.append(fd);
    close(fd);
  });
  cairn_client* c = open_client(d, 0);
  cairn_event ev = event("Test.Event");
  cairn_ack ack{};
  cr_assert_eq(cairn_append(c, &ev, &ack), CAIRN_E_IO);
  cr_assert_eq(cairn_ping(c), CAIRN_E_IO, "the handle stays broken");
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 1);
}

Test(libcairn, daemon_not_back_within_the_timeout_fails_what_was_in_flight) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    s.append(fd);
    s.append(fd);
    s.stop_listening();  // the daemon is gone for good: connect() gets ENOENT
    close(fd);
  });
  cairn_client* c = open_client(d, 200);
  uint64_t t1 = 0, t2 = 0, t = 0;
  cairn_event ev = event("Test.Event");
  cr_assert_eq(cairn_append_async(c, &ev, &t1), 0);
  cr_assert_eq(cairn_append_async(c, &ev, &t2), 0);
  cairn_ack ack{};
  cr_assert_eq(cairn_next_ack(c, &t, &ack), CAIRN_E_CONNECT);
  cr_assert_eq(t, t1);
  cr_assert_eq(cairn_next_ack(c, &t, &ack), CAIRN_E_CONNECT);
  cr_assert_eq(t, t2);
  cairn_close(c);
  assert_clean(d);
}

// An event over the daemon's max_frame would make it close the connection, and a resend
// would do that again forever: libcairn refuses it before sending.
Test(libcairn, event_over_max_frame_is_refused_locally_and_the_handle_goes_on) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd, /*max_frame=*/512)) return;
    Request p = s.read_request(fd);
    std::string f;
    proto::encode_pong(f, p.id);
    s.send_all(fd, f);
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  std::string big(1000, 'x');
  cairn_event ev = event("Test.Event");
  ev.message = big.c_str();
  cairn_ack ack{};
  cr_assert_eq(cairn_append(c, &ev, &ack), CAIRN_E_INVALID_ARG);
  const char* code = nullptr;
  cairn_last_error(c, &code, nullptr, nullptr, nullptr);
  cr_assert_str_eq(code, "frame_too_large");
  cr_assert_eq(cairn_ping(c), 0);
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.ops.size(), 2u, "only hello and ping reached the daemon");
  cr_assert_eq(d.ops[1], "ping");
}

// An error the daemon could not attribute (id 0) answers the oldest request: that one
// fails, instead of being resent into the same error forever.
Test(libcairn, unattributed_error_fails_the_oldest_request) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    s.append(fd);
    s.error(fd, 0, proto::ErrorCode::malformed);
    Request b = s.append(fd);
    s.ack(fd, b.id, 1);
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  cairn_event ev = event("Test.Event");
  cairn_ack ack{};
  cr_assert_eq(cairn_append(c, &ev, &ack), CAIRN_E_REJECTED);
  cr_assert_eq(cairn_append(c, &ev, &ack), 0);
  cr_assert_eq(ack.seq, 1u);
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 1);
}

Test(libcairn, flush_and_raw_requests_return_the_daemons_reply) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request f1 = s.read_request(fd);
    std::string f;
    proto::encode_flush_reply(f, f1.id, 42);
    s.send_all(fd, f);
    Request st = s.read_request(fd);
    proto::Stats stats;
    stats.events = 9;
    stats.flush_mode = "batched";
    f.clear();
    proto::encode_stats_reply(f, st.id, stats);
    s.send_all(fd, f);
    Request v = s.read_request(fd);
    s.error(fd, v.id, proto::ErrorCode::permission_denied);
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  uint64_t durable = 0;
  cr_assert_eq(cairn_flush(c, &durable), 0);
  cr_assert_eq(durable, 42u);
  void* reply = nullptr;
  size_t len = 0;
  cr_assert_eq(cairn_request(c, "stats", nullptr, 0, &reply, &len), 0);
  auto dec = proto::Decoded::parse({static_cast<const uint8_t*>(reply), len}, 16);
  cr_assert(dec.ok());
  auto r = proto::reply_from(dec.value());
  cr_assert(r.ok());
  auto stats = proto::stats_from(r.value());
  cr_assert(stats.ok());
  cr_assert_eq(stats.value().events, 9u);
  cairn_free(reply);
  reply = nullptr;
  cr_assert_eq(cairn_request(c, "verify", nullptr, 0, &reply, &len), CAIRN_E_DENIED);
  cairn_free(reply);
  cr_assert_eq(cairn_request(c, "append", nullptr, 0, &reply, &len), CAIRN_E_INVALID_ARG,
               "appends go through cairn_append");
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.ops.size(), 4u);
  cr_assert_eq(d.ops[1], "flush");
  cr_assert_eq(d.ops[2], "stats");
  cr_assert_eq(d.ops[3], "verify");
}

Test(libcairn, argument_errors_never_touch_the_socket) {
  cairn_client* c = nullptr;
  cr_assert_eq(cairn_open(&c, nullptr, nullptr), CAIRN_E_INVALID_ARG);
  cr_assert_eq(cairn_open(nullptr, "/x", nullptr), CAIRN_E_INVALID_ARG);
  cairn_options o;
  cairn_options_init(&o);
  o.reconnect_timeout_ms = 0;
  cr_assert_eq(cairn_open(&c, "/nonexistent/cairn.sock", &o), CAIRN_E_CONNECT);
  cr_assert_null(c);
  cr_assert_eq(cairn_append(nullptr, nullptr, nullptr), CAIRN_E_INVALID_ARG);
  cairn_close(nullptr);
  cr_assert_str_eq(cairn_strerror(CAIRN_E_STORAGE),
                   "cairnd could not store the event (storage_failed)");
  cr_assert_str_eq(cairn_strerror(12345), "unknown error");
}

// ---- replies libcairn cannot read: fail the call, never reconnect ----

// A reply over 16 MiB (a query page of huge events) used to be taken for a lost
// connection: libcairn reconnected and resent the query, forever. It must fail that one
// request with a named error, and the connection must go on serving the next.
Test(libcairn, reply_over_the_limit_fails_the_request_and_the_connection_goes_on) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request q = s.read_request(fd);
    // A whole, well-framed reply one byte over the limit.
    std::string payload(proto::kMaxFrameCeiling + 1, '\0');
    payload[0] = '\x80';  // the content does not matter: it is never parsed
    s.send_payload(fd, payload);
    Request p = s.read_request(fd);
    std::string f;
    proto::encode_pong(f, p.id);
    s.send_all(fd, f);
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  void* reply = nullptr;
  size_t len = 0;
  cr_assert_eq(cairn_request(c, "query", nullptr, 0, &reply, &len), CAIRN_E_PROTOCOL);
  cr_assert_null(reply);
  const char *code = nullptr, *msg = nullptr;
  cairn_last_error(c, &code, nullptr, nullptr, &msg);
  cr_assert_str_eq(code, "reply_too_large");
  cr_assert(std::strstr(msg, "16777217") != nullptr, "the message gives the size: %s", msg);
  cr_assert_eq(cairn_ping(c), 0, "the connection stays in step after the skipped reply");
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 1, "no reconnect");
  cr_assert_eq(d.ops.size(), 3u, "hello, query, ping: the query was not resent");
}

// Replies that are framed correctly but are not a reply libcairn can read fail the
// request they answer, with malformed_reply, and the connection goes on.
Test(libcairn, malformed_replies_fail_their_request_without_a_reconnect) {
  const std::vector<std::string> bad = {
      std::string("\x93\x01\x02\x03", 4),                          // an array, not a map
      std::string("\x81\xa2id", 4),                                // truncated map
      std::string("\x82\xa2id\x01\xa2ok\x01", 9),                  // ok is not a bool
      std::string("\x81\xa2ok\xc3", 5),                            // no id
      std::string("\x00", 1),                                      // not a map at all
  };
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    for (const auto& b : bad) {
      s.read_request(fd);
      s.send_payload(fd, b);
    }
    s.send_all(fd, std::string("\0\0\0\0", 4));  // an empty frame
    Request p = s.read_request(fd);
    Request q = s.read_request(fd);
    std::string f;
    proto::encode_pong(f, q.id);
    s.send_all(fd, f);
    s.until_closed(fd);
    (void)p;
  });
  cairn_client* c = open_client(d, 5000);
  for (size_t i = 0; i < bad.size(); ++i) {
    cr_assert_eq(cairn_ping(c), CAIRN_E_PROTOCOL, "reply %zu", i);
    const char* code = nullptr;
    cairn_last_error(c, &code, nullptr, nullptr, nullptr);
    cr_assert_str_eq(code, "malformed_reply", "reply %zu", i);
  }
  cr_assert_eq(cairn_ping(c), CAIRN_E_PROTOCOL, "empty frame");
  cr_assert_eq(cairn_ping(c), 0);
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 1, "no reconnect");
}

// A daemon that accepts, answers hello and drops the connection every time: each
// reconnect "succeeds", which used to restart the deadline, so the call never returned.
// The deadline must count across reconnects that make no progress.
Test(libcairn, daemon_that_drops_every_connection_fails_the_call_within_the_deadline) {
  std::atomic<bool> quit{false};
  FakeDaemon d([&](FakeDaemon& s) {
    for (;;) {
      int fd = s.accept_until(quit);
      if (fd < 0) return;
      if (s.hello(fd)) s.read_request(fd);
      close(fd);
    }
  });
  cairn_client* c = open_client(d, 300);
  cairn_event ev = event("Test.Event");
  cairn_ack ack{};
  int rc = cairn_append(c, &ev, &ack);
  quit = true;
  cr_assert_eq(rc, CAIRN_E_CONNECT, "%s", cairn_strerror(rc));
  const char *code = nullptr, *msg = nullptr;
  cairn_last_error(c, &code, nullptr, nullptr, &msg);
  cr_assert_str_eq(code, "disconnected");
  cr_assert(std::strstr(msg, "closed the connection") != nullptr, "%s", msg);
  cairn_close(c);
  assert_clean(d);
  // With backoff (10 ms doubling) 300 ms hold a handful of attempts; without it, the
  // client reconnected thousands of times.
  cr_assert_lt(d.connections, 20, "%d connections in 300 ms: no backoff", d.connections);
  cr_assert_gt(d.connections, 2, "it did retry");
}

// A reply can only come in request order; one that answers another id means the two
// sides disagree: everything in flight fails with reply_out_of_step, nothing is resent.
Test(libcairn, reply_out_of_step_fails_what_is_in_flight_without_resending) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request a = s.append(fd);
    s.append(fd);
    s.ack(fd, a.id + 1, 5);  // the second one's id, first
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  cairn_event ev = event("Test.Event");
  uint64_t t = 0;
  cr_assert_eq(cairn_append_async(c, &ev, &t), 0);
  cr_assert_eq(cairn_append_async(c, &ev, &t), 0);
  cairn_ack ack{};
  for (int i = 0; i < 2; ++i) {
    cr_assert_eq(cairn_next_ack(c, &t, &ack), CAIRN_E_PROTOCOL, "event %d", i);
    const char* code = nullptr;
    cairn_last_error(c, &code, nullptr, nullptr, nullptr);
    cr_assert_str_eq(code, "reply_out_of_step");
  }
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 1);
  cr_assert_eq(d.ops.size(), 3u, "hello and two appends: nothing resent");
}

// With reconnection disabled, shutting_down is the event's answer (as cairn.h says),
// not a lost connection reported as CAIRN_E_IO.
Test(libcairn, shutting_down_without_reconnect_is_reported_as_such) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request a = s.append(fd);
    s.error(fd, a.id, proto::ErrorCode::shutting_down);
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 0);
  cairn_event ev = event("Test.Event");
  cairn_ack ack{};
  cr_assert_eq(cairn_append(c, &ev, &ack), CAIRN_E_SHUTTING_DOWN);
  const char* code = nullptr;
  cairn_last_error(c, &code, nullptr, nullptr, nullptr);
  cr_assert_str_eq(code, "shutting_down");
  cairn_close(c);
  assert_clean(d);
}

// ---- why a connection could not be made ----

Test(libcairn, open_says_why_it_could_not_connect) {
  cairn_options o;
  cairn_options_init(&o);
  o.reconnect_timeout_ms = 0;
  cairn_client* c = nullptr;
  errno = 0;
  cr_assert_eq(cairn_open(&c, "/nonexistent/cairn.sock", &o), CAIRN_E_CONNECT);
  cr_assert_eq(errno, ENOENT, "errno %d", errno);
  cr_assert_null(c);
}

// A daemon over its connection cap answers the hello with overloaded (id 0) and closes.
// That is the daemon's refusal, not "cannot connect": the code says so, with or without
// retries.
Test(libcairn, overloaded_daemon_is_reported_as_overloaded_not_as_unreachable) {
  std::atomic<bool> quit{false};
  FakeDaemon d([&](FakeDaemon& s) {
    for (;;) {
      int fd = s.accept_until(quit);
      if (fd < 0) return;
      s.error(fd, 0, proto::ErrorCode::overloaded);  // before reading anything
      close(fd);
    }
  });
  for (int reconnect_ms : {0, 100}) {
    cairn_options o;
    cairn_options_init(&o);
    o.reconnect_timeout_ms = reconnect_ms;
    cairn_client* c = nullptr;
    cr_assert_eq(cairn_open(&c, d.path().c_str(), &o), CAIRN_E_OVERLOADED, "reconnect %d", reconnect_ms);
    cr_assert_null(c);
  }
  quit = true;
  assert_clean(d);
}

// ---- the fast ack reader and the full decoder agree on every integer encoding ----

namespace {

struct Encoding {
  const char* name;
  std::string bytes;   // msgpack of the value
  std::optional<uint64_t> value;  // nullopt: not an unsigned integer (negative, float ...)
};

std::vector<Encoding> encodings() {
  using S = std::string;
  return {
      {"positive fixint", S("\x2a", 1), 42},
      {"fixint 127", S("\x7f", 1), 127},
      {"uint8", S("\xcc\x2a", 2), 42},
      {"uint8 255", S("\xcc\xff", 2), 255},
      {"uint16", S("\xcd\x00\x2a", 3), 42},
      {"uint32", S("\xce\x00\x00\x00\x2a", 5), 42},
      {"uint32 max", S("\xce\xff\xff\xff\xff", 5), 0xffffffffu},
      {"uint64", S("\xcf\x00\x00\x00\x00\x00\x00\x00\x2a", 9), 42},
      {"uint64 max", S("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9), UINT64_MAX},
      {"int8", S("\xd0\x2a", 2), 42},
      {"int8 0", S("\xd0\x00", 2), 0},
      {"int16", S("\xd1\x00\x2a", 3), 42},
      {"int16 max", S("\xd1\x7f\xff", 3), 0x7fff},
      {"int32", S("\xd2\x00\x00\x00\x2a", 5), 42},
      {"int64", S("\xd3\x00\x00\x00\x00\x00\x00\x00\x2a", 9), 42},
      {"int64 max", S("\xd3\x7f\xff\xff\xff\xff\xff\xff\xff", 9), INT64_MAX},
      {"negative fixint", S("\xff", 1), std::nullopt},
      {"negative fixint -32", S("\xe0", 1), std::nullopt},
      {"int8 -1", S("\xd0\xff", 2), std::nullopt},
      {"int16 -1", S("\xd1\xff\xff", 3), std::nullopt},
      {"int32 min", S("\xd2\x80\x00\x00\x00", 5), std::nullopt},
      {"int64 -1", S("\xd3\xff\xff\xff\xff\xff\xff\xff\xff", 9), std::nullopt},
      {"float32", S("\xca\x42\x28\x00\x00", 5), std::nullopt},
      {"string", S("\xa2\x34\x32", 3), std::nullopt},
      {"nil", S("\xc0", 1), std::nullopt},
  };
}

// An ack map with `id` and `seq` as given (raw msgpack).
std::string ack_map(const std::string& id, const std::string& seq) {
  return std::string("\x85\xa2id", 4) + id + std::string("\xa2ok\xc3", 4) + std::string("\xa3seq", 4) + seq +
         std::string("\xa7" "durable\xc3", 9) + std::string("\xa9" "duplicate\xc2", 11);
}

}  // namespace

// The two readers of a reply (reply_peek, used by libcairn for every reply, and
// reply_from + ack_from, used by tools) must read the same seq, or refuse the same reply.
Test(reply_readers, agree_on_seq_for_every_integer_encoding) {
  for (const auto& e : encodings()) {
    std::string m = ack_map("\x07", e.bytes);
    std::span<const uint8_t> b{reinterpret_cast<const uint8_t*>(m.data()), m.size()};
    auto peek = proto::reply_peek(b);
    auto dec = proto::Decoded::parse(b, 16);
    cr_assert(dec.ok(), "%s: %s", e.name, dec.ok() ? "" : dec.error().c_str());
    auto rep = proto::reply_from(dec.value());
    cr_assert(rep.ok(), "%s", e.name);
    auto ack = proto::ack_from(rep.value());
    if (e.value) {
      cr_assert(peek.has_value() && peek->has_seq, "%s: fast reader refused it", e.name);
      cr_assert(ack.ok(), "%s: full decoder refused it", e.name);
      cr_assert_eq(peek->seq, *e.value, "%s: fast reader", e.name);
      cr_assert_eq(ack.value().seq, *e.value, "%s: full decoder", e.name);
    } else {
      cr_assert_not(peek.has_value(), "%s: fast reader took it (seq %llu)", e.name,
                    peek ? static_cast<unsigned long long>(peek->seq) : 0ull);
      cr_assert_not(ack.ok(), "%s: full decoder took it", e.name);
    }
  }
}

Test(reply_readers, agree_on_id_for_every_integer_encoding) {
  for (const auto& e : encodings()) {
    std::string m = ack_map(e.bytes, "\x01");
    std::span<const uint8_t> b{reinterpret_cast<const uint8_t*>(m.data()), m.size()};
    auto peek = proto::reply_peek(b);
    auto dec = proto::Decoded::parse(b, 16);
    cr_assert(dec.ok(), "%s", e.name);
    auto rep = proto::reply_from(dec.value());
    cr_assert_eq(peek.has_value(), e.value.has_value(), "%s: fast reader", e.name);
    cr_assert_eq(rep.ok(), e.value.has_value(), "%s: full decoder", e.name);
    if (e.value) {
      cr_assert_eq(peek->id, *e.value, "%s", e.name);
      cr_assert_eq(rep.value().id, *e.value, "%s", e.name);
    }
  }
}

// Keys in str8 encoding are keys all the same; a repeated key is refused rather than
// read differently by the two readers (the full decoder takes the first).
Test(reply_readers, str8_keys_count_and_repeated_keys_are_refused) {
  std::string m = std::string("\x83\xd9\x02id\x07\xa2ok\xc3\xd9\x03seq\x09", 16);
  auto peek = proto::reply_peek({reinterpret_cast<const uint8_t*>(m.data()), m.size()});
  cr_assert(peek.has_value());
  cr_assert_eq(peek->id, 7u);
  cr_assert(peek->has_seq);
  cr_assert_eq(peek->seq, 9u);
  std::string twice = std::string("\x84\xa2id\x07\xa2ok\xc3\xa3seq\x01\xa3seq\x02", 18);
  cr_assert_not(proto::reply_peek({reinterpret_cast<const uint8_t*>(twice.data()), twice.size()}).has_value());
}

// End to end: `cairn send` printed seq 0 for an ack whose seq was an int8. Every
// encoding reaches the caller as the same seq; a negative or mistyped seq, or an ack
// without one, fails the event with malformed_reply instead of acking seq 0.
Test(libcairn, acks_are_read_the_same_in_every_integer_encoding) {
  auto encs = encodings();
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    for (const auto& e : encs) {
      Request r = s.append(fd);
      // The id as an int8 when it fits: also a valid encoding of a uint.
      std::string id = r.id < 128 ? std::string("\xd0", 1) + static_cast<char>(r.id)
                                  : std::string("\xcd", 1) + static_cast<char>(r.id >> 8) + static_cast<char>(r.id);
      s.send_payload(fd, ack_map(id, e.bytes));
    }
    Request r = s.append(fd);  // an ack without seq
    s.send_payload(fd, std::string("\x82\xa2id", 4) + static_cast<char>(r.id) + std::string("\xa2ok\xc3", 4));
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  for (const auto& e : encs) {
    cairn_event ev = event("Test.Event");
    cairn_ack ack{};
    int rc = cairn_append(c, &ev, &ack);
    if (e.value) {
      cr_assert_eq(rc, 0, "%s: %s", e.name, cairn_strerror(rc));
      cr_assert_eq(ack.seq, *e.value, "%s", e.name);
      cr_assert_eq(ack.durable, 1, "%s", e.name);
    } else {
      cr_assert_eq(rc, CAIRN_E_PROTOCOL, "%s: rc %d seq %llu", e.name, rc,
                   static_cast<unsigned long long>(ack.seq));
      const char* code = nullptr;
      cairn_last_error(c, &code, nullptr, nullptr, nullptr);
      cr_assert_str_eq(code, "malformed_reply", "%s", e.name);
    }
  }
  cairn_event ev = event("Test.Event");
  cairn_ack ack{};
  cr_assert_eq(cairn_append(c, &ev, &ack), CAIRN_E_PROTOCOL, "an ack without seq");
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 1, "no reconnect for any of them");
}

// ---- severity: zero means "not set"; programs linked against 0.1 keep their meaning ----

Test(libcairn, zero_initialised_event_sends_no_severity_and_levels_are_plus_one) {
  std::vector<std::optional<uint64_t>> seen;
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    for (int i = 0; i < 7; ++i) {
      Request r = s.append(fd);
      seen.push_back(r.severity);
      s.ack(fd, r.id, i + 1);
    }
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  auto send = [&](int severity, int want_rc) {
    cairn_event ev = event("Test.Event");
    ev.severity = severity;
    cairn_ack ack{};
    cr_assert_eq(cairn_append(c, &ev, &ack), want_rc, "severity %d", severity);
  };
  cairn_event zero{};
  zero.type = "Test.Event";
  cairn_ack ack{};
  cr_assert_eq(cairn_append(c, &zero, &ack), 0);  // 1: not sent
  send(CAIRN_SEV_EMERG, 0);                       // 2: 0
  send(CAIRN_SEV_ERR, 0);                         // 3: 3
  send(CAIRN_SEVERITY(7), 0);                     // 4: 7
  send(CAIRN_SEV_DEBUG, 0);                       // 5: 7
  send(-1, 0);                                    // 6: not sent (the 0.1 spelling)
  send(9, CAIRN_E_INVALID_ARG);
  send(-2, CAIRN_E_INVALID_ARG);
  // Through the 0.1 symbol, as a program linked against 0.1 calls it: 0 is emerg.
  using AppendFn = int (*)(cairn_client*, const cairn_event*, cairn_ack*);
  auto v0 = reinterpret_cast<AppendFn>(dlvsym(RTLD_DEFAULT, "cairn_append", "CAIRN_0"));
  cr_assert_not_null(v0, "libcairn exports cairn_append@CAIRN_0");
  cr_assert_neq(reinterpret_cast<void*>(v0), reinterpret_cast<void*>(&cairn_append));
  cr_assert_eq(v0(c, &zero, &ack), 0);            // 7: 0 (emerg, as 0.1 read it)
  cairn_event bad = zero;
  bad.severity = 8;
  cr_assert_eq(v0(c, &bad, &ack), CAIRN_E_INVALID_ARG, "0.1 took 0..7 only");
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(seen.size(), 7u);
  cr_assert_not(seen[0].has_value(), "a zero-initialised event sends no severity (daemon: info)");
  cr_assert_eq(seen[1].value_or(99), 0u);
  cr_assert_eq(seen[2].value_or(99), 3u);
  cr_assert_eq(seen[3].value_or(99), 7u);
  cr_assert_eq(seen[4].value_or(99), 7u);
  cr_assert_not(seen[5].has_value());
  cr_assert_eq(seen[6].value_or(99), 0u, "the 0.1 entry point keeps 0.1's reading");
}

// The flush sibling of an ack without seq: a flush answer that does not say how far is
// durable is refused, not reported as durable_seq 0.
Test(libcairn, flush_reply_without_durable_seq_is_refused) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request f = s.read_request(fd);
    std::string pong;
    proto::encode_pong(pong, f.id);  // ok:true, but no durable_seq
    s.send_all(fd, pong);
    Request g = s.read_request(fd);
    std::string ok;
    proto::encode_flush_reply(ok, g.id, 7);
    s.send_all(fd, ok);
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  uint64_t durable = 99;
  cr_assert_eq(cairn_flush(c, &durable), CAIRN_E_PROTOCOL);
  const char* code = nullptr;
  cairn_last_error(c, &code, nullptr, nullptr, nullptr);
  cr_assert_str_eq(code, "malformed_reply");
  cr_assert_eq(cairn_flush(c, &durable), 0);
  cr_assert_eq(durable, 7u);
  cairn_close(c);
  assert_clean(d);
}

// ---- timeout_ms: no call waits past its bound (what a PAM module inside a login needs) ----

namespace {

cairn_options bounded_options(int timeout_ms, int reconnect_ms) {
  cairn_options o;
  cairn_options_init(&o);
  o.client_name = "test";
  o.timeout_ms = timeout_ms;
  o.reconnect_timeout_ms = reconnect_ms;
  return o;
}

// Holds `fd` open and silent until the test has its answer, so a client that ignored
// its timeout would hang here (and fail on the suite's timeout) instead of passing.
void hold_silent(const std::atomic<bool>& release, int fd) {
  while (!release.load()) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 20) == 1) {
      char buf[4096];
      if (recv(fd, buf, sizeof buf, 0) <= 0) break;  // the client gave up and closed
    }
  }
  close(fd);
}

}  // namespace

Test(libcairn, open_gives_up_within_timeout_on_a_daemon_that_never_answers_hello) {
  std::atomic<bool> release{false};
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd >= 0) hold_silent(release, fd);
  });
  // Reconnection stays at 30 s: timeout_ms must bound cairn_open all the same.
  cairn_options o = bounded_options(200, 30'000);
  cairn_client* c = nullptr;
  int rc = cairn_open(&c, d.path().c_str(), &o);
  release = true;
  cr_assert_eq(rc, CAIRN_E_TIMEOUT, "%s", cairn_strerror(rc));
  cr_assert_null(c);
  assert_clean(d);
}

Test(libcairn, open_with_retries_on_a_missing_socket_ends_at_timeout_with_the_reason) {
  cairn_options o = bounded_options(150, 30'000);
  cairn_client* c = nullptr;
  errno = 0;
  int rc = cairn_open(&c, "/nonexistent/cairn.sock", &o);
  cr_assert_eq(rc, CAIRN_E_TIMEOUT, "%s", cairn_strerror(rc));
  cr_assert_eq(errno, ENOENT, "errno %d: the last attempt's reason", errno);
  cr_assert_null(c);
}

// An append the daemon never acks fails with CAIRN_E_TIMEOUT (never reported stored);
// the handle is not broken: the next call connects afresh and is acked.
Test(libcairn, unacked_append_times_out_and_the_next_call_reconnects) {
  std::atomic<bool> release{false};
  std::string first_idem, resent_idem;
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    first_idem = s.append(fd).idem;
    hold_silent(release, fd);
    fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request r = s.append(fd);
    resent_idem = r.idem;
    s.ack(fd, r.id, 42);
    s.until_closed(fd);
  });
  cairn_options o = bounded_options(200, 30'000);
  cairn_client* c = nullptr;
  cr_assert_eq(cairn_open(&c, d.path().c_str(), &o), 0);
  cairn_event ev = event("Test.Event");
  const char idem[] = "idem-0123456789";
  ev.idem = idem;
  ev.idem_len = sizeof idem - 1;
  cairn_ack ack{};
  int rc = cairn_append(c, &ev, &ack);
  release = true;
  cr_assert_eq(rc, CAIRN_E_TIMEOUT, "%s", cairn_strerror(rc));
  const char *code = nullptr, *msg = nullptr;
  cairn_last_error(c, &code, nullptr, nullptr, &msg);
  cr_assert_str_eq(code, "timeout");
  cr_assert(std::strstr(msg, "timeout_ms") != nullptr, "%s", msg);
  // The caller resends with the same idem (the daemon would answer duplicate:true had
  // the first one been stored).
  rc = cairn_append(c, &ev, &ack);
  cr_assert_eq(rc, 0, "%s", cairn_strerror(rc));
  cr_assert_eq(ack.seq, 42u);
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(first_idem, std::string(idem));
  cr_assert_eq(resent_idem, std::string(idem));
  cr_assert_eq(d.connections, 2);
}
