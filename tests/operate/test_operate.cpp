// Operating cairnd as an administrator would: --check-config exit codes and messages,
// SIGHUP reload changing who may query (read back through the real CLI run as another
// user), and `cairn stats -o prometheus` read by Prometheus' own text parser.
#include <criterion/criterion.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace cairn::test;

namespace {

struct Run {
  int code = -1;
  std::string out, err;
};

// Runs argv with stdout and stderr captured; as `uid` (with primary `gid` and exactly
// the supplementary `groups`) when uid >= 0.
Run run(const std::vector<std::string>& argv, int uid = -1, gid_t gid = 0, std::vector<gid_t> groups = {}) {
  std::string dir = "/tmp/cairn-operate-" + std::to_string(getpid()) + "-" + std::to_string(now_ms());
  std::string out_path = dir + ".out", err_path = dir + ".err";
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    if (uid >= 0) {
      if (setgroups(groups.size(), groups.data()) != 0 || setgid(gid) != 0 ||
          setuid(static_cast<uid_t>(uid)) != 0)
        _exit(126);
    }
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execv(a[0], a.data());
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  Run r;
  r.code = exit_code(st);
  std::ifstream o(out_path), e(err_path);
  r.out.assign(std::istreambuf_iterator<char>(o), {});
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  unlink(out_path.c_str());
  unlink(err_path.c_str());
  return r;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

constexpr int kNobody = 65534;

}  // namespace

Test(operate, check_config_exit_codes_and_named_errors) {
  TestDaemon d("cairn-check");
  std::string good = d.dir() + "/good.conf", bad = d.dir() + "/bad.conf";
  write_file(good, "# fine\nflush-mode = hybrid\ncritical-types =\nquery-uids = 1000, 1001\n");
  write_file(bad, "flush-mode = hybrid\nbatch-size = many\nno-such-key = 1\n");
  Run ok = run({cairnd_path(), "--check-config", "--config", good});
  cr_assert_eq(ok.code, 0, "%s", ok.err.c_str());
  cr_assert(ok.out.find("\nflush-mode = hybrid\n") != std::string::npos, "%s", ok.out.c_str());
  cr_assert(ok.out.find("\ncritical-types = none\n") != std::string::npos, "%s", ok.out.c_str());
  cr_assert(ok.out.find("\nquery-uids = 1000,1001\n") != std::string::npos, "%s", ok.out.c_str());
  Run no = run({cairnd_path(), "--check-config", "--config", bad});
  cr_assert_eq(no.code, 1);
  cr_assert(no.err.find(bad + ":2: batch-size: 'many' is not a number") != std::string::npos, "%s", no.err.c_str());
  cr_assert(no.err.find(bad + ":3: no-such-key: unknown option") != std::string::npos, "%s", no.err.c_str());
  cr_assert(no.out.empty(), "nothing on stdout for an invalid configuration: %s", no.out.c_str());
  // Started (not checked) with the bad file, cairnd refuses to run: usage status 2.
  Run start = run({cairnd_path(), "--config", bad, "--db", d.db(), "--socket", d.socket()});
  cr_assert_eq(start.code, 2, "%s", start.err.c_str());
  // The shipped file, as installed, is valid.
  std::string shipped = std::string(std::getenv("CAIRN_SOURCE_DIR")) + "/etc/cairnd.conf";
  Run s = run({cairnd_path(), "--check-config", "--config", shipped});
  cr_assert_eq(s.code, 0, "%s", s.err.c_str());
}

Test(operate, sighup_changes_who_may_query_and_names_what_needs_a_restart) {
  TestDaemon d("cairn-reload");
  chmod(d.dir().c_str(), 0755);  // nobody must reach the socket to be refused by cairnd
  std::string conf = d.dir() + "/cairnd.conf";
  write_file(conf, "socket-mode = 0666\nquery-uids =\nquery-gids =\n");
  cr_assert(d.start({.args = {"--config", conf, "--seal-interval", "0"}}));
  std::vector<std::string> stats = {cli_path(), "stats", "--socket", d.socket(), "-o", "json"};

  Run before = run(stats, kNobody, kNobody);
  cr_assert_eq(before.code, 2, "nobody may not read stats yet: %s", before.out.c_str());
  cr_assert(before.err.find("permission_denied") != std::string::npos, "%s", before.err.c_str());

  // Allow nobody; change an option that cannot change live.
  write_file(conf, "socket-mode = 0666\nquery-uids = 65534\nquery-gids =\nflush-mode = batched\n");
  kill(d.pid(), SIGHUP);
  cr_assert(d.notify().wait_for("reloaded", 10'000), "no reload status");
  const std::string& status = d.notify().log().back();
  cr_assert(status.find("applied query-uids") != std::string::npos, "%s", status.c_str());
  cr_assert(status.find("needs a restart: flush-mode") != std::string::npos, "%s", status.c_str());
  Run after = run(stats, kNobody, kNobody);
  cr_assert_eq(after.code, 0, "nobody may read stats after the reload: %s", after.err.c_str());
  cr_assert(after.out.find("\"flush_mode\":\"immediate\"") != std::string::npos,
            "flush-mode must not change without a restart: %s", after.out.c_str());

  // Through a supplementary group: the way an administrator is in cairn-readers.
  write_file(conf, "socket-mode = 0666\nquery-uids =\nquery-gids = 4242\n");
  kill(d.pid(), SIGHUP);
  cr_assert(d.notify().wait_for("applied query-uids, query-gids", 10'000));
  Run plain = run(stats, kNobody, kNobody);
  cr_assert_eq(plain.code, 2, "query-uids emptied again: %s", plain.out.c_str());
  Run member = run(stats, kNobody, kNobody, {4242});
  cr_assert_eq(member.code, 0, "a supplementary member of a query group may read: %s", member.err.c_str());

  // A file that does not parse changes nothing.
  write_file(conf, "socket-mode = 0666\nquery-uids = 65534\nquery-gids = 4242\nbatch-size = x\n");
  kill(d.pid(), SIGHUP);
  cr_assert(d.notify().wait_for("reload failed", 10'000));
  Run still = run(stats, kNobody, kNobody);
  cr_assert_eq(still.code, 2, "a bad file must not apply its query-uids: %s", still.out.c_str());
  std::ifstream log(d.log_path());
  std::string text((std::istreambuf_iterator<char>(log)), {});
  cr_assert(text.find(conf + ":4: batch-size: 'x' is not a number") != std::string::npos, "%s", text.c_str());
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
}

Test(operate, prometheus_output_parses_with_prometheus_client) {
  TestDaemon d("cairn-prom");
  cr_assert(d.start({.args = {"--no-config", "--seal-interval", "0"}}));
  for (int i = 0; i < 5; ++i) {
    std::string out;
    cr_assert_eq(run_capture({cli_path(), "send", "--socket", d.socket(), "--type", i % 2 ? "UserLogin" : "Odd.Type"}, out), 0);
  }
  std::string checker = std::string(std::getenv("CAIRN_SOURCE_DIR")) + "/tests/operate/check_prometheus.py";
  std::string prom = d.dir() + "/cairn.prom";
  Run w = run({cli_path(), "stats", "--socket", d.socket(), "-o", "prometheus", "--textfile", prom});
  cr_assert_eq(w.code, 0, "%s", w.err.c_str());
  struct stat st {};
  cr_assert_eq(stat(prom.c_str(), &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0644u, "node_exporter's user must read it");
  Run up = run({"/usr/bin/python3", checker, prom, "up"});
  cr_assert_eq(up.code, 0, "%s%s", up.out.c_str(), up.err.c_str());
  // Printed to stdout it is the same format.
  Run p = run({cli_path(), "stats", "--socket", d.socket(), "-o", "prometheus"});
  cr_assert_eq(p.code, 0);
  cr_assert(p.out.find("# TYPE cairn_events_appended_total counter\ncairn_events_appended_total 5\n") !=
                std::string::npos, "%s", p.out.c_str());
  // cairnd gone: the file now says so instead of keeping the last figures.
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  Run down = run({cli_path(), "stats", "--socket", d.socket(), "-o", "prometheus", "--textfile", prom});
  cr_assert_eq(down.code, 2);
  Run parsed = run({"/usr/bin/python3", checker, prom, "down"});
  cr_assert_eq(parsed.code, 0, "%s%s", parsed.out.c_str(), parsed.err.c_str());
  // --db: only what the file knows, still valid.
  Run file = run({cli_path(), "stats", "--db", d.db(), "-o", "prometheus", "--textfile", prom});
  cr_assert_eq(file.code, 0, "%s", file.err.c_str());
  Run fparsed = run({"/usr/bin/python3", checker, prom, "file"});
  cr_assert_eq(fparsed.code, 0, "%s%s", fparsed.out.c_str(), fparsed.err.c_str());
}
