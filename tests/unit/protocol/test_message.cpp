// Requests and replies: every encoder round-trips through its decoder; request errors
// carry the right code; and the hex example in PROTOCOL.md §7 is exactly what we send.
#include <criterion/criterion.h>

#include <string>

#include "../../../protocol/frame.hpp"
#include "../../../protocol/message.hpp"

using namespace cairn::proto;

namespace {

Decoded decode_frame(const std::string& frame) {
  auto v = frame_next({reinterpret_cast<const uint8_t*>(frame.data()), frame.size()}, kMaxFrameCeiling);
  cr_assert_eq(v.status, FrameStatus::complete);
  cr_assert_eq(v.consumed, frame.size(), "one frame, nothing after it");
  auto d = Decoded::parse(v.payload, 16);
  cr_assert(d.ok(), "%s", d.ok() ? "" : d.error().c_str());
  return std::move(d.value());
}

Reply reply_of(const Decoded& d) {
  auto r = reply_from(d);
  cr_assert(r.ok());
  return r.value();
}

std::string hex(const std::string& s) {
  static const char* x = "0123456789abcdef";
  std::string o;
  for (unsigned char c : s) {
    o += x[c >> 4];
    o += x[c & 15];
  }
  return o;
}

}  // namespace

Test(message, append_request_round_trips_to_a_validated_event) {
  EventView ev;
  ev.type = "UserLogin";
  ev.actor = "alice";
  ev.outcome = Outcome::success;
  ev.severity = 5;
  ev.idem = "0123456789abcdef";
  ev.sync = true;
  std::string f;
  encode_append(f, 42, ev);
  Decoded d = decode_frame(f);
  auto req = request_from(d);
  cr_assert(req.ok());
  cr_assert_eq(req.value().op, Op::append);
  cr_assert_eq(req.value().id, 42u);
  auto e = event_from_msgpack(*map_get(*req.value().map, "event"), Limits{});
  cr_assert(e.ok(), "%s", e.ok() ? "" : e.error().message.c_str());
  cr_assert_eq(e.value().type, "UserLogin");
  cr_assert_eq(*e.value().actor, "alice");
  cr_assert_eq(e.value().severity, 5);
  cr_assert(e.value().sync);
  cr_assert_eq(e.value().idem, "0123456789abcdef");
}

Test(message, ack_round_trips) {
  std::string f;
  encode_ack(f, 9, 1234567, true, false);
  Decoded d = decode_frame(f);
  Reply r = reply_of(d);
  cr_assert(r.ok);
  cr_assert_eq(r.id, 9u);
  auto a = ack_from(r);
  cr_assert(a.ok());
  cr_assert_eq(a.value().seq, 1234567u);
  cr_assert(a.value().durable);
  cr_assert_not(a.value().duplicate);
}

Test(message, error_reply_carries_code_field_and_rule) {
  std::string f;
  encode_error(f, 3, ErrorCode::invalid_field, "actor: bad", "actor", "control_char");
  Decoded d = decode_frame(f);
  Reply r = reply_of(d);
  cr_assert_not(r.ok);
  cr_assert_eq(r.error, ErrorCode::invalid_field);
  cr_assert_eq(r.error_name, "invalid_field");
  cr_assert_eq(r.field, "actor");
  cr_assert_eq(r.rule, "control_char");
  cr_assert_eq(r.message, "actor: bad");
}

Test(message, every_error_code_has_a_stable_name) {
  const char* names[] = {"frame_too_large", "malformed",     "invalid_field",
                         "unsupported_version", "unknown_op", "storage_failed",
                         "shutting_down", "overloaded",      "permission_denied", "internal"};
  for (const char* n : names) {
    auto c = error_code_from_name(n);
    cr_assert(c.has_value(), "%s", n);
    cr_assert_eq(error_code_name(*c), n);
  }
}

Test(message, request_without_id_or_op_is_malformed_and_unknown_op_is_named) {
  std::string f;
  encode_simple(f, 5, Op::ping);
  cr_assert(request_from(decode_frame(f)).ok());
  // {"op":"ping"} — no id
  auto d = Decoded::parse({reinterpret_cast<const uint8_t*>("\x81\xa2op\xa4ping"), 9}, 8);
  cr_assert(d.ok());
  auto r = request_from(d.value());
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().code, ErrorCode::malformed);
  // {"id":7,"op":"fly"}
  auto d2 = Decoded::parse({reinterpret_cast<const uint8_t*>("\x82\xa2id\x07\xa2op\xa3" "fly"), 12}, 8);
  cr_assert(d2.ok());
  auto r2 = request_from(d2.value());
  cr_assert_not(r2.ok());
  cr_assert_eq(r2.error().code, ErrorCode::unknown_op);
  cr_assert_eq(r2.error().id, 7u, "the id is echoed when it could be read");
}

Test(message, query_round_trips_and_limit_is_checked) {
  QuerySpec q;
  q.type = "AuthFailure";
  q.actor = "bob";
  q.since = 100;
  q.until = 200;
  q.severity = 3;
  q.limit = 50;
  q.after = 999;
  std::string f;
  encode_query(f, 1, q);
  Decoded d = decode_frame(f);
  auto req = request_from(d);
  cr_assert(req.ok());
  auto back = query_from(req.value(), Limits{});
  cr_assert(back.ok());
  cr_assert_eq(*back.value().type, "AuthFailure");
  cr_assert_eq(*back.value().actor, "bob");
  cr_assert_eq(*back.value().since, 100);
  cr_assert_eq(*back.value().until, 200);
  cr_assert_eq(*back.value().severity, 3);
  cr_assert_eq(back.value().limit, 50u);
  cr_assert_eq(*back.value().after, 999u);
  q.limit = 1001;
  std::string g;
  encode_query(g, 1, q);
  Decoded d2 = decode_frame(g);
  auto bad = query_from(request_from(d2).value(), Limits{});
  cr_assert_not(bad.ok());
  cr_assert_eq(bad.error().field, "limit");
  cr_assert_eq(bad.error().rule, "range");
}

Test(message, query_reply_splices_bodies_and_round_trips) {
  QueryPage page;
  StoredEvent e;
  e.seq = 77;
  e.hash.fill(0xab);
  e.body = "\x82\xa4type\xa1T\xa3pid\x05";
  page.events.push_back(e);
  page.next = 77;
  std::string f;
  encode_query_reply(f, 4, page);
  Decoded d = decode_frame(f);  // the reply borrows from it
  Reply r = reply_of(d);
  auto back = query_page_from(r);
  cr_assert(back.ok());
  cr_assert_eq(back.value().events.size(), 1u);
  cr_assert_eq(back.value().events[0].seq, 77u);
  cr_assert_eq(back.value().events[0].hash, e.hash);
  cr_assert_eq(back.value().events[0].body, e.body);
  cr_assert_eq(*back.value().next, 77u);
}

Test(message, stats_verify_hello_flush_round_trip) {
  Stats s;
  s.events = 10;
  s.by_type = {{"A", 7}, {"B", 3}};
  s.commits = 4;
  s.events_per_commit = 2.5;
  s.flush_mode = "hybrid";
  std::string f;
  encode_stats_reply(f, 1, s);
  Decoded sd = decode_frame(f);
  auto st = stats_from(reply_of(sd));
  cr_assert(st.ok());
  cr_assert_eq(st.value().events, 10u);
  cr_assert_eq(st.value().by_type.size(), 2u);
  cr_assert_eq(st.value().by_type[0].first, "A");
  cr_assert_float_eq(st.value().events_per_commit, 2.5, 1e-9);
  cr_assert_eq(st.value().flush_mode, "hybrid");

  VerifyReport v;
  v.valid = false;
  v.checked = 41;
  v.break_seq = 42;
  v.reason = "seq 42: hash mismatch";
  std::string g;
  encode_verify_reply(g, 2, v);
  Decoded vd = decode_frame(g);
  auto vb = verify_from(reply_of(vd));
  cr_assert(vb.ok());
  cr_assert_not(vb.value().valid);
  cr_assert_eq(*vb.value().break_seq, 42u);
  cr_assert_eq(vb.value().reason, "seq 42: hash mismatch");

  HelloInfo h;
  h.server = "cairnd 0.1.0";
  h.flush_mode = "immediate";
  h.max_inflight = 4096;
  std::string k;
  encode_hello_reply(k, 3, h);
  Decoded hd = decode_frame(k);
  auto hb = hello_info_from(reply_of(hd));
  cr_assert(hb.ok());
  cr_assert_eq(hb.value().server, "cairnd 0.1.0");
  cr_assert_eq(hb.value().max_inflight, 4096u);
  cr_assert_eq(hb.value().limits.max_frame, 65536u);

  std::string fl;
  encode_flush_reply(fl, 8, 99);
  Decoded fd = decode_frame(fl);
  cr_assert_eq(map_get(fd.root(), "durable_seq")->via.u64, 99u);
}

// The bytes shown in PROTOCOL.md §7. If this fails, fix the document, not the test.
Test(message, protocol_md_example_bytes) {
  EventView ev;
  ev.type = "UserLogin";
  ev.actor = "alice";
  ev.outcome = Outcome::success;
  ev.idem = "k-0000000000001";
  std::string f;
  encode_append(f, 7, ev);
  cr_assert_eq(hex(f),
               "00000057"
               "83"
               "a26f70" "a6617070656e64"
               "a26964" "07"
               "a56576656e74" "84"
               "a474797065" "a955736572" "4c6f67696e"
               "a56163746f72" "a5616c696365"
               "a76f7574636f6d65" "a773756363657373"
               "a46964656d" "c40f6b2d30303030303030303030303031",
               "got %s", hex(f).c_str());
  std::string a;
  encode_ack(a, 7, 42, true, false);
  cr_assert_eq(hex(a),
               "00000022"
               "85"
               "a26964" "07"
               "a26f6b" "c3"
               "a3736571" "2a"
               "a764757261626c65" "c3"
               "a9647570" "6c6963617465" "c2",
               "got %s", hex(a).c_str());
}

Test(message, reply_peek_reads_id_ok_and_ack_fields_without_unpacking) {
  std::string f;
  encode_ack(f, 300, 70000, true, true);
  std::span<const uint8_t> b{reinterpret_cast<const uint8_t*>(f.data()) + 4, f.size() - 4};
  auto h = reply_peek(b);
  cr_assert(h.has_value());
  cr_assert_eq(h->id, 300u);
  cr_assert(h->ok);
  cr_assert_eq(h->seq, 70000u);
  cr_assert(h->durable);
  cr_assert(h->duplicate);
  std::string e;
  encode_error(e, 5, ErrorCode::storage_failed, "x");
  auto he = reply_peek({reinterpret_cast<const uint8_t*>(e.data()) + 4, e.size() - 4});
  cr_assert(he.has_value());
  cr_assert_not(he->ok);
  cr_assert_eq(he->id, 5u);
  // Truncated or trailing bytes are not a reply.
  cr_assert_not(reply_peek(b.subspan(0, b.size() - 1)).has_value());
  std::string longer(f.substr(4) + "\x01");
  cr_assert_not(reply_peek({reinterpret_cast<const uint8_t*>(longer.data()), longer.size()}).has_value());
}
