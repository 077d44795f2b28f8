// cairnd's flags and config file: unknown options are named as such, a flag replaces
// (never extends) a list set in the file, and the option table matches --help.
#include <criterion/criterion.h>
#include <grp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "../../../daemon/config.hpp"

using namespace cairn::daemon;

namespace {

cairn::Result<ParsedArgs, std::string> parse(std::vector<std::string> args) {
  std::vector<char*> argv;
  static std::string prog = "cairnd";
  argv.push_back(prog.data());
  for (auto& a : args) argv.push_back(a.data());
  return parse_args(static_cast<int>(argv.size()), argv.data());
}

std::string write_config(const std::string& text) {
  char path[] = "/tmp/cairnd-config-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  return path;
}

}  // namespace

Test(config, unknown_option_is_named_unknown_not_missing_a_value) {
  auto r = parse({"--bogus"});
  cr_assert_not(r.ok());
  cr_assert(r.error().find("--bogus") != std::string::npos, "%s", r.error().c_str());
  cr_assert(r.error().find("unknown option") != std::string::npos, "%s", r.error().c_str());
  auto r2 = parse({"--bogus", "value"});
  cr_assert_not(r2.ok());
  cr_assert(r2.error().find("unknown option") != std::string::npos, "%s", r2.error().c_str());
}

Test(config, a_flag_is_not_taken_as_the_previous_flags_value) {
  auto r = parse({"--db", "--verbose"});
  cr_assert_not(r.ok());
  cr_assert(r.error().find("--db needs a value") != std::string::npos, "%s", r.error().c_str());
  auto r2 = parse({"--db=--odd-but-explicit"});
  cr_assert(r2.ok());
  cr_assert_eq(r2.value().config.db_path, "--odd-but-explicit");
}

Test(config, list_flags_replace_the_config_files_lists) {
  std::string path = write_config("query-uids = 1001, 1002\nquery-gids = 50\n"
                                  "critical-types = A,B\n");
  auto r = parse({"--config", path, "--query-uids", "2000", "--critical-types", "C"});
  unlink(path.c_str());
  cr_assert(r.ok(), "%s", r.ok() ? "" : r.error().c_str());
  const Config& c = r.value().config;
  cr_assert_eq(c.query_uids.size(), 1u, "the flag must replace the file's list");
  cr_assert_eq(c.query_uids[0], 2000u);
  cr_assert_eq(c.query_gids.size(), 1u, "a list not given as a flag keeps the file's value");
  cr_assert_eq(c.query_gids[0], 50u);
  cr_assert_eq(c.critical_types.size(), 1u);
  cr_assert_eq(c.critical_types[0], "C");
}

Test(config, linger_of_zero_is_accepted) {
  auto r = parse({"--shutdown-linger-ms", "0"});
  cr_assert(r.ok());
  cr_assert_eq(r.value().config.shutdown_linger_ms, 0u);
}

// The table parse_args checks names against, config_set and --help must agree.
Test(config, option_table_matches_help_and_config_set) {
  std::string usage = kUsage;
  for (auto name : kOptionNames) {
    std::string flag = "  --" + std::string(name) + " ";
    std::string flag_eol = "  --" + std::string(name) + "\n";
    cr_assert(usage.find(flag) != std::string::npos || usage.find(flag_eol) != std::string::npos,
              "--%s is not in --help", std::string(name).c_str());
    Config c;
    auto r = config_set(c, std::string(name), "");
    cr_assert(r.ok() || r.error().find("unknown option") == std::string::npos,
              "config_set does not know %s", std::string(name).c_str());
  }
  // Every option --help lists is in the table.
  size_t at = 0;
  while ((at = usage.find("\n  --", at)) != std::string::npos) {
    at += 5;
    size_t end = usage.find_first_of(" =\n,", at);
    std::string name = usage.substr(at, end - at);
    if (name == "config" || name == "help" || name == "no-config" || name == "check-config") continue;
    cr_assert(is_option(name), "--%s is in --help but not an option", name.c_str());
  }
}

// ---- the config file: every problem named by file, line and option ----

Test(config, file_errors_name_file_line_and_option_and_all_of_them) {
  std::string path = write_config("# a comment\n"
                                  "batch-size = 10\n"
                                  "batch-size = lots\n"
                                  "\n"
                                  "no-such-thing = 1\n"
                                  "just words\n"
                                  "verbose = maybe\n");
  auto r = parse({"--config", path});
  cr_assert_not(r.ok());
  const std::string& e = r.error();
  cr_assert(e.find(path + ":3: batch-size: 'lots' is not a number") != std::string::npos, "%s", e.c_str());
  cr_assert(e.find(path + ":5: no-such-thing: unknown option") != std::string::npos, "%s", e.c_str());
  cr_assert(e.find(path + ":6: expected `name = value`") != std::string::npos, "%s", e.c_str());
  cr_assert(e.find(path + ":7: verbose: 'maybe' is not true or false") != std::string::npos, "%s", e.c_str());
  cr_assert(e.find(":2:") == std::string::npos, "a good line is not an error: %s", e.c_str());
  unlink(path.c_str());
}

Test(config, a_missing_named_file_is_an_error_and_no_config_reads_none) {
  auto r = parse({"--config", "/nonexistent/cairnd.conf"});
  cr_assert_not(r.ok());
  cr_assert(r.error().find("/nonexistent/cairnd.conf: cannot read") != std::string::npos, "%s", r.error().c_str());
  auto r2 = parse({"--no-config", "--db", "/tmp/x.db"});
  cr_assert(r2.ok(), "%s", r2.ok() ? "" : r2.error().c_str());
  cr_assert_eq(r2.value().config_file, "");
  cr_assert_not(parse({"--no-config", "--config", "/tmp/x"}).ok());
}

Test(config, config_cannot_be_set_inside_the_file) {
  std::string path = write_config("config = /etc/other.conf\n");
  auto r = parse({"--config", path});
  unlink(path.c_str());
  cr_assert_not(r.ok());
  cr_assert(r.error().find(":1: config: only a command-line flag") != std::string::npos, "%s", r.error().c_str());
}

Test(config, check_config_is_an_outcome_and_keeps_the_file) {
  std::string path = write_config("flush-mode = hybrid\n");
  auto r = parse({"--check-config", "--config", path});
  cr_assert(r.ok(), "%s", r.ok() ? "" : r.error().c_str());
  cr_assert_eq(r.value().outcome, ParseOutcome::check_config);
  cr_assert_eq(r.value().config_file, path);
  cr_assert_eq(r.value().config.flush_mode, FlushMode::hybrid);
  unlink(path.c_str());
}

// ---- lists: replaced, never appended to; the critical set can be emptied ----

Test(config, a_list_set_twice_in_the_file_keeps_only_the_last) {
  std::string path = write_config("query-uids = 1, 2\nquery-uids = 3\n");
  auto r = parse({"--config", path});
  unlink(path.c_str());
  cr_assert(r.ok());
  cr_assert_eq(r.value().config.query_uids.size(), 1u);
  cr_assert_eq(r.value().config.query_uids[0], 3u);
}

Test(config, critical_set_defaults_and_can_be_emptied) {
  auto def = parse({"--no-config"});
  cr_assert(def.ok());
  cr_assert_eq(def.value().config.critical_types.size(), std::size(cairn::proto::kDefaultCriticalTypes));
  for (const char* empty : {"", "none"}) {
    std::string path = write_config(std::string("critical-types = ") + empty + "\n");
    auto r = parse({"--config", path});
    unlink(path.c_str());
    cr_assert(r.ok(), "%s", r.ok() ? "" : r.error().c_str());
    cr_assert(r.value().config.critical_types.empty(), "critical-types = '%s' must empty the set", empty);
  }
  auto flag = parse({"--no-config", "--critical-types="});
  cr_assert(flag.ok());
  cr_assert(flag.value().config.critical_types.empty());
}

Test(config, query_ids_take_names) {
  // root exists on every system with uid and gid 0.
  auto r = parse({"--no-config", "--query-uids", "root,7", "--query-gids", "root"});
  cr_assert(r.ok(), "%s", r.ok() ? "" : r.error().c_str());
  cr_assert_eq(r.value().config.query_uids.size(), 2u);
  cr_assert_eq(r.value().config.query_uids[0], 0u);
  cr_assert_eq(r.value().config.query_uids[1], 7u);
  cr_assert_eq(r.value().config.query_gids.size(), 1u);
  cr_assert_eq(r.value().config.query_gids[0], 0u);
  auto bad = parse({"--no-config", "--query-gids", "no-such-group-cairn-test"});
  cr_assert_not(bad.ok());
  cr_assert(bad.error().find("query-gids: no group 'no-such-group-cairn-test'") != std::string::npos, "%s",
            bad.error().c_str());
  // Set to empty on purpose: the default reader group is not added.
  auto none = parse({"--no-config", "--query-gids="});
  cr_assert(none.ok());
  cr_assert(none.value().config.query_gids.empty());
}

// ---- the printed settings read back to the same configuration ----

Test(config, check_config_output_reads_back_to_the_same_settings) {
  auto r = parse({"--no-config", "--flush-mode", "batched", "--query-uids", "5,6", "--seal-interval", "2m",
                  "--critical-types", "A,B", "--socket-mode", "0600", "--origin", "host/x"});
  cr_assert(r.ok());
  std::string text;
  for (const auto& [k, v] : config_values(r.value().config))
    if (!v.empty()) text += k + " = " + v + "\n";
  std::string path = write_config(text);
  auto again = parse({"--config", path});
  unlink(path.c_str());
  cr_assert(again.ok(), "%s\n%s", again.ok() ? "" : again.error().c_str(), text.c_str());
  cr_assert(config_values(again.value().config) == config_values(r.value().config), "%s", text.c_str());
}

// ---- reload: live options change, the others are named and kept ----

Test(config, reload_applies_live_options_and_names_the_rest) {
  auto a = parse({"--no-config", "--query-uids", "5", "--db", "/tmp/a.db", "--max-connections", "10"});
  auto b = parse({"--no-config", "--query-uids", "5,6", "--db", "/tmp/b.db", "--max-connections", "20",
                  "--verbose"});
  cr_assert(a.ok() && b.ok());
  Config live = a.value().config;
  ReloadOutcome out = apply_reload(live, b.value().config);
  cr_assert_eq(live.query_uids.size(), 2u);
  cr_assert_eq(live.max_connections, 20u);
  cr_assert(live.verbose);
  cr_assert_eq(live.db_path, "/tmp/a.db", "the database cannot change while cairnd runs");
  cr_assert(std::find(out.applied.begin(), out.applied.end(), "query-uids") != out.applied.end());
  cr_assert(std::find(out.applied.begin(), out.applied.end(), "verbose") != out.applied.end());
  cr_assert_eq(out.restart.size(), 1u);
  cr_assert_eq(out.restart[0], "db");
  // Nothing changed: nothing reported.
  ReloadOutcome same = apply_reload(live, live);
  cr_assert(same.applied.empty() && same.restart.empty());
}

// Issue 11: every per-connection and per-uid limit changes on SIGHUP; the writer queue's
// size (fixed when the queue is built) is named as needing a restart.
Test(config, reload_applies_the_peer_limits) {
  auto a = parse({"--no-config"});
  auto b = parse({"--no-config", "--uid-append-rate", "100", "--uid-append-burst", "500",
                  "--conn-max-bytes", "1048576", "--uid-write-share-pct", "10", "--idle-timeout-ms", "0",
                  "--reserved-connections", "4", "--queue-max-bytes", "1048576"});
  cr_assert(a.ok() && b.ok());
  Config live = a.value().config;
  ReloadOutcome out = apply_reload(live, b.value().config);
  cr_assert_eq(live.peer.uid_append_rate, 100u);
  cr_assert_eq(live.peer.uid_append_burst, 500u);
  cr_assert_eq(live.peer.conn_max_bytes, 1048576u);
  cr_assert_eq(live.peer.uid_write_share_pct, 10u);
  cr_assert_eq(live.peer.idle_timeout_ms, 0u);
  cr_assert_eq(live.peer.reserved_connections, 4u);
  cr_assert_eq(live.queue_max_bytes, a.value().config.queue_max_bytes, "the queue's size needs a restart");
  cr_assert_eq(out.applied.size(), 6u);
  cr_assert_eq(out.restart.size(), 1u);
  cr_assert_eq(out.restart[0], "queue-max-bytes");
}

// ---- the shipped etc/cairnd.conf documents every option with its true default ----

Test(config, shipped_config_file_lists_every_option_with_its_default) {
  const char* src = std::getenv("CAIRN_SOURCE_DIR");
  cr_assert(src != nullptr, "CAIRN_SOURCE_DIR is not set");
  std::ifstream in(std::string(src) + "/etc/cairnd.conf");
  cr_assert(in.good(), "etc/cairnd.conf is missing");
  std::string line, uncommented;
  std::vector<std::string> seen;
  while (std::getline(in, line)) {
    // `#name = value`: an option line (prose comments start with "# ").
    if (line.size() < 2 || line[0] != '#' || line[1] < 'a' || line[1] > 'z') continue;
    size_t eq = line.find(" =");
    cr_assert(eq != std::string::npos, "odd option line: %s", line.c_str());
    std::string key = line.substr(1, eq - 1);
    std::string value = eq + 2 < line.size() ? line.substr(eq + 3) : "";
    cr_assert(is_option(key), "etc/cairnd.conf names an unknown option: %s", key.c_str());
    seen.push_back(key);
    if (key == "origin" && value.empty()) continue;  // documented as "derived", not a value
    if (key == "query-gids" && getgrnam(kDefaultReaderGroup) == nullptr) continue;
    uncommented += line.substr(1) + "\n";
  }
  for (auto name : kOptionNames)
    cr_assert(std::find(seen.begin(), seen.end(), std::string(name)) != seen.end(),
              "etc/cairnd.conf does not document %s", std::string(name).c_str());
  std::string path = write_config(uncommented);
  auto shipped = parse({"--config", path});
  unlink(path.c_str());
  cr_assert(shipped.ok(), "%s", shipped.ok() ? "" : shipped.error().c_str());
  auto def = parse({"--no-config"});
  cr_assert(def.ok());
  auto a = config_values(shipped.value().config), b = config_values(def.value().config);
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].first == "key-file") continue;  // spelled out in the file, derived by default
    cr_assert_eq(a[i].second, b[i].second, "%s: the file says %s, the default is %s", a[i].first.c_str(),
                 a[i].second.c_str(), b[i].second.c_str());
  }
  cr_assert_eq(key_file_path(shipped.value().config), key_file_path(def.value().config));
}

// ---- the disk reserve (disk_policy.hpp) ----

Test(config, disk_reserve_takes_a_size_a_percentage_or_both_and_names_bad_values) {
  auto r = parse({"--disk-reserve", "128M,5%", "--disk-full-action", "pushback"});
  cr_assert(r.ok(), "%s", r.ok() ? "" : r.error().c_str());
  const DiskPolicy& p = r.value().config.disk;
  cr_assert_eq(p.reserve_bytes, 128ull << 20);
  cr_assert_eq(p.reserve_pct, 5u);
  cr_assert(p.action == DiskFullAction::pushback);
  // The larger of the two applies: 5% of 10 GiB is 512 MiB, 5% of 1 GiB is 51 MiB < 128.
  cr_assert_eq(p.reserve_for(10ull << 30), (10ull << 30) / 100 * 5);
  cr_assert_eq(p.reserve_for(1ull << 30), 128ull << 20);

  auto pct = parse({"--disk-reserve", "3%"});
  cr_assert(pct.ok());
  cr_assert_eq(pct.value().config.disk.reserve_bytes, 0u);
  cr_assert_eq(pct.value().config.disk.reserve_pct, 3u);
  auto off = parse({"--disk-reserve", "0"});
  cr_assert(off.ok());
  cr_assert_eq(off.value().config.disk.reserve_for(1ull << 40), 0u);

  for (const char* bad : {"lots", "5%,6%", "1M,2M", "64Q", "60%", "-1"}) {
    auto b = parse({"--disk-reserve", bad});
    cr_assert_not(b.ok(), "disk-reserve %s was accepted", bad);
    cr_assert(b.error().find("disk-reserve") != std::string::npos, "%s", b.error().c_str());
  }
  auto act = parse({"--disk-full-action", "panic"});
  cr_assert_not(act.ok());
  cr_assert(act.error().find("disk-full-action: 'panic' is not refuse or pushback") != std::string::npos, "%s",
            act.error().c_str());
  // --check-config prints it the way it reads back.
  for (const auto& [k, v] : config_values(r.value().config))
    if (k == "disk-reserve") cr_assert_eq(v, "128M,5%");
}

Test(config, disk_policy_changes_on_reload) {
  Config live;
  Config next = live;
  next.disk.action = DiskFullAction::pushback;
  next.disk.reserve_bytes = 1u << 20;
  ReloadOutcome out = apply_reload(live, next);
  cr_assert(live.disk.action == DiskFullAction::pushback);
  cr_assert_eq(live.disk.reserve_bytes, 1u << 20);
  cr_assert(out.restart.empty());
  cr_assert_eq(out.applied.size(), 2u);
}
