#include "hash.hpp"

#include <openssl/evp.h>
#include <sodium.h>

namespace cairn::seal {

namespace {
// One digest context per thread, and the SHA-256 implementation fetched once: OpenSSL 3
// looks the algorithm up on every EVP_DigestInit_ex(ctx, EVP_sha256()) and one-shot
// SHA256() call, which costs more than hashing a 300-byte record itself.
struct Ctx {
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Ctx() {
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
  }
};

Hash digest2(const void* a, size_t an, const void* b, size_t bn) {
  thread_local Ctx c;
  Hash h;
  unsigned int len = 0;
  EVP_DigestInit_ex2(c.ctx, c.md, nullptr);
  EVP_DigestUpdate(c.ctx, a, an);
  if (bn != 0) EVP_DigestUpdate(c.ctx, b, bn);
  EVP_DigestFinal_ex(c.ctx, h.data(), &len);
  return h;
}
}  // namespace

Hash sha256(std::string_view data) { return digest2(data.data(), data.size(), nullptr, 0); }

Hash leaf_hash(std::string_view data) {
  const unsigned char zero = 0;
  return digest2(&zero, 1, data.data(), data.size());
}

Hash node_hash(const Hash& left, const Hash& right) {
  unsigned char buf[65];
  buf[0] = 1;
  for (size_t i = 0; i < 32; ++i) {
    buf[1 + i] = left[i];
    buf[33 + i] = right[i];
  }
  return digest2(buf, sizeof buf, nullptr, 0);
}

std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = d[p[i] >> 4];
    s[2 * i + 1] = d[p[i] & 15];
  }
  return s;
}

std::optional<std::string> unhex(std::string_view s) {
  if (s.size() % 2 != 0) return std::nullopt;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out(s.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = val(s[2 * i]), lo = val(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

std::string b64(const uint8_t* p, size_t n) {
  std::string out(sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), p, n, sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::optional<std::string> unb64(std::string_view s) {
  std::string out(s.size() / 4 * 3 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), s.data(), s.size(),
                        nullptr, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != s.data() + s.size())
    return std::nullopt;
  out.resize(len);
  // Canonical only: re-encoding gives the same text (no non-zero padding bits).
  if (b64(reinterpret_cast<const uint8_t*>(out.data()), out.size()) != s) return std::nullopt;
  return out;
}

}  // namespace cairn::seal
