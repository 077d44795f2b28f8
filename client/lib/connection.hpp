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
  // Reads one frame payload (≤ max_frame). Returns 0, -errno, or -EPROTO for a bad length;
  // -ECONNRESET on EOF.
  int read_frame(std::string& payload, uint32_t max_frame);

 private:
  int fd_ = -1;
  std::string buf_;
  size_t start_ = 0;
};

}  // namespace cairn::client
