#include "server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

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

Server::Server(uv_loop_t* loop, const Config& config, Writer& writer, Reader& reader, Hooks hooks)
    : loop_(loop), config_(config), writer_(writer), reader_(reader), hooks_(std::move(hooks)) {
  hello_.server = std::string("cairnd ") + CAIRN_VERSION;
  hello_.flush_mode = flush_mode_name(config.flush_mode);
  hello_.limits = config.limits;
  hello_.max_inflight = config.max_inflight;
  started_ns_ = monotonic_ns();
}

Server::~Server() = default;

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
  uint32_t& mine = self->per_uid_[s->peer().uid];
  ++mine;
  if (self->count_ > self->config_.max_connections ||
      mine > self->config_.max_connections_per_uid) {
    log_msg(LogLevel::warning, "refusing connection from pid %u uid %u: connection limit",
            s->peer().pid, s->peer().uid);
    s->refuse(proto::ErrorCode::overloaded,
              "too many connections (max " + std::to_string(self->config_.max_connections) +
                  ", per uid " + std::to_string(self->config_.max_connections_per_uid) + ")");
    return;
  }
  if (self->shutting_down_) {
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
  if (it != per_uid_.end() && --it->second == 0) per_uid_.erase(it);
  std::erase(waiting_writer_, s);
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
  st.storage_errors = f.storage_errors;
  st.lost_nondurable = f.lost_nondurable;
  st.seals = f.seals;
  st.connections = count_;
  st.flush_mode = flush_mode_name(config_.flush_mode);
  st.uptime_s = static_cast<uint64_t>((monotonic_ns() - started_ns_) / 1'000'000'000);
}

}  // namespace cairn::daemon
