#include "judge.hpp"

#include "harness.hpp"

namespace cairn::crash {

Verdict judge(const std::string& db, const std::map<std::string, test::AckRecord>& acked,
              const std::set<std::string>& sent) {
  // A fresh incremental judge checks everything from seq 1 with integrity_check.
  IncrementalJudge fresh(db);
  return fresh.cycle(acked, sent, true);
}

Verdict IncrementalJudge::cycle(const std::map<std::string, test::AckRecord>& cycle_acked,
                               const std::set<std::string>& sent, bool full) {
  Verdict v;
  for (const auto& r : test::read_rows_from(db_, cursor_.next_seq)) {
    if (!stored_.emplace(r.idem, r.seq).second) {
      ++v.duplicated;
      if (v.first_problem.empty()) v.first_problem = "idem " + r.idem + " stored twice";
    }
    if (sent.count(r.idem) == 0) {
      ++v.never_sent;
      if (v.first_problem.empty())
        v.first_problem = "seq " + std::to_string(r.seq) + " holds idem '" + r.idem +
                          "' that no client sent";
    }
  }
  v.chain = test::check_database_from(db_, cursor_, full);
  v.rows = cursor_.next_seq - 1;
  for (const auto& [idem, a] : cycle_acked) {
    (a.durable ? v.durable_acked : v.nondurable_acked)++;
    auto it = stored_.find(idem);
    if (it == stored_.end()) {
      if (a.durable) {
        ++v.lost_durable;
        if (v.first_problem.empty())
          v.first_problem = "idem " + idem + " acked durable as seq " + std::to_string(a.seq) +
                            " is missing";
      } else {
        ++v.lost_nondurable;
      }
    } else if (it->second != a.seq) {
      ++v.wrong_seq;
      if (v.first_problem.empty())
        v.first_problem = "idem " + idem + " acked as seq " + std::to_string(a.seq) +
                          " but stored as seq " + std::to_string(it->second);
    }
  }
  return v;
}

void add(Verdict& s, const Verdict& v) {
  s.rows = v.rows;
  s.durable_acked += v.durable_acked;
  s.nondurable_acked += v.nondurable_acked;
  s.lost_durable += v.lost_durable;
  s.lost_nondurable += v.lost_nondurable;
  s.wrong_seq += v.wrong_seq;
  s.never_sent += v.never_sent;
  s.duplicated += v.duplicated;
  if (!v.chain.empty() && s.chain.empty()) s.chain = v.chain;
}

std::string tally_line(const std::string& scenario, uint64_t cycles, const Verdict& s) {
  return "tally: scenario=" + scenario + " cycles=" + std::to_string(cycles) +
         " acked=" + std::to_string(s.durable_acked + s.nondurable_acked) +
         " durable_acked=" + std::to_string(s.durable_acked) +
         " lost_durable=" + std::to_string(s.lost_durable) +
         " lost_nondurable=" + std::to_string(s.lost_nondurable) +
         " wrong_seq=" + std::to_string(s.wrong_seq) +
         " never_sent=" + std::to_string(s.never_sent) +
         " duplicated=" + std::to_string(s.duplicated) +
         " chain_breaks=" + std::to_string(s.chain.empty() ? 0 : 1) +
         " rows=" + std::to_string(s.rows);
}

}  // namespace cairn::crash
