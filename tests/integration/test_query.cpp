// `cairn query -f` against a real cairnd (issue 12): the backlog oldest first, new
// events as they are stored, and a restart of cairnd under it without losing or
// repeating an event.
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
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

namespace {

std::string cli_out(const TestDaemon& d, std::vector<std::string> args, int want_code = 0) {
  std::vector<std::string> argv{cli_path(), "query", "--socket", d.socket()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  int code = run_capture(argv, out);
  cr_assert_eq(code, want_code, "exit %d for %s: %s", code, args.empty() ? "" : args[0].c_str(), out.c_str());
  return out;
}

void send_full(const TestDaemon& d, const std::vector<std::string>& args) {
  std::vector<std::string> argv{cli_path(), "send", "--socket", d.socket()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  cr_assert_eq(run_capture(argv, out), 0, "send: %s", out.c_str());
}

size_t count_lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

}  // namespace

// Each filter and output mode of cairn query against a real cairnd, as an administrator
// uses them (issue 12).
Test(query, filters_output_modes_counts_and_cursors) {
  TestDaemon d;
  cr_assert(d.start(), "cairnd did not start");
  send_full(d, {"--type", "UserLogin", "--actor", "alice", "--outcome", "failure", "--message", "bad password",
                "ip=10.1.2.3"});
  send_full(d, {"--type", "UserLogin", "--actor", "bob", "--outcome", "success", "ip=10.9.9.9"});
  send_full(d, {"--type", "AuthFailure", "--actor", "alice", "--action", "sudo", "--target", "root",
                "--outcome", "failure", "--severity", "err", "ip=10.1.2.3"});
  send_full(d, {"--type", "Noise", "--message", "hello world"});
  auto n = [&](std::vector<std::string> a) { return cli_out(d, a); };
  cr_assert_eq(n({"--count", "-t", "UserLogin", "-t", "AuthFailure"}), "3\n", "types OR'ed");
  cr_assert_eq(n({"--count", "ip=10.1.2.3"}), "2\n", "a fields key");
  cr_assert_eq(n({"--count", "ip=10.1.2.3", "ip=10.9.9.9"}), "3\n", "values of one key OR'ed");
  cr_assert_eq(n({"--count", "ip=10.1.2.3", "type=UserLogin"}), "1\n", "keys AND'ed");
  cr_assert_eq(n({"--count", "--outcome", "failure"}), "2\n");
  cr_assert_eq(n({"--count", "--action", "sudo", "--target", "root"}), "1\n");
  cr_assert_eq(n({"--count", "-p", "err"}), "1\n");
  cr_assert_eq(n({"--count", "-g", "PASSWORD"}), "1\n", "text, any case");
  cr_assert_eq(n({"--count", "--uid", std::to_string(getuid())}), "4\n");
  cr_assert_eq(n({"--count", "--comm", "no-such-comm"}), "0\n");
  cr_assert_eq(n({"--count", "-S", "-1h"}), "4\n");
  cr_assert_eq(n({"--count", "-S", "tomorrow"}), "0\n");
  cr_assert_eq(n({"-o", "cat", "-r", "-g", "o"}), "bad password\nhello world\n", "oldest first, message only");
  cr_assert_eq(n({"-o", "cat", "-n", "1"}), "hello world\n", "newest first");
  std::string j = n({"-o", "json", "-n", "1", "-t", "AuthFailure"});
  cr_assert(j.find("\"received_utc\":\"") != std::string::npos && j.find("\"ip\":\"10.1.2.3\"") != std::string::npos,
            "%s", j.c_str());
  cr_assert_gt(count_lines(n({"-o", "json-pretty", "-n", "1"})), 5u);
  std::string v = n({"-o", "verbose", "-n", "1", "-t", "AuthFailure"});
  cr_assert(v.find("    fields.ip=10.1.2.3\n") != std::string::npos && v.find("    action=sudo\n") != std::string::npos,
            "%s", v.c_str());
  cr_assert(n({"-t", "UserLogin"}).find("ip=10.9.9.9") != std::string::npos, "fields shown in the short view");
  std::string ex = n({"-o", "export", "-r"});
  cr_assert_eq(count_lines(ex), 4u);
  cr_assert(ex.find("\"received\"") == std::string::npos && ex.find("\"pid\"") == std::string::npos, "%s", ex.c_str());
  // export reads back: replaying it stores the same events again.
  std::string out;
  std::string path = d.dir() + "/export.ndjson";
  {
    FILE* f = std::fopen(path.c_str(), "w");
    std::fputs(ex.c_str(), f);
    std::fclose(f);
  }
  cr_assert_eq(run_capture({"/bin/sh", "-c", cli_path() + " send --stdin --socket " + d.socket() + " < " + path}, out), 0,
               "%s", out.c_str());
  cr_assert_eq(n({"--count", "ip=10.1.2.3"}), "4\n");
  // --cursor-file: the first run shows the newest page and saves the cursor; the next
  // run shows only what came after it.
  std::string cf = d.dir() + "/cursor";
  cr_assert_eq(count_lines(n({"-o", "cat", "--all", "--cursor-file", cf})), 8u);
  send_full(d, {"--type", "Noise", "--message", "later"});
  cr_assert_eq(n({"-o", "cat", "--cursor-file", cf}), "later\n");
  cr_assert_eq(n({"-o", "cat", "--cursor-file", cf}), "");
  // --after continues a page.
  std::string page = n({"-n", "2"});
  size_t at = page.find("next: --after ");
  cr_assert(at != std::string::npos, "%s", page.c_str());
  std::string cursor = page.substr(at + 14, page.find('\n', at) - at - 14);
  cr_assert_eq(count_lines(n({"-o", "cat", "--after", cursor, "--all"})), 7u);
}

namespace {

std::string file_text(const std::string& path) {
  std::string s;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[256];
    size_t n = std::fread(buf, 1, sizeof buf, f);
    s.assign(buf, n);
    std::fclose(f);
  }
  return s;
}

// Waits until `path` (in `dir`) holds `want`: woken by inotify when a file is renamed
// into `dir` (how the CLI replaces a cursor file), bounded by the deadline.
bool wait_file(const std::string& dir, const std::string& path, const std::string& want, int timeout_ms) {
  int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  cr_assert_geq(fd, 0);
  cr_assert_geq(inotify_add_watch(fd, dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE), 0);
  int64_t end = now_ms() + timeout_ms;
  bool ok = false;
  while (!(ok = file_text(path) == want)) {
    int left = static_cast<int>(end - now_ms());
    if (left <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left) > 0) {
      char buf[4096];
      while (read(fd, buf, sizeof buf) > 0) {
      }
    }
  }
  close(fd);
  return ok;
}

}  // namespace

// -f with --cursor-file: starts after the saved cursor, shows pushed events, and keeps the
// file at the newest seq shown, so the next run resumes there.
Test(query, follow_with_a_cursor_file_resumes_after_it_and_keeps_it_current) {
  TestDaemon d;
  cr_assert(d.start(), "cairnd did not start");
  send(d, 0);
  std::string cf = d.dir() + "/cursor";
  cli_out(d, {"-t", "Follow", "--cursor-file", cf});  // saves the cursor: m0's seq
  send(d, 1);
  {
    Follower f({cli_path(), "query", "-f", "-t", "Follow", "-o", "json", "--cursor-file", cf, "--socket", d.socket()});
    cr_assert(f.wait_lines(1, 20000), "after the cursor: %s", f.got.c_str());
    send(d, 2);
    cr_assert(f.wait_lines(2, 20000), "pushed: %s", f.got.c_str());
    cr_assert(messages(f.got) == std::vector<std::string>({"m1", "m2"}), "%s", f.got.c_str());
    // The file is rewritten just after the line is printed: wait for it (inotify).
    size_t at = f.got.rfind("{\"seq\":");
    std::string m2 = f.got.substr(at + 7, f.got.find(',', at) - at - 7) + "\n";
    cr_assert(wait_file(d.dir(), cf, m2, 20000), "the cursor file holds m2's seq %s", m2.c_str());
  }
  send(d, 3);
  // The file was rewritten with m2's seq: a plain run shows only what came after.
  cr_assert_eq(cli_out(d, {"-o", "cat", "--cursor-file", cf}), "m3\n");
}
