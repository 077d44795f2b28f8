// note.hpp — Ed25519 keys and C2SP signed notes (tlog-checkpoint).
//
// Glossary:
//   origin      the log's name, first line of every checkpoint ("cairn/<machine-id>")
//   checkpoint  "<origin>\n<tree size>\n<base64 root>\n", signed as a note:
//               text, a blank line, then "— <name> <base64(key id || signature)>\n"
//   key id      first 4 bytes of SHA-256(name || "\n" || 0x01 || public key)
//   vkey        "<name>+<8 hex key id>+<base64(0x01 || public key)>": a verifier key in
//               the format of Go's golang.org/x/mod/sumdb/note, what `cairn key` prints
//
// Each epoch of the log has its own key; all share the key name (the origin), so the
// key id tells which epoch's key signed a checkpoint.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hash.hpp"

namespace cairn::seal {

// Ed25519 signing with libsodium; `sk` is the 64-byte libsodium secret key.
Signature sign(const uint8_t* sk, std::string_view msg);
bool verify_sig(const PublicKey& pk, std::string_view msg, const Signature& sig);

uint32_t key_id(std::string_view name, const PublicKey& pk);

struct VKey {
  std::string name;
  PublicKey key{};
};
std::string format_vkey(std::string_view name, const PublicKey& pk);
std::optional<VKey> parse_vkey(std::string_view s);

std::string checkpoint_text(std::string_view origin, uint64_t size, const Hash& root);

struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  Hash root{};
};
std::optional<Checkpoint> parse_checkpoint_text(std::string_view text);

// A signed note split into its text and signature lines.
struct NoteSignature {
  std::string name;
  uint32_t id = 0;
  Signature sig{};
};
struct Note {
  std::string text;  // up to and including the last "\n" before the blank line
  std::vector<NoteSignature> sigs;
};
std::string format_note(std::string_view text, std::string_view name, const PublicKey& pk,
                        const Signature& sig);
std::optional<Note> parse_note(std::string_view s);
// True if some signature line of `note` is by (name, pk) and verifies.
bool note_signed_by(const Note& note, std::string_view name, const PublicKey& pk);

}  // namespace cairn::seal
