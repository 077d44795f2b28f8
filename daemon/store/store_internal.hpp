// store_internal.hpp — what store.cpp, query.cpp, verify.cpp and error.cpp share.
// Not installed; nothing outside daemon/store/ includes it.
#pragma once

#include <sqlite3.h>

#include <map>
#include <string>

#include "store.hpp"

namespace cairn::store {

// Owns the prepared statements and the writer's lock file; all are released in the
// destructor (null-safe, -1-safe), so a half-built Store tears down cleanly. Statements
// must be finalized before the connection is closed: ~Store resets stmts_ first.
struct Store::Statements {
  sqlite3_stmt* insert = nullptr;     // writer
  sqlite3_stmt* begin = nullptr;      // writer
  sqlite3_stmt* commit = nullptr;     // writer
  sqlite3_stmt* rollback = nullptr;   // writer
  sqlite3_stmt* find_idem = nullptr;
  sqlite3_stmt* head = nullptr;
  sqlite3_stmt* leaf = nullptr;         // hash of one record (tree level 0)
  sqlite3_stmt* node = nullptr;         // one interior node by postorder position
  sqlite3_stmt* insert_node = nullptr;  // writer
  sqlite3_stmt* add_type = nullptr;     // writer, when the query index tables exist
  sqlite3_stmt* add_bucket = nullptr;   // writer, likewise
  sqlite3_stmt* set_through = nullptr;  // writer, likewise (meta.index_through)
  sqlite3_stmt* count = nullptr;      // info(), built on first use
  sqlite3_stmt* by_type = nullptr;    // info(), built on first use
  std::map<unsigned, sqlite3_stmt*> query;         // by filter mask, built on first use
  std::map<unsigned, sqlite3_stmt*> query_offset;  // by filter mask, built on first use
  int lock_fd = -1;                                // writer: flock(LOCK_EX) on PATH-lock

  ~Statements();
};

// Maps a (possibly extended) SQLite result code to the kind the caller acts on.
StoreErrorKind kind_of(int rc);
// "SQLITE_IOERR_FSYNC", or "SQLite code N" for codes without a name here.
std::string code_text(int code);
// "<what>: <sqlite3_errmsg> (<code name>)", with the connection's extended code.
StoreError make_error(sqlite3* db, int rc, const std::string& what);
StoreError misuse(const std::string& what);
// sqlite3_prepare_v3 with SQLITE_PREPARE_PERSISTENT (the statement lives as long as the
// Store). Returns nullptr and sets *rc on failure.
sqlite3_stmt* prepare(sqlite3* db, const char* sql, int* rc);
// Prepares *slot on first use; returns it, or nullptr with *rc set.
inline sqlite3_stmt* cached(sqlite3* db, sqlite3_stmt** slot, const char* sql, int* rc) {
  if (*slot == nullptr) *slot = prepare(db, sql, rc);
  return *slot;
}

}  // namespace cairn::store
