// flush_policy.hpp — when does an event's ack wait for fsync, and when does the writer
// commit? Pure decisions, no I/O, so the unit tests can pin every case.
//
// immediate: every append waits for the commit that covers it; the writer commits after
//            each group it takes off the queue (group commit).
// batched:   appends are acked on insert into the open transaction (durable:false); the
//            writer commits when batch_size are open or the oldest is interval old. Only
//            an event with sync:true (or a flush) waits for, and forces, a commit.
// hybrid:    batched, except a critical event waits for a commit that the writer makes
//            at once, covering everything inserted before it. Such events jump the
//            writer's queue (with their own connection's earlier events), so a critical
//            ack does not wait behind thousands of routine events from other clients.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>

#include "../protocol/event.hpp"
#include "config.hpp"

namespace cairn::daemon {

class FlushPolicy {
 public:
  explicit FlushPolicy(const Config& config);

  FlushMode mode() const { return mode_; }

  // Critical: type in the critical set, severity crit (2) or worse, or sync:true.
  bool is_critical(const proto::Event& event) const;

  // Does this append's ack wait for the commit covering it?
  bool waits_for_commit(const proto::Event& event) const {
    switch (mode_) {
      case FlushMode::immediate: return true;
      case FlushMode::batched: return event.sync;
      case FlushMode::hybrid: return is_critical(event);
    }
    return true;
  }
  // Does it force a commit ahead of the batch (and so go to the front of the queue)?
  bool urgent(const proto::Event& event) const {
    return mode_ != FlushMode::immediate && waits_for_commit(event);
  }

  // After inserting a group: must the writer commit now? `open` = appends in the open
  // transaction, `oldest_ns` = monotonic time the oldest of them was inserted.
  bool must_commit(uint64_t open, bool durable_waiter, int64_t oldest_ns, int64_t now_ns) const;

  // Batched/hybrid: the open transaction has reached the batch size; commit before
  // inserting (and acking) more, so a crash never loses more than batch_size acks.
  bool batch_full(uint64_t open) const { return mode_ != FlushMode::immediate && open >= batch_size_; }

  // Monotonic deadline by which the open transaction must be committed even if nothing
  // else arrives (batched/hybrid); only meaningful when open > 0.
  int64_t commit_deadline(int64_t oldest_ns) const {
    return oldest_ns + static_cast<int64_t>(interval_ms_) * 1'000'000;
  }

 private:
  FlushMode mode_;
  uint32_t batch_size_;
  uint32_t interval_ms_;
  std::unordered_set<std::string> critical_;
};

}  // namespace cairn::daemon
