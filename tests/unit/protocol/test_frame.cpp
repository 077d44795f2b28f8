// Frame codec and msgpack prescan: boundaries, oversize, truncation, hostile counts.
#include <criterion/criterion.h>

#include <string>
#include <vector>

#include "../../../protocol/frame.hpp"
#include "../../../protocol/message.hpp"

using namespace cairn::proto;

namespace {
std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
}  // namespace

Test(frame, round_trip_of_one_frame_consumes_header_and_payload) {
  std::string f;
  std::string payload = "\x81\xa2op\xa4ping";
  frame_append(f, bytes(payload));
  cr_assert_eq(f.size(), 4 + payload.size());
  auto v = frame_next(bytes(f), kDefaultMaxFrame);
  cr_assert_eq(v.status, FrameStatus::complete);
  cr_assert_eq(v.consumed, f.size());
  cr_assert_eq(std::string(reinterpret_cast<const char*>(v.payload.data()), v.payload.size()), payload);
}

Test(frame, header_is_big_endian) {
  uint8_t h[4];
  frame_put_header(h, 0x01020304);
  cr_assert_eq(h[0], 1);
  cr_assert_eq(h[1], 2);
  cr_assert_eq(h[2], 3);
  cr_assert_eq(h[3], 4);
}

Test(frame, partial_header_and_partial_payload_need_more) {
  std::string f;
  frame_append(f, bytes(std::string(100, 'x')));
  for (size_t n = 0; n < f.size(); ++n) {
    auto v = frame_next(bytes(f.substr(0, n)), kDefaultMaxFrame);
    cr_assert_eq(v.status, FrameStatus::need_more, "prefix of %zu bytes", n);
    if (n >= 4) cr_assert_eq(v.length, 100u);
  }
}

Test(frame, two_frames_back_to_back_are_split_exactly) {
  std::string f;
  frame_append(f, bytes("\x80"));
  frame_append(f, bytes("\x81\xa1k\x01"));
  auto a = frame_next(bytes(f), kDefaultMaxFrame);
  cr_assert_eq(a.status, FrameStatus::complete);
  cr_assert_eq(a.consumed, 5u);
  auto b = frame_next(bytes(f).subspan(a.consumed), kDefaultMaxFrame);
  cr_assert_eq(b.status, FrameStatus::complete);
  cr_assert_eq(b.payload.size(), 4u);
}

Test(frame, oversize_length_is_refused_from_the_header_alone) {
  std::string hdr("\x00\x01\x00\x01", 4);  // 65537, nothing after it
  auto v = frame_next(bytes(hdr), 65536);
  cr_assert_eq(v.status, FrameStatus::too_large);
  cr_assert_eq(v.length, 65537u);
  std::string exact("\x00\x01\x00\x00", 4);
  cr_assert_eq(frame_next(bytes(exact), 65536).status, FrameStatus::need_more);
}

Test(frame, zero_length_breaks_the_boundary) {
  std::string hdr("\x00\x00\x00\x00", 4);
  cr_assert_eq(frame_next(bytes(hdr), 65536).status, FrameStatus::empty);
}

Test(prescan, accepts_a_normal_request_map) {
  std::string f;
  encode_simple(f, 7, Op::ping);
  cr_assert_not(msgpack_prescan(bytes(f.substr(4)), 8).has_value());
}

Test(prescan, refuses_array_claiming_more_elements_than_bytes) {
  std::string evil("\xdd\xff\xff\xff\xff\x01", 6);  // array32 of 4 billion, 1 byte left
  auto why = msgpack_prescan(bytes(evil), 8);
  cr_assert(why.has_value());
  cr_assert(why->find("claims") != std::string::npos, "%s", why->c_str());
  auto d = Decoded::parse(bytes(evil), 8);
  cr_assert_not(d.ok(), "must be refused before msgpack-c allocates");
}

Test(prescan, refuses_map_claiming_more_entries_than_bytes) {
  std::string evil("\xdf\x7f\xff\xff\xff", 5);
  cr_assert(msgpack_prescan(bytes(evil), 8).has_value());
}

Test(prescan, refuses_truncated_string_and_trailing_bytes) {
  cr_assert(msgpack_prescan(bytes(std::string("\xa5hi", 3)), 8).has_value());
  cr_assert(msgpack_prescan(bytes(std::string("\x80\x80", 2)), 8).has_value());
  cr_assert(msgpack_prescan(bytes(std::string("\xc1", 1)), 8).has_value());
  cr_assert(msgpack_prescan(bytes(std::string()), 8).has_value());
}

Test(prescan, refuses_nesting_deeper_than_the_limit) {
  std::string deep(9, '\x91');  // 9 nested one-element arrays
  deep += '\x01';
  cr_assert(msgpack_prescan(bytes(deep), 8).has_value());
  std::string ok(8, '\x91');
  ok += '\x01';
  cr_assert_not(msgpack_prescan(bytes(ok), 8).has_value());
}

Test(decoded, parse_requires_a_map) {
  cr_assert_not(Decoded::parse(bytes(std::string("\x93\x01\x02\x03", 4)), 8).ok());
  auto d = Decoded::parse(bytes(std::string("\x81\xa1k\x01", 4)), 8);
  cr_assert(d.ok());
  cr_assert_eq(d.value().root().type, MSGPACK_OBJECT_MAP);
}
