// daemon.hpp — cairnd as a whole: start-up, the loop, and flush-then-close shutdown.
//
// Start-up: open the store (loads and checks the chain head) -> start the writer and
// query threads -> listen -> READY=1. Nothing is acked before the store is open.
//
// Shutdown (SIGTERM/SIGINT), driven by completions, never by sleeps, and never blocking
// the loop (the watchdog keeps being fed throughout):
//   1. STOPPING=1; close the listener; each session takes its budget (bytes already
//      received) and keeps serving frames inside it; later frames get shutting_down.
//      Reads not yet started are answered shutting_down; running ones may finish.
//   2. all sessions drained (or the drain deadline) -> writer.stop(): commit + fsync
//      everything accepted, post the final acks, checkpoint, close the database.
//   3. writer stopped -> reader stops once its running reads end (or the read deadline
//      interrupts them: shutting_down) -> sessions close once their replies are written
//      (or at the reply deadline for clients that do not read) -> loop ends, exit 0.
// Deadlines, each --shutdown-linger-ms and always armed (0: the next turn of the loop):
//   drain deadline   from the signal: stop waiting for frames a peer began to send
//   read deadline    from the signal: interrupt queries/verifies still running
//   reply deadline   from the final commit: close clients that do not read
// Only the final commit itself has no deadline (the flush is never skipped; a stuck
// disk is the watchdog's business). A second signal is logged and otherwise ignored.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "config.hpp"
#include "disk_guard.hpp"
#include "notify.hpp"
#include "reader.hpp"
#include "server.hpp"
#include "writer.hpp"

namespace cairn::daemon {

class Daemon {
 public:
  // `args` are cairnd's flags (argv[1..]): SIGHUP parses them and the config file again
  // (config.hpp: apply_reload). Without them SIGHUP still re-reads the default file.
  explicit Daemon(Config config, std::vector<std::string> args = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until shutdown; returns the process exit code.
  int run();

 private:
  static void on_signal(uv_signal_t* h, int signum) noexcept;
  static void on_reload(uv_signal_t* h, int signum) noexcept;  // SIGHUP
  static void on_deadline(uv_timer_t* t) noexcept;       // drain, then reply deadline
  static void on_read_deadline(uv_timer_t* t) noexcept;  // running reads
  void begin_shutdown(const char* why);
  void on_all_drained();
  void on_writer_stopped(bool fatal);
  void on_all_closed();
  void finish();
  std::string status_line() const;

  Config config_;  // Server and sessions hold a reference; reload edits it in place
  std::vector<std::string> args_;
  uv_loop_t loop_{};
  bool loop_ready_ = false;
  // Before writer_: destroyed after it, so the writer thread never outlives its flag.
  std::unique_ptr<DiskGuard> disk_;
  std::unique_ptr<Retention> retention_;  // null: no retention rule; outlives writer_
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<Reader> reader_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Notifier> notifier_;
  uv_signal_t sigterm_{}, sigint_{}, sighup_{};
  uv_timer_t deadline_{};
  uv_timer_t read_deadline_{};
  bool stopping_ = false;
  bool writer_stopped_ = false;
  bool reader_stopped_ = false;
  bool all_closed_ = false;  // no session left after the final commit
  bool finished_ = false;
  int exit_code_ = 0;
};

}  // namespace cairn::daemon
