// session.hpp — one client connection: read frames, validate, hand appends to the
// writer and queries to the readers, send replies in request order.
//
// Glossary:
//   slot      every request gets the next slot number; its reply goes out only after the
//             replies of all earlier slots, so acks keep request order even though
//             queries and appends complete on different threads.
//   budget    on SIGTERM, the bytes this connection had already delivered to us (our
//             buffer + the kernel's, FIONREAD). Frames starting inside the budget are
//             served normally; later frames are answered `shutting_down`.
//   paused    we stopped reading because this connection has max_inflight requests
//             open, its unsent replies pile up, or the writer queue is full.
//
// Ownership: the Server creates sessions and keeps them on its list. A session frees
// itself once its pipe is closed AND no writer/reader request of it is in flight
// (outstanding_ == 0), so a WriteResult never points at freed memory.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "../protocol/event.hpp"
#include "../protocol/message.hpp"
#include "reader.hpp"
#include "writer.hpp"

namespace cairn::daemon {

class Server;

class Session {
 public:
  // Accepts one connection from `listener`. Returns nullptr (and logs) on failure.
  static Session* accept(Server& server, uv_stream_t* listener);

  // Starts reading requests.
  void start();
  // Answers one error frame (id 0) and closes: used for connection limits.
  void refuse(proto::ErrorCode code, const std::string& message);

  void complete_write(const WriteResult& res);
  void complete_read(ReadResult& res);

  // Shutdown steps, driven by the Server.
  void begin_drain();
  bool drained() const { return drained_; }
  void force_drained();  // drain deadline passed: stop waiting for this budget
  void close_after_flush();  // after the final acks: close once all is written
  void close();              // now

  // Backpressure from the writer queue has eased.
  void resume();

  const proto::Trusted& peer() const { return peer_; }
  bool closed() const { return closing_; }

  // Intrusive list links, owned by the Server.
  Session* prev_ = nullptr;
  Session* next_ = nullptr;

 private:
  struct Slot {
    bool ready = false;
    std::string frame;  // the encoded reply once ready
  };

  explicit Session(Server& server);
  ~Session() = default;

  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_write(uv_write_t* req, int status) noexcept;
  static void on_close(uv_handle_t* h) noexcept;

  void process_input();
  void handle_frame(std::span<const uint8_t> payload);
  void handle_append(const proto::Request& req, uint64_t slot);
  uint64_t new_slot();
  void fill(uint64_t slot, std::string&& frame);
  void reply_error(uint64_t id, proto::ErrorCode code, std::string_view message,
                   std::string_view field = {}, std::string_view rule = {});
  void flush_replies();
  void start_write();
  void update_reading();
  void mark_drained();
  bool whole_frame_buffered() const;
  bool input_exhausted() const;
  void maybe_finish();
  void release();  // one writer/reader request of ours has completed
  bool may_query() const;

  Server& server_;
  uv_pipe_t pipe_{};
  proto::Trusted peer_;

  // Read buffer: [start_, end_) holds unparsed bytes.
  std::unique_ptr<uint8_t[]> rbuf_;
  size_t cap_ = 0, start_ = 0, end_ = 0;
  uint64_t consumed_total_ = 0;  // bytes of frames handled since connect

  std::deque<Slot> slots_;
  uint64_t first_slot_ = 0;  // slot number of slots_.front()
  std::vector<WriteRequest> staged_;  // appends for the writer, submitted per read
  size_t staged_urgent_ = 0;          // staged_[0, this) ends with an event that forces a commit

  std::string out_;      // replies waiting for the current write to finish
  std::string writing_;  // bytes owned by the in-flight uv_write
  uv_write_t write_req_{};
  bool write_in_flight_ = false;

  uint32_t outstanding_ = 0;  // writer/reader requests in flight
  bool reading_ = false;
  bool waiting_writer_ = false;  // paused on the writer queue, on the server's list
  bool peer_eof_ = false;
  bool fatal_input_ = false;     // broken frame boundary: answer, then close
  bool closing_ = false;
  bool handle_closed_ = false;
  bool close_after_flush_ = false;
  bool draining_ = false;
  bool drained_ = false;
  uint64_t budget_end_ = 0;
};

}  // namespace cairn::daemon
