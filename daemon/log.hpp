// log.hpp — the daemon's only logger (daemon/main and the server/session layer use it).
//
// Lines go to stderr. When JOURNAL_STREAM names our stderr, each line starts with a
// syslog priority prefix "<N>" so journald stores the level; otherwise "cairnd[pid]:
// level: " is used for humans and test logs.
#pragma once

namespace cairn::daemon {

enum class LogLevel { err = 3, warning = 4, notice = 5, info = 6, debug = 7 };

// Decides the line format once; call before the first log line.
void log_init(bool verbose);
// SIGHUP: turns debug lines on or off; safe while other threads log.
void log_set_verbose(bool verbose);

void log_msg(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace cairn::daemon
