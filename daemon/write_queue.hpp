// write_queue.hpp — the hand-off from the loop thread to the writer thread.
//
// One FIFO of submissions per uid, bounded together in events and bytes (the loop stops
// reading from sockets when it is over the limit and resumes below half). A group is
// formed from the uids' FIFOs by deficit round-robin over bytes (each uid with work
// queued may take kQuantumBytes per round, a submission cut between requests where its
// credit ends), so one uid's flood costs that uid: another uid's request is in the next
// group whatever the flood has queued. With a single uid queued the group is everything,
// as in one FIFO. An urgent submission jumps ahead together with its own connection's
// earlier submissions, so every connection keeps its order and a critical event never
// waits behind thousands of other clients' routine events.
//
// Order: a connection's requests keep their order (one connection is one uid, its FIFO
// is in push order, and a cut submission's rest stays at that FIFO's head). Requests of
// different uids are ordered by the round-robin, not by arrival; seqs are handed out by
// the writer in group order.
//
// Names used from here to the store (one name per concept):
//   request     one append or flush from one client (WriteRequest), answered in its slot.
//   submission  the requests one session hands over from one read, in its order.
//   group       what the writer took in one wake-up; immediate mode commits once per
//               group, so concurrent clients share one fsync (group commit). With one uid
//               queued (and none other in the last kSharedLingerGroups groups), every
//               submission; else whole deficit round-robin rounds until the group holds
//               kSharedGroupBytes (the rest waits for the next one).
//   round       each uid with work queued takes up to its credit (+kQuantumBytes a round,
//               unused credit kept while it has work queued) of its FIFO, in ring order.
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
#include <unordered_map>
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
  // trusted.uid is set for every kind, flushes too: it is the queue's fairness key, and
  // a flush must queue behind its own connection's appends.
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
           trusted.comm.size() + trusted.exe.size() + trusted.cgroup.size();
  }
};

struct Submission {
  Session* session = nullptr;
  uint32_t uid = 0;     // the session's peer uid: which FIFO it waits in
  bool urgent = false;  // ends with an urgent request
  uint64_t bytes = 0;   // the reqs' cost while queued (the round-robin's measure)
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
  // Loop: backpressure. Connections of uids with much queued pause reading at three
  // quarters of the limit (over_limit), everyone resumes at half; the last quarter is
  // room for uids with little queued. The limit itself is hard: a frame is read only if
  // the queue has room for it (has_room: `events` and `bytes` are what the caller has
  // staged plus the frame), or nothing is queued or staged (so a request larger than the
  // whole queue still goes, alone).
  bool over_limit() const;
  bool below_resume() const;
  bool has_room(uint64_t events, uint64_t bytes) const {
    uint64_t e = queued_events(), b = queued_bytes();
    return (e == 0 && events <= 1) || (e + events <= max_events_ && b + bytes <= max_bytes_);
  }

  // Writer: waits until something is queued, a stop is asked for or `deadline_ns`
  // (monotonic; INT64_MAX: none) passes. Takes nothing; returns whether stopping.
  bool wait_ready(int64_t deadline_ns);
  // Whoever writes (the writer thread, or the loop committing inline): moves the next
  // group into `group` without waiting: every session's submissions up to its last
  // urgent one if any is urgent; else, with one uid queued and no other lately,
  // everything; else deficit round-robin rounds (see the glossary). Work may stay
  // queued on return: the taker comes back for it. Takes happen in the writer's turn
  // (Writer::turn_), so groups are inserted in the order they were taken.
  struct Taken {
    bool stopping = false;
    bool urgent = false;  // the group is the urgent part of the queue
  };
  Taken take(std::deque<Submission>& group);
  bool stopping() const;
  // Writer: an urgent submission arrived (checked mid-group, without the lock).
  bool urgent_pending() const { return urgent_pending_.load(std::memory_order_acquire); }
  // Writer: puts group[from...] back at the heads of their FIFOs, in order (to serve
  // urgent work first); group[from] may have lost requests from its front.
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

  // A uid's credit per round, and the size at which a group of several uids' work ends
  // (after a whole round). Small enough that a request of another uid waits for at most
  // about two such groups however much one uid has queued (~50 small events each, a few
  // ms of inserts); large enough that a flood still shares each fsync between dozens of
  // events (an fsync costs ~0.2-1 ms here; the inserts are the bigger part).
  static constexpr uint64_t kQuantumBytes = 8 * 1024;
  static constexpr uint64_t kSharedGroupBytes = 32 * 1024;
  // Groups that stay bounded after the last one with several uids' work, though only one
  // uid has work queued: a closed-loop client of another uid is off the queue while its
  // ack travels and it sends the next request, and must not find one uid's whole backlog
  // taken as one group when it returns. A lone uid's bulk load pays nothing for this.
  static constexpr uint32_t kSharedLingerGroups = 16;

 private:
  // One uid's queued submissions. A uid is on ring_ exactly while its FIFO is not empty.
  struct UidFifo {
    std::deque<Submission> subs;  // push order; urgent submissions are flagged in place
    uint64_t credit = 0;          // round-robin bytes it may still take; 0 once empty
    uint32_t urgent = 0;          // of subs, flagged urgent
  };
  UidFifo& fifo(uint32_t uid);                       // under mu_
  void emptied(uint32_t uid);                        // under mu_: its FIFO is empty now
  void take_urgent(std::deque<Submission>& group);   // under mu_
  void take_rounds(std::deque<Submission>& group);   // under mu_
  // Moves the head of `f` into `group` whole, or its first requests up to `credit`.
  // Returns the bytes moved (0: not even its first request fits).
  uint64_t take_head(UidFifo& f, uint64_t credit, std::deque<Submission>& group);  // under mu_

  const uint64_t max_events_, max_bytes_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint32_t, UidFifo> fifos_;  // kept while few, so push rarely allocates
  std::deque<uint32_t> ring_;                    // uids with work queued, in service order
  size_t queued_subs_ = 0;                       // submissions in all FIFOs
  size_t urgent_subs_ = 0;                       // of which urgent
  uint32_t shared_left_ = 0;                     // bounded groups still due (kSharedLingerGroups)
  // An urgent submission is queued. Written under mu_; read without it mid-group.
  std::atomic<bool> urgent_pending_{false};
  bool stopping_ = false;
  std::atomic<uint64_t> queued_events_{0}, queued_bytes_{0};
};

}  // namespace cairn::daemon
