#include "frame.hpp"

namespace cairn::proto {

FrameView frame_next(std::span<const uint8_t> buf, uint32_t max_frame) {
  FrameView v;
  if (buf.size() < kFrameHeaderSize) return v;
  uint32_t n = (static_cast<uint32_t>(buf[0]) << 24) | (static_cast<uint32_t>(buf[1]) << 16) |
               (static_cast<uint32_t>(buf[2]) << 8) | static_cast<uint32_t>(buf[3]);
  v.length = n;
  if (n == 0) {
    v.status = FrameStatus::empty;
    return v;
  }
  if (n > max_frame) {
    v.status = FrameStatus::too_large;
    return v;
  }
  if (buf.size() - kFrameHeaderSize < n) return v;  // need_more
  v.status = FrameStatus::complete;
  v.payload = buf.subspan(kFrameHeaderSize, n);
  v.consumed = kFrameHeaderSize + n;
  return v;
}

void frame_put_header(uint8_t out[kFrameHeaderSize], uint32_t length) {
  out[0] = static_cast<uint8_t>(length >> 24);
  out[1] = static_cast<uint8_t>(length >> 16);
  out[2] = static_cast<uint8_t>(length >> 8);
  out[3] = static_cast<uint8_t>(length);
}

void frame_append(std::string& out, std::span<const uint8_t> payload) {
  uint8_t h[kFrameHeaderSize];
  frame_put_header(h, static_cast<uint32_t>(payload.size()));
  out.append(reinterpret_cast<const char*>(h), kFrameHeaderSize);
  out.append(reinterpret_cast<const char*>(payload.data()), payload.size());
}

}  // namespace cairn::proto
