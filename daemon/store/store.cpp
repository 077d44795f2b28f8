// store.cpp — opening the database, the schema, and the writer's append path.
//
// Ownership: Store owns db_ (closed with sqlite3_close_v2 in ~Store) and, through
// stmts_, every prepared statement and the writer's lock fd. open() fills them in one
// at a time and returns early on any failure; the destructor copes with whatever was
// built by then.
#include <fcntl.h>
#include <msgpack.h>
#include <sodium.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "query_engine.hpp"
#include "store_internal.hpp"
#include "wal_vfs.hpp"

namespace cairn::store {
namespace {

// 2: leaf hashes and the Merkle tree (PROTOCOL.md §4, §6) replace version 1's unkeyed
// hash chain. A version 1 file is refused, not converted: its chain proves nothing a
// conversion could carry over.
// 3: idempotency keys are unique per sender uid (index events_idem on (uid, idem)), not
// across the host: one user's key can no longer make another user's event a
// "duplicate" that is never stored (issue 11). The writer converts a version 2 file in
// place (migrate_v2); readers accept both. Bodies and hashes are untouched.
// 4: fewer pages written per commit (issue 15): the index on `received` is gone (no
// query used it: time ranges go through time_seq), events_idem is partial (WHERE idem
// IS NOT NULL: most events carry no key), and the query index tables are kept by the
// writer once per commit instead of by a trigger per record. The writer converts a
// version 3 file in place (migrate_v3: drops two indexes and the trigger, seconds).
// 5: the query index tables are written once every Store::kIndexTailMax records, not in
// every commit (two fewer pages per commit for a lone event, issue 15): they count the
// records up to meta.index_through, and readers count the records past it (the tail,
// at most a few hundred) from `events`. Version 4 files convert by setting
// index_through to the head (their tables count every record); a version 4 build
// refuses a version 5 file, so no writer that ignores index_through touches one.
constexpr int kSchemaVersion = 5;
constexpr int kOldestReadableVersion = 2;
constexpr int kBusyTimeoutMs = 5000;

// The schema. Records are never updated or deleted (triggers refuse it): `events` and
// `tree` only grow. seq is the rowid, so an index on (type) is (type, seq) in effect: a
// newest-first keyset page within a type walks the index backwards and never sorts.
// The same holds for actor. received serves time-range forensics with plain SQL; the
// paged queries walk seq (see query.cpp).
// The events table, created under `name` (migrate_v2 builds it beside the old one).
std::string events_table_sql(const char* name) {
  return std::string("CREATE TABLE IF NOT EXISTS ") + name + R"sql( (
  seq      INTEGER PRIMARY KEY,  -- gap-free from 1; the chain position
  received INTEGER NOT NULL,     -- daemon clock, ns since the Unix epoch
  time     INTEGER,              -- client's event time, ns
  type     TEXT NOT NULL,
  severity INTEGER NOT NULL,     -- syslog 0..7
  actor    TEXT,
  action   TEXT,
  target   TEXT,
  outcome  INTEGER NOT NULL,     -- proto::Outcome: 0 unknown, 1 success, 2 failure
  pid      INTEGER NOT NULL,     -- trusted: SO_PEERCRED
  uid      INTEGER NOT NULL,
  gid      INTEGER NOT NULL,
  comm     TEXT,
  idem     BLOB,                 -- idempotency key, unique per uid (events_idem)
  body     BLOB NOT NULL,        -- canonical msgpack; the Merkle leaf's data
  hash     BLOB NOT NULL         -- leaf hash: SHA-256(0x00 || body)
);
)sql";
}

// Everything but the events table. Every statement is IF NOT EXISTS: on an existing
// file it only re-creates what is missing (an index or a trigger someone dropped).
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree (
  pos      INTEGER PRIMARY KEY,  -- postorder position of a complete node of level >= 1
  hash     BLOB NOT NULL         -- SHA-256(0x01 || left || right)
);
CREATE TRIGGER IF NOT EXISTS tree_no_update BEFORE UPDATE ON tree
  BEGIN SELECT RAISE(ABORT, 'the tree is append-only'); END;
CREATE TRIGGER IF NOT EXISTS tree_no_delete BEFORE DELETE ON tree
  BEGIN SELECT RAISE(ABORT, 'the tree is append-only'); END;
CREATE INDEX IF NOT EXISTS events_type ON events(type);
CREATE INDEX IF NOT EXISTS events_actor ON events(actor);
CREATE UNIQUE INDEX IF NOT EXISTS events_idem ON events(uid, idem) WHERE idem IS NOT NULL;
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

StoreResult<Ok> exec(sqlite3* db, const char* sql, const char* what) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db, rc, what)};
  return Ok{};
}

// The first column of the first row as text ("" when there is no row).
StoreResult<std::string> query_text(sqlite3* db, const char* sql, const std::string& what) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db, rc, what)};
  std::string out;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    if (t) out = reinterpret_cast<const char*>(t);
  }
  StoreResult<std::string> res = out;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) res = Err{make_error(db, rc, what)};
  sqlite3_finalize(st);
  return res;
}

// What the file holds: no tables at all (fresh), or the meta schema_version ("" when
// there is no meta table or no version row: some other application's database).
struct Layout {
  bool empty = false;
  std::string version;
};

StoreResult<Layout> read_layout(sqlite3* db, const std::string& path) {
  Layout l;
  auto n = query_text(db, "SELECT count(*) FROM sqlite_schema", "open " + path);
  if (!n) return Err{n.error()};
  l.empty = n.value() == "0";
  if (l.empty) return l;
  auto has_meta = query_text(
      db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'meta'",
      "open " + path);
  if (!has_meta) return Err{has_meta.error()};
  if (has_meta.value() == "0") return l;
  auto v = query_text(db, "SELECT value FROM meta WHERE key = 'schema_version'",
                      "read schema version of " + path);
  if (!v) return Err{v.error()};
  l.version = v.value();
  return l;
}

}  // namespace

StoreResult<std::optional<std::string>> Store::meta(const std::string& key) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT value FROM meta WHERE key = ?1", -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "read meta " + key)};
  sqlite3_bind_text(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
  std::optional<std::string> out;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    out = std::string(t ? reinterpret_cast<const char*>(t) : "",
                      static_cast<size_t>(sqlite3_column_bytes(st, 0)));
  }
  StoreResult<std::optional<std::string>> res = out;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) res = Err{make_error(db_, rc, "read meta " + key)};
  sqlite3_finalize(st);
  return res;
}

StoreResult<Ok> Store::set_meta(const std::string& key, const std::string& value) {
  if (mode_ != OpenMode::writer || in_transaction()) return Err{misuse("set_meta")};
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)", -1,
                              &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "write meta " + key)};
  sqlite3_bind_text(st, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
  sqlite3_bind_text(st, 2, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
  rc = sqlite3_step(st);
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return Err{make_error(db_, rc, "write meta " + key)};
  return Ok{};
}

namespace {

// Readers take every version from kOldestReadableVersion on; the writer converts an
// older readable version first (setup_writer).
StoreResult<Ok> check_version(const Layout& l, const std::string& path) {
  for (int v = kOldestReadableVersion; v <= kSchemaVersion; ++v)
    if (l.version == std::to_string(v)) return Ok{};
  std::string what = l.version.empty() ? "has no cairn schema version (not a cairn database?)"
                                       : "has schema version '" + l.version +
                                             "', this build reads only " +
                                             std::to_string(kOldestReadableVersion) + ".." +
                                             std::to_string(kSchemaVersion);
  return Err{StoreError{StoreErrorKind::schema, 0, path + " " + what}};
}

// Version 2 -> 3, inside the writer's schema transaction. Version 2 declared `idem BLOB
// UNIQUE`, a constraint SQLite cannot drop, so the table is rebuilt: the same rows, bytes
// and seqs copied into the version 3 table, which then takes the old name. The copy is
// one transaction (a crash leaves version 2 as it was) and costs one pass over the log,
// once. Keys unique across the host are unique per uid, so the copy cannot conflict.
StoreResult<Ok> migrate_v2(sqlite3* db) {
  auto r = exec(db, events_table_sql("events_v3").c_str(), "migrate to schema 3");
  if (r) r = exec(db,
                  "INSERT INTO events_v3 SELECT seq, received, time, type, severity, actor, action, "
                  "target, outcome, pid, uid, gid, comm, idem, body, hash FROM events ORDER BY seq;"
                  "DROP TABLE events;"  // its indexes and triggers go with it; kSchema remakes them
                  "ALTER TABLE events_v3 RENAME TO events;"
                  "UPDATE meta SET value = 3 WHERE key = 'schema_version';",
                  "migrate to schema 3");
  return r;
}

// Schema 3 -> 4 (see kSchemaVersion): kSchema then makes the partial events_idem. The
// query index tables stay: they were exact under the trigger, and the writer keeps them
// from here on.
StoreResult<Ok> migrate_v3(sqlite3* db) {
  return exec(db,
              "DROP INDEX IF EXISTS events_received;"
              "DROP INDEX IF EXISTS events_idem;"
              "DROP TRIGGER IF EXISTS events_query_index;"
              "UPDATE meta SET value = 4 WHERE key = 'schema_version';",
              "migrate to schema 4");
}

// Schema 4 -> 5: the tables of a version 4 file count every record.
StoreResult<Ok> migrate_v4(sqlite3* db) {
  return exec(db,
              "INSERT OR REPLACE INTO meta(key, value) SELECT 'index_through', IFNULL(MAX(seq), 0) FROM events;"
              "UPDATE meta SET value = 5 WHERE key = 'schema_version';",
              "migrate to schema 5");
}

// Writer setup. The version is checked before anything is written, so a database of
// another version (or another program) is refused untouched.
StoreResult<Ok> setup_writer(sqlite3* db, const std::string& path) {
  auto layout = read_layout(db, path);
  if (!layout) return Err{layout.error()};
  if (!layout.value().empty) {
    auto v = check_version(layout.value(), path);
    if (!v) return v;
  }
  auto mode = query_text(db, "PRAGMA journal_mode=WAL", "journal_mode=WAL");
  if (!mode) return Err{mode.error()};
  if (mode.value() != "wal")
    return Err{StoreError{StoreErrorKind::io, 0,
                          path + ": cannot switch to WAL journal mode (still '" + mode.value() +
                              "'); is the file system able to share memory maps?"}};
  // temp_store=MEMORY: SQLite keeps a statement journal for a statement that may need
  // undoing inside its transaction (schema 3's query-index trigger made every append
  // one); on disk that was a temp file written several times per event (2.5x fewer
  // events/s at C=64). Durability is the WAL's and is unchanged.
  auto r = exec(db, "PRAGMA synchronous=FULL; PRAGMA cache_size=-8192; PRAGMA temp_store=MEMORY;", "pragmas");
  if (!r) return r;
  auto sync = query_text(db, "PRAGMA synchronous", "synchronous");
  if (!sync) return Err{sync.error()};
  if (sync.value() != "2")
    return Err{StoreError{StoreErrorKind::io, 0,
                          path + ": synchronous=FULL did not take effect (got " +
                              sync.value() + ")"}};
  r = exec(db, "BEGIN IMMEDIATE", "create schema");
  if (!r) return r;
  if (layout.value().version == "2") r = migrate_v2(db);
  if (r && (layout.value().version == "2" || layout.value().version == "3")) r = migrate_v3(db);
  if (r && (layout.value().version == "2" || layout.value().version == "3" || layout.value().version == "4"))
    r = migrate_v4(db);
  // For an existing database this only re-creates what is missing (an index or a
  // trigger someone dropped); existing objects and rows are left alone.
  if (r) r = exec(db, events_table_sql("events").c_str(), "create schema");
  if (r) r = exec(db, kSchema, "create schema");
  if (r && layout.value().empty) {
    std::string meta = "INSERT INTO meta(key, value) VALUES ('schema_version', " +
                       std::to_string(kSchemaVersion) + "), ('created', " +
                       std::to_string(now_ns()) + "), ('index_through', 0)";
    r = exec(db, meta.c_str(), "create schema");
  }
  if (r) r = exec(db, "COMMIT", "create schema");
  if (!r && sqlite3_get_autocommit(db) == 0) (void)exec(db, "ROLLBACK", "create schema");
  return r;
}

// "file:" URI for `path` with ?immutable=1. Characters that mean something in a URI
// are percent-encoded.
std::string immutable_uri(const std::string& path) {
  static const char* hex = "0123456789ABCDEF";
  std::string uri = "file:";
  for (unsigned char c : path) {
    if (isalnum(c) || c == '/' || c == '.' || c == '_' || c == '-' || c == '~') {
      uri += static_cast<char>(c);
    } else {
      uri += '%';
      uri += hex[c >> 4];
      uri += hex[c & 15];
    }
  }
  return uri + "?immutable=1";
}

// A reader that cannot create PATH-wal/-shm (the directory is not writable by it, and
// no daemon is running to have created them) gets SQLITE_READONLY or CANTOPEN on its
// first read. If there is no WAL content, the main file holds every committed event
// and can be read as immutable. With WAL content, immutable would silently hide the
// newest events, so the error stands.
bool can_fall_back_to_immutable(const std::string& path, int code) {
  int primary = code & 0xff;
  if (primary != SQLITE_READONLY && primary != SQLITE_CANTOPEN) return false;
  struct stat sb {};
  return stat((path + "-wal").c_str(), &sb) != 0 || sb.st_size == 0;
}

// Keys of a body that cairnd stamps (Trusted), not the client: a resend differs in them.
bool is_stamped_key(const msgpack_object& k) {
  if (k.type != MSGPACK_OBJECT_STR) return false;
  std::string_view n(k.via.str.ptr, k.via.str.size);
  return n == "received" || n == "pid" || n == "uid" || n == "gid" || n == "comm" || n == "exe";
}

// Do two canonical bodies hold the same client event (everything but the stamped keys)?
// Canonical bodies list keys in one fixed order, so the client's entries compare in turn.
bool same_event(std::string_view a, std::string_view b) {
  msgpack_zone za, zb;
  msgpack_zone_init(&za, 1024);
  msgpack_zone_init(&zb, 1024);
  msgpack_object oa, ob;
  size_t off_a = 0, off_b = 0;
  bool same =
      msgpack_unpack(a.data(), a.size(), &off_a, &za, &oa) == MSGPACK_UNPACK_SUCCESS &&
      msgpack_unpack(b.data(), b.size(), &off_b, &zb, &ob) == MSGPACK_UNPACK_SUCCESS &&
      oa.type == MSGPACK_OBJECT_MAP && ob.type == MSGPACK_OBJECT_MAP;
  if (same) {
    std::vector<const msgpack_object_kv*> ka, kb;
    for (uint32_t i = 0; i < oa.via.map.size; ++i)
      if (!is_stamped_key(oa.via.map.ptr[i].key)) ka.push_back(&oa.via.map.ptr[i]);
    for (uint32_t i = 0; i < ob.via.map.size; ++i)
      if (!is_stamped_key(ob.via.map.ptr[i].key)) kb.push_back(&ob.via.map.ptr[i]);
    same = ka.size() == kb.size();
    for (size_t i = 0; same && i < ka.size(); ++i)
      same = msgpack_object_equal(ka[i]->key, kb[i]->key) && msgpack_object_equal(ka[i]->val, kb[i]->val);
  }
  msgpack_zone_destroy(&za);
  msgpack_zone_destroy(&zb);
  return same;
}

// Mode of every file the writer creates: the database (and so its -wal and -shm, which
// SQLite creates with the database's mode) and the lock. Audit records are not for
// every local user to read (issue 11 item 7); set with fchmod, so the umask cannot
// widen or narrow it.
constexpr mode_t kFileMode = 0600;

StoreError unsafe(const std::string& what, const std::string& fix) {
  return StoreError{StoreErrorKind::io, 0, "refusing " + what + "; " + fix};
}

std::string octal(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// The daemon (often root) must never adopt or create files through another user's
// hands: a directory others can write lets them plant symlinks (root would create the
// target) or swap files; a database another uid owns can be truncated by that uid at
// will. Checked before anything is opened; with the directory safe, nothing can change
// between this check and the opens below. Creates the database (0600) if missing.
StoreResult<Ok> check_daemon_files(const std::string& path) {
  const uid_t me = geteuid();
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0)
    return Err{StoreError{StoreErrorKind::io, 0, "directory " + dir + ": " + strerror(errno)}};
  if (st.st_uid != me && st.st_uid != 0)
    return Err{unsafe("directory " + dir + ": it is owned by uid " + std::to_string(st.st_uid) +
                          ", who could replace the database's files",
                      "fix: chown " + std::to_string(me) + " " + dir +
                          " (or keep the database in a directory owned by cairnd's user or root)")};
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return Err{unsafe("directory " + dir + ": its mode " + octal(st.st_mode) +
                          " lets other users create, replace or symlink the database's files",
                      "fix: chmod go-w " + dir +
                          " (or keep the database in a directory only cairnd's user can write)")};
  const std::string names[] = {path, path + "-wal", path + "-shm", path + "-lock"};
  for (const std::string& f : names) {
    if (lstat(f.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;
      return Err{StoreError{StoreErrorKind::io, 0, f + ": " + strerror(errno)}};
    }
    if (S_ISLNK(st.st_mode))
      return Err{unsafe(f + ": it is a symbolic link", "fix: remove it; cairnd creates its own files")};
    if (!S_ISREG(st.st_mode))
      return Err{unsafe(f + ": it is not a regular file", "fix: remove it")};
    if (st.st_uid != me)
      return Err{unsafe(f + ": it is owned by uid " + std::to_string(st.st_uid) + ", not cairnd's uid " +
                            std::to_string(me) + " (that user could truncate or rewrite it)",
                        "fix: check its contents, then chown " + std::to_string(me) + " " + f)};
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
      return Err{unsafe(f + ": its mode " + octal(st.st_mode) + " lets other users write it",
                        "fix: chmod go-w " + f)};
  }
  // Create the database ourselves (O_EXCL: never through a name planted meanwhile).
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, kFileMode);
  if (fd >= 0) {
    int rc = fchmod(fd, kFileMode);
    int err = errno;
    ::close(fd);
    if (rc != 0) return Err{StoreError{StoreErrorKind::io, 0, "chmod " + path + ": " + strerror(err)}};
  } else if (errno != EEXIST) {
    return Err{StoreError{StoreErrorKind::io, 0, "create " + path + ": " + strerror(errno)}};
  }
  return Ok{};
}

void bind_opt_text(sqlite3_stmt* st, int i, const std::optional<std::string>& s) {
  if (s) sqlite3_bind_text(st, i, s->data(), static_cast<int>(s->size()), SQLITE_STATIC);
  else sqlite3_bind_null(st, i);
}

}  // namespace

Store::Statements::~Statements() {
  for (sqlite3_stmt* s : {insert, insert_node, add_type, add_bucket, set_through, node, leaf, begin, commit, rollback,
                          find_idem, head, count, by_type})
    sqlite3_finalize(s);
  for (auto& [k, s] : query) sqlite3_finalize(s);
  for (auto& [k, s] : query_offset) sqlite3_finalize(s);
  if (lock_fd >= 0) ::close(lock_fd);
}

Store::~Store() {
  stmts_.reset();  // statements before the connection
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

StoreResult<Ok> Store::connect(bool immutable) {
  if (db_ != nullptr) {  // a retry: nothing has been prepared on the old connection yet
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
  // The daemon's roles never follow a symlink to the database (check_daemon_files has
  // refused one already; this closes the gap if it appears after the check).
  int flags = mode_ == OpenMode::writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW
              : mode_ == OpenMode::checkpointer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW
                                                : SQLITE_OPEN_READONLY;
  flags |= SQLITE_OPEN_NOMUTEX;
  std::string name = path_;
  if (immutable) {
    name = immutable_uri(path_);
    flags |= SQLITE_OPEN_URI;
  }
  const char* vfs = mode_ == OpenMode::writer && options_.combine_wal_writes ? combining_wal_vfs() : nullptr;
  int rc = sqlite3_open_v2(name.c_str(), &db_, flags, vfs);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "open " + path_)};
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, kBusyTimeoutMs);
  if (mode_ == OpenMode::writer) {
    schema_version_ = kSchemaVersion;  // setup_writer converts an older file
    return setup_writer(db_, path_);
  }
  auto layout = read_layout(db_, path_);
  if (!layout) return Err{layout.error()};
  schema_version_ = std::atoi(layout.value().version.c_str());
  return check_version(layout.value(), path_);
}

StoreResult<std::unique_ptr<Store>> Store::open(const std::string& path, OpenMode mode,
                                                const OpenOptions& options) {
  if (sodium_init() < 0) return Err{misuse("libsodium failed to initialise")};
  std::unique_ptr<Store> s(new Store());
  s->mode_ = mode;
  s->options_ = options;
  s->path_ = path;
  s->stmts_ = std::make_unique<Statements>();
  if (mode != OpenMode::readonly) {
    // The daemon's roles: refuse files and a directory another user could swap, and
    // create the database ourselves so its mode (which SQLite gives -wal and -shm too)
    // never depends on the umask.
    auto safe = check_daemon_files(path);
    if (!safe) return Err{safe.error()};
  }
  if (mode == OpenMode::writer) {
    // One writer per database: a second daemon on the same file must fail at once,
    // not interleave appends and fork the chain. The lock is released when the fd is
    // closed, including by the kernel when the process dies. O_NOFOLLOW: a planted
    // symlink must not make us create or lock its target.
    std::string lock = path + "-lock";
    s->stmts_->lock_fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, kFileMode);
    if (s->stmts_->lock_fd < 0)
      return Err{StoreError{StoreErrorKind::io, 0,
                            "open " + lock + ": " + strerror(errno) +
                                (errno == ELOOP ? " (it is a symbolic link: remove it)" : "")}};
    fchmod(s->stmts_->lock_fd, kFileMode);  // the umask may have narrowed it; never widened
    if (flock(s->stmts_->lock_fd, LOCK_EX | LOCK_NB) != 0)
      return Err{StoreError{StoreErrorKind::busy, 0,
                            path + " is in use by another writer (lock " + lock + " is held)"}};
  } else {
    // SQLite would report a missing file as "unable to open"; say which file.
    struct stat sb {};
    if (stat(path.c_str(), &sb) != 0)
      return Err{StoreError{StoreErrorKind::io, 0, path + ": " + strerror(errno)}};
  }
  auto c = s->connect(false);
  if (!c && mode == OpenMode::readonly && can_fall_back_to_immutable(path, c.error().sqlite_code))
    c = s->connect(true);
  if (!c) return Err{c.error()};

  auto p = s->prepare_statements();
  if (!p) return Err{p.error()};
  auto h = s->load_head();
  if (!h) return Err{h.error()};
  return s;
}

StoreResult<Ok> Store::prepare_statements() {
  auto& st = *stmts_;
  struct {
    sqlite3_stmt** slot;
    const char* sql;
    bool writer_only;
  } stmts[] = {
      {&st.head, "SELECT seq, hash, body FROM events ORDER BY seq DESC LIMIT 1", false},
      {&st.leaf, "SELECT hash FROM events WHERE seq = ?1", false},
      {&st.node, "SELECT hash FROM tree WHERE pos = ?1", false},
      {&st.insert_node, "INSERT INTO tree (pos, hash) VALUES (?1, ?2)", true},
      {&st.find_idem, "SELECT seq, body FROM events WHERE uid = ?1 AND idem = ?2", false},
      {&st.insert,
       "INSERT INTO events (seq, received, time, type, severity, actor, action, target, "
       "outcome, pid, uid, gid, comm, idem, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
       "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) ON CONFLICT(uid, idem) WHERE idem IS NOT NULL DO NOTHING",
       true},
      {&st.begin, "BEGIN IMMEDIATE", true},
      {&st.commit, "COMMIT", true},
      {&st.rollback, "ROLLBACK", true},
  };
  int rc = 0;
  for (auto& p : stmts) {
    if (p.writer_only && mode_ != OpenMode::writer) continue;
    if ((*p.slot = prepare(db_, p.sql, &rc)) == nullptr) return Err{make_error(db_, rc, "prepare")};
  }
  if (mode_ == OpenMode::writer) {
    // After a reopen: keep maintaining the query index if the file has it.
    sqlite3_stmt* probe = nullptr;
    rc = sqlite3_prepare_v2(db_, "SELECT count(*) FROM sqlite_schema WHERE name IN ('time_seq', 'type_counts')", -1,
                            &probe, nullptr);
    if (rc != SQLITE_OK) return Err{make_error(db_, rc, "prepare")};
    rc = sqlite3_step(probe);
    bool has = rc == SQLITE_ROW && sqlite3_column_int(probe, 0) == 2;
    sqlite3_finalize(probe);
    if (rc != SQLITE_ROW) return Err{make_error(db_, rc, "prepare")};
    if (has) return attach_query_index();
  }
  return Ok{};
}

StoreResult<Ok> Store::attach_query_index() {
  if (mode_ != OpenMode::writer) return Err{misuse("attach_query_index on a read-only store")};
  auto& st = *stmts_;
  int rc = 0;
  if (st.add_type == nullptr &&
      (st.add_type = prepare(db_,
                             "INSERT INTO type_counts (type, n) VALUES (?1, ?2) "
                             "ON CONFLICT (type) DO UPDATE SET n = n + excluded.n",
                             &rc)) == nullptr)
    return Err{make_error(db_, rc, "prepare query index")};
  if (st.add_bucket == nullptr &&
      (st.add_bucket = prepare(db_,
                               "INSERT INTO time_seq (bucket, lo, hi) VALUES (?1, ?2, ?3) ON CONFLICT (bucket) "
                               "DO UPDATE SET lo = MIN(lo, excluded.lo), hi = MAX(hi, excluded.hi)",
                               &rc)) == nullptr)
    return Err{make_error(db_, rc, "prepare query index")};
  if (st.set_through == nullptr &&
      (st.set_through = prepare(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES ('index_through', ?1)", &rc)) ==
          nullptr)
    return Err{make_error(db_, rc, "prepare query index")};
  return load_index_tail();
}

StoreResult<Ok> Store::load_index_tail() {
  index_pending_.clear();
  index_delta_.clear();
  index_flushed_in_txn_ = false;
  auto through = query_index_through(db_);
  if (!through) return Err{through.error()};
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT type, received, seq FROM events WHERE seq > ?1 ORDER BY seq", -1, &st,
                              nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "read query index tail")};
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(through.value()));
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    auto seq = static_cast<uint64_t>(sqlite3_column_int64(st, 2));
    index_pending_.add(t ? std::string_view(reinterpret_cast<const char*>(t),
                                            static_cast<size_t>(sqlite3_column_bytes(st, 0)))
                         : std::string_view(),
                       sqlite3_column_int64(st, 1) >> kTimeBucketShift, seq);
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return Err{make_error(db_, rc, "read query index tail")};
  return Ok{};
}

void Store::IndexDelta::add_type(std::string_view type, int64_t n) {
  auto t = std::find_if(types.begin(), types.end(), [&](const auto& p) { return p.first == type; });
  if (t == types.end()) types.emplace_back(std::string(type), n);
  else t->second += n;
}

void Store::IndexDelta::add_bucket(int64_t bucket, uint64_t lo, uint64_t hi) {
  auto b = std::find_if(buckets.begin(), buckets.end(), [&](const auto& x) { return x.bucket == bucket; });
  if (b == buckets.end()) buckets.push_back({bucket, lo, hi});
  else {
    b->lo = std::min(b->lo, lo);
    b->hi = std::max(b->hi, hi);
  }
}

void Store::IndexDelta::add(std::string_view type, int64_t bucket, uint64_t seq) {
  add_type(type, 1);
  add_bucket(bucket, seq, seq);
  records += 1;
}

void Store::IndexDelta::merge(const IndexDelta& o) {
  for (const auto& t : o.types) add_type(t.first, t.second);
  for (const auto& b : o.buckets) add_bucket(b.bucket, b.lo, b.hi);
  records += o.records;
}

// received >> 30: buckets of ~1.07 s (query_engine.cpp's time_seq).
void Store::note_index(std::string_view type, int64_t received, uint64_t seq) {
  if (stmts_->add_type == nullptr) return;
  index_delta_.add(type, received >> kTimeBucketShift, seq);
}

StoreResult<Ok> Store::flush_index() {
  if (stmts_->add_type == nullptr) return Ok{};
  // index_pending_ once per transaction: a second flush in it (retention, then the
  // commit) writes only what was appended since the first.
  IndexDelta all;
  if (!index_flushed_in_txn_) all = index_pending_;
  all.merge(index_delta_);
  auto step = [&](sqlite3_stmt* st) -> StoreResult<Ok> {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return Err{make_error(db_, rc, "update query index")};
    return Ok{};
  };
  for (const auto& [type, n] : all.types) {
    sqlite3_bind_text(stmts_->add_type, 1, type.data(), static_cast<int>(type.size()), SQLITE_STATIC);
    sqlite3_bind_int64(stmts_->add_type, 2, n);
    if (auto r = step(stmts_->add_type); !r) return r;
  }
  for (const auto& b : all.buckets) {
    sqlite3_bind_int64(stmts_->add_bucket, 1, b.bucket);
    sqlite3_bind_int64(stmts_->add_bucket, 2, static_cast<sqlite3_int64>(b.lo));
    sqlite3_bind_int64(stmts_->add_bucket, 3, static_cast<sqlite3_int64>(b.hi));
    if (auto r = step(stmts_->add_bucket); !r) return r;
  }
  sqlite3_bind_int64(stmts_->set_through, 1, static_cast<sqlite3_int64>(head_seq_));
  if (auto r = step(stmts_->set_through); !r) return r;
  index_delta_.clear();
  index_flushed_in_txn_ = true;
  return Ok{};
}

StoreResult<Ok> Store::reopen() {
  if (mode_ != OpenMode::writer) return Err{misuse("reopen of a reader")};
  // The lock fd moves across: the database is never without its writer lock, so a second
  // cairnd cannot take it in between (issue 9, defect 6).
  int lock = stmts_->lock_fd;
  stmts_->lock_fd = -1;
  stmts_.reset();  // statements before the connection
  sqlite3_close_v2(db_);
  db_ = nullptr;
  hook_.reset();
  stmts_ = std::make_unique<Statements>();
  stmts_->lock_fd = lock;
  auto c = connect(false);
  if (!c) return c;
  auto p = prepare_statements();
  if (!p) return p;
  head_known_ = true;
  return load_head();
}

namespace {
// Writer: nodes past the head were written by records that are gone (a tail cut by hand;
// a crash or a lost -wal never leaves them, as a node commits with its leaf). Appending
// would hand out those records' seqs again, and fail at the first node position taken.
StoreResult<Ok> check_no_nodes_past(sqlite3* db, uint64_t head) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, "SELECT MAX(pos) FROM tree", -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db, rc, "read tree")};
  rc = sqlite3_step(st);
  bool past = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
              static_cast<uint64_t>(sqlite3_column_int64(st, 0)) >= seal::postorder(0, head);
  StoreError err = rc == SQLITE_ROW ? StoreError{} : make_error(db, rc, "read tree");
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) return Err{err};
  if (past)
    return Err{StoreError{StoreErrorKind::corrupt, 0,
                          "the tree holds nodes past head seq " + std::to_string(head) +
                              ": records after it were removed (run cairn verify)"}};
  return Ok{};
}
}  // namespace

StoreResult<Ok> Store::load_head() {
  sqlite3_stmt* st = stmts_->head;
  sqlite3_reset(st);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(st);
    head_seq_ = 0;
    head_hash_ = kGenesis;
    frontier_ = seal::Frontier();
    return mode_ == OpenMode::writer ? check_no_nodes_past(db_, 0) : Ok{};
  }
  if (rc != SQLITE_ROW) {
    auto e = make_error(db_, rc, "read head");
    sqlite3_reset(st);
    return Err{e};
  }
  uint64_t seq = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  Hash stored{};
  if (sqlite3_column_bytes(st, 1) != static_cast<int>(stored.size())) {
    sqlite3_reset(st);
    return Err{StoreError{StoreErrorKind::corrupt, 0,
                          "head seq " + std::to_string(seq) + " has a malformed hash"}};
  }
  std::memcpy(stored.data(), sqlite3_column_blob(st, 1), stored.size());
  const void* blob = sqlite3_column_blob(st, 2);  // NULL for a zero-length blob
  std::string body;
  if (blob != nullptr)
    body.assign(static_cast<const char*>(blob), static_cast<size_t>(sqlite3_column_bytes(st, 2)));
  sqlite3_reset(st);
  head_seq_ = seq;
  head_hash_ = stored;
  if (mode_ != OpenMode::writer) {
    // Only the writer extends the tree from this head, so only the writer refuses a
    // torn one. A reader must still open a damaged file: `cairn verify --db` is how
    // the operator learns which seq broke.
    return Ok{};
  }
  if (seal::leaf_hash(body) != stored)
    return Err{StoreError{StoreErrorKind::corrupt, 0,
                          "head seq " + std::to_string(seq) +
                              ": stored leaf hash does not match its body (run cairn verify)"}};
  // The frontier: one stored node per set bit of the size (O(log n) reads).
  auto f = seal::Frontier::load(seq, [this](unsigned l, uint64_t i) { return node(l, i); });
  if (!f)
    return Err{StoreError{StoreErrorKind::corrupt, 0,
                          "the tree of " + std::to_string(seq) +
                              " records is missing a node (run cairn verify)"}};
  auto past = check_no_nodes_past(db_, seq);
  if (!past) return past;
  frontier_ = std::move(*f);
  return Ok{};
}

StoreResult<Ok> Store::add_leaf(const Hash& leaf) {
  StoreResult<Ok> res = Ok{};
  sqlite3_stmt* st = stmts_->insert_node;
  frontier_.push(leaf, [&](unsigned level, uint64_t index, const Hash& h) {
    if (!res) return;
    sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(seal::postorder(level, index)));
    sqlite3_bind_blob(st, 2, h.data(), static_cast<int>(h.size()), SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) res = Err{make_error(db_, rc, "insert tree node")};
  });
  return res;
}

bool Store::in_transaction() const { return db_ != nullptr && sqlite3_get_autocommit(db_) == 0; }

StoreResult<Ok> Store::begin() {
  if (mode_ != OpenMode::writer) return Err{misuse("begin on a read-only store")};
  sqlite3_stmt* st = stmts_->begin;
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return Err{make_error(db_, rc, "begin")};
  index_delta_.clear();  // whatever a failed transaction counted is gone with it
  index_flushed_in_txn_ = false;
  return Ok{};
}

StoreResult<AppendResult> Store::append(const proto::Event& e, const proto::Trusted& t,
                                        std::string_view body) {
  if (mode_ != OpenMode::writer || !in_transaction())
    return Err{misuse("append outside a write transaction")};
  if (!head_known_)
    return Err{StoreError{StoreErrorKind::corrupt, 0, "the head could not be re-read; reopen the store"}};
  uint64_t seq = head_seq_ + 1;
  Hash hash = seal::leaf_hash(body);
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
  if (rc != SQLITE_DONE) {
    StoreError err = make_error(db_, rc, "insert seq " + std::to_string(seq));
    // Some errors (SQLITE_FULL, IOERR, NOMEM) make SQLite roll back the whole
    // transaction, not just this statement: the in-memory head must follow the file.
    if (!in_transaction()) reload_head();
    return Err{err};
  }
  if (sqlite3_changes(db_) == 0) {
    // This sender already stored an event under the key. The same event again (a
    // resend) is answered with the original's seq; a different one is a conflict, never
    // a silent "duplicate" that drops it.
    std::string orig_body;
    auto orig = find_idem(t.uid, e.idem, &orig_body);
    if (!orig) return Err{orig.error()};
    if (!orig.value()) return Err{misuse("idem conflict but no row found")};
    AppendResult res{*orig.value(), true};
    res.conflict = !same_event(orig_body, body);
    return res;
  }
  auto nodes = add_leaf(hash);
  if (!nodes) {
    if (!in_transaction()) reload_head();
    return Err{nodes.error()};
  }
  head_seq_ = seq;
  head_hash_ = hash;
  note_index(e.type, t.received, seq);
  return AppendResult{seq, false};
}

StoreResult<uint64_t> Store::append_record(std::string_view type, std::string fields,
                                           const proto::Trusted& trusted) {
  proto::Event e;
  e.type = std::string(type);
  e.severity = 6;  // info
  e.fields = std::move(fields);
  std::string body = proto::event_canonical_body(e, trusted);
  auto r = append(e, trusted, body);
  if (!r) return Err{r.error()};
  return r.value().seq;
}

StoreResult<Ok> Store::commit() {
  if (!in_transaction()) return Err{misuse("commit outside a transaction")};
  bool flush = index_flush_requested_ || index_tail() >= kIndexTailMax;
  if (flush) {
    if (auto ix = flush_index(); !ix) {
      rollback();
      return ix;
    }
  }
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
  // Committed: what the tables do not count yet is what this transaction appended after
  // its flush (nothing, when the flush was at its end), or all of it on top of before.
  if (index_flushed_in_txn_) index_pending_ = std::move(index_delta_);
  else index_pending_.merge(index_delta_);
  index_delta_.clear();
  index_flushed_in_txn_ = false;
  if (flush) index_flush_requested_ = false;
  return Ok{};
}

void Store::rollback() {
  index_delta_.clear();
  index_flushed_in_txn_ = false;  // index_pending_ was never written: it stays pending
  if (in_transaction()) {
    sqlite3_stmt* st = stmts_->rollback;
    sqlite3_step(st);
    sqlite3_reset(st);
  }
  reload_head();
}

void Store::reload_head() {
  // A head we could not read back must not be extended: append refuses until a
  // reopen succeeds (the writer reopens the store after every failed transaction).
  head_known_ = load_head().ok();
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

}  // namespace cairn::store
