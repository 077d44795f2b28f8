#include "record.hpp"

#include <map>

namespace cairn::seal {
namespace {

int append_to_string(void* data, const char* buf, size_t len) {
  static_cast<std::string*>(data)->append(buf, len);
  return 0;
}

// Builds a map with keys sorted bytewise (std::map's order for std::string), each value
// a str or a uint.
struct Fields {
  std::map<std::string, std::pair<bool, std::pair<std::string, uint64_t>>> kv;
  void str(const char* k, std::string v) { kv[k] = {true, {std::move(v), 0}}; }
  void u64(const char* k, uint64_t v) { kv[k] = {false, {{}, v}}; }
  std::string encode() const {
    std::string out;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, &append_to_string);
    msgpack_pack_map(&pk, kv.size());
    for (const auto& [k, v] : kv) {
      msgpack_pack_str(&pk, k.size());
      msgpack_pack_str_body(&pk, k.data(), k.size());
      if (v.first) {
        msgpack_pack_str(&pk, v.second.first.size());
        msgpack_pack_str_body(&pk, v.second.first.data(), v.second.first.size());
      } else {
        msgpack_pack_uint64(&pk, v.second.second);
      }
    }
    return out;
  }
};

std::optional<std::string_view> get_str(const msgpack_object& m, std::string_view k) {
  const msgpack_object* o = map_get(m, k);
  if (o == nullptr || o->type != MSGPACK_OBJECT_STR) return std::nullopt;
  return std::string_view(o->via.str.ptr, o->via.str.size);
}

std::optional<uint64_t> get_u64(const msgpack_object& m, std::string_view k) {
  const msgpack_object* o = map_get(m, k);
  if (o == nullptr || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return std::nullopt;
  return o->via.u64;
}

}  // namespace

const msgpack_object* map_get(const msgpack_object& map, std::string_view k) {
  if (map.type != MSGPACK_OBJECT_MAP) return nullptr;
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == MSGPACK_OBJECT_STR &&
        std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == k)
      return &kv.val;
  }
  return nullptr;
}

std::string seal_message(std::string_view origin, const Seal& s) {
  // Appended line by line: g++ 12 at -O3 warns a false -Wrestrict on chains of
  // `"\n" + std::string` (GCC PR 105651), which -Werror release builds turn into errors.
  std::string m = "cairn seal v1\n";
  auto line = [&m](std::string_view v) {
    m += v;
    m += '\n';
  };
  line(origin);
  line(std::to_string(s.epoch));
  line(std::to_string(s.size));
  line(b64(s.root));
  line(std::to_string(s.time));
  line(std::to_string(s.prev_time));
  line(s.boot_id);
  line(b64(s.next_key));
  return m;
}

std::string seal_fields(const Seal& s) {
  Fields f;
  f.u64("epoch", s.epoch);
  f.u64("size", s.size);
  f.str("root", b64(s.root));
  f.u64("prev_time", static_cast<uint64_t>(s.prev_time));
  f.str("boot_id", s.boot_id);
  f.str("next_key", b64(s.next_key));
  f.str("checkpoint_sig", b64(s.checkpoint_sig));
  f.str("sig", b64(s.sig));
  return f.encode();
}

std::optional<Seal> parse_seal_fields(const msgpack_object& fields, int64_t received) {
  Seal s;
  auto epoch = get_u64(fields, "epoch");
  auto size = get_u64(fields, "size");
  auto prev = get_u64(fields, "prev_time");
  auto root = get_str(fields, "root");
  auto boot = get_str(fields, "boot_id");
  auto next = get_str(fields, "next_key");
  auto csig = get_str(fields, "checkpoint_sig");
  auto sig = get_str(fields, "sig");
  if (!epoch || !size || !prev || !root || !boot || !next || !csig || !sig) return std::nullopt;
  if (fields.via.map.size != 8) return std::nullopt;  // nothing unsigned rides along
  if (*prev > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  s.epoch = *epoch;
  s.size = *size;
  s.prev_time = static_cast<int64_t>(*prev);
  s.time = received;
  s.boot_id = std::string(*boot);
  if (!unb64_into(*root, s.root) || !unb64_into(*next, s.next_key) ||
      !unb64_into(*csig, s.checkpoint_sig) || !unb64_into(*sig, s.sig))
    return std::nullopt;
  return s;
}

std::optional<Seal> parse_seal_body(std::string_view body) {
  msgpack_zone zone;
  msgpack_zone_init(&zone, 2048);
  size_t off = 0;
  msgpack_object obj;
  std::optional<Seal> out;
  if (msgpack_unpack(body.data(), body.size(), &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS && off == body.size()) {
    const msgpack_object* t = map_get(obj, "type");
    const msgpack_object* f = map_get(obj, "fields");
    const msgpack_object* r = map_get(obj, "received");
    if (t && t->type == MSGPACK_OBJECT_STR && std::string_view(t->via.str.ptr, t->via.str.size) == kSealType &&
        f && r && r->type == MSGPACK_OBJECT_POSITIVE_INTEGER && r->via.u64 <= static_cast<uint64_t>(INT64_MAX))
      out = parse_seal_fields(*f, static_cast<int64_t>(r->via.u64));
  }
  msgpack_zone_destroy(&zone);
  return out;
}

std::string lost_fields(std::string_view reason) {
  Fields f;
  f.str("reason", std::string(reason));
  return f.encode();
}

std::string recovery_fields(uint64_t first_missing, uint64_t last_missing, uint64_t sealed_size,
                            int64_t sealed_time, uint64_t epoch, const PublicKey& key,
                            std::string_view reason) {
  Fields f;
  f.u64("first_missing", first_missing);
  f.u64("last_missing", last_missing);
  f.u64("sealed_size", sealed_size);
  f.u64("sealed_time", static_cast<uint64_t>(sealed_time));
  f.u64("epoch", epoch);
  f.str("key", b64(key));
  f.str("reason", std::string(reason));
  return f.encode();
}

}  // namespace cairn::seal
