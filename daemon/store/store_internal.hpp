// store_internal.hpp — what store.cpp, query.cpp and verify.cpp share. Not installed.
#pragma once

#include <sqlite3.h>

#include <map>
#include <string>

#include "store.hpp"

namespace cairn::store {

// Owns prepared statements; all are finalized in the destructor (null-safe), so a
// half-built Store tears down cleanly.
struct Store::Statements {
  sqlite3_stmt* insert = nullptr;
  sqlite3_stmt* find_idem = nullptr;
  sqlite3_stmt* head = nullptr;
  sqlite3_stmt* hash_at = nullptr;
  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* commit = nullptr;
  sqlite3_stmt* rollback = nullptr;
  std::map<unsigned, sqlite3_stmt*> query;         // by filter mask
  std::map<unsigned, sqlite3_stmt*> query_offset;  // by filter mask
  int lock_fd = -1;                                // writer: flock on PATH-lock

  ~Statements();
};

StoreError make_error(sqlite3* db, int rc, const std::string& what);
StoreError misuse(const std::string& what);
sqlite3_stmt* prepare(sqlite3* db, const char* sql, int* rc);

}  // namespace cairn::store
