// session_subscribe.cpp — a connection's subscription (PROTOCOL.md §6.8).
//
// Flow: start_subscription (validate, remember the filters) -> submit_subscription_page
// (one page to the Reader, which parks it while nothing is new) ->
// complete_subscription_page (fill its slot; the usual send path writes it) ->
// subscription_written (on_write: the page has left, run the next from its cursor).
//
// Bound: one page in flight per subscription, reserved in the budget like a query (one
// max_frame until answered, then the page's size until written). A subscriber that does
// not read holds that one page and its socket buffer; cairnd asks for nothing more, and
// the idle timeout for unread replies (sweep) closes it if it never reads again. The
// events stay in SQLite: when it reads again, the next page starts at its cursor.
//
// Rule: a connection with a subscription takes no other request. One is answered
// `subscribed` (with its id when readable) and the connection is closed after it.
#include <cstdint>
#include <string>

#include "../protocol/frame.hpp"
#include "log.hpp"
#include "server.hpp"
#include "session.hpp"

namespace cairn::daemon {


void Session::start_subscription(const proto::Request& req) {
  if (!may_query()) {
    reply_error(req.id, proto::ErrorCode::permission_denied,
                "subscribe is not allowed for uid " + std::to_string(peer_.uid) +
                    " (see --query-uids / --query-gids)");
    return;
  }
  auto q = proto::subscribe_from(req, server_.config().limits);
  if (!q) {
    reply_error(req.id, proto::ErrorCode::invalid_field, q.error().message, q.error().field, q.error().rule);
    return;
  }
  sub_.id = req.id;
  sub_.cursor = q.value().after;
  sub_.spec = std::move(q.value());
  submit_subscription_page();
}

void Session::submit_subscription_page() {
  ReadRequest rr;
  rr.kind = ReadRequest::Kind::subscribe;
  rr.session = this;
  rr.slot = new_slot();
  rr.id = sub_.id;
  rr.uid = peer_.uid;
  rr.spec = sub_.spec;
  rr.spec.after = sub_.cursor;
  rr.announce = sub_.state == Subscription::State::none;  // the first page confirms it, even empty
  rr.wait_until_ms = UINT64_MAX;  // parked pages wait for events, never for a clock
  const uint64_t slot = rr.slot;
  // The same reservation as a query (dispatch_read): at most one page per subscription.
  const uint64_t reserve = server_.config().limits.max_frame + proto::kFrameHeaderSize;
  slots_.back().charge = reserve;
  charge(static_cast<int64_t>(reserve), 0);
  ref();
  sub_.state = Subscription::State::running;
  if (!server_.reader().submit(std::move(rr))) {
    unref();  // never queued: no result will come back for it
    sub_.state = Subscription::State::ended;
    std::string f;
    proto::encode_error(f, sub_.id, proto::ErrorCode::overloaded,
                        std::to_string(Reader::kMaxQueued) +
                            " queries and stats are already waiting; the subscription ended: "
                            "subscribe again later with `after` set to your last seq");
    fill(slot, std::move(f));
    close_after_flush();
  }
}

void Session::complete_subscription_page(ReadResult& res) {
  if (state_ != State::closed) {
    std::string out;
    if (sub_.state == Subscription::State::ended) {
      // Cancelled by end_subscription: the slot closes with nothing sent for it.
    } else if (res.cancelled || !res.ok) {
      // Only shutdown cancels the page of a live subscription.
      const std::string resume = sub_.cursor ? " (resume with after=" + std::to_string(*sub_.cursor) + ")" : "";
      if (res.cancelled)
        proto::encode_error(out, res.id, proto::ErrorCode::shutting_down,
                            "cairnd is shutting down; the subscription ended" + resume);
      else
        proto::encode_error(out, res.id, proto::ErrorCode::storage_failed,
                            "reading the store failed: " + res.error + "; the subscription ended" + resume);
      sub_.state = Subscription::State::ended;
    } else {
      out = std::move(res.frame);
      sub_.cursor = res.cursor;
      sub_.state = Subscription::State::writing;
    }
    fill(res.slot, std::move(out));
    if (sub_.state == Subscription::State::ended) close_after_flush();
    read_frames();  // sends it; the next page waits for on_write
  }
  unref();
}

// The page has been written only when nothing is left to send: a subscribing connection
// sends nothing else, so slots_ and out_ empty with no write in flight means the socket
// took it.
void Session::subscription_written() {
  if (sub_.state != Subscription::State::writing || state_ != State::open) return;
  if (!slots_.empty() || !out_.empty() || write_in_flight_) return;
  submit_subscription_page();
}

void Session::refuse_while_subscribed(std::span<const uint8_t> payload) {
  uint64_t id = 0;
  auto d = proto::Decoded::parse(payload, 8);
  if (d) {
    auto r = proto::request_from(d.value());
    id = r ? r.value().id : r.error().id;
  }
  log_msg(LogLevel::info, "pid %u uid %u: a request on a subscribed connection; closing", peer_.pid, peer_.uid);
  reply_error(id, proto::ErrorCode::subscribed,
              "this connection holds subscription id " + std::to_string(sub_.id) +
                  " and takes no other request (use another connection); closing it");
  input_broken();  // ends the subscription (close_after_flush)
}

void Session::end_subscription() {
  if (sub_.state == Subscription::State::none || sub_.state == Subscription::State::ended) return;
  bool at_reader = sub_.state == Subscription::State::running;
  sub_.state = Subscription::State::ended;
  // Its page comes back cancelled (through the mailbox) and closes its slot empty. A
  // subscribing connection has no other read in flight to cancel with it.
  if (at_reader) server_.reader().cancel_session(this);
}

}  // namespace cairn::daemon
