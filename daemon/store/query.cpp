// query.cpp — newest-first pages with keyset cursors (and the OFFSET baseline).
//
// One prepared statement per combination of filters, built on first use and reused:
// a busy query thread compiles no SQL after warm-up.
#include <cstring>

#include "store_internal.hpp"

namespace cairn::store {
namespace {

constexpr unsigned kType = 1, kActor = 2, kSince = 4, kUntil = 8, kSeverity = 16, kAfter = 32;

unsigned mask_of(const proto::QuerySpec& q) {
  return (q.type ? kType : 0) | (q.actor ? kActor : 0) | (q.since ? kSince : 0) |
         (q.until ? kUntil : 0) | (q.severity ? kSeverity : 0) | (q.after ? kAfter : 0);
}

std::string sql_for(unsigned mask, bool offset) {
  std::string sql = "SELECT seq, hash, body FROM events";
  const char* sep = " WHERE ";
  auto add = [&](unsigned bit, const char* cond) {
    if (mask & bit) {
      sql += sep;
      sql += cond;
      sep = " AND ";
    }
  };
  add(kType, "type = ?1");
  add(kActor, "actor = ?2");
  add(kSince, "received >= ?3");
  add(kUntil, "received < ?4");
  add(kSeverity, "severity <= ?5");
  add(kAfter, "seq < ?6");
  sql += " ORDER BY seq DESC LIMIT ?7";
  if (offset) sql += " OFFSET ?8";
  return sql;
}

}  // namespace

static StoreResult<proto::QueryPage> run_query(sqlite3* db, std::map<unsigned, sqlite3_stmt*>& cache,
                                               const proto::QuerySpec& q, bool with_offset,
                                               uint64_t offset) {
  unsigned mask = mask_of(q);
  sqlite3_stmt*& st = cache[mask];
  int rc = 0;
  if (st == nullptr) {
    std::string sql = sql_for(mask, with_offset);
    st = prepare(db, sql.c_str(), &rc);
    if (st == nullptr) return Err{make_error(db, rc, "prepare query")};
  }
  if (q.type) sqlite3_bind_text(st, 1, q.type->data(), static_cast<int>(q.type->size()), SQLITE_STATIC);
  if (q.actor) sqlite3_bind_text(st, 2, q.actor->data(), static_cast<int>(q.actor->size()), SQLITE_STATIC);
  if (q.since) sqlite3_bind_int64(st, 3, *q.since);
  if (q.until) sqlite3_bind_int64(st, 4, *q.until);
  if (q.severity) sqlite3_bind_int(st, 5, *q.severity);
  if (q.after) sqlite3_bind_int64(st, 6, static_cast<sqlite3_int64>(*q.after));
  sqlite3_bind_int64(st, 7, q.limit);
  if (with_offset) sqlite3_bind_int64(st, 8, static_cast<sqlite3_int64>(offset));
  proto::QueryPage page;
  page.events.reserve(q.limit);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    proto::StoredEvent e;
    e.seq = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    if (sqlite3_column_bytes(st, 1) == static_cast<int>(e.hash.size()))
      std::memcpy(e.hash.data(), sqlite3_column_blob(st, 1), e.hash.size());
    e.body.assign(static_cast<const char*>(sqlite3_column_blob(st, 2)),
                  static_cast<size_t>(sqlite3_column_bytes(st, 2)));
    page.events.push_back(std::move(e));
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return Err{make_error(db, rc, "query")};
  if (page.events.size() == q.limit && !page.events.empty()) page.next = page.events.back().seq;
  return page;
}

StoreResult<proto::QueryPage> Store::query(const proto::QuerySpec& spec) {
  return run_query(db_, stmts_->query, spec, false, 0);
}

StoreResult<proto::QueryPage> Store::query_offset(const proto::QuerySpec& spec, uint64_t offset) {
  proto::QuerySpec q = spec;
  q.after.reset();  // OFFSET paging has no cursor
  return run_query(db_, stmts_->query_offset, q, true, offset);
}

}  // namespace cairn::store
