// pack.hpp — msgpack_packer writing into a std::string (internal to protocol/).
#pragma once

#include <msgpack.h>

#include <string>
#include <string_view>

namespace cairn::proto::detail {

inline int append_to_string(void* data, const char* buf, size_t len) {
  static_cast<std::string*>(data)->append(buf, len);
  return 0;
}

struct Packer {
  msgpack_packer pk;
  std::string& out;
  explicit Packer(std::string& o) : out(o) { msgpack_packer_init(&pk, &out, &append_to_string); }
  void str(std::string_view s) {
    msgpack_pack_str(&pk, s.size());
    msgpack_pack_str_body(&pk, s.data(), s.size());
  }
  void bin(std::string_view s) {
    msgpack_pack_bin(&pk, s.size());
    msgpack_pack_bin_body(&pk, s.data(), s.size());
  }
  void map(size_t n) { msgpack_pack_map(&pk, n); }
  void array(size_t n) { msgpack_pack_array(&pk, n); }
  void u64(uint64_t v) { msgpack_pack_uint64(&pk, v); }
  void i64(int64_t v) {
    if (v >= 0) msgpack_pack_uint64(&pk, static_cast<uint64_t>(v));
    else msgpack_pack_int64(&pk, v);
  }
  void f64(double v) { msgpack_pack_double(&pk, v); }
  void boolean(bool b) {
    if (b) msgpack_pack_true(&pk);
    else msgpack_pack_false(&pk);
  }
  void nil() { msgpack_pack_nil(&pk); }
  void raw(std::string_view bytes) { out.append(bytes); }
};

// Starts a frame: reserves the 4-byte header; finish_frame patches it.
inline size_t begin_frame(std::string& out) {
  size_t at = out.size();
  out.append(4, '\0');
  return at;
}
inline void finish_frame(std::string& out, size_t at) {
  uint32_t n = static_cast<uint32_t>(out.size() - at - 4);
  out[at] = static_cast<char>(n >> 24);
  out[at + 1] = static_cast<char>(n >> 16);
  out[at + 2] = static_cast<char>(n >> 8);
  out[at + 3] = static_cast<char>(n);
}

inline std::string_view str_of(const msgpack_object& o) {
  return {o.via.str.ptr, o.via.str.size};
}
inline std::string_view bin_of(const msgpack_object& o) {
  return {o.via.bin.ptr, o.via.bin.size};
}

}  // namespace cairn::proto::detail
