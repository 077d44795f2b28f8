// connection.hpp — the blocking socket under a libcairn handle: connect with backoff,
// write whole frames, read whole frames. No protocol knowledge beyond framing.
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

  // One connect attempt. Returns 0 or -errno.
  int connect(const std::string& path);
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
  int fd_ = -1;
  std::string buf_;
  size_t start_ = 0;
};

}  // namespace cairn::client
