// systemd integration without a running systemd: systemd's own tools, a NOTIFY_SOCKET
// the test owns, and socket activation done the way systemd does it.
#include <cairn/cairn.h>
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

using namespace cairn::test;

namespace {

std::string source_dir() {
  const char* s = std::getenv("CAIRN_SOURCE_DIR");
  return s ? s : ".";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

cairn_client* connect_client(const std::string& sock, int reconnect_ms) {
  cairn_options o;
  cairn_options_init(&o);
  o.reconnect_timeout_ms = reconnect_ms;
  o.client_name = "systemd-test";
  cairn_client* c = nullptr;
  int rc = cairn_open(&c, sock.c_str(), &o);
  cr_assert_eq(rc, 0, "cairn_open: %s", cairn_strerror(rc));
  return c;
}

}  // namespace

TestSuite(systemd, .timeout = 180);

Test(systemd, units_pass_systemd_analyze_verify) {
  if (access("/usr/bin/systemd-analyze", X_OK) != 0) {
    cr_skip_test("systemd-analyze is not installed");
  }
  TestDaemon d("cairn-units");
  // The installed unit names /usr/sbin/cairnd; check the same text pointing at the
  // freshly built binary (verify insists that ExecStart exists).
  std::string unit = slurp(source_dir() + "/systemd/cairnd.service.in");
  cr_assert(!unit.empty(), "cannot read systemd/cairnd.service.in");
  char real[4096];
  std::string bin = realpath(cairnd_path().c_str(), real) ? real : cairnd_path();
  std::string dir = bin.substr(0, bin.rfind('/'));
  size_t at = unit.find("@sbindir@");
  cr_assert(at != std::string::npos);
  unit.replace(at, 9, dir);
  std::ofstream(d.dir() + "/cairnd.service") << unit;
  std::ofstream(d.dir() + "/cairnd.socket") << slurp(source_dir() + "/systemd/cairnd.socket");
  // --man=no: the man pages Documentation= names exist once installed (suite install
  // checks them), not on a machine that runs the tests from the build tree.
  std::string out;
  int code = run_capture({"/bin/sh", "-c",
                          "cd '" + d.dir() + "' && systemd-analyze verify --man=no ./cairnd.socket "
                          "./cairnd.service 2>&1"},
                         out);
  cr_assert_eq(code, 0, "systemd-analyze verify failed:\n%s", out.c_str());
  code = run_capture({"/bin/sh", "-c",
                      "cd '" + d.dir() + "' && systemd-analyze security --offline=true "
                      "--threshold=20 ./cairnd.service 2>&1 | tail -1"},
                     out);
  cr_assert(out.find("Overall exposure level") != std::string::npos, "%s", out.c_str());
  std::printf("%s", out.c_str());
}

Test(systemd, ready_only_after_database_is_open_then_watchdog_then_stopping) {
  TestDaemon d;
  // WATCHDOG_USEC as systemd sets it; no WATCHDOG_PID, which sd_watchdog_enabled accepts.
  cr_assert(d.start({.env = {"WATCHDOG_USEC=1000000"}}));
  // READY=1 came: the database must exist with its schema already.
  auto rows = read_rows(d.db());
  (void)rows;
  struct stat st {};
  cr_assert_eq(stat(d.db().c_str(), &st), 0, "READY=1 before the database exists");
  std::string out;
  cr_assert_eq(run_capture({cli_path(), "verify", "--db", d.db()}, out), 0,
               "READY=1 before the store was usable: %s", out.c_str());
  // WATCHDOG=1 pings at half of WATCHDOG_USEC: collect three, each within the period.
  std::vector<int64_t> pings;
  int64_t deadline = now_ms() + 10'000;
  while (pings.size() < 4 && now_ms() < deadline) {
    auto m = d.notify().next(static_cast<int>(deadline - now_ms()));
    if (m && m->find("WATCHDOG=1") != std::string::npos) pings.push_back(now_ms());
  }
  cr_assert_geq(pings.size(), 4u, "only %zu watchdog pings in 10 s", pings.size());
  for (size_t i = 1; i < pings.size(); ++i)
    cr_assert_lt(pings[i] - pings[i - 1], 1000, "watchdog gap %lld ms exceeds WATCHDOG_USEC",
                 static_cast<long long>(pings[i] - pings[i - 1]));
  kill(d.pid(), SIGTERM);
  cr_assert(d.notify().wait_for("STOPPING=1", 10'000), "no STOPPING=1 after SIGTERM");
  cr_assert_eq(exit_code(d.stop(0)), 0);
}

Test(systemd, status_line_reports_live_figures) {
  TestDaemon d;
  cr_assert(d.start());
  bool ready_has_status = false;
  for (const auto& m : d.notify().log())
    if (m.find("READY=1") != std::string::npos && m.find("STATUS=") != std::string::npos)
      ready_has_status = true;
  cr_assert(ready_has_status, "READY=1 should carry a STATUS= line");
  cr_assert(d.notify().wait_for("STATUS=seq", 5'000), "no periodic STATUS= update");
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
}

Test(systemd, socket_activated_by_systemd_socket_activate) {
  if (access("/usr/bin/systemd-socket-activate", X_OK) != 0)
    cr_skip_test("systemd-socket-activate is not installed");
  TestDaemon d;
  cr_assert(d.start({.wait_ready = false, .via_socket_activate = true}));
  // systemd-socket-activate binds first, then starts cairnd on our first connection.
  int64_t deadline = now_ms() + 10'000;
  struct stat st {};
  while (stat(d.socket().c_str(), &st) != 0 && now_ms() < deadline) d.notify().next(20);
  cairn_client* c = connect_client(d.socket(), 10'000);
  cairn_event e{};
  e.type = "ActivatedHello";
  e.severity = -1;
  cairn_ack ack{};
  int rc = cairn_append(c, &e, &ack);
  cr_assert_eq(rc, 0, "append via activated socket: %s", cairn_strerror(rc));
  cr_assert_eq(ack.seq, 1u);
  cr_assert(d.notify().wait_for("READY=1", 10'000) ||
                [&] {
                  for (auto& m : d.notify().log())
                    if (m.find("READY=1") != std::string::npos) return true;
                  return false;
                }(),
            "no READY=1 from the activated daemon");
  cairn_close(c);
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  cr_assert_eq(read_rows(d.db()).size(), 1u);
}

Test(systemd, restart_under_socket_activation_loses_and_duplicates_nothing) {
  TestDaemon d;
  int lfd = make_listening_socket(d.socket());
  cr_assert(d.start({.listen_fd = lfd}));
  constexpr int kEvents = 10'000;
  std::atomic<int> acked{0};
  std::atomic<int> failed{0};
  std::thread client([&] {
    cairn_client* c = connect_client(d.socket(), 60'000);
    std::map<uint64_t, int> outstanding;
    auto collect = [&] {
      uint64_t t = 0;
      cairn_ack a{};
      int rc = cairn_next_ack(c, &t, &a);
      if (rc == 0) {
        ++acked;
      } else {
        ++failed;
        const char *code = nullptr, *msg = nullptr;
        cairn_last_error(c, &code, nullptr, nullptr, &msg);
        std::fprintf(stderr, "event %d failed: %s %s %s\n", outstanding[t], cairn_strerror(rc),
                     code ? code : "", msg ? msg : "");
      }
      outstanding.erase(t);
    };
    for (int i = 0; i < kEvents; ++i) {
      char idem[32];
      std::snprintf(idem, sizeof idem, "restart-%08d", i);
      cairn_event e{};
      e.type = "DataAccess";
      e.severity = -1;
      e.idem = idem;
      e.idem_len = std::strlen(idem);
      uint64_t t = 0;
      if (cairn_append_async(c, &e, &t) != 0) {
        ++failed;
        continue;
      }
      outstanding[t] = i;
      while (outstanding.size() > 64) collect();
    }
    while (!outstanding.empty()) collect();
    cairn_close(c);
  });
  // Restart twice while the client streams; the listening socket stays open here, as
  // systemd keeps it, so connections made meanwhile wait in the backlog.
  for (int round = 0; round < 2; ++round) {
    int64_t deadline = now_ms() + 60'000;
    int target = (round + 1) * kEvents / 3;
    while (acked.load() < target && now_ms() < deadline) d.notify().next(10);
    cr_assert_eq(exit_code(d.stop(SIGTERM)), 0, "SIGTERM exit status");
    cr_assert(d.start({.listen_fd = lfd}), "restart %d", round);
  }
  client.join();
  close(lfd);
  cr_assert_eq(failed.load(), 0, "%d events failed", failed.load());
  cr_assert_eq(acked.load(), kEvents);
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0);
  auto rows = read_rows(d.db());
  cr_assert_eq(rows.size(), static_cast<size_t>(kEvents), "%zu rows for %d events", rows.size(),
               kEvents);
  std::string problem = check_database(d.db());
  cr_assert(problem.empty(), "%s", problem.c_str());
}

// A service manager that stops reading notifications (a full NOTIFY_SOCKET queue) must not
// stall cairnd: after READY=1 every message goes out non-blocking. The test fills the
// queue itself, as a stuck manager leaves it, then keeps appending across many watchdog
// periods (each ping meets the full queue) and stops the daemon with SIGTERM (STOPPING=1
// meets it too). A blocking sd_notify froze the event loop here.
Test(systemd, a_manager_that_stops_reading_notifications_never_stalls_cairnd) {
  TestDaemon d;
  cr_assert(d.start({.env = {"WATCHDOG_USEC=20000"}}));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", d.notify().path().c_str());
  size_t queued = 0;
  while (queued < 100'000 &&
         sendto(fd, "X=1", 3, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 3)
    ++queued;
  int err = errno;
  cr_assert(err == EAGAIN || err == EWOULDBLOCK, "filling the notify queue: %s", std::strerror(err));
  close(fd);
  cairn_client* c = connect_client(d.socket(), 0);
  int64_t start = now_ms();
  int appended = 0;
  // At least 200 events and at least 10 watchdog periods (10 ms each) of appending.
  while (appended < 200 || now_ms() - start < 100) {
    cairn_event e{};
    e.type = "NotifyQueueFull";
    e.severity = -1;  // not set: info
    cairn_ack ack{};
    int rc = cairn_append(c, &e, &ack);
    cr_assert_eq(rc, 0, "append %d with the notify queue full: %s", appended, cairn_strerror(rc));
    ++appended;
  }
  cairn_close(c);
  cr_assert_eq(exit_code(d.stop(SIGTERM)), 0, "cairnd did not stop cleanly with the notify queue full");
  size_t rows = 0;
  for (const auto& r : read_rows(d.db())) rows += r.type == "NotifyQueueFull";
  cr_assert_eq(rows, static_cast<size_t>(appended), "%zu rows for %d acked appends (queue held %zu)", rows,
               appended, queued);
}
