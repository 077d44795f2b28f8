// server.hpp — the listening socket and the set of live sessions.
//
// The Server accepts connections (from a socket it binds or one systemd passed), caps
// them in total and per uid, keeps every Session on an intrusive list, and is the
// sessions' window onto the rest of the daemon: config, writer, readers, shutdown state.
//
// It also keeps the books of peer_limits.hpp: connections, bytes held and bytes queued
// for the writer per uid, and their sum (one uid's flood stops that uid's connections
// first); the append rate per uid; and a sweep timer that closes idle connections and
// connections stuck mid-frame. "Privileged" is root and cairnd's own uid: they may use
// the reserved connections, ignore the per-uid cap and the append rate.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "../protocol/message.hpp"
#include "config.hpp"
#include "disk_guard.hpp"
#include "reader.hpp"
#include "writer.hpp"

namespace cairn::daemon {

class Session;

class Server {
 public:
  struct Hooks {
    std::function<void()> all_drained;  // shutdown: every session has read its budget
    std::function<void()> all_closed;   // shutdown: no session left
  };

  Server(uv_loop_t* loop, const Config& config, Writer& writer, Reader& reader, DiskGuard& disk,
         Hooks hooks);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens on a socket systemd passed (fd >= 0) or binds config.socket_path. On
  // failure returns a message; nothing is left listening.
  Result<Ok, std::string> listen(int activated_fd);

  // Shutdown sequence (loop thread): stop accepting and unlink our socket file; each
  // session computes its budget; when all are drained, hooks.all_drained runs.
  void begin_shutdown();
  // After the writer's final commit: close every session once its replies are written.
  void close_all_after_flush();
  // Drain deadline passed: stop waiting for budgets that are not arriving.
  void force_drained();
  void close_all_now();
  bool shutting_down() const { return shutting_down_; }

  // Writer backpressure: sessions that stopped reading wait here.
  void wait_for_writer(Session* s);
  void writer_progress();

  // For sessions.
  uv_loop_t* loop() const { return loop_; }
  const Config& config() const { return config_; }
  Writer& writer() { return writer_; }
  Reader& reader() { return reader_; }
  DiskGuard& disk_guard() { return disk_; }
  const proto::HelloInfo& hello_info() const { return hello_; }
  void fill_stats(proto::Stats& stats) const;
  bool may_query(uid_t uid, gid_t gid) const;
  void session_drained(Session* s);
  void session_closed(Session* s);
  size_t sessions() const { return count_; }

  // ---- budgets (peer_limits.hpp) ----
  static bool privileged(uid_t uid);
  // A session's held bytes (or its uid's writer bytes) changed by `delta`.
  void charge(uid_t uid, int64_t held_delta, int64_t write_delta);
  // May a session of `uid` holding `held` bytes read more requests? When not, and the
  // reason is its uid's or the daemon's total (not its own), it waits on the server's
  // list and is resumed when bytes are released.
  bool may_read(Session* s, uint64_t held);
  // Does `uid` hold so few bytes in the writer's queue that it need not pause on it?
  bool light_writer(uid_t uid) const;
  // An append by `uid` now: false if the uid is over --uid-append-rate.
  bool take_append_token(uid_t uid);
  // The options of peer_limits.hpp changed (SIGHUP; the Config is already updated).
  void limits_changed();
  uint64_t held_total() const { return held_total_; }
  // Drops a uid's books once it has no connection and holds nothing (session teardown).
  void forget_uid_if_unused(uid_t uid);

 private:
  struct UidBooks {
    uint32_t conns = 0;
    uint64_t held = 0;         // bytes its connections hold (session budget)
    uint64_t write_bytes = 0;  // of which: appends queued for the writer
    double tokens = -1;        // append rate bucket; < 0: not started
    uint64_t refilled_ms = 0;
  };
  static void on_connection(uv_stream_t* listener, int status) noexcept;
  static void on_sweep(uv_timer_t* t) noexcept;
  static void on_wake(uv_timer_t* t) noexcept;
  void check_drained();
  void restart_sweep();
  double append_burst() const;  // the rate bucket's size in appends

  uv_loop_t* loop_;
  const Config& config_;
  Writer& writer_;
  Reader& reader_;
  DiskGuard& disk_;
  Hooks hooks_;
  proto::HelloInfo hello_;
  uv_pipe_t listener_{};
  bool listening_ = false;
  bool own_socket_file_ = false;  // we bound it, so we unlink it
  bool shutting_down_ = false;
  bool drained_fired_ = false;
  bool closing_all_ = false;
  int64_t started_ns_ = 0;

  Session* head_ = nullptr;  // intrusive list of live sessions
  size_t count_ = 0;
  size_t refused_open_ = 0;  // of count_: refused at the connection caps, still closing
  size_t undrained_ = 0;
  std::unordered_map<uid_t, UidBooks> per_uid_;
  std::vector<Session*> waiting_writer_;
  std::vector<Session*> waiting_budget_;  // stopped by their uid's or the global budget
  uint64_t held_total_ = 0;
  uv_timer_t sweep_{};  // idle / slow-frame timeouts
  uv_timer_t wake_{};   // resumes waiting_budget_ on the next loop turn after a release
  bool wake_armed_ = false;
};

}  // namespace cairn::daemon
