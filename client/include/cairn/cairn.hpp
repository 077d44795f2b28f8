// cairn.hpp — header-only C++ RAII wrapper over libcairn's C ABI. No exceptions: every
// call returns the C error code (0 or negative CAIRN_E_*).
#pragma once

#include <cairn/cairn.h>

#include <string>
#include <utility>

namespace cairn_cpp {

class Client {
 public:
  Client() = default;
  ~Client() { cairn_close(c_); }
  Client(Client&& o) noexcept : c_(std::exchange(o.c_, nullptr)) {}
  Client& operator=(Client&& o) noexcept {
    if (this != &o) {
      cairn_close(c_);
      c_ = std::exchange(o.c_, nullptr);
    }
    return *this;
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects; on failure the Client stays empty.
  int open(const std::string& socket_path, const cairn_options* opts = nullptr) {
    cairn_close(c_);
    c_ = nullptr;
    return cairn_open(&c_, socket_path.c_str(), opts);
  }
  explicit operator bool() const { return c_ != nullptr; }

  int append(const cairn_event& ev, cairn_ack& ack) { return cairn_append(c_, &ev, &ack); }
  int append_async(const cairn_event& ev, uint64_t& ticket) {
    return cairn_append_async(c_, &ev, &ticket);
  }
  int next_ack(uint64_t& ticket, cairn_ack& ack) { return cairn_next_ack(c_, &ticket, &ack); }
  int flush(uint64_t* durable_seq = nullptr) { return cairn_flush(c_, durable_seq); }
  int ping() { return cairn_ping(c_); }
  cairn_client* get() const { return c_; }

  struct Refusal {
    std::string code, field, rule, message;
  };
  Refusal last_error() const {
    const char *code = nullptr, *field = nullptr, *rule = nullptr, *msg = nullptr;
    cairn_last_error(c_, &code, &field, &rule, &msg);
    return {code ? code : "", field ? field : "", rule ? rule : "", msg ? msg : ""};
  }

 private:
  cairn_client* c_ = nullptr;
};

}  // namespace cairn_cpp
