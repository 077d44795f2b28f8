// frame.hpp — length-prefixed framing (PROTOCOL.md §1).
//
// A frame is a 4-byte big-endian length N (1 <= N <= max_frame) followed by exactly N
// bytes holding one MessagePack map. The decoder never buffers past the header of an
// oversize frame: the caller learns "too_large" from the first 4 bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace cairn::proto {

inline constexpr uint32_t kDefaultMaxFrame = 64 * 1024;
inline constexpr uint32_t kMaxFrameCeiling = 16 * 1024 * 1024;  // replies (query pages) too
inline constexpr size_t kFrameHeaderSize = 4;

enum class FrameStatus {
  complete,   // payload holds one whole frame; consumed = 4 + N
  need_more,  // not enough bytes yet; `length` is set once the header is in
  too_large,  // N > max_frame: broken boundary, close the connection
  empty,      // N == 0: broken boundary, close the connection
};

struct FrameView {
  FrameStatus status = FrameStatus::need_more;
  std::span<const uint8_t> payload;  // borrowed from the input buffer
  size_t consumed = 0;               // bytes of the input this frame used
  uint32_t length = 0;               // N from the header, when known
};

// Looks at the start of `buf` for one frame. Never reads past buf.
FrameView frame_next(std::span<const uint8_t> buf, uint32_t max_frame);

// Writes the 4-byte big-endian header for a payload of `length` bytes.
void frame_put_header(uint8_t out[kFrameHeaderSize], uint32_t length);

// Appends a whole frame (header + payload) to `out`.
void frame_append(std::string& out, std::span<const uint8_t> payload);

}  // namespace cairn::proto
