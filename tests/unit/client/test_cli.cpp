// The CLI's pure parts (time expressions, the JSON parser, safe rendering), and the
// `cairn` binary itself run against the fake daemon (fake_daemon.hpp) for what a user
// sees: messages, stdout, exit status.
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#include <cairn/cairn.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../../../client/cli/args.hpp"
#include "../../../client/cli/json.hpp"
#include "../../../client/cli/render.hpp"
#include "../../../client/cli/when.hpp"
#include "fake_daemon.hpp"

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
  cr_assert_eq(parse_when("@42", kNow).value(), 42 * kSec, "@ is seconds, as date +%%s prints");
  cr_assert_eq(parse_when("@42.25", kNow).value(), 42 * kSec + kSec / 4);
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

// issue 12: -1h, "1h ago", 1h30m, "... UTC", tomorrow were refused.
Test(when, journalctl_forms) {
  cr_assert_eq(parse_when("-1h", kNow).value(), kNow - 3600 * kSec);
  cr_assert_eq(parse_when("1h ago", kNow).value(), kNow - 3600 * kSec);
  cr_assert_eq(parse_when("1h30m", kNow).value(), kNow - 5400 * kSec);
  cr_assert_eq(parse_when("1h 30m ago", kNow).value(), kNow - 5400 * kSec);
  cr_assert_eq(parse_when("90 minutes ago", kNow).value(), kNow - 5400 * kSec);
  cr_assert_eq(parse_when("2 days ago", kNow).value(), kNow - 2 * 86400 * kSec);
  cr_assert_eq(parse_when("+2h", kNow).value(), kNow + 7200 * kSec);
  cr_assert_eq(parse_when("2026-11-23 02:13:20 UTC", kNow).value(), 1795400000LL * kSec);
  cr_assert_eq(parse_when("2026-11-23 UTC", kNow).value(), 1795392000LL * kSec);
  setenv("TZ", "UTC", 1);
  tzset();
  cr_assert_eq(parse_when("tomorrow", kNow).value(), (1795392000LL + 86400) * kSec);
  for (const char* bad : {"1h ago ago", "+1h ago", "1 fortnight", "h", "1h-", "2026-11-23T10:00Z UTC", "@1.", "@.5"})
    cr_assert_not(parse_when(bad, kNow).ok(), "accepted '%s'", bad);
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

Test(args, a_repeated_option_is_an_error_unless_it_may_repeat) {
  std::vector<OptionSpec> spec{{"type", true, 't', true}, {"limit", true, 'n'}, {"all", false}};
  auto a = parse({"-t", "A", "--type=B", "-tC", "-n5"}, spec);
  cr_assert(a.ok(), "%s", a.ok() ? "" : a.error().c_str());
  cr_assert(a.value().all.at("type") == std::vector<std::string>({"A", "B", "C"}));
  cr_assert_eq(a.value().get("limit"), "5");
  auto b = parse({"-n", "5", "--limit", "6"}, spec);
  cr_assert(!b.ok() && b.error().find("--limit given twice") != std::string::npos, "%s", b.ok() ? "" : b.error().c_str());
  cr_assert_not(parse({"--all", "--all"}, spec).ok());
  auto c = parse({"-n", "-1h"}, spec);
  cr_assert(c.ok() && c.value().get("limit") == "-1h", "a value that starts with '-' and a digit");
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

// ---- time ranges: every form is checked, nothing wraps ----

// 2300-01-01 wrapped around int64 ns to a date in 1715: --since listed everything and
// --until nothing. The range is [1970-01-01, 2262-04-11T23:47:16.854775807Z].
Test(when, every_form_is_range_checked_at_the_int64_boundaries) {
  setenv("TZ", "UTC", 1);
  tzset();
  cr_assert_eq(parse_when("2262-04-11T23:47:16.854775807Z", kNow).value(), INT64_MAX);
  cr_assert_eq(parse_when("@9223372036.854775807", kNow).value(), INT64_MAX);
  cr_assert_eq(parse_when("1970-01-01T00:00:00Z", kNow).value(), 0);
  cr_assert_eq(parse_when("1970-01-01", kNow).value(), 0);
  cr_assert_eq(parse_when("@0", kNow).value(), 0);
  cr_assert_eq(parse_when("2262-04-11", kNow).value(), 9223286400LL * kSec);
  // kNow is 20,780.09 days after the epoch.
  cr_assert_eq(parse_when("20780d", kNow).value(), kNow - 20780LL * 86400 * kSec);
  for (const char* out : {"2262-04-11T23:47:16.854775808Z", "2262-04-11T23:47:17Z", "2262-04-12",
                          "2300-01-01", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z", "1969-12-31",
                          "0000-01-01", "@9223372036.854775808", "@9223372037", "@99999999999999999999999",
                          "20781d", "999999999999w", "99999999999999999999s", "2262-04-11T23:00-01:00"}) {
    auto r = parse_when(out, kNow);
    cr_assert_not(r.ok(), "accepted '%s' as %lld", out, r.ok() ? static_cast<long long>(r.value()) : 0LL);
    cr_assert(r.error().find("out of range") != std::string::npos, "'%s': %s", out, r.error().c_str());
    cr_assert(r.error().find(out) != std::string::npos, "the error quotes the input: %s", r.error().c_str());
  }
  // The zone decides: 2262-04-11T23:00-01:00 (00:00Z the next day) is out, while
  // 2262-04-12T01:00+02:00 (23:00Z) is in.
  cr_assert_eq(parse_when("2262-04-12T01:00+02:00", kNow).value(), (9223286400LL + 23 * 3600) * kSec);
}

Test(when, dates_are_checked_against_their_month_and_zones_against_the_clock) {
  cr_assert(parse_when("2024-02-29", kNow).ok(), "a leap day");
  cr_assert(parse_when("2000-02-29T00:00Z", kNow).ok(), "2000 is a leap year");
  for (const char* bad : {"2026-02-29", "1900-02-29", "2026-02-31", "2026-04-31", "2026-11-23T10:00+24:00",
                          "2026-11-23T10:00+01:60"}) {
    auto r = parse_when(bad, kNow);
    cr_assert_not(r.ok(), "accepted '%s'", bad);
  }
}

// ---- the `cairn` binary against the fake daemon ----

namespace {

using cairn::testing::FakeDaemon;
using cairn::testing::Request;

struct Run {
  int status = -1;  // exit status, or -1 if it did not exit normally
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs the freshly built `cairn` (meson passes its path in CAIRN_CLI) with `args` and
// `input` on stdin, optionally as another uid, and collects stdout, stderr and the exit
// status.
Run run_cli(const std::vector<std::string>& args, uid_t as_uid = 0, const std::string& input = {}) {
  const char* cli = std::getenv("CAIRN_CLI");
  cr_assert_not_null(cli, "CAIRN_CLI is not set (run through meson test)");
  char dir_tmpl[] = "/tmp/cairn-cli-XXXXXX";
  std::string dir = mkdtemp(dir_tmpl);
  chmod(dir.c_str(), 0755);  // a child running as another uid writes its output here
  std::string out = dir + "/out", err = dir + "/err", in_path = dir + "/in";
  {
    std::ofstream in(in_path);
    in << input;
  }
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    int in = open(in_path.c_str(), O_RDONLY);
    if (o < 0 || e < 0 || in < 0) _exit(120);
    fchmod(o, 0666);
    fchmod(e, 0666);
    dup2(in, 0);
    dup2(o, 1);
    dup2(e, 2);
    if (as_uid != 0 && (setgid(as_uid) != 0 || setuid(as_uid) != 0)) _exit(121);
    std::vector<char*> argv{const_cast<char*>("cairn")};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(cli, argv.data());
    _exit(122);
  }
  int st = 0;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  Run r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  unlink(out.c_str());
  unlink(err.c_str());
  unlink(in_path.c_str());
  rmdir(dir.c_str());
  cr_assert_lt(r.status, 120, "could not run %s (status %d)", cli, r.status);
  return r;
}

bool has(const std::string& hay, const char* needle) { return hay.find(needle) != std::string::npos; }

// An ack map with raw msgpack for id and seq.
std::string raw_ack(uint64_t id, const std::string& seq) {
  return std::string("\x85\xa2id\xcf", 5) + std::string{static_cast<char>(id >> 56), static_cast<char>(id >> 48),
                                                       static_cast<char>(id >> 40), static_cast<char>(id >> 32),
                                                       static_cast<char>(id >> 24), static_cast<char>(id >> 16),
                                                       static_cast<char>(id >> 8), static_cast<char>(id)} +
         std::string("\xa2ok\xc3\xa3seq", 8) + seq + std::string("\xa7" "durable\xc3", 9) +
         std::string("\xa9" "duplicate\xc2", 11);
}

}  // namespace

TestSuite(cli, .timeout = 30);

// After permission_denied, `cairn query` had already printed the table header: a refused
// request must leave stdout empty, name the refusal on stderr, and exit 2.
Test(cli, refused_query_prints_nothing_to_stdout) {
  FakeDaemon d([](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request q = s.read_request(fd);
    s.error(fd, q.id, cairn::proto::ErrorCode::permission_denied);
    s.until_closed(fd);
  });
  Run r = run_cli({"query", "--socket", d.path()});
  d.join();
  cr_assert_eq(r.status, 2, "status %d, stderr: %s", r.status, r.err.c_str());
  cr_assert(r.out.empty(), "stdout: [%s]", r.out.c_str());
  cr_assert(has(r.err, "permission_denied"), "stderr: %s", r.err.c_str());
}

Test(cli, empty_result_still_prints_the_table_header) {
  FakeDaemon d([](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request q = s.read_request(fd);
    std::string f;
    cairn::proto::encode_query_reply(f, q.id, cairn::proto::QueryPage{});
    s.send_all(fd, f);
    s.until_closed(fd);
  });
  Run r = run_cli({"query", "--socket", d.path()});
  d.join();
  cr_assert_eq(r.status, 0, "stderr: %s", r.err.c_str());
  cr_assert(!r.out.empty() && r.out.find('\n') == r.out.size() - 1, "one header line: [%s]", r.out.c_str());
}

// issue 12: `cairn query alice` and `cairn query ip=10.1.2.3` printed every event; a
// filter the CLI cannot apply is an error naming the argument, before any connection.
Test(cli, query_refuses_what_it_cannot_apply_and_names_it) {
  struct Case {
    std::vector<std::string> args;
    const char* named;
  } cases[] = {
      {{"query", "alice"}, "'alice' is not FIELD=VALUE"},
      {{"query", "--since", "soon"}, "--since: 'soon'"},
      {{"query", "-p", "loud"}, "--severity 'loud'"},
      {{"query", "--outcome", "maybe"}, "--outcome: 'maybe'"},
      {{"query", "uid=root"}, "'uid=root': 'root' is not a number"},
      {{"query", "-o", "xml"}, "-o 'xml'"},
      {{"query", "-n", "5", "--lines", "6"}, "--lines given twice"},
      {{"query", "--all", "-n", "3"}, "--all and -n"},
      {{"query", "-S", "1h", "-U", "2h"}, "--until must be later"},
      {{"query", "message=x"}, "'message' cannot be matched"},
      {{"query", "--count", "-o", "json"}, "--count prints only a number"},
      {{"report", "bob"}, "'bob' is not FIELD=VALUE"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = c.args;
    args.push_back("--socket");
    args.push_back("/nonexistent/cairn.sock");
    Run r = run_cli(args);
    cr_assert_eq(r.status, 2, "%s: status %d", c.named, r.status);
    cr_assert(r.out.empty(), "%s: stdout [%s]", c.named, r.out.c_str());
    cr_assert(has(r.err, c.named), "expected '%s' in: %s", c.named, r.err.c_str());
  }
}

// `cairn send` printed {"seq":0,...} for an ack whose seq was an int8 (d0 2a).
Test(cli, send_prints_the_seq_of_an_int8_encoded_ack) {
  FakeDaemon d([](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request a = s.append(fd);
    s.send_payload(fd, raw_ack(a.id, std::string("\xd0\x2a", 2)));
    s.until_closed(fd);
  });
  Run r = run_cli({"send", "--socket", d.path(), "--type", "Test.Event", "-o", "json"});
  d.join();
  cr_assert_eq(r.status, 0, "stderr: %s", r.err.c_str());
  cr_assert_eq(r.out, "{\"seq\":42,\"durable\":true,\"duplicate\":false}\n", "stdout: %s", r.out.c_str());
}

Test(cli, send_refuses_an_ack_with_a_negative_seq) {
  FakeDaemon d([](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    Request a = s.append(fd);
    s.send_payload(fd, raw_ack(a.id, std::string("\xd0\xff", 2)));
    s.until_closed(fd);
  });
  Run r = run_cli({"send", "--socket", d.path(), "--type", "Test.Event"});
  d.join();
  cr_assert_eq(r.status, 2, "stderr: %s", r.err.c_str());
  cr_assert(r.out.empty(), "stdout: %s", r.out.c_str());
  cr_assert(has(r.err, "malformed_reply"), "stderr: %s", r.err.c_str());
}

// "cannot connect to cairnd" hid the cause. Each says which: the path with the errno
// text, or the daemon's own refusal.
Test(cli, connect_failures_name_the_socket_and_the_cause) {
  Run r = run_cli({"ping", "--socket", "/nonexistent/cairn.sock"});
  cr_assert_eq(r.status, 2);
  cr_assert(r.out.empty());
  cr_assert(has(r.err, "/nonexistent/cairn.sock") && has(r.err, "No such file or directory"), "%s",
            r.err.c_str());

  // The fake's socket lives in a 0700 directory owned by root: nobody may not reach it.
  FakeDaemon quiet([](FakeDaemon&) {});
  r = run_cli({"ping", "--socket", quiet.path()}, /*as_uid=*/65534);
  cr_assert_eq(r.status, 2, "stderr: %s", r.err.c_str());
  cr_assert(has(r.err, quiet.path().c_str()) && has(r.err, "Permission denied"), "%s", r.err.c_str());
  cr_assert_not(has(r.err, "No such file"), "%s", r.err.c_str());
}

Test(cli, overloaded_daemon_is_named_as_the_cause) {
  FakeDaemon d([](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0) return;
    s.error(fd, 0, cairn::proto::ErrorCode::overloaded);
    close(fd);
  });
  Run r = run_cli({"ping", "--socket", d.path()});
  d.join();
  cr_assert_eq(r.status, 2);
  cr_assert(r.out.empty());
  cr_assert(has(r.err, "overloaded") && has(r.err, d.path().c_str()), "%s", r.err.c_str());
  cr_assert_not(has(r.err, "cannot connect"), "%s", r.err.c_str());
}

// A connection lost mid-stream is a connection error (2), not a refused event (1).
Test(cli, send_stdin_lost_connection_exits_2) {
  FakeDaemon d([](FakeDaemon& s) {
    int fd = s.accept_one();
    if (fd < 0 || !s.hello(fd)) return;
    s.append(fd);
    close(fd);
  });
  Run r = run_cli({"send", "--socket", d.path(), "--stdin"}, 0, "{\"type\":\"Test.Event\"}\n");
  d.join();
  cr_assert_eq(r.status, 2, "stderr: %s", r.err.c_str());
  cr_assert_eq(r.out, "-\n");
  cr_assert(has(r.err, "line 1") && has(r.err, "disconnected"), "%s", r.err.c_str());
}
