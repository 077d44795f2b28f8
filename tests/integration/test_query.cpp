// `cairn query -f` against a real cairnd (issue 12): the backlog oldest first, new
// events as they are stored, and a restart of cairnd under it without losing or
// repeating an event.
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "../support/harness.hpp"

using namespace cairn::test;

TestSuite(query, .timeout = 120);

namespace {

// A running `cairn query -f` whose stdout is read through a pipe.
struct Follower {
  pid_t pid = -1;
  int fd = -1;
  std::string got;
  explicit Follower(const std::vector<std::string>& args) {
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
      dup2(p[1], 1);
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(p[1]);
    fd = p[0];
  }
  ~Follower() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (fd >= 0) close(fd);
  }
  size_t lines() const { return static_cast<size_t>(std::count(got.begin(), got.end(), '\n')); }
  // Reads until `n` lines arrived or the deadline passed (poll: no sleeping).
  bool wait_lines(size_t n, int timeout_ms) {
    int64_t end = now_ms() + timeout_ms;
    while (lines() < n) {
      int left = static_cast<int>(end - now_ms());
      if (left <= 0) return false;
      pollfd pfd{fd, POLLIN, 0};
      if (poll(&pfd, 1, left) <= 0) continue;
      char buf[4096];
      ssize_t r = read(fd, buf, sizeof buf);
      if (r <= 0) return false;
      got.append(buf, static_cast<size_t>(r));
    }
    return true;
  }
};

void send(const TestDaemon& d, int i) {
  std::string out;
  int code = run_capture({cli_path(), "send", "--socket", d.socket(), "--type", "Follow", "--message",
                          "m" + std::to_string(i)},
                         out);
  cr_assert_eq(code, 0, "cairn send %d: %s", i, out.c_str());
}

// The messages of the JSON lines, in order.
std::vector<std::string> messages(const std::string& text) {
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = text.find("\"message\":\"", at)) != std::string::npos) {
    at += 11;
    out.push_back(text.substr(at, text.find('"', at) - at));
  }
  return out;
}

}  // namespace

Test(query, follow_shows_every_event_once_in_order_across_a_restart_of_cairnd) {
  TestDaemon d;
  cr_assert(d.start(), "cairnd did not start");
  for (int i = 0; i < 3; ++i) send(d, i);
  Follower f({cli_path(), "query", "-f", "-t", "Follow", "-o", "json", "--socket", d.socket()});
  cr_assert(f.wait_lines(3, 20000), "backlog: %s", f.got.c_str());
  for (int i = 3; i < 6; ++i) send(d, i);
  cr_assert(f.wait_lines(6, 20000), "live events: %s", f.got.c_str());
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  cr_assert(d.start(), "cairnd did not start again");
  for (int i = 6; i < 10; ++i) send(d, i);
  cr_assert(f.wait_lines(10, 30000), "after the restart: %s", f.got.c_str());
  std::vector<std::string> want;
  for (int i = 0; i < 10; ++i) want.push_back("m" + std::to_string(i));
  cr_assert(messages(f.got) == want, "each event once, in order: %s", f.got.c_str());
  cr_assert(f.wait_lines(11, 300) == false, "nothing more: %s", f.got.c_str());
}
