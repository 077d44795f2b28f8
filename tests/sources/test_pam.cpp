// pam_cairn.so driven by the real PAM stack: pamtester, pam_unix and a test service,
// inside a private mount namespace whose /etc/pam.d, /etc/passwd and /etc/shadow are
// copies with a test user and service added (the host's files are never touched).
// Verdicts come from the database file, read with the real `cairn query --db`.
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

// sha512-crypt of "correct horse" (fixed salt, so the test data is stable).
const char* kHash = "$6$cairntestsalt$kJ0OQC1.RwNQbE6kTwHdzqUvI69cUPIRnEXIynW/riLHgvwqurBNt9pYv9YtD8WP9zPOBZ/2i.YoWrsnEEHxw/";
const char* kUser = "cairntest";
const char* kService = "cairn-test";

// A copy of /etc/pam.d with the test service, and passwd/shadow with the test user.
struct PamWorld {
  std::string dir;
  std::vector<std::pair<std::string, std::string>> binds;

  PamWorld(const std::string& socket, int timeout_ms, const std::string& extra = "") {
    dir = make_temp_dir("cairn-pam");
    std::string out;
    cr_assert_eq(run_capture({"/bin/cp", "-a", "/etc/pam.d", dir + "/pam.d"}, out), 0);
    std::string mod = env_path("PAM_CAIRN");
    cr_assert(!mod.empty(), "PAM_CAIRN not set");
    std::string opts = "socket=" + socket + " timeout_ms=" + std::to_string(timeout_ms);
    // The pam_faillock pattern (README): pam_unix's success jumps over the failure line.
    write_file(dir + "/pam.d/" + kService,
               "auth     [success=1 default=bad]  pam_unix.so nodelay\n"
               "auth     [default=die]            " + mod + " failure " + opts + "\n"
               "auth     required                 " + mod + " " + opts + " " + extra + "\n"
               "account  required                 pam_permit.so\n"
               "account  required                 " + mod + " " + opts + " " + extra + "\n"
               "session  required                 " + mod + " " + opts + " " + extra + "\n");
    write_file(dir + "/passwd", read_file("/etc/passwd") + kUser + ":x:64999:64999::/nonexistent:/usr/sbin/nologin\n");
    write_file(dir + "/shadow", read_file("/etc/shadow") + kUser + ":" + kHash + ":19000:0:99999:7:::\n", 0640);
    binds = {{dir + "/pam.d", "/etc/pam.d"}, {dir + "/passwd", "/etc/passwd"}, {dir + "/shadow", "/etc/shadow"}};
  }
  ~PamWorld() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  NsResult login(const std::string& password, const std::vector<std::string>& ops) {
    NsCommand c;
    c.binds = binds;
    c.argv = {"/usr/bin/pamtester", "-I", "rhost=10.1.2.3", "-I", "tty=pts/9", "-I", "ruser=bob", kService, kUser};
    c.argv.insert(c.argv.end(), ops.begin(), ops.end());
    c.input = password + "\n";
    c.env = {"PATH=/usr/bin:/bin", "LANG=C"};
    return run_in_namespace(c);
  }
};

void setup() {
  if (!can_unshare_mounts()) cr_skip_test("needs root and a private mount namespace");
  if (access("/usr/bin/pamtester", X_OK) != 0) cr_skip_test("pamtester is not installed (./dev deps)");
}

// The event's trusted fields are pamtester's (the process that ran PAM), and its fields
// are the PAM items.
void expect_from_pamtester(const std::string& ev, pid_t pid, const char* outcome) {
  cr_assert(ev.find(json_num("pid", pid)) != std::string::npos, "pid is not pamtester's %d: %s", pid, ev.c_str());
  cr_assert(ev.find(json_str("comm", "pamtester")) != std::string::npos, "%s", ev.c_str());
  cr_assert(ev.find(json_num("uid", 0)) != std::string::npos, "%s", ev.c_str());
  cr_assert(ev.find(json_str("actor", kUser)) != std::string::npos, "%s", ev.c_str());
  cr_assert(ev.find(json_str("outcome", outcome)) != std::string::npos, "%s", ev.c_str());
  for (auto kv : {json_str("service", kService), json_str("user", kUser), json_str("rhost", "10.1.2.3"),
                  json_str("ruser", "bob"), json_str("tty", "pts/9")})
    cr_assert(ev.find(kv) != std::string::npos, "missing %s in %s", kv.c_str(), ev.c_str());
}

}  // namespace

TestSuite(pam, .init = setup, .timeout = 120);

Test(pam, login_records_auth_account_and_session_with_pamtesters_identity) {
  TestDaemon d("cairn-pam");
  cr_assert(d.start());
  PamWorld w(d.socket(), 2000);
  NsResult r = w.login("correct horse", {"authenticate", "acct_mgmt", "open_session", "close_session"});
  cr_assert_eq(r.exit_code, 0, "pamtester: %s", r.output.c_str());
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  auto all = events_json(d.db());
  const char* order[] = {"AuthSuccess", "AccountGranted", "SessionOpen", "SessionClose"};
  cr_assert_eq(all.size(), 4u, "%zu events", all.size());
  for (size_t i = 0; i < 4; ++i) {
    cr_assert(all[i].find(json_str("type", order[i])) != std::string::npos, "event %zu: %s", i, all[i].c_str());
    expect_from_pamtester(all[i], r.pid, "success");
  }
  cr_assert(all[0].find(json_str("action", "authenticate")) != std::string::npos);
  cr_assert(all[0].find(json_str("target", kService)) != std::string::npos);
}

// A wrong password fails the login and records AuthFailure — and the failure's ack is
// durable even in batched mode with a 60 s commit interval: the test SIGKILLs cairnd
// right after the login and finds the event in the file.
Test(pam, wrong_password_fails_the_login_and_auth_failure_survives_sigkill_in_batched_mode) {
  TestDaemon d("cairn-pam");
  cr_assert(d.start({.args = {"--flush-mode", "batched", "--batch-size", "100000", "--batch-interval-ms", "60000"}}));
  PamWorld w(d.socket(), 2000);
  NsResult r = w.login("wrong horse", {"authenticate"});
  cr_assert_neq(r.exit_code, 0, "a wrong password was accepted: %s", r.output.c_str());
  d.kill9();
  auto all = events_json(d.db());
  auto fail = events_of_type(all, "AuthFailure");
  cr_assert_eq(fail.size(), 1u, "AuthFailure events: %zu of %zu", fail.size(), all.size());
  expect_from_pamtester(fail[0], r.pid, "failure");
  cr_assert(fail[0].find(json_num("severity", 4)) != std::string::npos, "warning: %s", fail[0].c_str());
  cr_assert(events_of_type(all, "AuthSuccess").empty(), "no success recorded for a failed login");
}

// cairnd frozen (SIGSTOP: it accepts connections and never answers), then gone: the
// login completes each time, and no event costs more than timeout_ms.
Test(pam, login_completes_within_the_bound_when_cairnd_is_wedged_or_gone) {
  TestDaemon d("cairn-pam");
  cr_assert(d.start());
  const int timeout_ms = 300;
  PamWorld w(d.socket(), timeout_ms);
  const std::vector<std::string> ops = {"authenticate", "acct_mgmt", "open_session", "close_session"};
  kill(d.pid(), SIGSTOP);
  NsResult wedged = w.login("correct horse", ops);
  kill(d.pid(), SIGCONT);
  cr_assert_eq(wedged.exit_code, 0, "login failed with cairnd wedged: %s", wedged.output.c_str());
  // Four events, each bounded by timeout_ms; the slack is for pamtester and pam_unix.
  cr_assert_lt(wedged.elapsed_ms, 4 * timeout_ms + 3000, "login took %lld ms", (long long)wedged.elapsed_ms);
  cr_assert_geq(wedged.elapsed_ms, 4 * timeout_ms, "it did wait for cairnd (%lld ms)", (long long)wedged.elapsed_ms);
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  NsResult gone = w.login("correct horse", ops);
  cr_assert_eq(gone.exit_code, 0, "login failed with cairnd gone: %s", gone.output.c_str());
  cr_assert_lt(gone.elapsed_ms, 4 * timeout_ms + 3000, "login took %lld ms", (long long)gone.elapsed_ms);
}

// fail=closed: a login that cannot be recorded is refused, though the password is right.
Test(pam, fail_closed_refuses_a_login_that_cannot_be_recorded) {
  TestDaemon d("cairn-pam");
  cr_assert(d.start());
  PamWorld w(d.socket(), 300, "fail=closed");
  NsResult ok = w.login("correct horse", {"authenticate"});
  cr_assert_eq(ok.exit_code, 0, "recorded login refused: %s", ok.output.c_str());
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  NsResult refused = w.login("correct horse", {"authenticate"});
  cr_assert_neq(refused.exit_code, 0, "fail=closed let an unrecorded login through: %s", refused.output.c_str());
}
