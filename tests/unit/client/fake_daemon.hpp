// fake_daemon.hpp — a scripted fake cairnd for the client tests (libcairn and the CLI).
//
// The fake daemon is a listening Unix socket served by one thread that runs a script
// (accept, read requests, answer with the protocol library's encoders or raw bytes,
// drop the connection). Its reads time out after 5 s so a client bug fails the test
// instead of hanging it. The thread never asserts: it records what it saw, and the test
// asserts after joining it.
#pragma once

#include <criterion/criterion.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../../../protocol/message.hpp"

namespace cairn::testing {

struct Request {
  std::string op;  // empty: the connection ended or timed out
  uint64_t id = 0;
  std::string idem;  // append: the idem bytes as sent
  std::optional<uint64_t> severity;  // append: the event's severity as sent, if any
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

  // Accepts connections until `quit` is set by the test (polling every 50 ms), so a
  // script can serve a client that reconnects an unknown number of times. -1 on quit.
  int accept_until(const std::atomic<bool>& quit) {
    while (!quit.load()) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (poll(&p, 1, 50) == 1) {
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        timeval tv{5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ++connections;
        return fd;
      }
    }
    return -1;
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
      const msgpack_object* sev = proto::map_get(*ev, "severity");
      if (sev && sev->type == MSGPACK_OBJECT_POSITIVE_INTEGER) r.severity = sev->via.u64;
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
  // Sends one frame holding `payload` as given (hand-built msgpack, any encoding).
  void send_payload(int fd, const std::string& payload) {
    std::string f;
    uint32_t n = static_cast<uint32_t>(payload.size());
    f.push_back(static_cast<char>(n >> 24));
    f.push_back(static_cast<char>(n >> 16));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n));
    send_all(fd, f + payload);
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

}  // namespace cairn::testing
