// reader.hpp — the query threads: answer query, stats and verify off the loop thread.
//
// Each thread has its own read-only Store (WAL lets readers run beside the writer
// without blocking it). Results come back to the loop through a Mailbox.
//
// Limits:
//   verify   an O(n) walk, so at most one runs at a time per daemon. Verify requests that
//            arrive while one runs wait (at most kMaxWaitingVerifies, daemon-wide; more
//            are refused `overloaded`), and the next walk answers all of them that
//            asked with the same arguments at once: each waiter gets a report from a
//            walk that began after it asked.
//   pages    a query reply stops before it would exceed the frame bound it is given
//            (max_frame) and carries a `next` cursor instead (PROTOCOL.md §6.4).
//   wait     an oldest-first query with `wait` (PROTOCOL.md §6.4) that finds nothing new
//            is parked here on the loop, holding no thread, until events_committed()
//            reports a seq past its cursor (it runs again) or its wait ends (it is
//            answered with the empty page). In batched mode an event is acked before its
//            commit, so a query woken by the ack may still find nothing: while such a
//            parked query's cursor is below the newest acked seq, the 25 ms tick runs it
//            again. At most one parked request per slot a session
//            has in flight, so max_inflight bounds them per connection.
//   subscribe one page of a subscription (PROTOCOL.md §6.8, reader_subscribe.cpp): a
//            waiting query with no end. One that finds nothing new parks like `wait`
//            (holding no thread) until events_committed() passes its cursor; the
//            session submits the next page only once the last one was written, so a
//            subscription holds at most one page here or in its socket.
//   cancel   a request whose session closed, or any request when the daemon shuts down,
//            is taken off the queue unrun and answered `cancelled`; one already running is
//            interrupted (SQLite progress handler) when asked to. Cancelled results always
//            come back through the mailbox, never from inside the call that cancels.
//
// Threads: submit, cancel_*, interrupt_running, waiting and stop are loop-thread calls.
#pragma once

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../protocol/message.hpp"
#include "mailbox.hpp"
#include "store/query_engine.hpp"
#include "store/store.hpp"

namespace cairn::daemon {

class Session;

struct ReadRequest {
  enum class Kind : uint8_t { query, stats, verify, subscribe };
  Kind kind = Kind::query;
  Session* session = nullptr;  // borrowed: a session outlives its requests in flight
  uint64_t slot = 0;
  uint64_t id = 0;  // the client's request id, echoed in the reply
  uint32_t uid = 0;  // the peer's: the queue is fair between uids
  uint64_t wait_until_ms = 0;  // parked query: when its wait ends (uv_now), 0: not yet parked
  proto::QuerySpec spec;
  // subscribe: answer even an empty page (the first, which confirms the subscription and
  // gives its cursor); later pages with nothing new park instead.
  bool announce = false;
  bool rechecked = false;  // parking: already run again once for an ack it missed
  proto::VerifyArgs verify;  // verify: key, saved checkpoints, freshness
};

struct ReadResult {
  ReadRequest::Kind kind = ReadRequest::Kind::query;
  Session* session = nullptr;
  uint64_t slot = 0;
  uint64_t id = 0;
  bool ok = false;
  bool cancelled = false;  // never run, or interrupted: its session closed or we shut down
  std::string error;  // why the store failed
  std::string frame;  // query/verify: the reply, encoded on the reader thread
  store::StoreInfo info;  // stats: the loop adds live figures and encodes
  std::optional<ReadRequest> park;  // a waiting query that found nothing: park it (loop)
  uint64_t cursor = 0;  // subscribe: the page's `next`, the next page's `after`
};

class Reader {
 public:
  using CompleteFn = std::function<void(std::vector<ReadResult>&)>;
  using StoppedFn = std::function<void()>;

  // Verify requests that may wait behind a running one, daemon-wide.
  static constexpr size_t kMaxWaitingVerifies = 64;
  // Queries and stats queued daemon-wide; more are refused `overloaded`. (Each session's
  // byte budget bounds its own share long before this.)
  static constexpr size_t kMaxQueued = 16384;

  // `max_reply` bounds each query page's payload (the daemon's max_frame).
  Reader(uv_loop_t* loop, std::string db_path, unsigned threads, uint64_t mmap_bytes,
         uint32_t max_reply, CompleteFn on_complete);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  int start();
  // Queues a request. Returns false (and takes nothing) for a verify when
  // kMaxWaitingVerifies already wait; the caller answers `overloaded`. After
  // cancel_all() every request is answered `cancelled` (through the mailbox).
  bool submit(ReadRequest req);
  // The session is closing: its queued requests come back cancelled, its running one is
  // interrupted.
  void cancel_session(const Session* session);
  // Shutdown: every queued request comes back cancelled, and so does every later one.
  void cancel_all();
  // Interrupts the requests running now (shutdown deadline).
  void interrupt_running();
  // Requests queued and not started (verify waiters included), for stats.
  size_t waiting() const;
  // The writer committed (or acked) events up to `seq`: parked waiting queries whose
  // cursor is below it run again. Loop thread.
  void events_committed(uint64_t seq);
  // Lets the threads finish what they are running (nothing new starts), then joins them
  // and closes the mailbox. Never blocks the loop: `on_stopped` runs on the loop once
  // the last result has been delivered.
  void stop(StoppedFn on_stopped);

 private:
  struct Job;     // one request, or all the verify waiters one walk answers
  struct Worker;  // per thread: what it runs now, and its interrupt flag
  void run(Worker& w);
  bool next_job(Worker& w, Job& job);  // under mu_
  void execute(Worker& w, Job& job, std::unique_ptr<store::Store>& store,
               std::unique_ptr<store::QueryEngine>& engine, std::vector<ReadResult>& out);
  // One subscription page (reader_subscribe.cpp), encoded straight into res.frame and
  // reserved from the thread's `reply_hint` (see Worker). Returns the store's error, if any.
  std::optional<std::string> subscription_page(size_t& reply_hint, const ReadRequest& req, ReadResult& res,
                                               store::Store& store, store::QueryEngine& engine);
  // A waiting page about to park whose cursor is below an ack that came while it ran
  // (its snapshot was taken just before that commit): true, once, to run it again now
  // rather than at the next tick (reader_subscribe.cpp).
  bool missed_ack(ReadRequest& req) const;
  void on_mail(std::vector<ReadResult>& results);
  void post_cancelled(std::vector<ReadRequest>& reqs);
  void park(ReadRequest req, ReadResult empty);  // loop
  void resubmit(ReadRequest req);                // loop: a parked query runs again
  static void on_wait_timer(uv_timer_t* t) noexcept;
  struct Parked {
    ReadRequest req;
    ReadResult empty;  // the answer if its wait ends: the empty page
  };
  std::vector<Parked> parked_;  // loop thread only
  // Sessions cancel_session() was called for since the last batch of results began: a
  // waiting query of theirs that was in the mailbox then (neither queued, running nor
  // parked, so not cancelled) is answered cancelled instead of parked. Without this a
  // subscription page (which waits with no end) could park for a closed session, and
  // hold its close until the next event. Loop thread; kept for one batch only.
  std::vector<const Session*> cancelled_;
  uint64_t acked_seq_ = 0;      // newest seq events_committed() reported (loop)
  uv_timer_t wait_timer_{};
  bool timer_running_ = false;

  uv_loop_t* loop_;
  std::string db_path_;
  unsigned nthreads_;
  uint64_t mmap_bytes_;
  uint32_t max_reply_;
  CompleteFn on_complete_;
  StoppedFn on_stopped_;
  Mailbox<ReadResult> mailbox_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::atomic<unsigned> live_threads_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ReadRequest> queue_;           // query and stats, oldest first
  // Requests started per uid since the queue was last empty: the next one started is
  // the oldest of the uid with the fewest, so one uid's pipelined reads never make
  // another's wait behind all of them (issue 11 item 4).
  std::unordered_map<uint32_t, uint64_t> served_;
  std::vector<ReadRequest> verify_waiting_; // answered together by the next walk
  bool verify_running_ = false;
  bool cancel_all_ = false;
  bool stopping_ = false;
  bool started_ = false;  // loop: start() succeeded
  bool stopped_ = false;  // loop: on_stopped has run
};

}  // namespace cairn::daemon
