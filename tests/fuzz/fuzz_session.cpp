// fuzz_session.cpp — a whole cairnd in this process, fed each input as one connection.
//
// Only the daemon's public entry points are used (parse_args, Daemon::run, SIGTERM), the
// way main() uses them: no Session internals, so the session layer can be restructured
// under this target. The daemon runs on its own thread, in a temp directory (on
// /dev/shm when there is one: fsync there is cheap), with its loop, writer,
// checkpointer and query threads all live and instrumented.
//
// One input = one connection. Byte 0 picks how the rest is delivered (in one write or in
// small pieces, and whether we hang up without reading); the rest is the byte stream.
// Promises checked besides the sanitizers':
//   - the daemon answers and closes a connection whose peer half-closed, in bounded
//     time (a stuck session or a hung writer fails the run instead of stalling it);
//   - everything it sends is whole frames, each a well-formed reply;
//   - it never answers more requests than it was sent (one extra for a fatal frame);
//   - after every restart it comes back (the chain head checks out), and a SIGTERM
//     shutdown returns 0.
// Every kInputsPerDaemon (2,000) inputs the daemon is stopped with SIGTERM and started afresh on
// a new database with the next of three configurations (immediate, batched with small
// queues, hybrid with small limits), so the files stay small (verify is O(n)) and the
// shutdown path is fuzzed too.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../../daemon/config.hpp"
#include "../../daemon/daemon.hpp"
#include "../../daemon/log.hpp"
#include "../../protocol/frame.hpp"
#include "../../protocol/message.hpp"
#include "fuzz_check.hpp"

using namespace cairn;

namespace {

constexpr int kInputsPerDaemon = 2000;
constexpr int kAnswerDeadlineMs = 30'000;  // far above any honest answer time

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

struct Instance {
  std::string dir;
  std::string socket;
  std::thread thread;
  int exit_code = -1;
  int generation = 0;
  int inputs = 0;
};

Instance g;

void remove_tree(const std::string& dir) {
  std::string cmd = "rm -rf '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) std::fprintf(stderr, "fuzz_session: could not remove %s\n", dir.c_str());
}

int connect_socket() {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FUZZ_CHECK(fd >= 0, "socket() failed");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", g.socket.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void start_daemon() {
  ++g.generation;
  const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp");
  std::string tmpl = std::string(base) + "/cairn-fuzz-XXXXXX";
  std::vector<char> t(tmpl.begin(), tmpl.end());
  t.push_back('\0');
  FUZZ_CHECK(mkdtemp(t.data()) != nullptr, "mkdtemp failed");
  g.dir = t.data();
  g.socket = g.dir + "/cairn.sock";
  std::string db = g.dir + "/cairn.db";
  // Three configurations in turn: the defaults; batched with queues small enough that
  // backpressure and pausing happen; hybrid with limits small enough that refusals do.
  std::vector<std::string> args = {"cairnd", "--socket", g.socket, "--db", db,
                                   "--shutdown-linger-ms", "3000", "--query-threads", "2"};
  switch (g.generation % 3) {
    case 1:
      break;
    case 2:
      args.insert(args.end(), {"--flush-mode", "batched", "--batch-size", "7", "--batch-interval-ms", "5",
                               "--max-inflight", "8", "--queue-max-events", "16", "--queue-max-bytes", "65536"});
      break;
    default:
      args.insert(args.end(), {"--flush-mode", "hybrid", "--batch-interval-ms", "3", "--max-frame", "1024",
                               "--max-string", "24", "--critical-types", "A,Crit"});
      break;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  auto parsed = daemon::parse_args(static_cast<int>(args.size()), argv.data());
  if (!parsed) std::fprintf(stderr, "fuzz_session: %s\n", parsed.error().c_str());
  FUZZ_CHECK(parsed.ok(), "the fuzz target's own cairnd flags are refused");
  daemon::Config config = std::move(parsed.value().config);
  g.exit_code = -1;
  g.thread = std::thread([config = std::move(config)]() mutable {
    daemon::Daemon d(std::move(config));
    g.exit_code = d.run();
  });
  // Up when the socket accepts (READY comes after the store is open and the head checked).
  int64_t deadline = now_ms() + kAnswerDeadlineMs;
  for (;;) {
    int fd = connect_socket();
    if (fd >= 0) {
      close(fd);
      return;
    }
    FUZZ_CHECK(now_ms() < deadline, "cairnd did not start listening within 30 s");
    usleep(1000);  // start-up poll, not synchronisation of a result
  }
}

void stop_daemon() {
  // SIGTERM is how an operator stops cairnd; its libuv handler is process-wide.
  FUZZ_CHECK(kill(getpid(), SIGTERM) == 0, "kill(SIGTERM) failed");
  g.thread.join();
  FUZZ_CHECK(g.exit_code == 0, "cairnd did not exit 0 after SIGTERM");
  remove_tree(g.dir);
}

void at_exit() {
  if (g.thread.joinable()) stop_daemon();
}

// Reads what is there (non-blocking fd) into `in`; false at EOF or on a reset.
bool drain(int fd, std::string& in) {
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    return false;  // ECONNRESET: the daemon closed on us with our bytes unread
  }
}

// Counts the complete frames in `stream` as a session would split them; stops at the
// first broken boundary (the session answers that one and closes).
size_t frames_in(std::span<const uint8_t> stream, uint32_t max_frame) {
  size_t n = 0;
  while (!stream.empty()) {
    auto fv = proto::frame_next(stream, max_frame);
    if (fv.status == proto::FrameStatus::need_more) break;
    ++n;
    if (fv.status != proto::FrameStatus::complete) break;
    stream = stream.subspan(fv.consumed);
  }
  return n;
}

// One append and a flush, answered, before any input: every library the store and the
// chain use has been initialised by the time this returns.
void warm_up() {
  int fd = connect_socket();
  FUZZ_CHECK(fd >= 0, "cannot connect to the fresh cairnd");
  std::string out;
  proto::EventView ev;
  ev.type = "FuzzWarmUp";
  proto::encode_append(out, 1, ev);
  proto::encode_simple(out, 2, proto::Op::flush);
  FUZZ_CHECK(send(fd, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size()),
             "cannot send the warm-up requests");
  shutdown(fd, SHUT_WR);
  std::string in;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) in.append(buf, static_cast<size_t>(n));
  close(fd);
  auto got = fuzz::bytes_of(in);
  for (uint64_t id = 1; id <= 2; ++id) {
    auto fv = proto::frame_next(got, proto::kMaxFrameCeiling);
    FUZZ_CHECK(fv.status == proto::FrameStatus::complete, "the warm-up got no whole reply");
    auto head = proto::reply_peek(fv.payload);
    FUZZ_CHECK(head && head->id == id && head->ok, "the warm-up append or flush was refused");
    got = got.subspan(fv.consumed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Nothing inherited may redirect the daemon: no systemd socket, no notify socket.
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_PID");
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  std::signal(SIGPIPE, SIG_IGN);
  daemon::log_init(false);
  start_daemon();
  warm_up();
  // Registered only now: exit() runs handlers last-in first-out, and at_exit stops the
  // daemon, whose final commit and seal hash. Libraries that register their own exit
  // cleanup on first use (libcrypto does) must have done so already, or their cleanup
  // would run first and pull the ground from under the daemon's last commit.
  std::atexit(at_exit);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  if (++g.inputs % kInputsPerDaemon == 0) {
    stop_daemon();
    start_daemon();
  }
  static constexpr size_t kPieces[8] = {SIZE_MAX, 1, 2, 3, 5, 64, 4096, SIZE_MAX};
  const size_t piece = kPieces[data[0] & 7];
  const bool hang_up = (data[0] & 0x80) != 0;  // close without reading: replies go nowhere
  std::span<const uint8_t> stream(data + 1, size - 1);

  int fd = connect_socket();
  FUZZ_CHECK(fd >= 0, "cairnd stopped accepting connections");
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::string in;
  size_t sent = 0;
  bool open = true;
  int64_t deadline = now_ms() + kAnswerDeadlineMs;
  // Write in pieces while reading replies, so neither side can block the other.
  while (sent < stream.size() && open) {
    pollfd p{fd, POLLIN | POLLOUT, 0};
    int rc = poll(&p, 1, 100);
    FUZZ_CHECK(now_ms() < deadline, "cairnd stopped reading a connection and never closed it");
    if (rc <= 0) continue;
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) open = drain(fd, in);
    if (open && (p.revents & POLLOUT)) {
      size_t k = std::min(piece, stream.size() - sent);
      ssize_t n = send(fd, stream.data() + sent, k, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR) open = false;  // closed on us
    }
  }
  if (hang_up) {
    close(fd);
    return 0;
  }
  shutdown(fd, SHUT_WR);
  while (open) {
    pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, 100);
    FUZZ_CHECK(now_ms() < deadline, "cairnd did not answer and close a half-closed connection in 30 s");
    if (rc > 0) open = drain(fd, in);
  }
  close(fd);

  // What came back: whole frames, each a reply, no more of them than requests sent.
  auto got = fuzz::bytes_of(in);
  size_t replies = 0;
  while (!got.empty()) {
    auto fv = proto::frame_next(got, proto::kMaxFrameCeiling);
    FUZZ_CHECK(fv.status == proto::FrameStatus::complete, "cairnd sent a partial or broken frame");
    auto d = proto::Decoded::parse(fv.payload, 16);
    FUZZ_CHECK(d.ok(), "cairnd sent a frame that is not one msgpack map");
    FUZZ_CHECK(proto::reply_from(d.value()).ok(), "cairnd sent a map that is not a reply");
    ++replies;
    got = got.subspan(fv.consumed);
  }
  // A daemon with a smaller max_frame counts an oversize frame as one request too.
  FUZZ_CHECK(replies <= frames_in(stream.subspan(0, sent), proto::kMaxFrameCeiling) + 1,
             "cairnd answered more requests than it was sent");
  return 0;
}
