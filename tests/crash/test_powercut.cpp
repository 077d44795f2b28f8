// Power-cut simulation: cairnd runs on the op-logging VFS shim; afterwards the files are
// rebuilt as a power cut at hundreds of points could have left them (unsynced writes
// dropped, torn, partly applied, or applied sector by sector), opened with plain SQLite
// (which runs WAL recovery), and judged: every event acked durable before the cut is
// there under its acked seq, the chain and integrity_check hold, and each connection's
// surviving events are a prefix of what it was acked. A sample of the cut images is also
// handed to a real cairnd, which must start on it and continue the chain.
//
// Correlating acks with the log: each client samples the op log's size right after each
// ack arrives (StreamOptions::probe). The daemon acks only after its commit's sync
// returned, and the shim logs a sync before performing it, so an ack sampled at size S
// was covered by a sync record that starts before S: a cut at any op whose record starts
// at or after S must keep it.
#include <cairn/cairn.h>
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "judge.hpp"
#include "powercut.hpp"
#include "streamer.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

uint64_t file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

struct Run {
  std::map<std::string, AckRecord> acked;
  std::set<std::string> sent;
  std::vector<crash::Op> ops;
};

struct Phase {
  std::vector<std::string> args;
  int threads, per_thread;
  const char* critical_every_10th;  // event type of every 10th event, or nullptr
  bool clean_stop;                  // SIGTERM (checkpoint, WAL removed) instead of SIGKILL
  std::string fault = {};           // CAIRN_VFS_FAULT for this phase, if any
  unsigned window = 4;              // events in flight per client
};

// Runs the phases against one database and one op log (it is opened O_APPEND, so
// restarts continue it), then reads the log back.
Run workload(TestDaemon& d, const std::vector<Phase>& phases) {
  std::string oplog = d.dir() + "/ops.log";
  Run r;
  int n = 0;
  for (const Phase& ph : phases) {
    std::vector<std::string> env = {"CAIRN_VFS_OPLOG=" + oplog};
    if (!ph.fault.empty()) env.push_back("CAIRN_VFS_FAULT=" + ph.fault);
    cr_assert(d.start({.args = ph.args, .env = env}), "log %s", d.log_path().c_str());
    StreamOptions o;
    o.threads = ph.threads;
    o.per_thread = ph.per_thread;
    o.window = ph.window;  // small: many commits, many sync points
    o.prefix = "pc" + std::to_string(n++);
    o.probe = [oplog] { return file_size(oplog); };
    if (ph.critical_every_10th) {
      const char* crit = ph.critical_every_10th;
      o.type_for = [crit](int, int i) { return i % 10 == 0 ? crit : "DataAccess"; };
    }
    Streamer s;
    s.run(d.socket(), o);
    s.join();
    int status = ph.clean_stop ? d.stop(SIGTERM) : d.kill9();
    if (ph.clean_stop) cr_assert_eq(exit_code(status), 0, "SIGTERM; log %s", d.log_path().c_str());
    r.acked.insert(s.acked.begin(), s.acked.end());
    r.sent.insert(s.sent.begin(), s.sent.end());
  }
  std::ifstream in(oplog, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  r.ops = crash::parse_oplog(ss.str());
  return r;
}

// Batched mode's two durability promises: an event with sync:true is acked durable, and
// a flush returns once every event its connection sent before it is durable. Each
// client sends rounds of events (every 7th with sync:true), waits for their acks, then
// flushes; from the flush's return (the log size sampled then) every event of the round
// is held to account as durable, exactly like a durable ack. The batch size and interval
// are out of reach, so only sync events and flushes commit.
Run batched_flush_workload(TestDaemon& d, int threads, int rounds, int per_round) {
  std::string oplog = d.dir() + "/ops.log";
  cr_assert(d.start({.args = {"--flush-mode", "batched", "--batch-size", "100000",
                              "--batch-interval-ms", "600000"},
                     .env = {"CAIRN_VFS_OPLOG=" + oplog}}),
            "log %s", d.log_path().c_str());
  Run r;
  std::mutex mu;
  std::string problem;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      cairn_options o;
      cairn_options_init(&o);
      o.client_name = "powercut-flush";
      o.reconnect_timeout_ms = 0;
      o.max_inflight = static_cast<unsigned>(per_round);
      cairn_client* c = nullptr;
      if (cairn_open(&c, d.socket().c_str(), &o) != 0) {
        std::lock_guard lk(mu);
        problem = "cannot connect";
        return;
      }
      std::map<std::string, AckRecord> mine;
      std::set<std::string> sent;
      std::string err;
      for (int round = 0; round < rounds && err.empty(); ++round) {
        std::vector<std::string> idems;
        for (int j = 0; j < per_round; ++j) {
          int i = round * per_round + j;
          idems.push_back(stream_idem("pf", t, i));
          cairn_event e{};
          e.type = "DataAccess";
          e.severity = -1;
          e.sync = i % 7 == 0;
          e.idem = idems.back().data();
          e.idem_len = idems.back().size();
          sent.insert(idems.back());
          uint64_t ticket = 0;
          if (cairn_append_async(c, &e, &ticket) != 0) err = "append_async failed";
        }
        for (int j = 0; j < per_round && err.empty(); ++j) {
          uint64_t ticket = 0;
          cairn_ack ack{};
          int rc = cairn_next_ack(c, &ticket, &ack);
          uint64_t probe = file_size(oplog);
          if (rc != 0) {
            err = std::string("ack: ") + cairn_strerror(rc);
            break;
          }
          mine[idems[static_cast<size_t>(j)]] = AckRecord{ack.seq, ack.durable != 0, false, probe};
          int i = round * per_round + j;
          if ((i % 7 == 0) != (ack.durable != 0))
            err = idems[static_cast<size_t>(j)] +
                  (i % 7 == 0 ? ": sync:true event acked durable:false"
                              : ": routine event acked durable in batched mode");
        }
        uint64_t durable_seq = 0;
        int rc = cairn_flush(c, &durable_seq);
        uint64_t probe = file_size(oplog);
        if (rc != 0) {
          err = std::string("flush: ") + cairn_strerror(rc);
          break;
        }
        for (const auto& idem : idems) {
          AckRecord& a = mine[idem];
          if (durable_seq < a.seq)
            err = "flush answered durable_seq " + std::to_string(durable_seq) + " before " + idem +
                  " (seq " + std::to_string(a.seq) + ") was durable";
          if (!a.durable) {  // durable from the flush's return on
            a.durable = true;
            a.probe = probe;
          }
        }
      }
      cairn_close(c);
      std::lock_guard lk(mu);
      r.acked.insert(mine.begin(), mine.end());
      r.sent.insert(sent.begin(), sent.end());
      if (problem.empty() && !err.empty()) problem = "client " + std::to_string(t) + ": " + err;
    });
  }
  for (auto& w : workers) w.join();
  d.kill9();
  cr_assert(problem.empty(), "powercut/batched-flush: %s", problem.c_str());
  std::ifstream in(oplog, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  r.ops = crash::parse_oplog(ss.str());
  return r;
}

// Cut points: one op before, at, and after every sync (the moments that matter), then
// random ones up to `want`; if there are more than `cap`, an even spread of `cap`.
std::vector<size_t> cut_points(const crash::PowerCut& pc, std::mt19937_64& rng, size_t want,
                               size_t cap) {
  std::set<size_t> cuts;
  for (size_t k = 0; k < pc.size(); ++k)
    if (pc.op(k).kind == crash::OpKind::sync) {
      if (k > 0) cuts.insert(k - 1);
      cuts.insert(k);
      cuts.insert(k + 1);
    }
  while (cuts.size() < want && cuts.size() <= pc.size())
    cuts.insert(std::uniform_int_distribution<size_t>(0, pc.size())(rng));
  std::vector<size_t> points(cuts.begin(), cuts.end());
  if (points.size() > cap) {
    std::vector<size_t> thin;
    for (size_t i = 0; i < cap; ++i) thin.push_back(points[i * points.size() / cap]);
    points = thin;
  }
  return points;
}

// A real cairnd on a cut image: it must become ready (its open checks the chain head),
// take one event as head+1, and leave a sound chain behind.
void reopen_with_daemon(const char* scenario, const crash::PowerCut& pc, size_t k,
                        crash::CutVariant v, uint64_t cut_seed, uint64_t head) {
  TestDaemon d("cairn-pc-reopen");
  pc.materialize(d.dir(), v, cut_seed);
  cr_assert(d.start(),
            "%s: cut at op %zu (%s, cut seed %llu): cairnd does not start on the "
            "image; log %s",
            scenario, k, crash::variant_name(v), static_cast<unsigned long long>(cut_seed),
            d.log_path().c_str());
  cairn_options o;
  cairn_options_init(&o);
  o.client_name = "powercut";
  o.reconnect_timeout_ms = 0;
  cairn_client* c = nullptr;
  cr_assert_eq(cairn_open(&c, d.socket().c_str(), &o), 0);
  std::string idem = "reopen-" + std::to_string(k);
  cairn_event e{};
  e.type = "AfterPowerCut";
  e.severity = -1;
  e.idem = idem.data();
  e.idem_len = idem.size();
  cairn_ack ack{};
  int rc = cairn_append(c, &e, &ack);
  cairn_close(c);
  cr_assert_eq(rc, 0, "%s: cut at op %zu (%s): append after restart: %s", scenario, k,
               crash::variant_name(v), cairn_strerror(rc));
  cr_assert_eq(ack.seq, head + 1,
               "%s: cut at op %zu (%s): after restart the next event got seq "
               "%llu, expected %llu",
               scenario, k, crash::variant_name(v), static_cast<unsigned long long>(ack.seq),
               static_cast<unsigned long long>(head + 1));
  d.kill9();
  std::string problem = check_database(d.db());
  cr_assert(problem.empty(), "%s: cut at op %zu (%s): after restart: %s", scenario, k,
            crash::variant_name(v), problem.c_str());
  auto rows = read_rows_from(d.db(), head + 1);
  cr_assert(rows.size() == 1 && rows[0].idem == idem,
            "%s: cut at op %zu (%s): seq %llu "
            "(acked durable after restart) is not in the file",
            scenario, k, crash::variant_name(v), static_cast<unsigned long long>(head + 1));
}

void sweep(const char* scenario, Run& run, const std::string& scratch, uint64_t seed) {
  crash::PowerCut pc(run.ops);
  std::mt19937_64 rng(seed);
  std::vector<size_t> points = cut_points(pc, rng, 600, 700);
  mkdir(scratch.c_str(), 0700);
  std::string db = scratch + "/cairn.db";
  uint64_t checks = 0, required_max = 0, lost_nondurable_max = 0, reopened = 0, empty_images = 0;
  uint64_t pending_max = 0;
  crash::Verdict sum;
  const size_t reopen_every = std::max<size_t>(1, points.size() / 24);
  for (size_t pi = 0; pi < points.size(); ++pi) {
    const size_t k = points[pi];
    pc.advance_to(k);
    pending_max = std::max<uint64_t>(pending_max, pc.pending());
    uint64_t cut_offset = k < pc.size() ? pc.op(k).log_offset : UINT64_MAX;
    // Every ack the client had before the cut is held to account: durable ones must be
    // there, durable:false ones may be lost but only as a tail, in connection order.
    std::map<std::string, AckRecord> before;
    uint64_t required = 0;
    for (const auto& [idem, a] : run.acked)
      if (a.probe <= cut_offset) {
        before[idem] = a;
        required += a.durable ? 1 : 0;
      }
    required_max = std::max(required_max, required);
    for (crash::CutVariant v : crash::kAllVariants) {
      const uint64_t cut_seed = seed ^ (static_cast<uint64_t>(k) << 8) ^ static_cast<uint64_t>(v);
      pc.materialize(scratch, v, cut_seed);
      ++checks;
      std::string why;
      if (!crash::has_events_table(db, why, /*writable=*/true)) {
        cr_assert_eq(required, 0u,
                     "%s: cut at op %zu of %zu (%s, seed %llu): no events table (%s) "
                     "but %llu events were acked durable before the cut",
                     scenario, k, pc.size(), crash::variant_name(v),
                     static_cast<unsigned long long>(seed), why.c_str(),
                     static_cast<unsigned long long>(required));
        ++empty_images;
        continue;
      }
      crash::Verdict verdict = crash::judge(db, before, run.sent);
      cr_assert_eq(verdict.hard_errors(), 0u, "%s: cut at op %zu of %zu (%s, seed %llu): %s",
                   scenario, k, pc.size(), crash::variant_name(v),
                   static_cast<unsigned long long>(seed), verdict.first_problem.c_str());
      lost_nondurable_max = std::max(lost_nondurable_max, verdict.lost_nondurable);
      crash::add(sum, verdict);
      // A real daemon on some of the images (alternating the ways of losing data).
      if (pi % reopen_every == reopen_every / 2 &&
          v == crash::kAllVariants[(pi / reopen_every) % 4]) {
        reopen_with_daemon(scenario, pc, k, v, cut_seed, verdict.rows);
        ++reopened;
      }
    }
  }
  char line[512];
  std::snprintf(
      line, sizeof line,
      "tally: scenario=%s cut_points=%zu checks=%llu variants=drop,tear,subset,sectors "
      "ops=%zu acked=%zu most_durable_acks_at_a_cut=%llu most_unsynced_ops_at_a_cut=%llu "
      "most_nondurable_lost_at_a_cut=%llu images_without_table=%llu daemon_restarts=%llu "
      "lost_durable=%llu not_tail=%llu order_breaks=%llu duplicated=%llu chain_breaks=%llu "
      "seed=%llu",
      scenario, points.size(), static_cast<unsigned long long>(checks), pc.size(), run.acked.size(),
      static_cast<unsigned long long>(required_max), static_cast<unsigned long long>(pending_max),
      static_cast<unsigned long long>(lost_nondurable_max),
      static_cast<unsigned long long>(empty_images), static_cast<unsigned long long>(reopened),
      static_cast<unsigned long long>(sum.lost_durable),
      static_cast<unsigned long long>(sum.not_tail),
      static_cast<unsigned long long>(sum.order_breaks),
      static_cast<unsigned long long>(sum.duplicated),
      static_cast<unsigned long long>(sum.chain_breaks), static_cast<unsigned long long>(seed));
  crash::emit_tally(line);
}

uint64_t seed_from_env() {
  long s = crash::env_long("CAIRN_CRASH_SEED", -1);
  return s >= 0 ? static_cast<uint64_t>(s) : static_cast<uint64_t>(time(nullptr));
}

// WAL restarts in the middle of a run: the WAL header (offset 0) written again over a
// WAL that already holds frames, with no truncate or remove in between.
int wal_restarts(const std::vector<crash::Op>& ops) {
  int n = 0;
  bool frames = false;
  for (const auto& op : ops) {
    if (op.file != crash::kFileWal) continue;
    if (op.kind == crash::OpKind::truncate || op.kind == crash::OpKind::remove) {
      frames = false;
    } else if (op.kind == crash::OpKind::write) {
      if (op.offset == 0) {
        n += frames ? 1 : 0;
        frames = false;
      } else {
        frames = true;
      }
    }
  }
  return n;
}

}  // namespace

TestSuite(powercut, .timeout = 600);

Test(powercut, immediate_mode_every_acked_event_survives_every_cut) {
  TestDaemon d("cairn-powercut");
  // ~2,100 events in several hundred group commits. The first phase ends with SIGTERM
  // (final checkpoint, -wal removed), the second starts on that file and ends with
  // SIGKILL, with background checkpoints under way; in the third a lone client leaves
  // the writer idle between commits, when it restarts the WAL it recovered (under
  // sustained load that waits until the WAL is ~32 MiB).
  Run run = workload(d, {{{}, 4, 200, nullptr, true}, {{}, 4, 250, nullptr, false},
                         {{}, 1, 300, nullptr, false, {}, 1}});
  cr_assert_gt(run.acked.size(), 1500u);
  for (const auto& [idem, a] : run.acked)
    cr_assert(a.durable, "immediate ack %s not durable", idem.c_str());
  // The cuts must fall around the checkpoint machinery too, or this proves less.
  cr_assert_geq(wal_restarts(run.ops), 1, "the workload never restarted the WAL");
  uint64_t seed = seed_from_env();
  std::printf("powercut/immediate: seed %llu (CAIRN_CRASH_SEED replays the cut choices)\n",
              static_cast<unsigned long long>(seed));
  sweep("powercut/immediate", run, d.dir() + "/replay", seed);
}

Test(powercut, hybrid_mode_critical_acks_survive_every_cut) {
  TestDaemon d("cairn-powercut");
  Run run =
      workload(d, {{{"--flush-mode", "hybrid", "--batch-size", "50", "--batch-interval-ms", "20"},
                    4,
                    150,
                    "PolicyViolation",
                    false}});
  uint64_t durable = 0;
  for (const auto& [idem, a] : run.acked) durable += a.durable ? 1 : 0;
  cr_assert_gt(durable, 0u, "hybrid: no critical event was acked durable");
  uint64_t seed = seed_from_env();
  std::printf("powercut/hybrid: seed %llu\n", static_cast<unsigned long long>(seed));
  sweep("powercut/hybrid", run, d.dir() + "/replay", seed);
}

Test(powercut, batched_mode_sync_acks_and_flushes_survive_every_cut) {
  TestDaemon d("cairn-powercut");
  Run run = batched_flush_workload(d, 3, 60, 12);
  cr_assert_eq(run.acked.size(), 3u * 60 * 12);
  uint64_t seed = seed_from_env();
  std::printf("powercut/batched-flush: seed %llu\n", static_cast<unsigned long long>(seed));
  sweep("powercut/batched-flush", run, d.dir() + "/replay", seed);
}

Test(powercut, zz_experiment_fsyncgate) {
  const char* spec = std::getenv("XFAULT") ? std::getenv("XFAULT") : "fsync_eio@25";
  TestDaemon d("cairn-powercut");
  Run run = workload(d, {{{}, 4, 450, nullptr, false, spec}});
  uint64_t seed = seed_from_env();
  std::printf("experiment %s: acked %zu sent %zu\n", spec, run.acked.size(), run.sent.size());
  std::string out;
  run_capture({"/usr/bin/grep", "-E", "inject|storage|reopen|exit", d.log_path()}, out);
  std::printf("%s", out.c_str());
  sweep("powercut/fsyncgate", run, d.dir() + "/replay", seed);
}
