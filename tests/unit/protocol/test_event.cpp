// Event validation: every rule refuses with the field path and the rule name, nothing
// is stripped; and the canonical body is deterministic.
#include <criterion/criterion.h>

#include <functional>
#include <memory>
#include <string>

#include "../../../protocol/event.hpp"
#include "../../../protocol/message.hpp"
#include "../../../protocol/pack.hpp"

using namespace cairn::proto;
using cairn::proto::detail::Packer;

namespace {

// Builds an event map with `type: "T"` (unless omitted) plus whatever `extra` packs;
// `n` is the number of extra entries.
// Decoded borrows the bytes it was parsed from, so Built keeps them (on the heap, so
// moving a Built does not move a short string's inline buffer).
struct Built {
  std::unique_ptr<std::string> bytes;
  Decoded decoded;
  const msgpack_object& obj() const { return decoded.root(); }
};

Built build(size_t n, const std::function<void(Packer&)>& extra, bool with_type = true) {
  auto owned = std::make_unique<std::string>();
  std::string& bytes = *owned;
  Packer pk(bytes);
  pk.map(n + (with_type ? 1 : 0));
  if (with_type) {
    pk.str("type");
    pk.str("T");
  }
  extra(pk);
  auto d = Decoded::parse({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, 16);
  cr_assert(d.ok(), "test event does not parse: %s", d.ok() ? "" : d.error().c_str());
  return Built{std::move(owned), std::move(d.value())};
}

Built with_str(const char* key, const std::string& value) {
  return build(1, [&](Packer& pk) {
    pk.str(key);
    pk.str(value);
  });
}

void expect_refused(const Built& b, const char* field, const char* rule) {
  auto r = event_from_msgpack(b.obj(), Limits{});
  cr_assert_not(r.ok(), "expected %s/%s to be refused", field, rule);
  cr_assert_eq(r.error().field, field, "field: got %s (%s)", r.error().field.c_str(),
               r.error().message.c_str());
  cr_assert_eq(r.error().rule, rule, "rule: got %s (%s)", r.error().rule.c_str(),
               r.error().message.c_str());
  cr_assert(r.error().message.find(field) != std::string::npos,
            "the message should name the field: %s", r.error().message.c_str());
}

}  // namespace

Test(event, minimal_event_gets_defaults) {
  auto b = build(0, [](Packer&) {});
  auto r = event_from_msgpack(b.obj(), Limits{});
  cr_assert(r.ok());
  cr_assert_eq(r.value().type, "T");
  cr_assert_eq(r.value().severity, 6);
  cr_assert_eq(r.value().outcome, Outcome::unknown);
  cr_assert_not(r.value().actor.has_value());
}

Test(event, type_is_required) {
  auto b = build(1, [](Packer& pk) { pk.str("actor"); pk.str("a"); }, false);
  expect_refused(b, "type", "required");
}

Built type_only(const std::string& t) {
  return build(1, [&](Packer& pk) { pk.str("type"); pk.str(t); }, false);
}

Test(event, type_empty_is_refused) { expect_refused(type_only(""), "type", "empty"); }

Test(event, type_outside_the_pattern_is_refused) {
  expect_refused(type_only("has space"), "type", "pattern");
  expect_refused(type_only("semi;colon"), "type", "pattern");
  expect_refused(type_only("caf\xc3\xa9"), "type", "pattern");
  expect_refused(type_only(std::string(65, 'a')), "type", "pattern");
  cr_assert(event_from_msgpack(type_only(std::string(64, 'a')).obj(), Limits{}).ok());
  cr_assert(event_from_msgpack(type_only("Auth.Failure:v2-x_y").obj(), Limits{}).ok());
}

Test(event, type_of_wrong_msgpack_type_is_refused) {
  expect_refused(build(1, [](Packer& pk) { pk.str("type"); pk.u64(5); }, false), "type", "type");
}

Test(event, c0_controls_are_refused_except_tab) {
  expect_refused(with_str("actor", "a\x1b[31m"), "actor", "control_char");
  expect_refused(with_str("actor", std::string("a\0b", 3)), "actor", "control_char");
  expect_refused(with_str("target", "a\nb"), "target", "control_char");
  expect_refused(with_str("action", "a\rb"), "action", "control_char");
  expect_refused(with_str("actor", "a\x7f"), "actor", "control_char");
  expect_refused(with_str("actor", "a\xc2\x85"), "actor", "control_char");  // C1 NEL
  cr_assert(event_from_msgpack(with_str("actor", "a\tb").obj(), Limits{}).ok());
}

Test(event, message_alone_may_hold_newlines) {
  auto r = event_from_msgpack(with_str("message", "line1\nline2\r\n\tend").obj(), Limits{});
  cr_assert(r.ok());
  cr_assert_eq(*r.value().message, "line1\nline2\r\n\tend");
  expect_refused(with_str("message", "bell\x07"), "message", "control_char");
}

Test(event, invalid_utf8_is_refused) {
  expect_refused(with_str("actor", "\xc3\x28"), "actor", "utf8");          // bad continuation
  expect_refused(with_str("actor", "\xe2\x82"), "actor", "utf8");          // truncated
  expect_refused(with_str("actor", "\xc0\xaf"), "actor", "utf8");          // overlong '/'
  expect_refused(with_str("actor", "\xed\xa0\x80"), "actor", "utf8");      // surrogate
  expect_refused(with_str("actor", "\xf4\x90\x80\x80"), "actor", "utf8");  // > U+10FFFF
  expect_refused(with_str("actor", "\xff"), "actor", "utf8");
  cr_assert(event_from_msgpack(with_str("actor", "z\xc3\xbcrich \xe6\x97\xa5\xf0\x9f\x94\x92").obj(),
                               Limits{}).ok());
}

Test(event, bidi_overrides_and_isolates_are_refused) {
  expect_refused(with_str("actor", "x\xe2\x80\xaa"), "actor", "bidi");  // U+202A
  expect_refused(with_str("actor", "x\xe2\x80\xae"), "actor", "bidi");  // U+202E
  expect_refused(with_str("actor", "x\xe2\x81\xa6"), "actor", "bidi");  // U+2066
  expect_refused(with_str("actor", "x\xe2\x81\xa9"), "actor", "bidi");  // U+2069
}

Test(event, byte_order_mark_is_refused_anywhere) {
  expect_refused(with_str("actor", "\xef\xbb\xbf" "alice"), "actor", "bom");
  expect_refused(with_str("target", "a\xef\xbb\xbf"), "target", "bom");
}

Test(event, strings_over_max_string_are_refused) {
  expect_refused(with_str("actor", std::string(1025, 'a')), "actor", "too_long");
  cr_assert(event_from_msgpack(with_str("actor", std::string(1024, 'a')).obj(), Limits{}).ok());
  Limits small;
  small.max_string = 16;
  auto r = event_from_msgpack(with_str("actor", std::string(17, 'a')).obj(), small);
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().rule, "too_long");
}

Test(event, wrong_types_are_refused) {
  expect_refused(build(1, [](Packer& pk) { pk.str("actor"); pk.u64(1); }), "actor", "type");
  expect_refused(build(1, [](Packer& pk) { pk.str("sync"); pk.str("yes"); }), "sync", "type");
  expect_refused(build(1, [](Packer& pk) { pk.str("time"); pk.str("now"); }), "time", "type");
  expect_refused(build(1, [](Packer& pk) { pk.str("fields"); pk.array(0); }), "fields", "type");
  expect_refused(build(1, [](Packer& pk) { pk.str("idem"); pk.u64(1); }), "idem", "type");
}

Test(event, unknown_top_level_keys_are_refused) {
  expect_refused(with_str("colour", "red"), "colour", "unknown_key");
}

Test(event, trusted_fields_from_a_client_are_refused) {
  for (const char* k : {"seq", "received", "pid", "uid", "gid", "comm", "hash"})
    expect_refused(build(1, [&](Packer& pk) { pk.str(k); pk.u64(1); }), k, "trusted_field");
}

Test(event, duplicate_keys_are_refused) {
  expect_refused(build(2, [](Packer& pk) {
                   pk.str("actor"); pk.str("a");
                   pk.str("actor"); pk.str("b");
                 }),
                 "actor", "duplicate_key");
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields");
                   pk.map(2);
                   pk.str("k"); pk.u64(1);
                   pk.str("k"); pk.u64(2);
                 }),
                 "fields.k", "duplicate_key");
}

Test(event, severity_accepts_levels_and_names_only) {
  auto r = event_from_msgpack(build(1, [](Packer& pk) { pk.str("severity"); pk.u64(2); }).obj(), Limits{});
  cr_assert(r.ok());
  cr_assert_eq(r.value().severity, 2);
  r = event_from_msgpack(with_str("severity", "warning").obj(), Limits{});
  cr_assert(r.ok());
  cr_assert_eq(r.value().severity, 4);
  cr_assert_eq(event_from_msgpack(with_str("severity", "error").obj(), Limits{}).value().severity, 3);
  expect_refused(build(1, [](Packer& pk) { pk.str("severity"); pk.u64(8); }), "severity", "range");
  expect_refused(build(1, [](Packer& pk) { pk.str("severity"); pk.i64(-1); }), "severity", "range");
  expect_refused(with_str("severity", "loud"), "severity", "range");
}

Test(event, outcome_accepts_three_names) {
  cr_assert_eq(event_from_msgpack(with_str("outcome", "failure").obj(), Limits{}).value().outcome,
               Outcome::failure);
  expect_refused(with_str("outcome", "maybe"), "outcome", "range");
}

Test(event, time_must_be_non_negative_ns) {
  auto r = event_from_msgpack(build(1, [](Packer& pk) { pk.str("time"); pk.u64(1795397710538581718ull); }).obj(), Limits{});
  cr_assert(r.ok());
  cr_assert_eq(*r.value().time, 1795397710538581718ll);
  expect_refused(build(1, [](Packer& pk) { pk.str("time"); pk.i64(-5); }), "time", "range");
}

Test(event, idem_is_8_to_32_bytes) {
  expect_refused(build(1, [](Packer& pk) { pk.str("idem"); pk.bin("1234567"); }), "idem", "too_short");
  expect_refused(build(1, [](Packer& pk) { pk.str("idem"); pk.bin(std::string(33, 'x')); }), "idem", "too_long");
  auto r = event_from_msgpack(build(1, [](Packer& pk) { pk.str("idem"); pk.bin(std::string("\0\1\2\3\4\5\6\7", 8)); }).obj(), Limits{});
  cr_assert(r.ok());
  cr_assert_eq(r.value().idem.size(), 8u);
}

Test(event, fields_values_are_typed_and_strings_follow_text_rules) {
  auto b = build(1, [](Packer& pk) {
    pk.str("fields");
    pk.map(5);
    pk.str("s"); pk.str("v");
    pk.str("i"); pk.i64(-3);
    pk.str("f"); pk.f64(1.5);
    pk.str("b"); pk.boolean(true);
    pk.str("n"); pk.nil();
  });
  cr_assert(event_from_msgpack(b.obj(), Limits{}).ok());
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields"); pk.map(1); pk.str("user"); pk.map(1);
                   pk.str("name"); pk.str("a\x1b");
                 }),
                 "fields.user.name", "control_char");
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields"); pk.map(1); pk.str("list"); pk.array(4);
                   pk.u64(1); pk.u64(2); pk.u64(3); pk.str("\xe2\x80\xae");
                 }),
                 "fields.list[3]", "bidi");
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields"); pk.map(1); pk.str("bin"); pk.bin("xx");
                 }),
                 "fields.bin", "type");
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields"); pk.map(1); pk.str("k\nk"); pk.u64(1);
                 }),
                 "fields.k\nk", "control_char");
}

Test(event, fields_limits_on_entries_and_depth) {
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields"); pk.map(65);
                   for (int i = 0; i < 65; ++i) { pk.str("k" + std::to_string(i)); pk.u64(1); }
                 }),
                 "fields", "too_many_entries");
  // depth: fields(1) > a(2) > b(3) > c(4) is fine; d(5) is too deep.
  auto nested = [](int levels) {
    return build(1, [=](Packer& pk) {
      pk.str("fields");
      pk.map(1);
      for (int i = 0; i < levels; ++i) {
        pk.str(std::string(1, static_cast<char>('a' + i)));
        pk.map(1);
      }
      pk.str("leaf");
      pk.u64(1);
    });
  };
  cr_assert(event_from_msgpack(nested(3).obj(), Limits{}).ok());
  expect_refused(nested(4), "fields.a.b.c.d", "too_deep");
}

Test(event, canonical_fields_do_not_depend_on_key_order) {
  auto one = build(1, [](Packer& pk) {
    pk.str("fields"); pk.map(3);
    pk.str("b"); pk.u64(2); pk.str("a"); pk.u64(1); pk.str("c"); pk.map(2);
    pk.str("y"); pk.boolean(false); pk.str("x"); pk.nil();
  });
  auto two = build(1, [](Packer& pk) {
    pk.str("fields"); pk.map(3);
    pk.str("c"); pk.map(2); pk.str("x"); pk.nil(); pk.str("y"); pk.boolean(false);
    pk.str("a"); pk.u64(1); pk.str("b"); pk.u64(2);
  });
  auto e1 = event_from_msgpack(one.obj(), Limits{});
  auto e2 = event_from_msgpack(two.obj(), Limits{});
  cr_assert(e1.ok() && e2.ok());
  cr_assert_eq(e1.value().fields, e2.value().fields);
  Trusted t{1, 2, 3, 4, "svc"};
  cr_assert_eq(event_canonical_body(e1.value(), t), event_canonical_body(e2.value(), t));
}

Test(event, canonical_body_has_the_documented_key_order_and_trusted_fields) {
  auto b = build(2, [](Packer& pk) {
    pk.str("actor"); pk.str("alice");
    pk.str("outcome"); pk.str("success");
  });
  auto e = event_from_msgpack(b.obj(), Limits{});
  cr_assert(e.ok());
  Trusted t{1700000000000000000, 42, 1000, 100, "sshd"};
  std::string body = event_canonical_body(e.value(), t);
  auto d = Decoded::parse({reinterpret_cast<const uint8_t*>(body.data()), body.size()}, 8);
  cr_assert(d.ok());
  const msgpack_object& m = d.value().root();
  const char* order[] = {"type", "severity", "actor", "outcome", "received", "pid", "uid", "gid", "comm"};
  cr_assert_eq(m.via.map.size, 9u);
  for (uint32_t i = 0; i < 9; ++i)
    cr_assert_eq(std::string(m.via.map.ptr[i].key.via.str.ptr, m.via.map.ptr[i].key.via.str.size),
                 order[i]);
  cr_assert_eq(map_get(m, "pid")->via.u64, 42u);
  cr_assert_eq(map_get(m, "uid")->via.u64, 1000u);
}
