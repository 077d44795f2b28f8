#include "streamer.hpp"

#include <cairn/cairn.h>

#include <chrono>
#include <cstdio>
#include <deque>

namespace cairn::test {

std::string stream_idem(const std::string& prefix, int thread, int i) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s-%02d-%07d", prefix.c_str(), thread, i);
  return buf;
}

void Streamer::run(const std::string& socket, const StreamOptions& opts) {
  for (int t = 0; t < opts.threads; ++t) {
    threads_.emplace_back([this, socket, opts, t] {
      cairn_options o;
      cairn_options_init(&o);
      o.client_name = "streamer";
      o.reconnect_timeout_ms = opts.reconnect_ms;
      o.max_inflight = opts.window;
      cairn_client* c = nullptr;
      if (cairn_open(&c, socket.c_str(), &o) != 0) return;
      std::map<uint64_t, std::string> by_ticket;
      auto collect = [&]() -> bool {
        uint64_t ticket = 0;
        cairn_ack ack{};
        int rc = cairn_next_ack(c, &ticket, &ack);
        uint64_t probe = opts.probe ? opts.probe() : 0;
        std::string idem = by_ticket[ticket];
        by_ticket.erase(ticket);
        std::lock_guard lk(mu);
        if (rc == 0) {
          acked[idem] = AckRecord{ack.seq, ack.durable != 0, ack.duplicate != 0, probe};
          ++count;
          cv_.notify_all();
          return true;
        }
        refused[idem] = rc;
        ++failures;
        cv_.notify_all();
        // Connection-level failures end the stream; refusals of one event do not.
        return rc == CAIRN_E_STORAGE || rc == CAIRN_E_REJECTED;
      };
      bool alive = true;
      for (int i = 0; i < opts.per_thread && alive; ++i) {
        std::string idem = stream_idem(opts.prefix, t, i);
        cairn_event e{};
        e.type = opts.type_for ? opts.type_for(t, i) : "DataAccess";
        e.severity = -1;
        e.actor = "streamer";
        e.idem = idem.data();
        e.idem_len = idem.size();
        uint64_t ticket = 0;
        {
          std::lock_guard lk(mu);
          sent.insert(idem);
        }
        if (cairn_append_async(c, &e, &ticket) != 0) break;
        by_ticket[ticket] = idem;
        while (by_ticket.size() >= opts.window && alive) alive = collect();
      }
      while (alive && !by_ticket.empty()) alive = collect();
      cairn_close(c);
    });
  }
}

bool Streamer::wait_count(uint64_t n, int timeout_ms) {
  std::unique_lock lk(mu);
  return cv_.wait_for(lk, std::chrono::milliseconds(timeout_ms),
                      [&] { return count.load() >= n; });
}

void Streamer::join() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

}  // namespace cairn::test
