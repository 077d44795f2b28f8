// checkpointer.hpp — copies WAL frames into the database file on its own connection.
//
// A checkpoint of a busy WAL writes hundreds of pages and fsyncs the database file:
// milliseconds that would otherwise stall the writer thread, and every ack queued
// behind it. The writer asks this thread for the heavy copy, keeps committing, and once
// the copy is done runs a small catch-up checkpoint itself, so the WAL can start over
// (SQLite restarts the WAL only when the writer finds it fully checkpointed).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace cairn::store {
class Store;
}

namespace cairn::daemon {

class Checkpointer {
 public:
  explicit Checkpointer(std::string db_path) : db_path_(std::move(db_path)) {}
  ~Checkpointer() { stop(); }
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  void start();
  void stop();
  // Asks for one PASSIVE checkpoint; ignored while one is running.
  void request();
  bool busy() const { return busy_.load(std::memory_order_acquire); }

 private:
  void run();

  std::string db_path_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<bool> busy_{false};
};

// WAL upkeep, on the writer thread after each commit: when to ask the Checkpointer for a
// background copy, and when to run the small catch-up that lets SQLite start the WAL
// over. Checkpoints never run inside a COMMIT whose acks wait (SQLite's autocheckpoint
// would do that; the store turns it off and reports the WAL size through a hook).
class WalKeeper {
 public:
  explicit WalKeeper(std::string db_path) : copier_(std::move(db_path)) {}

  void start() { copier_.start(); }
  void stop() { copier_.stop(); }
  // Takes the store's WAL-size reports (again after every reopen).
  void attach(store::Store& store);
  // After a commit. `idle`: nothing is queued; `urgent_waiting`: an urgent request waits
  // for the writer (it goes first; the catch-up comes later). `busy_since_ns` is the
  // writer's watchdog stamp, set while the catch-up runs.
  void after_commit(store::Store& store, bool idle, bool urgent_waiting,
                    std::atomic<int64_t>& busy_since_ns);

 private:
  static void on_wal_commit(void* self, int frames) { static_cast<WalKeeper*>(self)->wal_frames_ = frames; }

  static constexpr int kCopyFrames = 250;            // background copy every ~1 MiB of WAL
  static constexpr int kIdleRestartFrames = 1000;    // catch-up when idle at ~4 MiB
  static constexpr int kBusyRestartFrames = 32768;   // ... under load at ~128 MiB
  static constexpr int kHardLimitFrames = 65536;     // ... and regardless at ~256 MiB

  Checkpointer copier_;
  int wal_frames_ = 0;         // WAL size in frames after the last commit
  int copy_requested_at_ = 0;  // wal_frames_ when the last background copy was asked for
};

}  // namespace cairn::daemon
