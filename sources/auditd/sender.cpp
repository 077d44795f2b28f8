// sender.cpp — see sender.hpp.
#include "sender.hpp"

#include <sys/random.h>
#include <syslog.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <cairn/cairn.h>
#include <msgpack.h>

namespace cairn::audisp {

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

namespace {

constexpr size_t kBatch = 256;

bool transport_error(int rc) {
  return rc == CAIRN_E_CONNECT || rc == CAIRN_E_IO || rc == CAIRN_E_TIMEOUT || rc == CAIRN_E_SHUTTING_DOWN ||
         rc == CAIRN_E_OVERLOADED || rc == CAIRN_E_STORAGE || rc == CAIRN_E_PROTOCOL;
}

cairn_event to_event(const Mapped& m, const char* idem) {
  cairn_event ev{};
  ev.type = m.type.c_str();
  ev.severity = m.severity;
  ev.actor = m.actor.empty() ? nullptr : m.actor.c_str();
  ev.action = m.action.empty() ? nullptr : m.action.c_str();
  ev.target = m.target.empty() ? nullptr : m.target.c_str();
  ev.outcome = m.outcome;
  ev.time_ns = m.time_ns;
  ev.sync = m.sync ? 1 : 0;
  ev.fields_msgpack = m.fields.data();
  ev.fields_msgpack_len = m.fields.size();
  ev.idem = idem;
  ev.idem_len = 16;
  return ev;
}

}  // namespace

void Sender::start() { thread_ = std::thread([this] { run(); }); }

bool Sender::push(Mapped&& ev) {
  std::lock_guard lk(mu_);
  if (stopping_) return false;
  size_t bytes = ev.fields.size() + ev.actor.size() + ev.target.size() + 128;
  if (queue_.size() >= opt_.queue_max || queue_bytes_ + bytes > opt_.queue_max_bytes) {
    ++totals_.dropped;
    ++dropped_unreported_;
    report_after_ = accepted_;
    cv_.notify_one();
    return false;
  }
  Item it{std::move(ev), {}};
  // Random, made once: a resend of this event carries the same key (stored once).
  if (getrandom(it.idem, sizeof it.idem, 0) != sizeof it.idem)
    for (size_t i = 0; i < sizeof it.idem; ++i) it.idem[i] = static_cast<char>(rand());
  queue_.push_back(std::move(it));
  ++accepted_;
  queue_bytes_ += bytes;
  ++totals_.queued;
  cv_.notify_one();
  return true;
}

void Sender::finish(int drain_ms) {
  {
    std::lock_guard lk(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    drain_deadline_ms_ = mono_ms() + drain_ms;
    cv_.notify_all();
  }
  thread_.join();
  cairn_close(client_);
  client_ = nullptr;
}

SenderTotals Sender::totals() {
  std::lock_guard lk(mu_);
  return totals_;
}

bool Sender::connect() {
  if (client_) return true;
  cairn_options o;
  cairn_options_init(&o);
  o.client_name = "cairn-audisp";
  o.reconnect_timeout_ms = 0;  // this loop retries, between checks for shutdown
  o.timeout_ms = opt_.timeout_ms;
  o.max_inflight = kBatch;
  int rc = cairn_open(&client_, opt_.socket.c_str(), &o);
  if (rc != 0) client_ = nullptr;
  return rc == 0;
}

// Waits before the next attempt (backoff between retries, not synchronisation); a stop
// request cuts it short.
void Sender::backoff() {
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, std::chrono::milliseconds(backoff_ms_), [this] { return stopping_; });
  backoff_ms_ = std::min(backoff_ms_ * 2, 2000);
}

bool Sender::deliver(std::deque<Item>& batch) {
  while (!batch.empty()) {
    {
      std::lock_guard lk(mu_);
      if (stopping_ && mono_ms() >= drain_deadline_ms_) return false;
    }
    if (!connect()) {
      backoff();
      continue;
    }
    size_t sent = 0;
    int rc = 0;
    for (auto& it : batch) {
      cairn_event ev = to_event(it.ev, it.idem);
      uint64_t ticket = 0;
      rc = cairn_append_async(client_, &ev, &ticket);
      if (rc != 0) break;
      ++sent;
    }
    // Collect each sent event's result, in order; the first transport failure makes
    // the rest of the batch wait for a new connection (resent with the same idem).
    std::deque<Item> retry;
    bool lost = rc != 0 && transport_error(rc);
    for (size_t i = 0; i < sent; ++i) {
      cairn_ack ack{};
      int r = cairn_next_ack(client_, nullptr, &ack);
      Item& it = batch[i];
      if (r == 0) {
        std::lock_guard lk(mu_);
        ++totals_.delivered;
      } else if (transport_error(r)) {
        lost = true;
        retry.push_back(std::move(it));
      } else {
        const char *code = nullptr, *field = nullptr, *msg = nullptr;
        cairn_last_error(client_, &code, &field, nullptr, &msg);
        syslog(LOG_WARNING, "cairn refused %s (serial %lld): %s %s %s", it.ev.type.c_str(),
               static_cast<long long>(it.ev.time_ns), code ? code : "", field ? field : "", msg ? msg : "");
        std::lock_guard lk(mu_);
        ++totals_.refused;
        ++dropped_unreported_;
      }
    }
    for (size_t i = sent; i < batch.size(); ++i) {
      if (rc != 0 && !transport_error(rc) && i == sent) {
        // Refused before it left (an event over max_frame): count it, go on.
        std::lock_guard lk(mu_);
        ++totals_.refused;
        ++dropped_unreported_;
        continue;
      }
      retry.push_back(std::move(batch[i]));
    }
    batch.swap(retry);
    if (lost) {
      cairn_close(client_);
      client_ = nullptr;
      backoff();
    } else {
      backoff_ms_ = 50;
    }
  }
  return true;
}

// Records how many events did not reach cairn since the last report. True when there
// was nothing to report or the report is stored.
bool Sender::report_drops() {
  uint64_t n, total_dropped, total_refused;
  {
    std::lock_guard lk(mu_);
    n = dropped_unreported_;
    total_dropped = totals_.dropped;
    total_refused = totals_.refused;
  }
  if (n == 0) return true;
  if (!connect()) return false;
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
  auto key = [&](const char* k) {
    msgpack_pack_str(&pk, std::strlen(k));
    msgpack_pack_str_body(&pk, k, std::strlen(k));
  };
  msgpack_pack_map(&pk, 4);
  key("undelivered");
  msgpack_pack_uint64(&pk, n);
  key("dropped_total");
  msgpack_pack_uint64(&pk, total_dropped);
  key("refused_total");
  msgpack_pack_uint64(&pk, total_refused);
  key("queue_max");
  msgpack_pack_uint64(&pk, opt_.queue_max);
  cairn_event ev{};
  ev.type = "auditd.undelivered";
  ev.severity = CAIRN_SEV_WARNING;
  ev.actor = "cairn-audisp";
  ev.action = "drop";
  ev.outcome = "failure";
  ev.sync = 1;
  ev.fields_msgpack = buf.data;
  ev.fields_msgpack_len = buf.size;
  std::string msg = std::to_string(n) + " auditd events were not delivered to cairn (queue full or refused)";
  ev.message = msg.c_str();
  cairn_ack ack{};
  int rc = cairn_append(client_, &ev, &ack);
  msgpack_sbuffer_destroy(&buf);
  if (rc != 0) {
    cairn_close(client_);
    client_ = nullptr;
    return false;
  }
  syslog(LOG_WARNING, "%llu auditd events not delivered to cairn (recorded as seq %llu)",
         static_cast<unsigned long long>(n), static_cast<unsigned long long>(ack.seq));
  std::lock_guard lk(mu_);
  dropped_unreported_ -= n;
  return true;
}

void Sender::run() {
  std::deque<Item> batch;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !queue_.empty() || dropped_unreported_ > 0; });
      if (stopping_ && queue_.empty() && dropped_unreported_ == 0) break;
      while (!queue_.empty() && batch.size() < kBatch) {
        queue_bytes_ -= std::min(queue_bytes_, queue_.front().ev.fields.size() + queue_.front().ev.actor.size() +
                                                   queue_.front().ev.target.size() + 128);
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
        ++taken_;
      }
    }
    bool ok = deliver(batch);
    // A loss is recorded after the events queued before it (order of the stream): not
    // while some of them still wait in the queue (deliver() returns true only with the
    // batch handled, so everything taken so far is).
    bool due;
    {
      std::lock_guard lk(mu_);
      due = taken_ >= report_after_;
    }
    while (ok && due && !report_drops()) {
      {
        std::lock_guard lk(mu_);
        if (stopping_ && mono_ms() >= drain_deadline_ms_) ok = false;
      }
      if (ok) backoff();
    }
    if (!ok) break;
  }
  std::lock_guard lk(mu_);
  totals_.unsent_at_exit = batch.size() + queue_.size();
  queue_.clear();
}

}  // namespace cairn::audisp
