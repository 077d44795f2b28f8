#include "log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace cairn::daemon {
namespace {

bool g_journal = false;
std::atomic<bool> g_verbose{false};  // changed by SIGHUP while the writer thread logs

// JOURNAL_STREAM is "dev:ino" of the stream journald gave us. It is inherited by
// children too, so only trust it when it really is our stderr.
bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::err: return "error";
    case LogLevel::warning: return "warning";
    case LogLevel::notice: return "notice";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
  }
  return "?";
}

}  // namespace

void log_init(bool verbose) {
  g_journal = stderr_is_journal();
  g_verbose = verbose;
}

void log_set_verbose(bool verbose) { g_verbose = verbose; }

void log_msg(LogLevel level, const char* fmt, ...) {
  if (level == LogLevel::debug && !g_verbose) return;
  char line[2048];
  int n = 0;
  if (g_journal) {
    n = std::snprintf(line, sizeof line, "<%d>", static_cast<int>(level));
  } else {
    n = std::snprintf(line, sizeof line, "cairnd[%d]: %s: ", static_cast<int>(getpid()),
                      level_name(level));
  }
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  // One write() per line so lines from the writer thread and the loop never interleave.
  ssize_t ignored = write(STDERR_FILENO, line, len);
  (void)ignored;
}

}  // namespace cairn::daemon
