// The text rules (check_text) on their own: strict UTF-8, controls, bidi, BOM, length;
// and the word-at-a-time ASCII path agreeing with a plain byte-by-byte reference.
#include <criterion/criterion.h>

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "../../../protocol/event.hpp"

using namespace cairn::proto;

namespace {

// The rule check_text reports for `s`, or "" when it accepts it.
std::string rule_of(const std::string& s, uint32_t max = 1024, bool newlines = false) {
  auto v = check_text(s, max, newlines);
  return v ? v->rule : std::string();
}

void expect_rule(const std::string& s, const char* rule, bool newlines = false) {
  auto v = check_text(s, 1024, newlines);
  cr_assert(v.has_value(), "expected rule %s, but the text was accepted", rule);
  cr_assert_eq(v->rule, rule, "got rule %s (%s)", v->rule.c_str(), v->message.c_str());
  cr_assert(v->field.empty(), "check_text leaves the field to its caller");
}

// A deliberately simple decoder: the specification of the rules, one code point at a
// time, with no fast path.
std::string reference_rule(const std::string& s, bool newlines) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    uint32_t cp;
    size_t len;
    unsigned char c = p[i];
    if (c < 0x80) { cp = c; len = 1; }
    else if (c >= 0xc2 && c <= 0xdf) { cp = c & 0x1f; len = 2; }
    else if (c >= 0xe0 && c <= 0xef) { cp = c & 0x0f; len = 3; }
    else if (c >= 0xf0 && c <= 0xf4) { cp = c & 0x07; len = 4; }
    else return "utf8";
    if (i + len > n) return "utf8";
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return "utf8";
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff) return "utf8";
    if (cp >= 0xd800 && cp <= 0xdfff) return "utf8";
    bool newline = cp == '\n' || cp == '\r';
    if ((cp < 0x20 && cp != '\t' && !(newlines && newline)) || (cp >= 0x7f && cp <= 0x9f))
      return "control_char";
    if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) return "bidi";
    if (cp == 0xfeff) return "bom";
    i += len;
  }
  return "";
}

}  // namespace

Test(text, plain_ascii_and_tab_are_accepted) {
  cr_assert_eq(rule_of(""), "");
  cr_assert_eq(rule_of("alice@example.org"), "");
  cr_assert_eq(rule_of("col1\tcol2\t"), "");
  cr_assert_eq(rule_of(std::string(1000, 'x')), "");
}

Test(text, valid_multibyte_utf8_is_accepted) {
  cr_assert_eq(rule_of("z\xc3\xbcrich"), "");                  // U+00FC, 2 bytes
  cr_assert_eq(rule_of("\xc2\xa0"), "");                       // U+00A0, first after C1
  cr_assert_eq(rule_of("\xe6\x97\xa5\xe6\x9c\xac"), "");       // CJK, 3 bytes
  cr_assert_eq(rule_of("\xef\xbf\xbf"), "");                   // U+FFFF
  cr_assert_eq(rule_of("\xf0\x9f\x94\x92"), "");               // U+1F512, 4 bytes
  cr_assert_eq(rule_of("\xf4\x8f\xbf\xbf"), "");               // U+10FFFF, the last one
  cr_assert_eq(rule_of("\xe2\x80\xa9\xe2\x81\xa5"), "");       // U+2029, U+2065: neighbours
}

Test(text, overlong_encodings_are_utf8_errors) {
  expect_rule("\xc0\xaf", "utf8");              // '/' in 2 bytes
  expect_rule("\xc1\xbf", "utf8");
  expect_rule("\xe0\x80\xaf", "utf8");          // '/' in 3 bytes
  expect_rule("\xe0\x9f\xbf", "utf8");          // U+07FF in 3 bytes
  expect_rule("\xf0\x80\x80\xaf", "utf8");      // '/' in 4 bytes
  expect_rule("\xf0\x8f\xbf\xbf", "utf8");      // U+FFFF in 4 bytes
}

Test(text, surrogates_are_utf8_errors) {
  expect_rule("\xed\xa0\x80", "utf8");  // U+D800
  expect_rule("\xed\xbf\xbf", "utf8");  // U+DFFF
  cr_assert_eq(rule_of("\xed\x9f\xbf"), "");  // U+D7FF is fine
}

Test(text, code_points_above_10ffff_are_utf8_errors) {
  expect_rule("\xf4\x90\x80\x80", "utf8");  // U+110000
  expect_rule("\xf5\x80\x80\x80", "utf8");
  expect_rule("\xff", "utf8");
  expect_rule("\xfe", "utf8");
}

Test(text, truncated_and_stray_bytes_are_utf8_errors) {
  expect_rule("\xc3", "utf8");
  expect_rule("ab\xe2\x82", "utf8");
  expect_rule("\xf0\x9f\x94", "utf8");
  expect_rule("\x80", "utf8");               // a lone continuation byte
  expect_rule("a\xc3\x28", "utf8");          // lead followed by ASCII
  expect_rule("\xe2\x28\xa1", "utf8");
}

Test(text, c0_controls_del_and_c1_are_control_chars) {
  expect_rule(std::string("\0", 1), "control_char");
  expect_rule("\x01", "control_char");
  expect_rule("\x1b[2J", "control_char");
  expect_rule("a\x1f", "control_char");
  expect_rule("a\x7f", "control_char");
  expect_rule("\xc2\x80", "control_char");   // U+0080
  expect_rule("\xc2\x85", "control_char");   // U+0085 NEL
  expect_rule("\xc2\x9b", "control_char");   // U+009B CSI
  expect_rule("\xc2\x9f", "control_char");
}

Test(text, newlines_only_when_allowed) {
  expect_rule("a\nb", "control_char");
  expect_rule("a\rb", "control_char");
  cr_assert_eq(rule_of("a\r\nb\n", 1024, true), "");
  expect_rule("a\n\x0b", "control_char", true);  // vertical tab is never allowed
}

Test(text, bidi_overrides_and_isolates_are_bidi) {
  for (const char* s : {"\xe2\x80\xaa", "\xe2\x80\xab", "\xe2\x80\xac", "\xe2\x80\xad",
                        "\xe2\x80\xae", "\xe2\x81\xa6", "\xe2\x81\xa7", "\xe2\x81\xa8",
                        "\xe2\x81\xa9"})
    expect_rule(std::string("invoice") + s + "fdp.exe", "bidi");
}

Test(text, byte_order_mark_is_bom_anywhere) {
  expect_rule("\xef\xbb\xbf", "bom");
  expect_rule("\xef\xbb\xbfx", "bom");
  expect_rule("0123456789\xef\xbb\xbf", "bom");
}

Test(text, length_is_counted_in_bytes) {
  cr_assert_eq(rule_of(std::string(16, 'a'), 16), "");
  cr_assert_eq(rule_of(std::string(17, 'a'), 16), "too_long");
  cr_assert_eq(rule_of("\xc3\xbc\xc3\xbc\xc3\xbc", 5), "too_long");  // 3 chars, 6 bytes
}

Test(text, message_names_the_code_point_and_byte_offset) {
  auto v = check_text("abc\x1b", 1024, false);
  cr_assert(v.has_value());
  cr_assert_eq(v->message, "control character U+001B at byte 3 is not allowed");
  v = check_text("0123456789\xe2\x80\xae", 1024, false);
  cr_assert(v.has_value());
  cr_assert_eq(v->message, "bidirectional control U+202E at byte 10 is not allowed");
}

// The fast path reads 8 bytes at a time: put every interesting byte at every offset
// around a word boundary and compare with the reference.
Test(text, fast_path_finds_a_bad_byte_at_every_offset) {
  const std::vector<std::string> needles = {
      std::string("\0", 1), "\x01", "\x1f", "\x7f", "\x80", "\xc2\x85", "\xe2\x80\xae",
      "\xef\xbb\xbf", "\xc3", "\t", "\n", "~", " ", "\xc3\xbc", "\xf0\x9f\x94\x92"};
  for (const auto& needle : needles)
    for (size_t before = 0; before < 20; ++before)
      for (size_t after : {0, 1, 7, 8, 9}) {
        std::string s = std::string(before, 'a') + needle + std::string(after, 'b');
        for (bool nl : {false, true})
          cr_assert_eq(rule_of(s, 1024, nl), reference_rule(s, nl),
                       "needle %02x at offset %zu (+%zu after), newlines %d: got '%s', want '%s'",
                       static_cast<unsigned char>(needle[0]), before, after, nl,
                       rule_of(s, 1024, nl).c_str(), reference_rule(s, nl).c_str());
      }
}

Test(text, agrees_with_the_reference_on_random_strings) {
  // Strings built from pieces that stress the decoder: ASCII runs, valid sequences,
  // boundary code points, and broken or forbidden sequences. Fixed seed: reproducible.
  const std::vector<std::string> pieces = {
      "hello world ", "a", "\t", "\n", "\r", "\x1b", "\x7f", "~", "\xc2\xa0", "\xc2\x9f",
      "\xc3\xbc", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xed\xa0\x80", "\xef\xbf\xbf",
      "\xef\xbb\xbf", "\xe2\x80\xae", "\xe2\x81\xa9", "\xe2\x80\xa9", "\xf0\x90\x80\x80",
      "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xc0\x80", "\xe0\x80\x80", "\x80", "\xbf",
      "\xc3", "\xe2\x82", "\xf8\x88\x80\x80\x80", "\xff", "0123456789abcdef"};
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<size_t> pick(0, pieces.size() - 1);
  std::uniform_int_distribution<int> len(0, 12);
  std::uniform_int_distribution<int> coin(0, 9);
  for (int round = 0; round < 20000; ++round) {
    std::string s;
    int k = len(rng);
    for (int j = 0; j < k; ++j) {
      // Mostly clean pieces, so that long strings reach their one bad spot.
      size_t idx = pick(rng);
      if (coin(rng) < 7) idx = coin(rng) < 5 ? 0 : pieces.size() - 1;
      s += pieces[idx];
    }
    bool nl = coin(rng) < 5;
    cr_assert_eq(rule_of(s, 1024, nl), reference_rule(s, nl), "round %d: got '%s', want '%s'",
                 round, rule_of(s, 1024, nl).c_str(), reference_rule(s, nl).c_str());
  }
}

Test(text, display_form_of_clean_text_is_unchanged) {
  cr_assert_eq(text_for_display("user.name"), "user.name");
  cr_assert_eq(text_for_display("z\xc3\xbcrich"), "z\xc3\xbcrich");
}

Test(text, display_form_escapes_anything_unsafe_to_echo) {
  cr_assert_eq(text_for_display("k\nk"), "k\\x0ak");
  cr_assert_eq(text_for_display("a\xff\x1b"), "a\\xff\\x1b");
  cr_assert_eq(text_for_display("\xe2\x80\xae"), "\\xe2\\x80\\xae");
  std::string shown = text_for_display(std::string(100, 'x'), 8);
  cr_assert_eq(shown, "xxxxxxxx...");
  // Whatever goes in, what comes out passes the text rules.
  for (int c = 0; c < 256; ++c) {
    std::string s = "a" + std::string(1, static_cast<char>(c)) + "\\";
    cr_assert_not(check_text(text_for_display(s), 1024, false).has_value(), "byte %02x", c);
  }
}
