// judge.hpp — the crash suite's verdict, from the database file alone.
//
// Glossary:
//   acked      idem -> ack (seq, durable) as the client saw it (Streamer::acked).
//   sent       every idem any client handed to libcairn or wrote raw.
//   head       the newest seq in the file after the crash.
//   connection the events of one Streamer thread: idem "<prefix>-<TT>-<IIIIIII>" (see
//              stream_idem); they share a connection and so a per-connection order.
//
// What must hold after any crash (kill -9 or power cut), and what each counter names:
//   lost_durable    an ack said durable, the event is not in the file
//   wrong_seq       the event is in the file under another seq than its ack said
//   never_sent      a row whose idem no client ever sent
//   duplicated      an idem stored twice
//   chain           seq gaps, hash breaks, integrity_check complaints
//   not_tail        an acked durable:false event was lost although its seq is <= head: a
//                   commit lost part of itself (a crash may only lose whole commits, the
//                   newest ones)
//   order_breaks    a connection's acked event is stored while an earlier acked event of
//                   the same connection is not (each connection's events are committed
//                   in order; hybrid's critical commit takes its connection's earlier
//                   events along)
// lost_nondurable is not an error by itself: it is the batched/hybrid loss window, which
// the caller bounds (<= batch size per crash) and reports.
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
  uint64_t rows = 0;  // head seq after the checks (rows are 1..head when the chain is sound)
  uint64_t events = 0;  // client events stored: rows less cairnd's own (seals, placeholders)
  uint64_t durable_acked = 0, nondurable_acked = 0;
  uint64_t lost_durable = 0;
  uint64_t lost_nondurable = 0;
  uint64_t wrong_seq = 0;
  uint64_t never_sent = 0;
  uint64_t duplicated = 0;
  uint64_t not_tail = 0;
  uint64_t order_breaks = 0;
  uint64_t chain_breaks = 0;  // 0 or 1 per check: the first break stops the walk
  std::string chain;          // check_database's complaint, empty when sound
  std::string first_problem;  // names the idem and seq, for replay

  // Everything that must be zero after a crash without injected I/O faults.
  uint64_t hard_errors() const {
    return lost_durable + wrong_seq + never_sent + duplicated + not_tail + order_breaks +
           chain_breaks;
  }
};

// Judges `db` against `acked` (every ack to hold to account) and `sent`. With
// `order_checks`, not_tail and order_breaks are counted too (meaningful only right after
// a crash, before anything else was written, and without injected storage faults).
Verdict judge(const std::string& db, const std::map<std::string, test::AckRecord>& acked,
              const std::set<std::string>& sent, bool order_checks = true);

// The same verdict for long loops, checking only what each cycle added: rows past the
// last checked seq and that cycle's acks (rows never change once written: the table is
// append-only). `full` adds PRAGMA integrity_check over the whole file.
class IncrementalJudge {
 public:
  explicit IncrementalJudge(std::string db) : db_(std::move(db)) {}
  Verdict cycle(const std::map<std::string, test::AckRecord>& cycle_acked,
                const std::set<std::string>& sent, bool full, bool order_checks = true);

 private:
  std::string db_;
  test::ChainCursor cursor_;
  std::unordered_map<std::string, uint64_t> stored_;  // idem -> seq, everything checked
  uint64_t events_ = 0;                                // client rows checked so far
};

// Splits a Streamer idem "<prefix>-<TT>-<IIIIIII>" into its connection key and index.
bool parse_stream_idem(const std::string& idem, std::string& connection, long& index);

// Adds v's counts to sum (rows: the newest).
void add(Verdict& sum, const Verdict& v);

// A tally line, e.g. "tally: scenario=kill9/batched cycles=17 acked=... lost_durable=0 ...".
std::string tally_line(const std::string& scenario, uint64_t cycles, const Verdict& sum);

// Prints `line` on stdout and, when CAIRN_CRASH_TALLY names a file, appends it there so
// the suite's last test (tests/crash/tally) can print every scenario's line together.
void emit_tally(const std::string& line);

// Says whether `db` holds the events table; `why` gets SQLite's complaint otherwise. A
// daemon killed before it created the schema leaves no table (or no file), which is
// fine as long as nothing was acked. `writable` opens it read-write as cairnd would
// (closing the last read-write connection checkpoints and removes the -wal); read-only
// leaves the files exactly as the crash left them for the next daemon to recover.
bool has_events_table(const std::string& db, std::string& why, bool writable);

// Integer from the environment, or `fallback`.
long env_long(const char* name, long fallback);

}  // namespace cairn::crash
