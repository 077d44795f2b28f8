// write_queue.hpp — the hand-off from the loop thread to the writer thread.
//
// A FIFO of submissions, bounded in events and bytes (the loop stops reading from
// sockets when it is over the limit and resumes below half), where an urgent submission
// jumps ahead together with its own connection's earlier submissions, so every
// connection keeps its order and a critical event never waits behind thousands of other
// clients' routine events.
//
// Names used from here to the store (one name per concept):
//   request     one append or flush from one client (WriteRequest), answered in its slot.
//   submission  the requests one session hands over from one read, in its order.
//   group       every submission the writer took in one wake-up; immediate mode commits
//               once per group, so concurrent clients share one fsync (group commit).
//   batch       only the batched/hybrid flush modes' unit of commit (--batch-size).
//   durable ack an ack sent after the commit that covers the event (FlushPolicy).
//   urgent      a request that forces a commit at once and jumps the queue: in batched
//               and hybrid modes, one whose ack is durable (sync:true; in hybrid also a
//               critical type or severity). A flush is urgent too.
//   flush       the protocol op: "ack once everything I sent before is durable".
//
// Threads: push(), wake(), over_limit(), below_resume() run on the loop; wait_ready() on
// the writer thread; take() and released() in the writer's turn (the writer thread, or
// the loop committing inline, see writer.hpp); the counters are atomics read anywhere.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "../protocol/event.hpp"

namespace cairn::daemon {

class Session;

struct WriteRequest {
  enum class Kind : uint8_t { append, flush };
  Kind kind = Kind::append;
  bool durable_ack = false;  // the ack waits for the commit (FlushPolicy::waits_for_commit)
  Session* session = nullptr;  // borrowed: a session outlives its requests in flight
  uint64_t conn = 0;           // the session's serial: never reused, unlike its address
  uint64_t slot = 0;           // where the reply goes in the session's reply order
  uint64_t id = 0;             // the client's request id, echoed in the reply
  proto::Event event;
  proto::Trusted trusted;
  std::string body;
  size_t received_at = 0;  // where the writer stamps `received` in body (0: keep as is)

  // Bytes this request holds while queued: itself, the body and every string beside it
  // (the session drops message and fields once they are in the body; counted anyway,
  // so the bound holds whatever the session keeps). Computed the same way at push and
  // at release: nothing here changes while queued.
  size_t cost() const {
    auto opt = [](const std::optional<std::string>& s) { return s ? s->size() : size_t{0}; };
    return sizeof(*this) + body.size() + event.type.size() + opt(event.actor) + opt(event.action) +
           opt(event.target) + opt(event.message) + event.fields.size() + event.idem.size() +
           trusted.comm.size();
  }
};

struct Submission {
  Session* session = nullptr;
  bool urgent = false;  // ends with an urgent request
  std::vector<WriteRequest> reqs;
};

class WriteQueue {
 public:
  WriteQueue(uint64_t max_events, uint64_t max_bytes) : max_events_(max_events), max_bytes_(max_bytes) {}

  // Loop: queues one session's requests (moved out of `reqs`, which keeps its capacity).
  // wake=false leaves waking the writer to the caller (wake() or taking the work
  // itself: Writer's inline commit).
  void push(std::vector<WriteRequest>& reqs, bool urgent, bool wake = true);
  // Loop: wakes a writer waiting in wait_ready().
  void wake();
  // Loop: backpressure. Pause reading at the limit, resume at half.
  bool over_limit() const;
  bool below_resume() const;

  // Writer: waits until something is queued, a stop is asked for or `deadline_ns`
  // (monotonic; INT64_MAX: none) passes. Takes nothing; returns whether stopping.
  bool wait_ready(int64_t deadline_ns);
  // Whoever writes (the writer thread, or the loop committing inline): moves the next
  // group into `group` without waiting: every session's submissions up to its last
  // urgent one if any is urgent, else everything. Takes happen in the writer's turn
  // (Writer::turn_), so groups are inserted in the order they were taken.
  struct Taken {
    bool stopping = false;
    bool urgent = false;  // the group is the urgent part of the queue
  };
  Taken take(std::deque<Submission>& group);
  bool stopping() const;
  // Writer: an urgent submission arrived (checked mid-group, without the lock).
  bool urgent_pending() const { return urgent_pending_.load(std::memory_order_acquire); }
  // Writer: puts group[from...] back at the head, in order (to serve urgent work first).
  void put_back(std::deque<Submission>& group, size_t from);
  // Writer: one request has left the queue (inserted or answered).
  void released(const WriteRequest& req) {
    queued_events_.fetch_sub(1, std::memory_order_relaxed);
    queued_bytes_.fetch_sub(req.cost(), std::memory_order_relaxed);
  }
  bool empty() const;
  // Writer or loop: asks the writer to finish. Idempotent.
  void request_stop();
  // After the writer has exited: everything still queued, to be answered as failed.
  std::deque<Submission> take_all();

  uint64_t queued_events() const { return queued_events_.load(std::memory_order_relaxed); }
  uint64_t queued_bytes() const { return queued_bytes_.load(std::memory_order_relaxed); }

 private:
  void take_urgent(std::deque<Submission>& group);  // under mu_

  const uint64_t max_events_, max_bytes_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Submission> queue_;  // push order; urgent submissions are flagged in place
  // queue_ holds an urgent submission. Written under mu_; read without it mid-group.
  std::atomic<bool> urgent_pending_{false};
  bool stopping_ = false;
  std::atomic<uint64_t> queued_events_{0}, queued_bytes_{0};
};

}  // namespace cairn::daemon
