// utf8.hpp — the UTF-8 the CLI reads (JSON input) and writes (tables, JSON lines).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cairn::cli {

// Decodes the well-formed UTF-8 sequence at the start of `s` (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF). Returns its length, or 0 if there is
// none (including for an empty `s`).
inline size_t utf8_decode(std::string_view s, uint32_t& cp) {
  if (s.empty()) return 0;
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(0);
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (n == 0 || n > s.size()) return 0;
  cp = c & (0x7fu >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (b(k) & 0x3fu);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

// Code points a terminal may act on, or that reorder the text after them: C0 and C1
// controls, DEL, bidi embeddings/overrides/isolates, line/paragraph separators, BOM.
// The daemon refuses most of these; output escapes them anyway, in case the database
// was written by something else.
inline bool unsafe_on_terminal(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029 || cp == 0xfeff;
}

}  // namespace cairn::cli
