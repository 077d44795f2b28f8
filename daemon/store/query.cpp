// query.cpp — newest-first pages with keyset cursors (and the OFFSET baseline), info.
//
// One prepared statement per combination of filters, built on first use and reused:
// a busy query thread compiles no SQL after warm-up.
//
// Every page statement carries `seq < ?6`, bound to INT64_MAX on a first page, so the
// first page and the ones after it run the same plan: newest first along the rowid or
// along the (type, seq) / (actor, seq) index, stopping after `limit` matches. Without
// it SQLite picks the received index for a since+until page and sorts the whole time
// range to return the newest 100 (a TEMP B-TREE over maybe millions of rows). Walking
// seq costs the rows newer than `until` plus the skipped ones inside the range; that
// is what a "recent events" query wants, and it never sorts.
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>

#include "store_internal.hpp"

namespace cairn::store {
namespace {

constexpr unsigned kType = 1, kActor = 2, kSince = 4, kUntil = 8, kSeverity = 16;

unsigned mask_of(const proto::QuerySpec& q) {
  return (q.type ? kType : 0) | (q.actor ? kActor : 0) | (q.since ? kSince : 0) |
         (q.until ? kUntil : 0) | (q.severity ? kSeverity : 0);
}

std::string sql_for(unsigned mask, bool offset) {
  std::string sql = "SELECT seq, hash, body FROM events WHERE ";
  auto add = [&](unsigned bit, const char* cond) {
    if (mask & bit) {
      sql += cond;
      sql += " AND ";
    }
  };
  add(kType, "type = ?1");
  add(kActor, "actor = ?2");
  add(kSince, "received >= ?3");
  add(kUntil, "received < ?4");
  add(kSeverity, "severity <= ?5");
  sql += "seq < ?6 ORDER BY seq DESC LIMIT ?7";
  if (offset) sql += " OFFSET ?8";
  return sql;
}

sqlite3_int64 clamp_i64(uint64_t v) {
  constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<sqlite3_int64>::max());
  return static_cast<sqlite3_int64>(std::min(v, kMax));
}

StoreResult<std::optional<uint64_t>> run_query(sqlite3* db, std::map<unsigned, sqlite3_stmt*>& cache,
                                               const proto::QuerySpec& q, bool with_offset,
                                               uint64_t offset, const Store::RowFn& row) {
  unsigned mask = mask_of(q);
  sqlite3_stmt*& st = cache[mask];
  int rc = 0;
  if (st == nullptr) {
    std::string sql = sql_for(mask, with_offset);
    st = prepare(db, sql.c_str(), &rc);
    if (st == nullptr) return Err{make_error(db, rc, "prepare query")};
  }
  // The strings are bound SQLITE_STATIC: they outlive the statement's use, which ends
  // with the reset below.
  if (q.type) sqlite3_bind_text(st, 1, q.type->data(), static_cast<int>(q.type->size()), SQLITE_STATIC);
  if (q.actor) sqlite3_bind_text(st, 2, q.actor->data(), static_cast<int>(q.actor->size()), SQLITE_STATIC);
  if (q.since) sqlite3_bind_int64(st, 3, *q.since);
  if (q.until) sqlite3_bind_int64(st, 4, *q.until);
  if (q.severity) sqlite3_bind_int(st, 5, *q.severity);
  sqlite3_bind_int64(st, 6, clamp_i64(q.after.value_or(UINT64_MAX)));
  sqlite3_bind_int64(st, 7, q.limit);
  if (with_offset) sqlite3_bind_int64(st, 8, clamp_i64(offset));
  uint64_t rows = 0, last = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    last = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    // The views point into SQLite's row buffer: valid until the next step.
    const void* hash = sqlite3_column_blob(st, 1);
    std::string_view h = hash ? std::string_view(static_cast<const char*>(hash),
                                                 static_cast<size_t>(sqlite3_column_bytes(st, 1)))
                              : std::string_view();
    const void* body = sqlite3_column_blob(st, 2);
    std::string_view b = body ? std::string_view(static_cast<const char*>(body),
                                                 static_cast<size_t>(sqlite3_column_bytes(st, 2)))
                              : std::string_view();
    row(last, h, b);
    ++rows;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return Err{make_error(db, rc, "query")};
  std::optional<uint64_t> next;
  if (rows > 0 && rows == q.limit) next = last;
  return next;
}

// A whole page in memory (the CLI's offline reads, tests, the OFFSET baseline).
StoreResult<proto::QueryPage> collect(const std::function<StoreResult<std::optional<uint64_t>>(
                                          const Store::RowFn&)>& run,
                                      uint32_t limit) {
  proto::QueryPage page;
  // limit comes from a peer; the protocol caps it, but do not trust that for a reserve.
  page.events.reserve(std::min<uint32_t>(limit, proto::kMaxQueryLimit));
  auto next = run([&](uint64_t seq, std::string_view hash, std::string_view body) {
    proto::StoredEvent e;
    e.seq = seq;
    if (hash.size() == e.hash.size()) std::memcpy(e.hash.data(), hash.data(), e.hash.size());
    e.body.assign(body);
    page.events.push_back(std::move(e));
  });
  if (!next) return Err{next.error()};
  page.next = next.value();
  return page;
}

}  // namespace

void Store::map_reads(uint64_t bytes) {
  if (mode_ != OpenMode::readonly || bytes == mapped_) return;
  mapped_ = bytes;
  std::string sql = "PRAGMA mmap_size=" + std::to_string(bytes);
  sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);  // best effort: pread otherwise
}

StoreResult<std::optional<uint64_t>> Store::query_each(const proto::QuerySpec& spec, const RowFn& row) {
  return run_query(db_, stmts_->query, spec, false, 0, row);
}

StoreResult<proto::QueryPage> Store::query(const proto::QuerySpec& spec) {
  return collect([&](const RowFn& row) { return query_each(spec, row); }, spec.limit);
}

StoreResult<proto::QueryPage> Store::query_offset(const proto::QuerySpec& spec, uint64_t offset) {
  proto::QuerySpec q = spec;
  q.after.reset();  // OFFSET paging has no cursor
  return collect([&](const RowFn& row) { return run_query(db_, stmts_->query_offset, q, true, offset, row); },
                 q.limit);
}

StoreResult<std::optional<uint64_t>> Store::find_idem(uint32_t uid, std::string_view idem,
                                                     std::string* body) {
  sqlite3_stmt* st = stmts_->find_idem;
  sqlite3_bind_int64(st, 1, uid);
  sqlite3_bind_blob(st, 2, idem.data(), static_cast<int>(idem.size()), SQLITE_STATIC);
  int rc = sqlite3_step(st);
  std::optional<uint64_t> out;
  if (rc == SQLITE_ROW) {
    out = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    const void* b = sqlite3_column_blob(st, 1);
    if (body != nullptr && b != nullptr)
      body->assign(static_cast<const char*>(b), static_cast<size_t>(sqlite3_column_bytes(st, 1)));
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err{make_error(db_, rc, "find idem")};
  return out;
}

StoreResult<std::optional<uint64_t>> Store::seq_for_idem(uint32_t uid, std::string_view idem) {
  return find_idem(uid, idem, nullptr);
}

StoreResult<StoreInfo> Store::info() {
  int rc = 0;
  sqlite3_stmt* count = cached(db_, &stmts_->count, "SELECT IFNULL(MAX(seq), 0) FROM events", &rc);
  if (count == nullptr) return Err{make_error(db_, rc, "info")};
  // GROUP BY walks the type index (covering), then sorts the few distinct types.
  sqlite3_stmt* by_type = cached(
      db_, &stmts_->by_type, "SELECT type, COUNT(*) FROM events GROUP BY type ORDER BY 2 DESC, 1", &rc);
  if (by_type == nullptr) return Err{make_error(db_, rc, "info")};
  // Both reads in one snapshot, so the per-type counts add up to the total.
  bool own_txn = sqlite3_get_autocommit(db_) != 0;
  if (own_txn && (rc = sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr)) != SQLITE_OK)
    return Err{make_error(db_, rc, "info")};
  StoreInfo info;
  // seq is gap-free from 1, so the newest seq is the count (COUNT(*) would scan).
  rc = sqlite3_step(count);
  if (rc == SQLITE_ROW) info.events = static_cast<uint64_t>(sqlite3_column_int64(count, 0));
  sqlite3_reset(count);
  if (rc == SQLITE_ROW) {
    while ((rc = sqlite3_step(by_type)) == SQLITE_ROW) {
      const unsigned char* t = sqlite3_column_text(by_type, 0);
      info.by_type.emplace_back(t ? reinterpret_cast<const char*>(t) : "",
                                static_cast<uint64_t>(sqlite3_column_int64(by_type, 1)));
    }
    sqlite3_reset(by_type);
  }
  StoreResult<StoreInfo> res = info;
  if (rc != SQLITE_DONE) res = Err{make_error(db_, rc, "info")};
  if (own_txn) (void)sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  if (!res) return res;
  struct stat sb {};
  if (stat(path_.c_str(), &sb) == 0) res.value().db_bytes += static_cast<uint64_t>(sb.st_size);
  if (stat((path_ + "-wal").c_str(), &sb) == 0) res.value().db_bytes += static_cast<uint64_t>(sb.st_size);
  return res;
}

}  // namespace cairn::store
