// writer.hpp — the group-commit thread: the only code that writes to the store.
//
// Glossary:
//   WriteRequest  an append (validated event + its canonical body) or a flush barrier,
//                 tagged with the session and the reply slot it answers.
//   WriteResult   what goes back to the loop: seq/durable/duplicate, or an error.
//   group         everything the thread found queued when it woke; immediate mode
//                 commits once per group, so N concurrent writers share one fsync.
//
// Threads: submit(), stop() and the figures are called on the libuv loop thread; the
// worker thread owns the Store. Results travel back through a mutex-guarded vector and
// one uv_async_t, so the loop wakes at most once per group, not once per event.
//
// Durability: a result with durable=true is only produced after Store::commit()
// returned success for the transaction holding that event. A failed commit fails every
// event of the transaction with storage_failed and reopens the database from the file
// (it is never retried as if the fsync had worked).
#pragma once

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "../protocol/errors.hpp"
#include "../protocol/event.hpp"
#include "checkpointer.hpp"
#include "flush_policy.hpp"
#include "mailbox.hpp"
#include "sealer.hpp"
#include "store/store.hpp"

namespace cairn::daemon {

class Session;

struct WriteRequest {
  enum class Kind : uint8_t { append, barrier };
  Kind kind = Kind::append;
  bool durable_ack = false;  // the ack waits for the commit (FlushPolicy::waits_for_commit)
  Session* session = nullptr;  // borrowed: a session outlives its requests in flight
  uint64_t conn = 0;           // the session's serial: never reused, unlike its address
  uint64_t slot = 0;
  uint64_t id = 0;             // the client's request id, echoed in the reply
  proto::Event event;
  proto::Trusted trusted;
  std::string body;

  // Bytes this request holds while queued: itself, the body, ~128 for the short column
  // strings and allocator overhead (message and fields are dropped once in the body).
  size_t cost() const { return sizeof(*this) + body.size() + 128; }
};

// One session's requests from one read, in that session's order. The writer's queue is
// a FIFO of these, so jumping it (hybrid's critical events) moves a few batches, never
// thousands of requests.
struct WriteBatch {
  Session* session = nullptr;
  bool urgent = false;  // ends with an event that forces a commit
  std::vector<WriteRequest> reqs;
};

struct WriteResult {
  Session* session = nullptr;
  uint64_t conn = 0;  // WriteRequest::conn
  uint64_t slot = 0;
  uint64_t id = 0;
  bool barrier = false;
  bool ok = false;
  proto::ErrorCode error = proto::ErrorCode::internal;
  uint64_t seq = 0;          // append: the event's seq; barrier: newest durable seq
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
  // Queues one session's requests (moved out of `batch`, which must all belong to that
  // session). Never blocks on I/O. An urgent batch (it ends with an event that forces a
  // commit) goes ahead of the queue, taking the same session's earlier queued batches
  // with it so each connection keeps its order.
  void submit(std::vector<WriteRequest>& batch, bool urgent = false);
  // Asks the thread to commit everything queued, checkpoint, close the store and exit;
  // on_stopped runs on the loop afterwards. Submitting after stop() is a bug.
  void stop();
  // Closes the async handle; call once on_stopped has run.
  void close();

  bool over_limit() const;      // backpressure: pause reading from sockets
  bool below_resume() const;    // ... resume when the queue has drained to this
  // Loop: some session is paused on the queue (true) / all were resumed (false). While
  // true, the worker wakes the loop when a group leaves the queue drained.
  void set_sessions_paused(bool paused) { sessions_paused_.store(paused, std::memory_order_release); }
  WriterFigures figures() const;
  const FlushPolicy& policy() const { return policy_; }
  // Watchdog: true if one store operation has been running longer than `limit_ns`.
  bool stuck(int64_t limit_ns) const;

 private:
  void run();
  void process(std::deque<WriteBatch>& work, bool is_urgent);
  void take_urgent(std::deque<WriteBatch>& work);  // under mu_
  void append_one(WriteRequest& req);
  void commit_open();
  void fail_open(const store::StoreError& err, const char* what);
  void reopen_store();
  // Seals the epoch (everything open is committed first). Worker thread.
  void seal_epoch();
  // After a failed commit: placeholders for every seq an ack handed out that the file
  // no longer has, so no seq is ever handed out twice. Returns false if that failed too.
  bool fill_lost(const std::string& why);
  void on_results(std::vector<WriteResult>& results);

  uv_loop_t* loop_;
  Mailbox<WriteResult> mailbox_;
  std::unique_ptr<store::Store> store_;  // worker thread only, after start()
  std::unique_ptr<Sealer> sealer_;       // worker thread only, after start(); null: no seals
  int64_t next_seal_ns_ = 0;             // monotonic deadline of the next seal
  bool accept_loss_ = false;
  uint64_t max_handed_seq_ = 0;          // highest seq any ack has named (durable or not)
  // Connections with durable:false acks in the open transaction, and those whose such
  // acks a failed commit lost: their next flush or durable append is answered
  // events_lost (once), so no later durable answer covers the loss.
  std::vector<uint64_t> open_nondurable_conns_;
  std::unordered_set<uint64_t> lost_conns_;
  uint64_t lost_at_stop_start_ = UINT64_MAX;  // lost_nondurable_ when the stop began
  std::string last_failure_;             // why the last transaction failed
  std::string db_path_;
  // WAL size in frames after the last commit (from SQLite's wal hook). Checkpoints never
  // run inside a COMMIT whose acks wait (SQLite's autocheckpoint would do that): the
  // copy runs on checkpointer_, and a small catch-up here lets the WAL start over.
  int wal_frames_ = 0;
  int copy_requested_at_ = 0;  // wal_frames_ when the last background copy was asked for
  static constexpr int kCheckpointFrames = 250;     // background copy every ~1 MiB of WAL
  static constexpr int kWalIdleRestartFrames = 1000; // catch-up when idle at ~4 MiB
  static constexpr int kWalRestartFrames = 32768;   // ... under load at ~128 MiB
  static constexpr int kWalHardLimitFrames = 65536; // ... and regardless at ~256 MiB
  static constexpr size_t kAckBatch = 32;  // post ready acks at least every this many inserts
  Checkpointer checkpointer_;
  static void on_wal_commit(void* self, int frames) { static_cast<Writer*>(self)->wal_frames_ = frames; }
  void maybe_checkpoint();
  FlushPolicy policy_;
  uint64_t max_events_, max_bytes_;
  CompleteFn on_complete_;
  StoppedFn on_stopped_;
  std::thread thread_;

  // Loop -> worker.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WriteBatch> queue_;  // submit order; urgent batches are flagged in place
  // queue_ holds an urgent batch. Written under mu_; the worker also reads it without
  // mu_ mid-group, to notice urgent work.
  std::atomic<bool> urgent_pending_{false};
  std::atomic<bool> sessions_paused_{false};
  bool stopping_ = false;

  // Worker -> loop: results go through mailbox_; these say the worker has exited.
  std::atomic<bool> stopped_{false};
  bool fatal_ = false;  // written before stopped_ is set

  // Worker-only transaction state.
  uint64_t open_ = 0;             // appends in the open transaction
  uint64_t open_nondurable_ = 0;  // ... of which were already acked durable:false
  int64_t oldest_ns_ = 0;
  std::vector<WriteResult> waiting_;  // results released by the next commit
  std::vector<WriteResult> ready_;    // results to post now
  bool failed_ = false;               // store could not be reopened: refuse everything
  int consecutive_failures_ = 0;      // storage failures since the last good commit
  static constexpr int kMaxConsecutiveFailures = 3;

  // Figures (written by the worker or submit, read anywhere).
  std::atomic<uint64_t> queued_events_{0}, queued_bytes_{0}, open_atomic_{0};
  std::atomic<uint64_t> commits_{0}, events_committed_{0}, storage_errors_{0};
  std::atomic<uint64_t> lost_nondurable_{0}, head_seq_{0}, seals_{0};
  std::atomic<int64_t> busy_since_ns_{0};
  mutable std::mutex lat_mu_;
  std::vector<uint32_t> commit_us_;  // ring of recent commit latencies
  size_t commit_us_next_ = 0;
  uint64_t commit_max_us_ = 0;
};

int64_t monotonic_ns();
int64_t realtime_ns();

}  // namespace cairn::daemon
