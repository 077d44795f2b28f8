// latency_ring.hpp — the last N commit latencies, for the p50/p99 in stats and STATUS.
//
// Written by the writer thread once per commit, read by the loop for stats: a small
// mutex-guarded ring (1024 entries) is cheaper than anything lock-free here, and the
// figures need percentiles of recent commits, not a lifetime average.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <mutex>
#include <vector>

#include "../protocol/message.hpp"

namespace cairn::daemon {

class LatencyRing {
 public:
  static constexpr size_t kWindow = 1024;

  struct Summary {
    uint64_t p50_us = 0, p99_us = 0, max_us = 0;  // max: since start, not only the window
    // Since start, for a Prometheus histogram: commits per proto::kCommitBucketsUs bucket
    // (the last one: slower than all bounds) and their summed time.
    std::array<uint64_t, proto::kCommitBuckets> hist{};
    uint64_t sum_us = 0;
  };

  LatencyRing() { us_.reserve(kWindow); }

  void record(uint64_t us) {
    auto v = static_cast<uint32_t>(std::min<uint64_t>(us, UINT32_MAX));
    std::lock_guard lk(mu_);
    if (us_.size() < kWindow) {
      us_.push_back(v);
    } else {
      us_[next_] = v;
      next_ = (next_ + 1) % kWindow;
    }
    max_us_ = std::max(max_us_, us);
    size_t b = 0;
    while (b < std::size(proto::kCommitBucketsUs) && us > proto::kCommitBucketsUs[b]) ++b;
    hist_[b] += 1;
    sum_us_ += us;
  }

  Summary summary() const {
    Summary s;
    std::vector<uint32_t> lat;
    {
      std::lock_guard lk(mu_);
      lat = us_;
      s.max_us = max_us_;
      s.hist = hist_;
      s.sum_us = sum_us_;
    }
    if (!lat.empty()) {
      std::sort(lat.begin(), lat.end());
      s.p50_us = lat[lat.size() / 2];
      s.p99_us = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
    }
    return s;
  }

 private:
  mutable std::mutex mu_;
  std::vector<uint32_t> us_;
  size_t next_ = 0;
  uint64_t max_us_ = 0;
  std::array<uint64_t, proto::kCommitBuckets> hist_{};
  uint64_t sum_us_ = 0;
};

}  // namespace cairn::daemon
