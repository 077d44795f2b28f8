// store.hpp — the SQLite record store and its Merkle tree.
//
// Glossary:
//   record  one row of `events`: a client's event, or one of cairnd's own records
//           (seal, lost-seq placeholder, recovery notice; type "cairn.*", seal/record.hpp)
//   seq     gap-free record number, 1, 2, 3 ... assigned here, in commit order; record
//           seq is leaf seq-1 of the tree.
//   hash    the record's RFC 6962 leaf hash, SHA-256(0x00 || body)
//   tree    the complete interior nodes (level >= 1), keyed by their postorder position,
//           written in the same transaction as the leaf that completes them; with the
//           leaf hashes they give any root or proof in O(log n) reads (seal/merkle.hpp)
//   head    the newest seq and the tree's frontier; the writer keeps them in memory and
//           re-reads them from disk on open and after any failed or rolled-back
//           transaction.
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
#include "../../seal/merkle.hpp"
#include "../../seal/note.hpp"

namespace cairn::store {

using proto::Hash;

struct Segment;  // archive.hpp

// Hash of an empty log's head (no leaf yet): 32 zero bytes.
inline constexpr Hash kGenesis{};

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

// How the writer role does its I/O. Readers ignore it.
struct OpenOptions {
  // Gather each commit's WAL frames into one write (wal_vfs.hpp). cairnd's writer sets
  // it; tools and the bench's naive writer keep SQLite's own I/O.
  bool combine_wal_writes = false;
};

struct AppendResult {
  uint64_t seq = 0;
  bool duplicate = false;  // idem key already stored by this uid: seq is the original's
  bool conflict = false;   // ... for a different event: nothing stored, the caller refuses
                           // it (idem_conflict), never acks it as a duplicate
};

// The public state of the log's key file (daemon/keys.hpp), for the check that sealed
// records were not cut off the end: only the holder of the erased seeds could make a key
// file agree with a truncated log.
struct KeyFileState {
  uint64_t epoch = 0;
  bool pending = false;
  uint64_t sealed_seq = 0;
  seal::PublicKey first{}, current{}, next{};
};

// What `cairn verify` is given besides the file (PROTOCOL.md §8).
struct VerifyOptions {
  std::optional<KeyFileState> key_file;  // checked against the log's last seal
  std::string key_file_error;            // the key file could not be read: class key_file
  std::optional<seal::VKey> key;         // the log's key as kept off the host; absent:
                                         // the database's own copy (proves nothing
                                         // against someone who can write the file)
  std::vector<std::string> checkpoints;  // signed notes the log must extend
  std::optional<int64_t> fresh_ns;       // the newest seal must be younger than this
  int64_t now_ns = 0;                    // for fresh_ns
  uint64_t chunk_rows = 65536;           // rows per read snapshot (never pins the WAL long)
};

struct StoreInfo {
  uint64_t events = 0;
  std::vector<std::pair<std::string, uint64_t>> by_type;  // most first
  uint64_t db_bytes = 0;                                  // main file + -wal
  // Retention (PROTOCOL.md §11): records 1..archived_through are in archive segments,
  // 1..removed_through gone for good; the segment files left and their bytes.
  uint64_t archived_through = 0, removed_through = 0;
  uint64_t archive_segments = 0, archive_bytes = 0;
};

// The log's figures in a stats reply: one place for the daemon's stats op and the CLI's
// `cairn stats --db`, which report the same file figures.
inline void put_log_figures(StoreInfo&& info, proto::Stats& st) {
  st.events = info.events;
  st.by_type = std::move(info.by_type);
  st.db_bytes = info.db_bytes;
  st.archived_through = info.archived_through;
  st.removed_through = info.removed_through;
  st.archive_segments = info.archive_segments;
  st.archive_bytes = info.archive_bytes;
}

class Store {
 public:
  // Opens (and for writer, creates/migrates) the database at `path`. The writer sets
  // journal_mode=WAL, synchronous=FULL, and loads the chain head, checking that the
  // newest row's hash is the one stored (a torn head is reported as corrupt).
  static StoreResult<std::unique_ptr<Store>> open(const std::string& path, OpenMode mode,
                                                  const OpenOptions& options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // ---- writer role ----
  StoreResult<Ok> begin();  // BEGIN IMMEDIATE
  // Assigns seq = head+1, computes the hash over `body` (event_canonical_body(event,
  // trusted), built by the caller off the writer thread), inserts the row with the
  // indexed columns taken from event/trusted; updates the in-memory head.
  // Idem keys are scoped by sender: trusted.uid. A key this uid already stored returns
  // the original seq with duplicate=true and inserts nothing; if the stored event differs
  // from this one (in anything but the stamped Trusted fields), conflict=true as well.
  // Must be inside begin()/commit().
  StoreResult<AppendResult> append(const proto::Event& event, const proto::Trusted& trusted,
                                   std::string_view body);
  // Appends one of cairnd's own records (type "cairn.*", canonical `fields` map), stamped
  // with `trusted` (cairnd's own pid/uid and the time). Must be inside begin()/commit().
  StoreResult<uint64_t> append_record(std::string_view type, std::string fields,
                                      const proto::Trusted& trusted);
  // COMMIT. On failure the transaction is rolled back and the head re-read from disk; the
  // caller must treat every append since begin() as failed (never "retry the fsync").
  StoreResult<Ok> commit();
  // ROLLBACK and re-read the head from disk.
  void rollback();
  // Writer: closes the connection and opens the file again (after a failed write, the
  // connection's page cache may hold pages the kernel never persisted), keeping the
  // writer lock held throughout. Checkpoint hand-off must be set up again.
  StoreResult<Ok> reopen();
  bool in_transaction() const;
  uint64_t head_seq() const { return head_seq_; }
  const Hash& head_hash() const { return head_hash_; }  // the newest leaf hash
  // Root of the tree of records 1..head_seq (writer: from memory).
  Hash root() const { return frontier_.root(); }
  // Public values kept in `meta` (origin, first_key, created): writer, own transaction.
  StoreResult<Ok> set_meta(const std::string& key, const std::string& value);
  StoreResult<std::optional<std::string>> meta(const std::string& key);
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
  // Walks every record from seq 1 in chunks (one read snapshot each): gap-free seqs, each
  // leaf hash and stored tree node recomputed, columns equal to the body in value and
  // type, seals checked along the key chain, every index holding every row; then the
  // checkpoints and freshness of `opt`. See verify.cpp for the failure classes.
  StoreResult<proto::VerifyReport> verify(const VerifyOptions& opt = {});
  // ---- Merkle tree (tree.cpp) ----
  // Stored hash of complete node (level, index); level 0 is the leaf hash.
  std::optional<Hash> node(unsigned level, uint64_t index);
  StoreResult<Hash> root_at(uint64_t size);
  StoreResult<std::vector<Hash>> inclusion_proof(uint64_t seq, uint64_t size);
  StoreResult<std::vector<Hash>> consistency_proof(uint64_t m, uint64_t n);
  // The canonical body of record `seq` (nullopt past the head).
  StoreResult<std::optional<std::string>> body_of(uint64_t seq);
  // Seal records (seq, body) in seq order: every seal with seq in [from, to].
  StoreResult<std::vector<std::pair<uint64_t, std::string>>> seals(uint64_t from, uint64_t to);
  // The first seal after `seq` (the one whose tree covers it), or the newest seal (latest).
  StoreResult<std::optional<std::pair<uint64_t, std::string>>> seal_after(uint64_t seq);
  StoreResult<std::optional<std::pair<uint64_t, std::string>>> latest_seal();
  // The oldest `received` in the log (through time_seq when present; nullopt when empty).
  StoreResult<std::optional<int64_t>> min_received();
  StoreResult<StoreInfo> info();
  // Looks up one event by its sender's uid and idem key (tests, dedup diagnostics).
  StoreResult<std::optional<uint64_t>> seq_for_idem(uint32_t uid, std::string_view idem);
  // Schema version of the open file (readers may open an older readable one).
  int schema_version() const { return schema_version_; }

  // ---- retention (archive_store.cpp; segments in archive.hpp) ----
  // Records 1..archived_through() are out of the events table (meta, 0 when none).
  StoreResult<uint64_t> archived_through();
  // The cairn.retention.removed record that removed the oldest records for good (meta
  // 'removal_seq'; 0 when nothing was removed).
  StoreResult<uint64_t> removal_seq();
  // Readers: bodies of records [from, to] in seq order, and their range of `received`.
  // Fails unless every one of them is in the events table.
  StoreResult<Ok> bodies(uint64_t from, uint64_t to, std::vector<std::string>& out, int64_t& min_received,
                         int64_t& max_received);
  // Writer, no transaction open: moves records (archived_through(), through] out of the
  // live tables in one transaction, once their segment is durable: the query index is
  // adjusted, meta 'archived_through' raised, and the rows deleted with the append-only
  // trigger dropped and re-created inside the same transaction (so no other statement
  // ever sees the table deletable). The newest seal and the head always stay live.
  StoreResult<Ok> archive_commit(uint64_t through);
  // Writer, no transaction open: appends the removal record (type kRemovalType, canonical
  // `fields`, removing records 1..last) and points meta 'removal_seq' at it and
  // 'removed_through' at `last`, in one transaction. Returns its seq.
  StoreResult<uint64_t> append_removal(std::string fields, uint64_t last, const proto::Trusted& trusted);
  StoreResult<uint64_t> removed_through();
  // The body of an archived record (at or below the horizon, above the removal horizon)
  // from its segment; nullopt otherwise. Proofs and `cairn prove` read archived leaves
  // and seals through this (one decoded segment is kept).
  std::optional<std::string> archived_body(uint64_t seq);
  // The seal records (seq, body) in [from, to] that are archived.
  std::vector<std::pair<uint64_t, std::string>> archived_seals(uint64_t from, uint64_t to, size_t most = SIZE_MAX);
  const std::string& path() const { return path_; }

  sqlite3* handle() { return db_; }  // for tests and benchmarks only
  // Writer: keep the query index tables (time_seq, type_counts; query_engine.hpp) in
  // step from now on. Called once they exist; a no-op if already attached. Reopening
  // attaches again by itself when the tables are there. The tables are written once
  // every kIndexTailMax records (schema 5), not in every commit: the records past
  // meta.index_through (the tail) are read from `events` by every reader, and the
  // writer counts them again from the file whenever it opens it.
  StoreResult<Ok> attach_query_index();
  // Writer: the next commit writes the query index tables whatever the tail's length
  // (cairnd asks before a seal and at a clean stop: an idle log's tables are current).
  void request_index_flush() { index_flush_requested_ = true; }
  // Records the index tables do not count yet (this transaction's included).
  uint64_t index_tail() const { return (index_flushed_in_txn_ ? 0 : index_pending_.records) + index_delta_.records; }
  static constexpr uint64_t kIndexTailMax = 256;

 private:
  Store() = default;
  // Opens db_ for mode_ (immutable: as a read-only "file:...?immutable=1" URI, for a
  // reader that cannot create the -wal/-shm files), sets it up (writer) or checks that
  // it is a cairn database of our schema version (other modes).
  StoreResult<Ok> connect(bool immutable);
  StoreResult<Ok> load_head();
  StoreResult<Ok> prepare_statements();
  void reload_head();  // load_head after a rollback; remembers a failure in head_known_
  // seq (and, if `body` is given, the body) of uid's event stored under `idem`.
  StoreResult<std::optional<uint64_t>> find_idem(uint32_t uid, std::string_view idem,
                                                 std::string* body);
  // Inserts the interior nodes the new leaf completes (append paths).
  StoreResult<Ok> add_leaf(const Hash& leaf);
  // The query index's share of each append: counted in memory (index_delta_ for the open
  // transaction, index_pending_ for committed records the tables do not count yet) and
  // written as one upsert per distinct type and time bucket when the tail reaches
  // kIndexTailMax, or on request, or before retention moves records out.
  void note_index(std::string_view type, int64_t received, uint64_t seq);
  // Inside a write transaction: writes what is counted and not written, and moves
  // meta.index_through to the head.
  StoreResult<Ok> flush_index();
  // Writer, after an open: counts the tail (records past index_through) from the file.
  StoreResult<Ok> load_index_tail();

  sqlite3* db_ = nullptr;
  OpenMode mode_ = OpenMode::readonly;
  OpenOptions options_;
  uint64_t mapped_ = 0;  // current mmap_size (map_reads)
  int schema_version_ = 0;
  std::string path_;
  uint64_t head_seq_ = 0;
  Hash head_hash_{};
  seal::Frontier frontier_;
  bool head_known_ = true;
  struct IndexDelta {
    std::vector<std::pair<std::string, int64_t>> types;  // type, records added
    struct Bucket {
      int64_t bucket;
      uint64_t lo, hi;
    };
    std::vector<Bucket> buckets;
    uint64_t records = 0;
    void add(std::string_view type, int64_t bucket, uint64_t seq);  // one record
    void merge(const IndexDelta& o);
    void add_type(std::string_view type, int64_t n);
    void add_bucket(int64_t bucket, uint64_t lo, uint64_t hi);
    void clear() {
      types.clear();
      buckets.clear();
      records = 0;
    }
  };
  IndexDelta index_delta_;    // appends of the open transaction
  IndexDelta index_pending_;  // committed, not yet in the tables
  bool index_flushed_in_txn_ = false;  // the open transaction wrote index_pending_
  bool index_flush_requested_ = false;
  struct Statements;
  std::unique_ptr<Statements> stmts_;
  std::unique_ptr<std::pair<void (*)(void*, int), void*>> hook_;  // wal hook target
  std::shared_ptr<const Segment> segment_;  // archived_body's cache
};

}  // namespace cairn::store
