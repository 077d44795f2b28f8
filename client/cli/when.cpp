#include "when.hpp"

#include <time.h>

#include <cctype>
#include <cstdio>

namespace cairn::cli {
namespace {

constexpr int64_t kSec = 1'000'000'000;

bool digits(std::string_view s, size_t at, size_t n, int& out) {
  if (at + n > s.size()) return false;
  out = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

int64_t local_midnight(int64_t now_ns, int days_back) {
  time_t t = static_cast<time_t>(now_ns / kSec);
  struct tm tm {};
  localtime_r(&t, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_mday -= days_back;
  tm.tm_isdst = -1;
  return static_cast<int64_t>(mktime(&tm)) * kSec;
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
  if (s.empty()) return bad();
  if (s == "now") return now_ns;
  if (s == "today") return local_midnight(now_ns, 0);
  if (s == "yesterday") return local_midnight(now_ns, 1);
  if (s[0] == '@') {
    int64_t v = 0;
    if (s.size() < 2 || s.size() > 20) return bad();
    for (char c : s.substr(1)) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return bad();
      v = v * 10 + (c - '0');
    }
    return v;
  }
  // Relative: digits + unit.
  {
    size_t i = 0;
    int64_t n = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) && i < 12)
      n = n * 10 + (s[i++] - '0');
    if (i > 0 && i + 1 == s.size()) {
      int64_t unit = 0;
      switch (s[i]) {
        case 's': unit = kSec; break;
        case 'm': unit = 60 * kSec; break;
        case 'h': unit = 3600 * kSec; break;
        case 'd': unit = 86400 * kSec; break;
        case 'w': unit = 7 * 86400 * kSec; break;
        default: return bad();
      }
      return now_ns - n * unit;
    }
  }
  // ISO-8601.
  struct tm tm {};
  int y, mo, d;
  if (!digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d))
    return bad();
  if (mo < 1 || mo > 12 || d < 1 || d > 31) return bad();
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
        if (!digits(s, j, 2, om)) return bad();
        offset_s = sign * (oh * 3600 + om * 60);
        has_zone = true;
        i = j + 2;
      }
    }
  }
  if (i != s.size()) return bad();
  int64_t secs;
  if (has_zone) {
    secs = static_cast<int64_t>(timegm(&tm)) - offset_s;
  } else {
    tm.tm_isdst = -1;
    secs = static_cast<int64_t>(mktime(&tm));
  }
  return secs * kSec + frac_ns;
}

std::string format_utc_ms(int64_t ns) {
  time_t t = static_cast<time_t>(ns / kSec);
  int64_t ms = (ns % kSec) / 1'000'000;
  if (ms < 0) {
    ms += 1000;
    --t;
  }
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace cairn::cli
