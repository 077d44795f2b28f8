// retention.hpp — moving old records into sealed archive segments, and removing
// segments for good, by the rules of the configuration (PROTOCOL.md §11).
//
// Glossary (see also store/archive.hpp):
//   step      one unit of work: archive (records horizon+1..S into one segment, S a seal)
//             or remove (the oldest segments, declared by a cairn.retention.removed record)
//   prepare   what the retention thread does off the append path with its own read-only
//             connection: choose the step, read and compress the records, write the
//             segment durably, or build the removal record's fields
//   turn      what the writer thread does between two groups, in its own transactions:
//             raise the horizon and delete archived rows (at most kRowsPerTurn a turn,
//             so a segment may take several: the horizon can sit inside a segment), or
//             append the removal record and seal it at once. A turn is short.
//
// Why the writer takes the turn: the database has one writer (a lock), and a removal
// record must get a seq and a seal like every record. Why a thread prepares: reading
// and compressing a segment takes ~0.1-1 s, which must not stall appends.
//
// Crash safety: a segment is durable before its rows leave; a removal record is durable
// (and sealed) before its segments are unlinked; the thread unlinks segments left below
// the removal horizon and rewrites a segment left above the archive horizon, so a crash
// anywhere is continued from and verify accepts every state in between.
//
// Threads: start/stop on the loop thread; the retention thread; due/turn on the writer.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../protocol/result.hpp"
#include "config.hpp"
#include "store/store.hpp"

namespace cairn::daemon {

class Retention {
 public:
  // Null when every rule is off. A rule without sealing is a configuration error (a
  // segment ends at a seal, and a removal must be sealed).
  static Result<std::unique_ptr<Retention>, std::string> create(const Config& config);
  ~Retention();
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;

  void start();
  // Stops the thread (a step half prepared is dropped; its file is rewritten next time).
  void stop();

  // Writer thread: a prepared step is waiting for its turn.
  bool due() const { return due_.load(std::memory_order_acquire); }
  // Writer thread: how often an idle writer looks at due() (monotonic ns from now).
  static constexpr int64_t kPollNs = 1'000'000'000;
  // Writer thread, no transaction open. Returns true when a removal record was appended
  // (the caller seals at once). A store error is the caller's to handle like any failed
  // commit; the step is dropped and prepared again later.
  store::StoreResult<bool> turn(store::Store& store, const proto::Trusted& stamp);

  // The hook for a later rule "remove only what witnesses off the host have cosigned":
  // a segment whose records are not yet covered by a checkpoint the witnesses signed
  // must return false here. Today every segment the age/size rules pick may go.
  static bool may_remove(const std::string& segment_path, uint64_t last_seq);

 private:
  Retention() = default;
  void run();
  // One pass: tidy, then prepare at most one step. Returns true if a step was posted.
  bool prepare(store::Store& ro);
  bool prepare_archive(store::Store& ro, uint64_t horizon);
  bool prepare_removal(store::Store& ro, uint64_t horizon);

  Config config_;
  std::string archive_dir_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;   // under mu_
  bool step_done_ = false;  // under mu_: the writer took the last step; prepare again now
  std::atomic<bool> due_{false};

  // The prepared step, written by the thread before due_ is set, read by the writer after.
  enum class Kind { archive, removal } kind_ = Kind::archive;
  uint64_t first_ = 0, last_ = 0;
  std::string fields_;  // removal: the record's canonical fields
  std::string what_;    // for the log line
  int64_t turn_ns_ = 0;  // writer thread: time the turns of this segment took so far
};

}  // namespace cairn::daemon
