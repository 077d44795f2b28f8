// clock.hpp — the two clocks cairnd reads: monotonic for deadlines and latencies,
// realtime for the `received` stamp of records.
#pragma once

#include <cstdint>
#include <ctime>

namespace cairn::daemon {

inline int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace cairn::daemon
