// message.cpp — request parsing, reply encoding, and the client-side decoders.
#include "message.hpp"

#include <array>
#include <cstring>
#include <unordered_set>

#include "name_table.hpp"
#include "pack.hpp"

namespace cairn::proto {

using detail::begin_frame;
using detail::finish_frame;
using detail::Packer;
using detail::str_of;

namespace {

constexpr std::array<std::pair<Op, std::string_view>, 8> kOps{{
    {Op::hello, "hello"}, {Op::append, "append"}, {Op::flush, "flush"}, {Op::query, "query"},
    {Op::stats, "stats"}, {Op::verify, "verify"}, {Op::ping, "ping"}, {Op::subscribe, "subscribe"},
}};

Violation bad(std::string field, const char* rule, const std::string& what) {
  std::string msg = field + ": " + what;
  return Violation{std::move(field), rule, std::move(msg)};
}

std::optional<uint64_t> get_uint(const msgpack_object& map, std::string_view key) {
  const msgpack_object* o = map_get(map, key);
  if (o == nullptr || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return std::nullopt;
  return o->via.u64;
}

bool get_bool(const msgpack_object& map, std::string_view key) {
  const msgpack_object* o = map_get(map, key);
  return o != nullptr && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

std::string get_str(const msgpack_object& map, std::string_view key) {
  const msgpack_object* o = map_get(map, key);
  if (o == nullptr || o->type != MSGPACK_OBJECT_STR) return {};
  return std::string(str_of(*o));
}

void put_hash(Packer& pk, const Hash& h) {
  pk.bin({reinterpret_cast<const char*>(h.data()), h.size()});
}

bool read_hash(const msgpack_object& map, std::string_view key, Hash& out) {
  const msgpack_object* o = map_get(map, key);
  if (o == nullptr || o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != out.size()) return false;
  std::memcpy(out.data(), o->via.bin.ptr, out.size());
  return true;
}

// Repacks a decoded object into canonical-as-sent bytes.
std::string repack(const msgpack_object& o) {
  std::string out;
  Packer pk(out);
  msgpack_pack_object(&pk.pk, o);
  return out;
}

}  // namespace

std::string_view op_name(Op op) { return name_in(kOps, op, "?"); }

std::optional<Op> op_from_name(std::string_view s) { return value_in(kOps, s); }

// ---- Decoded ----

Decoded::Decoded() { msgpack_unpacked_init(&unpacked_); }
Decoded::~Decoded() { msgpack_unpacked_destroy(&unpacked_); }
Decoded::Decoded(Decoded&& other) noexcept : unpacked_(other.unpacked_) {
  msgpack_unpacked_init(&other.unpacked_);
}
Decoded& Decoded::operator=(Decoded&& other) noexcept {
  if (this != &other) {
    msgpack_unpacked_destroy(&unpacked_);
    unpacked_ = other.unpacked_;
    msgpack_unpacked_init(&other.unpacked_);
  }
  return *this;
}

Result<Decoded, std::string> Decoded::parse(std::span<const uint8_t> bytes, uint32_t max_depth) {
  if (auto why = msgpack_prescan(bytes, max_depth)) return Err{*why};
  Decoded d;
  size_t off = 0;
  msgpack_unpack_return rc = msgpack_unpack_next(
      &d.unpacked_, reinterpret_cast<const char*>(bytes.data()), bytes.size(), &off);
  if (rc != MSGPACK_UNPACK_SUCCESS || off != bytes.size())
    return Err{std::string("payload is not one msgpack object")};
  if (d.unpacked_.data.type != MSGPACK_OBJECT_MAP) return Err{std::string("payload is not a map")};
  return d;
}

const msgpack_object* map_get(const msgpack_object& map, std::string_view key) {
  if (map.type != MSGPACK_OBJECT_MAP) return nullptr;
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == MSGPACK_OBJECT_STR && str_of(kv.key) == key) return &kv.val;
  }
  return nullptr;
}

// ---- requests (daemon side) ----

namespace {

// The first str key (in the order sent) that repeats an earlier one: map_get would
// silently take the first copy. Linear: a frame may hold tens of thousands of keys.
std::optional<std::string_view> repeated_key(const msgpack_object& m) {
  const uint32_t n = m.via.map.size;
  if (n <= 8) {  // every real request: no allocation
    for (uint32_t i = 1; i < n; ++i) {
      const auto& ki = m.via.map.ptr[i].key;
      if (ki.type != MSGPACK_OBJECT_STR) continue;
      for (uint32_t j = 0; j < i; ++j) {
        const auto& kj = m.via.map.ptr[j].key;
        if (kj.type == MSGPACK_OBJECT_STR && str_of(kj) == str_of(ki)) return str_of(ki);
      }
    }
    return std::nullopt;
  }
  std::unordered_set<std::string_view> seen;
  seen.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    const auto& k = m.via.map.ptr[i].key;
    if (k.type == MSGPACK_OBJECT_STR && !seen.insert(str_of(k)).second) return str_of(k);
  }
  return std::nullopt;
}

}  // namespace

Result<Request, RequestError> request_from(const Decoded& decoded) {
  const msgpack_object& m = decoded.root();
  Request r;
  r.map = &m;
  const msgpack_object* id = map_get(m, "id");
  if (id != nullptr && id->type == MSGPACK_OBJECT_POSITIVE_INTEGER) r.id = id->via.u64;
  if (auto dup = repeated_key(m)) {
    // Which value was meant is unknowable: refuse the request, naming the key. A repeated
    // id is echoed as 0, since neither copy can be trusted to be the one the client reads.
    std::string shown = text_for_display(*dup);
    return Err{RequestError{ErrorCode::invalid_field, *dup == "id" ? 0 : r.id, shown,
                            shown + ": key appears twice in the request", "duplicate_key"}};
  }
  if (id == nullptr)
    return Err{RequestError{ErrorCode::malformed, 0, "id", "request has no id"}};
  if (id->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
    return Err{RequestError{ErrorCode::malformed, 0, "id", "id must be an unsigned integer"}};
  const msgpack_object* op = map_get(m, "op");
  if (op == nullptr) return Err{RequestError{ErrorCode::malformed, r.id, "op", "request has no op"}};
  if (op->type != MSGPACK_OBJECT_STR)
    return Err{RequestError{ErrorCode::malformed, r.id, "op", "op must be a string"}};
  auto o = op_from_name(str_of(*op));
  if (!o) {
    std::string shown = text_for_display(str_of(*op));
    return Err{RequestError{ErrorCode::unknown_op, r.id, "op", "unknown op '" + shown + "'"}};
  }
  r.op = *o;
  return r;
}

Result<Hello, Violation> hello_from(const Request& req) {
  Hello h;
  if (const msgpack_object* v = map_get(*req.map, "version")) {
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
      return Err{bad("version", "type", "expected uint")};
    if (v->via.u64 > 0xffffffffu) return Err{bad("version", "range", "out of range")};
    h.version = static_cast<uint32_t>(v->via.u64);
  }
  if (const msgpack_object* c = map_get(*req.map, "client")) {
    if (c->type != MSGPACK_OBJECT_STR) return Err{bad("client", "type", "expected str")};
    if (auto v = check_text(str_of(*c), 64, false)) {
      v->field = "client";
      v->message = "client: " + v->message;
      return Err{*v};
    }
    h.client = std::string(str_of(*c));
  }
  return h;
}

Result<VerifyArgs, Violation> verify_args_from(const Request& req) {
  VerifyArgs a;
  const msgpack_object& m = *req.map;
  if (const msgpack_object* v = map_get(m, "key")) {
    if (v->type != MSGPACK_OBJECT_STR) return Err{bad("key", "type", "expected str")};
    if (v->via.str.size > 512) return Err{bad("key", "too_long", "a verifier key is under 512 bytes")};
    a.key = std::string(str_of(*v));
  }
  if (const msgpack_object* v = map_get(m, "checkpoints")) {
    if (v->type != MSGPACK_OBJECT_ARRAY) return Err{bad("checkpoints", "type", "expected array of str")};
    if (v->via.array.size > 16) return Err{bad("checkpoints", "too_many_entries", "at most 16")};
    for (uint32_t i = 0; i < v->via.array.size; ++i) {
      const msgpack_object& c = v->via.array.ptr[i];
      std::string f = "checkpoints[" + std::to_string(i) + "]";
      if (c.type != MSGPACK_OBJECT_STR) return Err{bad(f, "type", "expected str")};
      if (c.via.str.size > 4096) return Err{bad(f, "too_long", "a checkpoint is under 4 KiB")};
      a.checkpoints.emplace_back(str_of(c));
    }
  }
  if (const msgpack_object* v = map_get(m, "fresh")) {
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return Err{bad("fresh", "type", "expected uint (ns)")};
    a.fresh_ns = v->via.u64;
  }
  return a;
}

namespace {

constexpr std::array<std::pair<Column, std::string_view>, 9> kColumns{{
    {Column::type, "type"}, {Column::actor, "actor"}, {Column::action, "action"},
    {Column::target, "target"}, {Column::comm, "comm"}, {Column::outcome, "outcome"},
    {Column::uid, "uid"}, {Column::pid, "pid"}, {Column::gid, "gid"},
}};

// One str, or an array of 1..kMaxMatchValues str, each following the text rules.
Result<std::vector<std::string>, Violation> str_values(const msgpack_object& v, const std::string& name,
                                                       uint32_t max_string) {
  std::vector<std::string> out;
  const msgpack_object* items = &v;
  uint32_t n = 1;
  if (v.type == MSGPACK_OBJECT_ARRAY) {
    if (v.via.array.size == 0 || v.via.array.size > kMaxMatchValues)
      return Err{bad(name, "too_many_entries", "1-" + std::to_string(kMaxMatchValues) + " values")};
    items = v.via.array.ptr;
    n = v.via.array.size;
  }
  for (uint32_t i = 0; i < n; ++i) {
    if (items[i].type != MSGPACK_OBJECT_STR) return Err{bad(name, "type", "expected str or array of str")};
    if (auto e = check_text(str_of(items[i]), max_string, false)) {
      e->field = name;
      e->message = name + ": " + e->message;
      return Err{*e};
    }
    out.emplace_back(str_of(items[i]));
  }
  return out;
}

// One integer, or an array of them (outcome: names or their numbers).
Result<std::vector<int64_t>, Violation> int_values(const msgpack_object& v, Column col) {
  std::string name(column_name(col));
  std::vector<int64_t> out;
  const msgpack_object* items = &v;
  uint32_t n = 1;
  if (v.type == MSGPACK_OBJECT_ARRAY) {
    if (v.via.array.size == 0 || v.via.array.size > kMaxMatchValues)
      return Err{bad(name, "too_many_entries", "1-" + std::to_string(kMaxMatchValues) + " values")};
    items = v.via.array.ptr;
    n = v.via.array.size;
  }
  for (uint32_t i = 0; i < n; ++i) {
    const msgpack_object& o = items[i];
    if (col == Column::outcome) {
      auto oc = o.type == MSGPACK_OBJECT_STR ? outcome_from_name(str_of(o)) : std::nullopt;
      if (!oc) return Err{bad(name, "range", "expected success, failure or unknown")};
      out.push_back(static_cast<int64_t>(*oc));
    } else {
      if (o.type != MSGPACK_OBJECT_POSITIVE_INTEGER || o.via.u64 > 0xffffffffu)
        return Err{bad(name, "type", "expected uint32 or array of uint32")};
      out.push_back(static_cast<int64_t>(o.via.u64));
    }
  }
  return out;
}

// Reads column `col` of the request into q: a single str type/actor into q.type/q.actor
// (as version 1 sent them), everything else into q.match.
Result<Ok, Violation> column_match_from(const msgpack_object& m, Column col, const Limits& limits,
                                        QuerySpec& q) {
  const msgpack_object* v = map_get(m, column_name(col));
  if (v == nullptr) return Ok{};
  ColumnMatch cm;
  cm.column = col;
  if (column_is_int(col)) {
    auto r = int_values(*v, col);
    if (!r) return Err{r.error()};
    cm.ints = std::move(r.value());
  } else {
    auto r = str_values(*v, std::string(column_name(col)), limits.max_string);
    if (!r) return Err{r.error()};
    if (v->type == MSGPACK_OBJECT_STR && (col == Column::type || col == Column::actor)) {
      (col == Column::type ? q.type : q.actor) = std::move(r.value().front());
      return Ok{};
    }
    cm.text = std::move(r.value());
  }
  q.match.push_back(std::move(cm));
  return Ok{};
}

}  // namespace

std::string_view column_name(Column c) { return name_in(kColumns, c, "?"); }

std::optional<Column> column_from_name(std::string_view s) { return value_in(kColumns, s); }

bool column_is_int(Column c) {
  return c == Column::outcome || c == Column::uid || c == Column::pid || c == Column::gid;
}

Result<QuerySpec, Violation> query_from(const Request& req, const Limits& limits) {
  QuerySpec q;
  const msgpack_object& m = *req.map;
  for (Column col : {Column::type, Column::actor, Column::action, Column::target, Column::comm,
                     Column::outcome, Column::uid, Column::pid, Column::gid}) {
    auto r = column_match_from(m, col, limits, q);
    if (!r) return Err{r.error()};
  }
  if (const msgpack_object* v = map_get(m, "fields")) {
    if (v->type != MSGPACK_OBJECT_MAP)
      return Err{bad("fields", "type", "expected a map of key path -> str or array of str")};
    if (v->via.map.size > kMaxFieldMatches)
      return Err{bad("fields", "too_many_entries", "at most " + std::to_string(kMaxFieldMatches) + " keys")};
    for (uint32_t i = 0; i < v->via.map.size; ++i) {
      const msgpack_object_kv& kv = v->via.map.ptr[i];
      if (kv.key.type != MSGPACK_OBJECT_STR || kv.key.via.str.size == 0)
        return Err{bad("fields", "type", "keys must be non-empty str")};
      FieldMatch f;
      f.path = std::string(str_of(kv.key));
      std::string name = "fields." + text_for_display(f.path);
      if (auto e = check_text(f.path, limits.max_string, false)) {
        e->field = name;
        e->message = name + ": " + e->message;
        return Err{*e};
      }
      auto vals = str_values(kv.val, name, limits.max_string);
      if (!vals) return Err{vals.error()};
      f.values = std::move(vals.value());
      q.fields.push_back(std::move(f));
    }
  }
  if (const msgpack_object* v = map_get(m, "text")) {
    if (v->type != MSGPACK_OBJECT_STR) return Err{bad("text", "type", "expected str")};
    if (v->via.str.size == 0) return Err{bad("text", "empty", "must not be empty")};
    if (auto e = check_text(str_of(*v), limits.max_string, false)) {
      e->field = "text";
      e->message = "text: " + e->message;
      return Err{*e};
    }
    q.text = std::string(str_of(*v));
  }
  if (const msgpack_object* v = map_get(m, "order")) {
    std::string_view o = v->type == MSGPACK_OBJECT_STR ? str_of(*v) : std::string_view();
    if (o != "newest" && o != "oldest") return Err{bad("order", "range", "must be \"newest\" or \"oldest\"")};
    q.oldest_first = o == "oldest";
  }
  if (const msgpack_object* v = map_get(m, "wait")) {
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 > kMaxQueryWaitMs)
      return Err{bad("wait", "range", "expected uint ms, at most " + std::to_string(kMaxQueryWaitMs))};
    q.wait_ms = static_cast<uint32_t>(v->via.u64);
  }
  if (q.wait_ms && !q.oldest_first) return Err{bad("wait", "range", "needs order \"oldest\"")};
  if (const msgpack_object* v = map_get(m, "scan")) {
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 == 0)
      return Err{bad("scan", "range", "expected uint >= 1 (rows)")};
    q.scan = v->via.u64;
  }
  for (const char* key : {"since", "until"}) {
    if (const msgpack_object* v = map_get(m, key)) {
      int64_t t;
      if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > INT64_MAX) return Err{bad(key, "range", "out of range")};
        t = static_cast<int64_t>(v->via.u64);
      } else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        t = v->via.i64;
      } else {
        return Err{bad(key, "type", "expected int (ns since the Unix epoch)")};
      }
      (std::strcmp(key, "since") == 0 ? q.since : q.until) = t;
    }
  }
  if (const msgpack_object* v = map_get(m, "severity")) {
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER || v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
      if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || v->via.u64 > 7)
        return Err{bad("severity", "range", "must be 0-7 (syslog levels)")};
      q.severity = static_cast<uint8_t>(v->via.u64);
    } else if (v->type == MSGPACK_OBJECT_STR) {
      auto s = severity_from_name(str_of(*v));
      if (!s) return Err{bad("severity", "range", "unknown severity name")};
      q.severity = *s;
    } else {
      return Err{bad("severity", "type", "expected uint 0-7 or a severity name")};
    }
  }
  if (const msgpack_object* v = map_get(m, "limit")) {
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
      return Err{bad("limit", "range", "must be 1-" + std::to_string(kMaxQueryLimit))};
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return Err{bad("limit", "type", "expected uint")};
    if (v->via.u64 < 1 || v->via.u64 > kMaxQueryLimit)
      return Err{bad("limit", "range", "must be 1-" + std::to_string(kMaxQueryLimit))};
    q.limit = static_cast<uint32_t>(v->via.u64);
  }
  if (const msgpack_object* v = map_get(m, "after")) {
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return Err{bad("after", "type", "expected uint")};
    q.after = v->via.u64;
  }
  return q;
}

Result<QuerySpec, Violation> subscribe_from(const Request& req, const Limits& limits) {
  // `order` and `wait` are checked here first, so their errors name what subscribe
  // allows, not what query does.
  if (const msgpack_object* v = map_get(*req.map, "order")) {
    if (v->type != MSGPACK_OBJECT_STR || str_of(*v) != "oldest")
      return Err{bad("order", "range", "subscribe always walks oldest first: \"oldest\" or absent")};
  }
  if (map_get(*req.map, "wait") != nullptr)
    return Err{bad("wait", "unknown_key", "not used by subscribe (a subscription waits by itself)")};
  auto q = query_from(req, limits);
  if (!q) return q;
  q.value().oldest_first = true;
  return q;
}

// ---- replies (daemon side) ----

namespace {

// `s` cut to at most `max` bytes on a UTF-8 boundary, with "..." marking the cut.
std::string_view cut_utf8(std::string_view s, size_t max, std::string& buf) {
  if (s.size() <= max) return s;
  size_t n = max - 3;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;  // continuation
  buf.assign(s.substr(0, n));
  buf += "...";
  return buf;
}

}  // namespace

void encode_error(std::string& out, uint64_t id, ErrorCode code, std::string_view message,
                  std::string_view field, std::string_view rule) {
  std::string mbuf, fbuf;
  message = cut_utf8(message, kMaxErrorMessage, mbuf);
  field = cut_utf8(field, kMaxErrorField, fbuf);
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(4 + (field.empty() ? 0 : 1) + (rule.empty() ? 0 : 1));
  pk.str("id");
  pk.u64(id);
  pk.str("ok");
  pk.boolean(false);
  pk.str("error");
  pk.str(error_code_name(code));
  pk.str("message");
  pk.str(message);
  if (!field.empty()) { pk.str("field"); pk.str(field); }
  if (!rule.empty()) { pk.str("rule"); pk.str(rule); }
  finish_frame(out, at);
}

void encode_hello_reply(std::string& out, uint64_t id, const HelloInfo& info) {
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(10);
  pk.str("id"); pk.u64(id);
  pk.str("ok"); pk.boolean(true);
  pk.str("version"); pk.u64(kProtocolVersion);
  pk.str("server"); pk.str(info.server);
  pk.str("flush_mode"); pk.str(info.flush_mode);
  pk.str("max_frame"); pk.u64(info.limits.max_frame);
  pk.str("max_string"); pk.u64(info.limits.max_string);
  pk.str("max_fields"); pk.u64(info.limits.max_fields);
  pk.str("max_depth"); pk.u64(info.limits.max_depth);
  pk.str("max_inflight"); pk.u64(info.max_inflight);
  finish_frame(out, at);
}

void encode_ack(std::string& out, uint64_t id, uint64_t seq, bool durable, bool duplicate) {
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(5);
  pk.str("id"); pk.u64(id);
  pk.str("ok"); pk.boolean(true);
  pk.str("seq"); pk.u64(seq);
  pk.str("durable"); pk.boolean(durable);
  pk.str("duplicate"); pk.boolean(duplicate);
  finish_frame(out, at);
}

void encode_flush_reply(std::string& out, uint64_t id, uint64_t durable_seq) {
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(3);
  pk.str("id"); pk.u64(id);
  pk.str("ok"); pk.boolean(true);
  pk.str("durable_seq"); pk.u64(durable_seq);
  finish_frame(out, at);
}

void encode_pong(std::string& out, uint64_t id) {
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(2);
  pk.str("id"); pk.u64(id);
  pk.str("ok"); pk.boolean(true);
  finish_frame(out, at);
}

QueryReplyBuilder::QueryReplyBuilder(std::string& out, uint64_t id) : out_(out) {
  frame_at_ = begin_frame(out_);
  Packer pk(out_);
  pk.map(4);
  pk.str("id"); pk.u64(id);
  pk.str("ok"); pk.boolean(true);
  pk.str("events");
  count_at_ = out_.size();
  out_.append("\xdc\0\0", 3);  // array16; the count is patched by finish()
}

void QueryReplyBuilder::add(uint64_t seq, std::string_view hash, std::string_view body) {
  Packer pk(out_);
  pk.map(3);
  pk.str("seq"); pk.u64(seq);
  pk.str("hash"); pk.bin(hash);
  pk.str("event"); pk.raw(body);  // already a canonical msgpack map
  ++count_;
}

namespace {

size_t uint_size(uint64_t v) {
  return v < 128 ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}
size_t str_header_size(size_t n) { return n < 32 ? 1 : n <= 0xff ? 2 : n <= 0xffff ? 3 : 5; }

}  // namespace

namespace {
// One entry: fixmap, "seq" u64, "hash" bin8 of 32, "event" body; then finish() adds
// "next" and at most a u64.
constexpr size_t kEntry = 1 + 4 + 9 + 5 + 2 + 32 + 6;
constexpr size_t kFinish = 5 + 9;
constexpr size_t kScanned = 8 + 9;  // "scanned" and a u64
}  // namespace

bool QueryReplyBuilder::fits(size_t body_size, uint32_t max_payload) const {
  size_t payload = out_.size() - frame_at_ - kFrameHeaderSize;
  return payload + kEntry + body_size + kFinish <= max_payload;
}

bool QueryReplyBuilder::room_for_scanned(uint32_t max_payload) const {
  size_t payload = out_.size() - frame_at_ - kFrameHeaderSize;
  return payload + kFinish + kScanned <= max_payload;
}

bool QueryReplyBuilder::fits_alone(size_t body_size, uint32_t max_payload) {
  std::string scratch;
  QueryReplyBuilder empty(scratch, UINT64_MAX);  // the longest id
  return empty.fits(body_size, max_payload);
}

void QueryReplyBuilder::finish(std::optional<uint64_t> next, uint64_t scanned) {
  out_[count_at_ + 1] = static_cast<char>(count_ >> 8);
  out_[count_at_ + 2] = static_cast<char>(count_);
  Packer pk(out_);
  if (scanned > 0) {
    // The map header said 4 entries; a fixmap's count is its low nibble.
    out_[frame_at_ + kFrameHeaderSize] = static_cast<char>(0x85);
    pk.str("scanned"); pk.u64(scanned);
  }
  pk.str("next");
  if (next) pk.u64(*next);
  else pk.nil();
  finish_frame(out_, frame_at_);
}

void encode_query_reply(std::string& out, uint64_t id, const QueryPage& page) {
  QueryReplyBuilder b(out, id);
  for (const auto& e : page.events)
    b.add(e.seq, {reinterpret_cast<const char*>(e.hash.data()), e.hash.size()}, e.body);
  b.finish(page.next);
}

void encode_stats_reply(std::string& out, uint64_t id, const Stats& s, uint32_t max_payload) {
  // Everything but by_type fits in 1152 bytes (31 short keys, numbers, a flush mode and a
  // disk action name, 13 histogram counts); by_type gets the rest, most frequent types
  // first, and says how many it left out.
  constexpr size_t kFixed = 1152;
  size_t room = max_payload > kFixed ? max_payload - kFixed : 0;
  size_t shown = 0, used = 5;  // the map header
  for (const auto& [t, n] : s.by_type) {
    size_t entry = str_header_size(t.size()) + t.size() + uint_size(n);
    if (used + entry > room) break;
    used += entry;
    ++shown;
  }
  size_t omitted = s.by_type.size() - shown;
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(31 + (omitted > 0 ? 1 : 0));
  pk.str("id"); pk.u64(id);
  pk.str("ok"); pk.boolean(true);
  pk.str("events"); pk.u64(s.events);
  pk.str("by_type");
  pk.map(shown);
  for (size_t i = 0; i < shown; ++i) { pk.str(s.by_type[i].first); pk.u64(s.by_type[i].second); }
  if (omitted > 0) { pk.str("by_type_omitted"); pk.u64(omitted); }
  pk.str("head_seq"); pk.u64(s.head_seq);
  pk.str("queue_depth"); pk.u64(s.queue_depth);
  pk.str("queue_bytes"); pk.u64(s.queue_bytes);
  pk.str("commits"); pk.u64(s.commits);
  pk.str("events_committed"); pk.u64(s.events_committed);
  pk.str("events_per_commit"); pk.f64(s.events_per_commit);
  pk.str("fsync_p50_us"); pk.u64(s.fsync_p50_us);
  pk.str("fsync_p99_us"); pk.u64(s.fsync_p99_us);
  pk.str("fsync_max_us"); pk.u64(s.fsync_max_us);
  pk.str("storage_errors"); pk.u64(s.storage_errors);
  pk.str("lost_nondurable"); pk.u64(s.lost_nondurable);
  pk.str("seals"); pk.u64(s.seals);
  pk.str("db_bytes"); pk.u64(s.db_bytes);
  pk.str("connections"); pk.u64(s.connections);
  pk.str("flush_mode"); pk.str(s.flush_mode);
  pk.str("uptime_s"); pk.u64(s.uptime_s);
  pk.str("commit_hist");
  pk.array(s.commit_hist.size());
  for (uint64_t n : s.commit_hist) pk.u64(n);
  pk.str("commit_us_sum"); pk.u64(s.commit_us_sum);
  pk.str("disk_free_bytes"); pk.u64(s.disk_free_bytes);
  pk.str("disk_reserve_bytes"); pk.u64(s.disk_reserve_bytes);
  pk.str("storage_full"); pk.boolean(s.storage_full);
  pk.str("disk_full_action"); pk.str(s.disk_full_action);
  pk.str("storage_full_refusals"); pk.u64(s.storage_full_refusals);
  pk.str("archived_through"); pk.u64(s.archived_through);
  pk.str("removed_through"); pk.u64(s.removed_through);
  pk.str("archive_segments"); pk.u64(s.archive_segments);
  pk.str("archive_bytes"); pk.u64(s.archive_bytes);
  finish_frame(out, at);
}

void encode_verify_reply(std::string& out, uint64_t id, const VerifyReport& r) {
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(14 + (r.break_seq ? 2 : 0) + (r.failure.empty() ? 0 : 1));
  pk.str("id"); pk.u64(id);
  pk.str("ok"); pk.boolean(true);
  pk.str("valid"); pk.boolean(r.valid);
  pk.str("checked"); pk.u64(r.checked);
  pk.str("head_seq"); pk.u64(r.head_seq);
  pk.str("head_hash"); put_hash(pk, r.head_hash);
  if (r.break_seq) {
    pk.str("break_seq"); pk.u64(*r.break_seq);
    pk.str("reason"); pk.str(r.reason);
  }
  if (!r.failure.empty()) {
    pk.str("failure"); pk.str(r.failure);
  }
  pk.str("root"); put_hash(pk, r.root);
  pk.str("keyed"); pk.boolean(r.keyed);
  pk.str("epochs"); pk.u64(r.epochs);
  pk.str("sealed_seq"); pk.u64(r.sealed_seq);
  pk.str("sealed_time"); pk.i64(r.sealed_time);
  pk.str("unsealed"); pk.u64(r.unsealed);
  pk.str("checkpoints"); pk.u64(r.checkpoints);
  pk.str("notes");
  pk.array(r.notes.size());
  for (const auto& n : r.notes) pk.str(n);
  finish_frame(out, at);
}

// ---- requests (client side) ----

void encode_hello(std::string& out, uint64_t id, uint32_t version, std::string_view client) {
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(client.empty() ? 3 : 4);
  pk.str("op"); pk.str("hello");
  pk.str("id"); pk.u64(id);
  pk.str("version"); pk.u64(version);
  if (!client.empty()) { pk.str("client"); pk.str(client); }
  finish_frame(out, at);
}

void encode_append(std::string& out, uint64_t id, const EventView& e) {
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(3);
  pk.str("op"); pk.str("append");
  pk.str("id"); pk.u64(id);
  pk.str("event");
  size_t n = 1 + (e.severity ? 1 : 0) + (e.actor ? 1 : 0) + (e.action ? 1 : 0) +
             (e.target ? 1 : 0) + (e.message ? 1 : 0) + (e.outcome ? 1 : 0) + (e.time ? 1 : 0) +
             (e.fields.empty() ? 0 : 1) + (e.sync ? 1 : 0) + (e.idem.empty() ? 0 : 1);
  pk.map(n);
  pk.str("type"); pk.str(e.type);
  if (e.severity) { pk.str("severity"); pk.u64(*e.severity); }
  if (e.actor) { pk.str("actor"); pk.str(*e.actor); }
  if (e.action) { pk.str("action"); pk.str(*e.action); }
  if (e.target) { pk.str("target"); pk.str(*e.target); }
  if (e.outcome) { pk.str("outcome"); pk.str(outcome_name(*e.outcome)); }
  if (e.time) { pk.str("time"); pk.i64(*e.time); }
  if (e.message) { pk.str("message"); pk.str(*e.message); }
  if (!e.fields.empty()) { pk.str("fields"); pk.raw(e.fields); }
  if (e.sync) { pk.str("sync"); pk.boolean(true); }
  if (!e.idem.empty()) { pk.str("idem"); pk.bin(e.idem); }
  finish_frame(out, at);
}

void encode_simple(std::string& out, uint64_t id, Op op) {
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(2);
  pk.str("op"); pk.str(op_name(op));
  pk.str("id"); pk.u64(id);
  finish_frame(out, at);
}

namespace {

// The values of column `c` to send: q.type/q.actor and any match entry, merged (the
// wire has one key per column).
std::vector<std::string> text_values(const QuerySpec& q, Column c) {
  std::vector<std::string> out;
  if (c == Column::type && q.type) out.push_back(*q.type);
  if (c == Column::actor && q.actor) out.push_back(*q.actor);
  for (const auto& m : q.match)
    if (m.column == c) out.insert(out.end(), m.text.begin(), m.text.end());
  return out;
}

std::vector<int64_t> int_values_of(const QuerySpec& q, Column c) {
  std::vector<int64_t> out;
  for (const auto& m : q.match)
    if (m.column == c) out.insert(out.end(), m.ints.begin(), m.ints.end());
  return out;
}

size_t query_entries(const QuerySpec& q) {
  size_t n = 1 + (q.since ? 1 : 0) + (q.until ? 1 : 0) + (q.severity ? 1 : 0) + (q.after ? 1 : 0) +
             (q.fields.empty() ? 0 : 1) + (q.text ? 1 : 0) + (q.oldest_first ? 1 : 0) +
             (q.scan ? 1 : 0) + (q.wait_ms ? 1 : 0);
  for (const auto& [c, name] : kColumns)
    n += column_is_int(c) ? !int_values_of(q, c).empty() : !text_values(q, c).empty();
  return n;
}

void pack_query_entries(Packer& pk, const QuerySpec& q) {
  pk.str("limit"); pk.u64(q.limit);
  for (const auto& [c, name] : kColumns) {
    if (column_is_int(c)) {
      auto v = int_values_of(q, c);
      if (v.empty()) continue;
      pk.str(name);
      pk.array(v.size());
      for (int64_t x : v) {
        if (c == Column::outcome) pk.str(outcome_name(static_cast<Outcome>(x)));
        else pk.u64(static_cast<uint64_t>(x));
      }
    } else {
      auto v = text_values(q, c);
      if (v.empty()) continue;
      pk.str(name);
      if (v.size() == 1) {  // a plain str, as version 1 of the protocol sent type/actor
        pk.str(v.front());
        continue;
      }
      pk.array(v.size());
      for (const auto& x : v) pk.str(x);
    }
  }
  if (q.since) { pk.str("since"); pk.i64(*q.since); }
  if (q.until) { pk.str("until"); pk.i64(*q.until); }
  if (q.severity) { pk.str("severity"); pk.u64(*q.severity); }
  if (q.after) { pk.str("after"); pk.u64(*q.after); }
  if (!q.fields.empty()) {
    pk.str("fields");
    pk.map(q.fields.size());
    for (const auto& f : q.fields) {
      pk.str(f.path);
      pk.array(f.values.size());
      for (const auto& v : f.values) pk.str(v);
    }
  }
  if (q.text) { pk.str("text"); pk.str(*q.text); }
  if (q.oldest_first) { pk.str("order"); pk.str("oldest"); }
  if (q.scan) { pk.str("scan"); pk.u64(*q.scan); }
  if (q.wait_ms) { pk.str("wait"); pk.u64(*q.wait_ms); }
}

}  // namespace

namespace {

// A request map with `op` (query or subscribe), `id` and the query's entries.
void encode_query_op(std::string& out, const char* op, uint64_t id, const QuerySpec& q) {
  size_t at = begin_frame(out);
  Packer pk(out);
  pk.map(2 + query_entries(q));
  pk.str("op"); pk.str(op);
  pk.str("id"); pk.u64(id);
  pack_query_entries(pk, q);
  finish_frame(out, at);
}

}  // namespace

void encode_query(std::string& out, uint64_t id, const QuerySpec& q) { encode_query_op(out, "query", id, q); }

void encode_subscribe(std::string& out, uint64_t id, const QuerySpec& spec) {
  QuerySpec q = spec;
  q.oldest_first = false;  // implied; "order" is not sent
  q.wait_ms.reset();
  encode_query_op(out, "subscribe", id, q);
}

void encode_query_args(std::string& out, const QuerySpec& q) {
  Packer pk(out);
  pk.map(query_entries(q));
  pack_query_entries(pk, q);
}

// ---- reply decoding (client side) ----

Result<Reply, std::string> reply_from(const Decoded& decoded) {
  const msgpack_object& m = decoded.root();
  Reply r;
  r.map = &m;
  auto id = get_uint(m, "id");
  const msgpack_object* ok = map_get(m, "ok");
  if (!id || ok == nullptr || ok->type != MSGPACK_OBJECT_BOOLEAN)
    return Err{std::string("reply lacks id or ok")};
  r.id = *id;
  r.ok = ok->via.boolean;
  if (!r.ok) {
    r.error_name = get_str(m, "error");
    r.error = error_code_from_name(r.error_name);
    r.message = get_str(m, "message");
    r.field = get_str(m, "field");
    r.rule = get_str(m, "rule");
  }
  return r;
}

Result<Ack, std::string> ack_from(const Reply& reply) {
  auto seq = get_uint(*reply.map, "seq");
  if (!reply.ok || !seq) return Err{std::string("not an ack")};
  return Ack{*seq, get_bool(*reply.map, "durable"), get_bool(*reply.map, "duplicate")};
}

Result<QueryPage, std::string> query_page_from(const Reply& reply) {
  const msgpack_object* evs = map_get(*reply.map, "events");
  if (!reply.ok || evs == nullptr || evs->type != MSGPACK_OBJECT_ARRAY)
    return Err{std::string("not a query reply")};
  QueryPage page;
  page.events.reserve(evs->via.array.size);
  for (uint32_t i = 0; i < evs->via.array.size; ++i) {
    const msgpack_object& e = evs->via.array.ptr[i];
    StoredEvent se;
    auto seq = get_uint(e, "seq");
    const msgpack_object* body = map_get(e, "event");
    if (!seq || body == nullptr || !read_hash(e, "hash", se.hash))
      return Err{std::string("malformed event in query reply")};
    se.seq = *seq;
    se.body = repack(*body);
    page.events.push_back(std::move(se));
  }
  page.next = get_uint(*reply.map, "next");
  page.scanned = get_uint(*reply.map, "scanned").value_or(0);
  return page;
}

Result<Stats, std::string> stats_from(const Reply& reply) {
  if (!reply.ok) return Err{std::string("not a stats reply")};
  const msgpack_object& m = *reply.map;
  Stats s;
  auto u = [&](const char* k) { return get_uint(m, k).value_or(0); };
  s.events = u("events");
  if (const msgpack_object* bt = map_get(m, "by_type"); bt && bt->type == MSGPACK_OBJECT_MAP)
    for (uint32_t i = 0; i < bt->via.map.size; ++i) {
      const auto& kv = bt->via.map.ptr[i];
      if (kv.key.type == MSGPACK_OBJECT_STR && kv.val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        s.by_type.emplace_back(std::string(str_of(kv.key)), kv.val.via.u64);
    }
  s.head_seq = u("head_seq");
  s.queue_depth = u("queue_depth");
  s.queue_bytes = u("queue_bytes");
  s.commits = u("commits");
  s.events_committed = u("events_committed");
  if (const msgpack_object* e = map_get(m, "events_per_commit");
      e && (e->type == MSGPACK_OBJECT_FLOAT64 || e->type == MSGPACK_OBJECT_FLOAT32))
    s.events_per_commit = e->via.f64;
  s.fsync_p50_us = u("fsync_p50_us");
  s.fsync_p99_us = u("fsync_p99_us");
  s.fsync_max_us = u("fsync_max_us");
  s.storage_errors = u("storage_errors");
  s.lost_nondurable = u("lost_nondurable");
  s.seals = u("seals");
  s.db_bytes = u("db_bytes");
  s.connections = u("connections");
  s.flush_mode = get_str(m, "flush_mode");
  s.uptime_s = u("uptime_s");
  if (const msgpack_object* h = map_get(m, "commit_hist"); h && h->type == MSGPACK_OBJECT_ARRAY)
    for (uint32_t i = 0; i < h->via.array.size; ++i)
      if (h->via.array.ptr[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        s.commit_hist.push_back(h->via.array.ptr[i].via.u64);
  s.commit_us_sum = u("commit_us_sum");
  s.disk_free_bytes = u("disk_free_bytes");
  s.disk_reserve_bytes = u("disk_reserve_bytes");
  if (const msgpack_object* f = map_get(m, "storage_full"); f && f->type == MSGPACK_OBJECT_BOOLEAN)
    s.storage_full = f->via.boolean;
  s.disk_full_action = get_str(m, "disk_full_action");
  s.storage_full_refusals = u("storage_full_refusals");
  s.archived_through = u("archived_through");
  s.removed_through = u("removed_through");
  s.archive_segments = u("archive_segments");
  s.archive_bytes = u("archive_bytes");
  return s;
}

Result<VerifyReport, std::string> verify_from(const Reply& reply) {
  const msgpack_object* valid = map_get(*reply.map, "valid");
  if (!reply.ok || valid == nullptr || valid->type != MSGPACK_OBJECT_BOOLEAN)
    return Err{std::string("not a verify reply")};
  VerifyReport r;
  r.valid = valid->via.boolean;
  r.checked = get_uint(*reply.map, "checked").value_or(0);
  r.head_seq = get_uint(*reply.map, "head_seq").value_or(0);
  read_hash(*reply.map, "head_hash", r.head_hash);
  r.break_seq = get_uint(*reply.map, "break_seq");
  r.reason = get_str(*reply.map, "reason");
  r.failure = get_str(*reply.map, "failure");
  read_hash(*reply.map, "root", r.root);
  const msgpack_object* keyed = map_get(*reply.map, "keyed");
  r.keyed = keyed != nullptr && keyed->type == MSGPACK_OBJECT_BOOLEAN && keyed->via.boolean;
  r.epochs = get_uint(*reply.map, "epochs").value_or(0);
  r.sealed_seq = get_uint(*reply.map, "sealed_seq").value_or(0);
  r.sealed_time = static_cast<int64_t>(get_uint(*reply.map, "sealed_time").value_or(0));
  r.unsealed = get_uint(*reply.map, "unsealed").value_or(0);
  r.checkpoints = get_uint(*reply.map, "checkpoints").value_or(0);
  if (const msgpack_object* notes = map_get(*reply.map, "notes");
      notes != nullptr && notes->type == MSGPACK_OBJECT_ARRAY)
    for (uint32_t i = 0; i < notes->via.array.size; ++i)
      if (notes->via.array.ptr[i].type == MSGPACK_OBJECT_STR)
        r.notes.emplace_back(str_of(notes->via.array.ptr[i]));
  return r;
}

Result<HelloInfo, std::string> hello_info_from(const Reply& reply) {
  if (!reply.ok) return Err{std::string("not a hello reply")};
  const msgpack_object& m = *reply.map;
  HelloInfo h;
  h.server = get_str(m, "server");
  h.flush_mode = get_str(m, "flush_mode");
  h.limits.max_frame = static_cast<uint32_t>(get_uint(m, "max_frame").value_or(65536));
  h.limits.max_string = static_cast<uint32_t>(get_uint(m, "max_string").value_or(1024));
  h.limits.max_fields = static_cast<uint32_t>(get_uint(m, "max_fields").value_or(64));
  h.limits.max_depth = static_cast<uint32_t>(get_uint(m, "max_depth").value_or(4));
  h.max_inflight = static_cast<uint32_t>(get_uint(m, "max_inflight").value_or(0));
  return h;
}

}  // namespace cairn::proto
