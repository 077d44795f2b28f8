#include "notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "log.hpp"

namespace cairn::daemon {
namespace {

// Every message after READY=1 (STATUS, WATCHDOG, STOPPING). sd_notify() blocks when
// the receiver's queue is full (net.unix.max_dgram_qlen: 10 by default), so a manager that
// stops reading would stall the loop and every client with it (seen: a test that read
// READY=1 and nothing after froze cairnd after ~10 s). These go out non-blocking and are
// dropped when the queue is full: a manager that does not read them has nothing to lose.
void notify_nonblocking(const std::string& msg) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || *path == '\0') return;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  size_t n = std::strlen(path);
  if (n >= sizeof sa.sun_path) return;
  std::memcpy(sa.sun_path, path, n);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return;
  (void)sendto(fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa),
               static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n));
  ::close(fd);
}

}  // namespace

Notifier::Notifier(uv_loop_t* loop, std::function<std::string()> status,
                   std::function<bool(int64_t)> healthy)
    : loop_(loop), status_fn_(std::move(status)), healthy_fn_(std::move(healthy)) {}

void Notifier::ready() {
  std::string msg = "READY=1\nSTATUS=" + status_fn_();
  sd_notify(0, msg.c_str());
  uint64_t usec = 0;
  // > 0 only when systemd asked for pings from this very process (WATCHDOG_PID).
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_usec_ = usec;
    watchdog_on_ = true;
  }
  uv_timer_init(loop_, &watchdog_);
  uv_timer_init(loop_, &status_timer_);
  watchdog_.data = this;
  status_timer_.data = this;
  timers_ = true;
  if (watchdog_on_) {
    uint64_t half_ms = watchdog_usec_ / 2000;
    if (half_ms == 0) half_ms = 1;
    notify_nonblocking("WATCHDOG=1");  // READY=1 alone may block: the manager waits for it
    uv_timer_start(&watchdog_, &Notifier::on_watchdog, half_ms, half_ms);
    log_msg(LogLevel::info, "watchdog every %llu ms", static_cast<unsigned long long>(half_ms));
  }
  uv_timer_start(&status_timer_, &Notifier::on_status, 1000, 1000);
  // Timers must not keep the loop alive during shutdown.
  uv_unref(reinterpret_cast<uv_handle_t*>(&watchdog_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&status_timer_));
}

void Notifier::on_watchdog(uv_timer_t* t) noexcept {
  auto* self = static_cast<Notifier*>(t->data);
  // Stuck = one store operation running longer than half the watchdog period. Then we
  // stay silent and systemd kills and restarts us once WatchdogSec runs out.
  int64_t limit_ns = static_cast<int64_t>(self->watchdog_usec_) * 500;
  if (self->healthy_fn_(limit_ns)) {
    notify_nonblocking("WATCHDOG=1");
    self->warned_ = false;
  } else if (!self->warned_) {
    self->warned_ = true;
    log_msg(LogLevel::err, "writer thread is stuck in a storage call; withholding watchdog ping");
  }
}

void Notifier::on_status(uv_timer_t* t) noexcept {
  auto* self = static_cast<Notifier*>(t->data);
  self->status(self->status_fn_());
}

void Notifier::stopping() { notify_nonblocking("STOPPING=1\nSTATUS=flushing and closing"); }

void Notifier::status(const std::string& text) { notify_nonblocking("STATUS=" + text); }

void Notifier::close() {
  if (!timers_) return;
  timers_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&status_timer_), nullptr);
}

ActivatedSocket activated_socket() {
  ActivatedSocket out;
  int n = sd_listen_fds(1);  // 1: unset LISTEN_* so children do not inherit them
  if (n < 0) {
    out.error = std::string("sd_listen_fds: ") + strerror(-n);
    return out;
  }
  if (n == 0) return out;
  int fd = SD_LISTEN_FDS_START;
  if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) <= 0) {
    out.error = "the socket systemd passed is not a listening AF_UNIX stream socket";
    return out;
  }
  if (n > 1) log_msg(LogLevel::warning, "systemd passed %d sockets; using the first", n);
  out.fd = fd;
  return out;
}

}  // namespace cairn::daemon
