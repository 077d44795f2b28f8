// reader_subscribe.cpp — one page of a subscription (PROTOCOL.md §6.8), on a query thread.
//
// A subscription is an oldest-first query that never ends: each page starts at the
// cursor the last one returned. Nothing is kept per subscriber but that cursor (in its
// Session) and the one page in flight: the events themselves are read from SQLite, so
// a subscriber that stops reading falls behind and catches up by cursor, and never
// costs the daemon more memory than one page.
//
// Durability: a page reads committed rows only. In WAL mode with synchronous=FULL a
// commit becomes visible to other connections only after its WAL frames were fsynced,
// so a subscriber never sees an event that a crash could take back.
#include "reader.hpp"

#include <algorithm>

namespace cairn::daemon {

std::optional<std::string> Reader::subscription_page(size_t& reply_hint, const ReadRequest& req,
                                                     ReadResult& res, store::Store& store,
                                                     store::QueryEngine& engine) {
  store.map_reads(mmap_bytes_);
  // The newest seq now, read before the page: every event up to it is committed, so the
  // page (a later snapshot) walks it. A page that reaches the end moves the cursor
  // there even when nothing matched, so a filter that matches little does not walk the
  // same rows again at every commit.
  proto::QuerySpec newest;
  newest.limit = 1;
  uint64_t top = 0;
  auto h = engine.page(newest, [&](uint64_t seq, std::string_view, std::string_view) {
    top = seq;
    return true;
  });
  if (!h) return h.error().message;
  proto::QuerySpec spec = req.spec;
  spec.oldest_first = true;
  if (!spec.after) spec.after = top;  // no `after`: only events stored from now on
  const uint64_t from = *spec.after;

  // Encoded straight into the frame the session sends, reserved as a query page is
  // (reader.cpp's Worker::reply_hint).
  std::string& buf = res.frame;
  buf.clear();
  buf.reserve(std::min<size_t>(reply_hint + reply_hint / 8, size_t{max_reply_} + 64));
  proto::QueryReplyBuilder reply(buf, req.id);
  uint64_t last = from;
  auto end = engine.page(spec, [&](uint64_t seq, std::string_view hash, std::string_view body) {
    if (reply.count() > 0 && !reply.fits(body.size(), max_reply_)) return false;
    reply.add(seq, hash, body);
    last = seq;
    return true;
  });
  if (!end) return end.error().message;
  // `next` is always set on a subscription page: the walk stopped early (more is there),
  // or it reached the end (past `top` at least, and past every event it sent).
  const uint64_t cursor = end.value().next ? std::max(*end.value().next, last) : std::max(last, top);
  const uint64_t scanned = end.value().scanned;
  reply.finish(cursor, reply.room_for_scanned(max_reply_) ? scanned : 0);
  reply_hint = buf.size();
  if (buf.capacity() > buf.size() + buf.size() / 4 + 4096) buf.shrink_to_fit();
  res.ok = true;
  res.cursor = cursor;
  if (reply.count() == 0 && !end.value().next && !req.announce) {
    // Nothing new: parked (on_mail) until an event past the cursor is acked. The empty
    // page stays its answer should the daemon stop meanwhile.
    ReadRequest again = req;
    again.spec.after = cursor;
    res.park = std::move(again);
  }
  return std::nullopt;
}

// In immediate mode an ack follows its commit, so a page whose cursor is below the newest
// ack but found nothing ran on a snapshot taken before that commit: events_committed()
// found it running, not parked, and would not wake it. Run it again at once instead of
// up to 25 ms later (the tick). Only once: in batched mode an ack may precede its commit,
// and the tick (not a loop of reruns) covers that.
bool Reader::missed_ack(ReadRequest& req) const {
  if (req.rechecked || req.spec.after.value_or(0) >= acked_seq_) return false;
  req.rechecked = true;
  return true;
}

}  // namespace cairn::daemon
