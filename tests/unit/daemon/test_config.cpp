// cairnd's flags and config file: unknown options are named as such, a flag replaces
// (never extends) a list set in the file, and the option table matches --help.
#include <criterion/criterion.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
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
    if (name == "config" || name == "help") continue;
    cr_assert(is_option(name), "--%s is in --help but not an option", name.c_str());
  }
}
