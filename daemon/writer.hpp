// writer.hpp — the writer thread: the only code that writes events to the store.
//
// The ack path through the writer, one named step each (writer.cpp follows this order):
//   take      WriteQueue::take: the next group (urgent work first), when the queue has
//             work or a deadline passes (the open batch must be committed, or the
//             epoch sealed).
//   insert    insert(): each request into the open transaction; acks that need no
//             commit go back at once (post every kAckBatch inserts), durable acks wait.
//   commit    commit_open(): COMMIT + fsync; the waiting acks become durable. When is
//             decided by FlushPolicy; a failure goes to fail_open() (never retried).
//   hand back Mailbox -> Session::complete_write on the loop -> the reply.
//   upkeep    WalKeeper after each commit, seal_epoch() when the epoch is due.
//
// Pieces: WriteQueue (loop -> writer hand-off and backpressure, write_queue.hpp),
// FlushPolicy (when to commit and whose ack waits), LossLedger (promises after a failed
// commit), WalKeeper (checkpoints), Sealer (epochs), LatencyRing (commit latencies).
// Names follow the glossary in write_queue.hpp.
//
// Threads: submit(), stop() and the figures are called on the libuv loop thread. The
// steps take..upkeep run in the writer's turn (turn_), which the writer thread holds
// whenever it is not waiting for work: it owns the Store. Results travel back through a
// mutex-guarded vector and one uv_async_t (Mailbox), so the loop wakes at most once per
// group, not once per event.
//
// Inline commit (issue 15): a lone client that sends one event and waits for its
// durable ack would otherwise pay two thread hand-offs on top of the fsync (loop ->
// writer: a futex wake; writer -> loop: an eventfd), ~40 us on a VM where a wake-up is
// an IPI. So submit() only queues; at the end of the loop iteration (a uv_check
// handle) the loop either wakes the writer thread or, when the writer thread is idle
// (its turn is free), the mode is immediate, the queue holds at most kInlineMaxEvents
// and the last commit was quick and small (no sign of concurrent clients), takes the turn and runs the same steps itself,
// handing the results straight to the sessions. Everything read in one iteration is
// still one group (group commit), and a larger group or a slow disk goes to the thread,
// so reading from sockets overlaps the fsync under load and a slow fsync never holds
// the loop for long.
//
// Durability: a result with durable=true is only produced after Store::commit()
// returned success for the transaction holding that event. A failed commit fails every
// event of the transaction with storage_failed and reopens the database from the file
// (it is never retried as if the fsync had worked).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../protocol/errors.hpp"
#include "../protocol/event.hpp"
#include "checkpointer.hpp"
#include "clock.hpp"
#include "flush_policy.hpp"
#include "latency_ring.hpp"
#include "loss_ledger.hpp"
#include "mailbox.hpp"
#include "retention.hpp"
#include "sealer.hpp"
#include "store/store.hpp"
#include "write_queue.hpp"

namespace cairn::daemon {

class DiskGuard;

struct WriteResult {
  Session* session = nullptr;
  uint64_t conn = 0;  // WriteRequest::conn
  uint64_t slot = 0;
  uint64_t id = 0;
  bool flush = false;  // answers a flush (seq: the newest durable seq)
  bool ok = false;
  proto::ErrorCode error = proto::ErrorCode::internal;
  uint64_t seq = 0;
  bool durable = false;
  bool duplicate = false;
};

struct WriterFigures {
  uint64_t queue_depth = 0;  // accepted and not yet committed
  uint64_t queue_bytes = 0;
  uint64_t commits = 0;
  uint64_t events_committed = 0;
  uint64_t storage_errors = 0;
  uint64_t lost_nondurable = 0;  // acked durable:false, then their commit failed
  uint64_t seals = 0;            // epochs sealed since start
  uint64_t head_seq = 0;
  uint64_t commit_p50_us = 0, commit_p99_us = 0, commit_max_us = 0;
  std::vector<uint64_t> commit_hist;  // since start, per proto::kCommitBucketsUs bucket
  uint64_t commit_sum_us = 0;
};

class Writer {
 public:
  // Runs on the loop with results; with none, it is a nudge: the queue has drained,
  // sessions paused on it may resume.
  using CompleteFn = std::function<void(std::vector<WriteResult>&)>;
  using StoppedFn = std::function<void(bool fatal)>;

  // `sealer` is null when sealing is off.
  Writer(uv_loop_t* loop, std::unique_ptr<store::Store> store, std::unique_ptr<Sealer> sealer,
         const Config& config, CompleteFn on_complete, StoppedFn on_stopped);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Starts the thread. Returns a negative libuv error if the async handle failed.
  int start();
  // Queues one session's requests (moved out of `reqs`, which must all belong to that
  // session). Never blocks on I/O. An urgent submission goes ahead of the queue with
  // the same session's earlier ones (WriteQueue).
  void submit(std::vector<WriteRequest>& reqs, bool urgent = false);
  // Asks the thread to commit everything queued, checkpoint, close the store and exit;
  // on_stopped runs on the loop afterwards. Submitting after stop() is a bug.
  void stop() { queue_.request_stop(); }
  // Closes the async handle; call once on_stopped has run.
  void close();

  // Retention (retention.hpp): its prepared steps take the writer's turn between groups.
  // Set before start(); `r` outlives the writer thread.
  void set_retention(Retention* r) { retention_ = r; }
  bool over_limit() const { return queue_.over_limit(); }      // backpressure: pause reading
  bool below_resume() const { return queue_.below_resume(); }  // ... resume at this
  bool has_room(uint64_t events, uint64_t bytes) const { return queue_.has_room(events, bytes); }
  // Loop: some session is paused on the queue (true) / all were resumed (false). While
  // true, the writer wakes the loop when a group leaves the queue drained.
  void set_sessions_paused(bool paused) { sessions_paused_.store(paused, std::memory_order_release); }
  WriterFigures figures() const;
  const FlushPolicy& policy() const { return policy_; }
  // Watchdog: true if one store operation has been running longer than `limit_ns`.
  bool stuck(int64_t limit_ns) const;
  // Before start(): the guard whose flag insert() reads and that hears of ENOSPC
  // (disk_guard.hpp). It outlives the thread. Without one, no disk policy applies.
  void attach_disk_guard(DiskGuard* disk) { disk_ = disk; }

 private:
  // The steps, in order (writer thread).
  void run();
  int64_t next_deadline() const;
  void insert_group(std::deque<Submission>& group, bool urgent_group);
  void insert(WriteRequest& req);
  void stamp(WriteRequest& req);
  void commit_open();
  // Upkeep.
  void seal_epoch();
  void retention_turn();
  void upkeep_wal();
  // Failure: everything open is lost; fail the waiters, reopen, fill the lost seqs.
  void fail_open(const store::StoreError& err, const char* what);
  void reopen_store();
  bool fill_lost(const std::string& why);
  void give_up(const char* why);  // refuse everything and stop (systemd restarts us)
  // Loop side.
  void on_results(std::vector<WriteResult>& results);
  void post_ready();
  // Loop, once per iteration: wake the writer thread for what submit() queued, or
  // commit it inline (see the header comment).
  static void on_check(uv_check_t* h) noexcept;
  bool commit_inline();
  // Runs one store operation under the watchdog's stamp.
  template <typename F>
  auto timed(F&& f) {
    busy_since_ns_ = monotonic_ns();
    auto r = f();
    busy_since_ns_ = 0;
    return r;
  }

  uv_loop_t* loop_;
  WriteQueue queue_;
  Mailbox<WriteResult> mailbox_;
  FlushPolicy policy_;
  CompleteFn on_complete_;
  StoppedFn on_stopped_;
  std::thread thread_;
  // The writer's turn: held by whoever runs take..upkeep, the writer thread (always, but
  // while it waits for work) or the loop (inline). Everything under "Writer's turn" below
  // is only touched while holding it.
  std::mutex turn_;
  uv_check_t check_{};
  // Active while work waits for on_check: an active idle handle makes the loop poll
  // without blocking, so work queued from a timer or an async callback (before the poll
  // phase) is not left waiting for the next I/O.
  uv_idle_t idle_{};
  bool check_ready_ = false;  // loop only
  bool kick_ = false;         // loop only: submit() queued work since the last check
  std::atomic<bool> sessions_paused_{false};
  // Writer -> loop: the writer thread has exited; fatal_ is written before it.
  std::atomic<bool> stopped_{false};
  bool fatal_ = false;

  // Writer's turn (turn_), after start().
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Sealer> sealer_;  // null: no seals
  Retention* retention_ = nullptr;  // null: no retention; owned by Daemon
  int64_t next_seal_ns_ = 0;        // monotonic deadline of the next seal
  std::string db_path_;
  WalKeeper wal_;
  LossLedger loss_;
  std::string last_failure_;          // why the last transaction failed
  uint64_t open_ = 0;                 // appends in the open transaction
  int64_t oldest_ns_ = 0;             // when the oldest of them was inserted
  int64_t last_received_ = 0;         // the newest `received` stamped (never goes back)
  std::vector<WriteResult> waiting_;  // durable acks: released by the next commit
  std::vector<WriteResult> ready_;    // acks to post now
  bool failed_ = false;               // store could not be reopened: refuse everything
  bool inline_ = false;               // the loop holds the turn: results go to inline_out_
  std::vector<WriteResult> inline_out_;
  std::deque<Submission> inline_group_;
  int64_t last_commit_ns_ = 0;     // how long the last commit took (inline only when quick)
  uint64_t last_commit_events_ = 0;  // and how many events it held (inline only when few)
  DiskGuard* disk_ = nullptr;         // disk_guard.hpp; borrowed
  int consecutive_failures_ = 0;      // storage failures since the last good commit
  static constexpr int kMaxConsecutiveFailures = 3;
  static constexpr size_t kAckBatch = 32;  // post ready acks at least every this many inserts
  // Inline commit limits: beyond a few events, parsing the next reads while the thread
  // fsyncs wins; beyond a 2 ms commit, the hand-off is noise and the loop must not wait.
  static constexpr uint64_t kInlineMaxEvents = 4;
  static constexpr int64_t kInlineMaxCommitNs = 2'000'000;

  // Figures (written by the writer thread, read anywhere).
  std::atomic<uint64_t> open_atomic_{0}, commits_{0}, events_committed_{0}, storage_errors_{0};
  std::atomic<uint64_t> head_seq_{0}, seals_{0};
  std::atomic<int64_t> busy_since_ns_{0};
  LatencyRing commit_latency_;
};

}  // namespace cairn::daemon
