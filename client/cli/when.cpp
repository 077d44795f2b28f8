#include "when.hpp"

#include <time.h>

#include <cctype>
#include <cstdio>
#include <optional>

namespace cairn::cli {
namespace {

constexpr int64_t kSec = 1'000'000'000;

// Every form ends as int64 ns since the epoch, the type the protocol carries; an event's
// time must also be >= 0 (PROTOCOL.md). So every result is checked to lie in
// [0, INT64_MAX] — 1970-01-01T00:00:00Z to 2262-04-11T23:47:16.854775807Z — before it
// is returned, with overflow-checked arithmetic on the way: an unchecked 2300-01-01
// wrapped to a date in 1715 and turned --since into "everything".
constexpr const char* kRange = "1970-01-01 to 2262-04-11T23:47:16Z";

bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int mo) {
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return mo == 2 && is_leap(y) ? 29 : kDays[mo - 1];
}

// secs * 1e9 + frac_ns if that lies in [0, INT64_MAX].
std::optional<int64_t> ns_from(int64_t secs, int64_t frac_ns) {
  int64_t ns;
  if (secs < 0 || __builtin_mul_overflow(secs, kSec, &ns) || __builtin_add_overflow(ns, frac_ns, &ns))
    return std::nullopt;
  return ns;
}

bool digits(std::string_view s, size_t at, size_t n, int& out) {
  if (at + n > s.size()) return false;
  out = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

std::optional<int64_t> local_midnight(int64_t now_ns, int days_back) {
  time_t t = static_cast<time_t>(now_ns / kSec);
  struct tm tm {};
  if (localtime_r(&t, &tm) == nullptr) return std::nullopt;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_mday -= days_back;
  tm.tm_isdst = -1;
  return ns_from(static_cast<int64_t>(mktime(&tm)), 0);
}

struct Relative {
  bool ok = true;        // false: a number or the sum overflowed
  int64_t offset_ns = 0; // from now: negative in the past
};

// "1h", "-1h", "+2d", "1h30m", "1h 30m ago", "90 minutes ago", "2 days": a sum of
// number+unit terms, in the past unless it starts with '+'. nullopt: not this form.
std::optional<Relative> parse_relative(std::string_view s) {
  int sign = -1;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    sign = s[0] == '+' ? 1 : -1;
    s.remove_prefix(1);
  }
  bool ago = false;
  if (s.ends_with(" ago")) {
    if (sign == 1) return std::nullopt;  // "+1h ago"
    s.remove_suffix(4);
    ago = true;
  }
  (void)ago;
  static constexpr struct {
    std::string_view name;
    int64_t ns;
  } kUnits[] = {
      {"weeks", 7 * 86400 * kSec}, {"week", 7 * 86400 * kSec}, {"w", 7 * 86400 * kSec},
      {"days", 86400 * kSec},      {"day", 86400 * kSec},      {"d", 86400 * kSec},
      {"hours", 3600 * kSec},      {"hour", 3600 * kSec},      {"hr", 3600 * kSec},
      {"h", 3600 * kSec},          {"minutes", 60 * kSec},     {"minute", 60 * kSec},
      {"mins", 60 * kSec},         {"min", 60 * kSec},         {"m", 60 * kSec},
      {"seconds", kSec},           {"second", kSec},           {"secs", kSec},
      {"sec", kSec},               {"s", kSec},
  };
  Relative r;
  size_t i = 0;
  bool any = false;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    if (i == s.size()) break;
    size_t start = i;
    int64_t n = 0;
    for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i)
      if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, s[i] - '0', &n)) r.ok = false;
    if (i == start) return std::nullopt;
    while (i < s.size() && s[i] == ' ') ++i;
    size_t u = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
    std::string_view unit = s.substr(u, i - u);
    int64_t per = 0;
    for (const auto& k : kUnits)
      if (k.name == unit) per = k.ns;
    if (per == 0) return std::nullopt;
    int64_t term;
    if (__builtin_mul_overflow(n, per, &term) || __builtin_add_overflow(r.offset_ns, sign * term, &r.offset_ns))
      r.ok = false;
    any = true;
  }
  if (!any) return std::nullopt;
  return r;
}

}  // namespace

int64_t wall_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kSec + ts.tv_nsec;
}

Result<int64_t, std::string> parse_when(std::string_view s, int64_t now_ns) {
  auto bad = [&]() -> Result<int64_t, std::string> {
    return Err{"'" + std::string(s) +
               "' is not a time (try now, today, 1h, 2d, 2026-11-23, 2026-11-23T10:00Z, @NS)"};
  };
  auto out_of_range = [&]() -> Result<int64_t, std::string> {
    return Err{"'" + std::string(s) + "' is out of range (" + kRange + ")"};
  };
  auto checked = [&](std::optional<int64_t> ns) -> Result<int64_t, std::string> {
    if (!ns) return out_of_range();
    return *ns;
  };
  if (s.empty()) return bad();
  if (s == "now") return checked(now_ns >= 0 ? std::optional(now_ns) : std::nullopt);
  if (s == "today") return checked(local_midnight(now_ns, 0));
  if (s == "yesterday") return checked(local_midnight(now_ns, 1));
  if (s == "tomorrow") return checked(local_midnight(now_ns, -1));
  if (s[0] == '@') {
    // Seconds since the epoch, as date +%s prints them, with an optional fraction.
    int64_t v = 0, frac = 0, scale = 100'000'000;
    size_t i = 1;
    if (s.size() < 2) return bad();
    for (; i < s.size() && s[i] != '.'; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) return bad();
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[i] - '0', &v))
        return out_of_range();
    }
    if (i == 1) return bad();
    if (i < s.size()) {
      if (i + 1 == s.size()) return bad();
      for (++i; i < s.size(); ++i) {
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) return bad();
        frac += (s[i] - '0') * scale;
        scale /= 10;
      }
    }
    return checked(ns_from(v, frac));
  }
  if (auto rel = parse_relative(s)) {
    if (!rel->ok) return out_of_range();
    int64_t at;
    if (__builtin_add_overflow(now_ns, rel->offset_ns, &at) || at < 0) return out_of_range();
    return at;
  }
  // "... UTC": the same as a Z suffix (a date alone: midnight UTC).
  bool utc_suffix = false;
  for (std::string_view z : {" UTC", " utc"}) {
    if (s.size() > 10 && s.ends_with(z)) {
      s.remove_suffix(z.size());
      utc_suffix = true;
      break;
    }
  }
  // ISO-8601.
  struct tm tm {};
  int y, mo, d;
  if (!digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d))
    return bad();
  // Checked here, not left to mktime, which would take 2026-02-31 as 2026-03-03.
  if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo)) return bad();
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  size_t i = 10;
  int64_t frac_ns = 0;
  bool has_zone = false;
  int64_t offset_s = 0;
  if (i < s.size()) {
    if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') return bad();
    int hh, mm, ss = 0;
    if (!digits(s, i + 1, 2, hh) || i + 3 >= s.size() || s[i + 3] != ':' ||
        !digits(s, i + 4, 2, mm))
      return bad();
    if (hh > 23 || mm > 59) return bad();
    i += 6;
    if (i < s.size() && s[i] == ':') {
      if (!digits(s, i + 1, 2, ss) || ss > 60) return bad();
      i += 3;
      if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
        ++i;
        int64_t scale = 100'000'000;
        size_t start = i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
          frac_ns += (s[i] - '0') * scale;
          scale /= 10;
          ++i;
        }
        if (i == start) return bad();
      }
    }
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    if (i < s.size()) {
      if (s[i] == 'Z' || s[i] == 'z') {
        has_zone = true;
        ++i;
      } else if (s[i] == '+' || s[i] == '-') {
        int sign = s[i] == '-' ? -1 : 1;
        int oh, om;
        if (!digits(s, i + 1, 2, oh)) return bad();
        size_t j = i + 3;
        if (j < s.size() && s[j] == ':') ++j;
        if (!digits(s, j, 2, om) || oh > 23 || om > 59) return bad();
        offset_s = sign * (oh * 3600 + om * 60);
        has_zone = true;
        i = j + 2;
      }
    }
  }
  if (i != s.size()) return bad();
  if (utc_suffix) {
    if (has_zone) return bad();  // "10:00+02:00 UTC"
    has_zone = true;
  }
  int64_t secs;
  if (has_zone) {
    secs = static_cast<int64_t>(timegm(&tm)) - offset_s;
  } else {
    tm.tm_isdst = -1;
    secs = static_cast<int64_t>(mktime(&tm));
  }
  // Years 0000-9999 fit time_t (64-bit) and secs easily; only the ns can overflow.
  return checked(ns_from(secs, frac_ns));
}

namespace {
// ns since the epoch as broken-down time (UTC or local) and its milliseconds; times before
// 1970 round down, so the milliseconds are never negative.
int broken_down(int64_t ns, bool utc, struct tm& tm) {
  time_t t = static_cast<time_t>(ns / kSec);
  int64_t ms = (ns % kSec) / 1'000'000;
  if (ms < 0) {
    ms += 1000;
    --t;
  }
  if (utc) gmtime_r(&t, &tm);
  else localtime_r(&t, &tm);
  return static_cast<int>(ms);
}
}  // namespace

std::string format_utc_ms(int64_t ns) {
  struct tm tm {};
  int ms = broken_down(ns, true, tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::string format_human(int64_t ns, bool utc) {
  struct tm tm {};
  int ms = broken_down(ns, utc, tm);
  char buf[128];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%03d %s", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms,
                utc ? "UTC" : (tm.tm_zone ? tm.tm_zone : ""));
  return buf;
}

}  // namespace cairn::cli
