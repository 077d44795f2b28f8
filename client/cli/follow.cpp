#include "follow.hpp"

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "../../protocol/frame.hpp"
#include "../lib/connection.hpp"

namespace cairn::cli {
namespace {

constexpr int kFirstBackoffMs = 50;
constexpr int kMaxBackoffMs = 2000;
constexpr int64_t kGiveUpMs = int64_t{24} * 3600 * 1000;  // without any connection

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

void pause_ms(int ms) {
  timespec ts{ms / 1000, static_cast<long>(ms % 1000) * 1'000'000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// What one connection ended with.
enum class Session { lost, fatal };

// Reads one reply. nullopt: the connection is lost (or sent something unreadable:
// reconnecting is the honest answer to both).
std::optional<std::string> next_payload(client::Connection& c, uint32_t max_frame) {
  std::string payload;
  if (c.read_frame(payload, max_frame) != 0) return std::nullopt;
  return payload;
}

// One connection: hello, subscribe after `after`, then print pages as they come.
Session run_once(client::Connection& c, const FollowOptions& opt, uint64_t& after, EventPrinter& printer,
                 bool& connected) {
  std::string frame;
  proto::encode_hello(frame, 1, proto::kProtocolVersion, "cairn-cli");
  if (c.write_all(frame) != 0) return Session::lost;
  auto hp = next_payload(c, proto::kDefaultMaxFrame);
  if (!hp) return Session::lost;
  auto hd = proto::Decoded::parse({reinterpret_cast<const uint8_t*>(hp->data()), hp->size()}, 16);
  if (!hd) return Session::lost;
  auto hr = proto::reply_from(hd.value());
  if (!hr || !hr.value().ok) return Session::lost;  // refused (overloaded, shutting down): retry
  auto info = proto::hello_info_from(hr.value());
  if (!info) return Session::lost;
  const uint32_t max_frame = info.value().limits.max_frame;
  connected = true;

  proto::QuerySpec q = opt.filters;
  q.after = after;
  frame.clear();
  proto::encode_subscribe(frame, 2, q);
  if (c.write_all(frame) != 0) return Session::lost;
  for (;;) {
    auto p = next_payload(c, max_frame);
    if (!p) return Session::lost;
    auto d = proto::Decoded::parse({reinterpret_cast<const uint8_t*>(p->data()), p->size()}, 16);
    if (!d) return Session::lost;
    auto r = proto::reply_from(d.value());
    if (!r) return Session::lost;
    if (!r.value().ok) {
      const auto& e = r.value();
      if (e.error == proto::ErrorCode::shutting_down || e.error == proto::ErrorCode::overloaded)
        return Session::lost;  // cairnd stops or is full: subscribe again later, from `after`
      std::fprintf(stderr, "cairn: query -f: %s%s%s\n", e.error_name.c_str(), e.message.empty() ? "" : ": ",
                   e.message.c_str());
      return Session::fatal;
    }
    auto page = proto::query_page_from(r.value());
    if (!page) return Session::lost;
    uint64_t newest = after;
    for (const auto& e : page.value().events) {
      if (e.seq <= after) continue;  // never twice, whatever a daemon sends
      printer.event(e);
      newest = e.seq;
      after = e.seq;
    }
    std::fflush(opt.out);
    if (opt.cursor_file && newest > 0 && !page.value().events.empty()) (void)write_cursor_file(*opt.cursor_file, newest);
    // `next` may be past the last event (rows that did not match): start there next time.
    if (page.value().next && *page.value().next > after) after = *page.value().next;
  }
}

}  // namespace

int follow_subscribe(const FollowOptions& opt, EventPrinter& printer) {
  uint64_t after = opt.after;
  int backoff = kFirstBackoffMs;
  int64_t last_up = mono_ms();
  for (;;) {
    client::Connection c;
    int rc = c.connect(opt.socket);
    if (rc == 0) {
      bool connected = false;
      Session s = run_once(c, opt, after, printer, connected);
      if (s == Session::fatal) return 2;
      if (connected) {
        backoff = kFirstBackoffMs;
        last_up = mono_ms();
      }
    } else if (rc != -ENOENT && rc != -ECONNREFUSED && rc != -EAGAIN) {
      std::fprintf(stderr, "cairn: %s: cannot connect to cairnd: %s\n", opt.socket.c_str(), std::strerror(-rc));
      return 2;
    }
    c.close();
    if (mono_ms() - last_up > kGiveUpMs) {
      std::fprintf(stderr, "cairn: %s: no cairnd for 24 hours; giving up\n", opt.socket.c_str());
      return 2;
    }
    // Backoff between attempts: cairnd restarting takes a while, and a missing socket
    // must not become a busy loop.
    pause_ms(backoff);
    backoff = std::min(backoff * 2, kMaxBackoffMs);
  }
}

}  // namespace cairn::cli
