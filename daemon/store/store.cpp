// store.cpp — opening the database, the schema, and the writer's append path.
#include <fcntl.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "store_internal.hpp"

namespace cairn::store {
namespace {

constexpr int kSchemaVersion = 1;

// The schema. seq is the rowid, so the type/actor indexes are (type, seq) and
// (actor, seq) in effect: newest-first keyset pages within a type need no sort.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  seq      INTEGER PRIMARY KEY,  -- gap-free from 1; the chain position
  received INTEGER NOT NULL,     -- daemon clock, ns since the Unix epoch
  time     INTEGER,              -- client's event time, ns
  type     TEXT NOT NULL,
  severity INTEGER NOT NULL,     -- syslog 0..7
  actor    TEXT,
  action   TEXT,
  target   TEXT,
  outcome  INTEGER NOT NULL,     -- 0 unknown, 1 success, 2 failure
  pid      INTEGER NOT NULL,     -- trusted: SO_PEERCRED
  uid      INTEGER NOT NULL,
  gid      INTEGER NOT NULL,
  comm     TEXT,
  idem     BLOB UNIQUE,          -- idempotency key; a resend finds the original
  body     BLOB NOT NULL,        -- canonical msgpack; what the hash covers
  hash     BLOB NOT NULL         -- SHA-256(prev hash || u64be(seq) || body)
);
CREATE INDEX IF NOT EXISTS events_type ON events(type);
CREATE INDEX IF NOT EXISTS events_actor ON events(actor);
CREATE INDEX IF NOT EXISTS events_received ON events(received);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
)sql";

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

StoreErrorKind kind_of(int rc) {
  switch (rc & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return StoreErrorKind::io;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return StoreErrorKind::corrupt;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return StoreErrorKind::busy;
    default:
      return StoreErrorKind::misuse;
  }
}

Result<Ok, StoreError> exec(sqlite3* db, const char* sql, const char* what) {
  char* msg = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &msg);
  if (rc != SQLITE_OK) {
    std::string m = std::string(what) + ": " + (msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return Err{StoreError{kind_of(rc), rc, m}};
  }
  return Ok{};
}

std::string pragma_text(sqlite3* db, const char* sql) {
  int rc = 0;
  sqlite3_stmt* st = prepare(db, sql, &rc);
  std::string out;
  if (st != nullptr && sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    if (t) out = reinterpret_cast<const char*>(t);
  }
  sqlite3_finalize(st);
  return out;
}

void bind_opt_text(sqlite3_stmt* st, int i, const std::optional<std::string>& s) {
  if (s) sqlite3_bind_text(st, i, s->data(), static_cast<int>(s->size()), SQLITE_STATIC);
  else sqlite3_bind_null(st, i);
}

}  // namespace

StoreError make_error(sqlite3* db, int rc, const std::string& what) {
  int ext = db ? sqlite3_extended_errcode(db) : rc;
  if ((ext & 0xff) != (rc & 0xff)) ext = rc;
  std::string msg = what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  msg += " (" + std::string(sqlite3_errstr(ext)) + ", code " + std::to_string(ext) + ")";
  return StoreError{kind_of(ext), ext, msg};
}

StoreError misuse(const std::string& what) { return StoreError{StoreErrorKind::misuse, 0, what}; }

sqlite3_stmt* prepare(sqlite3* db, const char* sql, int* rc) {
  sqlite3_stmt* st = nullptr;
  *rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr);
  return *rc == SQLITE_OK ? st : nullptr;
}

Store::Statements::~Statements() {
  for (sqlite3_stmt* s : {insert, find_idem, head, hash_at, begin, commit, rollback})
    sqlite3_finalize(s);
  for (auto& [k, s] : query) sqlite3_finalize(s);
  for (auto& [k, s] : query_offset) sqlite3_finalize(s);
  if (lock_fd >= 0) ::close(lock_fd);
}

Store::~Store() {
  stmts_.reset();  // statements before the connection
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

StoreResult<std::unique_ptr<Store>> Store::open(const std::string& path, OpenMode mode) {
  if (sodium_init() < 0) return Err{misuse("libsodium failed to initialise")};
  std::unique_ptr<Store> s(new Store());
  s->mode_ = mode;
  s->path_ = path;
  s->stmts_ = std::make_unique<Statements>();
  if (mode == OpenMode::writer) {
    // One writer per database: a second daemon on the same file must fail at once,
    // not interleave appends and fork the chain.
    std::string lock = path + "-lock";
    s->stmts_->lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->stmts_->lock_fd < 0)
      return Err{StoreError{StoreErrorKind::io, 0, "open " + lock + ": " + strerror(errno)}};
    if (flock(s->stmts_->lock_fd, LOCK_EX | LOCK_NB) != 0)
      return Err{StoreError{StoreErrorKind::busy, 0,
                            path + " is in use by another cairnd (lock " + lock + " is held)"}};
  } else {
    struct stat st {};
    if (stat(path.c_str(), &st) != 0)
      return Err{StoreError{StoreErrorKind::io, 0, path + ": " + strerror(errno)}};
  }
  int flags = mode == OpenMode::writer         ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
              : mode == OpenMode::checkpointer ? SQLITE_OPEN_READWRITE
                                               : SQLITE_OPEN_READONLY;
  int rc = sqlite3_open_v2(path.c_str(), &s->db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(s->db_, rc, "open " + path)};
  sqlite3_extended_result_codes(s->db_, 1);
  sqlite3_busy_timeout(s->db_, 5000);

  if (mode == OpenMode::writer) {
    if (pragma_text(s->db_, "PRAGMA journal_mode=WAL") != "wal")
      return Err{misuse(path + ": cannot switch to WAL journal mode")};
    auto r = exec(s->db_, "PRAGMA synchronous=FULL; PRAGMA cache_size=-8192;", "pragmas");
    if (!r) return Err{r.error()};
    if (pragma_text(s->db_, "PRAGMA synchronous") != "2")
      return Err{misuse(path + ": synchronous=FULL did not take effect")};
    r = exec(s->db_, "BEGIN IMMEDIATE", "schema");
    if (!r) return Err{r.error()};
    r = exec(s->db_, kSchema, "schema");
    if (!r) {
      (void)exec(s->db_, "ROLLBACK", "schema");
      return Err{r.error()};
    }
    std::string meta = "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', " +
                       std::to_string(kSchemaVersion) + "), ('genesis', '" +
                       std::string(64, '0') + "'), ('created', " + std::to_string(now_ns()) + ")";
    r = exec(s->db_, meta.c_str(), "meta");
    if (r) r = exec(s->db_, "COMMIT", "schema commit");
    if (!r) {
      (void)exec(s->db_, "ROLLBACK", "schema");
      return Err{r.error()};
    }
  }
  std::string version = pragma_text(s->db_, "SELECT value FROM meta WHERE key = 'schema_version'");
  if (version != std::to_string(kSchemaVersion))
    return Err{StoreError{StoreErrorKind::schema, 0,
                          path + ": schema version '" + version + "' is not " +
                              std::to_string(kSchemaVersion) + " (not a cairn database?)"}};

  auto& st = *s->stmts_;
  struct {
    sqlite3_stmt** slot;
    const char* sql;
  } stmts[] = {
      {&st.head, "SELECT seq, hash, body FROM events ORDER BY seq DESC LIMIT 1"},
      {&st.hash_at, "SELECT hash FROM events WHERE seq = ?1"},
      {&st.find_idem, "SELECT seq FROM events WHERE idem = ?1"},
  };
  for (auto& p : stmts)
    if ((*p.slot = prepare(s->db_, p.sql, &rc)) == nullptr)
      return Err{make_error(s->db_, rc, "prepare")};
  if (mode == OpenMode::writer) {
    struct {
      sqlite3_stmt** slot;
      const char* sql;
    } wstmts[] = {
        {&st.insert,
         "INSERT INTO events (seq, received, time, type, severity, actor, action, target, "
         "outcome, pid, uid, gid, comm, idem, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
         "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT(idem) DO NOTHING"},
        {&st.begin, "BEGIN IMMEDIATE"},
        {&st.commit, "COMMIT"},
        {&st.rollback, "ROLLBACK"},
    };
    for (auto& p : wstmts)
      if ((*p.slot = prepare(s->db_, p.sql, &rc)) == nullptr)
        return Err{make_error(s->db_, rc, "prepare")};
  }
  auto h = s->load_head();
  if (!h) return Err{h.error()};
  return s;
}

StoreResult<Ok> Store::load_head() {
  sqlite3_stmt* st = stmts_->head;
  sqlite3_reset(st);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(st);
    head_seq_ = 0;
    head_hash_ = kGenesis;
    return Ok{};
  }
  if (rc != SQLITE_ROW) {
    auto e = make_error(db_, rc, "read chain head");
    sqlite3_reset(st);
    return Err{e};
  }
  uint64_t seq = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  Hash stored{};
  if (sqlite3_column_bytes(st, 1) != static_cast<int>(stored.size())) {
    sqlite3_reset(st);
    return Err{StoreError{StoreErrorKind::corrupt, 0,
                          "chain head seq " + std::to_string(seq) + " has a malformed hash"}};
  }
  std::memcpy(stored.data(), sqlite3_column_blob(st, 1), stored.size());
  std::string body(static_cast<const char*>(sqlite3_column_blob(st, 2)),
                   static_cast<size_t>(sqlite3_column_bytes(st, 2)));
  sqlite3_reset(st);
  Hash prev = kGenesis;
  if (seq > 1) {
    sqlite3_stmt* hp = stmts_->hash_at;
    sqlite3_reset(hp);
    sqlite3_bind_int64(hp, 1, static_cast<sqlite3_int64>(seq - 1));
    rc = sqlite3_step(hp);
    if (rc != SQLITE_ROW || sqlite3_column_bytes(hp, 0) != static_cast<int>(prev.size())) {
      sqlite3_reset(hp);
      return Err{StoreError{StoreErrorKind::corrupt, 0,
                            "chain head seq " + std::to_string(seq) + " has no predecessor row"}};
    }
    std::memcpy(prev.data(), sqlite3_column_blob(hp, 0), prev.size());
    sqlite3_reset(hp);
  }
  if (chain_hash(prev, seq, body) != stored)
    return Err{StoreError{StoreErrorKind::corrupt, 0,
                          "chain head seq " + std::to_string(seq) +
                              ": stored hash does not match its body (run cairn verify)"}};
  head_seq_ = seq;
  head_hash_ = stored;
  return Ok{};
}

bool Store::in_transaction() const { return db_ != nullptr && sqlite3_get_autocommit(db_) == 0; }

StoreResult<Ok> Store::begin() {
  if (mode_ != OpenMode::writer) return Err{misuse("begin on a read-only store")};
  sqlite3_stmt* st = stmts_->begin;
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return Err{make_error(db_, rc, "begin")};
  return Ok{};
}

StoreResult<AppendResult> Store::append(const proto::Event& e, const proto::Trusted& t,
                                        std::string_view body) {
  if (mode_ != OpenMode::writer || !in_transaction())
    return Err{misuse("append outside a write transaction")};
  uint64_t seq = head_seq_ + 1;
  Hash hash = chain_hash(head_hash_, seq, body);
  sqlite3_stmt* st = stmts_->insert;
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(seq));
  sqlite3_bind_int64(st, 2, t.received);
  if (e.time) sqlite3_bind_int64(st, 3, *e.time);
  else sqlite3_bind_null(st, 3);
  sqlite3_bind_text(st, 4, e.type.data(), static_cast<int>(e.type.size()), SQLITE_STATIC);
  sqlite3_bind_int(st, 5, e.severity);
  bind_opt_text(st, 6, e.actor);
  bind_opt_text(st, 7, e.action);
  bind_opt_text(st, 8, e.target);
  sqlite3_bind_int(st, 9, static_cast<int>(e.outcome));
  sqlite3_bind_int64(st, 10, t.pid);
  sqlite3_bind_int64(st, 11, t.uid);
  sqlite3_bind_int64(st, 12, t.gid);
  sqlite3_bind_text(st, 13, t.comm.data(), static_cast<int>(t.comm.size()), SQLITE_STATIC);
  if (e.idem.empty()) sqlite3_bind_null(st, 14);
  else sqlite3_bind_blob(st, 14, e.idem.data(), static_cast<int>(e.idem.size()), SQLITE_STATIC);
  sqlite3_bind_blob(st, 15, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
  sqlite3_bind_blob(st, 16, hash.data(), static_cast<int>(hash.size()), SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return Err{make_error(db_, rc, "insert seq " + std::to_string(seq))};
  if (sqlite3_changes(db_) == 0) {
    // The idem key is already stored: answer with the original event's seq.
    auto orig = seq_for_idem(e.idem);
    if (!orig) return Err{orig.error()};
    if (!orig.value()) return Err{misuse("idem conflict but no row found")};
    return AppendResult{*orig.value(), true};
  }
  head_seq_ = seq;
  head_hash_ = hash;
  return AppendResult{seq, false};
}

StoreResult<Ok> Store::commit() {
  if (!in_transaction()) return Err{misuse("commit outside a transaction")};
  sqlite3_stmt* st = stmts_->commit;
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    StoreError err = make_error(db_, rc, "commit");
    // Whatever SQLite left behind is not to be trusted as committed: roll back what is
    // still open and take the head from the file again.
    rollback();
    return Err{err};
  }
  return Ok{};
}

void Store::rollback() {
  if (in_transaction()) {
    sqlite3_stmt* st = stmts_->rollback;
    sqlite3_step(st);
    sqlite3_reset(st);
  }
  (void)load_head();
}

StoreResult<Ok> Store::checkpoint() {
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "checkpoint")};
  return Ok{};
}

StoreResult<Ok> Store::checkpoint_passive() {
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) return Err{make_error(db_, rc, "checkpoint")};
  return Ok{};
}

void Store::hand_off_checkpoints(void (*on_commit)(void* ctx, int frames), void* ctx) {
  sqlite3_wal_autocheckpoint(db_, 0);
  // sqlite3_wal_hook takes one pointer; keep the pair alive as long as the connection.
  hook_ = std::make_unique<std::pair<void (*)(void*, int), void*>>(on_commit, ctx);
  sqlite3_wal_hook(
      db_,
      [](void* p, sqlite3*, const char*, int frames) -> int {
        auto* h = static_cast<std::pair<void (*)(void*, int), void*>*>(p);
        h->first(h->second, frames);
        return SQLITE_OK;
      },
      hook_.get());
}

StoreResult<std::optional<uint64_t>> Store::seq_for_idem(std::string_view idem) {
  sqlite3_stmt* st = stmts_->find_idem;
  sqlite3_bind_blob(st, 1, idem.data(), static_cast<int>(idem.size()), SQLITE_STATIC);
  int rc = sqlite3_step(st);
  std::optional<uint64_t> out;
  if (rc == SQLITE_ROW) out = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err{make_error(db_, rc, "find idem")};
  return out;
}

StoreResult<StoreInfo> Store::info() {
  StoreInfo info;
  int rc = 0;
  // seq is gap-free, so the newest seq is the count (COUNT(*) would scan).
  sqlite3_stmt* st = prepare(db_, "SELECT IFNULL(MAX(seq), 0) FROM events", &rc);
  if (st == nullptr) return Err{make_error(db_, rc, "info")};
  if (sqlite3_step(st) == SQLITE_ROW) info.events = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  st = prepare(db_, "SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY 2 DESC, 1", &rc);
  if (st == nullptr) return Err{make_error(db_, rc, "info")};
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    info.by_type.emplace_back(t ? reinterpret_cast<const char*>(t) : "",
                              static_cast<uint64_t>(sqlite3_column_int64(st, 1)));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return Err{make_error(db_, rc, "info by type")};
  struct stat sb {};
  if (stat(path_.c_str(), &sb) == 0) info.db_bytes += static_cast<uint64_t>(sb.st_size);
  if (stat((path_ + "-wal").c_str(), &sb) == 0) info.db_bytes += static_cast<uint64_t>(sb.st_size);
  return info;
}

}  // namespace cairn::store
