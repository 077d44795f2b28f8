// session.hpp — one client connection: read frames, validate, hand appends to the
// writer and reads to the query threads, send the replies in request order.
//
// The ack path, one named step each (session.cpp follows this order):
//   accept    Session::accept: peer credentials, read buffer (the Server links it).
//   read      on_read -> read_frames: cut whole frames out of the buffer; during a drain
//             only frames inside the budget are admitted (admit_frame).
//   validate  dispatch: decode the request and check it (request_from, event_from_msgpack);
//             a bad request is answered in its slot and costs nothing else.
//   enqueue   stage_append collects this read's appends; submit_staged hands them to the
//             writer (urgent ones ahead of its queue). Reads go to the Reader.
//   commit    the writer thread (writer.hpp): insert, commit, fsync.
//   ack       complete_write / complete_read -> fill(slot) -> send_replies: replies leave
//             in slot order, whatever order the threads finished in.
//
// Glossary:
//   slot      every request gets the next slot number; its reply goes out only after the
//             replies of all earlier slots, so acks keep request order even though
//             queries and appends complete on different threads.
//   budget    on SIGTERM, the bytes this connection had already delivered to us (our
//             buffer + the kernel's, FIONREAD). Frames starting inside the budget are
//             served normally; later frames are answered `shutting_down`.
//   paused    we stopped reading because this connection has max_inflight requests
//             open, its budget is used up, or the writer queue is full.
//   held      the connection's budget in use (peer_limits.hpp): what each open slot
//             holds (an append's cost until acked, max_frame reserved for a read until
//             answered, then the reply's size) plus replies not yet written. Charged to
//             the Server's books per uid; released at the last unref at the latest.
//   state     open -> draining -> closing -> closed (State below); it only moves forward.
//   subscription  a `subscribe` request (PROTOCOL.md §6.8, session_subscribe.cpp): its
//             pages are sent one at a time, the next asked of the Reader only once the
//             last was written; the connection takes no other request meanwhile.
//   refs      what keeps the memory alive: the libuv handle until its close callback,
//             and each writer/reader request in flight. unref() frees at zero, so a
//             WriteResult or ReadResult never points at freed memory.
//
// Ownership: the Server creates sessions and keeps them on its list until on_close; the
// session frees itself (unref) once the list has let go and nothing is in flight.
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
  enum class State : uint8_t {
    open,      // reading and answering requests
    draining,  // SIGTERM: serving frames inside the budget, refusing later ones
    closing,   // reading no more requests (peer EOF, broken framing, refused, final acks
               // sent): closes once every reply is written
    closed,    // uv_close issued; freed by unref() once nothing is in flight
  };

  // accept: one connection from `listener`. Returns nullptr (and logs) on failure.
  static Session* accept(Server& server, uv_stream_t* listener);

  // Starts reading requests.
  void start();
  // Answers one error frame (id 0) and closes: used for connection limits.
  void refuse(proto::ErrorCode code, const std::string& message);

  // ack: results from the writer and the query threads (loop thread).
  void complete_write(const WriteResult& res);
  void complete_read(ReadResult& res);

  // Shutdown steps, driven by the Server.
  void begin_drain();
  bool drained() const { return drain_reported_; }
  void force_drained();      // drain deadline passed: stop waiting for this budget
  void close_after_flush();  // after the final acks: close once all is written
  void close();              // now

  // Backpressure from the writer queue has eased (or the writer is gone).
  void resume();
  // Bytes were released by this uid or the daemon: read again if the budget allows.
  void resume_budget();
  // The disk guard stopped pushing back (disk_guard.hpp): read the held append again.
  void resume_disk();
  // Periodic (Server's sweep timer): closes an idle connection, one stuck mid-frame, or
  // one that does not read its replies (peer_limits.hpp); shrinks an idle read buffer.
  void sweep(uint64_t now_ms);

  const proto::Trusted& peer() const { return peer_; }
  uint64_t serial() const { return serial_; }
  State state() const { return state_; }
  bool closed() const { return state_ == State::closed; }
  bool refused() const { return refused_; }  // refuse() was called: holds no place

  // Intrusive list links, owned by the Server.
  Session* prev_ = nullptr;
  Session* next_ = nullptr;

 private:
  struct Slot {
    bool ready = false;
    std::string frame;        // the encoded reply once ready
    uint64_t charge = 0;      // bytes of the budget this slot holds (see `held`)
    uint64_t write_charge = 0;  // of which: an append queued for the writer
  };

  explicit Session(Server& server);
  ~Session() = default;

  // Transport (libuv callbacks).
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_write(uv_write_t* req, int status) noexcept;
  static void on_close(uv_handle_t* h) noexcept;

  // The ack path, in order.
  void read_frames();
  bool admit_frame(std::span<const uint8_t> payload);
  void dispatch(std::span<const uint8_t> payload);
  void dispatch_read(const proto::Request& req);
  void stage_append(const proto::Request& req, uint64_t slot);
  void submit_staged();
  void fill(uint64_t slot, std::string&& frame);
  void send_replies();

  uint64_t new_slot();
  void reply_error(uint64_t id, proto::ErrorCode code, std::string_view message,
                   std::string_view field = {}, std::string_view rule = {});
  void start_write();
  void update_reading();
  void input_broken();  // framing lost: discard input, answer what is pending, close
  void report_drained();
  bool whole_frame_buffered() const;
  bool try_write_now();
  bool input_exhausted() const;
  void maybe_finish();
  void charge(int64_t held_delta, int64_t write_delta);
  bool may_dispatch();  // budget and in-flight limits allow one more request
  bool writer_has_room(size_t payload);  // else waits for the writer (issue 11 item 9)
  bool held_for_disk(std::span<const uint8_t> payload);  // pushback: leave it unread
  void note_partial();  // starts or stops the slow-frame clock

  // Subscription (session_subscribe.cpp).
  void start_subscription(const proto::Request& req);
  void submit_subscription_page();
  void complete_subscription_page(ReadResult& res);
  void subscription_written();  // on_write: the last page is out, run the next
  void refuse_while_subscribed(std::span<const uint8_t> payload);
  void end_subscription();  // no more pages; the one at the Reader is cancelled
  void grow_read_buffer();
  bool may_query() const;
  bool accepting_input() const { return state_ == State::open || state_ == State::draining; }

  // The one place that decides the delete.
  void ref() { ++refs_; }
  void unref();

  Server& server_;
  uv_pipe_t pipe_{};
  proto::Trusted peer_;
  uint64_t serial_ = 0;  // unique for the daemon's life (writer tracks connections by it)
  State state_ = State::open;
  uint32_t refs_ = 1;  // the handle, released in on_close

  // Read buffer: [start_, end_) holds unparsed bytes. It starts small and grows to hold
  // the frame being read (at most cap_max_), so an idle connection costs little.
  std::unique_ptr<uint8_t[]> rbuf_;
  size_t cap_ = 0, start_ = 0, end_ = 0;
  size_t cap_max_ = 0;
  uint64_t consumed_total_ = 0;  // bytes of frames handled since connect
  static constexpr uint64_t kNoBudget = UINT64_MAX;  // not draining: every frame is served
  uint64_t budget_end_ = kNoBudget;  // draining: frames starting before this are served
  bool drain_reported_ = false;  // the Server has counted us as drained

  std::deque<Slot> slots_;
  uint64_t first_slot_ = 0;  // slot number of slots_.front()
  std::vector<WriteRequest> staged_;  // appends for the writer, submitted per read
  size_t staged_urgent_ = 0;          // staged_[0, this) ends with an event that forces a commit
  uint64_t staged_cost_ = 0;          // the writer queue's measure of staged_ (WriteRequest::cost)

  std::string out_;      // replies waiting for the current write to finish
  std::string writing_;  // bytes owned by the in-flight uv_write
  uv_write_t write_req_{};
  bool write_in_flight_ = false;

  bool refused_ = false;
  bool reading_ = false;           // uv_read_start is active
  bool paused_on_writer_ = false;  // on the server's list until the writer queue drains
  bool paused_on_disk_ = false;    // on the disk guard's list until there is space

  // Budget (peer_limits.hpp) and timeouts (uv_now milliseconds).
  uint64_t held_ = 0;
  uint64_t write_held_ = 0;
  size_t request_bytes_ = 0;  // payload size of the request being dispatched
  uint64_t last_active_ms_ = 0;    // last byte read or reply written
  uint64_t partial_since_ms_ = 0;  // reading, with an incomplete frame buffered; 0: not
  uint64_t write_since_ms_ = 0;    // the in-flight write began (or last progressed)

  // At most one per connection; it lives until the connection closes.
  struct Subscription {
    enum class State : uint8_t {
      none,     // no subscribe on this connection
      running,  // a page is at the Reader (queued, running or parked)
      writing,  // the last page is filled: the next runs once it has been written
      ended,    // no more pages (an error was sent, or the connection is closing)
    };
    State state = State::none;
    uint64_t id = 0;                // the subscribe request's id, on every page
    proto::QuerySpec spec;          // its filters
    std::optional<uint64_t> cursor; // the last page's `next` (none yet: the head)
  };
  Subscription sub_;
};

}  // namespace cairn::daemon
