#include "writer.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <iterator>

#include <pthread.h>
#include <sched.h>

#include "../seal/record.hpp"
#include "log.hpp"

namespace cairn::daemon {

int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

namespace {
constexpr size_t kLatencyWindow = 1024;

WriteResult result_for(const WriteRequest& req) {
  WriteResult res;
  res.session = req.session;
  res.conn = req.conn;
  res.slot = req.slot;
  res.id = req.id;
  res.barrier = req.kind == WriteRequest::Kind::barrier;
  return res;
}

WriteResult failure_for(const WriteRequest& req) {
  WriteResult res = result_for(req);
  res.error = proto::ErrorCode::storage_failed;
  return res;
}
}  // namespace

Writer::Writer(uv_loop_t* loop, std::unique_ptr<store::Store> store, std::unique_ptr<Sealer> sealer,
               const Config& config, CompleteFn on_complete, StoppedFn on_stopped)
    : loop_(loop),
      store_(std::move(store)),
      sealer_(std::move(sealer)),
      accept_loss_(config.accept_loss),
      db_path_(config.db_path),
      checkpointer_(config.db_path),
      policy_(config),
      max_events_(config.queue_max_events),
      max_bytes_(config.queue_max_bytes),
      on_complete_(std::move(on_complete)),
      on_stopped_(std::move(on_stopped)) {
  commit_us_.reserve(kLatencyWindow);
  head_seq_ = store_->head_seq();
  max_handed_seq_ = store_->head_seq();
  store_->hand_off_checkpoints(&Writer::on_wal_commit, this);
  if (sealer_) next_seal_ns_ = monotonic_ns() + sealer_->interval_ns();
}

Writer::~Writer() {
  if (thread_.joinable()) {
    // Only reached on an abnormal teardown; the normal path joins in on_async.
    {
      std::lock_guard lk(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
}

int Writer::start() {
  int rc = mailbox_.init(loop_, [this](std::vector<WriteResult>& r) { on_results(r); });
  if (rc < 0) return rc;
  checkpointer_.start();
  thread_ = std::thread([this] { run(); });
  return 0;
}

void Writer::close() { mailbox_.close(); }

void Writer::submit(std::vector<WriteRequest>& batch, bool urgent) {
  if (batch.empty()) return;
  if (stopped_.load()) {
    // The worker has exited (fatal storage error): answer through the mailbox, never
    // re-entrantly, so the caller's loop over its input is not disturbed.
    std::vector<WriteResult> failed;
    for (auto& req : batch) failed.push_back(failure_for(req));
    batch.clear();
    mailbox_.post(failed);
    return;
  }
  uint64_t bytes = 0;
  for (const auto& r : batch) bytes += r.cost();
  queued_events_ += batch.size();
  queued_bytes_ += bytes;
  // Moved element by element into an exact-size vector: the caller's vector keeps its
  // capacity for the next read, and the queue holds no slack.
  WriteBatch b{batch.front().session, urgent, {}};
  b.reqs.reserve(batch.size());
  std::move(batch.begin(), batch.end(), std::back_inserter(b.reqs));
  batch.clear();
  bool was_empty;
  {
    std::lock_guard lk(mu_);
    was_empty = queue_.empty();
    queue_.push_back(std::move(b));
    if (urgent) urgent_pending_.store(true, std::memory_order_release);
  }
  // A non-empty queue means the worker has been woken already and not yet taken it.
  if (was_empty) cv_.notify_one();
}

// Takes, in queue order, every batch of every session with an urgent batch, up to that
// session's last urgent one. Each session's batches stay in its order (the queue is in
// submit order); everything else stays queued.
void Writer::take_urgent(std::deque<WriteBatch>& work) {
  std::vector<std::pair<Session*, size_t>> last;  // session -> index of its last urgent batch
  for (size_t i = 0; i < queue_.size(); ++i) {
    if (!queue_[i].urgent) continue;
    auto it = std::find_if(last.begin(), last.end(), [&](auto& p) { return p.first == queue_[i].session; });
    if (it == last.end()) last.emplace_back(queue_[i].session, i);
    else it->second = i;
  }
  std::deque<WriteBatch> rest;
  for (size_t i = 0; i < queue_.size(); ++i) {
    auto it = std::find_if(last.begin(), last.end(), [&](auto& p) { return p.first == queue_[i].session; });
    (it != last.end() && i <= it->second ? work : rest).push_back(std::move(queue_[i]));
  }
  queue_.swap(rest);
  urgent_pending_.store(false, std::memory_order_relaxed);
}

void Writer::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
}

bool Writer::over_limit() const {
  return queued_events_.load() >= max_events_ || queued_bytes_.load() >= max_bytes_;
}

bool Writer::below_resume() const {
  return queued_events_.load() <= max_events_ / 2 && queued_bytes_.load() <= max_bytes_ / 2;
}

WriterFigures Writer::figures() const {
  WriterFigures f;
  f.queue_depth = queued_events_.load() + open_atomic_.load();
  f.queue_bytes = queued_bytes_.load();
  f.commits = commits_.load();
  f.events_committed = events_committed_.load();
  f.storage_errors = storage_errors_.load();
  f.lost_nondurable = lost_nondurable_.load();
  f.seals = seals_.load();
  f.head_seq = head_seq_.load();
  std::vector<uint32_t> lat;
  {
    std::lock_guard lk(lat_mu_);
    lat = commit_us_;
    f.commit_max_us = commit_max_us_;
  }
  if (!lat.empty()) {
    std::sort(lat.begin(), lat.end());
    f.commit_p50_us = lat[lat.size() / 2];
    f.commit_p99_us = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
  }
  return f;
}

bool Writer::stuck(int64_t limit_ns) const {
  int64_t since = busy_since_ns_.load();
  return since != 0 && monotonic_ns() - since > limit_ns;
}

void Writer::on_results(std::vector<WriteResult>& results) {
  on_complete_(results);  // even empty: a bare wake() means "look at the queue again"
  if (stopped_.load() && thread_.joinable()) {
    thread_.join();
    // Results the worker posted after this wake-up's swap, then requests queued after the worker gave up (fatal storage error) get an answer too.
    std::deque<WriteBatch> left;
    {
      std::lock_guard lk(mu_);
      left.swap(queue_);
      urgent_pending_.store(false, std::memory_order_relaxed);
    }
    std::vector<WriteResult> failed;
    mailbox_.take(failed);
    for (auto& b : left)
      for (auto& req : b.reqs) failed.push_back(failure_for(req));
    queued_events_ = 0;
    queued_bytes_ = 0;
    if (!failed.empty()) on_complete_(failed);
    on_stopped_(fatal_);
  }
}

void Writer::run() {
  pthread_setname_np(pthread_self(), "cairnd-writer");  // shows in top -H, perf, gdb
  std::deque<WriteBatch> work;
  for (;;) {
    bool stopping;
    bool urgent_group = false;
    {
      std::unique_lock lk(mu_);
      for (;;) {
        if (!queue_.empty() || stopping_) break;
        // Batched/hybrid: the open transaction must be committed by its deadline even
        // if nothing else arrives; and an epoch is sealed on time even when idle (an
        // unsealed stretch of time is where a truncation could hide).
        int64_t deadline_ns = INT64_MAX;
        if (open_ > 0) deadline_ns = policy_.commit_deadline(oldest_ns_);
        if (sealer_ && !failed_) deadline_ns = std::min(deadline_ns, next_seal_ns_);
        if (deadline_ns == INT64_MAX) {
          cv_.wait(lk);
          continue;
        }
        auto wait_ns = deadline_ns - monotonic_ns();
        if (wait_ns <= 0) break;
        cv_.wait_for(lk, std::chrono::nanoseconds(wait_ns));
      }
      bool is_urgent = urgent_pending_.load(std::memory_order_relaxed);  // set under mu_
      if (is_urgent) {
        take_urgent(work);
      } else {
        work.swap(queue_);
      }
      stopping = stopping_;
      urgent_group = is_urgent;
    }
    process(work, urgent_group);
    work.clear();
    // Shutdown: everything accepted is in `group` or earlier groups; commit it.
    if (stopping && lost_at_stop_start_ == UINT64_MAX) lost_at_stop_start_ = lost_nondurable_.load();
    if (stopping && open_ > 0) commit_open();
    if (sealer_ && !failed_ && !stopping && monotonic_ns() >= next_seal_ns_) seal_epoch();
    mailbox_.post(ready_);
    if (stopping) {
      bool empty;
      {
        std::lock_guard lk(mu_);
        empty = queue_.empty();
      }
      if (!empty) continue;
      break;
    }
  }
  // A clean stop seals the last epoch, so nothing written before it stays unsealed.
  if (sealer_ && !failed_) seal_epoch();
  mailbox_.post(ready_);
  // A final commit that lost events acked durable:false is a failed shutdown: say so in
  // the exit status, not only in the log.
  bool fatal = failed_ || (lost_at_stop_start_ != UINT64_MAX && lost_nondurable_.load() > lost_at_stop_start_);
  if (fatal && !failed_)
    log_msg(LogLevel::err, "the final commit lost %llu event(s) acked durable:false",
            static_cast<unsigned long long>(lost_nondurable_.load() - lost_at_stop_start_));
  checkpointer_.stop();
  if (store_ && !failed_) {
    busy_since_ns_ = monotonic_ns();
    auto ck = store_->checkpoint();
    busy_since_ns_ = 0;
    if (!ck) log_msg(LogLevel::warning, "final checkpoint failed: %s", ck.error().message.c_str());
  }
  store_.reset();  // closes the database
  fatal_ = fatal;
  stopped_ = true;
  mailbox_.wake();
}

void Writer::process(std::deque<WriteBatch>& work, bool is_urgent) {
  size_t done = 0;
  bool put_back = false;
  for (size_t bi = 0; bi < work.size() && !put_back; ++bi) {
    auto& reqs = work[bi].reqs;
    for (size_t ri = 0; ri < reqs.size(); ++ri) {
      // An urgent batch arrived while we work through a long routine group: put the
      // rest back at the head of the queue and serve it first (checked every 16).
      if (!is_urgent && done > 0 && (done & 15) == 0 &&
          urgent_pending_.load(std::memory_order_acquire)) {
        reqs.erase(reqs.begin(), reqs.begin() + static_cast<long>(ri));
        std::lock_guard lk(mu_);
        for (size_t k = work.size(); k-- > bi;) queue_.push_front(std::move(work[k]));
        put_back = true;
        break;
      }
      ++done;
      append_one(reqs[ri]);
      // Off the queue figures as it is freed: what the loop may admit next is what this
      // request gave back (the end of the group wakes the loop to look again).
      queued_events_ -= 1;
      queued_bytes_ -= reqs[ri].cost();
      reqs[ri] = WriteRequest{};
      // Hand out acks that need no commit as we go, not once per group: a group can be
      // thousands of events, and a burst of thousands of acks comes back as a burst of
      // thousands of frames that stalls the loop (and every critical frame behind it).
      // Then yield: the loop we just woke may be queued behind us on this CPU, and a
      // writer that never sleeps under load would keep it waiting a whole time slice
      // (seen: 4 ms, with perf sched timehist).
      if ((done & (kAckBatch - 1)) == 0 && !ready_.empty()) {
        mailbox_.post(ready_);
        sched_yield();
      }
    }
    if (!put_back) std::vector<WriteRequest>().swap(reqs);  // done with this batch: free it
  }
  open_atomic_ = open_;
  // Acks that do not wait for durability go out before we spend time in fsync. With
  // none left, still wake the loop if sessions wait for the queue to drain: it may have
  // drained after the last delivery, and only a delivery makes the loop look.
  if (!ready_.empty()) mailbox_.post(ready_);
  else if (done > 0 && sessions_paused_.load(std::memory_order_acquire) && below_resume())
    mailbox_.wake();
  if (policy_.must_commit(open_, !waiting_.empty(), oldest_ns_, monotonic_ns())) commit_open();
}

// Inserts one request into the open transaction (beginning one if needed). Its result
// goes to ready_ (answer now) or waiting_ (answer after the commit).
void Writer::append_one(WriteRequest& req) {
  WriteResult res = result_for(req);
  if (failed_) {
    res.error = proto::ErrorCode::storage_failed;
    ready_.push_back(res);
    return;
  }
  if ((req.kind == WriteRequest::Kind::barrier || req.durable_ack) && lost_conns_.erase(req.conn) != 0) {
    // This connection was acked durable:false for events a failed commit lost. A
    // flush or a durable ack now would vouch for them: refuse it, named, once.
    res.error = proto::ErrorCode::events_lost;
    ready_.push_back(res);
    return;
  }
  if (req.kind == WriteRequest::Kind::barrier) {
    res.ok = true;
    waiting_.push_back(res);
    return;
  }
  auto refuse = [&](const store::StoreError& err, const char* what) {
    fail_open(err, what);
    res.error = proto::ErrorCode::storage_failed;
    ready_.push_back(res);
  };
  if (!store_->in_transaction()) {
    busy_since_ns_ = monotonic_ns();
    auto b = store_->begin();
    busy_since_ns_ = 0;
    if (!b) return refuse(b.error(), "begin");
  }
  busy_since_ns_ = monotonic_ns();
  auto r = store_->append(req.event, req.trusted, req.body);
  busy_since_ns_ = 0;
  if (!r) return refuse(r.error(), "append");
  res.ok = true;
  res.seq = r.value().seq;
  res.duplicate = r.value().duplicate;
  if (!res.duplicate) {
    if (open_ == 0) oldest_ns_ = monotonic_ns();
    ++open_;
  }
  if (sealer_) sealer_->saw(req.trusted.received);
  if (req.durable_ack) {
    waiting_.push_back(res);
  } else {
    if (!res.duplicate) ++open_nondurable_;
    max_handed_seq_ = std::max(max_handed_seq_, res.seq);  // handed out now, durable or not
    if (!res.duplicate && (open_nondurable_conns_.empty() || open_nondurable_conns_.back() != req.conn))
      open_nondurable_conns_.push_back(req.conn);
    ready_.push_back(res);
  }
  if (policy_.batch_full(open_)) {
    mailbox_.post(ready_);
    commit_open();
  }
}

void Writer::commit_open() {
  if (store_ && store_->in_transaction()) {
    int64_t t0 = monotonic_ns();
    busy_since_ns_ = t0;
    auto c = store_->commit();
    int64_t t1 = monotonic_ns();
    busy_since_ns_ = 0;
    if (!c) {
      fail_open(c.error(), "commit");
      return;
    }
    uint64_t us = static_cast<uint64_t>((t1 - t0) / 1000);
    {
      std::lock_guard lk(lat_mu_);
      if (commit_us_.size() < kLatencyWindow) {
        commit_us_.push_back(static_cast<uint32_t>(std::min<uint64_t>(us, UINT32_MAX)));
      } else {
        commit_us_[commit_us_next_] = static_cast<uint32_t>(std::min<uint64_t>(us, UINT32_MAX));
        commit_us_next_ = (commit_us_next_ + 1) % kLatencyWindow;
      }
      commit_max_us_ = std::max(commit_max_us_, us);
    }
    commits_ += 1;
    consecutive_failures_ = 0;
    events_committed_ += open_;
    head_seq_ = store_->head_seq();
  }
  uint64_t durable_seq = store_ ? store_->head_seq() : 0;
  for (auto& w : waiting_) {
    if (w.ok) {
      w.durable = true;
      if (w.barrier) w.seq = durable_seq;
      else max_handed_seq_ = std::max(max_handed_seq_, w.seq);
    }
    ready_.push_back(w);
  }
  waiting_.clear();
  open_ = 0;
  open_nondurable_ = 0;
  open_nondurable_conns_.clear();
  open_atomic_ = 0;
  mailbox_.post(ready_);
  maybe_checkpoint();
}

void Writer::maybe_checkpoint() {
  if (!store_) return;
  // SQLite starts the WAL over only if a transaction begins when every frame has been
  // copied. Under load that takes a catch-up here (the frames written since the last
  // copy began, and an fsync of the database: ~1 ms that every request waits out), so
  // it is done when the writer is idle (nothing queued; a lone client's next event may
  // still wait for it, hence a threshold there too), or once the WAL has grown to
  // kWalRestartFrames, not after every copy.
  bool idle = queued_events_.load(std::memory_order_relaxed) == 0;
  bool hard = wal_frames_ >= kWalHardLimitFrames;
  if (wal_frames_ < (idle ? kWalIdleRestartFrames : kWalRestartFrames)) {
    // Until then, under load, keep the database file close behind the WAL: a background
    // copy for every kCheckpointFrames new frames (it copies what was committed when it
    // began). Idle, the catch-up below does it all at once: each copy ends in an fsync
    // of the database that a lone client's next commit would wait behind.
    if (!idle && wal_frames_ - copy_requested_at_ >= kCheckpointFrames && !checkpointer_.busy()) {
      checkpointer_.request();
      copy_requested_at_ = wal_frames_;
    }
    return;
  }
  // A restart is due: no new copy; let the running one finish, then catch up. A
  // critical event that is waiting goes first (its commit, then a later catch-up).
  if ((checkpointer_.busy() || urgent_pending_.load(std::memory_order_acquire)) && !hard) return;
  busy_since_ns_ = monotonic_ns();
  auto r = store_->checkpoint_passive();
  busy_since_ns_ = 0;
  wal_frames_ = 0;
  copy_requested_at_ = 0;
  if (!r) log_msg(LogLevel::warning, "checkpoint: %s", r.error().message.c_str());
}

// Everything in the open transaction is gone: fail whoever still waits, count what was
// already acked durable:false, and reopen the database from the file.
void Writer::fail_open(const store::StoreError& err, const char* what) {
  last_failure_ = std::string(what) + " failed: " + err.message;
  storage_errors_ += 1;
  ++consecutive_failures_;
  if (store_ && store_->in_transaction()) store_->rollback();
  for (auto& w : waiting_) {
    w.ok = false;
    w.error = proto::ErrorCode::storage_failed;
    w.durable = false;
    ready_.push_back(w);
  }
  log_msg(LogLevel::err,
          "storage %s failed: %s; %zu waiting request(s) failed with storage_failed, "
          "%llu event(s) acked durable:false were lost",
          what, err.message.c_str(), waiting_.size(),
          static_cast<unsigned long long>(open_nondurable_));
  lost_nondurable_ += open_nondurable_;
  lost_conns_.insert(open_nondurable_conns_.begin(), open_nondurable_conns_.end());
  open_nondurable_conns_.clear();
  // A connection whose own flush or durable append fails here with storage_failed has
  // learned of the failure already.
  for (const auto& w : waiting_) lost_conns_.erase(w.conn);
  waiting_.clear();
  open_ = 0;
  open_nondurable_ = 0;
  open_atomic_ = 0;
  if (consecutive_failures_ >= kMaxConsecutiveFailures) {
    // The disk keeps failing: answering storage_failed forever helps nobody. Exit
    // non-zero so systemd restarts us (and its restart limit tells an operator).
    log_msg(LogLevel::err, "%d storage failures in a row; shutting down to be restarted",
            consecutive_failures_);
    store_.reset();
    failed_ = true;
    std::lock_guard lk(mu_);
    stopping_ = true;
    return;
  }
  reopen_store();
}

// After a failed write we do not trust this connection's view (its page cache may hold
// pages the kernel failed to persist). Close it and read the head back from the file.
void Writer::reopen_store() {
  auto s = store_->reopen();
  if (!s) {
    log_msg(LogLevel::err, "cannot reopen %s after a storage error: %s; refusing writes",
            db_path_.c_str(), s.error().message.c_str());
    store_.reset();
    failed_ = true;
    // Make the loop shut the daemon down so systemd can restart it.
    std::lock_guard lk(mu_);
    stopping_ = true;
    return;
  }
  store_->hand_off_checkpoints(&Writer::on_wal_commit, this);
  head_seq_ = store_->head_seq();
  log_msg(LogLevel::notice, "reopened %s; head is seq %llu", db_path_.c_str(),
          static_cast<unsigned long long>(store_->head_seq()));
  // A seal whose commit "failed" may still have reached the file: the key file must
  // follow what the file says (never re-sign an epoch the file shows as closed).
  if (sealer_) {
    auto r = sealer_->reconcile(*store_, false);
    if (!r) {
      log_msg(LogLevel::err, "after reopening: %s; refusing writes", r.error().c_str());
      store_.reset();
      failed_ = true;
      std::lock_guard lk(mu_);
      stopping_ = true;
      return;
    }
  }
  (void)fill_lost("acked durable:false, then " + last_failure_);
}

bool Writer::fill_lost(const std::string& why) {
  uint64_t head = store_->head_seq();
  if (head >= max_handed_seq_) return true;
  proto::Trusted stamp = own_stamp(realtime_ns());
  auto r = store_->begin();
  for (uint64_t seq = head + 1; r && seq <= max_handed_seq_; ++seq) {
    auto a = store_->append_record(seal::kLostType, seal::lost_fields(why), stamp);
    if (!a) r = Err{a.error()};
  }
  if (r) r = store_->commit();
  if (!r) {
    if (store_->in_transaction()) store_->rollback();
    fail_open(r.error(), "recording lost seqs");
    return false;
  }
  log_msg(LogLevel::err, "seq %llu..%llu were acked durable:false and lost; recorded as cairn.lost records",
          static_cast<unsigned long long>(head + 1), static_cast<unsigned long long>(max_handed_seq_));
  head_seq_ = store_->head_seq();
  return true;
}

void Writer::seal_epoch() {
  if (open_ > 0 || !waiting_.empty()) commit_open();
  if (failed_ || !store_ || !sealer_) return;
  next_seal_ns_ = monotonic_ns() + sealer_->interval_ns();
  busy_since_ns_ = monotonic_ns();
  auto r = sealer_->seal(*store_);
  busy_since_ns_ = 0;
  if (!r) {
    fail_open(r.error(), "seal");
    return;
  }
  consecutive_failures_ = 0;
  seals_ += 1;
  head_seq_ = store_->head_seq();
  max_handed_seq_ = std::max(max_handed_seq_, store_->head_seq());
  maybe_checkpoint();
}

}  // namespace cairn::daemon
