#include "server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "cairn_config.h"
#include "log.hpp"
#include "session.hpp"

namespace cairn::daemon {
namespace {

// Is a live daemon answering at `path`? A stale file from a crashed daemon refuses.
bool socket_is_live(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  bool live = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
  ::close(fd);
  return live;
}

}  // namespace

Server::Server(uv_loop_t* loop, const Config& config, Writer& writer, Reader& reader, DiskGuard& disk,
               Hooks hooks)
    : loop_(loop), config_(config), writer_(writer), reader_(reader), disk_(disk), hooks_(std::move(hooks)) {
  hello_.server = std::string("cairnd ") + CAIRN_VERSION;
  hello_.flush_mode = flush_mode_name(config.flush_mode);
  hello_.limits = config.limits;
  hello_.max_inflight = config.max_inflight;
  started_ns_ = monotonic_ns();
  // uv_timer_init cannot fail on a live loop. Unreferenced: they never keep the loop
  // alive, and the Daemon's final uv_walk closes them (the Daemon owns the loop and
  // destroys us only after that).
  uv_timer_init(loop_, &sweep_);
  uv_timer_init(loop_, &wake_);
  uv_unref(reinterpret_cast<uv_handle_t*>(&sweep_));
  uv_unref(reinterpret_cast<uv_handle_t*>(&wake_));
  sweep_.data = wake_.data = this;
  restart_sweep();
}

// The sweep runs at a quarter of the shortest timeout (a timeout fires at most a quarter
// late), never more often than every 50 ms; not at all when both are off.
void Server::restart_sweep() {
  const PeerLimits& p = config_.peer;
  uint64_t shortest = 0;
  for (uint64_t ms : {uint64_t{p.idle_timeout_ms}, uint64_t{p.frame_timeout_ms}})
    if (ms != 0 && (shortest == 0 || ms < shortest)) shortest = ms;
  uv_timer_stop(&sweep_);
  if (shortest != 0) {
    uint64_t period = std::clamp<uint64_t>(shortest / 4, 50, 1000);
    uv_timer_start(&sweep_, &Server::on_sweep, period, period);
  }
}

void Server::limits_changed() {
  restart_sweep();
  // A raised budget or share lets some waiting connections read again; one still over
  // waits again. Each uid's rate bucket is clamped to the new burst at its next append.
  if (!waiting_budget_.empty() && !wake_armed_) {
    wake_armed_ = true;
    uv_timer_start(&wake_, &Server::on_wake, 0, 0);
  }
}

Server::~Server() = default;

void Server::on_sweep(uv_timer_t* t) noexcept {
  auto* self = static_cast<Server*>(t->data);
  uint64_t now = uv_now(self->loop_);
  for (Session* s = self->head_; s != nullptr;) {
    Session* next = s->next_;  // sweep may close s; it stays linked until on_close
    s->sweep(now);
    s = next;
  }
}

bool Server::privileged(uid_t uid) { return uid == 0 || uid == geteuid(); }

void Server::charge(uid_t uid, int64_t held_delta, int64_t write_delta) {
  UidBooks& b = per_uid_[uid];
  b.held = static_cast<uint64_t>(static_cast<int64_t>(b.held) + held_delta);
  b.write_bytes = static_cast<uint64_t>(static_cast<int64_t>(b.write_bytes) + write_delta);
  held_total_ = static_cast<uint64_t>(static_cast<int64_t>(held_total_) + held_delta);
  if ((held_delta < 0 || write_delta < 0) && !waiting_budget_.empty() && !wake_armed_) {
    // Resume on the next loop turn, not inside the caller (a session's callback), and
    // once for a burst of releases.
    wake_armed_ = true;
    uv_timer_start(&wake_, &Server::on_wake, 0, 0);
  }
}

void Server::on_wake(uv_timer_t* t) noexcept {
  auto* self = static_cast<Server*>(t->data);
  self->wake_armed_ = false;
  std::vector<Session*> resume;
  resume.swap(self->waiting_budget_);
  for (Session* s : resume) s->resume_budget();  // those still over wait again
}

bool Server::may_read(Session* s, uint64_t held) {
  const PeerLimits& p = config_.peer;
  if (held >= p.conn_max_bytes) return false;  // its own replies/requests: it resumes itself
  const uid_t uid = s->peer().uid;
  const UidBooks& b = per_uid_[uid];
  bool light = b.held < p.fair_floor_bytes;
  bool ok = (light || (b.held < p.uid_max_bytes && held_total_ < p.global_max_bytes));
  if (ok && !privileged(uid)) {
    uint64_t share = config_.queue_max_bytes * p.uid_write_share_pct / 100;
    ok = b.write_bytes < share;
  }
  if (!ok && std::find(waiting_budget_.begin(), waiting_budget_.end(), s) == waiting_budget_.end())
    waiting_budget_.push_back(s);
  return ok;
}

bool Server::light_writer(uid_t uid) const {
  auto it = per_uid_.find(uid);
  return it == per_uid_.end() || it->second.write_bytes < config_.peer.fair_floor_bytes;
}

double Server::append_burst() const {
  const PeerLimits& p = config_.peer;
  return p.uid_append_burst != 0 ? p.uid_append_burst : p.uid_append_rate;
}

bool Server::take_append_token(uid_t uid) {
  const uint32_t rate = config_.peer.uid_append_rate;
  if (rate == 0 || privileged(uid)) return true;
  UidBooks& b = per_uid_[uid];
  uint64_t now = uv_now(loop_);
  const double burst = append_burst();
  if (b.tokens < 0) {
    b.tokens = burst;
  } else {
    b.tokens = std::min(burst, b.tokens + static_cast<double>(now - b.refilled_ms) * rate / 1000.0);
  }
  b.refilled_ms = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void Server::forget_uid_if_unused(uid_t uid) {
  auto it = per_uid_.find(uid);
  if (it == per_uid_.end()) return;
  const UidBooks& b = it->second;
  if (b.conns != 0 || b.held != 0 || b.write_bytes != 0) return;
  // Keep a drained rate bucket: reconnecting must not refill it.
  const uint32_t rate = config_.peer.uid_append_rate;
  if (rate != 0 && b.tokens >= 0 && b.tokens < append_burst() &&
      static_cast<double>(uv_now(loop_) - b.refilled_ms) * rate / 1000.0 < append_burst() - b.tokens)
    return;
  per_uid_.erase(it);
}

Result<Ok, std::string> Server::listen(int activated_fd) {
  int rc = uv_pipe_init(loop_, &listener_, 0);
  if (rc < 0) return Err{std::string("uv_pipe_init: ") + uv_strerror(rc)};
  listener_.data = this;
  listening_ = true;
  auto fail = [&](std::string msg) -> Result<Ok, std::string> {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    listening_ = false;
    return Err{std::move(msg)};
  };
  if (activated_fd >= 0) {
    rc = uv_pipe_open(&listener_, activated_fd);
    if (rc < 0) return fail(std::string("socket from systemd: ") + uv_strerror(rc));
  } else {
    const std::string& path = config_.socket_path;
    if (path.size() >= sizeof(sockaddr_un::sun_path))
      return fail("--socket: path is longer than " +
                  std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return fail(path + " exists and is not a socket; refusing");
      if (socket_is_live(path))
        return fail("another daemon is already listening on " + path);
      log_msg(LogLevel::notice, "removing stale socket %s", path.c_str());
      if (unlink(path.c_str()) != 0 && errno != ENOENT)
        return fail("cannot remove stale socket " + path + ": " + strerror(errno));
    }
    // Bind under a tight umask so there is no window where the socket is wider than
    // asked, then set the requested mode.
    mode_t old = umask(0177);
    rc = uv_pipe_bind(&listener_, path.c_str());
    umask(old);
    if (rc < 0) return fail("bind " + path + ": " + uv_strerror(rc));
    own_socket_file_ = true;
    if (chmod(path.c_str(), config_.socket_mode) != 0)
      return fail("chmod " + path + ": " + strerror(errno));
  }
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 511, &Server::on_connection);
  if (rc < 0) return fail(std::string("listen: ") + uv_strerror(rc));
  return Ok{};
}

void Server::on_connection(uv_stream_t* listener, int status) noexcept {
  auto* self = static_cast<Server*>(listener->data);
  if (status < 0) {
    log_msg(LogLevel::warning, "accept: %s", uv_strerror(status));
    return;
  }
  Session* s = Session::accept(*self, listener);
  if (s == nullptr) return;
  // Link first so every later step (including a refusal below) goes through close().
  s->next_ = self->head_;
  if (self->head_ != nullptr) self->head_->prev_ = s;
  self->head_ = s;
  ++self->count_;
  const uid_t uid = s->peer().uid;
  uint32_t mine = ++self->per_uid_[uid].conns;
  // The last reserved_connections are for root and cairnd's uid, so no number of
  // unprivileged uids can lock them out; they are not capped per uid either.
  const Config& c = self->config_;
  const bool priv = privileged(uid);
  const uint32_t reserved = std::min(c.peer.reserved_connections, c.max_connections);
  const size_t total_cap = priv ? c.max_connections : c.max_connections - reserved;
  // Connections refused but not closed yet (their refusal is still being written) hold
  // no place: a burst of refusals must not make the next connection look over the cap.
  const size_t live = self->count_ - self->refused_open_;
  if (live > total_cap || (!priv && mine > c.max_connections_per_uid)) {
    log_msg(LogLevel::warning, "refusing connection from pid %u uid %u: connection limit",
            s->peer().pid, uid);
    ++self->refused_open_;
    --self->per_uid_[uid].conns;
    s->refuse(proto::ErrorCode::overloaded,
              "too many connections (max " + std::to_string(c.max_connections) + ", of which " +
                  std::to_string(reserved) + " reserved for root and cairnd's uid; per uid " +
                  std::to_string(c.max_connections_per_uid) + ")");
    return;
  }
  if (self->shutting_down_) {
    ++self->refused_open_;
    --self->per_uid_[uid].conns;
    s->refuse(proto::ErrorCode::shutting_down, "cairnd is shutting down");
    return;
  }
  log_msg(LogLevel::debug, "connection from pid %u uid %u comm %s", s->peer().pid,
          s->peer().uid, s->peer().comm.c_str());
  s->start();
}

void Server::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  // Timeouts end here: the shutdown's own deadlines bound every wait from now on.
  // (wake_ goes on: sessions paused on a budget must still be resumed to drain.)
  uv_timer_stop(&sweep_);
  if (listening_) {
    listening_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    if (own_socket_file_) unlink(config_.socket_path.c_str());
  }
  undrained_ = count_;
  // begin_drain may close a session synchronously-ish (it only schedules uv_close), so
  // walking the list is safe: unlinking happens in the close callback.
  for (Session* s = head_; s != nullptr; s = s->next_) s->begin_drain();
  check_drained();
}

void Server::session_drained(Session*) {
  if (!shutting_down_) return;
  if (undrained_ > 0) --undrained_;
  check_drained();
}

void Server::check_drained() {
  if (shutting_down_ && undrained_ == 0 && !drained_fired_) {
    drained_fired_ = true;
    if (hooks_.all_drained) hooks_.all_drained();
  }
}

void Server::force_drained() {
  for (Session* s = head_; s != nullptr; s = s->next_) s->force_drained();
  undrained_ = 0;
  check_drained();
}

void Server::close_all_after_flush() {
  closing_all_ = true;
  for (Session* s = head_; s != nullptr;) {
    Session* next = s->next_;
    s->close_after_flush();
    s = next;
  }
  if (count_ == 0 && hooks_.all_closed) hooks_.all_closed();
}

void Server::close_all_now() {
  for (Session* s = head_; s != nullptr;) {
    Session* next = s->next_;
    s->close();
    s = next;
  }
}

void Server::session_closed(Session* s) {
  if (s->prev_ != nullptr) s->prev_->next_ = s->next_;
  else head_ = s->next_;
  if (s->next_ != nullptr) s->next_->prev_ = s->prev_;
  s->prev_ = s->next_ = nullptr;
  --count_;
  auto it = per_uid_.find(s->peer().uid);
  if (s->refused()) --refused_open_;  // never counted in its uid's connections
  else if (it != per_uid_.end()) --it->second.conns;
  forget_uid_if_unused(s->peer().uid);  // its held bytes were released by Session::close
  std::erase(waiting_writer_, s);
  std::erase(waiting_budget_, s);
  disk_.forget(s);
  if (count_ == 0 && closing_all_ && hooks_.all_closed)
    hooks_.all_closed();
}

void Server::wait_for_writer(Session* s) {
  waiting_writer_.push_back(s);
  writer_.set_sessions_paused(true);
}

void Server::writer_progress() {
  if (waiting_writer_.empty() || !writer_.below_resume()) return;
  std::vector<Session*> resume;
  resume.swap(waiting_writer_);
  writer_.set_sessions_paused(false);
  for (Session* s : resume) s->resume();  // may pause some again (set_sessions_paused)
}

bool Server::may_query(uid_t uid, gid_t gid) const {
  if (uid == 0 || uid == geteuid()) return true;
  for (uid_t u : config_.query_uids)
    if (u == uid) return true;
  for (gid_t g : config_.query_gids)
    if (g == gid) return true;
  return false;
}

void Server::fill_stats(proto::Stats& st) const {
  WriterFigures f = writer_.figures();
  st.head_seq = f.head_seq;
  st.queue_depth = f.queue_depth;
  st.queue_bytes = f.queue_bytes;
  st.commits = f.commits;
  st.events_committed = f.events_committed;
  st.events_per_commit =
      f.commits == 0 ? 0.0 : static_cast<double>(f.events_committed) / static_cast<double>(f.commits);
  st.fsync_p50_us = f.commit_p50_us;
  st.fsync_p99_us = f.commit_p99_us;
  st.fsync_max_us = f.commit_max_us;
  st.commit_hist = f.commit_hist;
  st.commit_us_sum = f.commit_sum_us;
  st.storage_errors = f.storage_errors;
  st.lost_nondurable = f.lost_nondurable;
  st.seals = f.seals;
  st.connections = count_;
  st.flush_mode = flush_mode_name(config_.flush_mode);
  st.uptime_s = static_cast<uint64_t>((monotonic_ns() - started_ns_) / 1'000'000'000);
  DiskFigures d = disk_.figures();
  st.disk_free_bytes = d.free_bytes;
  st.disk_reserve_bytes = d.reserve_bytes;
  st.storage_full = d.full;
  st.disk_full_action = d.action;
  st.storage_full_refusals = d.refusals;
}

}  // namespace cairn::daemon
