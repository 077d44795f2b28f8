// harness.hpp — drives the real, freshly built cairnd for integration and crash tests.
//
// A TestDaemon owns a temp directory with the socket and database, spawns cairnd with
// NOTIFY_SOCKET pointing at a datagram socket the test owns, and waits for READY=1
// (a condition with a deadline, never a sleep). Verdicts come from reading the database
// file back with SQLite after the daemon is gone, never from the daemon's own report.
#pragma once

#include "../../seal/merkle.hpp"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cairn::test {

// Paths of the built programs, from the environment meson sets for tests.
std::string cairnd_path();
std::string cli_path();

class NotifyListener {
 public:
  NotifyListener();  // binds a datagram socket in a fresh temp dir
  ~NotifyListener();
  NotifyListener(const NotifyListener&) = delete;
  NotifyListener& operator=(const NotifyListener&) = delete;
  const std::string& path() const { return path_; }
  // Waits up to timeout_ms for one datagram; returns its text.
  std::optional<std::string> next(int timeout_ms);
  // Waits until a message containing `needle` arrives (earlier ones are kept in log()).
  bool wait_for(const std::string& needle, int timeout_ms);
  const std::vector<std::string>& log() const { return log_; }
  std::vector<int64_t> arrival_ms;  // monotonic ms of each message in log()

 private:
  int fd_ = -1;
  std::string dir_, path_;
  std::vector<std::string> log_;
};

struct DaemonOptions {
  std::vector<std::string> args;  // extra cairnd flags
  bool wait_ready = true;
  std::vector<std::string> env;   // extra NAME=VALUE
  // Socket activation the way systemd does it: this listening fd becomes fd 3 with
  // LISTEN_FDS=1 and LISTEN_PID set, so the socket outlives each daemon instance.
  int listen_fd = -1;
  // Run under `systemd-socket-activate -l SOCKET` (which starts cairnd on the first
  // connection); READY=1 is then only awaited if wait_ready is set.
  bool via_socket_activate = false;
};

// A listening AF_UNIX stream socket at `path`, as systemd's .socket unit would make it.
int make_listening_socket(const std::string& path, int backlog = 4096);

class TestDaemon {
 public:
  explicit TestDaemon(const std::string& name = "cairn");  // makes the temp dir
  ~TestDaemon();  // SIGKILLs a live daemon, removes the temp dir
  TestDaemon(const TestDaemon&) = delete;
  TestDaemon& operator=(const TestDaemon&) = delete;

  // Spawns cairnd; with wait_ready, returns only after READY=1 (false on timeout/exit).
  bool start(const DaemonOptions& opts = {});
  // Sends `sig` and waits for the process; returns its wait status.
  int stop(int sig);
  int kill9() { return stop(9); }
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  const std::string& dir() const { return dir_; }
  const std::string& socket() const { return socket_; }
  const std::string& db() const { return db_; }
  const std::string& log_path() const { return log_; }
  NotifyListener& notify() { return *notify_; }

 private:
  std::string dir_, socket_, db_, log_;
  pid_t pid_ = -1;
  NotifyListener* notify_ = nullptr;
};

// Exit code of a wait status (or 128+signal).
int exit_code(int wait_status);

// Rows read straight from the database file (read-only).
struct Row {
  uint64_t seq = 0;
  std::string type;
  std::string actor;
  std::string idem;
  uint32_t pid = 0, uid = 0, gid = 0;
  int severity = 0;
};
// Client events only: cairnd's own records (seals at every --seal-interval and at a
// clean stop, lost-seq placeholders; type "cairn.*") are left out, so seqs may skip.
std::vector<Row> read_rows(const std::string& db_path);

// Checks seq is 1..N without gaps, every hash chains from genesis, PRAGMA
// integrity_check is ok. Returns an empty string when fine, else the first problem.
std::string check_database(const std::string& db_path);

// Where an incremental chain check resumes: the next seq and the hash before it.
struct ChainCursor {
  uint64_t next_seq = 1;
  seal::Frontier tree;  // the tree of rows 1..next_seq-1, recomputed from their bodies
};
// Like check_database, but only for rows from cursor.next_seq on, advancing the cursor;
// integrity_check only when `integrity` (it reads the whole file). Long loops use it so
// that checking stays linear in what was added.
std::string check_database_from(const std::string& db_path, ChainCursor& cursor, bool integrity);
// Rows with seq >= from_seq.
std::vector<Row> read_rows_from(const std::string& db_path, uint64_t from_seq);

// Runs a command, captures stdout; returns exit code.
int run_capture(const std::vector<std::string>& argv, std::string& out);

int64_t now_ms();

// Waits up to timeout_ms for process `pid` (a child) to exit, WITHOUT reaping it, so a
// TestDaemon can still collect its status with stop(0). For a daemon expected to exit
// by itself (e.g. after repeated storage failures). Uses a pidfd: no polling sleeps.
bool wait_exit(pid_t pid, int timeout_ms);

}  // namespace cairn::test
