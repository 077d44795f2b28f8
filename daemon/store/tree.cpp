// tree.cpp — reading the Merkle tree: nodes, roots, proofs, and the seal records.
//
// Every read here is a primary-key lookup (events by seq, tree by postorder position),
// so a root or a proof costs O(log n) lookups whatever the size of the log.
#include <cstring>

#include "../../seal/record.hpp"
#include "store_internal.hpp"

namespace cairn::store {
namespace {

std::optional<Hash> hash_row(sqlite3_stmt* st, sqlite3_int64 key) {
  sqlite3_reset(st);
  sqlite3_bind_int64(st, 1, key);
  std::optional<Hash> out;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32) {
    Hash h;
    std::memcpy(h.data(), sqlite3_column_blob(st, 0), 32);
    out = h;
  }
  sqlite3_reset(st);
  return out;
}

std::string blob_col(sqlite3_stmt* st, int i) {
  const void* b = sqlite3_column_blob(st, i);
  return b ? std::string(static_cast<const char*>(b), static_cast<size_t>(sqlite3_column_bytes(st, i)))
           : std::string();
}

StoreError missing(const std::string& what) {
  return StoreError{StoreErrorKind::corrupt, 0, what + ": a tree node is missing or malformed (run cairn verify)"};
}

}  // namespace

std::optional<Hash> Store::node(unsigned level, uint64_t index) {
  if (level == 0) {
    auto h = hash_row(stmts_->leaf, static_cast<sqlite3_int64>(index + 1));
    if (!h)  // an archived record: its leaf from its segment (retention, PROTOCOL.md §11)
      if (auto b = archived_body(index + 1)) h = seal::leaf_hash(*b);
    return h;
  }
  return hash_row(stmts_->node, static_cast<sqlite3_int64>(seal::postorder(level, index)));
}

StoreResult<Hash> Store::root_at(uint64_t size) {
  auto r = seal::root_at([this](unsigned l, uint64_t i) { return node(l, i); }, size);
  if (!r) return Err{missing("root of " + std::to_string(size))};
  return *r;
}

StoreResult<std::vector<Hash>> Store::inclusion_proof(uint64_t seq, uint64_t size) {
  if (seq == 0 || seq > size) return Err{misuse("inclusion proof: seq outside the tree")};
  auto p = seal::inclusion_proof([this](unsigned l, uint64_t i) { return node(l, i); }, seq - 1, size);
  if (!p) return Err{missing("inclusion proof of seq " + std::to_string(seq))};
  return std::move(*p);
}

StoreResult<std::vector<Hash>> Store::consistency_proof(uint64_t m, uint64_t n) {
  if (m == 0 || m > n) return Err{misuse("consistency proof: need 0 < m <= n")};
  auto p = seal::consistency_proof([this](unsigned l, uint64_t i) { return node(l, i); }, m, n);
  if (!p) return Err{missing("consistency proof " + std::to_string(m) + " -> " + std::to_string(n))};
  return std::move(*p);
}

StoreResult<std::optional<std::string>> Store::body_of(uint64_t seq) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT body FROM events WHERE seq = ?1", -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "read record")};
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(seq));
  std::optional<std::string> out;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) out = blob_col(st, 0);
  StoreResult<std::optional<std::string>> res = out;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) res = Err{make_error(db_, rc, "read record")};
  sqlite3_finalize(st);
  if (res && !out) {
    if (auto b = archived_body(seq)) res = std::optional<std::string>(std::move(*b));
  }
  return res;
}

namespace {
// Runs `sql` (binding ?1 = a, ?2 = b) and collects (seq, body) rows.
StoreResult<std::vector<std::pair<uint64_t, std::string>>> seal_rows(sqlite3* db, const char* sql,
                                                                      uint64_t a, uint64_t b) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db, rc, "read seals")};
  sqlite3_bind_text(st, 3, seal::kSealType.data(), static_cast<int>(seal::kSealType.size()), SQLITE_STATIC);
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(std::min<uint64_t>(a, INT64_MAX)));
  sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(std::min<uint64_t>(b, INT64_MAX)));
  std::vector<std::pair<uint64_t, std::string>> out;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    out.emplace_back(static_cast<uint64_t>(sqlite3_column_int64(st, 0)), blob_col(st, 1));
  StoreResult<std::vector<std::pair<uint64_t, std::string>>> res = std::move(out);
  if (rc != SQLITE_DONE) res = Err{make_error(db, rc, "read seals")};
  sqlite3_finalize(st);
  return res;
}
}  // namespace

StoreResult<std::vector<std::pair<uint64_t, std::string>>> Store::seals(uint64_t from, uint64_t to) {
  auto live = seal_rows(db_, "SELECT seq, body FROM events WHERE type = ?3 AND seq >= ?1 AND seq <= ?2 ORDER BY seq",
                        from, to);
  if (!live) return live;
  // Archived seals come first: they are all below every live record.
  auto out = archived_seals(from, to);
  if (out.empty()) return live;
  for (auto& s : live.value()) out.push_back(std::move(s));
  return out;
}

StoreResult<std::optional<std::pair<uint64_t, std::string>>> Store::seal_after(uint64_t seq) {
  auto a = archived_seals(seq + 1, UINT64_MAX, 1);
  if (!a.empty()) return std::optional(std::move(a.front()));
  auto r = seal_rows(db_, "SELECT seq, body FROM events WHERE type = ?3 AND seq > ?1 AND ?2 ORDER BY seq LIMIT 1",
                     seq, 1);
  if (!r) return Err{r.error()};
  if (r.value().empty()) return std::optional<std::pair<uint64_t, std::string>>();
  return std::optional(std::move(r.value().front()));
}

StoreResult<std::optional<std::pair<uint64_t, std::string>>> Store::latest_seal() {
  auto r = seal_rows(db_, "SELECT seq, body FROM events WHERE type = ?3 AND ?1 AND ?2 ORDER BY seq DESC LIMIT 1",
                     1, 1);
  if (!r) return Err{r.error()};
  if (r.value().empty()) return std::optional<std::pair<uint64_t, std::string>>();
  return std::optional(std::move(r.value().front()));
}

StoreResult<std::optional<int64_t>> Store::min_received() {
  // Through time_seq: the oldest bucket's seq range holds the oldest record (schema 4
  // has no index on received, and a full scan of a big log at start-up takes seconds).
  // With no bucket yet, every record is in the tail (schema 5): fewer than a few hundred.
  // A file without the query index is scanned.
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_,
                              "SELECT MIN(received) FROM events WHERE seq BETWEEN "
                              "IFNULL((SELECT lo FROM time_seq ORDER BY bucket LIMIT 1), 0) AND "
                              "IFNULL((SELECT hi FROM time_seq ORDER BY bucket LIMIT 1), 9223372036854775807)",
                              -1, &st, nullptr);
  if (rc != SQLITE_OK) rc = sqlite3_prepare_v2(db_, "SELECT MIN(received) FROM events", -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "read oldest record")};
  std::optional<int64_t> out;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_INTEGER) out = sqlite3_column_int64(st, 0);
  StoreResult<std::optional<int64_t>> res = out;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) res = Err{make_error(db_, rc, "read oldest record")};
  sqlite3_finalize(st);
  return res;
}

}  // namespace cairn::store
