// sender.hpp — the bounded queue between auditd's stream and cairnd, and the thread that
// empties it.
//
// auditd must never wait for cairn: push() never blocks. When the queue is full (events
// or bytes) the event is dropped and counted, and the sending thread records the count
// in cairn itself as an `auditd.undelivered` event (sync) as soon as it can, so a loss
// is in the log next to what survived it; the totals are also written to syslog and
// stderr at exit. Events are pipelined to cairnd with libcairn, each with an
// idempotency key made at push time, so that a batch resent after a lost connection or
// a timeout is stored once. Events cairnd refuses (invalid_field ...) are counted as
// refused, logged with the reason, and not resent.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include <cairn/cairn.h>

#include "record.hpp"

namespace cairn::audisp {

struct SenderOptions {
  std::string socket = "/run/cairn/cairn.sock";
  size_t queue_max = 4096;                 // events
  size_t queue_max_bytes = 16 * 1024 * 1024;
  int timeout_ms = 2000;                   // per libcairn call
};

struct SenderTotals {
  uint64_t queued = 0, delivered = 0, dropped = 0, refused = 0, unsent_at_exit = 0;
};

class Sender {
 public:
  explicit Sender(SenderOptions o) : opt_(std::move(o)) {}
  ~Sender() { finish(0); }
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  void start();
  // Queues one event; false (and counted as dropped) when the queue is full. Never blocks
  // on cairnd.
  bool push(Mapped&& ev);
  // Stops taking events, gives the thread until drain_ms to deliver what is queued,
  // then joins it; what is left is counted in unsent_at_exit.
  void finish(int drain_ms);
  SenderTotals totals();

 private:
  struct Item {
    Mapped ev;
    char idem[16];
  };
  void run();
  bool deliver(std::deque<Item>& batch);  // false: gave up (stopping past the deadline)
  bool report_drops();
  bool connect();
  void backoff();

  SenderOptions opt_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  size_t queue_bytes_ = 0;
  bool stopping_ = false;
  int64_t drain_deadline_ms_ = 0;
  SenderTotals totals_;
  uint64_t dropped_unreported_ = 0;
  // Ordering of the loss record: events accepted into the queue so far, events taken out
  // of it, and how many had been accepted when the last one was dropped. A drop happens
  // after every event then queued, so its record waits until those are handled.
  uint64_t accepted_ = 0, taken_ = 0, report_after_ = 0;
  std::thread thread_;
  cairn_client* client_ = nullptr;  // the sending thread's alone
  int backoff_ms_ = 50;
};

int64_t mono_ms();

}  // namespace cairn::audisp
