// Event validation: every rule refuses with the field path and the rule name, nothing
// is stripped; and the canonical body is deterministic.
#include <criterion/criterion.h>

#include <functional>
#include <limits>
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
                 "fields.k\\x0ak", "control_char");
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

// ---- one test per rule not covered above, and the canonical form in detail ----

Test(event, event_that_is_not_a_map_is_refused) {
  msgpack_object not_map{};
  not_map.type = MSGPACK_OBJECT_POSITIVE_INTEGER;
  not_map.via.u64 = 1;
  auto r = event_from_msgpack(not_map, Limits{});
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().field, "event");
  cr_assert_eq(r.error().rule, "type");
}

Test(event, non_string_event_key_is_a_type_error_on_the_event) {
  expect_refused(build(1, [](Packer& pk) { pk.u64(1); pk.str("x"); }), "event", "type");
}

Test(event, unknown_key_that_is_not_clean_text_is_named_escaped) {
  auto b = with_str("col\x1b[31mour", "red");
  auto r = event_from_msgpack(b.obj(), Limits{});
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().rule, "unknown_key");
  cr_assert_eq(r.error().field, "col\\x1b[31mour");
  cr_assert_not(check_text(r.error().message, 1024, false).has_value(),
                "the message goes back to the client: %s", r.error().message.c_str());
}

Test(event, first_violation_in_map_order_wins) {
  auto b = build(2, [](Packer& pk) {
    pk.str("target"); pk.str("a\x01");
    pk.str("actor"); pk.str("\xff");
  });
  expect_refused(b, "target", "control_char");
}

Test(event, severity_names_are_case_insensitive_with_aliases) {
  cr_assert_eq(event_from_msgpack(with_str("severity", "WARNING").obj(), Limits{}).value().severity, 4);
  cr_assert_eq(event_from_msgpack(with_str("severity", "Critical").obj(), Limits{}).value().severity, 2);
  cr_assert_eq(event_from_msgpack(with_str("severity", "warn").obj(), Limits{}).value().severity, 4);
  cr_assert_eq(event_from_msgpack(with_str("severity", "emerg").obj(), Limits{}).value().severity, 0);
  cr_assert_eq(event_from_msgpack(with_str("severity", "debug").obj(), Limits{}).value().severity, 7);
  expect_refused(build(1, [](Packer& pk) { pk.str("severity"); pk.boolean(true); }), "severity", "type");
}

Test(event, time_accepts_zero_and_refuses_floats) {
  auto r = event_from_msgpack(build(1, [](Packer& pk) { pk.str("time"); pk.u64(0); }).obj(), Limits{});
  cr_assert(r.ok());
  cr_assert_eq(*r.value().time, 0);
  expect_refused(build(1, [](Packer& pk) { pk.str("time"); pk.f64(1.0); }), "time", "type");
}

Test(event, idem_may_be_a_str_and_is_kept_as_bytes) {
  auto r = event_from_msgpack(with_str("idem", "retry-key-1").obj(), Limits{});
  cr_assert(r.ok());
  cr_assert_eq(r.value().idem, "retry-key-1");
  expect_refused(with_str("idem", "short"), "idem", "too_short");
  auto bin32 = build(1, [](Packer& pk) { pk.str("idem"); pk.bin(std::string(32, '\xff')); });
  cr_assert(event_from_msgpack(bin32.obj(), Limits{}).ok(), "bin idem is raw bytes: no text rules");
}

Test(event, fields_key_with_invalid_utf8_is_named_escaped) {
  auto b = build(1, [](Packer& pk) {
    pk.str("fields"); pk.map(1); pk.str("user"); pk.map(1); pk.str("n\xff"); pk.u64(1);
  });
  auto r = event_from_msgpack(b.obj(), Limits{});
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().rule, "utf8");
  cr_assert_eq(r.error().field, "fields.user.n\\xff");
  cr_assert_not(check_text(r.error().field, 1024, false).has_value());
  cr_assert_not(check_text(r.error().message, 1024, false).has_value());
}

Test(event, fields_key_over_max_string_is_too_long_and_shown_short) {
  auto b = build(1, [](Packer& pk) {
    pk.str("fields"); pk.map(1); pk.str(std::string(1025, 'k')); pk.u64(1);
  });
  auto r = event_from_msgpack(b.obj(), Limits{});
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().rule, "too_long");
  cr_assert_eq(r.error().field, "fields." + std::string(64, 'k') + "...");
}

Test(event, fields_key_must_not_be_empty) {
  expect_refused(build(1, [](Packer& pk) { pk.str("fields"); pk.map(1); pk.str(""); pk.u64(1); }),
                 "fields.", "empty");
}

Test(event, fields_keys_must_be_strings) {
  expect_refused(build(1, [](Packer& pk) { pk.str("fields"); pk.map(1); pk.u64(1); pk.u64(1); }),
                 "fields", "type");
}

Test(event, fields_floats_must_be_finite) {
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                     -std::numeric_limits<double>::infinity()})
    expect_refused(build(1, [&](Packer& pk) { pk.str("fields"); pk.map(1); pk.str("x"); pk.f64(bad); }),
                   "fields.x", "range");
}

Test(event, fields_values_of_ext_type_are_refused) {
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields"); pk.map(1); pk.str("x");
                   pk.raw(std::string("\xd4\x01\x02", 3));  // fixext1
                 }),
                 "fields.x", "type");
}

Test(event, fields_arrays_count_entries_too) {
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields"); pk.map(1); pk.str("list"); pk.array(65);
                   for (int i = 0; i < 65; ++i) pk.u64(1);
                 }),
                 "fields.list", "too_many_entries");
  Limits small;
  small.max_fields = 2;
  auto b = build(1, [](Packer& pk) { pk.str("fields"); pk.map(1); pk.str("l"); pk.array(3);
                                     pk.u64(1); pk.u64(2); pk.u64(3); });
  auto r = event_from_msgpack(b.obj(), small);
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().field, "fields.l");
  cr_assert_eq(r.error().rule, "too_many_entries");
}

Test(event, fields_depth_counts_arrays) {
  // fields(1) > a(2) > [0](3) > [0](4) holds scalars; one more level is too deep.
  auto ok = build(1, [](Packer& pk) {
    pk.str("fields"); pk.map(1); pk.str("a"); pk.array(1); pk.array(1); pk.array(1); pk.u64(1);
  });
  cr_assert(event_from_msgpack(ok.obj(), Limits{}).ok());
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields"); pk.map(1); pk.str("a"); pk.array(1); pk.array(1); pk.array(1);
                   pk.map(0);
                 }),
                 "fields.a[0][0][0]", "too_deep");
}

std::string hex_of(const std::string& s) {
  static const char* x = "0123456789abcdef";
  std::string o;
  for (unsigned char c : s) {
    o += x[c >> 4];
    o += x[c & 15];
  }
  return o;
}

Test(event, canonical_fields_use_shortest_ints_float64_and_sorted_keys) {
  auto b = build(1, [](Packer& pk) {
    pk.str("fields");
    pk.map(4);
    pk.str("u"); pk.raw(std::string("\xcf\0\0\0\0\0\0\0\x05", 9));        // uint64 5
    pk.str("n"); pk.raw(std::string("\xd3\xff\xff\xff\xff\xff\xff\xff\xfe", 9));  // int64 -2
    pk.str("f"); pk.raw(std::string("\xca\x3f\xc0\x00\x00", 5));           // float32 1.5
    pk.str("b"); pk.raw(std::string("\xd1\x01\x00", 3));                   // int16 256
  });
  auto e = event_from_msgpack(b.obj(), Limits{});
  cr_assert(e.ok());
  // {"b":256, "f":1.5 (float64), "n":-2, "u":5}
  cr_assert_eq(hex_of(e.value().fields),
               "84" "a162" "cd0100" "a166" "cb3ff8000000000000" "a16e" "fe" "a175" "05",
               "got %s", hex_of(e.value().fields).c_str());
}

Test(event, canonical_key_sort_is_bytewise_not_signed_char) {
  // "\xc3\xa9" (é) sorts after "z" byte-wise; a signed-char compare would put it first.
  auto b = build(1, [](Packer& pk) {
    pk.str("fields"); pk.map(3);
    pk.str("\xc3\xa9"); pk.u64(1); pk.str("z"); pk.u64(2); pk.str("Z"); pk.u64(3);
  });
  auto e = event_from_msgpack(b.obj(), Limits{});
  cr_assert(e.ok());
  cr_assert_eq(hex_of(e.value().fields), "83" "a15a03" "a17a02" "a2c3a901", "got %s",
               hex_of(e.value().fields).c_str());
}

Test(event, canonical_body_of_a_full_event_is_exact) {
  Event e;
  e.type = "T";
  e.severity = 3;
  e.actor = "a";
  e.action = "b";
  e.target = "c";
  e.outcome = Outcome::failure;
  e.time = 1000;
  e.message = "m";
  e.fields = "\x81\xa1k\x01";
  e.idem = "12345678";
  e.sync = true;  // not part of the body
  Trusted t{-1, 70000, 0, 5, "x"};
  std::string body = event_canonical_body(e, t);
  cr_assert_eq(hex_of(body),
               "8f"
               "a474797065" "a154"                  // type: "T"
               "a8736576657269747903"               // severity: 3
               "a56163746f72" "a161"                // actor
               "a6616374696f6e" "a162"              // action
               "a6746172676574" "a163"              // target
               "a76f7574636f6d65" "a76661696c757265"  // outcome: "failure"
               "a474696d65" "cd03e8"                // time: 1000
               "a76d657373616765" "a16d"            // message
               "a66669656c6473" "81a16b01"          // fields, spliced
               "a46964656d" "c4083132333435363738"  // idem: bin
               "a87265636569766564" "ff"            // received: -1 (ns before the epoch)
               "a3706964" "ce00011170"              // pid: 70000
               "a3756964" "00"                      // uid: 0
               "a3676964" "05"                      // gid: 5
               "a4636f6d6d" "a178",                 // comm: "x"
               "got %s", hex_of(body).c_str());
}

// Inside `fields` too, the first broken rule is the first in the order the keys were
// sent: a bad value before a bad key, and a repeated key before a later bad value, even
// though the stored form sorts the keys (issue 9, defect 7).
Test(event, fields_first_violation_is_in_the_order_sent) {
  // "z" (bad value) comes before "a\x01" (bad key); sorted, "a\x01" would come first.
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields");
                   pk.map(2);
                   pk.str("z"); pk.str("v\x01");
                   pk.str("a\x01"); pk.u64(1);
                 }),
                 "fields.z", "control_char");
  // "b" repeated, then "a" with a bad value: the repeat is found first.
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields");
                   pk.map(3);
                   pk.str("b"); pk.u64(1);
                   pk.str("b"); pk.u64(2);
                   pk.str("a"); pk.str("\xff");
                 }),
                 "fields.b", "duplicate_key");
  // A bad value in a nested map before a bad key at the outer level.
  expect_refused(build(1, [](Packer& pk) {
                   pk.str("fields");
                   pk.map(2);
                   pk.str("y");
                   pk.map(1);
                   pk.str("k"); pk.str("\xe2\x80\xae");
                   pk.str(""); pk.u64(1);
                 }),
                 "fields.y.k", "bidi");
}

Test(event, fields_checked_in_order_still_store_sorted_keys) {
  auto b = build(1, [](Packer& pk) {
    pk.str("fields");
    pk.map(3);
    pk.str("b"); pk.u64(2);
    pk.str("c"); pk.u64(3);
    pk.str("a"); pk.u64(1);
  });
  auto r = event_from_msgpack(b.obj(), Limits{});
  cr_assert(r.ok());
  cr_assert_eq(r.value().fields, std::string("\x83\xa1" "a\x01\xa1" "b\x02\xa1" "c\x03"));
}
