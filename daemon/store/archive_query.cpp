// archive_query.cpp — query pages that run on from the live table into the archive.
//
// A page walks seqs in one direction. Records above the horizon (meta
// 'archived_through') are in the events table and go through page_live; records at or
// below it are read from the segments, read-only, each decoded once per engine while
// consecutive pages stay in it. The horizon is read once per page: a record is either
// above it or in a segment (archive_commit moves it in one transaction, after its
// segment is durable), so a page sees every record once even when the horizon rises
// between pages. Removed records (at or below meta 'removed_through') are gone.
//
// The archive part is bounded like a filter no index serves: at most QuerySpec::scan
// (<= kMaxScan) records a page, then the page ends with `next` set.
#include <algorithm>
#include <cstdlib>

#include "archive.hpp"
#include "query_engine.hpp"
#include "store_internal.hpp"

namespace cairn::store {

namespace {
// One read snapshot for the whole page: the horizon and the live rows must be read at
// the same moment, or records the writer archives in between would be in neither part.
// page_live's own ReadTxn joins it (it only begins one on a connection in autocommit).
class Snapshot {
 public:
  // begin/commit: the engine's prepared statements (a page is too short to compile
  // them each time); null: compiled here.
  Snapshot(sqlite3* db, sqlite3_stmt* begin, sqlite3_stmt* commit)
      : db_(db), commit_(commit), own_(sqlite3_get_autocommit(db) != 0) {
    if (own_) rc_ = run(begin, "BEGIN");
  }
  ~Snapshot() {
    if (own_ && rc_ == SQLITE_OK) (void)run(commit_, "COMMIT");
  }
  int rc() const { return rc_; }

 private:
  int run(sqlite3_stmt* st, const char* sql) {
    if (st == nullptr) return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  sqlite3* db_;
  sqlite3_stmt* commit_;
  bool own_;
  int rc_ = SQLITE_OK;
};
}  // namespace

StoreResult<QueryEngine::PageEnd> QueryEngine::page(const proto::QuerySpec& q, const RowFn& row) {
  Snapshot snap(db_, kept(&begin_, "BEGIN"), kept(&commit_, "COMMIT"));
  if (snap.rc() != SQLITE_OK) return Err{make_error(db_, snap.rc(), "query")};
  auto h = meta_seq("archived_through");
  if (!h) return Err{h.error()};
  const uint64_t horizon = h.value();
  if (horizon == 0) return page_live(q, row);
  auto rt = meta_seq("removed_through");
  if (!rt) return Err{rt.error()};
  const uint64_t low = rt.value() + 1;  // the oldest record still kept
  uint32_t taken = 0;
  RowFn counted = [&](uint64_t seq, std::string_view hash, std::string_view body) {
    if (!row(seq, hash, body)) return false;
    ++taken;
    return true;
  };
  if (!q.oldest_first) {
    if (!q.after || *q.after > horizon + 1) {
      auto live = page_live(q, counted);
      if (!live || live.value().next || taken >= q.limit) return live;
    }
    proto::QuerySpec rest = q;
    rest.limit = q.limit - taken;
    uint64_t hi = std::min<uint64_t>(horizon, q.after ? *q.after - 1 : horizon);
    if (hi < low || (q.after && *q.after == 0)) return PageEnd{};
    return page_archive(rest, counted, low, hi);
  }
  if (!q.after || *q.after < horizon) {
    uint64_t lo = std::max<uint64_t>(low, q.after ? *q.after + 1 : low);
    if (lo <= horizon) {
      auto arc = page_archive(q, counted, lo, horizon);
      if (!arc || arc.value().next || taken >= q.limit) return arc;
    }
  }
  proto::QuerySpec rest = q;
  rest.limit = q.limit - taken;
  rest.after = std::max<uint64_t>(horizon, q.after.value_or(0));
  return page_live(rest, counted);
}

// Store::meta compiles its statement on every call: per page that was a parse and a
// code generation, a few microseconds of a ~100 us page. The engine keeps one compiled.
// Same reading as Store::archived_through(): a missing key is 0.
StoreResult<uint64_t> QueryEngine::meta_seq(const char* key) {
  sqlite3_stmt* st = kept(&meta_, "SELECT value FROM meta WHERE key = ?1");
  if (st == nullptr) {
    auto v = store_.meta(key);
    if (!v) return Err{v.error()};
    return v.value() ? static_cast<uint64_t>(std::strtoull(v.value()->c_str(), nullptr, 10)) : uint64_t{0};
  }
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  uint64_t v = 0;
  if (rc == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    if (t != nullptr) v = static_cast<uint64_t>(std::strtoull(reinterpret_cast<const char*>(t), nullptr, 10));
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err{make_error(db_, rc, std::string("read meta ") + key)};
  return v;
}

StoreResult<QueryEngine::PageEnd> QueryEngine::page_archive(const proto::QuerySpec& q, const RowFn& row, uint64_t lo,
                                                            uint64_t hi) {
  PageEnd end;
  const bool newest = !q.oldest_first;
  auto files = list_segments(archive_dir(store_.path()));
  if (!files) return Err{StoreError{StoreErrorKind::io, 0, files.error()}};
  std::vector<SegmentFile> segs;
  for (auto& f : files.value())
    if (f.last >= lo && f.first <= hi) segs.push_back(std::move(f));
  if (newest) std::reverse(segs.begin(), segs.end());
  uint64_t span = std::max<uint64_t>(1, std::min<uint64_t>(q.scan.value_or(proto::kMaxScan), proto::kMaxScan));
  uint64_t examined = 0, last_seen = 0;
  uint32_t taken = 0;
  for (const auto& f : segs) {
    // A time window skips a segment by its header, without decoding it.
    if (q.since || q.until) {
      auto hdr = read_segment_header(f.path);
      if (!hdr) return Err{StoreError{StoreErrorKind::corrupt, 0, hdr.error()}};
      if ((q.since && hdr.value().max_received < *q.since) || (q.until && hdr.value().min_received >= *q.until))
        continue;
    }
    if (!segment_ || segment_->first != f.first || segment_->last != f.last) {
      segment_.reset();  // one decoded segment at a time
      auto seg = read_segment(f.path);
      if (!seg) return Err{StoreError{StoreErrorKind::corrupt, 0, seg.error() + " (run cairn verify)"}};
      segment_ = std::make_shared<const Segment>(std::move(seg.value()));
    }
    const Segment& s = *segment_;
    uint64_t a = std::max(lo, s.first), b = std::min(hi, s.last);
    for (uint64_t i = 0; i <= b - a; ++i) {
      uint64_t seq = newest ? b - i : a + i;
      if (examined == span) {  // this page's share of the walk is spent
        end.next = last_seen;
        end.scanned = examined;
        return end;
      }
      ++examined;
      last_seen = seq;
      std::string_view body = s.body(seq);
      if (!body_matches_query(q, body)) continue;
      seal::Hash leaf = seal::leaf_hash(body);
      std::string_view hash(reinterpret_cast<const char*>(leaf.data()), leaf.size());
      if (!row(seq, hash, body)) {
        // Refused before it was taken: resume at this record (never skip it).
        end.next = newest ? seq + 1 : seq - 1;
        end.scanned = examined;
        return end;
      }
      if (++taken == q.limit) {
        end.next = seq;
        end.scanned = examined;
        return end;
      }
    }
  }
  end.scanned = examined;
  return end;
}

}  // namespace cairn::store
