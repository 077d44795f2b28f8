// judge.hpp — the crash suite's verdict, from the database file alone.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>

#include "harness.hpp"
#include "streamer.hpp"

namespace cairn::crash {

struct Verdict {
  uint64_t rows = 0;
  uint64_t durable_acked = 0, nondurable_acked = 0;
  uint64_t lost_durable = 0;     // acked durable, not in the file: must be 0
  uint64_t lost_nondurable = 0;  // acked durable:false, not in the file: the batched window
  uint64_t wrong_seq = 0;        // in the file under another seq than acked: must be 0
  uint64_t never_sent = 0;       // in the file, never sent by anyone: must be 0
  uint64_t duplicated = 0;       // an idem stored twice: must be 0
  std::string chain;             // check_database's complaint, empty when sound
  std::string first_problem;     // names the idem and seq, for replay
};

// Judges `db` against everything acked and sent so far.
Verdict judge(const std::string& db, const std::map<std::string, test::AckRecord>& acked,
              const std::set<std::string>& sent);

// The same verdict for long loops, checking only what each cycle added: rows past the
// last checked seq and that cycle's acks (rows never change once written: the table is
// append-only). `full` adds PRAGMA integrity_check over the whole file.
class IncrementalJudge {
 public:
  explicit IncrementalJudge(std::string db) : db_(std::move(db)) {}
  Verdict cycle(const std::map<std::string, test::AckRecord>& cycle_acked,
                const std::set<std::string>& sent, bool full);

 private:
  std::string db_;
  test::ChainCursor cursor_;
  std::unordered_map<std::string, uint64_t> stored_;  // idem -> seq, everything checked
};

// A tally line, e.g. "tally: scenario=kill9/batched cycles=17 acked=... lost_durable=0 ...".
std::string tally_line(const std::string& scenario, uint64_t cycles, const Verdict& sum);
void add(Verdict& sum, const Verdict& v);

}  // namespace cairn::crash
