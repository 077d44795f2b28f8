#include "session.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

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
// Unsent reply bytes at which we stop reading from a client that does not read.
constexpr size_t kMaxUnsentBytes = 4u << 20;

std::string read_comm(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/comm", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return {};
  char buf[64] = {};
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  std::string s(buf, n);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  // comm is chosen by the peer (prctl PR_SET_NAME): keep it printable ASCII so it can
  // never smuggle control or bidi characters into the log.
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  return s;
}

}  // namespace

Session::Session(Server& server) : server_(server) {}

Session* Session::accept(Server& server, uv_stream_t* listener) {
  auto* s = new Session(server);
  int rc = uv_pipe_init(server.loop(), &s->pipe_, 0);
  if (rc < 0) {
    log_msg(LogLevel::err, "accept: uv_pipe_init: %s", uv_strerror(rc));
    delete s;
    return nullptr;
  }
  s->pipe_.data = s;
  rc = uv_accept(listener, reinterpret_cast<uv_stream_t*>(&s->pipe_));
  if (rc < 0) {
    log_msg(LogLevel::warning, "accept: %s", uv_strerror(rc));
    s->handle_closed_ = false;
    s->closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&s->pipe_),
             [](uv_handle_t* h) noexcept { delete static_cast<Session*>(h->data); });
    return nullptr;
  }
  uv_os_fd_t fd = -1;
  uv_fileno(reinterpret_cast<uv_handle_t*>(&s->pipe_), &fd);
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    log_msg(LogLevel::warning, "accept: SO_PEERCRED: %s; refusing connection", strerror(errno));
    s->closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&s->pipe_),
             [](uv_handle_t* h) noexcept { delete static_cast<Session*>(h->data); });
    return nullptr;
  }
  s->peer_.pid = static_cast<uint32_t>(cred.pid);
  s->peer_.uid = cred.uid;
  s->peer_.gid = cred.gid;
  s->peer_.comm = read_comm(cred.pid);
  s->cap_ = server.config().limits.max_frame + proto::kFrameHeaderSize + kReadSlack;
  s->rbuf_ = std::make_unique<uint8_t[]>(s->cap_);
  return s;
}

void Session::start() { update_reading(); }

void Session::refuse(proto::ErrorCode code, const std::string& message) {
  reply_error(0, code, message);
  fatal_input_ = true;  // read nothing from this peer
  flush_replies();
  close_after_flush();
}

void Session::force_drained() {
  if (!draining_) return;
  budget_end_ = consumed_total_;
  drained_ = true;  // the server resets its own count
}

// ---- reading ----

void Session::update_reading() {
  if (closing_) return;
  const auto& cfg = server_.config();
  bool want = !peer_eof_ && !fatal_input_ && !close_after_flush_ &&
              slots_.size() < cfg.max_inflight && out_.size() < kMaxUnsentBytes &&
              !waiting_writer_;
  if (want == reading_) return;
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
}

void Session::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept {
  auto* s = static_cast<Session*>(h->data);
  // Hand libuv our own buffer's free space (never a fresh allocation per read).
  if (s->start_ > 0 && (s->start_ == s->end_ || s->cap_ - s->end_ < s->cap_ / 4)) {
    std::memmove(s->rbuf_.get(), s->rbuf_.get() + s->start_, s->end_ - s->start_);
    s->end_ -= s->start_;
    s->start_ = 0;
  }
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
      s->peer_eof_ = true;
      s->close_after_flush_ = true;
      s->process_input();
    } else {
      log_msg(LogLevel::info, "pid %u: read: %s; closing", s->peer_.pid, uv_strerror(static_cast<int>(nread)));
      s->mark_drained();
      s->close();
    }
    return;
  }
  s->end_ += static_cast<size_t>(nread);
  s->process_input();
}

void Session::process_input() {
  if (closing_) return;
  const uint32_t max_frame = server_.config().limits.max_frame;
  while (!fatal_input_ && !waiting_writer_ && slots_.size() < server_.config().max_inflight) {
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
      fatal_input_ = true;
      start_ = end_;
      mark_drained();
      close_after_flush();
      break;
    }
    bool in_budget = !draining_ || consumed_total_ < budget_end_;
    start_ += fv.consumed;
    consumed_total_ += fv.consumed;
    if (in_budget) {
      handle_frame(fv.payload);
    } else {
      // Arrived after SIGTERM: not accepted. Say so, with the id if we can read it.
      uint64_t id = 0;
      auto d = proto::Decoded::parse(fv.payload, kMaxRequestDepth);
      if (d) {
        auto r = proto::request_from(d.value());
        id = r ? r.value().id : r.error().id;
      }
      reply_error(id, proto::ErrorCode::shutting_down,
                  "cairnd is shutting down; reconnect and resend");
    }
  }
  if (!staged_.empty()) {
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
    if (server_.writer().over_limit()) {
      waiting_writer_ = true;
      server_.wait_for_writer(this);
    }
  }
  // Only after our appends are queued: the last drained session starts the writer's
  // final commit, which must include them.
  if (draining_ && input_exhausted()) mark_drained();
  flush_replies();
  update_reading();
  maybe_finish();
}

// ---- requests ----

uint64_t Session::new_slot() {
  slots_.emplace_back();
  return first_slot_ + slots_.size() - 1;
}

void Session::fill(uint64_t slot, std::string&& frame) {
  auto& s = slots_[slot - first_slot_];
  s.frame = std::move(frame);
  s.ready = true;
}

void Session::reply_error(uint64_t id, proto::ErrorCode code, std::string_view message,
                          std::string_view field, std::string_view rule) {
  std::string f;
  proto::encode_error(f, id, code, message, field, rule);
  fill(new_slot(), std::move(f));
}

bool Session::may_query() const { return server_.may_query(peer_.uid, peer_.gid); }

void Session::handle_frame(std::span<const uint8_t> payload) {
  auto decoded = proto::Decoded::parse(payload, kMaxRequestDepth);
  if (!decoded) {
    reply_error(0, proto::ErrorCode::malformed, decoded.error());
    return;
  }
  auto r = proto::request_from(decoded.value());
  if (!r) {
    const auto& e = r.error();
    reply_error(e.id, e.code, e.message, e.field);
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
      handle_append(req, new_slot());
      return;
    case proto::Op::flush: {
      WriteRequest w;
      w.kind = WriteRequest::Kind::barrier;
      w.session = this;
      w.slot = new_slot();
      w.id = req.id;
      ++outstanding_;
      staged_.push_back(std::move(w));
      return;
    }
    case proto::Op::query:
    case proto::Op::stats:
    case proto::Op::verify: {
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
          reply_error(req.id, proto::ErrorCode::invalid_field, q.error().message,
                      q.error().field, q.error().rule);
          return;
        }
        rr.spec = std::move(q.value());
      }
      rr.session = this;
      rr.slot = new_slot();
      rr.id = req.id;
      ++outstanding_;
      server_.reader().submit(std::move(rr));
      return;
    }
  }
  reply_error(req.id, proto::ErrorCode::internal, "unhandled op");
  return;
}

void Session::handle_append(const proto::Request& req, uint64_t slot) {
  auto fail = [&](proto::ErrorCode code, std::string_view msg, std::string_view field = {},
                  std::string_view rule = {}) {
    std::string f;
    proto::encode_error(f, req.id, code, msg, field, rule);
    fill(slot, std::move(f));
  };
  const msgpack_object* ev = proto::map_get(*req.map, "event");
  if (ev == nullptr) {
    fail(proto::ErrorCode::invalid_field, "event: required", "event", "required");
    return;
  }
  auto e = proto::event_from_msgpack(*ev, server_.config().limits);
  if (!e) {
    const auto& v = e.error();
    fail(proto::ErrorCode::invalid_field, v.message, v.field, v.rule);
    return;
  }
  WriteRequest w;
  w.kind = WriteRequest::Kind::append;
  w.session = this;
  w.slot = slot;
  w.id = req.id;
  w.event = std::move(e.value());
  w.trusted = peer_;
  w.trusted.received = realtime_ns();
  const FlushPolicy& policy = server_.writer().policy();
  w.durable_ack = policy.waits_for_commit(w.event);
  bool urgent = policy.urgent(w.event);
  w.body = proto::event_canonical_body(w.event, w.trusted);
  // The store needs only the indexed columns beside the body; the message and fields
  // live on in the body. Freed now, not after the request has waited in the queue.
  w.event.message.reset();
  std::string().swap(w.event.fields);
  ++outstanding_;
  staged_.push_back(std::move(w));
  if (urgent) staged_urgent_ = staged_.size();
}

// ---- completions ----

void Session::release() {
  --outstanding_;
  if (handle_closed_ && outstanding_ == 0) delete this;
}

void Session::complete_write(const WriteResult& res) {
  if (!closing_) {
    std::string out;
    if (!res.ok) {
      proto::encode_error(out, res.id, res.error,
                          res.error == proto::ErrorCode::storage_failed
                              ? "the write failed and was rolled back; nothing was stored"
                              : "request failed");
    } else if (res.barrier) {
      proto::encode_flush_reply(out, res.id, res.seq);
    } else {
      proto::encode_ack(out, res.id, res.seq, res.durable, res.duplicate);
    }
    fill(res.slot, std::move(out));
    // Frames held back by max_inflight may be waiting in the buffer: serve them now,
    // the client may be blocked waiting for this very reply.
    process_input();
  }
  release();
}

void Session::complete_read(ReadResult& res) {
  if (!closing_) {
    std::string out;
    if (!res.ok) {
      proto::encode_error(out, res.id, proto::ErrorCode::storage_failed,
                          "reading the store failed: " + res.error);
    } else {
      if (res.kind == ReadRequest::Kind::stats) {
        proto::Stats st;
        st.events = res.info.events;
        st.by_type = std::move(res.info.by_type);
        st.db_bytes = res.info.db_bytes;
        server_.fill_stats(st);
        proto::encode_stats_reply(out, res.id, st);
      } else {
        out = std::move(res.frame);
      }
    }
    fill(res.slot, std::move(out));
    // Frames held back by max_inflight may be waiting in the buffer: serve them now,
    // the client may be blocked waiting for this very reply.
    process_input();
  }
  release();
}

// ---- writing ----

void Session::flush_replies() {
  while (!slots_.empty() && slots_.front().ready) {
    if (out_.empty()) out_.swap(slots_.front().frame);  // a query page: no copy
    else out_ += slots_.front().frame;
    slots_.pop_front();
    ++first_slot_;
  }
  start_write();
}

void Session::start_write() {
  if (write_in_flight_ || out_.empty() || closing_) return;
  writing_.swap(out_);
  out_.clear();
  uv_buf_t buf = uv_buf_init(writing_.data(), static_cast<unsigned>(writing_.size()));
  write_req_.data = this;
  int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&pipe_), &buf, 1,
                    &Session::on_write);
  if (rc < 0) {
    log_msg(LogLevel::info, "pid %u: write: %s; closing", peer_.pid, uv_strerror(rc));
    writing_.clear();
    close();
    return;
  }
  write_in_flight_ = true;
}

void Session::on_write(uv_write_t* req, int status) noexcept {
  auto* s = static_cast<Session*>(req->data);
  s->write_in_flight_ = false;
  s->writing_.clear();
  if (status < 0) {
    if (status != UV_ECANCELED)
      log_msg(LogLevel::info, "pid %u: write: %s; closing", s->peer_.pid, uv_strerror(status));
    s->close();
    return;
  }
  s->start_write();
  s->update_reading();
  s->maybe_finish();
}

// ---- lifecycle ----

void Session::resume() {
  waiting_writer_ = false;
  if (closing_) return;
  process_input();  // frames already buffered first, then read more
}

void Session::begin_drain() {
  if (draining_) return;
  draining_ = true;
  int avail = 0;
  uv_os_fd_t fd = -1;
  if (!closing_ && uv_fileno(reinterpret_cast<uv_handle_t*>(&pipe_), &fd) == 0)
    ioctl(fd, FIONREAD, &avail);
  budget_end_ = consumed_total_ + (end_ - start_) + static_cast<uint64_t>(avail < 0 ? 0 : avail);
  if (input_exhausted()) mark_drained();
}

void Session::mark_drained() {
  if (!draining_ || drained_) return;
  drained_ = true;
  server_.session_drained(this);
}

void Session::close_after_flush() {
  close_after_flush_ = true;
  update_reading();
  maybe_finish();
}

bool Session::whole_frame_buffered() const {
  return !fatal_input_ && proto::frame_next({rbuf_.get() + start_, end_ - start_},
                                            server_.config().limits.max_frame)
                                  .status == proto::FrameStatus::complete;
}

// Nothing more will be accepted from this connection: its shutdown budget is used up,
// or it can send no more and has no whole frame left to serve.
bool Session::input_exhausted() const {
  if (closing_ || fatal_input_) return true;
  if (draining_ && consumed_total_ >= budget_end_) return true;
  return peer_eof_ && !whole_frame_buffered();
}

void Session::maybe_finish() {
  if (closing_ || !close_after_flush_) return;
  if (!slots_.empty() || !out_.empty() || write_in_flight_ || !staged_.empty()) return;
  // After EOF, whole frames still buffered (we were paused) are served before closing.
  if (!whole_frame_buffered()) close();
}

void Session::close() {
  if (closing_) return;
  closing_ = true;
  mark_drained();
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&pipe_));
  ++outstanding_;  // the close callback is one more thing in flight
  uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), &Session::on_close);
}

void Session::on_close(uv_handle_t* h) noexcept {
  auto* s = static_cast<Session*>(h->data);
  s->handle_closed_ = true;
  s->server_.session_closed(s);
  s->release();
}

}  // namespace cairn::daemon
