// when.hpp — the time expressions `cairn query --since/--until` accept.
//
//   now, today, yesterday, tomorrow (local midnight for the last three)
//   30s 15m 1h 2d 1w, -1h, 1h30m, "1h ago", "90 minutes ago"   (that long ago)
//   +1h, "+2 days"                  (that far ahead)
//   2026-11-23                      (local midnight)
//   2026-11-23T10:00[:05[.123]]     (local time) with Z, +02:00 or +0200 for a zone, or
//   "2026-11-23 10:00:05 UTC"       (a " UTC" suffix is a Z)
//   @1795397710[.25]                (seconds since the Unix epoch, as `date +%s` prints)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "../../protocol/result.hpp"

namespace cairn::cli {

// Returns ns since the Unix epoch; `now_ns` anchors the relative forms. Every form is
// range-checked: a time before 1970-01-01 or after 2262-04-11T23:47:16.854775807Z (the
// int64 ns the protocol carries) is an error that quotes the input, never a wrapped
// value. Dates are checked against their month (2026-02-31 is refused).
Result<int64_t, std::string> parse_when(std::string_view s, int64_t now_ns);

// "2026-11-23T10:00:05.123Z" (UTC, millisecond precision).
std::string format_utc_ms(int64_t ns);
// "2026-11-23 11:00:05.123 CET" (local zone, or UTC when `utc`).
std::string format_human(int64_t ns, bool utc);

int64_t wall_now_ns();

}  // namespace cairn::cli
