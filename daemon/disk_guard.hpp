// disk_guard.hpp — keeps cairnd off a full disk (issue 14 part 2; settings in
// disk_policy.hpp).
//
// Glossary:
//   look      one statvfs of the directory holding the database: on a timer
//             (disk-check-interval-ms) and after every DiskPolicy::check_every() bytes of
//             appends admitted, never a syscall per event.
//   full      free < reserve at a look, or the writer met ENOSPC (SQLITE_FULL). It ends
//             when a look finds free >= reserve + DiskPolicy::resume_margin() (hysteresis).
//             Each transition is logged once.
//   admit     Session::stage_append asks before an append is staged: go, or refuse
//             (answered storage_full, nothing stored).
//   hold      pushback: while full, Session::read_frames leaves an append frame unread
//             in its buffer, stops reading and waits on our list until the disk is no
//             longer full (or a reload switches to refuse).
//   blocked   the one flag the writer thread reads (Writer::insert): set only when the
//             writer itself met ENOSPC on a filesystem statvfs shows full (ENOSPC with
//             room left, e.g. a quota, is a failing disk: storage_failed, and three in a
//             row make cairnd exit as before), so appends already queued are refused
//             storage_full instead of each failing a transaction (three failed ones in a
//             row make cairnd exit; a full disk is not a reason to). Below the reserve but
//             not blocked, the writer still writes what was accepted: the reserve is what
//             the bounded writer queue, seals and WAL checkpoints use meanwhile.
//
// Threads: everything but writes_blocked() and note_store_error() runs on the loop
// thread; those two are the writer's, through atomics.
//
// Ownership: the Daemon owns the guard and outlives both the writer thread and the
// loop's handles; the Server hands it to sessions. Sessions on the hold list are
// borrowed: Server::session_closed calls forget() before a session can be freed.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"

namespace cairn::daemon {

class Session;

struct DiskFigures {
  uint64_t free_bytes = 0;     // at the last look (available to unprivileged users)
  uint64_t reserve_bytes = 0;  // the reserve in bytes at the last look
  bool full = false;
  const char* action = "refuse";
  uint64_t refusals = 0;       // appends answered storage_full since start
  uint64_t held = 0;           // connections waiting for space (pushback)
};

class DiskGuard {
 public:
  // `config` is the Daemon's, which SIGHUP edits in place: the policy in effect is read
  // at every look and admission.
  DiskGuard(uv_loop_t* loop, const Config& config);
  ~DiskGuard() = default;
  DiskGuard(const DiskGuard&) = delete;
  DiskGuard& operator=(const DiskGuard&) = delete;

  // The first look (so a daemon started on a full disk refuses from the first append)
  // and the timer. The timer is unref'd: it never keeps the loop alive, and the Daemon's
  // teardown closes it with every other handle. Returns a negative libuv error.
  int start();

  // ---- loop thread ----
  // An append of `bytes` (its stored body) taken off a connection: true to stage it,
  // false to refuse it storage_full (counted). `draining`: the connection is serving
  // its shutdown budget, where pushback refuses instead (waiting would stall the stop).
  bool admit(size_t bytes, bool draining);
  // Pushback is in force: a session asks before it takes a frame off its buffer, so an
  // append stays there unread (is_append says which frames are appends).
  bool holding() const { return full_ && config_.disk.action == DiskFullAction::pushback; }
  // Decoded as the session would (`max_depth`); only while holding, so the extra parse
  // costs nothing in normal running.
  static bool is_append(std::span<const uint8_t> payload, uint32_t max_depth);
  void hold(Session* s);
  void forget(Session* s);
  // Resumes every held session (each reads its held append again, and may be held again
  // if still full and open). Shutdown calls it once the sessions are draining.
  void release_held();
  // The storage_full message: what is free, what is kept, what to do.
  std::string refusal_message() const;
  void count_refusal() { ++refusals_; }
  DiskFigures figures() const;
  // For the STATUS line: "" while not full.
  std::string status_note() const;

  // ---- writer thread ----
  bool writes_blocked() const { return blocked_.load(std::memory_order_relaxed); }
  // A store operation failed with this SQLite (extended) code: ENOSPC on a filesystem
  // that is really full blocks writes and makes the loop look at the disk at the next
  // admission.
  void note_store_error(int sqlite_code);

 private:
  static void on_timer(uv_timer_t* t) noexcept;
  void look();

  uv_loop_t* loop_;
  const Config& config_;
  std::string dir_;  // the directory holding the database
  uv_timer_t timer_{};
  bool timer_on_ = false;
  uint32_t timer_ms_ = 0;

  // Loop thread.
  bool full_ = false;
  bool enospc_full_ = false;  // this episode began with (or met) a real ENOSPC
  uint64_t free_ = 0, reserve_ = 0, fs_bytes_ = 0;
  uint64_t since_look_ = 0;  // appended bytes admitted since the last look
  uint64_t refusals_ = 0;
  int statvfs_errno_ = 0;    // the last look's failure (logged once), 0: fine
  std::vector<Session*> held_;

  // Writer -> loop.
  std::atomic<bool> blocked_{false};
  std::atomic<bool> enospc_seen_{false};
  // Loop -> writer: the free bytes at which a full disk counts as recovered (the
  // writer's config_ may change under SIGHUP; this copy is what it reads).
  std::atomic<uint64_t> resume_at_{0};
};

}  // namespace cairn::daemon
