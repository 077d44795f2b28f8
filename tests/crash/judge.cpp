#include "judge.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "harness.hpp"

namespace cairn::crash {

namespace {

void note(Verdict& v, const std::string& problem) {
  if (v.first_problem.empty()) v.first_problem = problem;
}

std::string seq_str(uint64_t s) { return std::to_string(s); }

}  // namespace

bool parse_stream_idem(const std::string& idem, std::string& connection, long& index) {
  size_t last = idem.rfind('-');
  if (last == std::string::npos || last == 0 || last + 1 >= idem.size()) return false;
  char* end = nullptr;
  index = std::strtol(idem.c_str() + last + 1, &end, 10);
  if (end == nullptr || *end != '\0') return false;
  connection = idem.substr(0, last);
  return true;
}

Verdict judge(const std::string& db, const std::map<std::string, test::AckRecord>& acked,
              const std::set<std::string>& sent, bool order_checks) {
  // A fresh incremental judge checks everything from seq 1 with integrity_check.
  IncrementalJudge fresh(db);
  return fresh.cycle(acked, sent, true, order_checks);
}

Verdict IncrementalJudge::cycle(const std::map<std::string, test::AckRecord>& cycle_acked,
                                const std::set<std::string>& sent, bool full, bool order_checks) {
  Verdict v;
  for (const auto& r : test::read_rows_from(db_, cursor_.next_seq)) {
    // cairnd's own records (seals, lost-seq placeholders) carry no client idem.
    if (r.type.rfind("cairn.", 0) == 0) continue;
    ++events_;
    if (!stored_.emplace(r.idem, r.seq).second) {
      ++v.duplicated;
      note(v, "idem '" + r.idem + "' stored twice (seq " + seq_str(stored_[r.idem]) + " and " +
                  seq_str(r.seq) + ")");
    }
    if (sent.count(r.idem) == 0) {
      ++v.never_sent;
      note(v, "seq " + seq_str(r.seq) + " holds idem '" + r.idem + "' that no client sent");
    }
  }
  v.chain = test::check_database_from(db_, cursor_, full);
  if (!v.chain.empty()) {
    v.chain_breaks = 1;
    note(v, v.chain);
  }
  v.rows = cursor_.next_seq - 1;
  v.events = events_;

  // Per connection: (index, idem, ack) in send order, for the order check.
  struct Entry {
    long index;
    const std::string* idem;
    const test::AckRecord* ack;
    bool stored;
  };
  std::map<std::string, std::vector<Entry>> by_connection;
  for (const auto& [idem, a] : cycle_acked) {
    (a.durable ? v.durable_acked : v.nondurable_acked)++;
    auto it = stored_.find(idem);
    bool stored = it != stored_.end();
    if (!stored) {
      if (a.durable) {
        ++v.lost_durable;
        note(v, "idem '" + idem + "' acked durable as seq " + seq_str(a.seq) + " is missing");
      } else {
        ++v.lost_nondurable;
        if (order_checks && a.seq <= v.rows) {
          ++v.not_tail;
          note(v, "idem '" + idem + "' acked durable:false as seq " + seq_str(a.seq) +
                      " is missing although the file goes on to seq " + seq_str(v.rows) +
                      " (a commit lost part of itself)");
        }
      }
    } else if (it->second != a.seq) {
      ++v.wrong_seq;
      note(v, "idem '" + idem + "' acked as seq " + seq_str(a.seq) + " but stored as seq " +
                  seq_str(it->second));
    }
    std::string conn;
    long index = 0;
    if (order_checks && parse_stream_idem(idem, conn, index))
      by_connection[conn].push_back({index, &idem, &a, stored});
  }
  for (auto& [conn, entries] : by_connection) {
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.index < b.index; });
    const Entry* first_lost = nullptr;
    for (const Entry& e : entries) {
      if (!e.stored) {
        if (first_lost == nullptr) first_lost = &e;
      } else if (first_lost != nullptr) {
        ++v.order_breaks;
        note(v, "connection " + conn + ": idem '" + *e.idem + "' (seq " + seq_str(e.ack->seq) +
                    ") is stored but the earlier acked idem '" + *first_lost->idem + "' (seq " +
                    seq_str(first_lost->ack->seq) + ") is not");
      }
    }
  }
  return v;
}

void add(Verdict& s, const Verdict& v) {
  s.rows = std::max(s.rows, v.rows);
  s.durable_acked += v.durable_acked;
  s.nondurable_acked += v.nondurable_acked;
  s.lost_durable += v.lost_durable;
  s.lost_nondurable += v.lost_nondurable;
  s.wrong_seq += v.wrong_seq;
  s.never_sent += v.never_sent;
  s.duplicated += v.duplicated;
  s.not_tail += v.not_tail;
  s.order_breaks += v.order_breaks;
  s.chain_breaks += v.chain_breaks;
  if (s.chain.empty()) s.chain = v.chain;
  if (s.first_problem.empty()) s.first_problem = v.first_problem;
}

std::string tally_line(const std::string& scenario, uint64_t cycles, const Verdict& s) {
  return "tally: scenario=" + scenario + " cycles=" + std::to_string(cycles) +
         " acked=" + std::to_string(s.durable_acked + s.nondurable_acked) +
         " durable_acked=" + std::to_string(s.durable_acked) +
         " lost_durable=" + std::to_string(s.lost_durable) +
         " lost_nondurable=" + std::to_string(s.lost_nondurable) +
         " wrong_seq=" + std::to_string(s.wrong_seq) +
         " never_sent=" + std::to_string(s.never_sent) +
         " duplicated=" + std::to_string(s.duplicated) + " not_tail=" + std::to_string(s.not_tail) +
         " order_breaks=" + std::to_string(s.order_breaks) +
         " chain_breaks=" + std::to_string(s.chain_breaks) + " rows=" + std::to_string(s.rows);
}

void emit_tally(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  const char* path = std::getenv("CAIRN_CRASH_TALLY");
  if (path == nullptr || *path == '\0') return;
  // O_APPEND with one write(2) per line: lines from consecutive tests never interleave.
  int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  std::string rec = line + "\n";
  ssize_t n = ::write(fd, rec.data(), rec.size());
  (void)n;  // the tally file is a convenience; stdout already has the line
  ::close(fd);
}

bool has_events_table(const std::string& db, std::string& why, bool writable) {
  sqlite3* h = nullptr;
  int flags = writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
  if (sqlite3_open_v2(db.c_str(), &h, flags, nullptr) != SQLITE_OK) {
    why = h ? sqlite3_errmsg(h) : "open failed";
    sqlite3_close(h);
    return false;
  }
  // The checkpoint SQLite runs when the last read-write connection closes need not be
  // fsynced here: what matters is the content, and thousands of fsyncs would dominate
  // the power-cut sweep's time.
  if (writable) sqlite3_exec(h, "PRAGMA synchronous=OFF", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  bool ok = sqlite3_prepare_v2(h, "SELECT 1 FROM events LIMIT 1", -1, &st, nullptr) == SQLITE_OK;
  if (!ok) why = sqlite3_errmsg(h);
  sqlite3_finalize(st);
  sqlite3_close(h);
  return ok;
}

long env_long(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  return (end != nullptr && *end == '\0') ? n : fallback;
}

}  // namespace cairn::crash
