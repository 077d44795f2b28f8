// sources_support.cpp — see sources_support.hpp.
#include "sources_support.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "harness.hpp"

namespace cairn::test {

bool can_unshare_mounts() {
  if (geteuid() != 0) return false;
  pid_t pid = fork();
  if (pid == 0) _exit(unshare(CLONE_NEWNS) == 0 ? 0 : 1);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

NsResult run_in_namespace(const NsCommand& cmd) {
  NsResult res;
  // Everything the child needs is built before fork: after it, only system calls.
  std::vector<char*> argv, envp;
  for (const auto& a : cmd.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : cmd.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return res;
  int64_t t0 = now_ms();
  pid_t pid = fork();
  if (pid < 0) return res;
  if (pid == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    if (unshare(CLONE_NEWNS) != 0) _exit(126);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(126);
    for (const auto& [src, dst] : cmd.binds)
      if (mount(src.c_str(), dst.c_str(), nullptr, MS_BIND, nullptr) != 0) _exit(126);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  res.pid = pid;
  close(in[0]);
  close(out[1]);
  (void)!write(in[1], cmd.input.data(), cmd.input.size());  // small: fits the pipe
  close(in[1]);
  int64_t deadline = now_ms() + 60'000;
  char buf[4096];
  for (;;) {
    int left = static_cast<int>(deadline - now_ms());
    if (left <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, left) <= 0) continue;
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    res.output.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  res.elapsed_ms = now_ms() - t0;
  res.exit_code = exit_code(st);
  return res;
}

std::vector<std::string> events_json(const std::string& db) {
  std::string out;
  run_capture({cli_path(), "query", "--db", db, "--limit", "10000", "-o", "json"}, out);
  std::vector<std::string> lines;
  std::istringstream is(out);
  for (std::string l; std::getline(is, l);)
    // cairnd's own records (seals, lost-seq placeholders) are not the sources' events.
    if (!l.empty() && l[0] == '{' && l.find("\"type\":\"cairn.") == std::string::npos) lines.push_back(l);
  // The CLI prints newest first; tests read in the order things happened.
  return {lines.rbegin(), lines.rend()};
}

std::vector<std::string> events_of_type(const std::vector<std::string>& lines, const std::string& type) {
  std::vector<std::string> out;
  for (const auto& l : lines)
    if (l.find(json_str("type", type)) != std::string::npos) out.push_back(l);
  return out;
}

std::string json_num(const std::string& key, long long v) { return "\"" + key + "\":" + std::to_string(v); }
std::string json_str(const std::string& key, const std::string& v) { return "\"" + key + "\":\"" + v + "\""; }

std::string make_temp_dir(const std::string& prefix) {
  std::string t = "/tmp/" + prefix + "-XXXXXX";
  char* d = mkdtemp(t.data());
  return d ? std::string(d) : std::string();
}

void write_file(const std::string& path, const std::string& text, mode_t mode) {
  {
    std::ofstream f(path, std::ios::trunc);
    f << text;
  }
  chmod(path.c_str(), mode);
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string env_path(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace cairn::test
