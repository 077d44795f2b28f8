// The CLI's pure parts: time expressions, the JSON parser, and safe rendering.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <time.h>

#include <string>

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
