#include "checkpointer.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.hpp"
#include "store/store.hpp"

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

}  // namespace cairn::daemon
