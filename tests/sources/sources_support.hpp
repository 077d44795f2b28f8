// sources_support.hpp — what the `sources` suite adds to tests/support: running a real
// program (pamtester, sudo) inside a private mount namespace with test files bound over
// /etc paths, so the host's configuration is never touched, and reading events back
// with the real `cairn query --db ... -o json`.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cairn::test {

struct NsCommand {
  std::vector<std::pair<std::string, std::string>> binds;  // {source file/dir, target}
  std::vector<std::string> argv;                           // argv[0]: absolute path
  std::string input;                                       // written to its stdin
  std::vector<std::string> env;                            // NAME=VALUE (nothing else)
};

struct NsResult {
  pid_t pid = -1;        // the program's pid (the forked child execs it: the same pid)
  int exit_code = -1;    // 128+signal when killed; 126 when the namespace setup failed
  std::string output;    // stdout and stderr
  int64_t elapsed_ms = 0;
};

// Forks; the child unshares its mount namespace, makes it private, binds each pair and
// execs argv. Waits for the program (60 s at most, then SIGKILL).
NsResult run_in_namespace(const NsCommand& cmd);

// Whether this process may make a private mount namespace (root, CAP_SYS_ADMIN).
bool can_unshare_mounts();

// One JSON line per client event (cairnd's own cairn.* records left out) from `cairn query --db DB -o json` (the daemon may be
// running or gone; the CLI reads the file read-only), oldest first.
std::vector<std::string> events_json(const std::string& db);
// The lines whose "type" is `type`.
std::vector<std::string> events_of_type(const std::vector<std::string>& lines, const std::string& type);
// `"key":value` as it appears in a JSON line, for substring checks: json_pair("pid", 12)
// is "\"pid\":12", json_str("comm", "sudo") is "\"comm\":\"sudo\"".
std::string json_num(const std::string& key, long long v);
std::string json_str(const std::string& key, const std::string& v);

std::string make_temp_dir(const std::string& prefix);
void write_file(const std::string& path, const std::string& text, mode_t mode = 0644);
std::string read_file(const std::string& path);
// Path of a built program or module given by the environment (meson sets it).
std::string env_path(const char* name);

}  // namespace cairn::test
