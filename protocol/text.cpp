// text.cpp — the text rules every string in an event must obey (PROTOCOL.md §3).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "event.hpp"

namespace cairn::proto {
namespace {

Violation violation(const char* rule, std::string message) {
  return Violation{{}, rule, std::move(message)};
}

std::string hex_cp(uint32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", cp);
  return buf;
}

// True if any of the 8 bytes in `w` is not printable ASCII (0x20..0x7e): a high bit,
// a C0 control, or DEL. The classic "has a byte less than n" / "has a zero byte" tests
// (Hacker's Delight; Anderson's bit hacks) are exact as booleans, though a borrow can
// flag the wrong byte, so the caller re-reads the word byte by byte when this is true.
inline bool word_needs_a_look(uint64_t w) {
  constexpr uint64_t k01 = 0x0101010101010101ull;
  constexpr uint64_t k80 = 0x8080808080808080ull;
  uint64_t high = w & k80;
  uint64_t below_space = (w - k01 * 0x20) & ~w & k80;
  uint64_t x = w ^ (k01 * 0x7f);
  uint64_t del = (x - k01) & ~x & k80;
  return (high | below_space | del) != 0;
}

}  // namespace

std::string text_for_display(std::string_view s, size_t max_shown) {
  if (s.size() <= max_shown && !check_text(s, static_cast<uint32_t>(max_shown), false))
    return std::string(s);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < s.size() && i < max_shown; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (s.size() > max_shown) out += "...";
  return out;
}

std::optional<Violation> check_text(std::string_view s, uint32_t max_bytes, bool allow_newlines) {
  if (s.size() > max_bytes)
    return violation("too_long", std::to_string(s.size()) + " bytes, over the limit of " +
                                     std::to_string(max_bytes));
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // Most text is printable ASCII: skip it a word at a time.
    if (n - i >= 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      if (!word_needs_a_look(w)) {
        i += 8;
        continue;
      }
    }
    unsigned char c = p[i];
    if (c < 0x80) {
      // ASCII fast path: only controls need a look.
      if (c < 0x20 || c == 0x7f) {
        bool ok = c == '\t' || (allow_newlines && (c == '\n' || c == '\r'));
        if (!ok)
          return violation("control_char", "control character " + hex_cp(c) + " at byte " +
                                               std::to_string(i) + " is not allowed");
      }
      ++i;
      continue;
    }
    uint32_t cp;
    size_t len;
    if (c >= 0xc2 && c <= 0xdf) {
      cp = c & 0x1f;
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      cp = c & 0x0f;
      len = 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      cp = c & 0x07;
      len = 4;
    } else {
      return violation("utf8", "invalid UTF-8 lead byte at byte " + std::to_string(i));
    }
    if (i + len > n) return violation("utf8", "truncated UTF-8 sequence at byte " + std::to_string(i));
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = p[i + k];
      if ((cc & 0xc0) != 0x80)
        return violation("utf8", "invalid UTF-8 continuation at byte " + std::to_string(i + k));
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
      return violation("utf8", "overlong or out-of-range UTF-8 at byte " + std::to_string(i));
    if (cp >= 0xd800 && cp <= 0xdfff)
      return violation("utf8", "UTF-16 surrogate encoded in UTF-8 at byte " + std::to_string(i));
    if (cp >= 0x80 && cp <= 0x9f)
      return violation("control_char", "control character " + hex_cp(cp) + " at byte " +
                                            std::to_string(i) + " is not allowed");
    if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
      return violation("bidi", "bidirectional control " + hex_cp(cp) + " at byte " +
                                   std::to_string(i) + " is not allowed");
    if (cp == 0xfeff)
      return violation("bom", "byte order mark U+FEFF at byte " + std::to_string(i) +
                                  " is not allowed");
    i += len;
  }
  return std::nullopt;
}

}  // namespace cairn::proto
