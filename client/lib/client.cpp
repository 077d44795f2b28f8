// client.cpp — libcairn: the C ABI over Connection + the protocol library.
//
// A handle keeps every request it has sent and not seen answered in `inflight`, as its
// encoded frame, in send order (the daemon answers in request order). Answers move to
// `done` until the caller collects them. After a lost connection the whole of
// `inflight` is resent, unchanged: events carry their idempotency keys, so the daemon
// stores each at most once.
#include <sys/random.h>
#include <time.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <string>

#include "../../protocol/frame.hpp"
#include "../../protocol/message.hpp"
#include "../../protocol/pack.hpp"
#include "cairn/cairn.h"
#include "connection.hpp"

using namespace cairn;

namespace {

constexpr int kDefaultReconnectMs = 30'000;
constexpr unsigned kDefaultInflight = 1024;
// Replies can be large (a query page of 1000 events), so accept more than requests.
constexpr uint32_t kMaxReplyFrame = proto::kMaxFrameCeiling;

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

int code_for(std::optional<proto::ErrorCode> e) {
  if (!e) return CAIRN_E_PROTOCOL;
  switch (*e) {
    case proto::ErrorCode::storage_failed: return CAIRN_E_STORAGE;
    case proto::ErrorCode::events_lost: return CAIRN_E_STORAGE;
    case proto::ErrorCode::storage_full: return CAIRN_E_STORAGE_FULL;
    case proto::ErrorCode::shutting_down: return CAIRN_E_SHUTTING_DOWN;
    case proto::ErrorCode::overloaded: return CAIRN_E_OVERLOADED;
    case proto::ErrorCode::permission_denied: return CAIRN_E_DENIED;
    case proto::ErrorCode::unsupported_version: return CAIRN_E_UNSUPPORTED;
    case proto::ErrorCode::rate_limited: return CAIRN_E_RATE_LIMITED;
    case proto::ErrorCode::internal: return CAIRN_E_PROTOCOL;
    default: return CAIRN_E_REJECTED;
  }
}

struct Pending {
  uint64_t ticket = 0;
  uint64_t id = 0;
  std::string frame;
  bool keep_reply = false;  // flush and raw requests hand the reply map to the caller
  bool is_append = false;   // its ok reply must carry a seq
};

struct Done {
  uint64_t ticket = 0;
  int rc = 0;
  cairn_ack ack{};
  std::string reply;  // raw reply payload (for cairn_request / flush)
  std::string code, field, rule, message;
};

// strerror without its static buffer (a handle may be used from any thread).
std::string errno_text(int e) {
  char buf[128];
  return strerror_r(e, buf, sizeof buf);
}

}  // namespace

struct cairn_client {
  std::mutex mu;
  std::string path;
  std::string client_name = "libcairn";
  int reconnect_ms = kDefaultReconnectMs;
  unsigned window = kDefaultInflight;
  // cairn_options.timeout_ms: every call's waits end by call_deadline_ms (monotonic ms,
  // set by begin_call; 0 = no bound), which the connection's polls also honour.
  int timeout_ms = 0;
  int64_t call_deadline_ms = 0;
  client::Connection conn;
  proto::HelloInfo server;
  uint64_t next_id = 1;
  uint64_t next_ticket = 1;
  uint64_t idem_salt = 0;  // random, drawn at cairn_open: generated idem keys end in salt + id
  std::deque<Pending> inflight;
  std::deque<Done> done;
  bool broken = false;  // lost and not allowed to reconnect
  std::string err_code, err_field, err_rule, err_message;
  std::string payload;  // scratch for reads

  // Reconnection state. It lives across reconnects until a reply answers a request
  // (progress): lost_since_ms is when the connection was first lost since the last such
  // reply (0: no loss pending), backoff_ms the current pause between attempts. A daemon
  // that accepts, answers hello and drops the connection again must not restart the
  // deadline on each successful connect: it did, and a reply libcairn could not read
  // made 1,413 reconnects in 12 s without ever returning.
  int64_t lost_since_ms = 0;
  int backoff_ms = kFirstBackoffMs;
  // Why the latest attempt or connection failed, reported when libcairn gives up:
  // fail_code is CAIRN_E_CONNECT (connect() or the hello exchange failed, or the
  // connection kept dropping), CAIRN_E_OVERLOADED or CAIRN_E_SHUTTING_DOWN (the daemon
  // refused the hello or the request); fail_detail the text (path and errno text, or
  // the daemon's refusal); connect_errno the errno of a failed connect attempt, or 0.
  int fail_code = CAIRN_E_CONNECT;
  std::string fail_detail;
  int connect_errno = 0;

  static constexpr int kFirstBackoffMs = 10;
  static constexpr int kMaxBackoffMs = 500;

  // ---- connection management ----

  // Starts the bound of one public call (cairn_open, cairn_append ...): the caller holds mu.
  void begin_call() {
    call_deadline_ms = timeout_ms > 0 ? mono_ms() + timeout_ms : 0;
    conn.set_deadline(call_deadline_ms);
  }

  // The call ran out of time on a read or write: a frame may be half sent or half read,
  // so the connection goes, and so does everything in flight on it, as CAIRN_E_TIMEOUT.
  // Those events are not resent: the daemon may or may not have stored them, and a
  // caller that resends one with its idempotency key learns which. The next call
  // connects afresh.
  int timed_out(const std::string& what) {
    conn.close();
    fail_code = CAIRN_E_TIMEOUT;
    fail_detail = path + ": " + what + ": no answer within timeout_ms (" + std::to_string(timeout_ms) + " ms)";
    fail_inflight(CAIRN_E_TIMEOUT, "timeout");
    set_error("timeout", fail_detail);
    progressed();
    return CAIRN_E_TIMEOUT;
  }

  int connect_failed(int err, const std::string& what) {
    connect_errno = err;
    fail_code = CAIRN_E_CONNECT;
    fail_detail = what + ": " + errno_text(err);
    return CAIRN_E_CONNECT;
  }

  int hello_unreadable(const std::string& why) {
    conn.close();
    fail_code = CAIRN_E_PROTOCOL;
    fail_detail = "hello reply from " + path + ": " + why;
    set_error("malformed_reply", fail_detail);
    return CAIRN_E_PROTOCOL;
  }

  // Connects and says hello (one attempt). 0 or a CAIRN_E_* code; CAIRN_E_CONNECT means
  // "try again later" (no daemon, or one that is draining or over its connection cap),
  // with the reason in fail_code/fail_detail.
  int connect_once() {
    connect_errno = 0;
    int rc = conn.connect(path);
    if (rc == -ENAMETOOLONG) return CAIRN_E_INVALID_ARG;
    if (rc < 0) return connect_failed(-rc, "connect " + path);
    std::string f;
    proto::encode_hello(f, next_id++, proto::kProtocolVersion, client_name);
    // A daemon over its connection cap sends `overloaded` and closes at once, so the
    // hello may fail to go out while that refusal waits to be read: read either way.
    int wrc = conn.write_all(f);
    uint32_t len = 0;
    rc = conn.read_frame(payload, kMaxReplyFrame, &len);
    if (rc == -EMSGSIZE) return hello_unreadable("reply of " + std::to_string(len) + " bytes is over the limit");
    if (rc == -EPROTO) return hello_unreadable("empty frame");
    if (rc < 0) {
      conn.close();
      if (rc == -ECONNRESET)
        return connect_failed(ECONNRESET, path + ": cairnd closed the connection before answering hello");
      return connect_failed(wrc < 0 ? -wrc : -rc, path + ": hello");
    }
    auto d = proto::Decoded::parse({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, 16);
    if (!d) return hello_unreadable(d.error());
    auto r = proto::reply_from(d.value());
    if (!r) return hello_unreadable(r.error());
    if (!r.value().ok) {
      const proto::Reply& no = r.value();
      int code = code_for(no.error);
      conn.close();
      fail_detail = path + ": cairnd refused the connection: " + no.error_name +
                    (no.message.empty() ? "" : ": " + no.message);
      set_error(no.error_name, fail_detail);
      // A daemon that is draining or full refuses new work now, not for good: try again.
      if (code == CAIRN_E_SHUTTING_DOWN || code == CAIRN_E_OVERLOADED) {
        fail_code = code;
        return CAIRN_E_CONNECT;
      }
      fail_code = code;
      return code;
    }
    auto h = proto::hello_info_from(r.value());
    if (h) server = h.value();
    if (server.max_inflight != 0 && window > server.max_inflight) window = server.max_inflight;
    return 0;
  }

  // Sleeps for the current backoff (halved, plus jitter up to the other half) but not
  // past `deadline`, and doubles the backoff up to kMaxBackoffMs. False if the deadline
  // has already passed.
  bool pause_until(int64_t deadline) {
    int64_t left = deadline - mono_ms();
    if (left <= 0) return false;
    unsigned jitter = 0;
    (void)getrandom(&jitter, sizeof jitter, 0);
    int64_t wait = std::min<int64_t>(left, backoff_ms / 2 + static_cast<int>(jitter % (backoff_ms / 2 + 1)));
    timespec ts{static_cast<time_t>(wait / 1000), static_cast<long>((wait % 1000) * 1'000'000L)};
    nanosleep(&ts, nullptr);  // backoff between attempts, not synchronisation
    backoff_ms = std::min(backoff_ms * 2, kMaxBackoffMs);
    return true;
  }

  // A reply answered a request: the next loss starts a fresh deadline.
  void progressed() {
    lost_since_ms = 0;
    backoff_ms = kFirstBackoffMs;
  }

  // Connects with exponential backoff (10 ms doubling to 500 ms, with jitter) and resends
  // everything in flight, in order, until that succeeds or reconnect_ms has passed since
  // the connection was first lost without a reply since. Reconnects that make no
  // progress (the new connection is lost again before any reply) share that one deadline
  // and keep backing off, so a daemon that accepts and drops every connection costs at
  // most reconnect_ms, not forever. Returns 0, CAIRN_E_IO (reconnection disabled), the
  // reason of the last failure (CAIRN_E_CONNECT, CAIRN_E_OVERLOADED,
  // CAIRN_E_SHUTTING_DOWN) once the deadline has passed, or a code that retrying cannot
  // mend (CAIRN_E_UNSUPPORTED, CAIRN_E_PROTOCOL ...).
  int reconnect() {
    conn.close();
    if (reconnect_ms <= 0) {
      broken = true;
      return CAIRN_E_IO;
    }
    bool again = lost_since_ms != 0;  // lost again before any reply since the last loss
    if (!again) {
      lost_since_ms = mono_ms();
      backoff_ms = kFirstBackoffMs;
    }
    // The call's own bound (timeout_ms) may end the attempts sooner: then the answer is
    // CAIRN_E_TIMEOUT, with the last attempt's reason in fail_detail and connect_errno.
    const int64_t lost_deadline = lost_since_ms + reconnect_ms;
    const bool call_bound = call_deadline_ms > 0 && call_deadline_ms < lost_deadline;
    const int64_t deadline = call_bound ? call_deadline_ms : lost_deadline;
    for (;;) {
      if (again && !pause_until(deadline)) {
        progressed();  // the next call starts afresh
        return call_bound ? CAIRN_E_TIMEOUT : fail_code;
      }
      again = true;
      int rc = connect_once();
      if (rc == 0) {
        bool sent = true;
        for (const auto& p : inflight) {
          if (int w = conn.write_all(p.frame); w < 0) {
            sent = false;
            fail_code = CAIRN_E_CONNECT;
            fail_detail = path + ": connection lost while resending: " + errno_text(-w);
            conn.close();
            break;
          }
        }
        if (sent) return 0;
      } else if (rc != CAIRN_E_CONNECT) {
        progressed();
        return rc;
      }
    }
  }

  // Fails everything in flight with `rc` and the reason in fail_detail (connection gone
  // for good, or out of step).
  void fail_inflight(int rc, const char* code) {
    for (auto& p : inflight) {
      Done d;
      d.ticket = p.ticket;
      d.rc = rc;
      d.code = code;
      d.message = std::string(cairn_strerror(rc)) + (fail_detail.empty() ? "" : ": " + fail_detail);
      done.push_back(std::move(d));
    }
    inflight.clear();
  }

  // Handles a lost connection (`why`, for the report): reconnect+resend, or fail what is
  // in flight. `code` is what to report if libcairn gives up right after this loss.
  int on_lost(const std::string& why, int code = CAIRN_E_CONNECT) {
    fail_code = code;
    fail_detail = path + ": " + why;
    int rc = reconnect();
    if (rc != 0) {
      fail_inflight(rc, rc == CAIRN_E_SHUTTING_DOWN ? "shutting_down"
                        : rc == CAIRN_E_OVERLOADED  ? "overloaded"
                        : rc == CAIRN_E_TIMEOUT     ? "timeout"
                        : rc == CAIRN_E_IO || rc == CAIRN_E_CONNECT ? "disconnected"
                                                                     : "protocol_error");
    }
    return rc;
  }

  // ---- sending and receiving ----

  void set_error(std::string code, std::string message) {
    err_code = std::move(code);
    err_field.clear();
    err_rule.clear();
    err_message = std::move(message);
  }

  // Queues one encoded request and writes it. On success the request is in flight and
  // its result will reach `done` (possibly as a failure, if the connection is then lost
  // for good). On error nothing was queued and no ticket was issued.
  int send(std::string&& frame, uint64_t id, uint64_t* ticket, bool keep_reply = false,
           bool is_append = false) {
    if (broken) return CAIRN_E_IO;
    // A frame over the daemon's limit makes it close the connection, and resending it
    // after the reconnect would do the same forever: refuse it before it leaves.
    uint32_t max_frame = server.limits.max_frame ? server.limits.max_frame : proto::kDefaultMaxFrame;
    if (frame.size() - proto::kFrameHeaderSize > max_frame) {
      set_error("frame_too_large", "request of " + std::to_string(frame.size() - proto::kFrameHeaderSize) +
                                       " bytes is over the daemon's max_frame of " +
                                       std::to_string(max_frame));
      return CAIRN_E_INVALID_ARG;
    }
    if (!conn.open()) {
      int rc = on_lost("not connected");
      if (rc != 0) {
        set_error("disconnected", std::string(cairn_strerror(rc)) + ": " + fail_detail);
        return rc;
      }
    }
    while (inflight.size() >= window) {
      // The oldest result moves to `done`; a lost connection that could not be restored
      // fails what was in flight there, and this request is not sent.
      int rc = read_one();
      if (rc != 0) return rc;
    }
    Pending p;
    p.ticket = next_ticket++;
    p.id = id;
    p.frame = std::move(frame);
    p.keep_reply = keep_reply;
    p.is_append = is_append;
    inflight.push_back(std::move(p));
    if (ticket) *ticket = inflight.back().ticket;
    if (int w = conn.write_all(inflight.back().frame); w < 0) {
      // The frame stays in flight: after a reconnect it is resent with the rest, and if
      // there is no reconnect its failure is reported through `done` like the others'.
      if (w == -ETIMEDOUT)
        (void)timed_out("send");
      else
        (void)on_lost("send: " + errno_text(-w));
    }
    return 0;
  }

  // The oldest request in flight failed on its reply (which could not be read, or was
  // not a valid answer): it moves to `done` with `rc` and the named `code`, and the
  // connection carries on. Resending it would bring the same reply again.
  void fail_front(int rc, const char* code, std::string message) {
    Done out;
    out.ticket = inflight.front().ticket;
    out.rc = rc;
    out.code = code;
    out.message = std::move(message);
    inflight.pop_front();
    done.push_back(std::move(out));
  }

  // Reads one reply and moves the request it answers to `done`. 0 or an error that
  // ended the connection for good (what was in flight is then in `done` as failed).
  int read_one() {
    if (inflight.empty()) return CAIRN_E_INVALID_ARG;
    if (!conn.open()) return on_lost("not connected");
    uint32_t len = 0;
    int rc = conn.read_frame(payload, kMaxReplyFrame, &len);
    // A reply the daemon sent whole but libcairn cannot take is a protocol error of the
    // request it answers (replies come in request order: the oldest), never a lost
    // connection: a resend would fetch the same reply again, forever.
    if (rc == -EMSGSIZE) {
      fail_front(CAIRN_E_PROTOCOL, "reply_too_large",
                 "reply of " + std::to_string(len) + " bytes is over libcairn's limit of " +
                     std::to_string(kMaxReplyFrame) + " bytes (ask for fewer events)");
      // Skipped, not closed, so that the requests behind it keep their answers.
      if (int dr = conn.discard(len); dr < 0) return on_lost("read: " + errno_text(-dr));
      return 0;
    }
    if (rc == -EPROTO) {
      fail_front(CAIRN_E_PROTOCOL, "malformed_reply", "empty reply frame");
      return 0;
    }
    if (rc == -ETIMEDOUT) return timed_out("waiting for a reply");
    if (rc < 0) return on_lost(rc == -ECONNRESET ? std::string("cairnd closed the connection") : "read: " + errno_text(-rc));
    const std::span<const uint8_t> bytes{reinterpret_cast<const uint8_t*>(payload.data()),
                                         payload.size()};
    // Acks are read without unpacking; only refusals are decoded in full. reply_peek is
    // the authority on id, ok, seq, durable and duplicate for every reply.
    auto head = proto::reply_peek(bytes);
    if (!head) {
      fail_front(CAIRN_E_PROTOCOL, "malformed_reply",
                 "reply is not a map with an unsigned id and a boolean ok (or repeats or mistypes "
                 "id, ok, seq, durable or duplicate)");
      return 0;
    }
    // An error with id 0 is one the daemon could not attribute (frame_too_large, or a
    // payload whose id it could not read). Replies come in request order, so it answers
    // the oldest request: fail that one rather than resend it to the same fate forever.
    if (head->id != inflight.front().id && (head->id != 0 || head->ok)) {
      // Out of step with the daemon: no request in flight can be matched to its answer
      // any more. Fail them all (a resend to a daemon out of step would fare no better)
      // and start on a new connection at the next call.
      fail_detail = "reply with id " + std::to_string(head->id) + " while waiting for id " +
                    std::to_string(inflight.front().id);
      conn.close();
      fail_inflight(CAIRN_E_PROTOCOL, "reply_out_of_step");
      return CAIRN_E_PROTOCOL;
    }
    Done out;
    if (!head->ok) {
      auto d = proto::Decoded::parse(bytes, 16);
      if (!d) {
        fail_front(CAIRN_E_PROTOCOL, "malformed_reply", "refusal: " + d.error());
        return 0;
      }
      auto r = proto::reply_from(d.value());
      if (!r) {
        fail_front(CAIRN_E_PROTOCOL, "malformed_reply", "refusal: " + r.error());
        return 0;
      }
      const proto::Reply& reply = r.value();
      if (reply.error == proto::ErrorCode::shutting_down && reconnect_ms > 0) {
        // Not accepted by a draining daemon: resend it (and everything after) to the next.
        return on_lost("cairnd is shutting down", CAIRN_E_SHUTTING_DOWN);
      }
      out.rc = code_for(reply.error);
      out.code = reply.error_name;
      out.field = reply.field;
      out.rule = reply.rule;
      out.message = reply.message;
    } else if (inflight.front().is_append && !head->has_seq) {
      fail_front(CAIRN_E_PROTOCOL, "malformed_reply", "ack without a seq");
      return 0;
    } else {
      out.ack = cairn_ack{head->seq, head->durable ? 1 : 0, head->duplicate ? 1 : 0};
    }
    progressed();
    Pending p = std::move(inflight.front());
    inflight.pop_front();
    out.ticket = p.ticket;
    if (p.keep_reply) out.reply.swap(payload);
    done.push_back(std::move(out));
    return 0;
  }

  // Waits for the result of `ticket` and removes it from `done`.
  int wait_for(uint64_t ticket, Done& out) {
    for (;;) {
      for (auto it = done.begin(); it != done.end(); ++it) {
        if (it->ticket == ticket) {
          out = std::move(*it);
          done.erase(it);
          return 0;
        }
      }
      int rc = read_one();
      if (rc != 0 && rc != CAIRN_E_INVALID_ARG) continue;  // failures land in done
      if (rc == CAIRN_E_INVALID_ARG) return CAIRN_E_PROTOCOL;  // ticket vanished
    }
  }

  int finish(Done& d, cairn_ack* ack) {
    if (d.rc != 0) {
      err_code = d.code;
      err_field = d.field;
      err_rule = d.rule;
      err_message = d.message;
    } else if (ack) {
      *ack = d.ack;
    }
    return d.rc;
  }
};

namespace {

// How cairn_event.severity is read: since 0.2 (CAIRN_0.2 symbols) it is the syslog level
// plus one, so that 0 — a zero-initialised struct — means "not set"; -1, the old way
// to say "not set", still means that. Binaries linked against 0.1 call the CAIRN_0
// symbols, which keep 0.1's reading (the level itself, -1 unset), so no linked program
// changes meaning: a 0.1 program's 0 stays emerg.
enum class SeverityAbi { v0_level, v0_2_level_plus_one };

// `idem_tail`: the last 8 bytes of a generated idem key (see below), distinct for every
// event of one client.
int encode_event(const cairn_event* ev, uint64_t id, uint64_t idem_tail, std::string& frame, SeverityAbi abi) {
  if (ev == nullptr || ev->type == nullptr) return CAIRN_E_INVALID_ARG;
  proto::EventView v;
  v.type = ev->type;
  if (abi == SeverityAbi::v0_level) {
    if (ev->severity >= 0) {
      if (ev->severity > 7) return CAIRN_E_INVALID_ARG;
      v.severity = static_cast<uint8_t>(ev->severity);
    } else if (ev->severity != -1) {
      return CAIRN_E_INVALID_ARG;
    }
  } else if (ev->severity != CAIRN_SEVERITY_UNSET && ev->severity != -1) {
    if (ev->severity < CAIRN_SEV_EMERG || ev->severity > CAIRN_SEV_DEBUG) return CAIRN_E_INVALID_ARG;
    v.severity = static_cast<uint8_t>(ev->severity - 1);
  }
  if (ev->actor) v.actor = ev->actor;
  if (ev->action) v.action = ev->action;
  if (ev->target) v.target = ev->target;
  if (ev->message) v.message = ev->message;
  if (ev->outcome) {
    auto o = proto::outcome_from_name(ev->outcome);
    if (!o) return CAIRN_E_INVALID_ARG;
    v.outcome = *o;
  }
  if (ev->time_ns != 0) v.time = ev->time_ns;
  v.sync = ev->sync != 0;
  std::string fields;
  if (ev->fields_msgpack != nullptr) {
    if (ev->n_fields > 0) return CAIRN_E_INVALID_ARG;
    v.fields = std::string_view(static_cast<const char*>(ev->fields_msgpack), ev->fields_msgpack_len);
  } else if (ev->n_fields > 0) {
    if (ev->fields == nullptr) return CAIRN_E_INVALID_ARG;
    proto::detail::Packer pk(fields);
    pk.map(ev->n_fields);
    for (size_t i = 0; i < ev->n_fields; ++i) {
      const cairn_field& f = ev->fields[i];
      if (f.key == nullptr) return CAIRN_E_INVALID_ARG;
      pk.str(f.key);
      switch (f.kind) {
        case CAIRN_FIELD_STR:
          if (f.s == nullptr) return CAIRN_E_INVALID_ARG;
          pk.str(f.s);
          break;
        case CAIRN_FIELD_INT: pk.i64(f.i); break;
        case CAIRN_FIELD_FLOAT: pk.f64(f.f); break;
        case CAIRN_FIELD_BOOL: pk.boolean(f.b != 0); break;
        case CAIRN_FIELD_NIL: pk.nil(); break;
        default: return CAIRN_E_INVALID_ARG;
      }
    }
    v.fields = fields;
  }
  char idem[16];
  if (ev->idem != nullptr) {
    v.idem = std::string_view(static_cast<const char*>(ev->idem), ev->idem_len);
  } else {
    // 8 bytes of big-endian wall-clock ns, then 8 bytes that are the client's random
    // salt plus its request id (like UUIDv7): unique, and ordered by time, so the
    // daemon's unique index on idem grows at its right edge instead of taking a random
    // B-tree insert (and a cache miss) per event. The salt is drawn once per client, not
    // per event: a getrandom per append was one of ~3 syscalls on the C=1 path (issue 15).
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
    for (int i = 0; i < 8; ++i) idem[i] = static_cast<char>(ns >> (56 - 8 * i));
    for (int i = 0; i < 8; ++i) idem[8 + i] = static_cast<char>(idem_tail >> (56 - 8 * i));
    v.idem = std::string_view(idem, sizeof idem);
  }
  proto::encode_append(frame, id, v);
  return 0;
}

}  // namespace

extern "C" {

void cairn_options_init(cairn_options* o) {
  if (o == nullptr) return;
  std::memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->reconnect_timeout_ms = kDefaultReconnectMs;
  o->max_inflight = kDefaultInflight;
}

int cairn_open(cairn_client** out, const char* socket_path, const cairn_options* opts) {
  if (out == nullptr || socket_path == nullptr) return CAIRN_E_INVALID_ARG;
  *out = nullptr;
  auto* c = new (std::nothrow) cairn_client();
  if (c == nullptr) return CAIRN_E_NOMEM;
  c->path = socket_path;
  if (getrandom(&c->idem_salt, sizeof c->idem_salt, 0) != sizeof c->idem_salt) {
    delete c;
    return CAIRN_E_IO;
  }
  // `size` lets the struct grow: a caller built against an older, shorter cairn_options
  // has only the members that end within its size read.
  auto has = [opts](size_t end) { return opts != nullptr && opts->size >= end; };
  if (has(offsetof(cairn_options, client_name) + sizeof opts->client_name) && opts->client_name)
    c->client_name = opts->client_name;
  if (has(offsetof(cairn_options, reconnect_timeout_ms) + sizeof opts->reconnect_timeout_ms))
    c->reconnect_ms = opts->reconnect_timeout_ms;
  if (has(offsetof(cairn_options, max_inflight) + sizeof opts->max_inflight) && opts->max_inflight > 0)
    c->window = opts->max_inflight;
  if (has(offsetof(cairn_options, timeout_ms) + sizeof opts->timeout_ms) && opts->timeout_ms > 0)
    c->timeout_ms = opts->timeout_ms;
  c->begin_call();
  int rc = c->connect_once();
  if (rc == CAIRN_E_CONNECT && c->reconnect_ms > 0) rc = c->reconnect();
  if (rc != 0) {
    // Without a handle there is no cairn_last_error: the reason travels as the code
    // (CAIRN_E_OVERLOADED, CAIRN_E_SHUTTING_DOWN: the daemon refused) or, for
    // CAIRN_E_CONNECT, as errno from the last attempt (ENOENT, EACCES, ECONNREFUSED ...).
    if (rc == CAIRN_E_CONNECT && c->fail_code != CAIRN_E_CONNECT) rc = c->fail_code;
    // A hello that did not come back within timeout_ms is a timeout, not "unreachable".
    if (rc == CAIRN_E_CONNECT && c->connect_errno == ETIMEDOUT) rc = CAIRN_E_TIMEOUT;
    int err = c->connect_errno;
    delete c;
    if (rc == CAIRN_E_CONNECT && err != 0) errno = err;
    return rc;
  }
  c->progressed();
  *out = c;
  return 0;
}

void cairn_close(cairn_client* c) { delete c; }

// Encodes and sends one event; the caller holds c->mu.
static int send_event(cairn_client* c, const cairn_event* ev, uint64_t* ticket, SeverityAbi abi) {
  std::string frame;
  uint64_t id = c->next_id++;
  int rc = encode_event(ev, id, c->idem_salt + id, frame, abi);
  if (rc != 0) return rc;
  return c->send(std::move(frame), id, ticket, /*keep_reply=*/false, /*is_append=*/true);
}

static int append_async(cairn_client* c, const cairn_event* ev, uint64_t* ticket, SeverityAbi abi) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
  c->begin_call();
  return send_event(c, ev, ticket, abi);
}

static int append(cairn_client* c, const cairn_event* ev, cairn_ack* ack, SeverityAbi abi) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
  c->begin_call();
  uint64_t ticket = 0;
  int rc = send_event(c, ev, &ticket, abi);
  if (rc != 0) return rc;
  Done d;
  rc = c->wait_for(ticket, d);
  if (rc != 0) return rc;
  return c->finish(d, ack);
}

int cairn_append_async(cairn_client* c, const cairn_event* ev, uint64_t* ticket) {
  return append_async(c, ev, ticket, SeverityAbi::v0_2_level_plus_one);
}

int cairn_append(cairn_client* c, const cairn_event* ev, cairn_ack* ack) {
  return append(c, ev, ack, SeverityAbi::v0_2_level_plus_one);
}

// The 0.1 entry points (see SeverityAbi), bound to version CAIRN_0 for programs linked
// before 0.2; libcairn.map makes the names above the default, CAIRN_0.2.
__attribute__((symver("cairn_append_async@CAIRN_0"))) int compat_v0_append_async(
    cairn_client* c, const cairn_event* ev, uint64_t* ticket) {
  return append_async(c, ev, ticket, SeverityAbi::v0_level);
}

__attribute__((symver("cairn_append@CAIRN_0"))) int compat_v0_append(cairn_client* c,
                                                                     const cairn_event* ev,
                                                                     cairn_ack* ack) {
  return append(c, ev, ack, SeverityAbi::v0_level);
}

int cairn_next_ack(cairn_client* c, uint64_t* ticket, cairn_ack* ack) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
  c->begin_call();
  while (c->done.empty()) {
    if (c->inflight.empty()) return CAIRN_E_INVALID_ARG;
    (void)c->read_one();  // failures land in done
  }
  Done d = std::move(c->done.front());
  c->done.pop_front();
  if (ticket) *ticket = d.ticket;
  return c->finish(d, ack);
}

static int simple_request(cairn_client* c, std::string&& frame, uint64_t id, Done& out) {
  uint64_t ticket = 0;
  int rc = c->send(std::move(frame), id, &ticket, /*keep_reply=*/true);
  if (rc != 0) return rc;
  rc = c->wait_for(ticket, out);
  if (rc != 0) return rc;
  return out.rc;
}

// Sends an op without arguments and waits for its reply; the caller holds c->mu.
// A refusal's details are recorded for cairn_last_error.
static int simple_op(cairn_client* c, proto::Op op, Done& d) {
  std::string frame;
  uint64_t id = c->next_id++;
  proto::encode_simple(frame, id, op);
  int rc = simple_request(c, std::move(frame), id, d);
  if (rc != 0) c->finish(d, nullptr);
  return rc;
}

int cairn_flush(cairn_client* c, uint64_t* durable_seq) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
  c->begin_call();
  Done d;
  int rc = simple_op(c, proto::Op::flush, d);
  if (rc != 0) return rc;
  // Like an ack without a seq, a flush answer without durable_seq says nothing durable:
  // refuse it rather than report 0. (msgpack-c reads every non-negative integer
  // encoding as POSITIVE_INTEGER, as reply_peek does.)
  auto dec = proto::Decoded::parse({reinterpret_cast<const uint8_t*>(d.reply.data()), d.reply.size()}, 16);
  const msgpack_object* v = dec ? proto::map_get(dec.value().root(), "durable_seq") : nullptr;
  if (v == nullptr || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
    c->set_error("malformed_reply", "flush reply without an unsigned durable_seq");
    return CAIRN_E_PROTOCOL;
  }
  if (durable_seq) *durable_seq = v->via.u64;
  return 0;
}

int cairn_ping(cairn_client* c) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
  c->begin_call();
  Done d;
  return simple_op(c, proto::Op::ping, d);
}

int cairn_request(cairn_client* c, const char* op, const void* args_map, size_t args_len, void** reply,
                  size_t* reply_len) {
  if (c == nullptr || op == nullptr || reply == nullptr || reply_len == nullptr)
    return CAIRN_E_INVALID_ARG;
  *reply = nullptr;
  *reply_len = 0;
  if (!proto::op_from_name(op) || std::strcmp(op, "append") == 0 || std::strcmp(op, "hello") == 0 ||
      std::strcmp(op, "subscribe") == 0)
    return CAIRN_E_INVALID_ARG;  // appends go through cairn_append (idem, resend rules);
                                 // a subscription's stream of replies is not one reply
  std::lock_guard lk(c->mu);
  c->begin_call();
  uint64_t id = c->next_id++;
  std::string frame;
  size_t at = proto::detail::begin_frame(frame);
  proto::detail::Packer pk(frame);
  const msgpack_object* args = nullptr;
  proto::Decoded dec;
  if (args_map != nullptr && args_len > 0) {
    auto d = proto::Decoded::parse({static_cast<const uint8_t*>(args_map), args_len}, 16);
    if (!d) return CAIRN_E_INVALID_ARG;
    dec = std::move(d.value());
    args = &dec.root();
  }
  uint32_t extra = 0;
  if (args)
    for (uint32_t i = 0; i < args->via.map.size; ++i) {
      const auto& kv = args->via.map.ptr[i];
      std::string_view k = kv.key.type == MSGPACK_OBJECT_STR ? proto::detail::str_of(kv.key) : "";
      if (k != "op" && k != "id") ++extra;
    }
  pk.map(2 + extra);
  pk.str("op");
  pk.str(op);
  pk.str("id");
  pk.u64(id);
  if (args)
    for (uint32_t i = 0; i < args->via.map.size; ++i) {
      const auto& kv = args->via.map.ptr[i];
      std::string_view k = kv.key.type == MSGPACK_OBJECT_STR ? proto::detail::str_of(kv.key) : "";
      if (k == "op" || k == "id") continue;
      msgpack_pack_object(&pk.pk, kv.key);
      msgpack_pack_object(&pk.pk, kv.val);
    }
  proto::detail::finish_frame(frame, at);
  Done d;
  int rc = simple_request(c, std::move(frame), id, d);
  if (rc != 0 && d.reply.empty()) return c->finish(d, nullptr) != 0 ? d.rc : rc;
  void* buf = std::malloc(d.reply.size());
  if (buf == nullptr) return CAIRN_E_NOMEM;
  std::memcpy(buf, d.reply.data(), d.reply.size());
  *reply = buf;
  *reply_len = d.reply.size();
  if (rc != 0) c->finish(d, nullptr);
  return rc;
}

void cairn_free(void* p) { std::free(p); }

const char* cairn_strerror(int err) {
  switch (err) {
    case CAIRN_OK: return "success";
    case CAIRN_E_INVALID_ARG: return "invalid argument";
    case CAIRN_E_CONNECT: return "cannot connect to cairnd";
    case CAIRN_E_IO: return "connection to cairnd lost";
    case CAIRN_E_PROTOCOL: return "protocol error";
    case CAIRN_E_REJECTED: return "request refused by cairnd";
    case CAIRN_E_STORAGE: return "cairnd could not store the event (storage_failed)";
    case CAIRN_E_SHUTTING_DOWN: return "cairnd is shutting down";
    case CAIRN_E_OVERLOADED: return "cairnd is overloaded";
    case CAIRN_E_DENIED: return "permission denied";
    case CAIRN_E_TIMEOUT: return "timed out";
    case CAIRN_E_NOMEM: return "out of memory";
    case CAIRN_E_UNSUPPORTED: return "protocol version not supported by cairnd";
    case CAIRN_E_RATE_LIMITED: return "over this uid's append rate (rate_limited); not stored, retry later";
    case CAIRN_E_STORAGE_FULL: return "cairnd's disk is full (storage_full): the event was not stored";
    default: return "unknown error";
  }
}

int cairn_last_error(cairn_client* c, const char** code, const char** field, const char** rule,
                     const char** message) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
  auto put = [](const char** dst, const std::string& s) {
    if (dst) *dst = s.empty() ? nullptr : s.c_str();
  };
  put(code, c->err_code);
  put(field, c->err_field);
  put(rule, c->err_rule);
  put(message, c->err_message);
  return 0;
}

}  // extern "C"
