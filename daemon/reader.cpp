#include "reader.hpp"

#include <malloc.h>
#include <pthread.h>
#include <time.h>
#include <sqlite3.h>

#include <algorithm>

#include "store/query_engine.hpp"

namespace cairn::daemon {

// One unit of work for a thread: a query or stats request, or every verify request that
// was waiting when a walk began. `dropped` marks waiters whose session closed meanwhile
// (guarded by mu_; the walk goes on for the others).
struct Reader::Job {
  ReadRequest::Kind kind = ReadRequest::Kind::query;
  std::vector<ReadRequest> reqs;
  std::vector<bool> dropped;
};

// Per thread. `interrupt` is read by SQLite's progress handler on the thread's own
// connection, so a running statement stops within a few thousand VM steps of being set.
struct Reader::Worker {
  std::atomic<bool> interrupt{false};
  Job* job = nullptr;  // what it runs now (under mu_), nullptr when idle
  // Bytes of this thread's last query reply. The next reply is encoded straight into
  // the string that goes to the session, reserved at this size plus an eighth: pages of
  // one walk are alike in size, so that is one allocation and no copy. (Growing from
  // empty took ~8 allocations and ~15 KiB of copies per 50-row page; encoding into a
  // kept scratch buffer and copying it out cost a copy of every reply: without that
  // copy, 0.92x cairnd CPU per page in bench/keyset-ab.) A reply left holding much more
  // than it needs is shrunk, so one waiting in a session holds at most ~1/4 more than
  // its size plus 4 KiB; the reserve never exceeds max_frame.
  size_t reply_hint = 0;
};

namespace {

// glibc malloc, process-wide (set in start()). Each query reply is allocated on a query
// thread and freed on the loop thread once written, so it returns to that thread's
// arena from outside. With the default trim threshold (128 KiB) those frees kept
// trimming the arena's top (madvise(MADV_DONTNEED), a TLB shoot-down across CPUs) and
// the next replies faulted the same pages back in. Measured at 40 clients x 50-row
// pages (bench/run's keyset row): 0.04 madvise and 1.5-1.9 page faults per page, and
// about half the pages/s of the build before the query engine; with these settings no
// madvise, 0.08 faults per page, and the earlier pages/s. Memory kept free at an
// arena's top costs no peak RSS (the pages were in use just before) and is bounded per
// arena. Setting the trim threshold stops glibc adapting the mmap threshold, so that is
// set too, in the same 1:2 ratio glibc's own adaptation uses: blocks above it (a reply
// under a max_frame of several MiB) still go straight back to the kernel when freed.
constexpr int kTrimThreshold = 4 << 20;
constexpr int kMmapThreshold = 2 << 20;

int on_progress(void* flag) noexcept {
  return static_cast<std::atomic<bool>*>(flag)->load(std::memory_order_relaxed) ? 1 : 0;
}

ReadResult result_for(const ReadRequest& req) {
  ReadResult res;
  res.kind = req.kind;
  res.session = req.session;
  res.slot = req.slot;
  res.id = req.id;
  return res;
}

}  // namespace

Reader::Reader(uv_loop_t* loop, std::string db_path, unsigned threads, uint64_t mmap_bytes,
               uint32_t max_reply, CompleteFn on_complete)
    : loop_(loop),
      db_path_(std::move(db_path)),
      nthreads_(threads == 0 ? 1 : threads),
      mmap_bytes_(mmap_bytes),
      max_reply_(max_reply),
      on_complete_(std::move(on_complete)) {}

Reader::~Reader() {
  // Only joins here on an abnormal teardown (start-up failure): stop() has done it.
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    cancel_all_ = true;
    for (auto& w : workers_) w->interrupt = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

int Reader::start() {
  int rc = mailbox_.init(loop_, [this](std::vector<ReadResult>& r) { on_mail(r); });
  if (rc < 0) return rc;
  uv_timer_init(loop_, &wait_timer_);
  wait_timer_.data = this;
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
  for (unsigned i = 0; i < nthreads_; ++i) workers_.push_back(std::make_unique<Worker>());
  started_ = true;
  live_threads_ = nthreads_;
  for (unsigned i = 0; i < nthreads_; ++i) {
    Worker* w = workers_[i].get();
    threads_.emplace_back([this, w] { run(*w); });
  }
  return 0;
}

void Reader::post_cancelled(std::vector<ReadRequest>& reqs) {
  std::vector<ReadResult> out;
  out.reserve(reqs.size());
  for (const auto& r : reqs) {
    out.push_back(result_for(r));
    out.back().cancelled = true;
  }
  reqs.clear();
  mailbox_.post(out);
}

bool Reader::submit(ReadRequest req) {
  if (req.kind == ReadRequest::Kind::query && req.spec.wait_ms && req.wait_until_ms == 0)
    req.wait_until_ms = uv_now(loop_) + *req.spec.wait_ms;
  {
    std::lock_guard lk(mu_);
    if (!cancel_all_) {
      if (req.kind == ReadRequest::Kind::verify) {
        if (verify_waiting_.size() >= kMaxWaitingVerifies) return false;
        verify_waiting_.push_back(std::move(req));
      } else {
        if (queue_.size() >= kMaxQueued) return false;
        queue_.push_back(std::move(req));
      }
      cv_.notify_one();
      return true;
    }
  }
  std::vector<ReadRequest> one;
  one.push_back(std::move(req));
  post_cancelled(one);
  return true;
}

void Reader::cancel_session(const Session* session) {
  std::vector<ReadRequest> out;
  cancelled_.push_back(session);
  {
    std::lock_guard lk(mu_);
    auto take = [&](auto& c) {
      for (auto it = c.begin(); it != c.end();) {
        if (it->session == session) {
          out.push_back(std::move(*it));
          it = c.erase(it);
        } else {
          ++it;
        }
      }
    };
    take(queue_);
    take(verify_waiting_);
    for (auto it = parked_.begin(); it != parked_.end();) {  // cancel_session runs on the loop
      if (it->req.session == session) {
        out.push_back(std::move(it->req));
        it = parked_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& w : workers_) {
      if (w->job == nullptr) continue;
      bool all = true;
      for (size_t i = 0; i < w->job->reqs.size(); ++i) {
        if (w->job->reqs[i].session == session) w->job->dropped[i] = true;
        all = all && w->job->dropped[i];
      }
      if (all) w->interrupt = true;  // nobody is left to read the answer
    }
  }
  if (!out.empty()) post_cancelled(out);
  else if (started_ && !stopped_) mailbox_.wake();  // so cancelled_ is cleared by the next batch
}

void Reader::cancel_all() {
  std::vector<ReadRequest> out;
  {
    std::lock_guard lk(mu_);
    cancel_all_ = true;
    out.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
    queue_.clear();
    out.insert(out.end(), std::make_move_iterator(verify_waiting_.begin()),
               std::make_move_iterator(verify_waiting_.end()));
    verify_waiting_.clear();
    for (auto& p : parked_) out.push_back(std::move(p.req));
    parked_.clear();
  }
  if (!out.empty()) post_cancelled(out);
}

void Reader::interrupt_running() {
  std::lock_guard lk(mu_);
  for (auto& w : workers_)
    if (w->job != nullptr) w->interrupt = true;
}

size_t Reader::waiting() const {
  std::lock_guard lk(mu_);
  return queue_.size() + verify_waiting_.size();
}

void Reader::stop(StoppedFn on_stopped) {
  on_stopped_ = std::move(on_stopped);
  if (!started_) {
    stopped_ = true;
    if (on_stopped_) on_stopped_();
    return;
  }
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  // The threads exit after their current request; the last one to go wakes the loop,
  // and on_mail finishes the stop. With no thread started, finish now.
  if (threads_.empty() || live_threads_.load() == 0) mailbox_.wake();
}

void Reader::on_mail(std::vector<ReadResult>& results) {
  // A waiting query that found nothing is parked, not answered (unless its wait is over
  // or we are stopping: then the empty page it carries is the answer).
  std::vector<ReadResult> answered;
  std::vector<const Session*> dropped;  // cancelled before this batch was taken
  dropped.swap(cancelled_);
  for (auto& r : results) {
    if (r.park && !r.cancelled && r.ok) {
      ReadRequest req = std::move(*r.park);
      r.park.reset();
      if (std::find(dropped.begin(), dropped.end(), req.session) != dropped.end()) {
        r.cancelled = true;
        r.frame.clear();
      } else if (!stopping_ && !cancel_all_ && uv_now(loop_) < req.wait_until_ms) {
        if (missed_ack(req)) resubmit(std::move(req));  // `r`, its empty page, is not sent
        else park(std::move(req), std::move(r));
        continue;
      }
    }
    r.park.reset();
    answered.push_back(std::move(r));
  }
  results.swap(answered);
  if (!results.empty()) on_complete_(results);
  if (stopped_ || !stopping_ || live_threads_.load(std::memory_order_acquire) != 0) return;
  for (auto& t : threads_)
    if (t.joinable()) t.join();  // they have left run(): this does not wait
  // Results posted after this wake-up's swap.
  std::vector<ReadResult> rest;
  mailbox_.take(rest);
  if (!rest.empty()) on_complete_(rest);
  stopped_ = true;
  uv_timer_stop(&wait_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&wait_timer_), nullptr);
  mailbox_.close();
  if (on_stopped_) on_stopped_();
}

// Under mu_. Verify first when none runs (it is the one kind that must not run twice at
// once, so a free thread takes it as soon as it may), then the FIFO.
bool Reader::next_job(Worker& w, Job& job) {
  if (!verify_running_ && !verify_waiting_.empty()) {
    // One walk answers every waiter that asked the same question (the same key,
    // checkpoints and freshness as the oldest waiter); the others wait for the next.
    job.kind = ReadRequest::Kind::verify;
    const proto::VerifyArgs first = verify_waiting_.front().verify;
    std::vector<ReadRequest> later;
    for (auto& r : verify_waiting_) (r.verify == first ? job.reqs : later).push_back(std::move(r));
    verify_waiting_.swap(later);
    verify_running_ = true;
  } else if (!queue_.empty()) {
    // Fair between uids (served_); the scan is bounded, a uid not yet served ends it.
    constexpr size_t kFairScan = 1024;
    auto pick = queue_.begin();
    uint64_t least = UINT64_MAX;
    size_t looked = 0;
    for (auto it = queue_.begin(); it != queue_.end() && looked < kFairScan; ++it, ++looked) {
      auto f = served_.find(it->uid);
      uint64_t n = f == served_.end() ? 0 : f->second;
      if (n < least) {
        least = n;
        pick = it;
        if (n == 0) break;
      }
    }
    ++served_[pick->uid];
    job.kind = pick->kind;
    job.reqs.push_back(std::move(*pick));
    queue_.erase(pick);
    if (queue_.empty()) served_.clear();
  } else {
    return false;
  }
  job.dropped.assign(job.reqs.size(), false);
  w.job = &job;
  w.interrupt = false;
  return true;
}

void Reader::run(Worker& w) {
  pthread_setname_np(pthread_self(), "cairnd-query");
  // Opened lazily and reopened after an error, so a reader never keeps a broken handle.
  std::unique_ptr<store::Store> store;
  std::unique_ptr<store::QueryEngine> engine;  // on `store`'s connection; reset before it
  std::vector<ReadResult> out;
  for (;;) {
    Job job;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] {
        return stopping_ || (!verify_running_ && !verify_waiting_.empty()) || !queue_.empty();
      });
      if (!next_job(w, job)) break;
    }
    execute(w, job, store, engine, out);
    {
      std::lock_guard lk(mu_);
      for (size_t i = 0; i < job.reqs.size(); ++i)
        if (job.dropped[i]) {
          out[out.size() - job.reqs.size() + i].cancelled = true;
          out[out.size() - job.reqs.size() + i].frame.clear();
        }
      w.job = nullptr;
      if (job.kind == ReadRequest::Kind::verify) {
        verify_running_ = false;
        if (!verify_waiting_.empty()) cv_.notify_one();  // the next walk may start
      }
    }
    mailbox_.post(out);
  }
  engine.reset();
  store.reset();
  // Release: the loop that sees 0 must also see every result posted before.
  if (live_threads_.fetch_sub(1, std::memory_order_acq_rel) == 1) mailbox_.wake();
}

// Runs one job and appends one result per request to `out`.
void Reader::execute(Worker& w, Job& job, std::unique_ptr<store::Store>& store,
                     std::unique_ptr<store::QueryEngine>& engine, std::vector<ReadResult>& out) {
  const size_t first = out.size();
  for (const auto& r : job.reqs) out.push_back(result_for(r));
  auto fail_all = [&](const std::string& why) {
    bool cancelled = w.interrupt.load();
    for (size_t i = first; i < out.size(); ++i) {
      out[i].ok = false;
      out[i].cancelled = cancelled;
      out[i].frame.clear();
      out[i].error = why;
    }
  };
  if (!store) {
    auto s = store::Store::open(db_path_, store::OpenMode::readonly);
    if (!s) return fail_all(s.error().message);
    store = std::move(s.value());
    // Lets interrupt_running()/cancel_session() stop a long statement on this thread.
    sqlite3_progress_handler(store->handle(), 4096, &on_progress, &w.interrupt);
  }
  // Compiled statements are kept per thread while its connection lives.
  if (!engine) engine = std::make_unique<store::QueryEngine>(*store);
  bool ok = true;
  switch (job.kind) {
    case ReadRequest::Kind::query: {
      const ReadRequest& req = job.reqs.front();
      ReadResult& res = out[first];
      // Encoded here, row by row from SQLite's buffers: the loop only sends it. The page
      // stops before it would pass max_reply_; its cursor then points past the last row
      // sent. (The rows SQLite still steps through after that are read and dropped: at
      // most spec.limit of them.)
      store->map_reads(mmap_bytes_);
      std::string& buf = res.frame;
      buf.reserve(std::min<size_t>(w.reply_hint + w.reply_hint / 8, size_t{max_reply_} + 64));
      proto::QueryReplyBuilder reply(buf, req.id);
      auto end = engine->page(req.spec, [&](uint64_t seq, std::string_view hash, std::string_view body) {
        if (reply.count() > 0 && !reply.fits(body.size(), max_reply_)) return false;
        reply.add(seq, hash, body);
        return true;
      });
      if (end && reply.count() == 0 && !end.value().next && req.spec.wait_ms) {
        res.park = req;  // nothing yet: the loop parks it (the empty page stays its answer)
      }
      if (end) {
        uint64_t scanned = end.value().scanned;
        reply.finish(end.value().next, reply.room_for_scanned(max_reply_) ? scanned : 0);
        w.reply_hint = buf.size();
        if (buf.capacity() > buf.size() + buf.size() / 4 + 4096) buf.shrink_to_fit();
        res.ok = true;
      } else {
        ok = false;
        fail_all(end.error().message);
      }
      break;
    }
    case ReadRequest::Kind::subscribe:
      if (auto err = subscription_page(w.reply_hint, job.reqs.front(), out[first], *store, *engine)) {
        ok = false;
        fail_all(*err);
      }
      break;
    case ReadRequest::Kind::stats: {
      // stats and verify read the whole index or chain: through a map, every page
      // would stay resident (and counted in our RSS) long after. Plain reads.
      store->map_reads(0);
      auto r = engine->info();
      if (r) {
        out[first].ok = true;
        out[first].info = std::move(r.value());
      } else {
        ok = false;
        fail_all(r.error().message);
      }
      break;
    }
    case ReadRequest::Kind::verify: {
      store->map_reads(0);
      auto r = store->verify();  // the query index too (class `index`)
      if (r) {
        for (size_t i = 0; i < job.reqs.size(); ++i) {
          out[first + i].ok = true;
          proto::encode_verify_reply(out[first + i].frame, job.reqs[i].id, r.value());
        }
      } else {
        ok = false;
        fail_all(r.error().message);
      }
      break;
    }
  }
  if (!ok) {
    engine.reset();
    store.reset();
  }
}

void Reader::park(ReadRequest req, ReadResult empty) {
  parked_.push_back(Parked{std::move(req), std::move(empty)});
  if (!timer_running_) {
    // A coarse tick: a wait ends within 25 ms of its time, and in batched mode an acked
    // event is shown within 25 ms of its commit.
    uv_timer_start(&wait_timer_, &Reader::on_wait_timer, 25, 25);
    timer_running_ = true;
  }
}

void Reader::on_wait_timer(uv_timer_t* t) noexcept {
  auto* self = static_cast<Reader*>(t->data);
  uint64_t now = uv_now(self->loop_);
  std::vector<ReadResult> done;
  std::vector<ReadRequest> again;
  for (auto it = self->parked_.begin(); it != self->parked_.end();) {
    if (now >= it->req.wait_until_ms) {
      done.push_back(std::move(it->empty));
      it = self->parked_.erase(it);
    } else if (it->req.spec.after.value_or(0) < self->acked_seq_) {
      again.push_back(std::move(it->req));  // acked, maybe committed by now (batched mode)
      it = self->parked_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& r : again) self->resubmit(std::move(r));
  if (self->parked_.empty()) {
    uv_timer_stop(&self->wait_timer_);
    self->timer_running_ = false;
  }
  // Through the mailbox like every other result, never from inside this callback's caller.
  if (!done.empty()) self->mailbox_.post(done);
}

void Reader::events_committed(uint64_t seq) {
  acked_seq_ = std::max(acked_seq_, seq);
  for (auto it = parked_.begin(); it != parked_.end();) {
    if (it->req.spec.after.value_or(0) < seq) {
      ReadRequest req = std::move(it->req);
      it = parked_.erase(it);
      resubmit(std::move(req));
    } else {
      ++it;
    }
  }
}

// A parked query going back on the queue. It was admitted once (submit's bound counted
// it), so it is never refused now: dropping it would leave its session waiting forever.
void Reader::resubmit(ReadRequest req) {
  {
    std::lock_guard lk(mu_);
    if (!cancel_all_) {
      queue_.push_back(std::move(req));
      cv_.notify_one();
      return;
    }
  }
  std::vector<ReadRequest> one;
  one.push_back(std::move(req));
  post_cancelled(one);
}

}  // namespace cairn::daemon
