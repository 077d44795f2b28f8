// query_engine.cpp — see query_engine.hpp.
#include "query_engine.hpp"

#include <msgpack.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <variant>
#include <vector>

#include "store_internal.hpp"

namespace cairn::store {
namespace {

constexpr size_t kMaxCached = 64;  // distinct filter shapes kept compiled per connection
constexpr sqlite3_int64 kMaxI64 = std::numeric_limits<sqlite3_int64>::max();

// The trigger runs inside the INSERT that appends a record (an idem duplicate inserts
// nothing and fires nothing). Upserts touch one small row each: the newest bucket and
// the event's type stay in the page cache.
constexpr const char* kIndexSchema = R"sql(
CREATE TABLE IF NOT EXISTS time_seq (
  bucket INTEGER PRIMARY KEY,  -- received >> 30
  lo     INTEGER NOT NULL,     -- lowest seq received in the bucket
  hi     INTEGER NOT NULL      -- highest
);
CREATE TABLE IF NOT EXISTS type_counts (
  type TEXT PRIMARY KEY,
  n    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS events_query_index AFTER INSERT ON events BEGIN
  INSERT INTO time_seq (bucket, lo, hi) VALUES (new.received >> 30, new.seq, new.seq)
    ON CONFLICT (bucket) DO UPDATE SET lo = MIN(lo, excluded.lo), hi = MAX(hi, excluded.hi);
  INSERT INTO type_counts (type, n) VALUES (new.type, 1)
    ON CONFLICT (type) DO UPDATE SET n = n + 1;
END;
)sql";

constexpr const char* kBackfill = R"sql(
INSERT INTO time_seq (bucket, lo, hi) SELECT received >> 30, MIN(seq), MAX(seq) FROM events GROUP BY 1;
INSERT INTO type_counts (type, n) SELECT type, COUNT(*) FROM events GROUP BY type;
)sql";

StoreResult<Ok> exec(sqlite3* db, const char* sql, const char* what) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db, rc, what)};
  return Ok{};
}

StoreResult<int64_t> scalar(sqlite3* db, const char* sql, const char* what) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db, rc, what)};
  rc = sqlite3_step(st);
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  StoreResult<int64_t> res = v;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) res = Err{make_error(db, rc, what)};
  sqlite3_finalize(st);
  return res;
}

StoreResult<bool> index_present(sqlite3* db) {
  auto n = scalar(db,
                  "SELECT count(*) FROM sqlite_schema WHERE name IN ('time_seq', 'type_counts', "
                  "'events_query_index')",
                  "read schema");
  if (!n) return Err{n.error()};
  return n.value() == 3;
}

// A read transaction for the duration of a scope, unless one is open already: several
// statements then see one snapshot.
class ReadTxn {
 public:
  explicit ReadTxn(sqlite3* db) : db_(db) {
    own_ = sqlite3_get_autocommit(db_) != 0;
    if (own_) rc_ = sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr);
  }
  ~ReadTxn() {
    if (own_ && rc_ == SQLITE_OK) (void)sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
  }
  int rc() const { return rc_; }

 private:
  sqlite3* db_;
  bool own_ = false;
  int rc_ = SQLITE_OK;
};

// ---- body filters (fields, text) ----

bool ieq(char a, char b) {
  auto low = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  return low(a) == low(b);
}

bool contains_ci(std::string_view hay, std::string_view needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end(), ieq) != hay.end();
}

std::string_view sv(const msgpack_object& o) { return {o.via.str.ptr, o.via.str.size}; }

const msgpack_object* get(const msgpack_object& map, std::string_view key) {
  if (map.type != MSGPACK_OBJECT_MAP) return nullptr;
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == MSGPACK_OBJECT_STR && sv(kv.key) == key) return &kv.val;
  }
  return nullptr;
}

// A scalar's text as a filter compares it: str as is, integers in decimal, bools as
// true/false, nil as null. Floats, maps and arrays match nothing.
std::optional<std::string> scalar_text(const msgpack_object& o) {
  switch (o.type) {
    case MSGPACK_OBJECT_STR: return std::string(sv(o));
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return std::to_string(o.via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return std::to_string(o.via.i64);
    case MSGPACK_OBJECT_BOOLEAN: return std::string(o.via.boolean ? "true" : "false");
    case MSGPACK_OBJECT_NIL: return std::string("null");
    default: return std::nullopt;
  }
}

bool field_matches(const msgpack_object& fields, const proto::FieldMatch& f) {
  const msgpack_object* cur = &fields;
  std::string_view path = f.path;
  while (cur != nullptr) {
    size_t dot = path.find('.');
    // A key may itself hold a dot: try the whole rest first.
    if (const msgpack_object* whole = get(*cur, path)) {
      cur = whole;
      break;
    }
    if (dot == std::string_view::npos) return false;
    cur = get(*cur, path.substr(0, dot));
    path = path.substr(dot + 1);
  }
  if (cur == nullptr) return false;
  auto t = scalar_text(*cur);
  if (!t) return false;
  return std::find(f.values.begin(), f.values.end(), *t) != f.values.end();
}

class BodyFilter {
 public:
  explicit BodyFilter(const proto::QuerySpec& q) : q_(q) { msgpack_zone_init(&zone_, 4096); }
  ~BodyFilter() { msgpack_zone_destroy(&zone_); }
  bool active() const { return !q_.fields.empty() || q_.text.has_value(); }
  bool matches(std::string_view body) {
    msgpack_zone_clear(&zone_);
    msgpack_object o;
    size_t off = 0;
    if (msgpack_unpack(body.data(), body.size(), &off, &zone_, &o) != MSGPACK_UNPACK_SUCCESS ||
        o.type != MSGPACK_OBJECT_MAP)
      return false;
    if (q_.text) {
      const msgpack_object* m = get(o, "message");
      if (m == nullptr || m->type != MSGPACK_OBJECT_STR || !contains_ci(sv(*m), *q_.text)) return false;
    }
    if (!q_.fields.empty()) {
      const msgpack_object* f = get(o, "fields");
      if (f == nullptr) return false;
      for (const auto& fm : q_.fields)
        if (!field_matches(*f, fm)) return false;
    }
    return true;
  }

 private:
  const proto::QuerySpec& q_;
  msgpack_zone zone_;
};

// ---- SQL ----

using Param = std::variant<sqlite3_int64, std::string_view>;

struct Sql {
  std::string text;
  std::vector<Param> params;
  std::deque<std::string> owned;  // the text params point here (a deque never moves them)
  void cond(const std::string& c) { text += c + " AND "; }
  void in(const char* col, const std::vector<std::string>& v) {
    if (v.size() == 1) {
      cond(std::string(col) + " = ?");
    } else {
      std::string c = std::string(col) + " IN (";
      for (size_t i = 0; i < v.size(); ++i) c += i ? ",?" : "?";
      cond(c + ")");
    }
    for (const auto& s : v) params.emplace_back(std::string_view(owned.emplace_back(s)));
  }
  void in(const char* col, const std::vector<int64_t>& v) {
    std::string c = std::string(col) + " IN (";
    for (size_t i = 0; i < v.size(); ++i) c += i ? ",?" : "?";
    cond(c + ")");
    for (int64_t x : v) params.emplace_back(static_cast<sqlite3_int64>(x));
  }
};

// The values asked for column c: q.type/q.actor and the match entries, merged.
std::vector<std::string> texts(const proto::QuerySpec& q, proto::Column c) {
  std::vector<std::string> out;
  if (c == proto::Column::type && q.type) out.push_back(*q.type);
  if (c == proto::Column::actor && q.actor) out.push_back(*q.actor);
  for (const auto& m : q.match)
    if (m.column == c) out.insert(out.end(), m.text.begin(), m.text.end());
  return out;
}

std::vector<int64_t> ints(const proto::QuerySpec& q, proto::Column c) {
  std::vector<int64_t> out;
  for (const auto& m : q.match)
    if (m.column == c) out.insert(out.end(), m.ints.begin(), m.ints.end());
  return out;
}

// Whether an index serves every filter of q (then the page is not bounded by a scan
// span): one type, or one actor, or neither, plus the time window (when time_seq maps it
// to seqs).
bool index_served(const proto::QuerySpec& q) {
  if (q.severity || !q.fields.empty() || q.text) return false;
  for (const auto& m : q.match)
    if (m.column != proto::Column::type && m.column != proto::Column::actor) return false;
  return texts(q, proto::Column::type).size() + texts(q, proto::Column::actor).size() <= 1;
}

}  // namespace

bool body_matches_query(const proto::QuerySpec& q, std::string_view body) {
  msgpack_zone zone;
  msgpack_zone_init(&zone, 2048);
  msgpack_object o;
  size_t off = 0;
  bool ok = msgpack_unpack(body.data(), body.size(), &off, &zone, &o) == MSGPACK_UNPACK_SUCCESS &&
            o.type == MSGPACK_OBJECT_MAP;
  auto int_of = [&](std::string_view key, int64_t& v) {
    const msgpack_object* x = get(o, key);
    if (x == nullptr) return false;
    if (x->type == MSGPACK_OBJECT_POSITIVE_INTEGER) v = static_cast<int64_t>(x->via.u64);
    else if (x->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) v = x->via.i64;
    else return false;
    return true;
  };
  using proto::Column;
  for (Column c : {Column::type, Column::actor, Column::action, Column::target, Column::comm}) {
    if (!ok) break;
    auto want = texts(q, c);
    if (want.empty()) continue;
    const msgpack_object* x = get(o, proto::column_name(c));
    ok = x != nullptr && x->type == MSGPACK_OBJECT_STR && std::find(want.begin(), want.end(), sv(*x)) != want.end();
  }
  for (Column c : {Column::outcome, Column::uid, Column::pid, Column::gid}) {
    if (!ok) break;
    auto want = ints(q, c);
    if (want.empty()) continue;
    int64_t v = -1;
    if (c == Column::outcome) {  // stored by name in the body, by number in the column
      const msgpack_object* x = get(o, "outcome");
      std::string_view name = x && x->type == MSGPACK_OBJECT_STR ? sv(*x) : "";
      v = name == "success" ? 1 : name == "failure" ? 2 : name == "unknown" ? 0 : -1;
    } else if (!int_of(proto::column_name(c), v)) {
      ok = false;
      break;
    }
    ok = std::find(want.begin(), want.end(), v) != want.end();
  }
  int64_t received = 0, severity = 0;
  if (ok && (q.since || q.until)) ok = int_of("received", received) && (!q.since || received >= *q.since) &&
                                       (!q.until || received < *q.until);
  if (ok && q.severity) ok = int_of("severity", severity) && severity <= *q.severity;
  msgpack_zone_destroy(&zone);
  if (ok) {
    BodyFilter bf(q);
    if (bf.active()) ok = bf.matches(body);
  }
  return ok;
}

StoreResult<uint64_t> ensure_query_indexes(Store& store) { return ensure_query_indexes_on(store.handle()); }

StoreResult<uint64_t> ensure_query_indexes_on(sqlite3* db) {
  auto present = index_present(db);
  if (!present) return Err{present.error()};
  if (present.value()) return uint64_t{0};
  auto r = exec(db, "BEGIN IMMEDIATE", "create query index");
  if (!r) return Err{r.error()};
  auto had = scalar(db, "SELECT count(*) FROM sqlite_schema WHERE name IN ('time_seq', 'type_counts')",
                    "create query index");
  // Tables without the trigger (someone dropped it) cannot be trusted: rebuild them.
  if (had && had.value() != 0) r = exec(db, "DROP TABLE IF EXISTS time_seq; DROP TABLE IF EXISTS type_counts;",
                                        "create query index");
  if (!had) r = Err{had.error()};
  if (r) r = exec(db, kIndexSchema, "create query index");
  if (r) r = exec(db, kBackfill, "fill query index");
  StoreResult<int64_t> n = int64_t{0};
  if (r) n = scalar(db, "SELECT IFNULL(SUM(n), 0) FROM type_counts", "fill query index");
  if (r && !n) r = Err{n.error()};
  if (r) r = exec(db, "COMMIT", "create query index");
  if (!r) {
    if (sqlite3_get_autocommit(db) == 0) (void)sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return Err{r.error()};
  }
  return static_cast<uint64_t>(n.value());
}

StoreResult<std::optional<std::string>> check_query_indexes(Store& store) {
  sqlite3* db = store.handle();
  ReadTxn txn(db);
  if (txn.rc() != SQLITE_OK) return Err{make_error(db, txn.rc(), "check query index")};
  auto present = index_present(db);
  if (!present) return Err{present.error()};
  if (!present.value()) return std::optional<std::string>();
  // Each side's rows that the other lacks or holds differently; EXCEPT both ways.
  struct {
    const char* sql;
    const char* what;
  } checks[] = {
      {"SELECT type, n FROM type_counts EXCEPT SELECT type, COUNT(*) FROM events GROUP BY type",
       "type_counts holds a count that differs from the events"},
      {"SELECT type, COUNT(*) FROM events GROUP BY type EXCEPT SELECT type, n FROM type_counts",
       "type_counts lacks or miscounts a type"},
      {"SELECT bucket, lo, hi FROM time_seq EXCEPT SELECT received >> 30, MIN(seq), MAX(seq) FROM events GROUP BY 1",
       "time_seq holds a bucket that differs from the events"},
      {"SELECT received >> 30, MIN(seq), MAX(seq) FROM events GROUP BY 1 EXCEPT SELECT bucket, lo, hi FROM time_seq",
       "time_seq lacks or misstates a bucket"},
  };
  for (const auto& c : checks) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db, c.sql, -1, &st, nullptr);
    if (rc != SQLITE_OK) return Err{make_error(db, rc, "check query index")};
    rc = sqlite3_step(st);
    std::optional<std::string> diff;
    if (rc == SQLITE_ROW) {
      const unsigned char* k = sqlite3_column_text(st, 0);
      diff = std::string(c.what) + " (" + (k ? reinterpret_cast<const char*>(k) : "") + ")";
    }
    StoreError err = rc == SQLITE_ROW || rc == SQLITE_DONE ? StoreError{} : make_error(db, rc, "check query index");
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err{err};
    if (diff) return diff;
  }
  return std::optional<std::string>();
}

QueryEngine::QueryEngine(Store& store) : store_(store), db_(store.handle()) {}

QueryEngine::~QueryEngine() {
  for (auto& [k, st] : cache_) sqlite3_finalize(st);
}

bool QueryEngine::has_index() {
  if (!has_index_) {
    auto p = index_present(db_);
    has_index_ = p && p.value();
  }
  return has_index_;
}

sqlite3_stmt* QueryEngine::statement(const std::string& sql, int* rc) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return it->second;
  if (cache_.size() >= kMaxCached) {
    for (auto& [k, st] : cache_) sqlite3_finalize(st);
    cache_.clear();
  }
  sqlite3_stmt* st = prepare(db_, sql.c_str(), rc);
  if (st != nullptr) cache_.emplace(sql, st);
  return st;
}

// [lo, hi] of the seqs received in q's time window (lo > hi: none); nullopt when q has no
// window or the file has no time_seq (the page then filters on received alone).
StoreResult<std::optional<std::pair<uint64_t, uint64_t>>> QueryEngine::time_bounds(const proto::QuerySpec& q) {
  using Bounds = std::optional<std::pair<uint64_t, uint64_t>>;
  if ((!q.since && !q.until) || !has_index()) return Bounds();
  if (q.since && q.until && *q.until <= *q.since) return Bounds(std::pair<uint64_t, uint64_t>{1, 0});
  int rc = 0;
  sqlite3_stmt* st = statement("SELECT MIN(lo), MAX(hi) FROM time_seq WHERE bucket BETWEEN ?1 AND ?2", &rc);
  if (st == nullptr) return Err{make_error(db_, rc, "time window")};
  sqlite3_int64 b0 = q.since ? (*q.since >> kTimeBucketShift) : std::numeric_limits<sqlite3_int64>::min();
  sqlite3_int64 b1 = q.until ? ((*q.until - 1) >> kTimeBucketShift) : kMaxI64;
  sqlite3_bind_int64(st, 1, b0);
  sqlite3_bind_int64(st, 2, b1);
  rc = sqlite3_step(st);
  Bounds out(std::pair<uint64_t, uint64_t>{1, 0});
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    out = std::pair<uint64_t, uint64_t>{static_cast<uint64_t>(sqlite3_column_int64(st, 0)),
                                        static_cast<uint64_t>(sqlite3_column_int64(st, 1))};
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err{make_error(db_, rc, "time window")};
  return out;
}

StoreResult<QueryEngine::PageEnd> QueryEngine::page_live(const proto::QuerySpec& q, const RowFn& row) {
  ReadTxn txn(db_);
  if (txn.rc() != SQLITE_OK) return Err{make_error(db_, txn.rc(), "query")};
  return page_in_txn(q, row);
}

StoreResult<QueryEngine::PageEnd> QueryEngine::page_in_txn(const proto::QuerySpec& q, const RowFn& row) {
  PageEnd end;
  const bool newest = !q.oldest_first;
  // The seq range to walk: the time window's, narrowed by the cursor.
  uint64_t lo = 1, hi = static_cast<uint64_t>(kMaxI64);
  auto tb = time_bounds(q);
  if (!tb) return Err{tb.error()};
  if (tb.value()) std::tie(lo, hi) = *tb.value();
  if (q.after) {
    if (newest) hi = std::min(hi, *q.after == 0 ? 0 : *q.after - 1);
    else lo = std::max(lo, *q.after == UINT64_MAX ? UINT64_MAX : *q.after + 1);
  }
  const bool bounded = !index_served(q) || ((q.since || q.until) && !has_index());
  bool clipped = false;
  if (bounded) {
    auto head = scalar(db_, "SELECT IFNULL(MAX(seq), 0) FROM events", "query");
    if (!head) return Err{head.error()};
    hi = std::min(hi, static_cast<uint64_t>(head.value()));
    uint64_t span = std::min<uint64_t>(q.scan.value_or(proto::kMaxScan), proto::kMaxScan);
    if (span == 0) span = 1;
    if (lo <= hi && hi - lo >= span) {
      clipped = true;
      if (newest) lo = hi - span + 1;
      else hi = lo + span - 1;
    }
  }
  if (lo > hi || lo > static_cast<uint64_t>(kMaxI64)) return end;

  BodyFilter body(q);
  Sql sql;
  sql.text = "SELECT seq, hash, body FROM events WHERE ";
  using proto::Column;
  for (Column c : {Column::type, Column::actor, Column::action, Column::target, Column::comm}) {
    auto v = texts(q, c);
    if (!v.empty()) sql.in(std::string(proto::column_name(c)).c_str(), v);
  }
  for (Column c : {Column::outcome, Column::uid, Column::pid, Column::gid}) {
    auto v = ints(q, c);
    if (!v.empty()) sql.in(std::string(proto::column_name(c)).c_str(), v);
  }
  // `+received`: never the received index. It would return the window in time order, to
  // be sorted by seq; the seq range from time_seq already narrows the walk.
  if (q.since) {
    sql.cond("+received >= ?");
    sql.params.emplace_back(static_cast<sqlite3_int64>(*q.since));
  }
  if (q.until) {
    sql.cond("+received < ?");
    sql.params.emplace_back(static_cast<sqlite3_int64>(*q.until));
  }
  if (q.severity) {
    sql.cond("severity <= ?");
    sql.params.emplace_back(static_cast<sqlite3_int64>(*q.severity));
  }
  sql.text += "seq BETWEEN ? AND ? ORDER BY seq ";
  sql.text += newest ? "DESC" : "ASC";
  sql.params.emplace_back(static_cast<sqlite3_int64>(lo));
  sql.params.emplace_back(static_cast<sqlite3_int64>(hi));
  if (!body.active()) {
    sql.text += " LIMIT ?";
    sql.params.emplace_back(static_cast<sqlite3_int64>(q.limit));
  }
  int rc = 0;
  sqlite3_stmt* st = statement(sql.text, &rc);
  if (st == nullptr) return Err{make_error(db_, rc, "prepare query")};
  for (size_t i = 0; i < sql.params.size(); ++i) {
    int at = static_cast<int>(i + 1);
    if (auto* n = std::get_if<sqlite3_int64>(&sql.params[i])) sqlite3_bind_int64(st, at, *n);
    else {
      auto s = std::get<std::string_view>(sql.params[i]);
      sqlite3_bind_text(st, at, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
    }
  }
  uint32_t taken = 0;
  uint64_t last_taken = 0, last_seen = 0;
  bool stopped = false;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t seq = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    last_seen = seq;
    auto blob = [&](int i) {
      const void* p = sqlite3_column_blob(st, i);
      return p ? std::string_view(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(st, i)))
               : std::string_view();
    };
    std::string_view b = blob(2);
    if (body.active() && !body.matches(b)) continue;
    if (!row(seq, blob(1), b)) {
      stopped = true;
      break;
    }
    last_taken = seq;
    if (++taken == q.limit) {
      stopped = true;
      break;
    }
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err{make_error(db_, rc, "query")};
  if (stopped) {
    // Refused before any row was taken: resume at the row before it (never skip it).
    end.next = taken > 0 ? last_taken : (newest ? last_seen + 1 : last_seen - 1);
  } else if (clipped) {
    end.next = newest ? lo : hi;
  }
  if (bounded) {
    uint64_t edge = stopped ? last_seen : (newest ? lo : hi);
    end.scanned = newest ? hi - edge + 1 : edge - lo + 1;
  }
  return end;
}

StoreResult<proto::QueryPage> QueryEngine::page(const proto::QuerySpec& q) {
  proto::QueryPage out;
  out.events.reserve(std::min<uint32_t>(q.limit, proto::kMaxQueryLimit));
  auto end = page(q, [&](uint64_t seq, std::string_view hash, std::string_view body) {
    proto::StoredEvent e;
    e.seq = seq;
    if (hash.size() == e.hash.size()) std::memcpy(e.hash.data(), hash.data(), e.hash.size());
    e.body.assign(body);
    out.events.push_back(std::move(e));
    return true;
  });
  if (!end) return Err{end.error()};
  out.next = end.value().next;
  out.scanned = end.value().scanned;
  return out;
}

StoreResult<StoreInfo> QueryEngine::info() {
  if (!has_index()) return store_.info();
  ReadTxn txn(db_);
  if (txn.rc() != SQLITE_OK) return Err{make_error(db_, txn.rc(), "info")};
  StoreInfo info;
  auto head = scalar(db_, "SELECT IFNULL(MAX(seq), 0) FROM events", "info");
  if (!head) return Err{head.error()};
  info.events = static_cast<uint64_t>(head.value());
  int rc = 0;
  sqlite3_stmt* st = statement("SELECT type, n FROM type_counts ORDER BY n DESC, type", &rc);
  if (st == nullptr) return Err{make_error(db_, rc, "info")};
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    info.by_type.emplace_back(t ? reinterpret_cast<const char*>(t) : "",
                              static_cast<uint64_t>(sqlite3_column_int64(st, 1)));
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return Err{make_error(db_, rc, "info")};
  if (const char* path = sqlite3_db_filename(db_, "main"); path && *path) {
    struct stat sb {};
    if (stat(path, &sb) == 0) info.db_bytes += static_cast<uint64_t>(sb.st_size);
    if (stat((std::string(path) + "-wal").c_str(), &sb) == 0) info.db_bytes += static_cast<uint64_t>(sb.st_size);
  }
  return info;
}

}  // namespace cairn::store
