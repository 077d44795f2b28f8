// loss_ledger.hpp — what the writer owes clients after a failed commit.
//
// Batched and hybrid modes ack an event durable:false when it is inserted. If the commit
// that should have covered it fails, the event is gone although the client holds an ack
// with its seq. The ledger keeps the two promises that follow (PROTOCOL.md §5):
//   - no seq is handed out twice: max_handed() is the highest seq any ack has named; the
//     writer fills the file up to it with cairn.lost records before appending again;
//   - no later durable answer covers the loss: a connection that lost durable:false acks
//     gets events_lost (once) on its next flush or durable append.
// Writer thread only, except lost_total() (an atomic read by the stats).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <unordered_set>
#include <vector>

namespace cairn::daemon {

class LossLedger {
 public:
  explicit LossLedger(uint64_t head_seq) : max_handed_(head_seq) {}

  // An ack named `seq` (durable or not).
  void handed(uint64_t seq) { max_handed_ = std::max(max_handed_, seq); }
  uint64_t max_handed() const { return max_handed_; }

  // An event of connection `conn` in the open transaction was acked durable:false.
  void acked_nondurable(uint64_t conn) {
    ++open_nondurable_;
    if (open_conns_.empty() || open_conns_.back() != conn) open_conns_.push_back(conn);
  }
  uint64_t open_nondurable() const { return open_nondurable_; }

  // A flush or durable append from `conn`: true if it must be answered events_lost
  // (and the debt is then paid: only once).
  bool owes_loss(uint64_t conn) { return lost_conns_.erase(conn) != 0; }

  // The open transaction was committed: its durable:false acks are kept.
  void committed() {
    open_nondurable_ = 0;
    open_conns_.clear();
  }

  // The open transaction was lost. `told` are the connections answered storage_failed
  // for a request of their own in it: they have learned of the failure already.
  // Returns how many durable:false acks were lost.
  template <typename Conns>
  uint64_t failed(const Conns& told) {
    uint64_t lost = open_nondurable_;
    lost_total_.fetch_add(lost, std::memory_order_relaxed);
    lost_conns_.insert(open_conns_.begin(), open_conns_.end());
    for (uint64_t c : told) lost_conns_.erase(c);
    committed();
    return lost;
  }

  uint64_t lost_total() const { return lost_total_.load(std::memory_order_relaxed); }

  // Shutdown: a final commit that loses durable:false acks is a failed shutdown.
  void stop_began() {
    if (at_stop_ == UINT64_MAX) at_stop_ = lost_total();
  }
  uint64_t lost_since_stop() const { return at_stop_ == UINT64_MAX ? 0 : lost_total() - at_stop_; }

 private:
  uint64_t max_handed_;
  uint64_t open_nondurable_ = 0;
  std::vector<uint64_t> open_conns_;  // connections with durable:false acks in the open txn
  std::unordered_set<uint64_t> lost_conns_;
  std::atomic<uint64_t> lost_total_{0};
  uint64_t at_stop_ = UINT64_MAX;
};

}  // namespace cairn::daemon
