// store.hpp — the SQLite event store and its hash chain.
//
// Glossary:
//   seq     gap-free event number, 1, 2, 3 ... assigned here, in commit order.
//   hash    SHA-256(prev_hash || u64be(seq) || body); prev_hash of seq 1 is kGenesis.
//   head    (seq, hash) of the newest event; the writer keeps it in memory and re-reads
//           it from disk on open and after any failed or rolled-back transaction.
//
// Threading: a Store is used by one thread at a time. cairnd has one writer Store (the
// writer thread) and one read-only Store per query thread. SQLite runs in WAL mode with
// synchronous=FULL, so a successful commit() means the transaction was fsynced.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../protocol/event.hpp"
#include "../../protocol/message.hpp"
#include "../../protocol/result.hpp"

namespace cairn::store {

using proto::Hash;

// The documented genesis value: 32 zero bytes (PROTOCOL.md §4).
inline constexpr Hash kGenesis{};

// Computes SHA-256(prev || u64be(seq) || body) with libsodium.
Hash chain_hash(const Hash& prev, uint64_t seq, std::string_view body);

enum class StoreErrorKind {
  io,        // SQLITE_IOERR*, SQLITE_FULL, SQLITE_CANTOPEN ...: the disk failed us
  corrupt,   // SQLITE_CORRUPT / NOTADB or a chain head that does not match its row
  busy,      // locked by another writer (second daemon on the same file)
  schema,    // unknown schema version, or a table we did not expect
  misuse,    // our bug: call order, closed handle
};

struct StoreError {
  StoreErrorKind kind;
  int sqlite_code = 0;  // extended result code, 0 if not from SQLite
  std::string message;  // "commit: disk I/O error (SQLITE_IOERR_FSYNC)"
};

template <class T>
using StoreResult = Result<T, StoreError>;

enum class OpenMode {
  writer,        // creates the file and schema if missing; takes the write role
  readonly,      // SQLITE_OPEN_READONLY; never creates, never writes (offline forensics)
  checkpointer,  // read-write beside the writer; only ever runs checkpoints
};

struct AppendResult {
  uint64_t seq = 0;
  bool duplicate = false;  // idem key already stored: seq is the original event's
};

struct StoreInfo {
  uint64_t events = 0;
  std::vector<std::pair<std::string, uint64_t>> by_type;  // most first
  uint64_t db_bytes = 0;                                  // main file + -wal
};

class Store {
 public:
  // Opens (and for writer, creates/migrates) the database at `path`. The writer sets
  // journal_mode=WAL, synchronous=FULL, and loads the chain head, checking that the
  // newest row's hash is the one stored (a torn head is reported as corrupt).
  static StoreResult<std::unique_ptr<Store>> open(const std::string& path, OpenMode mode);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // ---- writer role ----
  StoreResult<Ok> begin();  // BEGIN IMMEDIATE
  // Assigns seq = head+1, computes the hash over `body` (event_canonical_body(event,
  // trusted), built by the caller off the writer thread), inserts the row with the
  // indexed columns taken from event/trusted; updates the in-memory head.
  // An idem key already present returns its original seq with duplicate=true and inserts
  // nothing. Must be inside begin()/commit().
  StoreResult<AppendResult> append(const proto::Event& event, const proto::Trusted& trusted,
                                   std::string_view body);
  // COMMIT. On failure the transaction is rolled back and the head re-read from disk; the
  // caller must treat every append since begin() as failed (never "retry the fsync").
  StoreResult<Ok> commit();
  // ROLLBACK and re-read the head from disk.
  void rollback();
  bool in_transaction() const;
  uint64_t head_seq() const { return head_seq_; }
  const Hash& head_hash() const { return head_hash_; }
  // PRAGMA wal_checkpoint(TRUNCATE); used at clean shutdown.
  StoreResult<Ok> checkpoint();
  // Copies committed WAL frames into the database (SQLITE_CHECKPOINT_PASSIVE).
  StoreResult<Ok> checkpoint_passive();
  // Writer: turn off SQLite's automatic checkpoint (which runs inside COMMIT) and call
  // `on_commit(ctx, frames)` after every commit with the WAL's size in frames, so the
  // caller can checkpoint at a moment of its choosing.
  void hand_off_checkpoints(void (*on_commit)(void* ctx, int frames), void* ctx);

  // ---- reader role (any mode) ----
  // Reads pages of the main file through a memory map of up to `bytes` (PRAGMA
  // mmap_size; 0 = pread). Saves a syscall and a 4 KiB copy per page read; the cost is
  // that a disk read error in a mapped page is SIGBUS instead of an error return.
  // Only for read-only connections: the writer never maps. Unmapping (0) drops the
  // pages from this process's RSS.
  void map_reads(uint64_t bytes);
  // Newest first, keyset by seq (never OFFSET): calls row(seq, hash, body) for each
  // event, with views valid only during the call; returns the cursor for the next page
  // (absent at the end of the log).
  using RowFn = std::function<void(uint64_t seq, std::string_view hash, std::string_view body)>;
  StoreResult<std::optional<uint64_t>> query_each(const proto::QuerySpec& spec, const RowFn& row);
  // The same, collected into a page.
  StoreResult<proto::QueryPage> query(const proto::QuerySpec& spec);
  // The same filters paged with OFFSET, kept only as the benchmark's baseline.
  StoreResult<proto::QueryPage> query_offset(const proto::QuerySpec& spec, uint64_t offset);
  // Walks the chain from seq 1: each row's seq follows the previous one, its hash equals
  // chain_hash(prev, seq, body), and its indexed columns agree with its body.
  StoreResult<proto::VerifyReport> verify();
  StoreResult<StoreInfo> info();
  // Looks up one event by idem key (tests, dedup diagnostics).
  StoreResult<std::optional<uint64_t>> seq_for_idem(std::string_view idem);

  sqlite3* handle() { return db_; }  // for tests and benchmarks only

 private:
  Store() = default;
  // Opens db_ for mode_ (immutable: as a read-only "file:...?immutable=1" URI, for a
  // reader that cannot create the -wal/-shm files), sets it up (writer) or checks that
  // it is a cairn database of our schema version (other modes).
  StoreResult<Ok> connect(bool immutable);
  StoreResult<Ok> load_head();

  sqlite3* db_ = nullptr;
  OpenMode mode_ = OpenMode::readonly;
  uint64_t mapped_ = 0;  // current mmap_size (map_reads)
  std::string path_;
  uint64_t head_seq_ = 0;
  Hash head_hash_{};
  struct Statements;
  std::unique_ptr<Statements> stmts_;
  std::unique_ptr<std::pair<void (*)(void*, int), void*>> hook_;  // wal hook target
};

}  // namespace cairn::store
