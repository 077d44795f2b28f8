// notify.hpp — the systemd side: sd_notify READY/STATUS/STOPPING and the watchdog.
//
// Works without systemd: sd_notify is a no-op when NOTIFY_SOCKET is unset, and tests
// set NOTIFY_SOCKET to a datagram socket of their own to watch what we say.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

namespace cairn::daemon {

class Notifier {
 public:
  // `status` builds the live STATUS= line; `healthy` says whether the writer is making
  // progress (the watchdog stops pinging when it is not, so systemd restarts us).
  Notifier(uv_loop_t* loop, std::function<std::string()> status,
           std::function<bool(int64_t stuck_after_ns)> healthy);
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // READY=1 plus STATUS, then starts the status and watchdog timers.
  void ready();
  // STOPPING=1: flush-then-close has begun.
  void stopping();
  void status(const std::string& text);
  void close();

  uint64_t watchdog_usec() const { return watchdog_usec_; }

 private:
  static void on_watchdog(uv_timer_t* t) noexcept;
  static void on_status(uv_timer_t* t) noexcept;

  uv_loop_t* loop_;
  std::function<std::string()> status_fn_;
  std::function<bool(int64_t)> healthy_fn_;
  uv_timer_t watchdog_{};
  uv_timer_t status_timer_{};
  bool timers_ = false;
  bool watchdog_on_ = false;
  uint64_t watchdog_usec_ = 0;
  bool warned_ = false;
};

// The socket systemd passed us, or -1. Fails (returns a message) if systemd passed
// something that is not a listening AF_UNIX stream socket.
struct ActivatedSocket {
  int fd = -1;
  std::string error;
};
ActivatedSocket activated_socket();

}  // namespace cairn::daemon
