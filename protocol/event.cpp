// event.cpp — event validation and the canonical body (PROTOCOL.md §3, §4).
#include "event.hpp"

#include <time.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "pack.hpp"

namespace cairn::proto {

using detail::Packer;
using detail::str_of;

namespace {

constexpr std::array<std::string_view, 8> kSeverityNames = {
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};

constexpr uint32_t kMaxTypeLen = 64;
constexpr size_t kIdemMin = 8, kIdemMax = 32;

bool type_char_ok(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '.' || c == ':' || c == '-';
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

Violation make(std::string field, const char* rule, const std::string& what) {
  std::string msg = field + ": " + what;
  return Violation{std::move(field), rule, std::move(msg)};
}

const char* type_name(const msgpack_object& o) {
  switch (o.type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_EXT: return "ext";
  }
  return "?";
}

Violation wrong_type(const std::string& field, const msgpack_object& o, const char* want) {
  return make(field, "type", std::string("expected ") + want + ", got " + type_name(o));
}

std::optional<Violation> text(const std::string& field, const msgpack_object& o,
                              const Limits& limits, bool newlines) {
  if (o.type != MSGPACK_OBJECT_STR) return wrong_type(field, o, "str");
  if (auto v = check_text(str_of(o), limits.max_string, newlines)) {
    v->field = field;
    v->message = field + ": " + v->message;
    return v;
  }
  return std::nullopt;
}

// Checks a `fields` value against the rules, in the order the client sent it: for each
// map entry its key (type, text, empty, a repeat of an earlier key), then its value, so
// the first broken rule reported is the first one in the bytes (PROTOCOL.md §3).
// depth: 1 for the fields map.
std::optional<Violation> check_fields(const msgpack_object& o, const std::string& path,
                                      uint32_t depth, const Limits& limits) {
  switch (o.type) {
    case MSGPACK_OBJECT_NIL:
    case MSGPACK_OBJECT_BOOLEAN:
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      return std::nullopt;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
      if (!std::isfinite(o.via.f64)) return make(path, "range", "NaN and infinities are not allowed");
      return std::nullopt;
    case MSGPACK_OBJECT_STR:
      return text(path, o, limits, false);
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP: {
      if (depth > limits.max_depth)
        return make(path, "too_deep", "nesting deeper than " + std::to_string(limits.max_depth));
      bool is_map = o.type == MSGPACK_OBJECT_MAP;
      uint32_t count = is_map ? o.via.map.size : o.via.array.size;
      if (count > limits.max_fields)
        return make(path, "too_many_entries", std::to_string(count) + " entries exceed the limit of " +
                                                  std::to_string(limits.max_fields));
      if (!is_map) {
        for (uint32_t k = 0; k < count; ++k)
          if (auto v = check_fields(o.via.array.ptr[k], path + "[" + std::to_string(k) + "]",
                                    depth + 1, limits))
            return v;
        return std::nullopt;
      }
      for (uint32_t k = 0; k < count; ++k) {
        const auto& kv = o.via.map.ptr[k];
        if (kv.key.type != MSGPACK_OBJECT_STR)
          return make(path, "type", std::string("map keys must be str, got ") + type_name(kv.key));
        // A key that breaks the text rules is named escaped: the path goes back to the
        // client in a msgpack str, so it must be valid UTF-8 without controls itself.
        if (auto v = check_text(str_of(kv.key), limits.max_string, false)) {
          v->field = path + "." + text_for_display(str_of(kv.key));
          v->message = v->field + " (key): " + v->message;
          return v;
        }
        if (kv.key.via.str.size == 0) return make(path + ".", "empty", "empty key");
        // At most max_fields (64) earlier keys: a plain scan.
        for (uint32_t j = 0; j < k; ++j)
          if (str_of(o.via.map.ptr[j].key) == str_of(kv.key))
            return make(path + "." + std::string(str_of(kv.key)), "duplicate_key",
                        "key appears twice");
        if (auto v = check_fields(kv.val, path + "." + std::string(str_of(kv.key)), depth + 1, limits))
          return v;
      }
      return std::nullopt;
    }
    default:
      return wrong_type(path, o, "str, int, float, bool, nil, map or array");
  }
}

// Canonical encoding of a `fields` value that check_fields accepted: map keys sorted
// bytewise at every level, integers shortest, floats as float64.
void canon_fields(const msgpack_object& o, Packer& pk) {
  switch (o.type) {
    case MSGPACK_OBJECT_NIL: pk.nil(); return;
    case MSGPACK_OBJECT_BOOLEAN: pk.boolean(o.via.boolean); return;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: pk.u64(o.via.u64); return;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: pk.i64(o.via.i64); return;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: pk.f64(o.via.f64); return;
    case MSGPACK_OBJECT_STR: pk.str(str_of(o)); return;
    case MSGPACK_OBJECT_ARRAY:
      pk.array(o.via.array.size);
      for (uint32_t k = 0; k < o.via.array.size; ++k) canon_fields(o.via.array.ptr[k], pk);
      return;
    case MSGPACK_OBJECT_MAP: {
      std::vector<const msgpack_object_kv*> kvs;
      kvs.reserve(o.via.map.size);
      for (uint32_t k = 0; k < o.via.map.size; ++k) kvs.push_back(&o.via.map.ptr[k]);
      std::sort(kvs.begin(), kvs.end(), [](const auto* a, const auto* b) {
        return str_of(a->key) < str_of(b->key);
      });
      pk.map(kvs.size());
      for (const auto* kv : kvs) {
        pk.str(str_of(kv->key));
        canon_fields(kv->val, pk);
      }
      return;
    }
    default: return;  // refused by check_fields
  }
}

enum Key : uint16_t {
  kType = 1 << 0, kSeverity = 1 << 1, kActor = 1 << 2, kAction = 1 << 3, kTarget = 1 << 4,
  kOutcome = 1 << 5, kTime = 1 << 6, kMessage = 1 << 7, kFields = 1 << 8, kSync = 1 << 9,
  kIdem = 1 << 10,
};

constexpr std::array<std::pair<std::string_view, Key>, 11> kKeys{{
    {"type", kType}, {"severity", kSeverity}, {"actor", kActor}, {"action", kAction},
    {"target", kTarget}, {"outcome", kOutcome}, {"time", kTime}, {"message", kMessage},
    {"fields", kFields}, {"sync", kSync}, {"idem", kIdem},
}};

constexpr std::array<std::string_view, 9> kTrustedKeys = {"seq", "received", "pid", "uid", "gid",
                                                          "comm", "exe", "cgroup", "hash"};

}  // namespace

std::string_view outcome_name(Outcome o) {
  switch (o) {
    case Outcome::success: return "success";
    case Outcome::failure: return "failure";
    case Outcome::unknown: break;
  }
  return "unknown";
}

std::optional<Outcome> outcome_from_name(std::string_view s) {
  if (s == "success") return Outcome::success;
  if (s == "failure") return Outcome::failure;
  if (s == "unknown") return Outcome::unknown;
  return std::nullopt;
}

std::string_view severity_name(uint8_t severity) {
  return severity < kSeverityNames.size() ? kSeverityNames[severity] : "?";
}

std::optional<uint8_t> severity_from_name(std::string_view s) {
  std::string l = lower(s);
  for (size_t i = 0; i < kSeverityNames.size(); ++i)
    if (l == kSeverityNames[i]) return static_cast<uint8_t>(i);
  if (l == "emergency" || l == "panic") return 0;
  if (l == "critical") return 2;
  if (l == "error") return 3;
  if (l == "warn") return 4;
  if (l == "informational") return 6;
  return std::nullopt;
}

Result<Event, Violation> event_from_msgpack(const msgpack_object& obj, const Limits& limits) {
  if (obj.type != MSGPACK_OBJECT_MAP) return Err{wrong_type("event", obj, "map")};
  Event ev;
  uint16_t seen = 0;
  for (uint32_t k = 0; k < obj.via.map.size; ++k) {
    const auto& kv = obj.via.map.ptr[k];
    if (kv.key.type != MSGPACK_OBJECT_STR)
      return Err{make("event", "type", std::string("keys must be str, got ") + type_name(kv.key))};
    std::string_view name = str_of(kv.key);
    Key key{};
    for (const auto& [n, kk] : kKeys)
      if (n == name) key = kk;
    if (key == Key{}) {
      // Never echo an unchecked key into the reply verbatim if it is not clean text.
      std::string shown = text_for_display(name);
      for (auto t : kTrustedKeys)
        if (t == name)
          return Err{make(shown, "trusted_field", "is set by the daemon and may not be sent")};
      return Err{make(shown, "unknown_key", "is not an event key (see PROTOCOL.md §3)")};
    }
    std::string field(name);
    if (seen & key) return Err{make(field, "duplicate_key", "key appears twice")};
    seen |= key;
    const msgpack_object& v = kv.val;
    switch (key) {
      case kType: {
        if (v.type != MSGPACK_OBJECT_STR) return Err{wrong_type(field, v, "str")};
        std::string_view t = str_of(v);
        if (t.empty()) return Err{make(field, "empty", "must not be empty")};
        if (t.size() > kMaxTypeLen || !std::all_of(t.begin(), t.end(), type_char_ok))
          return Err{make(field, "pattern", "must be 1-64 characters of [A-Za-z0-9_.:-]")};
        // cairnd's own records (seals, lost-seq placeholders) live in this namespace; a
        // client's "cairn.seal" would be a forged seal verify has to reject.
        if (t.size() >= 6 && t.substr(0, 6) == "cairn.")
          return Err{make(field, "reserved", "types starting with 'cairn.' are written by cairnd only")};
        ev.type = std::string(t);
        break;
      }
      case kSeverity:
        if (v.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
          if (v.via.u64 > 7) return Err{make(field, "range", "must be 0-7 (syslog levels)")};
          ev.severity = static_cast<uint8_t>(v.via.u64);
        } else if (v.type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
          return Err{make(field, "range", "must be 0-7 (syslog levels)")};
        } else if (v.type == MSGPACK_OBJECT_STR) {
          auto s = severity_from_name(str_of(v));
          if (!s) return Err{make(field, "range", "unknown severity name")};
          ev.severity = *s;
        } else {
          return Err{wrong_type(field, v, "uint or severity name")};
        }
        break;
      case kActor:
      case kAction:
      case kTarget: {
        if (auto bad = text(field, v, limits, false)) return Err{*bad};
        auto& dst = key == kActor ? ev.actor : key == kAction ? ev.action : ev.target;
        dst = std::string(str_of(v));
        break;
      }
      case kOutcome: {
        if (v.type != MSGPACK_OBJECT_STR) return Err{wrong_type(field, v, "str")};
        auto o = outcome_from_name(str_of(v));
        if (!o) return Err{make(field, "range", "must be success, failure or unknown")};
        ev.outcome = *o;
        break;
      }
      case kTime:
        if (v.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
          if (v.via.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            return Err{make(field, "range", "out of range")};
          ev.time = static_cast<int64_t>(v.via.u64);
        } else if (v.type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
          return Err{make(field, "range", "must not be negative (ns since the Unix epoch)")};
        } else {
          return Err{wrong_type(field, v, "int (ns since the Unix epoch)")};
        }
        break;
      case kMessage:
        if (auto bad = text(field, v, limits, true)) return Err{*bad};
        ev.message = std::string(str_of(v));
        break;
      case kFields: {
        if (v.type != MSGPACK_OBJECT_MAP) return Err{wrong_type(field, v, "map")};
        if (auto bad = check_fields(v, "fields", 1, limits)) return Err{*bad};
        Packer pk(ev.fields);
        canon_fields(v, pk);
        break;
      }
      case kSync:
        if (v.type != MSGPACK_OBJECT_BOOLEAN) return Err{wrong_type(field, v, "bool")};
        ev.sync = v.via.boolean;
        break;
      case kIdem: {
        std::string_view b;
        if (v.type == MSGPACK_OBJECT_BIN) b = detail::bin_of(v);
        else if (v.type == MSGPACK_OBJECT_STR) b = str_of(v);
        else return Err{wrong_type(field, v, "bin")};
        if (b.size() < kIdemMin) return Err{make(field, "too_short", "must be 8-32 bytes")};
        if (b.size() > kIdemMax) return Err{make(field, "too_long", "must be 8-32 bytes")};
        ev.idem = std::string(b);
        break;
      }
    }
  }
  if (!(seen & kType)) return Err{make("type", "required", "is required")};
  return ev;
}

std::string event_canonical_body(const Event& e, const Trusted& t, size_t* received_at) {
  std::string out;
  out.reserve(128 + e.type.size() + e.fields.size() + (e.message ? e.message->size() : 0));
  Packer pk(out);
  size_t n = 8 + (t.exe.empty() ? 0 : 1) + (t.cgroup.empty() ? 0 : 1) + (e.actor ? 1 : 0) + (e.action ? 1 : 0) + (e.target ? 1 : 0) + (e.time ? 1 : 0) +
             (e.message ? 1 : 0) + (e.fields.empty() ? 0 : 1) + (e.idem.empty() ? 0 : 1);
  pk.map(n);
  pk.str("type");
  pk.str(e.type);
  pk.str("severity");
  pk.u64(e.severity);
  if (e.actor) { pk.str("actor"); pk.str(*e.actor); }
  if (e.action) { pk.str("action"); pk.str(*e.action); }
  if (e.target) { pk.str("target"); pk.str(*e.target); }
  pk.str("outcome");
  pk.str(outcome_name(e.outcome));
  if (e.time) { pk.str("time"); pk.i64(*e.time); }
  if (e.message) { pk.str("message"); pk.str(*e.message); }
  if (!e.fields.empty()) { pk.str("fields"); pk.raw(e.fields); }
  if (!e.idem.empty()) { pk.str("idem"); pk.bin(e.idem); }
  pk.str("received");
  if (received_at) *received_at = t.received >= (int64_t{1} << 32) ? out.size() + 1 : 0;
  pk.i64(t.received);
  pk.str("pid");
  pk.u64(t.pid);
  pk.str("uid");
  pk.u64(t.uid);
  pk.str("gid");
  pk.u64(t.gid);
  pk.str("comm");
  pk.str(t.comm);
  // Optional, so bodies of peers we could not inspect (and older records) keep their
  // bytes; after comm, so the order of every older key is unchanged.
  if (!t.exe.empty()) { pk.str("exe"); pk.str(t.exe); }
  if (!t.cgroup.empty()) { pk.str("cgroup"); pk.str(t.cgroup); }
  return out;
}

std::string utc_text(int64_t ns) {
  time_t t = static_cast<time_t>(ns / 1'000'000'000);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

}  // namespace cairn::proto
