// config.hpp — cairnd's settings: defaults, config file, command-line flags, reload.
//
// Every option is both a flag (`--name value`) and a config-file key (`name = value`).
// The file (--config FILE, else CAIRN_DEFAULT_CONFIG if it exists; --no-config: none) is
// read first; flags given on the command line override it. An option set twice (in the
// file, as flags, or both) keeps its last value; lists are replaced whole, never
// appended to, and an empty value (`critical-types =`) empties a list.
//
// Reload (SIGHUP): the same arguments are parsed again into a fresh Config and
// apply_reload() copies over the options that may change while cairnd runs (kLiveOptions,
// all of them read on the loop thread only); every other difference is reported as
// needing a restart and left as it was.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "../protocol/event.hpp"
#include "../protocol/result.hpp"
#include "disk_policy.hpp"
#include "peer_limits.hpp"

namespace cairn::daemon {

enum class FlushMode { immediate, batched, hybrid };
const char* flush_mode_name(FlushMode m);

struct Config {
  std::string socket_path = "/run/cairn/cairn.sock";
  uint32_t socket_mode = 0660;
  std::string db_path = "/var/lib/cairn/cairn.db";
  FlushMode flush_mode = FlushMode::immediate;
  uint32_t batch_size = 1000;         // batched/hybrid: commit when this many are open
  uint32_t batch_interval_ms = 100;   // batched/hybrid: ... or when the oldest is this old
  std::vector<std::string> critical_types;  // hybrid: these types commit at once
  proto::Limits limits;
  uint32_t max_inflight = 4096;       // requests in flight per connection
  uint64_t queue_max_events = 16384;  // accepted, not yet handled by the writer
  uint64_t queue_max_bytes = 16u << 20;
  uint32_t max_connections = 1024;
  uint32_t max_connections_per_uid = 64;  // well below the total (issue 11)
  PeerLimits peer;  // budgets, timeouts, reserved connections, rates (peer_limits.hpp)
  DiskPolicy disk;  // reserve and disk-full action (disk_policy.hpp)
  uint32_t query_threads = 2;
  // Each query thread maps up to this much of the database (SQLite mmap_size; SQLite
  // caps it just under 2 GiB): a page read is a memory access, not a pread + copy.
  uint32_t query_mmap_mb = 2047;
  std::vector<uid_t> query_uids;      // may query/verify/stats besides root and our euid
  std::vector<gid_t> query_gids;
  // SIGTERM: the bound on each wait that depends on a client or a running query: frames
  // begun before the signal, queries already running, then (after the final commit)
  // clients reading their replies. 0: none of them is waited for. There is always a
  // deadline (daemon.hpp).
  uint32_t shutdown_linger_ms = 5000;
  bool verbose = false;
  // Seals (PROTOCOL.md §5): every seal_interval_ms the writer closes the epoch with a
  // signed seal record and moves to a new key. 0 turns sealing off (no key file).
  uint32_t seal_interval_ms = 30'000;
  std::string key_file;  // default: db_path + ".key"
  std::string origin;    // default: "cairn/" + /etc/machine-id
  bool accept_loss = false;  // start although the database is behind the key file
  // Retention (PROTOCOL.md §11, daemon/retention.hpp). Each rule is off at 0. Records
  // move into archive segments by age or when the live database is too large; segments
  // are removed for good by age or when all of them are too large.
  uint64_t archive_after_ms = 0;       // archive records received longer ago than this
  uint64_t max_live_mb = 0;            // archive the oldest while the database is larger
  uint64_t remove_after_ms = 0;        // remove segments whose newest record is this old
  uint64_t max_archive_mb = 0;         // remove the oldest segments while they are larger
  uint64_t retention_check_ms = 600'000;  // how often the rules are applied
  uint32_t segment_events = 100'000;   // records per segment at most (it ends at a seal)
};
// The key file path in effect.
std::string key_file_path(const Config& c);

// run: start cairnd; exit_ok: --help/--version were printed; check_config: the
// configuration parsed (--check-config), print it and exit 0.
enum class ParseOutcome { run, exit_ok, check_config };

struct ParsedArgs {
  Config config;
  ParseOutcome outcome = ParseOutcome::run;
  std::string config_file;        // the file that was read, "" if none
  std::vector<std::string> args;  // argv[1..], kept for SIGHUP to parse again
};

// Parses argv (and the config file). Returns a message on any error, one line per
// problem, each naming the file and line (`FILE:LINE: option: why`) or the flag; a file
// with several bad lines names all of them. Prints --help / --version itself and
// returns exit_ok for them. Group and user names in query-gids/query-uids are looked
// up here (NSS), so call it on the loop thread only at start-up and on SIGHUP.
Result<ParsedArgs, std::string> parse_args(int argc, char** argv);
Result<ParsedArgs, std::string> parse_args(const std::vector<std::string>& args);

// The effective value of every option, in kOptionNames order, as a config file line
// would spell it (`cairnd --check-config` prints these; reload compares them).
std::vector<std::pair<std::string, std::string>> config_values(const Config& c);

// Options apply_reload() changes in a running cairnd.
extern const std::vector<std::string_view> kLiveOptions;

struct ReloadOutcome {
  std::vector<std::string> applied;  // options whose new value now holds
  std::vector<std::string> restart;  // options that changed but need a restart
};
// Copies the kLiveOptions that differ from `next` into `live`; lists the others that
// differ in `restart` (their values in `live` stay).
ReloadOutcome apply_reload(Config& live, const Config& next);

// The reader group used when query-gids is not set: members may query, verify and
// read stats (as journald's systemd-journal group reads the journal), if it exists.
inline constexpr const char* kDefaultReaderGroup = "cairn-readers";

// Applies one `key = value` setting (shared by flags and the config file).
Result<Ok, std::string> config_set(Config& c, const std::string& key, const std::string& value);

extern const char* const kUsage;

// The option names config_set knows (flags and config-file keys alike).
extern const std::vector<std::string_view> kOptionNames;
bool is_option(std::string_view key);

}  // namespace cairn::daemon
