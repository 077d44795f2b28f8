// bench_event.hpp — the event cairn-bench sends and the SQLite baselines insert, so that
// both sides of every ratio store the same rows; and what both command lines share.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "../protocol/message.hpp"

namespace cairn::bench {

inline constexpr const char* kType = "DataAccess";
inline constexpr const char* kCriticalType = "AuthFailure";  // in hybrid's default critical set
inline constexpr const char* kActor = "bench-user";
inline constexpr const char* kAction = "read";
inline constexpr const char* kTarget = "/srv/data/object";

// The message length that makes the append frame `frame_bytes` long on the wire, as
// libcairn encodes it (16-byte idempotency key, a request id below 2^32).
inline size_t message_len(size_t frame_bytes) {
  proto::EventView v;
  v.type = kType;
  v.actor = kActor;
  v.action = kAction;
  v.target = kTarget;
  v.outcome = proto::Outcome::success;
  std::string msg(40, 'm');  // long enough for its str8 header
  v.message = std::string_view(msg);
  std::string idem(16, 'k');
  v.idem = idem;
  std::string frame;
  proto::encode_append(frame, 100000, v);
  size_t base = frame.size() - msg.size();
  return frame_bytes > base + 32 ? frame_bytes - base : 32;
}

// "a,b,,c" -> {"a", "b", "c"}: the comma-separated lists of the command lines.
inline std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at <= s.size()) {
    size_t comma = s.find(',', at);
    if (comma == std::string::npos) comma = s.size();
    if (comma > at) out.push_back(s.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

}  // namespace cairn::bench
