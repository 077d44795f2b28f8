// reader.hpp — the query threads: answer query, stats and verify off the loop thread.
//
// Each thread has its own read-only Store (WAL lets readers run beside the writer
// without blocking it). A long verify occupies one thread; the others keep answering
// queries. Results come back to the loop through a Mailbox.
#pragma once

#include <uv.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../protocol/message.hpp"
#include "mailbox.hpp"
#include "store/store.hpp"

namespace cairn::daemon {

class Session;

struct ReadRequest {
  enum class Kind : uint8_t { query, stats, verify };
  Kind kind = Kind::query;
  Session* session = nullptr;  // borrowed: a session outlives its requests in flight
  uint64_t slot = 0;
  uint64_t id = 0;  // the client's request id, echoed in the reply
  proto::QuerySpec spec;
};

struct ReadResult {
  ReadRequest::Kind kind = ReadRequest::Kind::query;
  Session* session = nullptr;
  uint64_t slot = 0;
  uint64_t id = 0;
  bool ok = false;
  std::string error;  // why the store failed
  std::string frame;  // query/verify: the reply, encoded on the reader thread
  store::StoreInfo info;  // stats: the loop adds live figures and encodes
};

class Reader {
 public:
  using CompleteFn = std::function<void(std::vector<ReadResult>&)>;

  Reader(uv_loop_t* loop, std::string db_path, unsigned threads, uint64_t mmap_bytes,
         CompleteFn on_complete);
  ~Reader();
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  int start();
  void submit(ReadRequest req);
  // Finishes queued requests, then joins the threads (blocking only for the request
  // each thread is running) and closes the mailbox.
  void stop();

 private:
  void run();

  uv_loop_t* loop_;
  std::string db_path_;
  unsigned nthreads_;
  uint64_t mmap_bytes_;
  CompleteFn on_complete_;
  Mailbox<ReadResult> mailbox_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ReadRequest> queue_;
  bool stopping_ = false;
};

}  // namespace cairn::daemon
