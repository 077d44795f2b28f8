#include "session.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "../protocol/frame.hpp"
#include "log.hpp"
#include "server.hpp"

namespace cairn::daemon {
namespace {

// Requests nest as request map > event > fields (depth 1) > ... ; fields may be 4 deep,
// so 8 leaves room to report `too_deep` precisely before the frame is `malformed`.
constexpr uint32_t kMaxRequestDepth = 8;
// Extra read-buffer room past one maximal frame, so one read() can bring many frames.
constexpr size_t kReadSlack = 64 * 1024;
// A new or idle connection's read buffer; it grows to hold the frame being read.
constexpr size_t kInitialRead = 16 * 1024;
// One uv_buf_t carries an `unsigned` length: replies are handed over in pieces of at
// most this (a reply batch past 4 GiB was truncated before; issue 11 item 3).
constexpr size_t kMaxWriteBuf = size_t{1} << 30;
// Replies up to this size are tried on the socket at once (start_write); a bigger one
// (a query page) would be copied down after a short write, so it is queued whole.
constexpr size_t kTryWriteMax = 64 * 1024;

// What an append holds while it waits for the writer (issue 11 item 9): the request,
// its body and every string the store still needs beside it (WriteRequest::cost, the
// writer queue's own measure), plus allocator overhead.
uint64_t append_cost(const WriteRequest& w) { return w.cost() + 64; }

// At least WriteRequest::cost of any append a frame of `payload` bytes from `peer` can
// become, known before the frame is parsed: its strings are at most the payload; its
// stored body at most twice the payload (a float32 is stored as a float64) plus the
// keys cairnd adds and the peer's trusted strings, which are also kept beside it.
uint64_t append_cost_bound(size_t payload, const proto::Trusted& peer) {
  uint64_t trusted = peer.comm.size() + peer.exe.size() + peer.cgroup.size();
  return sizeof(WriteRequest) + 3 * uint64_t{payload} + 2 * trusted + 256;
}

// Peer-chosen or peer-named text goes into the log as printable ASCII only, so it can
// never smuggle control or bidi characters into what an operator reads; cut at `max`.
std::string printable(std::string s, size_t max) {
  if (s.size() > max) s.resize(max);
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  return s;
}

std::string read_small(const char* path, size_t max) {
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return {};
  std::string s(max, '\0');
  size_t n = std::fread(s.data(), 1, max, f);
  std::fclose(f);
  s.resize(n);
  return s;
}

// comm is chosen by the peer (prctl PR_SET_NAME): a hint only (see Trusted).
std::string read_comm(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/comm", static_cast<int>(pid));
  std::string s = read_small(path, 63);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return printable(std::move(s), 63);
}

// What the peer cannot choose: the executable it runs (readable by root or the same
// uid; empty otherwise) and its cgroup (systemd unit or session; world-readable).
std::string read_exe(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/exe", static_cast<int>(pid));
  char buf[1024];
  ssize_t n = readlink(path, buf, sizeof buf);
  if (n <= 0) return {};
  return printable(std::string(buf, static_cast<size_t>(n)), 512);
}

std::string read_cgroup(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/cgroup", static_cast<int>(pid));
  std::string all = read_small(path, 4096);
  // cgroup v2: "0::/system.slice/sshd.service"; on a hybrid host, the same line is there.
  size_t at = all.rfind("0::", 0) == 0 ? 0 : all.find("\n0::");
  if (at == std::string::npos) return {};
  at += at == 0 ? 3 : 4;
  size_t end = all.find('\n', at);
  return printable(all.substr(at, end == std::string::npos ? std::string::npos : end - at), 512);
}

}  // namespace

Session::Session(Server& server) : server_(server) {}

void Session::unref() {
  if (--refs_ != 0) return;
  // Nothing is in flight any more: whatever the budget still counts (replies never
  // sent, acks of a closed connection) is freed with us.
  if (held_ != 0 || write_held_ != 0) charge(-static_cast<int64_t>(held_), -static_cast<int64_t>(write_held_));
  server_.forget_uid_if_unused(peer_.uid);
  delete this;
}

void Session::charge(int64_t held_delta, int64_t write_delta) {
  held_ = static_cast<uint64_t>(static_cast<int64_t>(held_) + held_delta);
  write_held_ = static_cast<uint64_t>(static_cast<int64_t>(write_held_) + write_delta);
  server_.charge(peer_.uid, held_delta, write_delta);
}

// ---- accept ----

Session* Session::accept(Server& server, uv_stream_t* listener) {
  static uint64_t next_serial = 0;  // the loop thread only
  auto* s = new Session(server);
  s->serial_ = ++next_serial;
  int rc = uv_pipe_init(server.loop(), &s->pipe_, 0);
  if (rc < 0) {
    log_msg(LogLevel::err, "accept: uv_pipe_init: %s", uv_strerror(rc));
    delete s;
    return nullptr;
  }
  s->pipe_.data = s;
  // Not on the Server's list yet, so these failures free it directly, not via on_close.
  auto drop = [s] {
    s->state_ = State::closed;
    uv_close(reinterpret_cast<uv_handle_t*>(&s->pipe_),
             [](uv_handle_t* h) noexcept { delete static_cast<Session*>(h->data); });
  };
  rc = uv_accept(listener, reinterpret_cast<uv_stream_t*>(&s->pipe_));
  if (rc < 0) {
    log_msg(LogLevel::warning, "accept: %s", uv_strerror(rc));
    drop();
    return nullptr;
  }
  uv_os_fd_t fd = -1;
  uv_fileno(reinterpret_cast<uv_handle_t*>(&s->pipe_), &fd);
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    log_msg(LogLevel::warning, "accept: SO_PEERCRED: %s; refusing connection", strerror(errno));
    drop();
    return nullptr;
  }
  s->peer_.pid = static_cast<uint32_t>(cred.pid);
  s->peer_.uid = cred.uid;
  s->peer_.gid = cred.gid;
  s->peer_.comm = read_comm(cred.pid);
  s->peer_.exe = read_exe(cred.pid);
  s->peer_.cgroup = read_cgroup(cred.pid);
  s->cap_max_ = server.config().limits.max_frame + proto::kFrameHeaderSize + kReadSlack;
  s->cap_ = std::min(kInitialRead, s->cap_max_);
  s->rbuf_ = std::make_unique<uint8_t[]>(s->cap_);
  s->last_active_ms_ = uv_now(server.loop());
  return s;
}

void Session::start() { update_reading(); }

void Session::refuse(proto::ErrorCode code, const std::string& message) {
  refused_ = true;
  reply_error(0, code, message);
  close_after_flush();  // read nothing from this peer
  send_replies();
  maybe_finish();
}

// ---- read ----

// Budget and in-flight limits. When the uid's or the daemon's total is what stops us,
// the Server lists us and resume_budget() runs once bytes are released; when it is our
// own budget, our own write completions (on_write) bring us back.
bool Session::may_dispatch() {
  return !paused_on_writer_ && !paused_on_disk_ && slots_.size() < server_.config().max_inflight &&
         server_.may_read(this, held_);
}

void Session::update_reading() {
  if (state_ == State::closed) return;
  bool want = accepting_input() && may_dispatch();
  if (want == reading_) {
    note_partial();
    return;
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(&pipe_);
  if (want) {
    int rc = uv_read_start(stream, &Session::on_alloc, &Session::on_read);
    if (rc < 0) {
      log_msg(LogLevel::warning, "pid %u: read_start: %s", peer_.pid, uv_strerror(rc));
      close();
      return;
    }
  } else {
    uv_read_stop(stream);
  }
  reading_ = want;
  partial_since_ms_ = 0;  // time spent paused by us is not the peer's
  note_partial();
}

// The slow-frame clock runs only while we read and an incomplete frame is buffered.
void Session::note_partial() {
  bool partial = reading_ && start_ != end_ && !whole_frame_buffered();
  if (!partial) partial_since_ms_ = 0;
  else if (partial_since_ms_ == 0) partial_since_ms_ = uv_now(server_.loop());
}

void Session::grow_read_buffer() {
  // Compact first: the frame being read then starts at 0.
  if (start_ > 0) {
    std::memmove(rbuf_.get(), rbuf_.get() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  size_t want = end_ + kInitialRead / 4;  // room for a useful read
  if (end_ >= proto::kFrameHeaderSize) {
    auto fv = proto::frame_next({rbuf_.get(), end_}, server_.config().limits.max_frame);
    if (fv.status == proto::FrameStatus::need_more)
      want = std::max(want, proto::kFrameHeaderSize + size_t{fv.length});
  }
  want = std::min(want, cap_max_);
  if (want <= cap_) return;
  size_t grown = std::min(cap_max_, std::max(want, cap_ * 2));
  auto bigger = std::make_unique<uint8_t[]>(grown);
  std::memcpy(bigger.get(), rbuf_.get(), end_);
  rbuf_ = std::move(bigger);
  cap_ = grown;
}

void Session::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  auto* s = static_cast<Session*>(h->data);
  // Hand libuv our own buffer's free space (never a fresh allocation per read).
  if (s->start_ > 0 && (s->start_ == s->end_ || s->cap_ - s->end_ < s->cap_ / 4)) {
    std::memmove(s->rbuf_.get(), s->rbuf_.get() + s->start_, s->end_ - s->start_);
    s->end_ -= s->start_;
    s->start_ = 0;
  }
  if (s->cap_ - s->end_ < kInitialRead / 4 || s->cap_ < s->cap_max_) s->grow_read_buffer();
  buf->base = reinterpret_cast<char*>(s->rbuf_.get() + s->end_);
  buf->len = s->cap_ - s->end_;
}

void Session::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) noexcept {
  auto* s = static_cast<Session*>(stream->data);
  if (nread == 0) return;  // EAGAIN
  if (nread < 0) {
    if (nread == UV_EOF) {
      // Whole frames still buffered are served; a trailing partial frame never
      // completed, so it is neither stored nor answered.
      s->close_after_flush();
      s->read_frames();
    } else {
      log_msg(LogLevel::info, "pid %u: read: %s; closing", s->peer_.pid, uv_strerror(static_cast<int>(nread)));
      s->close();
    }
    return;
  }
  s->end_ += static_cast<size_t>(nread);
  s->last_active_ms_ = uv_now(s->server_.loop());
  s->read_frames();
}

// Cuts whole frames out of the buffer and dispatches them, as far as max_inflight and
// the writer queue allow; then enqueues this read's appends and sends what is ready.
void Session::read_frames() {
  if (state_ == State::closed) return;
  // Answered slots leave the count first: max_inflight bounds requests in flight, not
  // replies already filled. (Counted before they left, a reply that frees the last slot
  // served no buffered frame, and a client that had pipelined more than max_inflight
  // requests and then waited, or half-closed, was never answered.)
  send_replies();
  const uint32_t max_frame = server_.config().limits.max_frame;
  while (may_dispatch()) {
    auto fv = proto::frame_next({rbuf_.get() + start_, end_ - start_}, max_frame);
    if (fv.status == proto::FrameStatus::need_more) break;
    if (fv.status == proto::FrameStatus::too_large || fv.status == proto::FrameStatus::empty) {
      // The boundary is lost: answer once, then close after the replies are out.
      bool big = fv.status == proto::FrameStatus::too_large;
      log_msg(LogLevel::info, "pid %u: %s frame (length %u); closing connection", peer_.pid,
              big ? "oversize" : "zero-length", fv.length);
      reply_error(0, big ? proto::ErrorCode::frame_too_large : proto::ErrorCode::malformed,
                  big ? "frame length " + std::to_string(fv.length) + " exceeds max_frame " +
                            std::to_string(max_frame)
                      : std::string("frame length 0 is not allowed"));
      input_broken();
      break;
    }
    if (held_for_disk(fv.payload)) break;
    if (!writer_has_room(fv.payload.size())) break;
    start_ += fv.consumed;
    bool admitted = admit_frame(fv.payload);
    consumed_total_ += fv.consumed;
    if (admitted) dispatch(fv.payload);
  }
  submit_staged();
  // Only after our appends are queued: the last drained session starts the writer's
  // final commit, which must include them.
  if (input_exhausted()) report_drained();
  send_replies();
  update_reading();
  maybe_finish();
}

// Outside a drain every frame is admitted. During one, a frame that starts past the
// budget arrived after SIGTERM: it is answered shutting_down (with its id if readable).
bool Session::admit_frame(std::span<const uint8_t> payload) {
  if (consumed_total_ < budget_end_) return true;
  uint64_t id = 0;
  auto d = proto::Decoded::parse(payload, kMaxRequestDepth);
  if (d) {
    auto r = proto::request_from(d.value());
    id = r ? r.value().id : r.error().id;
  }
  reply_error(id, proto::ErrorCode::shutting_down, "cairnd is shutting down; reconnect and resend");
  return false;
}

// Disk-full pushback (disk_guard.hpp): an append is left in the buffer, unread, and the
// connection waits on the guard's list; the client blocks once the socket fills. Only an
// open connection waits: a draining one has its appends refused (DiskGuard::admit).
bool Session::held_for_disk(std::span<const uint8_t> payload) {
  DiskGuard& disk = server_.disk_guard();
  if (state_ != State::open || !disk.holding() || !DiskGuard::is_append(payload, kMaxRequestDepth)) return false;
  paused_on_disk_ = true;
  disk.hold(this);
  return true;
}

void Session::input_broken() {
  start_ = end_;  // nothing buffered is a frame any more
  close_after_flush();
  report_drained();
}

// ---- validate ----

bool Session::may_query() const {
  if (server_.may_query(peer_.uid, peer_.gid)) return true;
  if (server_.config().query_gids.empty()) return false;
  // Supplementary groups count too: an administrator added to cairn-readers keeps their
  // own primary group. SO_PEERGROUPS gives the groups the peer had when it connected
  // (like SO_PEERCRED's uid), asked per query rather than kept per connection.
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&pipe_), &fd) != 0) return false;
  std::vector<gid_t> groups(64);
  socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) {
    if (errno != ERANGE) return false;
    groups.resize(len / sizeof(gid_t));  // the kernel said how much it needs
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) return false;
  }
  groups.resize(len / sizeof(gid_t));
  for (gid_t g : groups)
    if (server_.may_query(peer_.uid, g)) return true;
  return false;
}

void Session::dispatch(std::span<const uint8_t> payload) {
  request_bytes_ = payload.size();
  if (sub_.state != Subscription::State::none) return refuse_while_subscribed(payload);
  auto decoded = proto::Decoded::parse(payload, kMaxRequestDepth);
  if (!decoded) {
    reply_error(0, proto::ErrorCode::malformed, decoded.error());
    return;
  }
  auto r = proto::request_from(decoded.value());
  if (!r) {
    const auto& e = r.error();
    reply_error(e.id, e.code, e.message, e.field, e.rule);
    return;
  }
  const proto::Request& req = r.value();
  std::string out;
  switch (req.op) {
    case proto::Op::hello: {
      auto h = proto::hello_from(req);
      if (!h) {
        reply_error(req.id, proto::ErrorCode::invalid_field, h.error().message, h.error().field,
                    h.error().rule);
      } else if (h.value().version != proto::kProtocolVersion) {
        reply_error(req.id, proto::ErrorCode::unsupported_version,
                    "protocol version " + std::to_string(h.value().version) +
                        " is not supported; this daemon speaks version 1");
      } else {
        proto::encode_hello_reply(out, req.id, server_.hello_info());
        fill(new_slot(), std::move(out));
      }
      return;
    }
    case proto::Op::ping:
      proto::encode_pong(out, req.id);
      fill(new_slot(), std::move(out));
      return;
    case proto::Op::append:
      stage_append(req, new_slot());
      return;
    case proto::Op::flush: {
      WriteRequest w;
      w.kind = WriteRequest::Kind::flush;
      w.session = this;
      w.trusted.uid = peer_.uid;  // the writer queue's fairness key: behind our appends
      staged_cost_ += w.cost();
      w.conn = serial_;
      w.slot = new_slot();
      w.id = req.id;
      slots_.back().charge = slots_.back().write_charge = sizeof(WriteRequest);
      charge(sizeof(WriteRequest), sizeof(WriteRequest));
      ref();
      staged_.push_back(std::move(w));
      return;
    }
    case proto::Op::query:
    case proto::Op::stats:
    case proto::Op::verify:
      dispatch_read(req);
      return;
    case proto::Op::subscribe:
      start_subscription(req);  // session_subscribe.cpp
      return;
  }
  reply_error(req.id, proto::ErrorCode::internal, "unhandled op");
}

void Session::dispatch_read(const proto::Request& req) {
  if (!may_query()) {
    reply_error(req.id, proto::ErrorCode::permission_denied,
                std::string(proto::op_name(req.op)) + " is not allowed for uid " +
                    std::to_string(peer_.uid) + " (see --query-uids / --query-gids)");
    return;
  }
  ReadRequest rr;
  rr.kind = req.op == proto::Op::query   ? ReadRequest::Kind::query
            : req.op == proto::Op::stats ? ReadRequest::Kind::stats
                                         : ReadRequest::Kind::verify;
  if (req.op == proto::Op::query) {
    auto q = proto::query_from(req, server_.config().limits);
    if (!q) {
      reply_error(req.id, proto::ErrorCode::invalid_field, q.error().message, q.error().field,
                  q.error().rule);
      return;
    }
    rr.spec = std::move(q.value());
  }
  if (req.op == proto::Op::verify) {
    auto v = proto::verify_args_from(req);
    if (!v) {
      reply_error(req.id, proto::ErrorCode::invalid_field, v.error().message, v.error().field,
                  v.error().rule);
      return;
    }
    rr.verify = std::move(v.value());
  }
  rr.session = this;
  rr.slot = new_slot();
  rr.id = req.id;
  rr.uid = peer_.uid;
  const uint64_t slot = rr.slot;
  // Reserved now, so what a client may pipeline is bounded by its budget, not by what
  // the replies turn out to be: a query or stats reply is at most one frame of
  // max_frame; a verify report is small, but its request (key, checkpoints) waits with
  // it. fill() charges the reply's real size in the end.
  const uint64_t reserve = req.op == proto::Op::verify
                               ? request_bytes_ + 1024
                               : server_.config().limits.max_frame + proto::kFrameHeaderSize;
  slots_.back().charge = reserve;
  charge(static_cast<int64_t>(reserve), 0);
  ref();
  if (!server_.reader().submit(std::move(rr))) {
    unref();  // never queued: no result will come back for it
    std::string f;
    proto::encode_error(f, req.id, proto::ErrorCode::overloaded,
                        req.op == proto::Op::verify
                            ? "a verify is running and " + std::to_string(Reader::kMaxWaitingVerifies) +
                                  " more are waiting for it; retry later"
                            : std::to_string(Reader::kMaxQueued) +
                                  " queries and stats are already waiting; retry later");
    fill(slot, std::move(f));
  }
}

void Session::stage_append(const proto::Request& req, uint64_t slot) {
  auto fail = [&](proto::ErrorCode code, std::string_view msg, std::string_view field = {},
                  std::string_view rule = {}) {
    std::string f;
    proto::encode_error(f, req.id, code, msg, field, rule);
    fill(slot, std::move(f));
  };
  // Below the disk reserve (disk_guard.hpp): refused by name, nothing stored.
  if (!server_.disk_guard().admit(request_bytes_, state_ == State::draining)) {
    fail(proto::ErrorCode::storage_full, server_.disk_guard().refusal_message());
    return;
  }
  if (!server_.take_append_token(peer_.uid)) {
    fail(proto::ErrorCode::rate_limited,
         "uid " + std::to_string(peer_.uid) + " is over its append rate of " +
             std::to_string(server_.config().peer.uid_append_rate) +
             " events/s (--uid-append-rate); this event was not stored: resend it later");
    return;
  }
  const msgpack_object* ev = proto::map_get(*req.map, "event");
  if (ev == nullptr) {
    fail(proto::ErrorCode::invalid_field, "event: required", "event", "required");
    return;
  }
  const proto::Limits& limits = server_.config().limits;
  auto e = proto::event_from_msgpack(*ev, limits);
  if (!e) {
    const auto& v = e.error();
    fail(proto::ErrorCode::invalid_field, v.message, v.field, v.rule);
    return;
  }
  WriteRequest w;
  w.kind = WriteRequest::Kind::append;
  w.session = this;
  w.conn = serial_;
  w.slot = slot;
  w.id = req.id;
  w.event = std::move(e.value());
  w.trusted = peer_;
  w.trusted.received = realtime_ns();
  w.body = proto::event_canonical_body(w.event, w.trusted, &w.received_at);
  // Every stored event must fit a query reply on its own (no reply exceeds max_frame).
  // The body can outgrow the request (trusted fields; float32 stored as float64).
  if (!proto::QueryReplyBuilder::fits_alone(w.body.size(), limits.max_frame)) {
    fail(proto::ErrorCode::invalid_field,
         "event: its stored form (" + std::to_string(w.body.size()) +
             " bytes) would not fit in a reply of max_frame " + std::to_string(limits.max_frame) +
             " bytes",
         "event", "too_long");
    return;
  }
  const FlushPolicy& policy = server_.writer().policy();
  w.durable_ack = policy.waits_for_commit(w.event);
  bool urgent = policy.urgent(w.event);
  // The store needs only the indexed columns beside the body; the message and fields
  // live on in the body. Freed now, not after the request has waited in the queue.
  w.event.message.reset();
  std::string().swap(w.event.fields);
  const uint64_t cost = append_cost(w);
  Slot& sl = slots_[slot - first_slot_];
  sl.charge = sl.write_charge = cost;
  charge(static_cast<int64_t>(cost), static_cast<int64_t>(cost));
  ref();
  staged_cost_ += w.cost();
  staged_.push_back(std::move(w));
  if (urgent) staged_urgent_ = staged_.size();
}

// ---- enqueue ----

// The writer queue's limit is hard (issue 11 item 9): a frame is taken only if the
// queue has room for it as an append at its largest beside what this read staged (all
// on the loop thread, so no other session has anything staged now). Else it stays
// buffered and we wait for the writer, resumed below half like a paused uid.
bool Session::writer_has_room(size_t payload) {
  if (server_.writer().has_room(staged_.size() + 1, staged_cost_ + append_cost_bound(payload, peer_)))
    return true;
  if (!paused_on_writer_) {
    paused_on_writer_ = true;
    server_.wait_for_writer(this);
  }
  return false;
}

void Session::submit_staged() {
  staged_cost_ = 0;
  if (staged_.empty()) return;
  // Up to the last urgent event: ahead of the writer's queue; the rest: in line.
  if (staged_urgent_ > 0) {
    std::vector<WriteRequest> rest(std::make_move_iterator(staged_.begin() + static_cast<long>(staged_urgent_)),
                                   std::make_move_iterator(staged_.end()));
    staged_.resize(staged_urgent_);
    server_.writer().submit(staged_, /*urgent=*/true);
    staged_.swap(rest);
    staged_urgent_ = 0;
  }
  server_.writer().submit(staged_);
  // Backpressure falls on the uids that fill the queue: one holding less than the fair
  // floor goes on (the queue's limit is soft; the floor bounds what it adds), so a flood
  // never pauses a light client of another uid (issue 11 item 5).
  if (server_.writer().over_limit() && !server_.light_writer(peer_.uid)) {
    paused_on_writer_ = true;
    server_.wait_for_writer(this);
  }
}

// ---- ack ----

uint64_t Session::new_slot() {
  slots_.emplace_back();
  return first_slot_ + slots_.size() - 1;
}

void Session::fill(uint64_t slot, std::string&& frame) {
  auto& s = slots_[slot - first_slot_];
  s.frame = std::move(frame);
  s.ready = true;
  // From its reservation (or its append's cost) to the reply's size; the reply stays
  // charged until it is written (on_write).
  charge(static_cast<int64_t>(s.frame.size()) - static_cast<int64_t>(s.charge),
         -static_cast<int64_t>(s.write_charge));
  s.charge = s.frame.size();
  s.write_charge = 0;
}

void Session::reply_error(uint64_t id, proto::ErrorCode code, std::string_view message,
                          std::string_view field, std::string_view rule) {
  std::string f;
  proto::encode_error(f, id, code, message, field, rule);
  fill(new_slot(), std::move(f));
}

void Session::complete_write(const WriteResult& res) {
  if (state_ != State::closed) {
    std::string out;
    if (!res.ok && res.error == proto::ErrorCode::idem_conflict) {
      proto::encode_error(out, res.id, res.error,
                          "uid " + std::to_string(peer_.uid) +
                              " already stored a different event under this idem key (seq " +
                              std::to_string(res.seq) + "); nothing was stored: use a new key");
    } else if (!res.ok && res.error == proto::ErrorCode::storage_full) {
      server_.disk_guard().count_refusal();  // refused by the writer after an ENOSPC
      proto::encode_error(out, res.id, res.error, server_.disk_guard().refusal_message());
    } else if (!res.ok) {
      proto::encode_error(out, res.id, res.error,
                          res.error == proto::ErrorCode::storage_failed
                              ? "the write failed and was rolled back; nothing was stored"
                              : "request failed");
    } else if (res.flush) {
      proto::encode_flush_reply(out, res.id, res.seq);
    } else {
      proto::encode_ack(out, res.id, res.seq, res.durable, res.duplicate);
    }
    fill(res.slot, std::move(out));
    // Frames held back by max_inflight may be waiting in the buffer: serve them now,
    // the client may be blocked waiting for this very reply.
    read_frames();
  }
  unref();
}

void Session::complete_read(ReadResult& res) {
  if (res.kind == ReadRequest::Kind::subscribe) return complete_subscription_page(res);
  if (state_ != State::closed) {
    std::string out;
    if (res.cancelled) {
      // Only shutdown cancels the reads of a live connection.
      proto::encode_error(out, res.id, proto::ErrorCode::shutting_down,
                          "cairnd is shutting down; this request was not run to the end");
    } else if (!res.ok) {
      proto::encode_error(out, res.id, proto::ErrorCode::storage_failed,
                          "reading the store failed: " + res.error);
    } else if (res.kind == ReadRequest::Kind::stats) {
      proto::Stats st;
      store::put_log_figures(std::move(res.info), st);
      server_.fill_stats(st);
      proto::encode_stats_reply(out, res.id, st, server_.config().limits.max_frame);
    } else {
      out = std::move(res.frame);
    }
    fill(res.slot, std::move(out));
    // Frames held back by max_inflight may be waiting in the buffer: serve them now,
    // the client may be blocked waiting for this very reply.
    read_frames();
  }
  unref();
}

void Session::send_replies() {
  while (!slots_.empty() && slots_.front().ready) {
    if (out_.empty()) out_.swap(slots_.front().frame);  // a query page: no copy
    else out_ += slots_.front().frame;
    slots_.pop_front();
    ++first_slot_;
  }
  start_write();
}

void Session::start_write() {
  if (write_in_flight_ || out_.empty() || state_ == State::closed) return;
  if (out_.size() <= kTryWriteMax && try_write_now()) return;
  writing_.swap(out_);
  out_.clear();
  // uv_write copies the array of buffers; the bytes stay in writing_ until on_write.
  std::vector<uv_buf_t> bufs;
  for (size_t off = 0; off < writing_.size(); off += kMaxWriteBuf)
    bufs.push_back(uv_buf_init(writing_.data() + off,
                               static_cast<unsigned>(std::min(kMaxWriteBuf, writing_.size() - off))));
  write_req_.data = this;
  int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&pipe_), bufs.data(),
                    static_cast<unsigned>(bufs.size()), &Session::on_write);
  if (rc < 0) {
    log_msg(LogLevel::info, "pid %u: write: %s; closing", peer_.pid, uv_strerror(rc));
    charge(-static_cast<int64_t>(writing_.size()), 0);
    std::string().swap(writing_);
    close();
    return;
  }
  write_in_flight_ = true;
  write_since_ms_ = uv_now(server_.loop());
}

// The usual ack fits in the socket's buffer: written here, it needs no write request, no
// callback in the next loop iteration and no epoll_ctl to re-arm the stream afterwards
// (libuv's drain after a queued write costs one: one of ~12 syscalls per C=1 ack, issue
// 15). Only for an open connection that is reading and holds no whole frame: then
// nothing waits for the budget this write frees (on_write's read_frames() is what serves
// a connection paused on its budget, on the writer's queue or on the disk, and what
// finishes a closing or draining one). And only when no other request of this
// connection is in flight: a client with a window of requests gets its replies in
// batches, and a write in flight is what gathers the next batch (writing every batch at
// once cost 25% of C=64 throughput: more writes, more client wake-ups). Returns true when
// every byte went out. Never on a subscribing connection: its next page runs from
// on_write (subscription_written).
bool Session::try_write_now() {
  if (state_ != State::open || !reading_ || !slots_.empty() || paused_on_writer_ || paused_on_disk_ ||
      sub_.state != Subscription::State::none || whole_frame_buffered())
    return false;
  uv_buf_t b = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
  int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&pipe_), &b, 1);
  if (n <= 0) return false;  // UV_EAGAIN, or an error uv_write will report
  charge(-static_cast<int64_t>(n), 0);
  last_active_ms_ = uv_now(server_.loop());
  if (static_cast<size_t>(n) == out_.size()) {
    out_.clear();
    return true;
  }
  out_.erase(0, static_cast<size_t>(n));  // a short write: the rest is queued
  return false;
}

void Session::on_write(uv_write_t* req, int status) noexcept {
  auto* s = static_cast<Session*>(req->data);
  s->write_in_flight_ = false;
  s->charge(-static_cast<int64_t>(s->writing_.size()), 0);
  // Freed, not kept: a connection's biggest batch of replies must not stay allocated.
  std::string().swap(s->writing_);
  if (status < 0) {
    if (status != UV_ECANCELED)
      log_msg(LogLevel::info, "pid %u: write: %s; closing", s->peer_.pid, uv_strerror(status));
    s->close();
    return;
  }
  s->last_active_ms_ = uv_now(s->server_.loop());
  // Budget freed: frames held back in the buffer may be served now (read_frames also
  // starts the next write and resumes reading).
  s->read_frames();
  s->subscription_written();
}

// ---- lifecycle ----

void Session::resume() {
  paused_on_writer_ = false;
  if (state_ == State::closed) return;
  read_frames();  // frames already buffered first, then read more
}

void Session::resume_budget() {
  if (state_ == State::closed) return;
  read_frames();
}

void Session::resume_disk() {
  paused_on_disk_ = false;
  if (state_ == State::closed) return;
  read_frames();  // the held append first; it may be held again
}

void Session::sweep(uint64_t now) {
  if (state_ == State::closed) return;
  const PeerLimits& p = server_.config().peer;
  if (p.frame_timeout_ms != 0 && partial_since_ms_ != 0 && now - partial_since_ms_ >= p.frame_timeout_ms) {
    log_msg(LogLevel::info, "pid %u uid %u: frame not completed within %u ms; closing", peer_.pid,
            peer_.uid, p.frame_timeout_ms);
    close();
    return;
  }
  if (p.idle_timeout_ms != 0) {
    if (write_in_flight_ && now - write_since_ms_ >= p.idle_timeout_ms) {
      log_msg(LogLevel::info, "pid %u uid %u: replies unread for %u ms; closing", peer_.pid,
              peer_.uid, p.idle_timeout_ms);
      close();
      return;
    }
    bool idle = slots_.empty() && out_.empty() && !write_in_flight_ && staged_.empty() && start_ == end_;
    if (idle && now - last_active_ms_ >= p.idle_timeout_ms) {
      // Closed without a frame: a request the peer sent meanwhile would be failed by an
      // unprompted error; at EOF clients reconnect and resend (by idem).
      log_msg(LogLevel::debug, "pid %u uid %u: idle for %u ms; closing", peer_.pid, peer_.uid,
              p.idle_timeout_ms);
      close();
      return;
    }
  }
  if (start_ == end_ && cap_ > kInitialRead) {  // an idle connection keeps a small buffer
    rbuf_ = std::make_unique<uint8_t[]>(kInitialRead);
    cap_ = kInitialRead;
    start_ = end_ = 0;
  }
}

void Session::begin_drain() {
  if (budget_end_ != kNoBudget) return;
  if (state_ == State::open) state_ = State::draining;
  int avail = 0;
  uv_os_fd_t fd = -1;
  if (state_ != State::closed && uv_fileno(reinterpret_cast<uv_handle_t*>(&pipe_), &fd) == 0)
    ioctl(fd, FIONREAD, &avail);
  budget_end_ = consumed_total_ + (end_ - start_) + static_cast<uint64_t>(avail < 0 ? 0 : avail);
  if (input_exhausted()) report_drained();
}

void Session::force_drained() {
  if (budget_end_ == kNoBudget) return;
  budget_end_ = consumed_total_;
  drain_reported_ = true;  // the server resets its own count
}

void Session::report_drained() {
  if (budget_end_ == kNoBudget || drain_reported_) return;
  drain_reported_ = true;
  server_.session_drained(this);
}

void Session::close_after_flush() {
  if (state_ == State::open || state_ == State::draining) state_ = State::closing;
  end_subscription();  // its parked page would hold the close forever
  update_reading();
  maybe_finish();
}

bool Session::whole_frame_buffered() const {
  return proto::frame_next({rbuf_.get() + start_, end_ - start_}, server_.config().limits.max_frame)
             .status == proto::FrameStatus::complete;
}

// Nothing more will be accepted from this connection: its shutdown budget is used up,
// or it can send no more and has no whole frame left to serve.
bool Session::input_exhausted() const {
  if (state_ == State::closed) return true;
  if (consumed_total_ >= budget_end_) return true;
  return state_ == State::closing && !whole_frame_buffered();
}

void Session::maybe_finish() {
  if (state_ != State::closing) return;
  if (!slots_.empty() || !out_.empty() || write_in_flight_ || !staged_.empty()) return;
  // After EOF, whole frames still buffered (we were paused) are served before closing.
  if (!whole_frame_buffered()) close();
}

void Session::close() {
  if (state_ == State::closed) return;
  state_ = State::closed;
  report_drained();
  // Reads of ours that have not run are dropped; a running one is interrupted. Their
  // results still come back (through the mailbox) to release their refs.
  server_.reader().cancel_session(this);
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&pipe_));
  uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), &Session::on_close);
}

void Session::on_close(uv_handle_t* h) noexcept {
  auto* s = static_cast<Session*>(h->data);
  s->server_.session_closed(s);
  s->unref();  // the handle's ref
}

}  // namespace cairn::daemon
