// hash.hpp — SHA-256 and the RFC 6962 leaf/node hashes, plus hex and base64.
//
// SHA-256 comes from OpenSSL's libcrypto, not libsodium: libcrypto uses the CPU's SHA
// extensions (SHA-NI) and hashes ~2x faster here, and verify is a SHA-256 walk over the
// whole log. Signatures stay with libsodium (Ed25519).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cairn::seal {

using Hash = std::array<uint8_t, 32>;
using PublicKey = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>;

Hash sha256(std::string_view data);
// RFC 6962 §2.1: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right).
Hash leaf_hash(std::string_view data);
Hash node_hash(const Hash& left, const Hash& right);

std::string hex(const uint8_t* p, size_t n);
template <size_t N>
std::string hex(const std::array<uint8_t, N>& a) { return hex(a.data(), N); }
// Exactly 2*N lowercase or uppercase hex digits; nullopt otherwise.
std::optional<std::string> unhex(std::string_view s);

// Standard base64 with padding (RFC 4648 §4), as C2SP signed notes use.
std::string b64(const uint8_t* p, size_t n);
template <size_t N>
std::string b64(const std::array<uint8_t, N>& a) { return b64(a.data(), N); }
inline std::string b64(std::string_view s) {
  return b64(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
// Strict: canonical padding, no whitespace; nullopt otherwise.
std::optional<std::string> unb64(std::string_view s);
// Decodes into a fixed-size array; false if the length differs.
template <size_t N>
bool unb64_into(std::string_view s, std::array<uint8_t, N>& out) {
  auto d = unb64(s);
  if (!d || d->size() != N) return false;
  for (size_t i = 0; i < N; ++i) out[i] = static_cast<uint8_t>((*d)[i]);
  return true;
}

}  // namespace cairn::seal
