// archive_store.cpp — the live database's side of retention: the horizon, the rows a
// segment is built from, and the one narrow path by which rows leave `events`.
//
// Why rows may leave at all: `events` refuses DELETE by trigger so that no statement,
// ours or an operator's, removes a record by accident. archive_commit is the only code
// that deletes, and it does so inside one transaction that first raises the horizon in
// meta, then drops the trigger, deletes exactly the rows at or below the horizon and
// re-creates the trigger. Someone with write access to the file can do the same by hand
// (they could always drop the trigger); what they cannot do is make `cairn verify`
// accept it: records at or below the horizon must be in a segment that recomputes the
// tree, or be declared removed by a sealed cairn.retention.removed record.
//
// The tree table is kept whole: interior nodes cost 40-70 bytes a record and keep every
// root and consistency proof of the live log answerable. Leaf hashes of archived
// records leave with their rows.
#include <cstring>

#include "../../seal/record.hpp"
#include "archive.hpp"
#include "store_internal.hpp"

namespace cairn::store {
namespace {

StoreResult<uint64_t> meta_u64(Store& s, const char* key) {
  auto v = s.meta(key);
  if (!v) return Err{v.error()};
  if (!v.value()) return uint64_t{0};
  return static_cast<uint64_t>(std::strtoull(v.value()->c_str(), nullptr, 10));
}

// Runs one statement binding ?1 and ?2 (when the SQL names them); SQLITE_DONE expected.
StoreResult<Ok> run(sqlite3* db, const char* sql, uint64_t a, uint64_t b, const char* what) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db, rc, what)};
  if (sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(a));
  if (sqlite3_bind_parameter_count(st) >= 2) sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(b));
  rc = sqlite3_step(st);
  StoreResult<Ok> res = Ok{};
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) res = Err{make_error(db, rc, what)};
  sqlite3_finalize(st);
  return res;
}

StoreResult<bool> has_query_index(sqlite3* db) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema WHERE name IN ('time_seq', 'type_counts')", -1,
                              &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db, rc, "archive")};
  bool yes = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2;
  sqlite3_finalize(st);
  return yes;
}

// The same text as the schema's (store.cpp kSchema), so a re-created trigger is the one
// a fresh database has.
constexpr const char* kNoDeleteTrigger =
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events\n"
    "  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END";

}  // namespace

StoreResult<uint64_t> Store::archived_through() { return meta_u64(*this, "archived_through"); }
StoreResult<uint64_t> Store::removal_seq() { return meta_u64(*this, "removal_seq"); }
StoreResult<uint64_t> Store::removed_through() { return meta_u64(*this, "removed_through"); }

std::optional<std::string> Store::archived_body(uint64_t seq) {
  auto h = archived_through();
  auto r = removed_through();
  if (!h || !r || seq > h.value() || seq <= r.value()) return std::nullopt;
  if (!segment_ || seq < segment_->first || seq > segment_->last) {
    segment_.reset();
    auto files = list_segments(archive_dir(path_));
    if (!files) return std::nullopt;
    for (const auto& f : files.value()) {
      if (f.first > seq || f.last < seq) continue;
      auto seg = read_segment(f.path);
      if (seg) segment_ = std::make_shared<const Segment>(std::move(seg.value()));
      break;
    }
    if (!segment_) return std::nullopt;
  }
  return std::string(segment_->body(seq));
}

std::vector<std::pair<uint64_t, std::string>> Store::archived_seals(uint64_t from, uint64_t to, size_t most) {
  std::vector<std::pair<uint64_t, std::string>> out;
  auto h = archived_through();
  auto r = removed_through();
  if (!h || !r) return out;
  from = std::max(from, r.value() + 1);
  to = std::min(to, h.value());
  if (from > to) return out;
  auto files = list_segments(archive_dir(path_));
  if (!files) return out;
  // A canonical body opens with its map header, then "type" and its value: a seal's
  // bytes say so without decoding the map.
  static const std::string kTag = std::string("\xa4type\xaa") + std::string(seal::kSealType);
  for (const auto& f : files.value()) {
    if (f.last < from || f.first > to) continue;
    auto seg = read_segment(f.path);
    if (!seg) continue;
    for (uint64_t q = std::max(from, f.first); q <= std::min(to, f.last) && out.size() < most; ++q) {
      std::string_view b = seg.value().body(q);
      for (size_t at : {size_t{1}, size_t{3}})
        if (b.size() > at + kTag.size() && b.compare(at, kTag.size(), kTag) == 0) {
          out.emplace_back(q, std::string(b));
          break;
        }
    }
  }
  return out;
}

StoreResult<Ok> Store::bodies(uint64_t from, uint64_t to, std::vector<std::string>& out, int64_t& min_received,
                              int64_t& max_received) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT seq, body, received FROM events WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
                              -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "read records for archive")};
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(from));
  sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(to));
  out.clear();
  min_received = INT64_MAX;
  max_received = INT64_MIN;
  uint64_t expect = from;
  bool gap = false;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (static_cast<uint64_t>(sqlite3_column_int64(st, 0)) != expect++) {
      gap = true;
      break;
    }
    const void* b = sqlite3_column_blob(st, 1);
    out.emplace_back(b ? static_cast<const char*>(b) : "", static_cast<size_t>(sqlite3_column_bytes(st, 1)));
    int64_t r = sqlite3_column_int64(st, 2);
    min_received = std::min(min_received, r);
    max_received = std::max(max_received, r);
  }
  StoreError err = rc == SQLITE_DONE || rc == SQLITE_ROW ? StoreError{} : make_error(db_, rc, "read records for archive");
  sqlite3_finalize(st);
  if (!err.message.empty()) return Err{err};
  if (gap || out.size() != to - from + 1)
    return Err{StoreError{StoreErrorKind::corrupt, 0,
                          "records " + std::to_string(from) + ".." + std::to_string(to) +
                              " are not all in the live database (run cairn verify)"}};
  return Ok{};
}

StoreResult<Ok> Store::archive_commit(uint64_t through) {
  if (mode_ != OpenMode::writer || in_transaction()) return Err{misuse("archive_commit")};
  auto h = archived_through();
  if (!h) return Err{h.error()};
  uint64_t horizon = h.value();
  auto newest_seal = latest_seal();
  if (!newest_seal) return Err{newest_seal.error()};
  // The head must stay live (load_head reads the newest row), and so must the newest
  // seal (start-up reconciles the key file with it).
  if (through <= horizon || through >= head_seq_ || !newest_seal.value() || through >= newest_seal.value()->first)
    return Err{misuse("archive_commit: " + std::to_string(through) + " is not between the horizon " +
                      std::to_string(horizon) + " and the newest seal")};
  auto idx = has_query_index(db_);
  if (!idx) return Err{idx.error()};
  auto r = begin();
  if (!r) return r;
  if (idx.value()) {
    // The counts of the records moved out come off the tables: they must count them first.
    r = flush_index();
    if (r)
      r = run(db_,
            "UPDATE type_counts SET n = n - x.c FROM (SELECT type, COUNT(*) AS c FROM events "
            "WHERE seq > ?1 AND seq <= ?2 GROUP BY type) AS x WHERE type_counts.type = x.type",
            horizon, through, "archive: type counts");
    if (r) r = run(db_, "DELETE FROM type_counts WHERE n <= 0", 0, 0, "archive: type counts");
    if (r) r = run(db_, "DELETE FROM time_seq WHERE hi <= ?1", through, 0, "archive: time index");
    // A bucket that straddles the horizon keeps its live part: lo moves up to the lowest
    // live seq received in it (one exists: its hi is above the horizon).
    if (r)
      r = run(db_,
              "UPDATE time_seq SET lo = (SELECT MIN(seq) FROM events WHERE seq > ?1 AND "
              "received >= (bucket << 30) AND received < ((bucket + 1) << 30)) WHERE lo <= ?1",
              through, 0, "archive: time index");
  }
  if (r) r = run(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES ('archived_through', ?1)", through, 0,
                 "archive: horizon");
  if (r) r = run(db_, "DROP TRIGGER IF EXISTS events_no_delete", 0, 0, "archive");
  if (r) r = run(db_, "DELETE FROM events WHERE seq <= ?1", through, 0, "archive: delete");
  if (r) r = run(db_, kNoDeleteTrigger, 0, 0, "archive");
  if (!r) {
    rollback();
    return r;
  }
  return commit();
}

StoreResult<uint64_t> Store::append_removal(std::string fields, uint64_t last, const proto::Trusted& trusted) {
  if (mode_ != OpenMode::writer || in_transaction()) return Err{misuse("append_removal")};
  auto r = begin();
  if (!r) return Err{r.error()};
  auto seq = append_record(kRemovalType, std::move(fields), trusted);
  StoreResult<Ok> m = Ok{};
  if (seq)
    m = run(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES ('removal_seq', ?1)", seq.value(), 0,
            "removal: meta");
  if (seq && m)
    m = run(db_, "INSERT OR REPLACE INTO meta(key, value) VALUES ('removed_through', ?1)", last, 0, "removal: meta");
  if (!seq || !m) {
    rollback();
    return Err{seq ? m.error() : seq.error()};
  }
  auto c = commit();
  if (!c) return Err{c.error()};
  return seq.value();
}

}  // namespace cairn::store
