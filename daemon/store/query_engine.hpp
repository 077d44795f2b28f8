// query_engine.hpp — filtered pages in either direction (PROTOCOL.md §6.4), bounded per
// request and resumable by cursor, and the two tables that make a big log fast.
//
// Glossary:
//   time_seq     one row per bucket of 2^30 ns (~1.07 s) of `received`: the lowest and
//                highest seq received in it. A time window becomes a seq range in a few
//                B-tree reads; the page then walks that range only. Exact even when the
//                clock steps back: a bucket's [lo, hi] holds every seq received in it.
//   type_counts  events per type, so stats is O(number of types), not a scan.
//   query index  both tables, written by the writer inside a transaction that appends
//                records (Store::flush_index: a rolled-back append leaves no count
//                behind), once every Store::kIndexTailMax records rather than per commit
//                (schema 5). They count the records up to meta.index_through.
//   tail         the records past index_through (fewer than kIndexTailMax from cairnd):
//                every reader counts them from `events` itself (stats adds their types,
//                a time window that reaches them walks them), so answers are exact at
//                every commit.
//   scan span    a filter no index serves (action, target, comm, outcome, uid/pid/gid,
//                severity, several types or actors, fields, text) walks seq; one page
//                walks at most QuerySpec::scan seqs (<= proto::kMaxScan), then ends with
//                `next` set, so a slow filter holds a query thread only for one span.
//
// A database written before the query index existed is upgraded in place by
// ensure_query_indexes (cairnd calls it after opening the writer). Until then (or on a
// file opened read-only that never had a writer since) every query still works: time
// windows walk seq with a filter, stats counts the type index.
//
// Threading: like Store, one thread at a time; the engine borrows the Store's connection.
#pragma once

#include <sqlite3.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <string>
#include <string_view>

#include "store.hpp"

namespace cairn::store {

// Width of a time_seq bucket: received >> kTimeBucketShift.
inline constexpr int kTimeBucketShift = 30;

// Writer connection, outside a transaction: creates what is missing of the query index
// and, when the tables were just created, fills them from the stored events, all in one
// transaction (a crash leaves the file as it was). Returns the events counted (0 when
// the index already existed).
StoreResult<uint64_t> ensure_query_indexes(Store& store);
// The same on a bare read-write connection (the benchmark builds the index of a cached
// database without opening it as the writer).
StoreResult<uint64_t> ensure_query_indexes_on(sqlite3* db);

// The highest seq the query index counts (meta.index_through; a file from before schema 5
// has no such row, and its tables count every record: the head). Read in the caller's
// snapshot.
StoreResult<uint64_t> query_index_through(sqlite3* db);

// Compares the query index with the events table in one read snapshot: every type's
// count and every bucket's [lo, hi] over the records up to index_through, and
// index_through against the head. Returns a description of the first difference, or
// nullopt when they agree (or when the file has no query index). O(n): for verify.
StoreResult<std::optional<std::string>> check_query_indexes(Store& store);

// Every filter of `q` (but the seq cursor) evaluated on a canonical body alone: how a page
// filters archived records, which have no columns (archive_query.cpp).
bool body_matches_query(const proto::QuerySpec& q, std::string_view body);

class QueryEngine {
 public:
  // Called for each matching row, views valid only during the call. Returns false when
  // the row was not taken (the caller's reply is full): the page ends before it.
  using RowFn = std::function<bool(uint64_t seq, std::string_view hash, std::string_view body)>;
  struct PageEnd {
    std::optional<uint64_t> next;  // the cursor for the next page; nullopt at the end
    uint64_t scanned = 0;          // seqs a bounded page walked (0: an index served it)
  };

  explicit QueryEngine(Store& store);  // borrowed: the Store outlives the engine
  ~QueryEngine();
  QueryEngine(const QueryEngine&) = delete;
  QueryEngine& operator=(const QueryEngine&) = delete;

  // Records above the archive horizon come from the events table; the page goes on into
  // the archive segments below it (read-only, every record once: archive_query.cpp).
  StoreResult<PageEnd> page(const proto::QuerySpec& q, const RowFn& row);
  StoreResult<proto::QueryPage> page(const proto::QuerySpec& q);  // collected
  // Events, types most first (from type_counts when present), db size.
  StoreResult<StoreInfo> info();
  // Whether the file has the query index (checked again while it has not).
  bool has_index();

 private:
  sqlite3_stmt* statement(const std::string& sql, int* rc);
  StoreResult<std::optional<std::pair<uint64_t, uint64_t>>> time_bounds(const proto::QuerySpec& q);
  // may_walk: a common type may walk seq first (walk_span); false for the index part.
  StoreResult<PageEnd> page_in_txn(const proto::QuerySpec& q, const RowFn& row, bool may_walk);
  uint64_t walk_span(const proto::QuerySpec& q);
  double type_share(const std::string& type);
  sqlite3_stmt* kept(sqlite3_stmt** slot, const char* sql);
  StoreResult<uint64_t> newest_seq(const char* what);
  // A number kept in `meta` (the archive horizon), through meta_.
  StoreResult<uint64_t> meta_seq(const char* key);
  StoreResult<PageEnd> page_live(const proto::QuerySpec& q, const RowFn& row);
  // Records [lo, hi] of the segments below the horizon, in q's direction.
  StoreResult<PageEnd> page_archive(const proto::QuerySpec& q, const RowFn& row, uint64_t lo, uint64_t hi);

  Store& store_;
  sqlite3* db_;
  bool has_index_ = false;
  std::map<std::string, sqlite3_stmt*> cache_;  // by SQL text; cleared past kMaxCached
  sqlite3_stmt* begin_ = nullptr;   // kept(): BEGIN, COMMIT, the newest seq
  sqlite3_stmt* commit_ = nullptr;
  sqlite3_stmt* head_ = nullptr;
  sqlite3_stmt* meta_ = nullptr;    // kept(): a meta value by key
  sqlite3_stmt* type_n_ = nullptr;  // kept(): one type's count in type_counts
  std::unordered_map<std::string, double> shares_;  // type_share(), bounded
  uint32_t share_lookups_ = 0;
  // The last segment decoded: paging through an archive decodes each file once.
  std::shared_ptr<const Segment> segment_;
};

}  // namespace cairn::store
