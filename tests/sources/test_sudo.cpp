// The sudo audit plugin inside the real sudo: a private mount namespace binds a test
// sudo.conf (sudoers plus cairn_sudo.so) over /etc/sudo.conf and a test sudoers over
// /etc/sudoers, so the host's configuration is never touched. An allowed command, a
// refused one and an unknown runas user; verdicts from the database file.
#include <criterion/criterion.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "harness.hpp"
#include "sources_support.hpp"

using namespace cairn::test;

namespace {

struct SudoWorld {
  std::string dir;
  std::vector<std::pair<std::string, std::string>> binds;

  SudoWorld(const std::string& socket, const std::string& extra = "") {
    dir = make_temp_dir("cairn-sudo");
    std::string plugin = env_path("CAIRN_SUDO");
    cr_assert(!plugin.empty(), "CAIRN_SUDO not set");
    // The README's line, with the test daemon's socket.
    write_file(dir + "/sudo.conf",
               "Plugin sudoers_policy sudoers.so\n"
               "Plugin sudoers_io sudoers.so\n"
               "Plugin sudoers_audit sudoers.so\n"
               "Plugin cairn_audit " + plugin + " socket=" + socket + " timeout_ms=2000 " + extra + "\n");
    // !fqdn: no DNS lookup of the host name (Debian builds sudo --with-fqdn).
    write_file(dir + "/sudoers",
               "Defaults !fqdn, !lecture, env_reset\n"
               // Without a password to ask for, a disallowed command is refused as such
               // (with authentication, sudo -n fails earlier: "a password is required").
               "Defaults:nobody !authenticate\n"
               "root ALL=(ALL:ALL) NOPASSWD: ALL\n"
               "nobody ALL=(root) NOPASSWD: /usr/bin/true\n", 0440);
    binds = {{dir + "/sudo.conf", "/etc/sudo.conf"}, {dir + "/sudoers", "/etc/sudoers"}};
  }
  ~SudoWorld() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  // Runs `sudo -n ARGS` as root, or as nobody through setpriv (sudo is setuid root, so
  // the sudo process is the same either way: the one cairnd must name).
  NsResult sudo(const std::vector<std::string>& args, bool as_nobody = false, const std::string& cwd = "/") {
    NsCommand c;
    c.binds = binds;
    if (as_nobody)
      c.argv = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/sudo", "-n"};
    else
      c.argv = {"/usr/bin/env", "-C", cwd, "/usr/bin/sudo", "-n"};
    c.argv.insert(c.argv.end(), args.begin(), args.end());
    c.env = {"PATH=/usr/bin:/bin", "LANG=C"};
    return run_in_namespace(c);
  }
};

void setup() {
  if (!can_unshare_mounts()) cr_skip_test("needs root and a private mount namespace");
  if (access("/usr/bin/sudo", X_OK) != 0) cr_skip_test("sudo is not installed (./dev deps)");
}

void expect(const std::string& ev, const std::string& needle) {
  cr_assert(ev.find(needle) != std::string::npos, "missing %s in %s", needle.c_str(), ev.c_str());
}

}  // namespace

TestSuite(sudo, .init = setup, .timeout = 120);

Test(sudo, allowed_command_is_recorded_with_command_line_runas_and_cwd) {
  TestDaemon d("cairn-sudo");
  cr_assert(d.start());
  SudoWorld w(d.socket());
  NsResult r = w.sudo({"-u", "nobody", "-g", "nogroup", "/usr/bin/id", "-u"}, false, "/tmp");
  cr_assert_eq(r.exit_code, 0, "sudo: %s", r.output.c_str());
  cr_assert(r.output.find("65534") != std::string::npos, "the command ran: %s", r.output.c_str());
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  auto ev = events_of_type(events_json(d.db()), "SudoCommand");
  cr_assert_eq(ev.size(), 1u);
  // Trusted fields: sudo's own process.
  expect(ev[0], json_num("pid", r.pid));
  expect(ev[0], json_str("comm", "sudo"));
  expect(ev[0], json_str("outcome", "success"));
  expect(ev[0], json_str("actor", "root"));
  expect(ev[0], json_str("target", "/usr/bin/id"));
  expect(ev[0], json_str("command", "/usr/bin/id -u"));
  expect(ev[0], json_str("runas_user", "nobody"));
  expect(ev[0], json_str("runas_group", "nogroup"));
  expect(ev[0], json_str("cwd", "/tmp"));
  expect(ev[0], json_str("user_pid", std::to_string(r.pid)));
}

Test(sudo, refused_command_is_recorded_with_the_reason_and_durably) {
  TestDaemon d("cairn-sudo");
  // Batched with a 60 s interval: only the sync flag can make the refusal durable.
  cr_assert(d.start({.args = {"--flush-mode", "batched", "--batch-size", "100000", "--batch-interval-ms", "60000"}}));
  SudoWorld w(d.socket());
  NsResult r = w.sudo({"/usr/bin/false", "--flag"}, /*as_nobody=*/true);
  cr_assert_neq(r.exit_code, 0, "sudo ran a command sudoers does not allow: %s", r.output.c_str());
  d.kill9();
  auto all = events_json(d.db());
  auto ev = events_of_type(all, "SudoRejected");
  cr_assert_eq(ev.size(), 1u, "%zu events: %s", all.size(), all.empty() ? "" : all[0].c_str());
  expect(ev[0], json_num("pid", r.pid));
  expect(ev[0], json_str("comm", "sudo"));
  expect(ev[0], json_str("outcome", "failure"));
  expect(ev[0], json_str("actor", "nobody"));
  expect(ev[0], json_str("uid", "65534"));
  expect(ev[0], json_str("command", "/usr/bin/false --flag"));
  expect(ev[0], json_str("reason", "command not allowed"));
  expect(ev[0], json_num("severity", 4));
  cr_assert(events_of_type(all, "SudoCommand").empty());
}

// fail=closed: sudo does not run a command the plugin could not record.
Test(sudo, fail_closed_stops_a_command_that_cannot_be_recorded) {
  TestDaemon d("cairn-sudo");
  cr_assert(d.start());
  std::string sock = d.socket();
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  SudoWorld open_world(sock);
  NsResult ran = open_world.sudo({"/usr/bin/echo", "ran-anyway"});
  cr_assert_eq(ran.exit_code, 0, "fail=open (the default) runs the command: %s", ran.output.c_str());
  cr_assert(ran.output.find("not recorded in cairn") != std::string::npos, "and says so: %s", ran.output.c_str());
  SudoWorld closed_world(sock, "fail=closed");
  NsResult stopped = closed_world.sudo({"/usr/bin/echo", "must-not-run"});
  cr_assert_neq(stopped.exit_code, 0, "%s", stopped.output.c_str());
  cr_assert(stopped.output.find("must-not-run") == std::string::npos, "the command ran: %s", stopped.output.c_str());
}
