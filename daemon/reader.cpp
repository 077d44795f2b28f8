#include "reader.hpp"

#include <pthread.h>

#include <memory>

namespace cairn::daemon {

Reader::Reader(uv_loop_t* loop, std::string db_path, unsigned threads, uint64_t mmap_bytes,
               CompleteFn on_complete)
    : loop_(loop),
      db_path_(std::move(db_path)),
      nthreads_(threads == 0 ? 1 : threads),
      mmap_bytes_(mmap_bytes),
      on_complete_(std::move(on_complete)) {}

Reader::~Reader() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

int Reader::start() {
  int rc = mailbox_.init(loop_, [this](std::vector<ReadResult>& r) {
    if (!r.empty()) on_complete_(r);
  });
  if (rc < 0) return rc;
  for (unsigned i = 0; i < nthreads_; ++i) threads_.emplace_back([this] { run(); });
  return 0;
}

void Reader::submit(ReadRequest req) {
  {
    std::lock_guard lk(mu_);
    queue_.push_back(std::move(req));
  }
  cv_.notify_one();
}

void Reader::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  // Deliver what the threads finished after the last wake-up, then close.
  std::vector<ReadResult> rest;
  mailbox_.take(rest);
  if (!rest.empty()) on_complete_(rest);
  mailbox_.close();
}

void Reader::run() {
  pthread_setname_np(pthread_self(), "cairnd-query");
  // Opened lazily and reopened after an error, so a reader never keeps a broken handle.
  std::unique_ptr<store::Store> store;
  std::vector<ReadResult> out;
  for (;;) {
    ReadRequest req;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      req = std::move(queue_.front());
      queue_.pop_front();
    }
    ReadResult res;
    res.kind = req.kind;
    res.session = req.session;
    res.slot = req.slot;
    res.id = req.id;
    if (!store) {
      auto s = store::Store::open(db_path_, store::OpenMode::readonly);
      if (s) {
        store = std::move(s.value());
      } else {
        res.error = s.error().message;
      }
    }
    if (store) {
      switch (req.kind) {
        case ReadRequest::Kind::query: {
          // Encoded here, row by row from SQLite's buffers: the loop only sends it.
          store->map_reads(mmap_bytes_);
          proto::QueryReplyBuilder reply(res.frame, req.id);
          auto next = store->query_each(req.spec, [&](uint64_t seq, std::string_view hash,
                                                      std::string_view body) {
            reply.add(seq, hash, body);
          });
          if (next) {
            reply.finish(next.value());
            res.ok = true;
          } else {
            res.frame.clear();
            res.error = next.error().message;
          }
          break;
        }
        case ReadRequest::Kind::stats: {
          // stats and verify read the whole index or chain: through a map, every page
          // would stay resident (and counted in our RSS) long after. Plain reads.
          store->map_reads(0);
          auto r = store->info();
          if (r) { res.ok = true; res.info = std::move(r.value()); }
          else res.error = r.error().message;
          break;
        }
        case ReadRequest::Kind::verify: {
          store->map_reads(0);
          auto r = store->verify();
          if (r) {
            res.ok = true;
            proto::encode_verify_reply(res.frame, req.id, r.value());
          } else {
            res.error = r.error().message;
          }
          break;
        }
      }
      if (!res.ok) store.reset();
    }
    out.push_back(std::move(res));
    mailbox_.post(out);
  }
}

}  // namespace cairn::daemon
