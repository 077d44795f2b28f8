// keys.hpp — the epoch key file: the only place a secret key is kept on disk.
//
// Glossary:
//   epoch        the span between two seals; epoch e's records are sealed with key e
//   seed         32 random bytes; an Ed25519 key pair is derived from it
//   pending      the next epoch's seed is already on disk, the seal naming its public
//                key may not be durable yet (see Sealer for the three-step handover)
//   window start the time the current epoch began (the previous seal's time)
//
// Layout: two 512-byte slots holding the same state, each with a counter and a
// SHA-256 checksum. A write goes to one slot, fdatasync, then the other, fdatasync, so a
// torn write leaves one good slot, and an old secret never survives a completed write:
// the file is overwritten in place (no rename, no copy left in another block) — on a
// file system that rewrites blocks in place; see the README's threat model for
// copy-on-write file systems and SSD remapping.
//
// Secrets live in memory from sodium_malloc (guard pages, mlock, excluded from core
// dumps) and are wiped when replaced. Nothing secret is ever logged or sent to SQLite.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "../protocol/result.hpp"
#include "../seal/hash.hpp"

namespace cairn::daemon {

struct KeyPublic {
  uint64_t epoch = 0;
  bool pending = false;
  uint64_t sealed_size = 0;  // tree size the last durable seal covered
  uint64_t sealed_seq = 0;   // that seal's own seq (0: none yet)
  int64_t window_start = 0;  // when the current epoch began (ns)
  seal::PublicKey first{};   // epoch 0's public key: the log's identity with the origin
  seal::PublicKey current{};
  seal::PublicKey next{};    // when pending
  std::string origin;
};

class KeyFile {
 public:
  // Opens `path`; with create=true and no file there, makes a new log identity
  // (epoch 0) for `origin` starting at `now_ns`. The file is created 0600 without
  // following symlinks, whatever the umask; an existing file that another uid owns or
  // that others may read or write is refused with a message saying how to fix it.
  static Result<std::unique_ptr<KeyFile>, std::string> open(const std::string& path, bool create,
                                                            const std::string& origin, int64_t now_ns);
  ~KeyFile();
  KeyFile(const KeyFile&) = delete;
  KeyFile& operator=(const KeyFile&) = delete;

  const KeyPublic& state() const { return pub_; }
  // libsodium 64-byte secret key of the current epoch (valid until the next advance).
  const uint8_t* secret() const;
  // Draws the next epoch's seed and makes it durable (pending) unless it already is.
  Result<Ok, std::string> prepare_next();
  // The seal naming the next key is durable: the next epoch becomes current and the
  // old secret is overwritten on disk and in memory.
  Result<Ok, std::string> advance(uint64_t sealed_size, uint64_t sealed_seq, int64_t sealed_time);
  // Whether a file exists at `path` (lstat: a symlink counts, and is refused by open).
  static bool exists(const std::string& path);
  // The public state of the key file at `path`, read-only (for `cairn verify` on the
  // host). The public keys are derived from the seeds, so a key file edited to agree
  // with a truncated database cannot be made without the erased seeds. The seeds are
  // read into locked memory and wiped before returning.
  static Result<KeyPublic, std::string> read_public(const std::string& path);

 private:
  KeyFile() = default;
  // An empty KeyFile for `path` with its locked memory allocated.
  static Result<std::unique_ptr<KeyFile>, std::string> make(const std::string& path);
  Result<Ok, std::string> write_state();
  Result<Ok, std::string> load();  // the newest valid slot into pub_/sec_
  void derive();
  bool slots_differ_ = false;

  int fd_ = -1;
  std::string path_;
  uint64_t counter_ = 0;
  KeyPublic pub_;
  struct Secrets;
  Secrets* sec_ = nullptr;  // sodium_malloc'd
};

}  // namespace cairn::daemon
