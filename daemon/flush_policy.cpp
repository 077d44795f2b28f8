#include "flush_policy.hpp"

namespace cairn::daemon {

FlushPolicy::FlushPolicy(const Config& config)
    : mode_(config.flush_mode),
      batch_size_(config.batch_size),
      interval_ms_(config.batch_interval_ms),
      critical_(config.critical_types.begin(), config.critical_types.end()) {}

bool FlushPolicy::is_critical(const proto::Event& event) const {
  constexpr uint8_t kCrit = 2;  // syslog: 0 emerg, 1 alert, 2 crit
  return event.sync || event.severity <= kCrit || critical_.contains(event.type);
}

bool FlushPolicy::must_commit(uint64_t open, bool durable_waiter, int64_t oldest_ns,
                              int64_t now_ns) const {
  if (open == 0 && !durable_waiter) return false;
  if (durable_waiter || mode_ == FlushMode::immediate) return true;
  return open >= batch_size_ || now_ns >= commit_deadline(oldest_ns);
}

}  // namespace cairn::daemon
