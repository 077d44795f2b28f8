// cairn.hpp — header-only C++ RAII wrapper over libcairn's C ABI.
//
// One Client owns one cairn_client handle (unique ownership, move-only); the destructor
// closes it. No exceptions are thrown by libcairn: every call returns the C error code
// (0 or a negative CAIRN_E_*), or a small struct carrying one. Thread-safety is the C
// handle's: calls from several threads on one Client are serialised internally, but
// destroying or moving a Client must not race with calls on it.
//
//   cairn_cpp::Client c;
//   if (int rc = c.open("/run/cairn/cairn.sock"); rc != 0) { ... cairn_strerror(rc) ... }
//   cairn_event ev{};  ev.type = "UserLogin";  // zero-initialised: severity not set (info)
//   ev.severity = cairn_cpp::severity(LOG_WARNING);  // or CAIRN_SEV_WARNING
//   cairn_ack ack{};
//   if (c.append(ev, ack) != 0) { auto why = c.last_error(); ... why.field, why.rule ... }
#pragma once

#include <cairn/cairn.h>

#include <string>
#include <string_view>
#include <utility>

namespace cairn_cpp {

// The cairn_event.severity value for a syslog level 0 (emerg) .. 7 (debug): the level
// plus one, since 0 means "not set" (see cairn.h).
constexpr int severity(int syslog_level) { return CAIRN_SEVERITY(syslog_level); }

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

  // Connects (closing any handle held before); on failure the Client stays empty.
  int open(const std::string& socket_path, const cairn_options* opts = nullptr) {
    cairn_close(c_);
    c_ = nullptr;
    return cairn_open(&c_, socket_path.c_str(), opts);
  }
  // The same as a factory, for code that prefers not to hold an empty Client.
  struct Opened;
  static Opened create(const std::string& socket_path, const cairn_options* opts = nullptr);

  explicit operator bool() const { return c_ != nullptr; }
  cairn_client* get() const { return c_; }

  int append(const cairn_event& ev, cairn_ack& ack) { return cairn_append(c_, &ev, &ack); }
  int append_async(const cairn_event& ev, uint64_t& ticket) {
    return cairn_append_async(c_, &ev, &ticket);
  }
  int next_ack(uint64_t& ticket, cairn_ack& ack) { return cairn_next_ack(c_, &ticket, &ack); }
  int flush(uint64_t* durable_seq = nullptr) { return cairn_flush(c_, durable_seq); }
  int ping() { return cairn_ping(c_); }

  // A raw request (query, stats, verify, flush, ping): `args_msgpack` is an encoded
  // msgpack map of extra keys, or empty. `reply` is the whole reply map as msgpack; it is
  // also filled for a refusal when the daemon sent one.
  struct Reply {
    int rc = 0;
    std::string msgpack;
  };
  Reply request(const char* op, std::string_view args_msgpack = {}) {
    Reply out;
    void* buf = nullptr;
    size_t len = 0;
    out.rc = cairn_request(c_, op, args_msgpack.empty() ? nullptr : args_msgpack.data(),
                           args_msgpack.size(), &buf, &len);
    if (buf != nullptr) out.msgpack.assign(static_cast<const char*>(buf), len);
    cairn_free(buf);
    return out;
  }

  // Details of the latest refusal on this handle (empty strings when not sent).
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

struct Client::Opened {
  Client client;  // empty when rc != 0
  int rc = 0;
};

inline Client::Opened Client::create(const std::string& socket_path, const cairn_options* opts) {
  Opened o;
  o.rc = o.client.open(socket_path, opts);
  return o;
}

}  // namespace cairn_cpp
