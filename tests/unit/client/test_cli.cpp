// The CLI's pure parts: time expressions, the JSON parser, and safe rendering.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <time.h>

#include <string>

#include "../../../client/cli/args.hpp"
#include "../../../client/cli/json.hpp"
#include "../../../client/cli/render.hpp"
#include "../../../client/cli/when.hpp"

using namespace cairn::cli;

namespace {
constexpr int64_t kSec = 1'000'000'000;
const int64_t kNow = 1795400000LL * kSec + 123;  // 2026-11-23T02:13:20Z
}  // namespace

Test(when, relative_forms_count_back_from_now) {
  cr_assert_eq(parse_when("now", kNow).value(), kNow);
  cr_assert_eq(parse_when("30s", kNow).value(), kNow - 30 * kSec);
  cr_assert_eq(parse_when("15m", kNow).value(), kNow - 900 * kSec);
  cr_assert_eq(parse_when("1h", kNow).value(), kNow - 3600 * kSec);
  cr_assert_eq(parse_when("2d", kNow).value(), kNow - 2 * 86400 * kSec);
  cr_assert_eq(parse_when("1w", kNow).value(), kNow - 7 * 86400 * kSec);
}

Test(when, iso8601_with_zones_and_fractions) {
  cr_assert_eq(parse_when("2026-11-23T02:13:20Z", kNow).value(), 1795400000LL * kSec);
  cr_assert_eq(parse_when("2026-11-23T04:13:20+02:00", kNow).value(), 1795400000LL * kSec);
  cr_assert_eq(parse_when("2026-11-22T21:13:20-0500", kNow).value(), 1795400000LL * kSec);
  cr_assert_eq(parse_when("2026-11-23T02:13:20.25Z", kNow).value(), 1795400000LL * kSec + kSec / 4);
  cr_assert_eq(parse_when("2026-11-23T02:13Z", kNow).value(), 1795399980LL * kSec);
  cr_assert_eq(parse_when("@42", kNow).value(), 42);
}

Test(when, local_dates_and_today_use_the_local_zone) {
  setenv("TZ", "UTC", 1);
  tzset();
  cr_assert_eq(parse_when("2026-11-23", kNow).value(), 1795392000LL * kSec);
  cr_assert_eq(parse_when("today", kNow).value(), 1795392000LL * kSec);
  cr_assert_eq(parse_when("yesterday", kNow).value(), (1795392000LL - 86400) * kSec);
}

Test(when, garbage_is_refused_with_a_hint) {
  for (const char* bad : {"", "soon", "1x", "2026-13-01", "2026-11-23T25:00Z", "2026-11-23Tx",
                          "@", "@12a", "2026-11-23T10:00+5"}) {
    auto r = parse_when(bad, kNow);
    cr_assert_not(r.ok(), "accepted '%s'", bad);
  }
  cr_assert(parse_when("soon", kNow).error().find("1h") != std::string::npos);
}

Test(when, format_utc_ms) {
  cr_assert_eq(format_utc_ms(1795400000LL * kSec + 5 * 1'000'000), "2026-11-23T02:13:20.005Z");
}

Test(json, parses_objects_arrays_numbers_and_escapes) {
  auto r = json_parse(R"( {"a": [1, -2, 3.5, true, false, null], "s": "x\ny\u00e9\ud83d\udd12", "o": {}} )");
  cr_assert(r.ok(), "%s", r.ok() ? "" : r.error().c_str());
  const Json& j = r.value();
  cr_assert_eq(j.kind, Json::Kind::object);
  const Json* a = j.find("a");
  cr_assert_eq(a->items.size(), 6u);
  cr_assert_eq(a->items[1].kind, Json::Kind::integer);
  cr_assert_eq(a->items[1].i, -2);
  cr_assert_eq(a->items[2].kind, Json::Kind::number);
  cr_assert_eq(j.find("s")->s, "x\ny\xc3\xa9\xf0\x9f\x94\x92");
}

Test(json, refuses_malformed_input_and_says_where) {
  for (const char* bad : {"{", "{\"a\":}", "[1,]", "{'a':1}", "01", "\"\\x\"", "\"\\ud800\"",
                          "{\"a\":1} x", "\"raw\ttab\"", "nul"}) {
    auto r = json_parse(bad);
    cr_assert_not(r.ok(), "accepted %s", bad);
    cr_assert(r.error().find("byte") != std::string::npos, "%s", r.error().c_str());
  }
}

Test(render, cells_escape_control_characters) {
  cr_assert_eq(cell("a\x1b[31mb", 40), "a\\x1b[31mb");
  cr_assert_eq(cell("abcdef", 3), "abc…");
}

Test(when, fractional_seconds_and_local_time_without_zone) {
  setenv("TZ", "Europe/Berlin", 1);
  tzset();
  // 2026-11-23 is in CET (UTC+1): local 03:13:20.5 is 02:13:20.5Z.
  cr_assert_eq(parse_when("2026-11-23T03:13:20.5", kNow).value(), 1795400000LL * kSec + kSec / 2);
  cr_assert_eq(parse_when("2026-11-23T02:13:20.123456789Z", kNow).value(),
               1795400000LL * kSec + 123456789);
  cr_assert_eq(parse_when("2026-11-23", kNow).value(), (1795392000LL - 3600) * kSec);
  setenv("TZ", "UTC", 1);
  tzset();
}

Test(json, integers_and_floats_are_told_apart) {
  cr_assert_eq(json_parse("9223372036854775807").value().kind, Json::Kind::integer);
  cr_assert_eq(json_parse("-9223372036854775808").value().i, INT64_MIN);
  cr_assert_eq(json_parse("9223372036854775808").value().kind, Json::Kind::number,
               "out of int64 range falls back to a float");
  cr_assert_eq(json_parse("1e3").value().kind, Json::Kind::number);
  cr_assert_eq(json_parse("0.5").value().d, 0.5);
  cr_assert_eq(json_parse("-0").value().kind, Json::Kind::integer);
}

Test(json, refuses_invalid_utf8_and_bad_surrogates) {
  for (const char* bad : {"\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
                          "\"\xe2\x82\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\u12\"",
                          "[1 2]", "{\"a\" 1}", "tru", "1.", ".5", "+1", "1e", "[", "\"\\"}) {
    cr_assert_not(json_parse(bad).ok(), "accepted %s", bad);
  }
  cr_assert_eq(json_parse("\"\xe2\x82\xac\"").value().s, "\xe2\x82\xac", "raw UTF-8 passes through");
}

Test(json, escaping_round_trips_and_hides_control_characters) {
  std::string out;
  json_escape("a\"b\\c\n\x01\x7f", out);
  cr_assert_eq(out, "\"a\\\"b\\\\c\\n\\u0001\\u007f\"");
  cr_assert_eq(json_parse(out).value().s, "a\"b\\c\n\x01\x7f");
  out.clear();
  json_escape("\xe2\x80\xae\xc2\x9b\xe2\x82\xac\xff", out);
  cr_assert_eq(out, "\"\\u202e\\u009b\xe2\x82\xac\\ufffd\"", "%s", out.c_str());
}

Test(json, msgpack_rendering_of_objects_bins_and_numbers) {
  auto j = json_parse(R"({"n":-5,"f":1.5,"t":true,"z":null,"a":["x"],"o":{"k":"v"}})");
  cr_assert(j.ok());
  std::string mp;
  json_to_msgpack(j.value(), mp);
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  cr_assert_eq(msgpack_unpack_next(&up, mp.data(), mp.size(), &off), MSGPACK_UNPACK_SUCCESS);
  std::string back;
  msgpack_to_json(up.data, back);
  msgpack_unpacked_destroy(&up);
  cr_assert_eq(back, R"({"n":-5,"f":1.5,"t":true,"z":null,"a":["x"],"o":{"k":"v"}})");
}

Test(render, event_json_has_seq_hash_and_body_with_bins_as_hex) {
  cairn::proto::StoredEvent e;
  e.seq = 3;
  e.hash[0] = 0xab;
  // {"type":"T","idem":bin(01 ff),"message":"l1\nl2\x1b"}
  e.body = std::string("\x83\xa4type\xa1T\xa4idem\xc4\x02\x01\xff\xa7message\xa6l1\nl2\x1b", 32);
  std::string j = event_json(e);
  cr_assert(j.starts_with("{\"seq\":3,\"hash\":\"ab00"), "%s", j.c_str());
  cr_assert(j.ends_with(",\"type\":\"T\",\"idem\":\"01ff\",\"message\":\"l1\\nl2\\u001b\"}"), "%s", j.c_str());
  cr_assert(j.find('\x1b') == std::string::npos);
}

Test(render, cells_escape_newlines_and_count_utf8_characters) {
  cr_assert_eq(cell("a\nb\tc", 40), "a\\x0ab\\x09c");
  cr_assert_eq(cell("\xc3\xa9\xc3\xa9\xc3\xa9", 2), "\xc3\xa9\xc3\xa9…");
  cr_assert_eq(cell("abc", 3), "abc");
  cr_assert_eq(cell("abcd", 3), "abc…");
}

Test(render, cells_escape_c1_controls_bidi_overrides_and_broken_utf8) {
  cr_assert_eq(cell("a\xc2\x9b" "31mb", 40), "a\\u009b31mb");         // C1 CSI
  cr_assert_eq(cell("x\xe2\x80\xaey", 40), "x\\u202ey");             // RIGHT-TO-LEFT OVERRIDE
  cr_assert_eq(cell("\xef\xbb\xbfz", 40), "\\ufeffz");                // BOM
  cr_assert_eq(cell("a\xff" "b\xc3", 40), "a\\xffb\\xc3");              // not UTF-8
  cr_assert_eq(cell("\xe2\x82\xac", 40), "\xe2\x82\xac");            // € is fine
}

namespace {
cairn::Result<Args, std::string> parse(std::vector<const char*> v,
                                const std::vector<OptionSpec>& spec) {
  std::vector<char*> argv;
  for (const char* a : v) argv.push_back(const_cast<char*>(a));
  return parse_args(static_cast<int>(argv.size()), argv.data(), 0, spec);
}
const std::vector<OptionSpec> kSpec = {{"type", true}, {"sync", false}, {"output", true, 'o'}};
}  // namespace

Test(args, long_short_inline_and_positional) {
  auto a = parse({"--type", "T", "-o", "json", "--sync", "k=v", "--", "--type=x"}, kSpec);
  cr_assert(a.ok(), "%s", a.ok() ? "" : a.error().c_str());
  cr_assert_eq(a.value().get("type"), "T");
  cr_assert_eq(a.value().get("output"), "json");
  cr_assert(a.value().has("sync"));
  cr_assert_eq(a.value().positional.size(), 2u);
  cr_assert_eq(a.value().positional[1], "--type=x", "after -- everything is positional");
  cr_assert_eq(parse({"--type=A=B"}, kSpec).value().get("type"), "A=B");
}

Test(args, errors_name_the_option) {
  auto a = parse({"--bogus"}, kSpec);
  cr_assert_not(a.ok());
  cr_assert(a.error().find("--bogus") != std::string::npos, "%s", a.error().c_str());
  auto b = parse({"--type"}, kSpec);
  cr_assert(b.error().find("--type needs a value") != std::string::npos, "%s", b.error().c_str());
  auto c = parse({"--sync=1"}, kSpec);
  cr_assert(c.error().find("--sync takes no value") != std::string::npos, "%s", c.error().c_str());
  cr_assert_not(parse({"-x"}, kSpec).ok());
}
