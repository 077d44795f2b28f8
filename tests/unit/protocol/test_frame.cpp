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

// ---- more boundaries ----

Test(frame, length_equal_to_max_frame_is_accepted) {
  std::string f;
  frame_append(f, bytes(std::string(1000, 'x')));
  auto v = frame_next(bytes(f), 1000);
  cr_assert_eq(v.status, FrameStatus::complete);
  cr_assert_eq(v.payload.size(), 1000u);
  cr_assert_eq(frame_next(bytes(f), 999).status, FrameStatus::too_large);
}

Test(frame, largest_length_is_too_large_not_an_overflow) {
  std::string hdr("\xff\xff\xff\xff", 4);
  auto v = frame_next(bytes(hdr), kMaxFrameCeiling);
  cr_assert_eq(v.status, FrameStatus::too_large);
  cr_assert_eq(v.length, 0xffffffffu);
  cr_assert_eq(v.consumed, 0u);
}

Test(frame, need_more_reports_the_length_once_the_header_is_in) {
  std::string hdr("\x00\x00\x01\x00" "abc", 7);
  auto v = frame_next(bytes(hdr), kDefaultMaxFrame);
  cr_assert_eq(v.status, FrameStatus::need_more);
  cr_assert_eq(v.length, 256u);
  cr_assert_eq(v.consumed, 0u);
  cr_assert_eq(v.payload.size(), 0u);
}

Test(frame, bytes_after_a_frame_are_left_alone) {
  std::string f;
  frame_append(f, bytes("\x80"));
  f += std::string("\x00\x00", 2);  // the start of the next header
  auto v = frame_next(bytes(f), kDefaultMaxFrame);
  cr_assert_eq(v.status, FrameStatus::complete);
  cr_assert_eq(v.consumed, 5u);
}

Test(prescan, accepts_every_encoder_output) {
  std::string all;
  encode_ack(all, 1, 2, true, false);
  encode_error(all, 1, ErrorCode::internal, "x", "f", "r");
  encode_flush_reply(all, 1, 5);
  encode_pong(all, 1);
  encode_hello(all, 1, 1, "c");
  Stats s;
  s.by_type = {{"A", 1}};
  encode_stats_reply(all, 1, s);
  std::span<const uint8_t> rest = bytes(all);
  int n = 0;
  while (!rest.empty()) {
    auto v = frame_next(rest, kMaxFrameCeiling);
    cr_assert_eq(v.status, FrameStatus::complete);
    auto why = msgpack_prescan(v.payload, 8);
    cr_assert_not(why.has_value(), "frame %d: %s", n, why ? why->c_str() : "");
    rest = rest.subspan(v.consumed);
    ++n;
  }
  cr_assert_eq(n, 6);
}

Test(prescan, accepts_every_msgpack_type) {
  std::string all_types(
      "\xdc\x00\x10"                           // array16 of 16:
      "\xc0\xc2\xc3"                           // nil false true
      "\x7f\xe0\xcc\x01\xd3\0\0\0\0\0\0\0\x01"  // ints
      "\xca\0\0\0\0"                           // float32
      "\xd9\x01x"                              // str8
      "\xc4\x02yz"                             // bin8
      "\xd4\x01\x02"                           // fixext1
      "\xc7\x01\x05\x00"                       // ext8 of 1 byte
      "\xdc\x00\x01\x01"                       // array16 of 1
      "\xde\x00\x01\xa1k\x01"                  // map16 of 1
      "\xdb\0\0\0\x01q"                        // str32
      "\xd8\x01" "0123456789abcdef",           // fixext16
      3 + 3 + 13 + 5 + 3 + 4 + 3 + 4 + 4 + 6 + 6 + 18);
  auto why = msgpack_prescan(bytes(all_types), 8);
  cr_assert_not(why.has_value(), "%s", why ? why->c_str() : "");
  auto d = Decoded::parse(bytes(all_types), 8);
  cr_assert_not(d.ok());
  cr_assert_eq(d.error(), "payload is not a map");
}

Test(prescan, refuses_lengths_past_the_end_for_each_sized_type) {
  const std::vector<std::string> bad = {
      std::string("\xd9\x05" "abc", 5),          // str8 of 5, 3 present
      std::string("\xda\xff\xff", 3),            // str16 of 65535, none present
      std::string("\xdb\xff\xff\xff\xff", 5),    // str32 of 4 GB
      std::string("\xc6\xff\xff\xff\xff", 5),    // bin32 of 4 GB
      std::string("\xc4\x01", 2),                // bin8 of 1, none present
      std::string("\xc7\x01\x05", 3),            // ext8 of 1 + type byte: data missing
      std::string("\xc9\xff\xff\xff\xff\x01", 6),  // ext32 of 4 GB
      std::string("\xd8\x01" "0123", 6),          // fixext16 short
      std::string("\xcf\0\0", 3),                // uint64 cut short
      std::string("\xcb\0\0\0", 4),              // float64 cut short
      std::string("\xdc\x00", 2),                // array16 header cut short
      std::string("\xde\xff\xff\x01\x01", 5),    // map16 of 65535 in 2 bytes
      std::string("\x82\xa1k\x01", 4),           // fixmap of 2, one entry present
  };
  for (size_t i = 0; i < bad.size(); ++i) {
    cr_assert(msgpack_prescan(bytes(bad[i]), 8).has_value(), "case %zu accepted", i);
    cr_assert_not(Decoded::parse(bytes(bad[i]), 8).ok(), "case %zu parsed", i);
  }
}

Test(prescan, map_entries_need_two_bytes_each) {
  // A map of 3 with 5 bytes left can hold at most 2 entries: refused from the count.
  std::string m("\x83\x01\x01\x01\x01\x01", 6);
  auto why = msgpack_prescan(bytes(m), 8);
  cr_assert(why.has_value());
  cr_assert(why->find("claims 6 objects in 5 bytes") != std::string::npos, "%s", why->c_str());
}

Test(prescan, refuses_trailing_bytes_after_a_complete_map) {
  auto why = msgpack_prescan(bytes(std::string("\x81\xa1k\x01\xc0", 5)), 8);
  cr_assert(why.has_value());
  cr_assert(why->find("trailing") != std::string::npos, "%s", why->c_str());
}

Test(prescan, refuses_reserved_byte_c1_inside_a_map) {
  auto why = msgpack_prescan(bytes(std::string("\x81\xa1k\xc1", 4)), 8);
  cr_assert(why.has_value());
  cr_assert(why->find("0xc1") != std::string::npos, "%s", why->c_str());
}

Test(prescan, depth_counts_maps_and_the_root) {
  // {"a":{"a":{"a":1}}} is 3 deep.
  std::string three("\x81\xa1" "a\x81\xa1" "a\x81\xa1" "a\x01", 10);
  cr_assert_not(msgpack_prescan(bytes(three), 3).has_value());
  cr_assert(msgpack_prescan(bytes(three), 2).has_value());
  cr_assert_not(msgpack_prescan(bytes(std::string("\x01", 1)), 0).has_value(),
                "a scalar has no depth");
}

Test(prescan, every_truncation_of_a_request_is_refused) {
  std::string f;
  encode_hello(f, 77, 1, "a client name");
  std::string p = f.substr(4);
  for (size_t n = 0; n < p.size(); ++n)
    cr_assert(msgpack_prescan(bytes(p.substr(0, n)), 8).has_value(), "prefix of %zu bytes", n);
  cr_assert_not(msgpack_prescan(bytes(p), 8).has_value());
}

Test(decoded, moved_from_decoded_is_empty_and_safe) {
  std::string m("\x81\xa1k\x01", 4);
  auto d = Decoded::parse(bytes(m), 8);
  cr_assert(d.ok());
  Decoded a = std::move(d.value());
  Decoded b;
  b = std::move(a);
  cr_assert_eq(b.root().type, MSGPACK_OBJECT_MAP);
  cr_assert_eq(map_get(b.root(), "k")->via.u64, 1u);
  cr_assert_null(map_get(a.root(), "k"));  // NOLINT: checking the moved-from state
}
