// fuzz_protocol.cpp — the daemon's request path without the daemon: frame decoder ->
// msgpack prescan -> Decoded::parse -> request_from -> hello/query/event validation ->
// canonical body -> the error reply a session would send.
//
// The input is a byte stream as a connection would deliver it (frames back to back);
// it is split exactly as Session::process_input splits it. Besides "no sanitizer
// report", each step checks a promise the rest of the code relies on:
//   - a complete frame is exactly 4 + N bytes inside the buffer;
//   - whatever msgpack_prescan accepts, msgpack-c unpacks as one object ending at the
//     last byte (the prescan is the guard against hostile counts, so it must not let
//     through anything the unpacker reads differently);
//   - every Violation and RequestError is safe to echo: field and message pass the
//     text rules (UTF-8, no controls), since they go back to the client verbatim;
//   - the error reply we would send is itself a well-formed reply naming that error;
//   - an accepted event re-encoded (as libcairn would send it) validates again to the
//     very same canonical body (validation is idempotent, canonical means canonical);
//   - check_text agrees with an independent byte-at-a-time reading of the rules (its
//     word-at-a-time fast path must not skip a byte that needs a look).
#include <cstddef>
#include <cstdint>
#include <string>

#include "../../client/cli/utf8.hpp"
#include "../../protocol/frame.hpp"
#include "../../protocol/message.hpp"
#include "fuzz_check.hpp"

using namespace cairn;
using namespace cairn::proto;
using cairn::fuzz::bytes_of;
using cairn::fuzz::view_of;

namespace {

constexpr uint32_t kRequestDepth = 8;  // what the daemon passes (session.cpp)

// The text rules of PROTOCOL.md §3, one code point at a time, written from the document
// rather than from text.cpp.
bool text_ok_reference(std::string_view s, uint32_t max_bytes, bool newlines) {
  if (s.size() > max_bytes) return false;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    size_t n = cli::utf8_decode(s.substr(i), cp);
    if (n == 0) return false;
    bool control = cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
    if (control && !(cp == '\t' || (newlines && (cp == '\n' || cp == '\r')))) return false;
    if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff)
      return false;
    i += n;
  }
  return true;
}

void check_text_agrees(std::string_view s) {
  for (bool nl : {false, true}) {
    bool fast = !check_text(s, 1u << 20, nl).has_value();
    FUZZ_CHECK(fast == text_ok_reference(s, 1u << 20, nl),
               "check_text and the reference reading of the text rules disagree");
  }
}

// A field name or message that goes back to the client must itself be clean text.
void check_echo_safe(std::string_view field, std::string_view message) {
  FUZZ_CHECK(!check_text(field, 1u << 20, false).has_value(),
             "a refusal names its field with bytes that break the text rules");
  FUZZ_CHECK(!check_text(message, 1u << 20, true).has_value(),
             "a refusal message carries bytes that break the text rules");
}

// The error reply the session sends for a refusal: one frame, and it reads back.
void check_error_reply(uint64_t id, ErrorCode code, const std::string& message,
                       const std::string& field, const std::string& rule) {
  std::string f;
  encode_error(f, id, code, message, field, rule);
  auto fv = frame_next(bytes_of(f), kMaxFrameCeiling);
  FUZZ_CHECK(fv.status == FrameStatus::complete && fv.consumed == f.size(),
             "an error reply is not exactly one frame");
  auto d = Decoded::parse(fv.payload, 16);
  FUZZ_CHECK(d.ok(), "an error reply does not parse");
  auto r = reply_from(d.value());
  FUZZ_CHECK(r.ok() && !r.value().ok && r.value().id == id, "an error reply lost its id or ok");
  // The encoder cuts a long message or field on a UTF-8 boundary and marks the cut with
  // "..." (kMaxErrorMessage, kMaxErrorField: a reply stays small whatever the request
  // held); what reads back is then the start of what was sent and the mark, nothing else.
  auto same_or_cut = [](const std::string& got, const std::string& sent, size_t max) {
    if (sent.size() <= max) return got == sent;
    if (got.size() > max || got.size() < 3 || got.compare(got.size() - 3, 3, "...") != 0) return false;
    size_t kept = got.size() - 3;
    return kept + 3 + 4 > max && sent.compare(0, kept, got, 0, kept) == 0;
  };
  FUZZ_CHECK(r.value().error == code && same_or_cut(r.value().message, message, kMaxErrorMessage) &&
                 same_or_cut(r.value().field, field, kMaxErrorField) && r.value().rule == rule,
             "an error reply does not read back as the error sent");
}

// Re-encodes an accepted event the way libcairn sends one and validates it again.
void check_event_idempotent(const Event& ev, const Limits& limits) {
  Trusted t{1234567890123456789, 42, 1000, 1000, "fuzz"};
  std::string body = event_canonical_body(ev, t);
  FUZZ_CHECK(!msgpack_prescan(bytes_of(body), limits.max_depth + 2).has_value(),
             "a canonical body is not one well-formed msgpack object");
  EventView v;
  v.type = ev.type;
  v.severity = ev.severity;
  if (ev.actor) v.actor = *ev.actor;
  if (ev.action) v.action = *ev.action;
  if (ev.target) v.target = *ev.target;
  if (ev.message) v.message = *ev.message;
  v.outcome = ev.outcome;
  v.time = ev.time;
  v.fields = ev.fields;
  v.sync = ev.sync;
  v.idem = ev.idem;
  std::string frame;
  encode_append(frame, 1, v);
  auto fv = frame_next(bytes_of(frame), kMaxFrameCeiling);
  FUZZ_CHECK(fv.status == FrameStatus::complete, "a re-encoded append is not one frame");
  auto d = Decoded::parse(fv.payload, kRequestDepth);
  FUZZ_CHECK(d.ok(), "a re-encoded accepted event does not parse");
  auto req = request_from(d.value());
  FUZZ_CHECK(req.ok() && req.value().op == Op::append, "a re-encoded append is not an append");
  const msgpack_object* em = map_get(*req.value().map, "event");
  FUZZ_CHECK(em != nullptr, "a re-encoded append has no event");
  auto again = event_from_msgpack(*em, limits);
  FUZZ_CHECK(again.ok(), "an accepted event is refused when sent again");
  FUZZ_CHECK(event_canonical_body(again.value(), t) == body,
             "an accepted event sent again gives a different canonical body");
  FUZZ_CHECK(again.value().sync == ev.sync, "sync changed on the way round");
}

void handle_payload(std::span<const uint8_t> payload, const Limits& limits) {
  auto pre = msgpack_prescan(payload, kRequestDepth);
  if (!pre) {
    // The prescan vouches for the bytes: msgpack-c must read exactly one object.
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    auto rc = msgpack_unpack_next(&u, reinterpret_cast<const char*>(payload.data()),
                                  payload.size(), &off);
    FUZZ_CHECK(rc == MSGPACK_UNPACK_SUCCESS && off == payload.size(),
               "msgpack_prescan accepted bytes msgpack-c does not read as one object");
    msgpack_unpacked_destroy(&u);
  } else {
    check_echo_safe("", *pre);
  }
  auto d = Decoded::parse(payload, kRequestDepth);
  if (!d) {
    FUZZ_CHECK(pre.has_value() || d.error() == "payload is not a map",
               "Decoded::parse refused bytes the prescan accepted for another reason than type");
    check_echo_safe("", d.error());
    check_error_reply(0, ErrorCode::malformed, d.error(), "", "");
    return;
  }
  auto r = request_from(d.value());
  if (!r) {
    const RequestError& e = r.error();
    check_echo_safe(e.field, e.message);
    check_error_reply(e.id, e.code, e.message, e.field, "");
    return;
  }
  const Request& req = r.value();
  switch (req.op) {
    case Op::hello: {
      auto h = hello_from(req);
      if (!h) {
        check_echo_safe(h.error().field, h.error().message);
        check_error_reply(req.id, ErrorCode::invalid_field, h.error().message, h.error().field,
                          h.error().rule);
      }
      break;
    }
    case Op::query: {
      auto q = query_from(req, limits);
      if (!q) {
        check_echo_safe(q.error().field, q.error().message);
      } else {
        // What the client would send for this spec must read back as the same spec.
        std::string f;
        encode_query(f, req.id, q.value());
        auto fv = frame_next(bytes_of(f), kMaxFrameCeiling);
        auto d2 = Decoded::parse(fv.payload, kRequestDepth);
        FUZZ_CHECK(d2.ok(), "a re-encoded query does not parse");
        auto r2 = request_from(d2.value());
        FUZZ_CHECK(r2.ok(), "a re-encoded query is not a request");
        auto q2 = query_from(r2.value(), limits);
        FUZZ_CHECK(q2.ok(), "an accepted query is refused when sent again");
        const QuerySpec &a = q.value(), &b = q2.value();
        FUZZ_CHECK(a.type == b.type && a.actor == b.actor && a.since == b.since &&
                       a.until == b.until && a.severity == b.severity && a.limit == b.limit &&
                       a.after == b.after,
                   "an accepted query sent again reads as a different query");
      }
      break;
    }
    case Op::append: {
      const msgpack_object* em = map_get(*req.map, "event");
      if (em == nullptr) break;
      auto ev = event_from_msgpack(*em, limits);
      if (!ev) {
        const Violation& v = ev.error();
        check_echo_safe(v.field, v.message);
        FUZZ_CHECK(!v.rule.empty(), "a refused event names no rule");
        check_error_reply(req.id, ErrorCode::invalid_field, v.message, v.field, v.rule);
      } else {
        check_event_idempotent(ev.value(), limits);
      }
      break;
    }
    default:
      break;
  }
  // Every string anywhere in the request goes through the same text rules.
  const msgpack_object& m = d.value().root();
  for (uint32_t i = 0; i < m.via.map.size; ++i) {
    const auto& kv = m.via.map.ptr[i];
    if (kv.val.type == MSGPACK_OBJECT_STR) check_text_agrees({kv.val.via.str.ptr, kv.val.via.str.size});
    if (kv.val.type == MSGPACK_OBJECT_MAP)
      for (uint32_t k = 0; k < kv.val.via.map.size; ++k) {
        const auto& e = kv.val.via.map.ptr[k];
        if (e.val.type == MSGPACK_OBJECT_STR) check_text_agrees({e.val.via.str.ptr, e.val.via.str.size});
        if (e.key.type == MSGPACK_OBJECT_STR) check_text_agrees({e.key.via.str.ptr, e.key.via.str.size});
      }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first byte picks the limits, so small max_frame/max_string/max_fields/max_depth
  // (configurable in cairnd) are explored too; the rest is the connection's byte stream.
  if (size < 1) return 0;
  Limits limits;
  uint8_t knob = data[0];
  if (knob & 1) limits.max_string = 16;
  if (knob & 2) limits.max_fields = 3;
  if (knob & 4) limits.max_depth = 1 + ((knob >> 4) & 3);
  if (knob & 8) limits.max_frame = 64;
  std::span<const uint8_t> stream(data + 1, size - 1);
  check_text_agrees(view_of(stream));
  while (!stream.empty()) {
    auto fv = frame_next(stream, limits.max_frame);
    if (fv.status == FrameStatus::need_more) {
      FUZZ_CHECK(stream.size() < kFrameHeaderSize ||
                     stream.size() - kFrameHeaderSize < fv.length,
                 "frame_next wants more bytes than the frame needs");
      break;
    }
    if (fv.status != FrameStatus::complete) {
      FUZZ_CHECK((fv.status == FrameStatus::empty) == (fv.length == 0) &&
                     (fv.status == FrameStatus::empty || fv.length > limits.max_frame),
                 "frame_next refused a frame for the wrong reason");
      break;  // the session closes the connection here
    }
    FUZZ_CHECK(fv.consumed == kFrameHeaderSize + fv.length && fv.payload.size() == fv.length &&
                   fv.payload.data() == stream.data() + kFrameHeaderSize &&
                   fv.consumed <= stream.size(),
               "a complete frame is not exactly its header and N bytes");
    handle_payload(fv.payload, limits);
    stream = stream.subspan(fv.consumed);
  }
  return 0;
}
