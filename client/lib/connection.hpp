// connection.hpp — the socket under a libcairn handle: connect, write whole frames, read
// whole frames. No protocol knowledge beyond framing.
//
// The fd is non-blocking and every wait is a poll() bounded by the deadline the handle
// sets for the call in progress (set_deadline; 0 = wait as long as it takes), so that a
// daemon that is stopped, wedged or slow costs a caller with a timeout (a PAM module in
// the middle of a login) at most that timeout. A call that runs out of time returns
// -ETIMEDOUT; a frame may then be half written or half read, so the caller must close
// the connection rather than go on with it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace cairn::client {

class Connection {
 public:
  Connection() = default;
  ~Connection() { close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One connect attempt. Returns 0 or -errno (-EAGAIN: the daemon's listen backlog is
  // full; an AF_UNIX connect does not complete in the background, so that is a failed
  // attempt like the others).
  int connect(const std::string& path);
  // Monotonic ms after which reads and writes give up with -ETIMEDOUT; 0 = never.
  void set_deadline(int64_t deadline_ms) { deadline_ms_ = deadline_ms; }
  void close();
  bool open() const { return fd_ >= 0; }
  // Writes all of `bytes` (MSG_NOSIGNAL). Returns 0 or -errno.
  int write_all(const std::string& bytes);
  // Reads one frame payload (≤ max_frame). Returns 0, -errno, -ECONNRESET on EOF, or:
  //   -EMSGSIZE  the frame's length N is over max_frame; its 4-byte header is consumed and
  //              N is in *length, so the caller can discard(N) and stay in step;
  //   -EPROTO    a zero length (the header is consumed; the stream is still in step).
  int read_frame(std::string& payload, uint32_t max_frame, uint32_t* length = nullptr);
  // Reads and drops `n` bytes (the payload of a frame refused by read_frame).
  int discard(uint64_t n);

 private:
  // Waits until the fd is ready for `events` or the deadline passes: 0 or -ETIMEDOUT.
  int wait(short events);
  int64_t deadline_ms_ = 0;
  int fd_ = -1;
  std::string buf_;
  size_t start_ = 0;
};

}  // namespace cairn::client
