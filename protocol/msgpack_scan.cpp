// msgpack_scan.cpp — a structural walk over untrusted msgpack bytes, before msgpack-c.
//
// msgpack-c allocates an array's or map's element storage from the header count before
// it has seen the elements, so 5 bytes claiming 2^32 entries would make it ask for
// ~100 GB. This walk allocates nothing and refuses any count that the remaining bytes
// could not possibly hold (every element takes at least one byte).
#include <string>

#include "message.hpp"

namespace cairn::proto {
namespace {

struct Scanner {
  const uint8_t* p;
  size_t n;
  size_t i = 0;
  uint32_t max_depth;
  std::string error;

  bool need(size_t k) {
    if (n - i < k) {
      error = "truncated msgpack at byte " + std::to_string(i);
      return false;
    }
    return true;
  }
  uint64_t be(size_t k) {
    uint64_t v = 0;
    for (size_t j = 0; j < k; ++j) v = (v << 8) | p[i + j];
    i += k;
    return v;
  }
  bool skip(uint64_t k) {
    if (!need(k)) return false;
    i += k;
    return true;
  }
  bool length_prefixed(size_t width, uint64_t extra) {
    if (!need(width)) return false;
    uint64_t len = be(width);
    return skip(len + extra);
  }
  bool container(uint64_t objects, uint32_t depth) {
    if (depth > max_depth) {
      error = "msgpack nested deeper than " + std::to_string(max_depth);
      return false;
    }
    if (objects > n - i) {
      error = "msgpack container at byte " + std::to_string(i) + " claims " +
              std::to_string(objects) + " objects in " + std::to_string(n - i) + " bytes";
      return false;
    }
    for (uint64_t k = 0; k < objects; ++k)
      if (!object(depth)) return false;
    return true;
  }
  bool object(uint32_t depth) {
    if (!need(1)) return false;
    uint8_t t = p[i++];
    if (t <= 0x7f || t >= 0xe0) return true;                      // fixint
    if (t <= 0x8f) return container(2ull * (t & 0x0f), depth + 1);  // fixmap
    if (t <= 0x9f) return container(t & 0x0f, depth + 1);         // fixarray
    if (t <= 0xbf) return skip(t & 0x1f);                         // fixstr
    switch (t) {
      case 0xc0: case 0xc2: case 0xc3: return true;
      case 0xc1:
        error = "reserved msgpack byte 0xc1 at byte " + std::to_string(i - 1);
        return false;
      case 0xc4: return length_prefixed(1, 0);
      case 0xc5: return length_prefixed(2, 0);
      case 0xc6: return length_prefixed(4, 0);
      case 0xc7: return length_prefixed(1, 1);
      case 0xc8: return length_prefixed(2, 1);
      case 0xc9: return length_prefixed(4, 1);
      case 0xca: return skip(4);
      case 0xcb: return skip(8);
      case 0xcc: case 0xd0: return skip(1);
      case 0xcd: case 0xd1: return skip(2);
      case 0xce: case 0xd2: return skip(4);
      case 0xcf: case 0xd3: return skip(8);
      case 0xd4: return skip(2);
      case 0xd5: return skip(3);
      case 0xd6: return skip(5);
      case 0xd7: return skip(9);
      case 0xd8: return skip(17);
      case 0xd9: return length_prefixed(1, 0);
      case 0xda: return length_prefixed(2, 0);
      case 0xdb: return length_prefixed(4, 0);
      case 0xdc: if (!need(2)) return false; return container(be(2), depth + 1);
      case 0xdd: if (!need(4)) return false; return container(be(4), depth + 1);
      case 0xde: if (!need(2)) return false; return container(2 * be(2), depth + 1);
      case 0xdf: if (!need(4)) return false; return container(2 * be(4), depth + 1);
      default: break;
    }
    error = "unknown msgpack byte";
    return false;
  }
};

}  // namespace

namespace {

// Reads a non-negative integer in any msgpack encoding, as msgpack-c's decoder (and so
// reply_from/ack_from) does: positive fixint, uint 8..64, and int 8..64 holding a value
// >= 0. A negative value, or anything else, is not a uint. The two readers must agree:
// an ack read here with a different seq than the full decoder would see is a wrong ack.
bool read_uint(std::span<const uint8_t> v, uint64_t& out) {
  if (v.empty()) return false;
  uint8_t t = v[0];
  auto be = [&](size_t k) {
    uint64_t x = 0;
    for (size_t j = 1; j <= k; ++j) x = (x << 8) | v[j];
    return x;
  };
  size_t width = 0;
  bool is_signed = false;
  if (t <= 0x7f) {
    out = t;
    return true;
  }
  switch (t) {
    case 0xcc: width = 1; break;
    case 0xcd: width = 2; break;
    case 0xce: width = 4; break;
    case 0xcf: width = 8; break;
    case 0xd0: width = 1; is_signed = true; break;
    case 0xd1: width = 2; is_signed = true; break;
    case 0xd2: width = 4; is_signed = true; break;
    case 0xd3: width = 8; is_signed = true; break;
    default: return false;  // negative fixint, floats, strings ...
  }
  if (v.size() < 1 + width) return false;
  if (is_signed && (v[1] & 0x80) != 0) return false;  // a negative intN
  out = be(width);
  return true;
}

// The key at `at` if it is a string (fixstr or str 8/16/32), else empty. The scanner has
// already checked that the whole object lies within `bytes`.
std::string_view key_at(std::span<const uint8_t> bytes, size_t at) {
  uint8_t t = bytes[at];
  size_t hdr = 0, len = 0;
  if (t >= 0xa0 && t <= 0xbf) {
    hdr = 1;
    len = t & 0x1f;
  } else if (t == 0xd9) {
    hdr = 2;
    len = bytes[at + 1];
  } else if (t == 0xda) {
    hdr = 3;
    len = (size_t{bytes[at + 1]} << 8) | bytes[at + 2];
  } else if (t == 0xdb) {
    hdr = 5;
    len = (size_t{bytes[at + 1]} << 24) | (size_t{bytes[at + 2]} << 16) |
          (size_t{bytes[at + 3]} << 8) | bytes[at + 4];
  } else {
    return {};
  }
  return {reinterpret_cast<const char*>(bytes.data()) + at + hdr, len};
}

}  // namespace

std::optional<ReplyHead> reply_peek(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return std::nullopt;
  Scanner s{bytes.data(), bytes.size(), 0, 64, {}};
  uint8_t t = bytes[0];
  uint64_t n;
  if (t >= 0x80 && t <= 0x8f) {
    n = t & 0x0f;
    s.i = 1;
  } else if (t == 0xde && bytes.size() >= 3) {
    s.i = 1;
    n = s.be(2);
  } else if (t == 0xdf && bytes.size() >= 5) {
    s.i = 1;
    n = s.be(4);
  } else {
    return std::nullopt;
  }
  ReplyHead head;
  bool have_id = false, have_ok = false, have_durable = false, have_duplicate = false;
  for (uint64_t k = 0; k < n; ++k) {
    size_t key_at_i = s.i;
    if (!s.object(1)) return std::nullopt;
    std::string_view key = key_at(bytes, key_at_i);
    size_t val_at = s.i;
    if (!s.object(1)) return std::nullopt;
    auto val = bytes.subspan(val_at, s.i - val_at);
    bool is_bool = val[0] == 0xc2 || val[0] == 0xc3;
    bool b = val[0] == 0xc3;
    // A key this reader acts on may appear once, with a value of its type: anything
    // else is not a reply (where the full decoder would take the first of two keys, or
    // ignore a mistyped one, this reader refuses instead of guessing).
    if (key == "id") {
      if (have_id || !read_uint(val, head.id)) return std::nullopt;
      have_id = true;
    } else if (key == "seq") {
      if (head.has_seq || !read_uint(val, head.seq)) return std::nullopt;
      head.has_seq = true;
    } else if (key == "ok") {
      if (have_ok || !is_bool) return std::nullopt;
      have_ok = true;
      head.ok = b;
    } else if (key == "durable") {
      if (have_durable || !is_bool) return std::nullopt;
      have_durable = true;
      head.durable = b;
    } else if (key == "duplicate") {
      if (have_duplicate || !is_bool) return std::nullopt;
      have_duplicate = true;
      head.duplicate = b;
    }
  }
  if (!have_id || !have_ok || s.i != bytes.size()) return std::nullopt;
  return head;
}

std::optional<std::string> msgpack_prescan(std::span<const uint8_t> bytes, uint32_t max_depth) {
  if (bytes.empty()) return std::string("empty payload");
  Scanner s{bytes.data(), bytes.size(), 0, max_depth, {}};
  if (!s.object(0)) return s.error;
  if (s.i != bytes.size())
    return "trailing bytes after the msgpack object (" + std::to_string(bytes.size() - s.i) +
           " bytes)";
  return std::nullopt;
}

}  // namespace cairn::proto
