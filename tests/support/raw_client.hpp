// raw_client.hpp — a deliberately dumb client for tests: writes exactly the bytes it is
// given and reads whole reply frames, so tests can send what libcairn never would.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "../../protocol/message.hpp"

namespace cairn::test {

class RawClient {
 public:
  explicit RawClient(const std::string& socket_path);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  bool send_bytes(const std::string& bytes);
  // Reads one reply frame (payload only); nullopt on EOF, error or timeout.
  std::optional<std::string> read_frame(int timeout_ms = 10'000);
  // True if the daemon has closed the connection (EOF within timeout_ms).
  bool closed_by_peer(int timeout_ms = 10'000);
  void close_now();
  // shutdown(SHUT_WR): the daemon reads EOF after what was sent; replies still come.
  bool half_close();

 private:
  int fd_ = -1;
  std::string buf_;
};

// A decoded reply for assertions.
struct ReplyView {
  bool ok = false;
  uint64_t id = 0;
  std::string error, field, rule, message;
  uint64_t seq = 0;
  bool durable = false, duplicate = false;
};
std::optional<ReplyView> decode_reply(const std::string& payload);

// One append frame with a minimal valid event of `type` and optional raw extra
// key/value msgpack appended to the event map.
std::string append_frame(uint64_t id, const std::string& type, const std::string& actor = "");

}  // namespace cairn::test
