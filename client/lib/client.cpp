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
    case proto::ErrorCode::shutting_down: return CAIRN_E_SHUTTING_DOWN;
    case proto::ErrorCode::overloaded: return CAIRN_E_OVERLOADED;
    case proto::ErrorCode::permission_denied: return CAIRN_E_DENIED;
    case proto::ErrorCode::unsupported_version: return CAIRN_E_UNSUPPORTED;
    case proto::ErrorCode::internal: return CAIRN_E_PROTOCOL;
    default: return CAIRN_E_REJECTED;
  }
}

struct Pending {
  uint64_t ticket = 0;
  uint64_t id = 0;
  std::string frame;
  bool keep_reply = false;  // flush and raw requests hand the reply map to the caller
};

struct Done {
  uint64_t ticket = 0;
  int rc = 0;
  cairn_ack ack{};
  std::string reply;  // raw reply payload (for cairn_request / flush)
  std::string code, field, rule, message;
};

}  // namespace

struct cairn_client {
  std::mutex mu;
  std::string path;
  std::string client_name = "libcairn";
  int reconnect_ms = kDefaultReconnectMs;
  unsigned window = kDefaultInflight;
  client::Connection conn;
  proto::HelloInfo server;
  uint64_t next_id = 1;
  uint64_t next_ticket = 1;
  std::deque<Pending> inflight;
  std::deque<Done> done;
  bool broken = false;  // lost and not allowed to reconnect
  std::string err_code, err_field, err_rule, err_message;
  std::string payload;  // scratch for reads

  // ---- connection management ----

  // Connects and says hello (one attempt). 0 or a CAIRN_E_* code; CAIRN_E_CONNECT means
  // "try again later" (no daemon, or one that is draining).
  int connect_once() {
    int rc = conn.connect(path);
    if (rc == -ENAMETOOLONG) return CAIRN_E_INVALID_ARG;
    if (rc < 0) return CAIRN_E_CONNECT;
    std::string f;
    proto::encode_hello(f, next_id++, proto::kProtocolVersion, client_name);
    if (conn.write_all(f) < 0 || conn.read_frame(payload, kMaxReplyFrame) < 0) {
      conn.close();
      return CAIRN_E_CONNECT;
    }
    auto d = proto::Decoded::parse({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, 16);
    if (!d) {
      conn.close();
      return CAIRN_E_PROTOCOL;
    }
    auto r = proto::reply_from(d.value());
    if (!r) {
      conn.close();
      return CAIRN_E_PROTOCOL;
    }
    if (!r.value().ok) {
      int code = code_for(r.value().error);
      conn.close();
      // A daemon that is draining refuses new work; treat it as not there yet.
      return code == CAIRN_E_SHUTTING_DOWN || code == CAIRN_E_OVERLOADED ? CAIRN_E_CONNECT : code;
    }
    auto h = proto::hello_info_from(r.value());
    if (h) server = h.value();
    if (server.max_inflight != 0 && window > server.max_inflight) window = server.max_inflight;
    return 0;
  }

  // Connects with exponential backoff (10 ms doubling to 500 ms, with jitter) and resends
  // everything in flight, in order, until that succeeds or reconnect_ms has passed since
  // the connection was lost. A resend cut short by another loss starts over within the
  // same deadline, so one loss never waits longer than reconnect_ms.
  int reconnect() {
    conn.close();
    if (reconnect_ms <= 0) {
      broken = true;
      return CAIRN_E_IO;
    }
    const int64_t deadline = mono_ms() + reconnect_ms;
    int delay = 10;
    for (;;) {
      int rc = connect_once();
      if (rc == 0) {
        bool sent = true;
        for (const auto& p : inflight) {
          if (conn.write_all(p.frame) < 0) {
            sent = false;
            conn.close();
            break;
          }
        }
        if (sent) return 0;
      } else if (rc != CAIRN_E_CONNECT) {
        return rc;
      }
      int64_t left = deadline - mono_ms();
      if (left <= 0) return CAIRN_E_CONNECT;
      unsigned jitter = 0;
      (void)getrandom(&jitter, sizeof jitter, 0);
      int64_t wait = std::min<int64_t>(left, delay / 2 + static_cast<int>(jitter % (delay / 2 + 1)));
      timespec ts{static_cast<time_t>(wait / 1000), static_cast<long>((wait % 1000) * 1'000'000L)};
      nanosleep(&ts, nullptr);  // backoff between attempts, not synchronisation
      delay = std::min(delay * 2, 500);
    }
  }

  // Fails everything in flight with `rc` (connection gone for good).
  void fail_inflight(int rc) {
    for (auto& p : inflight) {
      Done d;
      d.ticket = p.ticket;
      d.rc = rc;
      d.code = "disconnected";
      d.message = cairn_strerror(rc);
      done.push_back(std::move(d));
    }
    inflight.clear();
  }

  // Handles a lost connection: reconnect+resend, or fail what is in flight.
  int on_lost() {
    int rc = reconnect();
    if (rc != 0) fail_inflight(rc == CAIRN_E_IO ? CAIRN_E_IO : rc);
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
  int send(std::string&& frame, uint64_t id, uint64_t* ticket, bool keep_reply = false) {
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
      int rc = on_lost();
      if (rc != 0) return rc;
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
    inflight.push_back(std::move(p));
    if (ticket) *ticket = inflight.back().ticket;
    if (conn.write_all(inflight.back().frame) < 0) {
      // The frame stays in flight: after a reconnect it is resent with the rest, and if
      // there is no reconnect its failure is reported through `done` like the others'.
      (void)on_lost();
    }
    return 0;
  }

  // Reads one reply and moves the request it answers to `done`. 0 or an error that
  // ended the connection for good (what was in flight is then in `done` as failed).
  int read_one() {
    if (inflight.empty()) return CAIRN_E_INVALID_ARG;
    int rc = conn.open() ? conn.read_frame(payload, kMaxReplyFrame) : -ECONNRESET;
    if (rc < 0) return on_lost();
    const std::span<const uint8_t> bytes{reinterpret_cast<const uint8_t*>(payload.data()),
                                         payload.size()};
    // Acks are read without unpacking; only refusals are decoded in full.
    auto head = proto::reply_peek(bytes);
    if (!head) return on_lost();
    // An error with id 0 is one the daemon could not attribute (frame_too_large, or a
    // payload whose id it could not read). Replies come in request order, so it answers
    // the oldest request: fail that one rather than resend it to the same fate forever.
    if (head->id != inflight.front().id && (head->id != 0 || head->ok)) {
      // Out of step with the daemon: start afresh on a new connection.
      return on_lost();
    }
    Done out;
    if (!head->ok) {
      auto d = proto::Decoded::parse(bytes, 16);
      if (!d) return on_lost();
      auto r = proto::reply_from(d.value());
      if (!r) return on_lost();
      const proto::Reply& reply = r.value();
      if (reply.error == proto::ErrorCode::shutting_down) {
        // Not accepted by a draining daemon: resend it (and everything after) to the next.
        return on_lost();
      }
      out.rc = code_for(reply.error);
      out.code = reply.error_name;
      out.field = reply.field;
      out.rule = reply.rule;
      out.message = reply.message;
    } else {
      out.ack = cairn_ack{head->seq, head->durable ? 1 : 0, head->duplicate ? 1 : 0};
    }
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

int encode_event(cairn_client* c, const cairn_event* ev, uint64_t id, std::string& frame) {
  if (ev == nullptr || ev->type == nullptr) return CAIRN_E_INVALID_ARG;
  proto::EventView v;
  v.type = ev->type;
  if (ev->severity >= 0) {
    if (ev->severity > 7) return CAIRN_E_INVALID_ARG;
    v.severity = static_cast<uint8_t>(ev->severity);
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
    // 8 bytes of big-endian wall-clock ns, then 8 random bytes (like UUIDv7): unique,
    // and ordered by time, so the daemon's unique index on idem grows at its right
    // edge instead of taking a random B-tree insert (and a cache miss) per event.
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
    for (int i = 0; i < 8; ++i) idem[i] = static_cast<char>(ns >> (56 - 8 * i));
    if (getrandom(idem + 8, 8, 0) != 8) return CAIRN_E_IO;
    v.idem = std::string_view(idem, sizeof idem);
  }
  (void)c;
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
  // `size` lets the struct grow: a caller built against an older, shorter cairn_options
  // has only the members that end within its size read.
  auto has = [opts](size_t end) { return opts != nullptr && opts->size >= end; };
  if (has(offsetof(cairn_options, client_name) + sizeof opts->client_name) && opts->client_name)
    c->client_name = opts->client_name;
  if (has(offsetof(cairn_options, reconnect_timeout_ms) + sizeof opts->reconnect_timeout_ms))
    c->reconnect_ms = opts->reconnect_timeout_ms;
  if (has(offsetof(cairn_options, max_inflight) + sizeof opts->max_inflight) && opts->max_inflight > 0)
    c->window = opts->max_inflight;
  int rc = c->connect_once();
  if (rc == CAIRN_E_CONNECT && c->reconnect_ms > 0) rc = c->reconnect();
  if (rc != 0) {
    delete c;
    return rc;
  }
  *out = c;
  return 0;
}

void cairn_close(cairn_client* c) { delete c; }

// Encodes and sends one event; the caller holds c->mu.
static int send_event(cairn_client* c, const cairn_event* ev, uint64_t* ticket) {
  std::string frame;
  uint64_t id = c->next_id++;
  int rc = encode_event(c, ev, id, frame);
  if (rc != 0) return rc;
  return c->send(std::move(frame), id, ticket);
}

int cairn_append_async(cairn_client* c, const cairn_event* ev, uint64_t* ticket) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
  return send_event(c, ev, ticket);
}

int cairn_append(cairn_client* c, const cairn_event* ev, cairn_ack* ack) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
  uint64_t ticket = 0;
  int rc = send_event(c, ev, &ticket);
  if (rc != 0) return rc;
  Done d;
  rc = c->wait_for(ticket, d);
  if (rc != 0) return rc;
  return c->finish(d, ack);
}

int cairn_next_ack(cairn_client* c, uint64_t* ticket, cairn_ack* ack) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
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
  Done d;
  int rc = simple_op(c, proto::Op::flush, d);
  if (rc != 0) return rc;
  if (durable_seq) {
    auto dec = proto::Decoded::parse({reinterpret_cast<const uint8_t*>(d.reply.data()), d.reply.size()}, 16);
    const msgpack_object* v = dec ? proto::map_get(dec.value().root(), "durable_seq") : nullptr;
    *durable_seq = v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
  }
  return 0;
}

int cairn_ping(cairn_client* c) {
  if (c == nullptr) return CAIRN_E_INVALID_ARG;
  std::lock_guard lk(c->mu);
  Done d;
  return simple_op(c, proto::Op::ping, d);
}

int cairn_request(cairn_client* c, const char* op, const void* args_map, size_t args_len, void** reply,
                  size_t* reply_len) {
  if (c == nullptr || op == nullptr || reply == nullptr || reply_len == nullptr)
    return CAIRN_E_INVALID_ARG;
  *reply = nullptr;
  *reply_len = 0;
  if (!proto::op_from_name(op) || std::strcmp(op, "append") == 0 || std::strcmp(op, "hello") == 0)
    return CAIRN_E_INVALID_ARG;  // appends go through cairn_append (idem, resend rules)
  std::lock_guard lk(c->mu);
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
