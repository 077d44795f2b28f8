// libcairn against a scripted fake daemon: reconnect and resend, refusals, local limits.
//
// The fake daemon is a listening Unix socket served by one thread that runs a script
// (accept, read requests, answer with the protocol library's encoders, drop the
// connection). Its reads time out after 5 s so a client bug fails the test instead of
// hanging it. The thread never asserts: it records what it saw, and the test asserts
// after joining it.
#include <criterion/criterion.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cairn/cairn.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "../../../protocol/message.hpp"

using namespace cairn;

namespace {

struct Request {
  std::string op;  // empty: the connection ended or timed out
  uint64_t id = 0;
  std::string idem;  // append: the idem bytes as sent
};

class FakeDaemon {
 public:
  explicit FakeDaemon(std::function<void(FakeDaemon&)> script) {
    char tmpl[] = "/tmp/cairn-fake-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/cairn.sock";
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::strncpy(sa.sun_path, path_.c_str(), sizeof sa.sun_path - 1);
    cr_assert_eq(bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    cr_assert_eq(listen(listen_fd_, 8), 0);
    thread_ = std::thread([this, script] { script(*this); });
  }
  ~FakeDaemon() {
    join();
    stop_listening();
    rmdir(dir_.c_str());
  }

  const std::string& path() const { return path_; }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // Afterwards connecting fails with ENOENT, as when the daemon is gone.
  void stop_listening() {
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
    unlink(path_.c_str());
  }

  // Accepts one connection (5 s at most); -1 on timeout.
  int accept_one() {
    timeval tv{5, 0};
    setsockopt(listen_fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      problem("accept timed out");
      return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ++connections;
    return fd;
  }

  Request read_request(int fd) {
    Request r;
    uint8_t hdr[4];
    if (!read_exact(fd, hdr, 4)) return r;
    uint32_t n = (uint32_t{hdr[0]} << 24) | (uint32_t{hdr[1]} << 16) | (uint32_t{hdr[2]} << 8) | hdr[3];
    std::string payload(n, '\0');
    if (n == 0 || !read_exact(fd, payload.data(), n)) {
      problem("bad or short frame");
      return r;
    }
    auto d = proto::Decoded::parse({reinterpret_cast<const uint8_t*>(payload.data()), n}, 16);
    if (!d) {
      problem("undecodable request");
      return r;
    }
    auto req = proto::request_from(d.value());
    if (!req) {
      problem("not a request");
      return r;
    }
    r.op = std::string(proto::op_name(req.value().op));
    r.id = req.value().id;
    if (const msgpack_object* ev = proto::map_get(*req.value().map, "event")) {
      const msgpack_object* idem = proto::map_get(*ev, "idem");
      if (idem && idem->type == MSGPACK_OBJECT_BIN) r.idem.assign(idem->via.bin.ptr, idem->via.bin.size);
    }
    ops.push_back(r.op);
    return r;
  }

  // Reads the client's hello and answers it; false if the first request was not hello.
  bool hello(int fd, uint32_t max_frame = 65536, uint32_t max_inflight = 0) {
    Request r = read_request(fd);
    if (r.op != "hello") {
      problem("expected hello, got '" + r.op + "'");
      return false;
    }
    proto::HelloInfo info;
    info.server = "fake 0";
    info.flush_mode = "immediate";
    info.limits.max_frame = max_frame;
    info.max_inflight = max_inflight;
    std::string f;
    proto::encode_hello_reply(f, r.id, info);
    send_all(fd, f);
    return true;
  }

  // Reads one append and returns its request; records a problem if it is not one.
  Request append(int fd) {
    Request r = read_request(fd);
    if (r.op != "append") problem("expected append, got '" + r.op + "'");
    return r;
  }

  void ack(int fd, uint64_t id, uint64_t seq, bool duplicate = false) {
    std::string f;
    proto::encode_ack(f, id, seq, /*durable=*/true, duplicate);
    send_all(fd, f);
  }
  void error(int fd, uint64_t id, proto::ErrorCode code, std::string_view field = {},
             std::string_view rule = {}) {
    std::string f;
    proto::encode_error(f, id, code, "fake refusal", field, rule);
    send_all(fd, f);
  }
  void send_all(int fd, const std::string& f) {
    if (send(fd, f.data(), f.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(f.size()))
      problem("short send");
  }
  // Waits for the client to close its end (or 5 s), so the script ends after the client.
  void until_closed(int fd) {
    char c;
    while (recv(fd, &c, 1, 0) > 0) problem("unexpected bytes after the script");
    close(fd);
  }
  void problem(const std::string& what) {
    if (problems.empty()) problems = what;
  }

  // Read by the test after join().
  int connections = 0;
  std::vector<std::string> ops;
  std::string problems;

 private:
  static bool read_exact(int fd, void* p, size_t n) {
    auto* b = static_cast<char*>(p);
    while (n > 0) {
      ssize_t got = recv(fd, b, n, 0);
      if (got <= 0) return false;
      b += got;
      n -= static_cast<size_t>(got);
    }
    return true;
  }

  std::string dir_, path_;
  int listen_fd_ = -1;
  std::thread thread_;
};

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
  cairn_event ev{};
  ev.type = type;
  ev.severity = -1;
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

// invalid_field and storage_failed belong to their event: reported with the daemon's
// details, not resent, and the connection carries on.
Test(libcairn, refusals_are_reported_per_event_and_not_resent) {
  FakeDaemon d([&](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request a = s.append(fd), b = s.append(fd), e = s.append(fd);
    s.error(fd, a.id, proto::ErrorCode::invalid_field, "fields.user", "control_char");
    s.ack(fd, b.id, 1);
    s.error(fd, e.id, proto::ErrorCode::storage_failed);
    Request p = s.read_request(fd);
    if (p.op != "ping") s.problem("expected ping");
    std::string f;
    proto::encode_pong(f, p.id);
    s.send_all(fd, f);
    s.until_closed(fd);
  });
  cairn_client* c = open_client(d, 5000);
  for (int i = 0; i < 3; ++i) {
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
  cr_assert_eq(cairn_ping(c), 0);
  cairn_close(c);
  assert_clean(d);
  cr_assert_eq(d.connections, 1, "no reconnect for a refusal");
  cr_assert_eq(d.ops.size(), 5u, "hello, three appends, ping: nothing resent");
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
