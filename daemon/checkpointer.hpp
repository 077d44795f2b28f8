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

}  // namespace cairn::daemon
