// streamer.hpp — N libcairn clients pipelining events at a daemon, recording every ack.
//
// Used by integration and crash tests: each event has a unique idempotency key
// (prefix + thread + index), so the database can be checked against what was acked.
// A thread stops at its first connection-level failure (the daemon was killed).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace cairn::test {

struct StreamOptions {
  int threads = 4;
  int per_thread = 1000;
  std::string prefix = "e";   // idem = prefix + "-" + thread + "-" + index (8..32 bytes)
  unsigned window = 32;       // events in flight per client
  int reconnect_ms = 0;       // libcairn reconnect budget; 0 = stop at the first loss
  // Event type of event i of thread t (default "DataAccess").
  std::function<const char*(int t, int i)> type_for;
  // Sampled right after each ack arrives and stored with it (e.g. the op log's size).
  std::function<uint64_t()> probe;
};

struct AckRecord {
  uint64_t seq = 0;
  bool durable = false;
  bool duplicate = false;
  uint64_t probe = 0;
};

class Streamer {
 public:
  ~Streamer() { join(); }
  void run(const std::string& socket, const StreamOptions& opts);
  // Waits (condition variable, deadline) until at least n acks arrived.
  bool wait_count(uint64_t n, int timeout_ms);
  void join();

  std::atomic<uint64_t> count{0};     // acks received
  std::atomic<uint64_t> failures{0};  // events answered with an error
  std::mutex mu;                      // guards the maps below
  std::map<std::string, AckRecord> acked;   // idem -> ack
  std::map<std::string, int> refused;       // idem -> libcairn error code
  std::set<std::string> sent;               // every idem handed to libcairn

 private:
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
};

std::string stream_idem(const std::string& prefix, int thread, int i);

}  // namespace cairn::test
