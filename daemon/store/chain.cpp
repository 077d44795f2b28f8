// chain.cpp — the hash chain: hash(seq) = SHA-256(hash(seq-1) || u64be(seq) || body).
#include <sodium.h>

#include "store.hpp"

namespace cairn::store {

Hash chain_hash(const Hash& prev, uint64_t seq, std::string_view body) {
  uint8_t be[8];
  for (int i = 0; i < 8; ++i) be[i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, prev.data(), prev.size());
  crypto_hash_sha256_update(&st, be, sizeof be);
  crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(body.data()), body.size());
  Hash out;
  crypto_hash_sha256_final(&st, out.data());
  return out;
}

}  // namespace cairn::store
