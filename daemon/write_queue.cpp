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
  Submission sub{reqs.front().session, urgent, {}};
  sub.reqs.reserve(reqs.size());
  std::move(reqs.begin(), reqs.end(), std::back_inserter(sub.reqs));
  reqs.clear();
  bool was_empty;
  {
    std::lock_guard lk(mu_);
    was_empty = queue_.empty();
    queue_.push_back(std::move(sub));
    if (urgent) urgent_pending_.store(true, std::memory_order_release);
  }
  // A non-empty queue means the writer has been woken already and not yet taken it.
  if (was_empty && wake) cv_.notify_one();
}

void WriteQueue::wake() { cv_.notify_one(); }

bool WriteQueue::over_limit() const {
  return queued_events() >= max_events_ || queued_bytes() >= max_bytes_;
}

bool WriteQueue::below_resume() const {
  return queued_events() <= max_events_ / 2 && queued_bytes() <= max_bytes_ / 2;
}

bool WriteQueue::wait_ready(int64_t deadline_ns) {
  std::unique_lock lk(mu_);
  while (queue_.empty() && !stopping_) {
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
  t.urgent = urgent_pending_.load(std::memory_order_relaxed);  // written under mu_
  if (t.urgent) take_urgent(group);
  else group.swap(queue_);
  return t;
}

bool WriteQueue::stopping() const {
  std::lock_guard lk(mu_);
  return stopping_;
}

// Takes, in queue order, every submission of every session with an urgent one, up to
// that session's last urgent one. Each session's submissions stay in its order (the
// queue is in push order); everything else stays queued.
void WriteQueue::take_urgent(std::deque<Submission>& group) {
  std::vector<std::pair<Session*, size_t>> last;  // session -> index of its last urgent one
  for (size_t i = 0; i < queue_.size(); ++i) {
    if (!queue_[i].urgent) continue;
    auto it = std::find_if(last.begin(), last.end(), [&](auto& p) { return p.first == queue_[i].session; });
    if (it == last.end()) last.emplace_back(queue_[i].session, i);
    else it->second = i;
  }
  std::deque<Submission> rest;
  for (size_t i = 0; i < queue_.size(); ++i) {
    auto it = std::find_if(last.begin(), last.end(), [&](auto& p) { return p.first == queue_[i].session; });
    (it != last.end() && i <= it->second ? group : rest).push_back(std::move(queue_[i]));
  }
  queue_.swap(rest);
  urgent_pending_.store(false, std::memory_order_relaxed);
}

void WriteQueue::put_back(std::deque<Submission>& group, size_t from) {
  std::lock_guard lk(mu_);
  for (size_t k = group.size(); k-- > from;) queue_.push_front(std::move(group[k]));
  group.resize(from);
}

bool WriteQueue::empty() const {
  std::lock_guard lk(mu_);
  return queue_.empty();
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
    left.swap(queue_);
    urgent_pending_.store(false, std::memory_order_relaxed);
  }
  queued_events_ = 0;
  queued_bytes_ = 0;
  return left;
}

}  // namespace cairn::daemon
