#include "write_queue.hpp"

#include <algorithm>
#include <chrono>
#include <iterator>

#include "clock.hpp"

namespace cairn::daemon {

void WriteQueue::push(std::vector<WriteRequest>& reqs, bool urgent, bool wake) {
  if (reqs.empty()) return;
  uint64_t bytes = 0;
  for (const auto& r : reqs) bytes += r.cost();
  queued_events_.fetch_add(reqs.size(), std::memory_order_relaxed);
  queued_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  // Moved element by element into an exact-size vector: the caller's vector keeps its
  // capacity for the next read, and the queue holds no slack.
  Submission sub{reqs.front().session, reqs.front().trusted.uid, urgent, bytes, {}};
  sub.reqs.reserve(reqs.size());
  std::move(reqs.begin(), reqs.end(), std::back_inserter(sub.reqs));
  reqs.clear();
  bool was_empty;
  {
    std::lock_guard lk(mu_);
    was_empty = queued_subs_ == 0;
    UidFifo& f = fifo(sub.uid);
    if (f.subs.empty()) ring_.push_back(sub.uid);
    f.subs.push_back(std::move(sub));
    ++queued_subs_;
    if (urgent) {
      ++f.urgent;
      ++urgent_subs_;
      urgent_pending_.store(true, std::memory_order_release);
    }
  }
  // A non-empty queue means the writer has been woken already and not yet taken it.
  if (was_empty && wake) cv_.notify_one();
}

void WriteQueue::wake() { cv_.notify_one(); }

WriteQueue::UidFifo& WriteQueue::fifo(uint32_t uid) { return fifos_[uid]; }

// A FIFO that emptied is kept while there are few, so the usual handful of uids keep
// theirs (and their deque's storage) and a push allocates nothing; past kKeepFifos each
// is dropped as it empties, so a host with many uids holds no more than those queued.
void WriteQueue::emptied(uint32_t uid) {
  constexpr size_t kKeepFifos = 64;
  if (fifos_.size() > kKeepFifos) fifos_.erase(uid);
}

bool WriteQueue::over_limit() const {
  return queued_events() >= max_events_ / 4 * 3 || queued_bytes() >= max_bytes_ / 4 * 3;
}

bool WriteQueue::below_resume() const {
  return queued_events() <= max_events_ / 2 && queued_bytes() <= max_bytes_ / 2;
}

bool WriteQueue::wait_ready(int64_t deadline_ns) {
  std::unique_lock lk(mu_);
  while (queued_subs_ == 0 && !stopping_) {
    if (deadline_ns == INT64_MAX) {
      cv_.wait(lk);
      continue;
    }
    auto wait_ns = deadline_ns - monotonic_ns();
    if (wait_ns <= 0) break;
    cv_.wait_for(lk, std::chrono::nanoseconds(wait_ns));
  }
  return stopping_;
}

WriteQueue::Taken WriteQueue::take(std::deque<Submission>& group) {
  std::lock_guard lk(mu_);
  Taken t;
  t.stopping = stopping_;
  t.urgent = urgent_subs_ > 0;
  if (t.urgent) {
    take_urgent(group);
  } else if (ring_.size() == 1 && shared_left_ == 0) {
    // One uid, and no other lately: everything, as one FIFO would.
    uint32_t uid = ring_.front();
    UidFifo& f = fifos_[uid];
    queued_subs_ -= f.subs.size();
    group.swap(f.subs);
    f.credit = 0;
    ring_.clear();
    emptied(uid);
  } else if (!ring_.empty()) {
    // Several uids, or one a few groups after another had work: bounded rounds, so a
    // client that waits for each ack before its next request (it is off the queue
    // between them) finds at most a bounded group ahead when it comes back.
    if (ring_.size() > 1) shared_left_ = kSharedLingerGroups;
    else --shared_left_;
    take_rounds(group);
  }
  return t;
}

bool WriteQueue::stopping() const {
  std::lock_guard lk(mu_);
  return stopping_;
}

// Deficit round-robin: whole rounds over the ring until the group holds
// kSharedGroupBytes or nothing is left. Each turn credits the uid kQuantumBytes and takes
// from its FIFO while the credit covers the head (a submission larger than the credit
// left is cut between requests). A uid whose FIFO empties leaves the ring and its credit;
// one still waiting goes to the back of the ring with what it did not spend, so a
// request larger than one quantum is taken after a few rounds. O(1) per submission taken
// (plus the cut, which moves the submission's remaining requests once).
void WriteQueue::take_rounds(std::deque<Submission>& group) {
  uint64_t taken = 0;
  while (!ring_.empty() && taken < kSharedGroupBytes) {
    for (size_t turns = ring_.size(); turns > 0; --turns) {
      uint32_t uid = ring_.front();
      ring_.pop_front();
      UidFifo& f = fifos_[uid];
      f.credit += kQuantumBytes;
      while (!f.subs.empty()) {
        uint64_t moved = take_head(f, f.credit, group);
        if (moved == 0) break;
        f.credit -= moved;
        taken += moved;
      }
      if (f.subs.empty()) {
        f.credit = 0;
        emptied(uid);
      } else {
        ring_.push_back(uid);
      }
    }
  }
}

// Only while nothing urgent is queued (take_urgent goes first), so the head is never
// urgent and f.urgent stays as it is.
uint64_t WriteQueue::take_head(UidFifo& f, uint64_t credit, std::deque<Submission>& group) {
  Submission& head = f.subs.front();
  if (head.bytes <= credit) {
    uint64_t bytes = head.bytes;
    group.push_back(std::move(head));
    f.subs.pop_front();
    --queued_subs_;
    return bytes;
  }
  // Cut: the requests the credit covers go now, the rest stays at the FIFO's head.
  size_t n = 0;
  uint64_t bytes = 0;
  while (n < head.reqs.size() && bytes + head.reqs[n].cost() <= credit) bytes += head.reqs[n++].cost();
  if (n == 0) return 0;
  Submission part{head.session, head.uid, false, bytes, {}};
  part.reqs.reserve(n);
  std::move(head.reqs.begin(), head.reqs.begin() + static_cast<long>(n), std::back_inserter(part.reqs));
  head.reqs.erase(head.reqs.begin(), head.reqs.begin() + static_cast<long>(n));
  head.bytes -= bytes;
  group.push_back(std::move(part));
  return bytes;
}

// Takes, in each FIFO's order, every submission of every session with an urgent one, up
// to that session's last urgent one. Each session's submissions stay in its order (its
// FIFO is in push order); everything else stays queued.
void WriteQueue::take_urgent(std::deque<Submission>& group) {
  std::vector<std::pair<Session*, size_t>> last;  // session -> index of its last urgent one
  for (uint32_t uid : ring_) {
    UidFifo& f = fifos_[uid];
    if (f.urgent == 0) continue;
    auto& q = f.subs;
    last.clear();
    for (size_t i = 0; i < q.size(); ++i) {
      if (!q[i].urgent) continue;
      auto it = std::find_if(last.begin(), last.end(), [&](auto& p) { return p.first == q[i].session; });
      if (it == last.end()) last.emplace_back(q[i].session, i);
      else it->second = i;
    }
    std::deque<Submission> rest;
    for (size_t i = 0; i < q.size(); ++i) {
      auto it = std::find_if(last.begin(), last.end(), [&](auto& p) { return p.first == q[i].session; });
      if (it != last.end() && i <= it->second) {
        group.push_back(std::move(q[i]));
        --queued_subs_;
      } else {
        rest.push_back(std::move(q[i]));
      }
    }
    q.swap(rest);
    f.urgent = 0;
    if (q.empty()) f.credit = 0;
  }
  std::erase_if(ring_, [&](uint32_t uid) {
    if (!fifos_[uid].subs.empty()) return false;
    emptied(uid);
    return true;
  });
  urgent_subs_ = 0;
  urgent_pending_.store(false, std::memory_order_relaxed);
}

void WriteQueue::put_back(std::deque<Submission>& group, size_t from) {
  std::lock_guard lk(mu_);
  if (from < group.size()) {
    // The writer took requests off its front; the round-robin needs the rest's cost.
    Submission& first = group[from];
    first.bytes = 0;
    for (const auto& r : first.reqs) first.bytes += r.cost();
  }
  // Back to the front of the ring too: this work was taken before anything queued now.
  std::vector<uint32_t> back_on_ring;
  for (size_t k = group.size(); k-- > from;) {
    Submission& sub = group[k];
    UidFifo& f = fifo(sub.uid);
    if (f.subs.empty() && std::find(back_on_ring.begin(), back_on_ring.end(), sub.uid) == back_on_ring.end())
      back_on_ring.push_back(sub.uid);
    if (sub.urgent) {
      ++f.urgent;
      ++urgent_subs_;
      urgent_pending_.store(true, std::memory_order_release);
    }
    f.subs.push_front(std::move(sub));
    ++queued_subs_;
  }
  // A uid already on the ring keeps its place; the others go first, in group order.
  for (uint32_t uid : back_on_ring)
    if (std::find(ring_.begin(), ring_.end(), uid) == ring_.end()) ring_.push_front(uid);
  group.resize(from);
}

bool WriteQueue::empty() const {
  std::lock_guard lk(mu_);
  return queued_subs_ == 0;
}

void WriteQueue::request_stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
}

std::deque<Submission> WriteQueue::take_all() {
  std::deque<Submission> left;
  {
    std::lock_guard lk(mu_);
    for (uint32_t uid : ring_)
      for (auto& sub : fifos_[uid].subs) left.push_back(std::move(sub));
    fifos_.clear();
    ring_.clear();
    queued_subs_ = urgent_subs_ = 0;
    urgent_pending_.store(false, std::memory_order_relaxed);
  }
  queued_events_ = 0;
  queued_bytes_ = 0;
  return left;
}

}  // namespace cairn::daemon
