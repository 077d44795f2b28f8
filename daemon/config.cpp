#include "config.hpp"

#include <grp.h>
#include <sys/stat.h>
#include <pwd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <string_view>

#include <cstring>

#include "cairn_config.h"

namespace cairn::daemon {

const char* flush_mode_name(FlushMode m) {
  switch (m) {
    case FlushMode::immediate: return "immediate";
    case FlushMode::batched: return "batched";
    case FlushMode::hybrid: return "hybrid";
  }
  return "?";
}

std::string key_file_path(const Config& c) { return c.key_file.empty() ? c.db_path + ".key" : c.key_file; }

// "30s", "500ms", "2m", "1h", a bare number of seconds, or "0"/"off".
static std::optional<uint64_t> parse_duration_ms(const std::string& v) {
  if (v == "off" || v == "0") return 0;
  size_t i = 0;
  uint64_t n = 0;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') {
    n = n * 10 + static_cast<uint64_t>(v[i] - '0');
    if (n > 1'000'000'000) return std::nullopt;
    ++i;
  }
  if (i == 0) return std::nullopt;
  std::string unit = v.substr(i);
  if (unit == "ms") return n;
  if (unit == "s" || unit.empty()) return n * 1000;
  if (unit == "m" || unit == "min") return n * 60'000;
  if (unit == "h") return n * 3'600'000;
  if (unit == "d") return n * 86'400'000;
  return std::nullopt;
}

const char* const kUsage =
    "Usage: cairnd [OPTIONS]\n"
    "Tamper-evident audit-log daemon: validates events from local clients, appends them\n"
    "to SQLite, links them into a SHA-256 hash chain and acks them once durable.\n"
    "\n"
    "Every option can also be set in the config file as `name = value` (one per line,\n"
    "# comments); options on the command line win over the file. A list given again\n"
    "replaces the earlier one; an empty value (`critical-types =`) empties it.\n"
    "\n"
    "  --config FILE              read settings from FILE first\n"
    "                             [" CAIRN_DEFAULT_CONFIG ", if it exists]\n"
    "  --no-config                read no config file\n"
    "  --check-config             check the config file and flags, print the settings\n"
    "                             in effect and exit: 0 valid, 1 not (each problem named\n"
    "                             as FILE:LINE: option: why)\n"
    "  --socket PATH              Unix socket to listen on [/run/cairn/cairn.sock]\n"
    "                             (ignored when systemd passes a socket)\n"
    "  --socket-mode OCTAL        permissions of a socket we create [0660]\n"
    "  --db PATH                  SQLite database [/var/lib/cairn/cairn.db]\n"
    "  --flush-mode MODE          immediate | batched | hybrid [immediate]\n"
    "                               immediate: every ack follows the fsync covering it\n"
    "                               batched:   ack on acceptance (durable:false); commit\n"
    "                                          every --batch-size events or\n"
    "                                          --batch-interval-ms, whichever is first\n"
    "                               hybrid:    batched, but critical events commit at\n"
    "                                          once with everything before them\n"
    "  --batch-size N             events per batched commit [1000]\n"
    "  --batch-interval-ms MS     longest an accepted event waits for commit [100]\n"
    "  --critical-types A,B,...   event types that are critical in hybrid mode; empty\n"
    "                             or `none`: no type is\n"
    "                             [AuthFailure,TokenRevoked,PolicyViolation,\n"
    "                              SealVerificationFailed,PathTraversalAttempt,\n"
    "                              InvalidTokenUsed,SuspiciousActivity,IntegrityViolation,\n"
    "                              MalformedModelRejected,ResourceLimitViolation]\n"
    "                             severity crit/alert/emerg and sync:true are always critical\n"
    "  --max-frame BYTES          largest request frame [65536]\n"
    "  --max-string BYTES         longest string value in an event [1024]\n"
    "  --max-inflight N           requests in flight per connection before we stop\n"
    "                             reading from it [4096]\n"
    "  --queue-max-events N       events queued for the writer before all connections\n"
    "                             are paused (backpressure) [16384]\n"
    "  --queue-max-bytes BYTES    bytes queued for the writer, likewise [16777216]\n"
    "  --max-connections N        connections in total [1024]\n"
    "  --max-connections-per-uid N  connections per peer uid (root and cairnd's uid: no\n"
    "                             cap but the total) [64]\n"
    CAIRN_PEER_LIMITS_USAGE
    CAIRN_DISK_POLICY_USAGE
    "  --query-threads N          threads answering query/stats/verify [2]\n"
    "  --seal-interval DURATION   close the epoch with a signed seal and a new key this\n"
    "                             often (30s, 500ms, 2m; 0 or off: no sealing) [30s]\n"
    "  --key-file PATH            the epoch key file [DB.key]\n"
    "  --origin NAME              the log's name in seals and checkpoints\n"
    "                             [cairn/<machine-id>]\n"
    "  --accept-loss              start although the database lacks records the key\n"
    "                             file says were sealed; the loss is recorded in the log\n"
    "  --archive-after DURATION   move records received longer ago than this into\n"
    "                             compressed archive segments (DB.archive/; 30d, 12h;\n"
    "                             0 or off: not by age) [off]\n"
    "  --max-live-mb MB           move the oldest records into segments while the\n"
    "                             database is larger than this (0: no cap) [0]\n"
    "  --remove-after DURATION    remove segments for good once their newest record is\n"
    "                             this old (365d; 0 or off: never by age); each removal\n"
    "                             is a record in the log [off]\n"
    "  --max-archive-mb MB        remove the oldest segments while all of them take more\n"
    "                             than this (0: no cap) [0]\n"
    "  --retention-check DURATION how often the retention rules are applied [10m]\n"
    "  --segment-events N         records per archive segment at most [100000]\n"
    "  --query-mmap-mb N          MiB of the database each query thread memory-maps; 0 reads\n"
    "                             with pread instead [2047]\n"
    "  --query-uids UID,...       uids (or user names) allowed to query, verify and\n"
    "                             read stats besides root and cairnd's own []\n"
    "  --query-gids GID,...       groups (gids or names) allowed likewise, as primary or\n"
    "                             supplementary group [" "cairn-readers" ", if it exists]\n"
    "  --shutdown-linger-ms MS    on SIGTERM: the bound on waiting for frames a client had\n"
    "                             begun to send, for queries already running, and (after\n"
    "                             all is durable) for clients to read their replies.\n"
    "                             0: wait for none of these [5000]\n"
    "  --verbose                  debug logging\n"
    "  --help, --version\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop accepting, commit and fsync everything accepted, send\n"
    "every ack, close, exit 0. A second signal does not skip the flush.\n"
    "SIGHUP reads the config file (and these flags) again and applies verbose,\n"
    "query-uids, query-gids, max-connections, max-connections-per-uid, max-inflight,\n"
    "shutdown-linger-ms, the per-connection and per-uid limits (conn-max-bytes ..\n"
    "uid-append-burst), disk-reserve, disk-full-action and disk-check-interval-ms at\n"
    "once; a change to any other option is logged as needing a\n"
    "restart and does not take effect. A file that does not parse changes nothing.\n";

namespace {

Result<uint64_t, std::string> parse_uint(const std::string& key, const std::string& v,
                                         uint64_t lo, uint64_t hi, int base = 10) {
  errno = 0;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v.c_str(), &end, base);
  if (v.empty() || v[0] == '-' || errno != 0 || end == nullptr || *end != '\0')
    return Err{key + ": '" + v + "' is not a number"};
  if (n < lo || n > hi)
    return Err{key + ": " + v + " is out of range " + std::to_string(lo) + ".." +
               std::to_string(hi)};
  return static_cast<uint64_t>(n);
}

std::vector<std::string> split_list(const std::string& v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string::npos) comma = v.size();
    std::string item = v.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    start = comma + 1;
  }
  return out;
}

std::string trim(std::string_view s) {
  size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string_view::npos) return {};
  size_t b = s.find_last_not_of(" \t\r");
  return std::string(s.substr(a, b - a + 1));
}

// Reads `path` into `c`, recording each key set in `keys`. Goes on past a bad line so
// that one run names every problem in the file (one line each).
Result<Ok, std::string> load_file(Config& c, const std::string& path, std::set<std::string>& keys) {
  std::ifstream in(path);
  if (!in) return Err{path + ": cannot read the config file: " + std::strerror(errno)};
  std::string line, errors;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::string where = path + ":" + std::to_string(lineno) + ": ";
    std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    size_t eq = t.find('=');
    if (eq == std::string::npos) {
      errors += where + "expected `name = value`, found '" + t + "'\n";
      continue;
    }
    std::string key = trim(std::string_view(t).substr(0, eq));
    std::string value = trim(std::string_view(t).substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    if (key == "config" || key == "no-config" || key == "check-config") {
      errors += where + key + ": only a command-line flag\n";
      continue;
    }
    auto r = config_set(c, key, value);
    if (!r) {
      errors += where + r.error() + "\n";
      continue;
    }
    keys.insert(key);
  }
  if (in.bad()) errors += path + ": read error\n";
  if (!errors.empty()) {
    errors.pop_back();
    return Err{errors};
  }
  return Ok{};
}

std::optional<bool> parse_bool(const std::string& v) {
  if (v.empty() || v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  return std::nullopt;
}

// A uid or gid: a number, or a name looked up with NSS (getpwnam_r / getgrnam_r).
Result<uint32_t, std::string> parse_id(const std::string& key, const std::string& s, bool group) {
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) {
    auto r = parse_uint(key, s, 0, 0xfffffffeu);
    if (!r) return Err{r.error()};
    return static_cast<uint32_t>(r.value());
  }
  std::vector<char> buf(16384);
  if (group) {
    struct group gr {}, *res = nullptr;
    int e = getgrnam_r(s.c_str(), &gr, buf.data(), buf.size(), &res);
    if (res == nullptr)
      return Err{key + ": no group '" + s + "'" + (e != 0 ? std::string(" (") + std::strerror(e) + ")" : "")};
    return static_cast<uint32_t>(gr.gr_gid);
  }
  struct passwd pw {}, *res = nullptr;
  int e = getpwnam_r(s.c_str(), &pw, buf.data(), buf.size(), &res);
  if (res == nullptr)
    return Err{key + ": no user '" + s + "'" + (e != 0 ? std::string(" (") + std::strerror(e) + ")" : "")};
  return static_cast<uint32_t>(pw.pw_uid);
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ",") + x;
  return out;
}

template <typename T>
std::string join_ids(const std::vector<T>& v) {
  std::string out;
  for (auto x : v) out += (out.empty() ? "" : ",") + std::to_string(x);
  return out;
}

bool is_flag_only(std::string_view key) { return key == "verbose" || key == "accept-loss"; }

}  // namespace

// Every key config_set knows (tests/unit/daemon/test_config checks it against kUsage).
const std::vector<std::string_view> kOptionNames = {
    "socket", "socket-mode", "db", "flush-mode", "batch-size", "batch-interval-ms",
    "critical-types", "max-frame", "max-string", "max-inflight", "queue-max-events",
    "queue-max-bytes", "max-connections", "max-connections-per-uid", "query-threads",
    "query-mmap-mb", "query-uids", "query-gids", "shutdown-linger-ms", "seal-interval",
    "key-file", "origin", "accept-loss", "verbose",
    "archive-after", "max-live-mb", "remove-after", "max-archive-mb", "retention-check", "segment-events",
    // peer_limits.hpp
    "conn-max-bytes", "uid-max-bytes", "global-max-bytes", "uid-write-share-pct",
    "idle-timeout-ms", "frame-timeout-ms", "reserved-connections", "uid-append-rate",
    "uid-append-burst",
    // disk_policy.hpp
    "disk-reserve", "disk-full-action", "disk-check-interval-ms",
};

const std::vector<std::string_view> kLiveOptions = {
    "verbose", "query-uids", "query-gids", "max-connections", "max-connections-per-uid",
    "max-inflight", "shutdown-linger-ms",
    // peer_limits.hpp: every one (issue 11)
    "conn-max-bytes", "uid-max-bytes", "global-max-bytes", "uid-write-share-pct",
    "idle-timeout-ms", "frame-timeout-ms", "reserved-connections", "uid-append-rate",
    "uid-append-burst",
    "disk-reserve", "disk-full-action", "disk-check-interval-ms",
};

bool is_option(std::string_view key) {
  for (auto k : kOptionNames)
    if (k == key) return true;
  return false;
}

Result<Ok, std::string> config_set(Config& c, const std::string& key, const std::string& v) {
  auto num = [&](uint64_t lo, uint64_t hi, auto& field) -> Result<Ok, std::string> {
    auto r = parse_uint(key, v, lo, hi);
    if (!r) return Err{r.error()};
    field = static_cast<std::remove_reference_t<decltype(field)>>(r.value());
    return Ok{};
  };
  if (auto peer = peer_limits_set(c.peer, key, v)) {
    if (!peer->empty()) return Err{*peer};
    return Ok{};
  }
  if (auto disk = disk_policy_set(c.disk, key, v)) {
    if (!disk->empty()) return Err{*disk};
    return Ok{};
  }
  if (key == "socket") {
    if (v.empty()) return Err{std::string("socket: empty path")};
    c.socket_path = v;
  } else if (key == "socket-mode") {
    auto r = parse_uint(key, v, 0, 0777, 8);
    if (!r) return Err{r.error()};
    c.socket_mode = static_cast<uint32_t>(r.value());
  } else if (key == "db") {
    if (v.empty()) return Err{std::string("db: empty path")};
    c.db_path = v;
  } else if (key == "flush-mode") {
    if (v == "immediate") c.flush_mode = FlushMode::immediate;
    else if (v == "batched") c.flush_mode = FlushMode::batched;
    else if (v == "hybrid") c.flush_mode = FlushMode::hybrid;
    else return Err{"flush-mode: '" + v + "' is not immediate, batched or hybrid"};
  } else if (key == "batch-size") {
    return num(1, 10'000'000, c.batch_size);
  } else if (key == "batch-interval-ms") {
    return num(1, 3'600'000, c.batch_interval_ms);
  } else if (key == "critical-types") {
    c.critical_types = v == "none" ? std::vector<std::string>{} : split_list(v);
    for (const auto& t : c.critical_types) {
      auto bad = proto::check_text(t, 64, false);
      if (bad || t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                     "0123456789_.:-") != std::string::npos)
        return Err{"critical-types: '" + t + "' is not a valid event type"};
    }
  } else if (key == "max-frame") {
    return num(1024, 16u << 20, c.limits.max_frame);
  } else if (key == "max-string") {
    return num(16, 1u << 20, c.limits.max_string);
  } else if (key == "max-inflight") {
    return num(1, 1'000'000, c.max_inflight);
  } else if (key == "queue-max-events") {
    return num(1, 100'000'000, c.queue_max_events);
  } else if (key == "queue-max-bytes") {
    return num(65536, 1ull << 40, c.queue_max_bytes);
  } else if (key == "max-connections") {
    return num(1, 1'000'000, c.max_connections);
  } else if (key == "max-connections-per-uid") {
    return num(1, 1'000'000, c.max_connections_per_uid);
  } else if (key == "query-threads") {
    return num(1, 64, c.query_threads);
  } else if (key == "query-mmap-mb") {
    return num(0, 2047, c.query_mmap_mb);
  } else if (key == "query-uids" || key == "query-gids") {
    // Like every option, a list replaces what was set before (a flag replaces the
    // config file's list; it never adds to it).
    std::vector<uint32_t> ids;
    for (const auto& s : split_list(v)) {
      auto r = parse_id(key, s, key == "query-gids");
      if (!r) return Err{r.error()};
      ids.push_back(r.value());
    }
    if (key == "query-uids") c.query_uids.assign(ids.begin(), ids.end());
    else c.query_gids.assign(ids.begin(), ids.end());
  } else if (key == "shutdown-linger-ms") {
    return num(0, 600'000, c.shutdown_linger_ms);
  } else if (key == "seal-interval") {
    auto ms = parse_duration_ms(v);
    if (!ms || *ms > 86'400'000 || (*ms != 0 && *ms < 10))
      return Err{"seal-interval: '" + v + "' is not a duration from 10ms to 24h (e.g. 30s, 500ms, 2m) or 0/off"};
    c.seal_interval_ms = static_cast<uint32_t>(*ms);
  } else if (key == "archive-after" || key == "remove-after" || key == "retention-check") {
    auto ms = parse_duration_ms(v);
    bool check = key == "retention-check";
    if (!ms || *ms > 36'500ull * 86'400'000 || (check && *ms < 100))
      return Err{key + ": '" + v + "' is not a duration (e.g. 30d, 12h, 90m" +
                 (check ? ", at least 100ms)" : "; 0 or off: no such rule)")};
    (key == "archive-after" ? c.archive_after_ms : key == "remove-after" ? c.remove_after_ms
                                                                        : c.retention_check_ms) = *ms;
  } else if (key == "max-live-mb") {
    return num(0, 1ull << 30, c.max_live_mb);
  } else if (key == "max-archive-mb") {
    return num(0, 1ull << 30, c.max_archive_mb);
  } else if (key == "segment-events") {
    return num(2, 10'000'000, c.segment_events);
  } else if (key == "key-file") {
    if (v.empty()) return Err{std::string("key-file: empty path")};
    c.key_file = v;
  } else if (key == "origin") {
    if (v.empty() || v.size() > 200 || v.find_first_of(" \t\n+") != std::string::npos ||
        proto::check_text(v, 200, false))
      return Err{"origin: '" + v + "' must be 1-200 printable characters without spaces or '+'"};
    c.origin = v;
  } else if (key == "accept-loss" || key == "verbose") {
    auto b = parse_bool(v);
    if (!b) return Err{key + ": '" + v + "' is not true or false (yes/no, on/off, 1/0)"};
    (key == "verbose" ? c.verbose : c.accept_loss) = *b;
  } else {
    return Err{key + ": unknown option (see cairnd --help)"};
  }
  return Ok{};
}

Result<ParsedArgs, std::string> parse_args(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return parse_args(args);
}

Result<ParsedArgs, std::string> parse_args(const std::vector<std::string>& args) {
  ParsedArgs out;
  out.args = args;
  const size_t n = args.size();
  // Pass 1: help/version, and which config file (so it is applied before the flags).
  bool no_config = false, explicit_config = false;
  std::string path = CAIRN_DEFAULT_CONFIG;
  for (size_t i = 0; i < n; ++i) {
    std::string_view a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      out.outcome = ParseOutcome::exit_ok;
      return out;
    }
    if (a == "--version") {
      std::printf("cairnd %s\n", CAIRN_VERSION);
      out.outcome = ParseOutcome::exit_ok;
      return out;
    }
    if (a == "--no-config") no_config = true;
    if (a == "--check-config") out.outcome = ParseOutcome::check_config;
    if (a == "--config" || a.starts_with("--config=")) {
      if (a == "--config") {
        if (i + 1 >= n) return Err{std::string("--config needs a value")};
        path = args[i + 1];
      } else {
        path = std::string(a.substr(9));
      }
      explicit_config = true;
    }
  }
  if (no_config && explicit_config) return Err{std::string("--config and --no-config contradict each other")};
  std::set<std::string> keys;
  if (!no_config) {
    // The default file is optional (cairnd runs on defaults without one); a file named
    // with --config must be there.
    struct stat st {};
    if (explicit_config || stat(path.c_str(), &st) == 0 || errno != ENOENT) {
      auto r = load_file(out.config, path, keys);
      if (!r) return Err{r.error()};
      out.config_file = path;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    std::string_view a = args[i];
    if (!a.starts_with("--")) return Err{"unexpected argument '" + std::string(a) + "'"};
    std::string key(a.substr(2));
    std::string value;
    size_t eq = key.find('=');
    if (eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    }
    if (key == "no-config" || key == "check-config") {
      if (eq != std::string::npos) return Err{"--" + key + " takes no value"};
      continue;
    }
    // Named before its value is looked for: `--bogus` is an unknown option, not one that
    // "needs a value".
    if (key != "config" && !is_option(key))
      return Err{"--" + key + ": unknown option (see cairnd --help)"};
    if (eq != std::string::npos) {
      // the value came with the flag
    } else if (is_flag_only(key)) {
      value = "true";
    } else {
      // The next flag is not this one's value (`--db --verbose`); `--db=--x` still is.
      if (i + 1 >= n || std::string_view(args[i + 1]).starts_with("--"))
        return Err{"--" + key + " needs a value"};
      value = args[++i];
    }
    if (key == "config") continue;
    auto r = config_set(out.config, key, value);
    if (!r) return Err{"--" + r.error()};
    keys.insert(key);
  }
  // Defaults that depend on whether the option was given at all: an empty list given
  // on purpose stays empty.
  if (!keys.contains("critical-types"))
    for (auto t : proto::kDefaultCriticalTypes) out.config.critical_types.emplace_back(t);
  if (!keys.contains("query-gids"))
    if (auto g = parse_id("query-gids", kDefaultReaderGroup, true)) out.config.query_gids.push_back(g.value());
  return out;
}

std::vector<std::pair<std::string, std::string>> config_values(const Config& c) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", c.socket_mode);
  auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  auto u = [](uint64_t v) { return std::to_string(v); };
  std::vector<std::pair<std::string, std::string>> out = {
      {"socket", c.socket_path},
      {"socket-mode", mode},
      {"db", c.db_path},
      {"flush-mode", flush_mode_name(c.flush_mode)},
      {"batch-size", u(c.batch_size)},
      {"batch-interval-ms", u(c.batch_interval_ms)},
      {"critical-types", c.critical_types.empty() ? "none" : join(c.critical_types)},
      {"max-frame", u(c.limits.max_frame)},
      {"max-string", u(c.limits.max_string)},
      {"max-inflight", u(c.max_inflight)},
      {"queue-max-events", u(c.queue_max_events)},
      {"queue-max-bytes", u(c.queue_max_bytes)},
      {"max-connections", u(c.max_connections)},
      {"max-connections-per-uid", u(c.max_connections_per_uid)},
      {"query-threads", u(c.query_threads)},
      {"query-mmap-mb", u(c.query_mmap_mb)},
      {"query-uids", join_ids(c.query_uids)},
      {"query-gids", join_ids(c.query_gids)},
      {"shutdown-linger-ms", u(c.shutdown_linger_ms)},
      {"seal-interval", c.seal_interval_ms == 0           ? "off"
                        : c.seal_interval_ms % 1000 == 0 ? u(c.seal_interval_ms / 1000) + "s"
                                                         : u(c.seal_interval_ms) + "ms"},
      {"key-file", c.key_file},  // not key_file_path: a new db alone must not read as a new key-file
      {"origin", c.origin},
      {"accept-loss", b(c.accept_loss)},
      {"verbose", b(c.verbose)},
      {"archive-after", c.archive_after_ms == 0 ? "off" : u(c.archive_after_ms) + "ms"},
      {"max-live-mb", u(c.max_live_mb)},
      {"remove-after", c.remove_after_ms == 0 ? "off" : u(c.remove_after_ms) + "ms"},
      {"max-archive-mb", u(c.max_archive_mb)},
      {"retention-check", u(c.retention_check_ms) + "ms"},
      {"segment-events", u(c.segment_events)},
      {"conn-max-bytes", u(c.peer.conn_max_bytes)},
      {"uid-max-bytes", u(c.peer.uid_max_bytes)},
      {"global-max-bytes", u(c.peer.global_max_bytes)},
      {"uid-write-share-pct", u(c.peer.uid_write_share_pct)},
      {"idle-timeout-ms", u(c.peer.idle_timeout_ms)},
      {"frame-timeout-ms", u(c.peer.frame_timeout_ms)},
      {"reserved-connections", u(c.peer.reserved_connections)},
      {"uid-append-rate", u(c.peer.uid_append_rate)},
      {"uid-append-burst", u(c.peer.uid_append_burst)},
      {"disk-reserve", disk_reserve_text(c.disk)},
      {"disk-full-action", disk_full_action_name(c.disk.action)},
      {"disk-check-interval-ms", u(c.disk.check_interval_ms)},
  };
  return out;
}

ReloadOutcome apply_reload(Config& live, const Config& next) {
  ReloadOutcome out;
  auto now = config_values(live);
  auto want = config_values(next);
  for (size_t i = 0; i < now.size(); ++i) {
    if (now[i].second == want[i].second) continue;
    const std::string& key = now[i].first;
    bool is_live = std::find(kLiveOptions.begin(), kLiveOptions.end(), key) != kLiveOptions.end();
    (is_live ? out.applied : out.restart).push_back(key);
  }
  // Only the fields of kLiveOptions: each is read on the loop thread alone (server,
  // session, shutdown deadlines, the logger's flag), which is where reload runs.
  live.verbose = next.verbose;
  live.query_uids = next.query_uids;
  live.query_gids = next.query_gids;
  live.max_connections = next.max_connections;
  live.max_connections_per_uid = next.max_connections_per_uid;
  live.max_inflight = next.max_inflight;
  live.shutdown_linger_ms = next.shutdown_linger_ms;
  live.peer = next.peer;  // the caller tells the Server (Server::limits_changed)
  live.disk = next.disk;  // read by the DiskGuard on the loop at its next look
  return out;
}

}  // namespace cairn::daemon
