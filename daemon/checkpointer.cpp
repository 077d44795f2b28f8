#include "checkpointer.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.hpp"
#include "store/store.hpp"
#include "clock.hpp"

namespace cairn::daemon {

void Checkpointer::start() {
  thread_ = std::thread([this] { run(); });
}

void Checkpointer::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Checkpointer::request() {
  {
    std::lock_guard lk(mu_);
    if (busy_.load()) return;
    busy_.store(true, std::memory_order_release);
  }
  cv_.notify_one();
}

void Checkpointer::run() {
  pthread_setname_np(pthread_self(), "cairnd-ckpt");
  // Background work: the loop and the writer (whose latency every ack waits on) go
  // first when the CPUs are busy. Raising our own nice value needs no privilege; the
  // copy still runs whenever a CPU is free, and the writer catches up the rest itself.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  std::unique_ptr<store::Store> s;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || busy_.load(); });
      if (stopping_) return;
    }
    if (!s) {
      auto o = store::Store::open(db_path_, store::OpenMode::checkpointer);
      if (o) s = std::move(o.value());
      else log_msg(LogLevel::warning, "checkpoint thread: %s", o.error().message.c_str());
    }
    if (s) {
      auto r = s->checkpoint_passive();
      if (!r) {
        log_msg(LogLevel::warning, "background checkpoint: %s", r.error().message.c_str());
        s.reset();
      }
    }
    busy_.store(false, std::memory_order_release);
  }
}

void WalKeeper::attach(store::Store& store) { store.hand_off_checkpoints(&WalKeeper::on_wal_commit, this); }

void WalKeeper::after_commit(store::Store& store, bool idle, bool urgent_waiting,
                             std::atomic<int64_t>& busy_since_ns) {
  // SQLite starts the WAL over only if a transaction begins when every frame has been
  // copied. Under load that takes a catch-up here (the frames written since the last
  // copy began, and an fsync of the database: ~1 ms that every request waits out), so
  // it is done when the writer is idle (a lone client's next event may still wait for
  // it, hence a threshold there too), or once the WAL has grown to kBusyRestartFrames,
  // not after every copy.
  bool hard = wal_frames_ >= kHardLimitFrames;
  if (wal_frames_ < (idle ? kIdleRestartFrames : kBusyRestartFrames)) {
    // Until then, under load, keep the database file close behind the WAL: a background
    // copy for every kCopyFrames new frames (it copies what was committed when it
    // began). Idle, the catch-up below does it all at once: each copy ends in an fsync
    // of the database that a lone client's next commit would wait behind.
    if (!idle && wal_frames_ - copy_requested_at_ >= kCopyFrames && !copier_.busy()) {
      copier_.request();
      copy_requested_at_ = wal_frames_;
    }
    return;
  }
  // A restart is due: no new copy; let the running one finish, then catch up. An
  // urgent request that is waiting goes first (its commit, then a later catch-up).
  if ((copier_.busy() || urgent_waiting) && !hard) return;
  busy_since_ns = monotonic_ns();
  auto r = store.checkpoint_passive();
  busy_since_ns = 0;
  wal_frames_ = 0;
  copy_requested_at_ = 0;
  if (!r) log_msg(LogLevel::warning, "checkpoint: %s", r.error().message.c_str());
}

}  // namespace cairn::daemon
