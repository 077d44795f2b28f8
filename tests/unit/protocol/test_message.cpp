// Requests and replies: every encoder round-trips through its decoder; request errors
// carry the right code; and the hex example in PROTOCOL.md §7 is exactly what we send.
#include <criterion/criterion.h>

#include <functional>
#include <memory>
#include <string>

#include "../../../protocol/frame.hpp"
#include "../../../protocol/message.hpp"
#include "../../../protocol/pack.hpp"

using namespace cairn::proto;
using cairn::proto::detail::Packer;

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
                         "shutting_down", "overloaded",      "permission_denied", "internal",
                         "events_lost", "idem_conflict", "rate_limited", "storage_full"};
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

// ---- requests: hello, simple ops, id/op errors, query arguments ----

namespace {

// Parses a hand-built request map (no frame) and reads its op and id.
struct Parsed {
  std::unique_ptr<std::string> bytes;  // the Decoded borrows these
  Decoded decoded;
};
Parsed parse_map(std::string bytes) {
  auto owned = std::make_unique<std::string>(std::move(bytes));
  auto d = Decoded::parse({reinterpret_cast<const uint8_t*>(owned->data()), owned->size()}, 8);
  cr_assert(d.ok(), "%s", d.ok() ? "" : d.error().c_str());
  return Parsed{std::move(owned), std::move(d.value())};
}

std::string query_map(const std::function<void(Packer&)>& args, size_t n) {
  std::string b;
  Packer pk(b);
  pk.map(2 + n);
  pk.str("op"); pk.str("query");
  pk.str("id"); pk.u64(1);
  args(pk);
  return b;
}

void expect_query_refused(const std::function<void(Packer&)>& args, const char* field,
                          const char* rule) {
  Parsed p = parse_map(query_map(args, 1));
  auto req = request_from(p.decoded);
  cr_assert(req.ok());
  auto q = query_from(req.value(), Limits{});
  cr_assert_not(q.ok(), "expected %s/%s", field, rule);
  cr_assert_eq(q.error().field, field, "field %s", q.error().field.c_str());
  cr_assert_eq(q.error().rule, rule, "rule %s (%s)", q.error().rule.c_str(), q.error().message.c_str());
}

}  // namespace

Test(message, hello_request_round_trips) {
  std::string f;
  encode_hello(f, 1, 1, "myapp");
  Decoded d = decode_frame(f);
  auto req = request_from(d);
  cr_assert(req.ok());
  cr_assert_eq(req.value().op, Op::hello);
  auto h = hello_from(req.value());
  cr_assert(h.ok());
  cr_assert_eq(h.value().version, 1u);
  cr_assert_eq(h.value().client, "myapp");
}

Test(message, hello_without_version_means_version_1) {
  Parsed p = parse_map(std::string("\x82\xa2op\xa5hello\xa2id\x01", 14));
  auto h = hello_from(request_from(p.decoded).value());
  cr_assert(h.ok());
  cr_assert_eq(h.value().version, kProtocolVersion);
  cr_assert(h.value().client.empty());
}

Test(message, hello_reports_other_versions_for_the_daemon_to_judge) {
  std::string f;
  encode_hello(f, 1, 9, "");
  Decoded d = decode_frame(f);
  auto h = hello_from(request_from(d).value());
  cr_assert(h.ok());
  cr_assert_eq(h.value().version, 9u);
}

Test(message, hello_client_name_follows_text_rules_and_64_bytes) {
  std::string f;
  encode_hello(f, 1, 1, std::string(65, 'c'));
  Decoded d = decode_frame(f);
  auto h = hello_from(request_from(d).value());
  cr_assert_not(h.ok());
  cr_assert_eq(h.error().field, "client");
  cr_assert_eq(h.error().rule, "too_long");
  std::string g;
  encode_hello(g, 1, 1, "app\x1b");
  Decoded d2 = decode_frame(g);
  auto h2 = hello_from(request_from(d2).value());
  cr_assert_not(h2.ok());
  cr_assert_eq(h2.error().rule, "control_char");
}

Test(message, hello_version_of_wrong_type_is_refused) {
  std::string b;
  Packer pk(b);
  pk.map(3);
  pk.str("op"); pk.str("hello");
  pk.str("id"); pk.u64(1);
  pk.str("version"); pk.str("1");
  Parsed p = parse_map(b);
  auto h = hello_from(request_from(p.decoded).value());
  cr_assert_not(h.ok());
  cr_assert_eq(h.error().field, "version");
  cr_assert_eq(h.error().rule, "type");
}

Test(message, every_simple_op_round_trips_by_name) {
  for (Op op : {Op::flush, Op::stats, Op::verify, Op::ping}) {
    std::string f;
    encode_simple(f, 1000 + static_cast<int>(op), op);
    Decoded d = decode_frame(f);
    auto r = request_from(d);
    cr_assert(r.ok());
    cr_assert_eq(r.value().op, op);
    cr_assert_eq(r.value().id, 1000u + static_cast<int>(op));
    cr_assert_eq(op_from_name(op_name(op)), op);
  }
  cr_assert_not(op_from_name("PING").has_value());
}

Test(message, pong_is_id_and_ok) {
  std::string f;
  encode_pong(f, 12);
  Decoded d = decode_frame(f);
  Reply r = reply_of(d);
  cr_assert(r.ok);
  cr_assert_eq(r.id, 12u);
  cr_assert_eq(d.root().via.map.size, 2u);
}

Test(message, negative_id_is_malformed_with_id_0) {
  Parsed p = parse_map(std::string("\x82\xa2op\xa4ping\xa2id\xff", 13));  // id: -1
  auto r = request_from(p.decoded);
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().code, ErrorCode::malformed);
  cr_assert_eq(r.error().id, 0u);
  cr_assert_eq(r.error().field, "id");
}

Test(message, op_of_wrong_type_is_malformed_and_keeps_the_id) {
  Parsed p = parse_map(std::string("\x82\xa2op\x01\xa2id\x05", 9));
  auto r = request_from(p.decoded);
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().code, ErrorCode::malformed);
  cr_assert_eq(r.error().id, 5u);
  cr_assert_eq(r.error().field, "op");
}

Test(message, missing_op_is_malformed_and_keeps_the_id) {
  Parsed p = parse_map(std::string("\x81\xa2id\x05", 5));
  auto r = request_from(p.decoded);
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().code, ErrorCode::malformed);
  cr_assert_eq(r.error().id, 5u);
}

Test(message, unknown_op_that_is_not_clean_text_is_echoed_escaped) {
  Parsed p = parse_map(std::string("\x82\xa2op\xa2\x1b\xff\xa2id\x05", 11));
  auto r = request_from(p.decoded);
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().code, ErrorCode::unknown_op);
  cr_assert(r.error().message.find("\\x1b\\xff") != std::string::npos, "%s",
            r.error().message.c_str());
}

Test(message, query_without_arguments_gets_defaults) {
  Parsed p = parse_map(query_map([](Packer&) {}, 0));
  auto q = query_from(request_from(p.decoded).value(), Limits{});
  cr_assert(q.ok());
  cr_assert_eq(q.value().limit, 100u);
  cr_assert_not(q.value().type.has_value());
  cr_assert_not(q.value().severity.has_value());
  cr_assert_not(q.value().after.has_value());
}

Test(message, query_limit_must_be_1_to_1000) {
  expect_query_refused([](Packer& pk) { pk.str("limit"); pk.u64(0); }, "limit", "range");
  expect_query_refused([](Packer& pk) { pk.str("limit"); pk.u64(1001); }, "limit", "range");
  expect_query_refused([](Packer& pk) { pk.str("limit"); pk.i64(-1); }, "limit", "range");
  expect_query_refused([](Packer& pk) { pk.str("limit"); pk.str("10"); }, "limit", "type");
}

Test(message, query_strings_follow_text_rules) {
  expect_query_refused([](Packer& pk) { pk.str("actor"); pk.str("a\x1b"); }, "actor", "control_char");
  expect_query_refused([](Packer& pk) { pk.str("type"); pk.str("\xff"); }, "type", "utf8");
  expect_query_refused([](Packer& pk) { pk.str("type"); pk.u64(1); }, "type", "type");
}

Test(message, query_severity_takes_levels_or_names) {
  Parsed p = parse_map(query_map([](Packer& pk) { pk.str("severity"); pk.str("err"); }, 1));
  auto q = query_from(request_from(p.decoded).value(), Limits{});
  cr_assert(q.ok());
  cr_assert_eq(*q.value().severity, 3);
  expect_query_refused([](Packer& pk) { pk.str("severity"); pk.u64(8); }, "severity", "range");
  expect_query_refused([](Packer& pk) { pk.str("severity"); pk.str("loud"); }, "severity", "range");
  expect_query_refused([](Packer& pk) { pk.str("severity"); pk.boolean(true); }, "severity", "type");
}

Test(message, query_times_and_cursor_are_typed) {
  Parsed p = parse_map(query_map([](Packer& pk) { pk.str("since"); pk.i64(-5); }, 1));
  auto q = query_from(request_from(p.decoded).value(), Limits{});
  cr_assert(q.ok());
  cr_assert_eq(*q.value().since, -5);
  expect_query_refused([](Packer& pk) { pk.str("since"); pk.str("now"); }, "since", "type");
  expect_query_refused([](Packer& pk) { pk.str("until"); pk.u64(UINT64_MAX); }, "until", "range");
  expect_query_refused([](Packer& pk) { pk.str("after"); pk.i64(-1); }, "after", "type");
}

Test(message, query_args_are_the_query_map_without_op_and_id) {
  QuerySpec q;
  q.actor = "bob";
  q.limit = 7;
  std::string args;
  encode_query_args(args, q);
  Parsed p = parse_map(args);
  cr_assert_null(map_get(p.decoded.root(), "op"));
  cr_assert_null(map_get(p.decoded.root(), "id"));
  cr_assert_eq(std::string(map_get(p.decoded.root(), "actor")->via.str.ptr, 3), "bob");
  cr_assert_eq(map_get(p.decoded.root(), "limit")->via.u64, 7u);
}

// ---- replies: the client-side decoders ----

Test(message, reply_decoders_ignore_keys_they_do_not_know) {
  // An ack from a future daemon with extra keys, one of them before the known ones.
  std::string b;
  Packer pk(b);
  pk.map(7);
  pk.str("future"); pk.array(2); pk.u64(1); pk.str("x");
  pk.str("id"); pk.u64(3);
  pk.str("ok"); pk.boolean(true);
  pk.str("seq"); pk.u64(10);
  pk.str("durable"); pk.boolean(true);
  pk.str("duplicate"); pk.boolean(true);
  pk.str("trace"); pk.map(1); pk.str("k"); pk.nil();
  Parsed p = parse_map(b);
  auto r = reply_from(p.decoded);
  cr_assert(r.ok());
  auto a = ack_from(r.value());
  cr_assert(a.ok());
  cr_assert_eq(a.value().seq, 10u);
  cr_assert(a.value().duplicate);
  auto h = reply_peek({reinterpret_cast<const uint8_t*>(b.data()), b.size()});
  cr_assert(h.has_value());
  cr_assert_eq(h->seq, 10u);
}

Test(message, reply_without_ok_is_not_a_reply) {
  Parsed p = parse_map(std::string("\x81\xa2id\x05", 5));
  cr_assert_not(reply_from(p.decoded).ok());
}

Test(message, error_reply_with_an_unknown_code_keeps_its_name) {
  std::string b;
  Packer pk(b);
  pk.map(4);
  pk.str("id"); pk.u64(1);
  pk.str("ok"); pk.boolean(false);
  pk.str("error"); pk.str("quota_exceeded");
  pk.str("message"); pk.str("later");
  Parsed p = parse_map(b);
  Reply r = reply_of(p.decoded);
  cr_assert_not(r.error.has_value());
  cr_assert_eq(r.error_name, "quota_exceeded");
  cr_assert_not(ack_from(r).ok(), "an error reply is not an ack");
}

Test(message, error_reply_without_field_omits_field_and_rule) {
  std::string f;
  encode_error(f, 0, ErrorCode::malformed, "payload is not a map");
  Decoded d = decode_frame(f);
  cr_assert_eq(d.root().via.map.size, 4u);
  cr_assert_null(map_get(d.root(), "field"));
  cr_assert_null(map_get(d.root(), "rule"));
}

Test(message, last_query_page_has_nil_next) {
  QueryPage page;
  std::string f;
  encode_query_reply(f, 4, page);
  Decoded d = decode_frame(f);
  cr_assert_eq(map_get(d.root(), "next")->type, MSGPACK_OBJECT_NIL);
  auto back = query_page_from(reply_of(d));
  cr_assert(back.ok());
  cr_assert(back.value().events.empty());
  cr_assert_not(back.value().next.has_value());
}

Test(message, query_page_round_trips_real_canonical_bodies) {
  QueryPage page;
  for (uint64_t seq : {9, 8}) {
    Event e;
    e.type = "AuthFailure";
    e.severity = 4;
    e.actor = "user" + std::to_string(seq);
    // {a:1, b:[true,1.5]}, canonical
    e.fields = std::string("\x82\xa1" "a\x01\xa1" "b\x92\xc3\xcb\x3f\xf8\0\0\0\0\0\0", 17);
    StoredEvent se;
    se.seq = seq;
    se.hash.fill(static_cast<uint8_t>(seq));
    se.body = event_canonical_body(e, Trusted{123456789, 1, 2, 3, "sshd"});
    page.events.push_back(se);
  }
  std::string f;
  encode_query_reply(f, 4, page);
  Decoded d = decode_frame(f);
  auto back = query_page_from(reply_of(d));
  cr_assert(back.ok());
  cr_assert_eq(back.value().events.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    cr_assert_eq(back.value().events[i].seq, page.events[i].seq);
    cr_assert_eq(back.value().events[i].hash, page.events[i].hash);
    cr_assert_eq(hex(back.value().events[i].body), hex(page.events[i].body),
                 "the body must come back byte for byte, or the hash chain cannot be checked");
  }
}

Test(message, full_stats_round_trip) {
  Stats s;
  s.events = 1;
  s.by_type = {{"Login", 5}, {"Logout", 2}};
  s.head_seq = 3;
  s.queue_depth = 4;
  s.queue_bytes = 5;
  s.commits = 6;
  s.events_committed = 7;
  s.events_per_commit = 1.25;
  s.fsync_p50_us = 8;
  s.fsync_p99_us = 9;
  s.fsync_max_us = 10;
  s.storage_errors = 11;
  s.db_bytes = 1ull << 40;
  s.connections = 13;
  s.flush_mode = "batched";
  s.uptime_s = 14;
  s.disk_free_bytes = 15;
  s.disk_reserve_bytes = 1ull << 36;
  s.storage_full = true;
  s.disk_full_action = "pushback";
  s.storage_full_refusals = 17;
  std::string f;
  encode_stats_reply(f, 1, s);
  Decoded d = decode_frame(f);
  cr_assert_eq(map_get(d.root(), "by_type")->type, MSGPACK_OBJECT_MAP);
  auto b = stats_from(reply_of(d));
  cr_assert(b.ok());
  const Stats& t = b.value();
  cr_assert_eq(t.events, 1u);
  cr_assert_eq(t.by_type, s.by_type);
  cr_assert_eq(t.head_seq, 3u);
  cr_assert_eq(t.queue_depth, 4u);
  cr_assert_eq(t.queue_bytes, 5u);
  cr_assert_eq(t.commits, 6u);
  cr_assert_eq(t.events_committed, 7u);
  cr_assert_eq(t.events_per_commit, 1.25);
  cr_assert_eq(t.fsync_p50_us, 8u);
  cr_assert_eq(t.fsync_p99_us, 9u);
  cr_assert_eq(t.fsync_max_us, 10u);
  cr_assert_eq(t.storage_errors, 11u);
  cr_assert_eq(t.db_bytes, 1ull << 40);
  cr_assert_eq(t.connections, 13u);
  cr_assert_eq(t.flush_mode, "batched");
  cr_assert_eq(t.uptime_s, 14u);
  cr_assert_eq(t.disk_free_bytes, 15u);
  cr_assert_eq(t.disk_reserve_bytes, 1ull << 36);
  cr_assert(t.storage_full);
  cr_assert_eq(t.disk_full_action, "pushback");
  cr_assert_eq(t.storage_full_refusals, 17u);
}

Test(message, valid_verify_report_round_trips_without_break) {
  VerifyReport v;
  v.checked = 1000;
  v.head_seq = 1000;
  for (size_t i = 0; i < v.head_hash.size(); ++i) v.head_hash[i] = static_cast<uint8_t>(i);
  std::string f;
  encode_verify_reply(f, 2, v);
  Decoded d = decode_frame(f);
  cr_assert_eq(map_get(d.root(), "head_hash")->type, MSGPACK_OBJECT_BIN);
  cr_assert_null(map_get(d.root(), "break_seq"));
  auto b = verify_from(reply_of(d));
  cr_assert(b.ok());
  cr_assert(b.value().valid);
  cr_assert_eq(b.value().checked, 1000u);
  cr_assert_eq(b.value().head_hash, v.head_hash);
  cr_assert_not(b.value().break_seq.has_value());
}

Test(message, hello_reply_carries_all_limits) {
  HelloInfo h;
  h.server = "cairnd 0.1.0";
  h.flush_mode = "hybrid";
  h.limits.max_frame = 1 << 20;
  h.limits.max_string = 200;
  h.limits.max_fields = 10;
  h.limits.max_depth = 2;
  h.max_inflight = 64;
  std::string f;
  encode_hello_reply(f, 1, h);
  Decoded d = decode_frame(f);
  cr_assert_eq(map_get(d.root(), "version")->via.u64, 1u);
  auto b = hello_info_from(reply_of(d));
  cr_assert(b.ok());
  cr_assert_eq(b.value().flush_mode, "hybrid");
  cr_assert_eq(b.value().limits.max_frame, 1u << 20);
  cr_assert_eq(b.value().limits.max_string, 200u);
  cr_assert_eq(b.value().limits.max_fields, 10u);
  cr_assert_eq(b.value().limits.max_depth, 2u);
  cr_assert_eq(b.value().max_inflight, 64u);
}

Test(message, append_with_every_field_round_trips) {
  EventView ev;
  ev.type = "FileRead";
  ev.severity = 7;
  ev.actor = "a";
  ev.action = "read";
  ev.target = "/etc/shadow";
  ev.message = "line1\nline2";
  ev.outcome = Outcome::failure;
  ev.time = 1700000000123456789;
  ev.fields = "\x81\xa1k\xa1v";
  ev.idem = std::string_view("\0\1\2\3\4\5\6\7\x08", 9);
  std::string f;
  encode_append(f, 1, ev);
  Decoded d = decode_frame(f);
  cr_assert(request_from(d).ok());
  auto e = event_from_msgpack(*map_get(d.root(), "event"), Limits{});
  cr_assert(e.ok(), "%s", e.ok() ? "" : e.error().message.c_str());
  const Event& v = e.value();
  cr_assert_eq(v.severity, 7);
  cr_assert_eq(*v.action, "read");
  cr_assert_eq(*v.target, "/etc/shadow");
  cr_assert_eq(*v.message, "line1\nline2");
  cr_assert_eq(v.outcome, Outcome::failure);
  cr_assert_eq(*v.time, 1700000000123456789);
  cr_assert_eq(v.fields, "\x81\xa1k\xa1v");
  cr_assert_eq(v.idem, std::string("\0\1\2\3\4\5\6\7\x08", 9));
  cr_assert_not(v.sync);
}

namespace {

cairn::Result<Request, RequestError> request_of(const std::string& payload, Decoded& keep) {
  auto d = Decoded::parse({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, 8);
  cr_assert(d.ok(), "%s", d.ok() ? "" : d.error().c_str());
  keep = std::move(d.value());
  return request_from(keep);
}

}  // namespace

// A repeated key in the request map is refused by name, never resolved by taking one of
// the copies (issue 9, defect 10).
Test(message, repeated_request_key_is_refused_with_duplicate_key) {
  Decoded keep;
  // {"op":"query","id":4,"limit":1,"limit":1000}
  std::string q;
  Packer qp(q);
  qp.map(4);
  qp.str("op"); qp.str("query");
  qp.str("id"); qp.u64(4);
  qp.str("limit"); qp.u64(1);
  qp.str("limit"); qp.u64(1000);
  auto r = request_of(q, keep);
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().code, ErrorCode::invalid_field);
  cr_assert_eq(r.error().rule, "duplicate_key");
  cr_assert_eq(r.error().field, "limit");
  cr_assert_eq(r.error().id, 4u);
  // A repeated id: neither copy is echoed.
  std::string p2;
  Packer pp(p2);
  pp.map(3);
  pp.str("op"); pp.str("ping");
  pp.str("id"); pp.u64(4);
  pp.str("id"); pp.u64(5);
  auto r2 = request_of(p2, keep);
  cr_assert_not(r2.ok());
  cr_assert_eq(r2.error().field, "id");
  cr_assert_eq(r2.error().id, 0u);
  // Many keys (the linear path): the first repeat in the order sent is named.
  std::string many;
  Packer pk(many);
  pk.map(40);
  pk.str("op"); pk.str("ping");
  pk.str("id"); pk.u64(9);
  for (int i = 0; i < 36; ++i) { pk.str("k" + std::to_string(i)); pk.nil(); }
  pk.str("k7"); pk.nil();
  pk.str("k3"); pk.nil();
  auto r3 = request_of(many, keep);
  cr_assert_not(r3.ok());
  cr_assert_eq(r3.error().field, "k7");
}

// No reply exceeds max_frame (PROTOCOL.md §2): error texts are cut, stats by_type is cut
// with a count of what was left out, and a query page knows when it is full.
Test(message, error_reply_fits_the_smallest_max_frame) {
  std::string f;
  std::string long_field(5000, 'f');
  std::string long_msg = std::string(3000, 'm') + "\xe2\x82\xac";  // ends in a 3-byte char
  encode_error(f, 1, ErrorCode::invalid_field, long_msg, long_field, "too_long");
  cr_assert_leq(f.size() - kFrameHeaderSize, 1024u);
  Reply r = reply_of(decode_frame(f));
  cr_assert_leq(r.message.size(), kMaxErrorMessage);
  cr_assert_leq(r.field.size(), kMaxErrorField);
  cr_assert(r.field.ends_with("..."));
  cr_assert_not(check_text(r.message, 1 << 20, false).has_value(), "cut on a UTF-8 boundary");
}

Test(message, stats_by_type_is_cut_to_fit_and_counts_the_rest) {
  Stats st;
  for (int i = 0; i < 5000; ++i) st.by_type.emplace_back("Type.Number." + std::to_string(i), 5000 - i);
  std::string f;
  encode_stats_reply(f, 3, st, 4096);
  cr_assert_leq(f.size() - kFrameHeaderSize, 4096u);
  Decoded d = decode_frame(f);
  Reply r = reply_of(d);
  auto s = stats_from(r);
  cr_assert(s.ok());
  cr_assert_gt(s.value().by_type.size(), 10u);
  cr_assert_lt(s.value().by_type.size(), 5000u);
  cr_assert_eq(s.value().by_type.front().first, "Type.Number.0", "most frequent kept first");
  const msgpack_object* om = map_get(*r.map, "by_type_omitted");
  cr_assert(om != nullptr && om->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
  cr_assert_eq(om->via.u64 + s.value().by_type.size(), 5000u);
  // Small enough: nothing cut, no extra key.
  Stats small;
  small.by_type.emplace_back("A", 1);
  std::string g;
  encode_stats_reply(g, 3, small, 4096);
  Decoded d2 = decode_frame(g);
  cr_assert_null(map_get(*reply_of(d2).map, "by_type_omitted"));
}

Test(message, query_page_builder_stops_within_the_bound) {
  std::string f;
  QueryReplyBuilder b(f, 77);
  std::string body(1000, 'x');
  body[0] = '\xc0';  // not a real body; only sizes matter here
  std::string hash(32, 'h');
  uint64_t seq = 100;
  while (b.fits(body.size(), 8192)) b.add(seq--, hash, body);
  b.finish(seq + 1);
  cr_assert_gt(b.count(), 0u);
  cr_assert_leq(f.size() - kFrameHeaderSize, 8192u, "payload %zu", f.size() - kFrameHeaderSize);
  cr_assert(QueryReplyBuilder::fits_alone(8000, 8192));
  cr_assert_not(QueryReplyBuilder::fits_alone(8192, 8192));
}
