// error.cpp — SQLite result codes turned into StoreError, and statement preparation.
#include "store_internal.hpp"

namespace cairn::store {
namespace {

// SQLite has no API that names a result code; sqlite3_errstr() gives only the generic
// sentence. An operator reading "commit: disk I/O error (SQLITE_IOERR_FSYNC)" in the
// journal knows at once which system call failed, so the codes the store can meet on
// its paths are named here. Anything else is printed as its number.
const char* code_name(int code) {
#define CAIRN_CODE(c) \
  case c:             \
    return #c;
  switch (code) {
    CAIRN_CODE(SQLITE_ERROR)
    CAIRN_CODE(SQLITE_PERM)
    CAIRN_CODE(SQLITE_ABORT)
    CAIRN_CODE(SQLITE_BUSY)
    CAIRN_CODE(SQLITE_LOCKED)
    CAIRN_CODE(SQLITE_NOMEM)
    CAIRN_CODE(SQLITE_READONLY)
    CAIRN_CODE(SQLITE_IOERR)
    CAIRN_CODE(SQLITE_CORRUPT)
    CAIRN_CODE(SQLITE_FULL)
    CAIRN_CODE(SQLITE_CANTOPEN)
    CAIRN_CODE(SQLITE_PROTOCOL)
    CAIRN_CODE(SQLITE_SCHEMA)
    CAIRN_CODE(SQLITE_CONSTRAINT)
    CAIRN_CODE(SQLITE_MISUSE)
    CAIRN_CODE(SQLITE_NOTADB)
    CAIRN_CODE(SQLITE_IOERR_READ)
    CAIRN_CODE(SQLITE_IOERR_SHORT_READ)
    CAIRN_CODE(SQLITE_IOERR_WRITE)
    CAIRN_CODE(SQLITE_IOERR_FSYNC)
    CAIRN_CODE(SQLITE_IOERR_DIR_FSYNC)
    CAIRN_CODE(SQLITE_IOERR_TRUNCATE)
    CAIRN_CODE(SQLITE_IOERR_FSTAT)
    CAIRN_CODE(SQLITE_IOERR_UNLOCK)
    CAIRN_CODE(SQLITE_IOERR_RDLOCK)
    CAIRN_CODE(SQLITE_IOERR_DELETE)
    CAIRN_CODE(SQLITE_IOERR_NOMEM)
    CAIRN_CODE(SQLITE_IOERR_ACCESS)
    CAIRN_CODE(SQLITE_IOERR_CHECKRESERVEDLOCK)
    CAIRN_CODE(SQLITE_IOERR_LOCK)
    CAIRN_CODE(SQLITE_IOERR_CLOSE)
    CAIRN_CODE(SQLITE_IOERR_SHMOPEN)
    CAIRN_CODE(SQLITE_IOERR_SHMSIZE)
    CAIRN_CODE(SQLITE_IOERR_SHMLOCK)
    CAIRN_CODE(SQLITE_IOERR_SHMMAP)
    CAIRN_CODE(SQLITE_IOERR_SEEK)
    CAIRN_CODE(SQLITE_IOERR_DELETE_NOENT)
    CAIRN_CODE(SQLITE_IOERR_MMAP)
    CAIRN_CODE(SQLITE_IOERR_DATA)
    CAIRN_CODE(SQLITE_IOERR_CORRUPTFS)
    CAIRN_CODE(SQLITE_BUSY_RECOVERY)
    CAIRN_CODE(SQLITE_BUSY_SNAPSHOT)
    CAIRN_CODE(SQLITE_BUSY_TIMEOUT)
    CAIRN_CODE(SQLITE_CANTOPEN_ISDIR)
    CAIRN_CODE(SQLITE_CANTOPEN_FULLPATH)
    CAIRN_CODE(SQLITE_CANTOPEN_DIRTYWAL)
    CAIRN_CODE(SQLITE_CANTOPEN_SYMLINK)
    CAIRN_CODE(SQLITE_CORRUPT_SEQUENCE)
    CAIRN_CODE(SQLITE_CORRUPT_INDEX)
    CAIRN_CODE(SQLITE_READONLY_RECOVERY)
    CAIRN_CODE(SQLITE_READONLY_CANTLOCK)
    CAIRN_CODE(SQLITE_READONLY_ROLLBACK)
    CAIRN_CODE(SQLITE_READONLY_DBMOVED)
    CAIRN_CODE(SQLITE_READONLY_CANTINIT)
    CAIRN_CODE(SQLITE_READONLY_DIRECTORY)
    CAIRN_CODE(SQLITE_CONSTRAINT_NOTNULL)
    CAIRN_CODE(SQLITE_CONSTRAINT_PRIMARYKEY)
    CAIRN_CODE(SQLITE_CONSTRAINT_TRIGGER)
    CAIRN_CODE(SQLITE_CONSTRAINT_UNIQUE)
    default:
      return nullptr;
  }
#undef CAIRN_CODE
}

}  // namespace

StoreErrorKind kind_of(int rc) {
  switch (rc & 0xff) {
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_NOMEM:
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

std::string code_text(int code) {
  const char* name = code_name(code);
  return name ? std::string(name) : "SQLite code " + std::to_string(code);
}

StoreError make_error(sqlite3* db, int rc, const std::string& what) {
  // The connection's extended code is more precise (SQLITE_IOERR_FSYNC rather than
  // SQLITE_IOERR), but only if it belongs to this failure and not an older one.
  int ext = db ? sqlite3_extended_errcode(db) : rc;
  if ((ext & 0xff) != (rc & 0xff)) ext = rc;
  std::string msg = what + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  msg += " (" + code_text(ext) + ")";
  return StoreError{kind_of(ext), ext, msg};
}

StoreError misuse(const std::string& what) { return StoreError{StoreErrorKind::misuse, 0, what}; }

sqlite3_stmt* prepare(sqlite3* db, const char* sql, int* rc) {
  sqlite3_stmt* st = nullptr;
  *rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr);
  return *rc == SQLITE_OK ? st : nullptr;
}

}  // namespace cairn::store
