#include "writer.hpp"

#include <algorithm>

#include <pthread.h>
#include <sched.h>

#include "../seal/record.hpp"
#include "disk_guard.hpp"
#include "log.hpp"

namespace cairn::daemon {

namespace {

WriteResult result_for(const WriteRequest& req) {
  WriteResult res;
  res.session = req.session;
  res.conn = req.conn;
  res.slot = req.slot;
  res.id = req.id;
  res.flush = req.kind == WriteRequest::Kind::flush;
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
      queue_(config.queue_max_events, config.queue_max_bytes),
      policy_(config),
      on_complete_(std::move(on_complete)),
      on_stopped_(std::move(on_stopped)),
      store_(std::move(store)),
      sealer_(std::move(sealer)),
      db_path_(config.db_path),
      wal_(config.db_path),
      loss_(store_->head_seq()) {
  head_seq_ = store_->head_seq();
  wal_.attach(*store_);
  if (sealer_) next_seal_ns_ = monotonic_ns() + sealer_->interval_ns();
}

Writer::~Writer() {
  if (thread_.joinable()) {
    // Only reached on an abnormal teardown; the normal path joins in on_results.
    queue_.request_stop();
    thread_.join();
  }
}

int Writer::start() {
  int rc = mailbox_.init(loop_, [this](std::vector<WriteResult>& r) { on_results(r); });
  if (rc < 0) return rc;
  rc = uv_check_init(loop_, &check_);
  if (rc == 0) {
    check_.data = this;
    rc = uv_check_start(&check_, &Writer::on_check);
  }
  if (rc == 0) rc = uv_idle_init(loop_, &idle_);
  if (rc < 0) {
    mailbox_.close();
    if (uv_is_active(reinterpret_cast<uv_handle_t*>(&check_))) uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
    return rc;
  }
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));  // they never keep the loop alive
  uv_unref(reinterpret_cast<uv_handle_t*>(&idle_));
  check_ready_ = true;
  wal_.start();
  thread_ = std::thread([this] { run(); });
  return 0;
}

void Writer::close() {
  mailbox_.close();
  if (check_ready_) {
    check_ready_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
  }
}

void Writer::submit(std::vector<WriteRequest>& reqs, bool urgent) {
  if (reqs.empty()) return;
  if (stopped_.load()) {
    // The writer has exited (fatal storage error): answer through the mailbox, never
    // re-entrantly, so the caller's loop over its input is not disturbed.
    std::vector<WriteResult> failed;
    for (auto& req : reqs) failed.push_back(failure_for(req));
    reqs.clear();
    mailbox_.post(failed);
    return;
  }
  // Queued only: on_check wakes the writer thread (or commits inline) once the loop has
  // read everything this iteration, so concurrent clients still share one group.
  queue_.push(reqs, urgent, /*wake=*/false);
  if (!kick_) {
    kick_ = true;
    uv_idle_start(&idle_, [](uv_idle_t*) {});
  }
}

void Writer::on_check(uv_check_t* h) noexcept {
  auto* self = static_cast<Writer*>(h->data);
  if (!self->kick_) return;
  self->kick_ = false;
  uv_idle_stop(&self->idle_);
  if (!self->commit_inline()) self->queue_.wake();
}

// Loop thread. Returns false when the writer thread must do it (see writer.hpp).
bool Writer::commit_inline() {
  if (policy_.mode() != FlushMode::immediate || stopped_.load() ||
      queue_.queued_events() > kInlineMaxEvents)
    return false;
  std::unique_lock turn(turn_, std::try_to_lock);
  if (!turn) return false;  // the writer thread is at work and will see the queue
  // A big last commit means concurrent clients: their next events are on the way, and
  // the thread overlaps reading them with this fsync (group commit).
  if (failed_ || !store_ || open_ > 0 || !waiting_.empty() || last_commit_ns_ > kInlineMaxCommitNs ||
      last_commit_events_ > kInlineMaxEvents || (sealer_ && monotonic_ns() >= next_seal_ns_))
    return false;
  auto taken = queue_.take(inline_group_);
  if (taken.stopping) {
    // A stop was asked for after our check: leave the work to the thread's last group.
    queue_.put_back(inline_group_, 0);
    return false;
  }
  inline_ = true;
  insert_group(inline_group_, taken.urgent);
  inline_group_.clear();
  if (open_ > 0 || !waiting_.empty()) commit_open();  // immediate: already done; never left open
  inline_ = false;
  std::vector<WriteResult> out;
  out.swap(inline_out_);
  turn.unlock();
  // A take need not empty the queue (the urgent part only, or a round of a fair share):
  // the thread takes the rest.
  if (!queue_.empty()) queue_.wake();
  // Whatever the writer thread posted before it went idle is older: answer it first,
  // so every connection's replies keep their order.
  std::vector<WriteResult> all;
  mailbox_.take(all);
  all.insert(all.end(), std::make_move_iterator(out.begin()), std::make_move_iterator(out.end()));
  on_complete_(all);  // even empty: sessions paused on the queue look again
  return true;
}

void Writer::post_ready() {
  if (!inline_) {
    mailbox_.post(ready_);
    return;
  }
  inline_out_.insert(inline_out_.end(), std::make_move_iterator(ready_.begin()),
                     std::make_move_iterator(ready_.end()));
  ready_.clear();
}

WriterFigures Writer::figures() const {
  WriterFigures f;
  f.queue_depth = queue_.queued_events() + open_atomic_.load();
  f.queue_bytes = queue_.queued_bytes();
  f.commits = commits_.load();
  f.events_committed = events_committed_.load();
  f.storage_errors = storage_errors_.load();
  f.lost_nondurable = loss_.lost_total();
  f.seals = seals_.load();
  f.head_seq = head_seq_.load();
  auto lat = commit_latency_.summary();
  f.commit_p50_us = lat.p50_us;
  f.commit_p99_us = lat.p99_us;
  f.commit_max_us = lat.max_us;
  f.commit_hist.assign(lat.hist.begin(), lat.hist.end());
  f.commit_sum_us = lat.sum_us;
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
    // Results the writer posted after this wake-up's swap, then requests queued after
    // it gave up (fatal storage error), get an answer too.
    std::vector<WriteResult> failed;
    mailbox_.take(failed);
    for (auto& sub : queue_.take_all())
      for (auto& req : sub.reqs) failed.push_back(failure_for(req));
    if (!failed.empty()) on_complete_(failed);
    on_stopped_(fatal_);
  }
}

// ---- the writer thread ----------------------------------------------------------------

// When the writer must wake even if nothing arrives: the open batch's commit deadline
// (batched/hybrid), and the next seal (an epoch is sealed on time even when idle: an
// unsealed stretch of time is where a truncation could hide).
int64_t Writer::next_deadline() const {
  int64_t deadline_ns = INT64_MAX;
  if (open_ > 0) deadline_ns = policy_.commit_deadline(oldest_ns_);
  if (sealer_ && !failed_) deadline_ns = std::min(deadline_ns, next_seal_ns_);
  if (retention_ && !failed_) deadline_ns = std::min(deadline_ns, monotonic_ns() + Retention::kPollNs);
  return deadline_ns;
}

void Writer::run() {
  pthread_setname_np(pthread_self(), "cairnd-writer");  // shows in top -H, perf, gdb
  std::deque<Submission> group;
  std::unique_lock turn(turn_);
  for (;;) {
    // The turn is free only while we wait: the loop may commit inline meanwhile (it
    // never leaves a transaction open, so the deadline computed here stays right).
    int64_t deadline = next_deadline();
    turn.unlock();
    queue_.wait_ready(deadline);
    turn.lock();
    auto taken = queue_.take(group);
    insert_group(group, taken.urgent);
    group.clear();
    if (taken.stopping) {
      // Shutdown: everything accepted is in this group or earlier ones; commit it.
      loss_.stop_began();
      if (open_ > 0) commit_open();
    } else if (sealer_ && !failed_ && monotonic_ns() >= next_seal_ns_) {
      seal_epoch();
    }
    if (retention_ && !taken.stopping && !failed_ && retention_->due()) retention_turn();
    post_ready();
    if (taken.stopping && queue_.empty()) break;
  }
  // A clean stop seals the last epoch, so nothing written before it stays unsealed.
  if (sealer_ && !failed_) seal_epoch();
  post_ready();
  // A final commit that lost events acked durable:false is a failed shutdown: say so in
  // the exit status, not only in the log.
  uint64_t lost_at_stop = loss_.lost_since_stop();
  if (lost_at_stop > 0 && !failed_)
    log_msg(LogLevel::err, "the final commit lost %llu event(s) acked durable:false",
            static_cast<unsigned long long>(lost_at_stop));
  wal_.stop();
  if (store_ && !failed_) {
    auto ck = timed([&] { return store_->checkpoint(); });
    if (!ck) log_msg(LogLevel::warning, "final checkpoint failed: %s", ck.error().message.c_str());
  }
  store_.reset();  // closes the database
  fatal_ = failed_ || lost_at_stop > 0;
  stopped_ = true;
  mailbox_.wake();
}

void Writer::insert_group(std::deque<Submission>& group, bool urgent_group) {
  size_t done = 0;
  bool put_back = false;
  for (size_t si = 0; si < group.size() && !put_back; ++si) {
    auto& reqs = group[si].reqs;
    for (size_t ri = 0; ri < reqs.size(); ++ri) {
      // An urgent submission arrived while we work through a long routine group: put
      // the rest back at the head of the queue and serve the urgent one first (checked
      // every 16 requests).
      if (!urgent_group && done > 0 && (done & 15) == 0 && queue_.urgent_pending()) {
        reqs.erase(reqs.begin(), reqs.begin() + static_cast<long>(ri));
        queue_.put_back(group, si);
        put_back = true;
        break;
      }
      ++done;
      insert(reqs[ri]);
      // Off the queue's figures as it is freed: what the loop may admit next is what
      // this request gave back (the end of the group wakes the loop to look again).
      queue_.released(reqs[ri]);
      reqs[ri] = WriteRequest{};
      // Hand out acks that need no commit as we go, not once per group: a group can be
      // thousands of events, and a burst of thousands of acks comes back as a burst of
      // thousands of frames that stalls the loop (and every urgent frame behind it).
      // Then yield: the loop we just woke may be queued behind us on this CPU, and a
      // writer that never sleeps under load would keep it waiting a whole time slice
      // (seen: 4 ms, with perf sched timehist).
      if ((done & (kAckBatch - 1)) == 0 && !ready_.empty()) {
        post_ready();
        if (!inline_) sched_yield();
      }
    }
    if (!put_back) std::vector<WriteRequest>().swap(reqs);  // done with this submission: free it
  }
  open_atomic_ = open_;
  // Acks that do not wait for durability go out before we spend time in fsync. With
  // none left, still wake the loop if sessions wait for the queue to drain: it may have
  // drained after the last delivery, and only a delivery makes the loop look.
  if (!ready_.empty()) post_ready();
  else if (done > 0 && sessions_paused_.load(std::memory_order_acquire) && queue_.below_resume())
    mailbox_.wake();
  if (policy_.must_commit(open_, !waiting_.empty(), oldest_ns_, monotonic_ns())) commit_open();
}

// Inserts one request into the open transaction (beginning one if needed). Its result
// goes to ready_ (answer now) or waiting_ (answer after the commit).
void Writer::insert(WriteRequest& req) {
  WriteResult res = result_for(req);
  if (failed_) {
    res.error = proto::ErrorCode::storage_failed;
    ready_.push_back(res);
    return;
  }
  if ((req.kind == WriteRequest::Kind::flush || req.durable_ack) && loss_.owes_loss(req.conn)) {
    // This connection was acked durable:false for events a failed commit lost. A
    // flush or a durable ack now would vouch for them: refuse it, named, once.
    res.error = proto::ErrorCode::events_lost;
    ready_.push_back(res);
    return;
  }
  if (req.kind == WriteRequest::Kind::flush) {
    res.ok = true;
    waiting_.push_back(res);
    return;
  }
  if (disk_ && disk_->writes_blocked()) {
    // The disk met ENOSPC (disk_guard.hpp): refused by name, the store not touched.
    res.error = proto::ErrorCode::storage_full;
    ready_.push_back(res);
    return;
  }
  auto refuse = [&](const store::StoreError& err, const char* what) {
    fail_open(err, what);
    res.error = proto::ErrorCode::storage_failed;
    ready_.push_back(res);
  };
  if (!store_->in_transaction()) {
    auto b = timed([&] { return store_->begin(); });
    if (!b) return refuse(b.error(), "begin");
  }
  stamp(req);
  auto r = timed([&] { return store_->append(req.event, req.trusted, req.body); });
  if (!r) return refuse(r.error(), "append");
  if (r.value().conflict) {
    // This uid stored a different event under the idem key (issue 11): refused by name,
    // nothing stored; seq names the original in the error.
    res.error = proto::ErrorCode::idem_conflict;
    res.seq = r.value().seq;
    ready_.push_back(res);
    return;
  }
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
    loss_.handed(res.seq);  // handed out now, durable or not
    if (!res.duplicate) loss_.acked_nondurable(req.conn);
    ready_.push_back(res);
  }
  if (policy_.batch_full(open_)) {
    post_ready();
    commit_open();
  }
}

// `received` is the time the writer appends the record, not the time the loop read it:
// a request can wait in the queue across a seal (for longer than an epoch on a loaded
// machine), and a record stamped before a seal but appended after it would fall outside
// its epoch's time window (verify: time). Stamped here, under the writer's clock and
// never going back, received is non-decreasing in seq order and every record lies
// between the seals around it. The body keeps its bytes but these 8.
void Writer::stamp(WriteRequest& req) {
  int64_t now = std::max(realtime_ns(), last_received_);
  if (sealer_) now = std::max(now, sealer_->window_start());
  last_received_ = now;
  if (req.received_at == 0 || req.received_at + 8 > req.body.size() ||
      static_cast<uint8_t>(req.body[req.received_at - 1]) != 0xcf)
    return;  // not a body this writer can stamp: keep the loop's time (tests, odd clocks)
  req.trusted.received = now;
  auto v = static_cast<uint64_t>(now);
  for (int i = 7; i >= 0; --i, v >>= 8) req.body[req.received_at + static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
}

void Writer::commit_open() {
  if (store_ && store_->in_transaction()) {
    int64_t t0 = monotonic_ns();
    auto c = timed([&] { return store_->commit(); });
    int64_t t1 = monotonic_ns();
    if (!c) {
      fail_open(c.error(), "commit");
      return;
    }
    commit_latency_.record(static_cast<uint64_t>((t1 - t0) / 1000));
    last_commit_ns_ = t1 - t0;
    last_commit_events_ = open_;
    commits_ += 1;
    consecutive_failures_ = 0;
    events_committed_ += open_;
    head_seq_ = store_->head_seq();
  }
  uint64_t durable_seq = store_ ? store_->head_seq() : 0;
  for (auto& w : waiting_) {
    if (w.ok) {
      w.durable = true;
      if (w.flush) w.seq = durable_seq;
      else loss_.handed(w.seq);
    }
    ready_.push_back(w);
  }
  waiting_.clear();
  open_ = 0;
  loss_.committed();
  open_atomic_ = 0;
  post_ready();
  upkeep_wal();
}

void Writer::upkeep_wal() {
  if (store_) wal_.after_commit(*store_, queue_.queued_events() == 0, queue_.urgent_pending(), busy_since_ns_);
}

// Retention (retention.hpp): a step prepared off this thread (a durable segment, or a
// removal record's fields) is applied here in its own transaction, between groups. A
// removal is sealed at once: verify honours a removal record only once a seal covers it.
void Writer::retention_turn() {
  if (open_ > 0 || !waiting_.empty()) commit_open();
  if (failed_ || !store_) return;
  int64_t now = std::max(realtime_ns(), last_received_);
  if (sealer_) now = std::max(now, sealer_->window_start());
  auto r = timed([&] { return retention_->turn(*store_, own_stamp(now)); });
  if (!r) {
    fail_open(r.error(), "retention");
    return;
  }
  last_received_ = now;
  head_seq_ = store_->head_seq();
  loss_.handed(store_->head_seq());
  if (r.value() && sealer_) seal_epoch();
  upkeep_wal();
}

void Writer::seal_epoch() {
  if (open_ > 0 || !waiting_.empty()) commit_open();
  if (failed_ || !store_ || !sealer_) return;
  next_seal_ns_ = monotonic_ns() + sealer_->interval_ns();
  // After an ENOSPC the seal waits for space (the epoch just runs longer): a seal that
  // fails counts toward giving up, and a full disk is no reason to stop cairnd.
  if (disk_ && disk_->writes_blocked()) return;
  store_->request_index_flush();  // the seal's commit brings the query index up to date
  auto r = timed([&] { return sealer_->seal(*store_); });
  if (!r) {
    fail_open(r.error(), "seal");
    return;
  }
  consecutive_failures_ = 0;
  seals_ += 1;
  head_seq_ = store_->head_seq();
  loss_.handed(store_->head_seq());
  upkeep_wal();
}

// ---- failure --------------------------------------------------------------------------

// Everything in the open transaction is gone: fail whoever still waits, count what was
// already acked durable:false, and reopen the database from the file.
void Writer::fail_open(const store::StoreError& err, const char* what) {
  last_failure_ = std::string(what) + " failed: " + err.message;
  storage_errors_ += 1;
  if (disk_) disk_->note_store_error(err.sqlite_code);
  ++consecutive_failures_;
  if (store_ && store_->in_transaction()) store_->rollback();
  std::vector<uint64_t> told;
  for (auto& w : waiting_) {
    w.ok = false;
    w.error = proto::ErrorCode::storage_failed;
    w.durable = false;
    ready_.push_back(w);
    told.push_back(w.conn);
  }
  uint64_t lost = loss_.failed(told);
  log_msg(LogLevel::err,
          "storage %s failed: %s; %zu waiting request(s) failed with storage_failed, "
          "%llu event(s) acked durable:false were lost",
          what, err.message.c_str(), waiting_.size(), static_cast<unsigned long long>(lost));
  waiting_.clear();
  open_ = 0;
  open_atomic_ = 0;
  if (consecutive_failures_ >= kMaxConsecutiveFailures) {
    // The disk keeps failing: answering storage_failed forever helps nobody. Exit
    // non-zero so systemd restarts us (and its restart limit tells an operator).
    log_msg(LogLevel::err, "%d storage failures in a row; shutting down to be restarted",
            consecutive_failures_);
    give_up(nullptr);
    return;
  }
  reopen_store();
}

void Writer::give_up(const char* why) {
  if (why) log_msg(LogLevel::err, "%s; refusing writes", why);
  store_.reset();
  failed_ = true;
  queue_.request_stop();  // makes the loop shut the daemon down so systemd restarts it
}

// After a failed write we do not trust this connection's view (its page cache may hold
// pages the kernel failed to persist). Close it and read the head back from the file.
void Writer::reopen_store() {
  auto s = store_->reopen();
  if (!s) {
    std::string why = "cannot reopen " + db_path_ + " after a storage error: " + s.error().message;
    give_up(why.c_str());
    return;
  }
  wal_.attach(*store_);
  head_seq_ = store_->head_seq();
  log_msg(LogLevel::notice, "reopened %s; head is seq %llu", db_path_.c_str(),
          static_cast<unsigned long long>(store_->head_seq()));
  // A seal whose commit "failed" may still have reached the file: the key file must
  // follow what the file says (never re-sign an epoch the file shows as closed).
  if (sealer_) {
    auto r = sealer_->reconcile(*store_, false);
    if (!r) {
      std::string why = "after reopening: " + r.error();
      give_up(why.c_str());
      return;
    }
  }
  (void)fill_lost("acked durable:false, then " + last_failure_);
}

// After a failed commit: placeholders for every seq an ack handed out that the file no
// longer has, so no seq is ever handed out twice. Returns false if that failed too.
bool Writer::fill_lost(const std::string& why) {
  uint64_t head = store_->head_seq();
  uint64_t handed = loss_.max_handed();
  if (head >= handed) return true;
  proto::Trusted stamp = own_stamp(realtime_ns());
  auto r = store_->begin();
  for (uint64_t seq = head + 1; r && seq <= handed; ++seq) {
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
          static_cast<unsigned long long>(head + 1), static_cast<unsigned long long>(handed));
  head_seq_ = store_->head_seq();
  return true;
}

}  // namespace cairn::daemon
