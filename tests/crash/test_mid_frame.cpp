// Clients that die mid-frame, or between frame and ack, leave no partial row and do not
// disturb the others. While two libcairn clients stream, two threads of raw clients each
// connect, misbehave one of these ways, and vanish:
//   half      a prefix of one append frame (cut anywhere: inside the 4-byte length or
//             the payload), then close
//   full      one whole frame, then close without reading the ack
//   pipelined ten whole frames, read the first three acks, close
//   full+half one whole frame and half of the next, then close
// Then SIGKILL, and the file must show: every event of the streaming clients once, under
// its acked seq; the three acked events of each pipelined client; no event from a half
// frame; any other raw event at most once and chain-valid; nothing nobody sent.
#include <criterion/criterion.h>
#include <signal.h>

#include <cstdio>
#include <mutex>
#include <thread>

#include "../../protocol/message.hpp"
#include "harness.hpp"
#include "judge.hpp"
#include "raw_client.hpp"
#include "streamer.hpp"

using namespace cairn;
using namespace cairn::test;

namespace {

std::string frame(uint64_t id, const char* type, const std::string& idem) {
  proto::EventView ev;
  ev.type = type;
  ev.actor = "dying-client";
  ev.idem = idem;
  std::string out;
  proto::encode_append(out, id, ev);
  return out;
}

struct RawLedger {
  std::mutex mu;
  std::set<std::string> sent_whole;        // whole frames written: may be stored
  std::set<std::string> sent_half;         // never complete: must never be stored
  std::map<std::string, AckRecord> acked;  // acks the pipelined clients read
  std::string problem;                     // first thing that went wrong in a thread
  int clients = 0;
};

void dying_clients(const std::string& socket, int thread, int count, RawLedger& ledger) {
  for (int i = 0; i < count; ++i) {
    RawClient raw(socket);
    auto idem = [&](int j) {
      char b[32];
      std::snprintf(b, sizeof b, "raw%d-%03d-%02d", thread, i, j);
      return std::string(b);
    };
    std::set<std::string> whole, half;
    std::map<std::string, AckRecord> acked;
    std::string problem;
    if (!raw.connected()) {
      problem = "raw client " + idem(0) + " could not connect";
    } else {
      switch (i % 4) {
        case 0: {  // half: cut at every length in turn, header bytes included
          std::string f = frame(1, "HalfFrame", idem(0));
          size_t cut = 1 + static_cast<size_t>((i / 4) * 7 + thread * 3) % (f.size() - 1);
          half.insert(idem(0));
          raw.send_bytes(f.substr(0, cut));
          break;
        }
        case 1:  // full, gone before the ack
          whole.insert(idem(0));
          raw.send_bytes(frame(1, "FullFrame", idem(0)));
          break;
        case 2: {  // pipelined: ten frames, three acks read
          std::string burst;
          for (int j = 0; j < 10; ++j) {
            whole.insert(idem(j));
            burst += frame(static_cast<uint64_t>(j + 1), "FullFrame", idem(j));
          }
          raw.send_bytes(burst);
          for (int j = 0; j < 3 && problem.empty(); ++j) {
            auto f = raw.read_frame(10'000);
            auto r = f ? decode_reply(*f) : std::nullopt;
            if (!r || !r->ok || r->id != static_cast<uint64_t>(j + 1) || !r->durable)
              problem = "pipelined client " + idem(j) + ": no durable ack" +
                        (r ? " (" + r->error + ")" : std::string());
            else
              acked[idem(j)] = AckRecord{r->seq, true, r->duplicate, 0};
          }
          break;
        }
        case 3: {  // full + half
          whole.insert(idem(0));
          half.insert(idem(1));
          std::string g = frame(2, "HalfFrame", idem(1));
          raw.send_bytes(frame(1, "FullFrame", idem(0)) + g.substr(0, g.size() / 2));
          break;
        }
      }
    }
    raw.close_now();
    std::lock_guard lk(ledger.mu);
    ledger.sent_whole.insert(whole.begin(), whole.end());
    ledger.sent_half.insert(half.begin(), half.end());
    ledger.acked.insert(acked.begin(), acked.end());
    if (ledger.problem.empty()) ledger.problem = problem;
    ++ledger.clients;
  }
}

}  // namespace

TestSuite(midframe, .timeout = 120);

Test(midframe, dying_clients_leave_no_partial_rows_and_disturb_nobody) {
  const char* sc = "midframe";
  TestDaemon d("cairn-midframe");
  cr_assert(d.start());
  StreamOptions o;
  o.threads = 2;
  o.per_thread = 4000;
  o.window = 16;
  o.prefix = "ok";
  Streamer s;
  s.run(d.socket(), o);
  RawLedger ledger;
  std::thread a(dying_clients, d.socket(), 0, 120, std::ref(ledger));
  std::thread b(dying_clients, d.socket(), 1, 120, std::ref(ledger));
  a.join();
  b.join();
  s.join();
  cr_assert(ledger.problem.empty(), "%s: %s", sc, ledger.problem.c_str());
  cr_assert_eq(s.refused.size(), 0u, "%s: the well-behaved clients got %zu errors", sc,
               s.refused.size());
  cr_assert_eq(s.acked.size(), 8000u, "%s: the well-behaved clients got %zu of 8000 acks", sc,
               s.acked.size());
  int status = d.kill9();
  cr_assert_eq(exit_code(status), 128 + SIGKILL, "%s: cairnd had died (status %d); log %s", sc,
               exit_code(status), d.log_path().c_str());

  std::map<std::string, AckRecord> acked = s.acked;
  acked.insert(ledger.acked.begin(), ledger.acked.end());
  std::set<std::string> sent = s.sent;
  sent.insert(ledger.sent_whole.begin(), ledger.sent_whole.end());  // half frames: not "sent"
  crash::Verdict v = crash::judge(d.db(), acked, sent);
  cr_assert_eq(v.hard_errors(), 0u, "%s: %s", sc, v.first_problem.c_str());
  uint64_t whole_stored = 0;
  for (const auto& r : read_rows(d.db())) {
    cr_assert(r.type != "HalfFrame" && ledger.sent_half.count(r.idem) == 0,
              "%s: seq %llu (idem %s, type %s) came from a frame that was never complete", sc,
              static_cast<unsigned long long>(r.seq), r.idem.c_str(), r.type.c_str());
    if (ledger.sent_whole.count(r.idem)) ++whole_stored;
  }
  char line[320];
  std::snprintf(line, sizeof line,
                "tally: scenario=%s dying_clients=%d half_frames=%zu half_frames_stored=0 "
                "whole_frames=%zu whole_frames_stored=%llu other_clients_acked=%zu "
                "lost=%llu duplicated=%llu chain_breaks=%llu",
                sc, ledger.clients, ledger.sent_half.size(), ledger.sent_whole.size(),
                static_cast<unsigned long long>(whole_stored), s.acked.size(),
                static_cast<unsigned long long>(v.lost_durable),
                static_cast<unsigned long long>(v.duplicated),
                static_cast<unsigned long long>(v.chain_breaks));
  crash::emit_tally(line);
}
