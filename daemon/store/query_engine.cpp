// query_engine.cpp — see query_engine.hpp.
#include "query_engine.hpp"

#include <msgpack.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <unordered_map>
#include <variant>
#include <vector>

#include "archive.hpp"
#include "store_internal.hpp"

namespace cairn::store {
namespace {

constexpr size_t kMaxCached = 64;  // distinct filter shapes kept compiled per connection
constexpr sqlite3_int64 kMaxI64 = std::numeric_limits<sqlite3_int64>::max();

// The writer keeps both tables in step inside transactions that append records
// (Store::note_index / flush_index: one upsert per distinct type and bucket, once every
// Store::kIndexTailMax records; schema 4 did it every commit, schema 3 by a trigger, two
// upserts per record), up to meta.index_through; readers count the records past it.
// Anything else that appends records (sqlite3 by hand) leaves them in the tail, where
// readers count them too; cairn verify compares the tables with the events they cover.
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
                  "SELECT count(*) FROM sqlite_schema WHERE name IN ('time_seq', 'type_counts')",
                  "read schema");
  if (!n) return Err{n.error()};
  return n.value() == 2;
}

// Runs a statement that returns no row: `st` when the caller keeps it compiled, else
// `sql` through sqlite3_exec.
int run_once(sqlite3* db, sqlite3_stmt* st, const char* sql) {
  if (st == nullptr) return sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

// A read transaction for the duration of a scope, unless one is open already: several
// statements then see one snapshot. `begin`/`commit`: compiled BEGIN and COMMIT the
// caller keeps (a page runs one pair per request: compiling them each time through
// sqlite3_exec was ~3% of a query thread at 40 clients), or nullptr.
class ReadTxn {
 public:
  explicit ReadTxn(sqlite3* db, sqlite3_stmt* begin = nullptr, sqlite3_stmt* commit = nullptr)
      : db_(db), commit_(commit) {
    own_ = sqlite3_get_autocommit(db_) != 0;
    if (own_) rc_ = run_once(db_, begin, "BEGIN");
  }
  ~ReadTxn() {
    if (own_ && rc_ == SQLITE_OK) (void)run_once(db_, commit_, "COMMIT");
  }
  int rc() const { return rc_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* commit_;
  bool own_ = false;
  int rc_ = SQLITE_OK;
};

// ---- body filters (fields, text) ----

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

// ASCII case-insensitive substring. Candidates are found with memchr on the needle's
// first byte in both cases (each side's next hit kept until used), so a scan runs at
// memchr speed rather than a byte-by-byte compare (which was a quarter of a text-filter
// scan's time).
bool contains_ci(std::string_view hay, std::string_view needle) {
  if (needle.empty()) return !hay.empty();  // as std::search has it
  if (hay.size() < needle.size()) return false;
  const char lo = ascii_lower(needle[0]);
  const char up = lo >= 'a' && lo <= 'z' ? static_cast<char>(lo - 32) : lo;
  const char* end = hay.data() + (hay.size() - needle.size() + 1);  // last start + 1
  auto next = [&](const char* from, char c) -> const char* {
    return from < end ? static_cast<const char*>(std::memchr(from, c, static_cast<size_t>(end - from))) : nullptr;
  };
  const char* a = next(hay.data(), lo);
  const char* b = up == lo ? nullptr : next(hay.data(), up);
  while (a != nullptr || b != nullptr) {
    const char* p = a == nullptr ? b : b == nullptr ? a : std::min(a, b);
    size_t i = 1;
    while (i < needle.size() && ascii_lower(p[i]) == ascii_lower(needle[i])) ++i;
    if (i == needle.size()) return true;
    if (p == a) a = next(p + 1, lo);
    else b = next(p + 1, up);
  }
  return false;
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

// Whether a field match could hold for a body that does not contain any of its values'
// bytes: a string is stored verbatim in msgpack, but an integer, bool or nil is compared
// as its text ("42", "true", "null"), which the body does not hold.
bool may_be_non_string(const std::string& v) {
  if (v == "true" || v == "false" || v == "null") return true;
  size_t i = (!v.empty() && v[0] == '-') ? 1 : 0;
  if (i == v.size()) return false;
  for (; i < v.size(); ++i)
    if (v[i] < '0' || v[i] > '9') return false;
  return true;
}

bool holds(std::string_view hay, const std::string& needle) {
  return memmem(hay.data(), hay.size(), needle.data(), needle.size()) != nullptr;
}

class BodyFilter {
 public:
  explicit BodyFilter(const proto::QuerySpec& q) : q_(q) { msgpack_zone_init(&zone_, 4096); }
  ~BodyFilter() { msgpack_zone_destroy(&zone_); }
  bool active() const { return !q_.fields.empty() || q_.text.has_value(); }
  bool matches(std::string_view body) {
    // Rows that cannot match are dropped on their raw bytes, before decoding (the decode
    // was most of a filtered scan's time): message text and string values are stored
    // verbatim, so a row whose body lacks them cannot match. Exact: never drops a match.
    if (q_.text && !contains_ci(body, *q_.text)) return false;
    for (const auto& fm : q_.fields) {
      bool maybe = false;
      for (const auto& v : fm.values) maybe = maybe || may_be_non_string(v) || holds(body, v);
      if (!maybe) return false;
    }
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

StoreResult<uint64_t> query_index_through(sqlite3* db) {
  auto v = scalar(db,
                  "SELECT IFNULL((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'index_through'), "
                  "(SELECT IFNULL(MAX(seq), 0) FROM events))",
                  "read index_through");
  if (!v) return Err{v.error()};
  return static_cast<uint64_t>(v.value());
}

StoreResult<uint64_t> ensure_query_indexes(Store& store) {
  auto n = ensure_query_indexes_on(store.handle());
  if (!n) return n;
  auto a = store.attach_query_index();
  if (!a) return Err{a.error()};
  return n;
}

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


StoreResult<uint64_t> ensure_query_indexes_on(sqlite3* db) {
  auto present = index_present(db);
  if (!present) return Err{present.error()};
  if (present.value()) return uint64_t{0};
  auto r = exec(db, "BEGIN IMMEDIATE", "create query index");
  if (!r) return Err{r.error()};
  // One table without the other (someone dropped one) cannot be trusted: rebuild both.
  r = exec(db, "DROP TABLE IF EXISTS time_seq; DROP TABLE IF EXISTS type_counts;", "create query index");
  if (r) r = exec(db, kIndexSchema, "create query index");
  // Filled from every record: the tables count up to the head.
  if (r) r = exec(db, kBackfill, "fill query index");
  if (r)
    r = exec(db,
             "INSERT OR REPLACE INTO meta(key, value) SELECT 'index_through', IFNULL(MAX(seq), 0) FROM events",
             "fill query index");
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

namespace {

// One side of a comparison: a statement returning (key, values...) ordered by key.
struct Rows {
  sqlite3_stmt* st = nullptr;
  int rc = SQLITE_OK;
  ~Rows() { sqlite3_finalize(st); }
  bool row() const { return rc == SQLITE_ROW; }
  void step() { rc = sqlite3_step(st); }
  std::string text(int i) const {
    const unsigned char* t = sqlite3_column_text(st, i);
    return t ? std::string(reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(st, i)))
             : std::string();
  }
  int64_t num(int i) const { return sqlite3_column_int64(st, i); }
};

// Walks `kept` (the maintained table) and `truth` (the same figures recomputed from
// events) side by side, both ordered by their first column; `differ` describes the first
// key where they disagree (a row on one side only, or other values).
using Describe = std::function<std::string(const Rows* kept, const Rows* truth)>;
StoreResult<std::optional<std::string>> compare(sqlite3* db, const char* kept_sql, const char* truth_sql,
                                                bool text_key, const Describe& differ) {
  Rows a, b;
  int rc = sqlite3_prepare_v2(db, kept_sql, -1, &a.st, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, truth_sql, -1, &b.st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db, rc, "check query index")};
  a.step();
  b.step();
  while (a.row() || b.row()) {
    int order = 0;  // <0: the key is only in a; >0: only in b
    if (!a.row()) order = 1;
    else if (!b.row()) order = -1;
    else if (text_key) order = a.text(0).compare(b.text(0));  // BINARY collation: bytewise
    else order = a.num(0) < b.num(0) ? -1 : a.num(0) > b.num(0) ? 1 : 0;
    if (order < 0) return std::optional<std::string>(differ(&a, nullptr));
    if (order > 0) return std::optional<std::string>(differ(nullptr, &b));
    for (int i = 1; i < sqlite3_column_count(a.st); ++i)
      if (a.num(i) != b.num(i)) return std::optional<std::string>(differ(&a, &b));
    a.step();
    b.step();
  }
  if (a.rc != SQLITE_DONE) return Err{make_error(db, a.rc, "check query index")};
  if (b.rc != SQLITE_DONE) return Err{make_error(db, b.rc, "check query index")};
  return std::optional<std::string>();
}

}  // namespace

StoreResult<std::optional<std::string>> check_query_indexes(Store& store) {
  sqlite3* db = store.handle();
  ReadTxn txn(db);
  if (txn.rc() != SQLITE_OK) return Err{make_error(db, txn.rc(), "check query index")};
  auto present = index_present(db);
  if (!present) return Err{present.error()};
  if (!present.value()) return std::optional<std::string>();
  auto through = query_index_through(db);
  if (!through) return Err{through.error()};
  auto head = scalar(db, "SELECT IFNULL(MAX(seq), 0) FROM events", "check query index");
  if (!head) return Err{head.error()};
  if (through.value() > static_cast<uint64_t>(head.value()))
    return std::optional<std::string>("meta.index_through says the query index counts records up to seq " +
                                      std::to_string(through.value()) + ", the log ends at seq " +
                                      std::to_string(head.value()));
  // The tables count the records up to index_through; readers count the rest themselves.
  const std::string upto = " WHERE seq <= " + std::to_string(through.value());
  // Each aggregate is computed once (the type index gives the types in order; the
  // buckets need one pass over the received index) and merged with the table in C++.
  auto types = compare(
      db, "SELECT type, n FROM type_counts ORDER BY type",
      ("SELECT type, COUNT(*) FROM events" + upto + " GROUP BY type ORDER BY type").c_str(), true,
      [](const Rows* kept, const Rows* truth) {
        std::string type = (kept ? kept : truth)->text(0);
        std::string says = kept ? std::to_string(kept->num(1)) : "no";
        std::string holds = truth ? std::to_string(truth->num(1)) : "no";
        return "type_counts says type '" + type + "' has " + says + " events, the log holds " + holds +
               " (cairn stats would report it)";
      });
  if (!types || types.value()) return types;
  return compare(
      db, "SELECT bucket, lo, hi FROM time_seq ORDER BY bucket",
      ("SELECT received >> 30 AS b, MIN(seq), MAX(seq) FROM events" + upto + " GROUP BY b ORDER BY b").c_str(), false,
      [](const Rows* kept, const Rows* truth) {
        auto range = [](const Rows* r) {
          return r ? "seqs " + std::to_string(r->num(1)) + ".." + std::to_string(r->num(2)) : std::string("none");
        };
        int64_t bucket = (kept ? kept : truth)->num(0);
        return "time_seq says the events received in [" + std::to_string(bucket << kTimeBucketShift) + ", " +
               std::to_string((bucket + 1) << kTimeBucketShift) + ") ns are " + range(kept) + ", the log has " +
               range(truth) + " (time windows would miss or add events)";
      });
}

QueryEngine::QueryEngine(Store& store) : store_(store), db_(store.handle()) {}

QueryEngine::~QueryEngine() {
  for (auto& [k, st] : cache_) sqlite3_finalize(st);
  for (sqlite3_stmt* st : {begin_, commit_, head_, meta_, type_n_}) sqlite3_finalize(st);  // accepts nullptr
}

// The statements every page may run, compiled once and kept outside cache_ (its
// clearing must not finalize one that a page holds). nullptr after a failed prepare: the
// caller then compiles per use.
sqlite3_stmt* QueryEngine::kept(sqlite3_stmt** slot, const char* sql) {
  if (*slot == nullptr) {
    int rc = 0;
    *slot = prepare(db_, sql, &rc);
  }
  return *slot;
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
  // The tail (records past index_through) is in no bucket yet: if any of it was received
  // in the window, the range runs on to the head (the page filters on received).
  auto through = query_index_through(db_);
  if (!through) return Err{through.error()};
  st = statement("SELECT MIN(received), MAX(received), MAX(seq) FROM events WHERE seq > ?1", &rc);
  if (st == nullptr) return Err{make_error(db_, rc, "time window")};
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(through.value()));
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
    int64_t first = sqlite3_column_int64(st, 0), last = sqlite3_column_int64(st, 1);
    auto head = static_cast<uint64_t>(sqlite3_column_int64(st, 2));
    if ((!q.since || last >= *q.since) && (!q.until || first < *q.until)) {
      if (out->first > out->second) out->first = through.value() + 1;  // no bucket in the window
      out->second = head;
    }
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err{make_error(db_, rc, "time window")};
  return out;
}

StoreResult<QueryEngine::PageEnd> QueryEngine::page_live(const proto::QuerySpec& q, const RowFn& row) {
  ReadTxn txn(db_, kept(&begin_, "BEGIN"), kept(&commit_, "COMMIT"));  // joins page()'s snapshot
  if (txn.rc() != SQLITE_OK) return Err{make_error(db_, txn.rc(), "query")};
  return page_in_txn(q, row, true);
}

StoreResult<uint64_t> QueryEngine::newest_seq(const char* what) {
  sqlite3_stmt* st = kept(&head_, "SELECT IFNULL(MAX(seq), 0) FROM events");
  if (st == nullptr) {
    auto v = scalar(db_, "SELECT IFNULL(MAX(seq), 0) FROM events", what);
    if (!v) return Err{v.error()};
    return static_cast<uint64_t>(v.value());
  }
  int rc = sqlite3_step(st);
  uint64_t v = rc == SQLITE_ROW ? static_cast<uint64_t>(sqlite3_column_int64(st, 0)) : 0;
  sqlite3_reset(st);
  if (rc != SQLITE_ROW) return Err{make_error(db_, rc, what)};
  return v;
}

// Fraction of the live events that have `type`, from type_counts (0 when unknown: the
// index plan). Kept per engine and read again every kShareRefresh lookups, since shares
// move slowly; the map is cleared past kMaxShares types (types are the client's words).
// Only a plan choice rests on it, never a result.
double QueryEngine::type_share(const std::string& type) {
  constexpr uint32_t kShareRefresh = 4096;
  constexpr size_t kMaxShares = 256;
  if (++share_lookups_ >= kShareRefresh || shares_.size() >= kMaxShares) {
    shares_.clear();
    share_lookups_ = 0;
  }
  if (auto it = shares_.find(type); it != shares_.end()) return it->second;
  double share = 0.0;
  sqlite3_stmt* st = has_index() ? kept(&type_n_, "SELECT n FROM type_counts WHERE type = ?1") : nullptr;
  auto head = newest_seq("query");
  if (st != nullptr && head && head.value() > 0) {
    sqlite3_bind_text(st, 1, type.data(), static_cast<int>(type.size()), SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
      share = static_cast<double>(sqlite3_column_int64(st, 0)) / static_cast<double>(head.value());
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
  }
  shares_.emplace(type, share);
  return share;
}

// Seqs to walk along the events table itself before falling back to the type index, or
// 0 for the index plan. The index plan costs a table seek (root to leaf) per row it
// returns; walking seq costs a cheap step per row it passes over. For a type that is a
// large part of the log the walk wins: on the bench's 1M-event db, 50-row keyset pages
// cost 29 vs 44 us of SQLite CPU for a 40% type, about even at 18%, and 2x more at 5%
// (micro-benchmark, CLOCK_THREAD_CPUTIME_ID). The walk is bounded to twice the rows the
// share predicts, so a stretch of the log where the type is rare costs one short walk
// before the index plan takes over (page_in_txn): the page, its rows and its cursor are
// the same either way.
uint64_t QueryEngine::walk_span(const proto::QuerySpec& q) {
  constexpr double kWalkShare = 0.25;
  auto types = texts(q, proto::Column::type);
  if (types.size() != 1 || !texts(q, proto::Column::actor).empty()) return 0;
  double share = type_share(types.front());
  if (share < kWalkShare) return 0;
  return static_cast<uint64_t>(2.0 * q.limit / share) + 1;
}

StoreResult<QueryEngine::PageEnd> QueryEngine::page_in_txn(const proto::QuerySpec& q, const RowFn& row,
                                                           bool may_walk) {
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
    auto head = newest_seq("query");
    if (!head) return Err{head.error()};
    hi = std::min(hi, head.value());
    uint64_t span = std::min<uint64_t>(q.scan.value_or(proto::kMaxScan), proto::kMaxScan);
    if (span == 0) span = 1;
    if (lo <= hi && hi - lo >= span) {
      clipped = true;
      if (newest) lo = hi - span + 1;
      else hi = lo + span - 1;
    }
  }
  if (lo > hi || lo > static_cast<uint64_t>(kMaxI64)) return end;
  // A common type walks [run_lo, run_hi], a part of [lo, hi] at its newest (or oldest)
  // end, along seq; the rest, if the walk did not fill the page, goes by the index.
  uint64_t walk = !bounded && may_walk ? walk_span(q) : 0;
  if (walk > 0 && hi - lo < walk) walk = 0;  // the whole range is short: the index plan
  uint64_t run_lo = lo, run_hi = hi;
  if (walk > 0) {
    if (newest) run_lo = hi - walk + 1;
    else run_hi = lo + walk - 1;
  }

  BodyFilter body(q);
  Sql sql;
  sql.text = "SELECT seq, hash, body FROM events WHERE ";
  using proto::Column;
  for (Column c : {Column::type, Column::actor, Column::action, Column::target, Column::comm}) {
    auto v = texts(q, c);
    // `+type`: not the type index, so SQLite walks the rowid range.
    if (v.empty()) continue;
    if (walk > 0 && c == Column::type) sql.in("+type", v);
    else sql.in(std::string(proto::column_name(c)).c_str(), v);
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
  sql.params.emplace_back(static_cast<sqlite3_int64>(run_lo));
  sql.params.emplace_back(static_cast<sqlite3_int64>(run_hi));
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
  if (walk > 0 && !stopped) {
    // The walk ran out before the page was full: the rest of [lo, hi] by the index, as
    // if the client had asked again from the walk's far end.
    proto::QuerySpec rest = q;
    rest.limit = q.limit - taken;
    rest.after = newest ? run_lo : run_hi;
    return page_in_txn(rest, row, false);
  }
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
  // The tail's types, counted from the records themselves. NOT INDEXED: GROUP BY type
  // would otherwise walk the whole type index to skip all but the tail (49 ms on 1M
  // records); the seq range reads only the tail's rows.
  auto through = query_index_through(db_);
  if (!through) return Err{through.error()};
  st = statement("SELECT type, COUNT(*) FROM events NOT INDEXED WHERE seq > ?1 GROUP BY type", &rc);
  if (st == nullptr) return Err{make_error(db_, rc, "info")};
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(through.value()));
  bool tail = false;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    std::string type = t ? reinterpret_cast<const char*>(t) : "";
    auto n = static_cast<uint64_t>(sqlite3_column_int64(st, 1));
    auto it = std::find_if(info.by_type.begin(), info.by_type.end(), [&](const auto& p) { return p.first == type; });
    if (it == info.by_type.end()) info.by_type.emplace_back(std::move(type), n);
    else it->second += n;
    tail = true;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return Err{make_error(db_, rc, "info")};
  if (tail)
    std::stable_sort(info.by_type.begin(), info.by_type.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
  if (const char* path = sqlite3_db_filename(db_, "main"); path && *path) {
    struct stat sb {};
    if (stat(path, &sb) == 0) info.db_bytes += static_cast<uint64_t>(sb.st_size);
    if (stat((std::string(path) + "-wal").c_str(), &sb) == 0) info.db_bytes += static_cast<uint64_t>(sb.st_size);
  }
  // Retention figures. A segment removed between the listing and its stat is left out.
  if (auto a = store_.archived_through(); a) info.archived_through = a.value();
  if (auto r = store_.removed_through(); r) info.removed_through = r.value();
  if (info.archived_through > 0) {
    if (auto segs = list_segments(archive_dir(store_.path())); segs) {
      for (const auto& f : segs.value()) {
        struct stat sb {};
        if (stat(f.path.c_str(), &sb) != 0) continue;
        info.archive_segments += 1;
        info.archive_bytes += static_cast<uint64_t>(sb.st_size);
      }
    }
  }
  return info;
}

}  // namespace cairn::store
