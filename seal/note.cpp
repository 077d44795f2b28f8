#include "note.hpp"

#include <sodium.h>

#include <charconv>

namespace cairn::seal {
namespace {
constexpr std::string_view kDash = "\xE2\x80\x94 ";  // U+2014 EM DASH, space

bool parse_u64(std::string_view s, uint64_t& v) {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return false;  // no leading zeros
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}
}  // namespace

Signature sign(const uint8_t* sk, std::string_view msg) {
  Signature sig{};
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(msg.data()),
                       msg.size(), sk);
  return sig;
}

bool verify_sig(const PublicKey& pk, std::string_view msg, const Signature& sig) {
  return crypto_sign_verify_detached(sig.data(), reinterpret_cast<const unsigned char*>(msg.data()),
                                     msg.size(), pk.data()) == 0;
}

uint32_t key_id(std::string_view name, const PublicKey& pk) {
  std::string buf(name);
  buf += '\n';
  buf += '\x01';
  buf.append(reinterpret_cast<const char*>(pk.data()), pk.size());
  Hash h = sha256(buf);
  return uint32_t{h[0]} << 24 | uint32_t{h[1]} << 16 | uint32_t{h[2]} << 8 | h[3];
}

std::string format_vkey(std::string_view name, const PublicKey& pk) {
  uint32_t id = key_id(name, pk);
  uint8_t idb[4] = {uint8_t(id >> 24), uint8_t(id >> 16), uint8_t(id >> 8), uint8_t(id)};
  std::string raw(1, '\x01');
  raw.append(reinterpret_cast<const char*>(pk.data()), pk.size());
  return std::string(name) + "+" + hex(idb, 4) + "+" + b64(raw);
}

std::optional<VKey> parse_vkey(std::string_view s) {
  s = s.substr(0, s.find_last_not_of(" \t\r\n") + 1);
  // NAME+HASH+KEY: the name has no '+' (origins may not), base64 may.
  size_t p1 = s.find('+');
  if (p1 == std::string_view::npos || p1 == 0) return std::nullopt;
  size_t p2 = s.find('+', p1 + 1);
  if (p2 == std::string_view::npos) return std::nullopt;
  VKey k;
  k.name = std::string(s.substr(0, p1));
  auto idhex = unhex(s.substr(p1 + 1, p2 - p1 - 1));
  auto raw = unb64(s.substr(p2 + 1));
  if (!idhex || idhex->size() != 4 || !raw || raw->size() != 33 || (*raw)[0] != '\x01')
    return std::nullopt;
  for (size_t i = 0; i < 32; ++i) k.key[i] = static_cast<uint8_t>((*raw)[1 + i]);
  uint32_t id = key_id(k.name, k.key);
  uint8_t idb[4] = {uint8_t(id >> 24), uint8_t(id >> 16), uint8_t(id >> 8), uint8_t(id)};
  if (*idhex != std::string(reinterpret_cast<const char*>(idb), 4)) return std::nullopt;
  return k;
}

std::string checkpoint_text(std::string_view origin, uint64_t size, const Hash& root) {
  return std::string(origin) + "\n" + std::to_string(size) + "\n" + b64(root) + "\n";
}

std::optional<Checkpoint> parse_checkpoint_text(std::string_view text) {
  Checkpoint c;
  size_t a = text.find('\n');
  if (a == std::string_view::npos || a == 0) return std::nullopt;
  size_t b = text.find('\n', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  size_t e = text.find('\n', b + 1);
  if (e == std::string_view::npos) return std::nullopt;
  c.origin = std::string(text.substr(0, a));
  if (!parse_u64(text.substr(a + 1, b - a - 1), c.size)) return std::nullopt;
  if (!unb64_into(text.substr(b + 1, e - b - 1), c.root)) return std::nullopt;
  return c;  // extension lines after the root are allowed and ignored
}

std::string format_note(std::string_view text, std::string_view name, const PublicKey& pk,
                        const Signature& sig) {
  uint32_t id = key_id(name, pk);
  std::string raw = {char(id >> 24), char(id >> 16), char(id >> 8), char(id)};
  raw.append(reinterpret_cast<const char*>(sig.data()), sig.size());
  return std::string(text) + "\n" + std::string(kDash) + std::string(name) + " " + b64(raw) + "\n";
}

std::optional<Note> parse_note(std::string_view s) {
  size_t blank = s.find("\n\n");
  if (blank == std::string_view::npos) return std::nullopt;
  Note n;
  n.text = std::string(s.substr(0, blank + 1));
  std::string_view rest = s.substr(blank + 2);
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) return std::nullopt;  // every line ends in \n
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
    if (line.substr(0, kDash.size()) != kDash) return std::nullopt;
    line.remove_prefix(kDash.size());
    size_t sp = line.rfind(' ');
    if (sp == std::string_view::npos || sp == 0) return std::nullopt;
    auto raw = unb64(line.substr(sp + 1));
    if (!raw || raw->size() != 68) continue;  // not an Ed25519 signature: not ours to check
    NoteSignature ns;
    ns.name = std::string(line.substr(0, sp));
    ns.id = uint32_t(uint8_t((*raw)[0])) << 24 | uint32_t(uint8_t((*raw)[1])) << 16 |
            uint32_t(uint8_t((*raw)[2])) << 8 | uint8_t((*raw)[3]);
    for (size_t i = 0; i < 64; ++i) ns.sig[i] = static_cast<uint8_t>((*raw)[4 + i]);
    n.sigs.push_back(ns);
  }
  if (n.sigs.empty()) return std::nullopt;
  return n;
}

bool note_signed_by(const Note& note, std::string_view name, const PublicKey& pk) {
  uint32_t id = key_id(name, pk);
  for (const auto& s : note.sigs)
    if (s.name == name && s.id == id && verify_sig(pk, note.text, s.sig)) return true;
  return false;
}

}  // namespace cairn::seal
