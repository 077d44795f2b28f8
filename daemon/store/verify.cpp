// verify.cpp — check the whole log against its seals, its tree and its indexes.
//
// The walk reads records in chunks of VerifyOptions::chunk_rows, one read snapshot per
// chunk, so a verify of millions of records never pins the WAL for long (the writer's
// WAL can restart between chunks). The log is append-only, so chunks of later
// snapshots extend earlier ones; the walk stops at the head it saw when it began.
//
// Failure classes (VerifyReport::failure), each with the first seq concerned:
//   gap          a seq is missing or out of order
//   altered      a record's stored leaf hash is not the hash of its body
//   column       an indexed column's value differs from the body
//   hidden_row   a column stored with another SQLite type than the schema's (queries
//                would not find it), or an index that does not hold every row once
//   index        the query index (time_seq, type_counts: query_engine.hpp) disagrees
//                with the events up to meta.index_through, or index_through is past
//                the head: not part of the signed log, but `cairn stats` and time
//                windows would report what it says
//   tree         a stored interior node differs from the one recomputed
//   root         a seal's root is not the root of the records before it
//   seal         a seal's signature (or its checkpoint signature) is not by the key of
//                its own epoch: forged, or re-sealed with a later key
//   key_chain    seals missing, reordered or numbered out of turn; no key to check with
//   time         a record received outside its epoch's window, or a seal going back
//   consistency  a saved checkpoint that this log does not extend (rollback, fork,
//                truncation below its size)
//   checkpoint   a saved checkpoint that is not a valid note signed by this log
//   stale        the newest seal is older than --fresh allows
//   loss         the operator accepted lost sealed records at start-up (cairn.recovery)
//   truncated    the key file has moved past the log's last seal: sealed records were cut
//                off the end (tail deleted, -wal deleted, an older copy restored)
//   key_file     the key file is missing or damaged
//   format       a record that cannot be decoded, or an unknown cairn.* record
//   archive      an archive segment missing, unreadable, altered or cut, or not where the
//                horizon says (the records it should hold are named)
//   retention    the removal record that meta names is missing or not one, or a later
//                removal than the one the walk began after
#include <msgpack.h>
#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <map>

#include <time.h>

#include "../../seal/record.hpp"
#include "archive.hpp"
#include "query_engine.hpp"
#include "store_internal.hpp"

namespace cairn::store {
namespace {

using seal::map_get;

enum Col {
  kSeq, kReceived, kTime, kType, kSeverity, kActor, kAction, kTarget, kOutcome, kPid, kUid,
  kGid, kComm, kIdem, kBody, kHash
};

std::string_view text_col(sqlite3_stmt* st, int i, bool* null) {
  *null = sqlite3_column_type(st, i) == SQLITE_NULL;
  const unsigned char* t = sqlite3_column_text(st, i);
  return t ? std::string_view(reinterpret_cast<const char*>(t),
                              static_cast<size_t>(sqlite3_column_bytes(st, i)))
           : std::string_view();
}

bool int_eq(const msgpack_object* o, sqlite3_stmt* st, int col) {
  bool null = sqlite3_column_type(st, col) == SQLITE_NULL;
  if (o == nullptr) return null;
  if (null) return false;
  int64_t v = sqlite3_column_int64(st, col);
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return v >= 0 && static_cast<uint64_t>(v) == o->via.u64;
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return v == o->via.i64;
  return false;
}

bool str_eq(const msgpack_object* o, sqlite3_stmt* st, int col) {
  bool null = false;
  std::string_view c = text_col(st, col, &null);
  if (o == nullptr) return null;
  if (null || o->type != MSGPACK_OBJECT_STR) return false;
  return c == std::string_view(o->via.str.ptr, o->via.str.size);
}

// The name of the first column stored with a type queries would not match, or nullptr.
// A TEXT column stored as a BLOB with the same bytes compares equal in the body check but
// is invisible to `type = ?` (SQLite never equates TEXT and BLOB).
const char* type_mismatch(sqlite3_stmt* st) {
  struct { int col; const char* name; int type; bool nullable; } want[] = {
      {kReceived, "received", SQLITE_INTEGER, false}, {kTime, "time", SQLITE_INTEGER, true},
      {kType, "type", SQLITE_TEXT, false},             {kSeverity, "severity", SQLITE_INTEGER, false},
      {kActor, "actor", SQLITE_TEXT, true},            {kAction, "action", SQLITE_TEXT, true},
      {kTarget, "target", SQLITE_TEXT, true},          {kOutcome, "outcome", SQLITE_INTEGER, false},
      {kPid, "pid", SQLITE_INTEGER, false},            {kUid, "uid", SQLITE_INTEGER, false},
      {kGid, "gid", SQLITE_INTEGER, false},            {kComm, "comm", SQLITE_TEXT, true},
      {kIdem, "idem", SQLITE_BLOB, true},              {kBody, "body", SQLITE_BLOB, false},
      {kHash, "hash", SQLITE_BLOB, false},
  };
  for (const auto& w : want) {
    int t = sqlite3_column_type(st, w.col);
    if (t == w.type || (w.nullable && t == SQLITE_NULL)) continue;
    // A zero-length BLOB reads back as NULL type only if stored as NULL; body is never empty.
    return w.name;
  }
  return nullptr;
}

// Returns the name of the first column that disagrees with the body, or nullptr.
const char* column_mismatch(const msgpack_object& body, sqlite3_stmt* st) {
  if (!str_eq(map_get(body, "type"), st, kType)) return "type";
  if (!int_eq(map_get(body, "severity"), st, kSeverity)) return "severity";
  if (!str_eq(map_get(body, "actor"), st, kActor)) return "actor";
  if (!str_eq(map_get(body, "action"), st, kAction)) return "action";
  if (!str_eq(map_get(body, "target"), st, kTarget)) return "target";
  const msgpack_object* oc = map_get(body, "outcome");
  static const char* kOutcomes[] = {"unknown", "success", "failure"};
  int out = sqlite3_column_int(st, kOutcome);
  if (oc == nullptr || oc->type != MSGPACK_OBJECT_STR || out < 0 || out > 2 ||
      std::string_view(oc->via.str.ptr, oc->via.str.size) != kOutcomes[out])
    return "outcome";
  if (!int_eq(map_get(body, "time"), st, kTime)) return "time";
  if (!int_eq(map_get(body, "received"), st, kReceived)) return "received";
  if (!int_eq(map_get(body, "pid"), st, kPid)) return "pid";
  if (!int_eq(map_get(body, "uid"), st, kUid)) return "uid";
  if (!int_eq(map_get(body, "gid"), st, kGid)) return "gid";
  if (!str_eq(map_get(body, "comm"), st, kComm)) return "comm";
  const msgpack_object* idem = map_get(body, "idem");
  bool idem_null = sqlite3_column_type(st, kIdem) == SQLITE_NULL;
  if (idem == nullptr) {
    if (!idem_null) return "idem";
  } else if (idem_null || idem->type != MSGPACK_OBJECT_BIN ||
             static_cast<int>(idem->via.bin.size) != sqlite3_column_bytes(st, kIdem) ||
             std::memcmp(idem->via.bin.ptr, sqlite3_column_blob(st, kIdem), idem->via.bin.size) != 0) {
    return "idem";
  }
  return nullptr;
}

// The record whose append writes tree position `pos`: leaf L sits at postorder(0, L) and
// the nodes it completes right after it. A tree failure names this seq, so the verdict
// does not depend on where a chunk of the walk ends.
uint64_t seq_at(uint64_t pos) {
  uint64_t lo = 0, hi = std::min<uint64_t>(pos, uint64_t{1} << 62);  // postorder(0, L) >= L
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo + 1) / 2;
    if (seal::postorder(0, mid) <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo + 1;
}

// An order-independent digest of (value, seq) pairs: the sum of a SipHash of each pair
// under a key drawn for this verify run. The table walk and a scan of each index must
// give the same digest and count; a forger who does not know the key cannot make a
// different multiset collide.
struct IndexDigest {
  const char* index;
  int col;
  uint64_t sum = 0, count = 0;
};

void digest_add(const unsigned char* key, IndexDigest& d, sqlite3_stmt* st, int col, int64_t seq) {
  int t = sqlite3_column_type(st, col);
  // type, seq, value: on the stack unless the value is long (strings up to max_string).
  unsigned char small[512];
  std::string big;
  unsigned char* buf = small;
  size_t n = 0;
  const void* p = nullptr;
  size_t len = 0;
  int64_t v = 0;
  if (t == SQLITE_INTEGER) {
    v = sqlite3_column_int64(st, col);
    p = &v;
    len = sizeof v;
  } else if (t != SQLITE_NULL) {
    p = t == SQLITE_BLOB ? sqlite3_column_blob(st, col) : sqlite3_column_text(st, col);
    len = p ? static_cast<size_t>(sqlite3_column_bytes(st, col)) : 0;
  }
  if (1 + sizeof seq + len > sizeof small) {
    big.resize(1 + sizeof seq + len);
    buf = reinterpret_cast<unsigned char*>(big.data());
  }
  buf[n++] = static_cast<unsigned char>(t);
  std::memcpy(buf + n, &seq, sizeof seq);
  n += sizeof seq;
  if (len) std::memcpy(buf + n, p, len);
  n += len;
  uint64_t h = 0;
  crypto_shorthash(reinterpret_cast<unsigned char*>(&h), buf, n, key);
  d.sum += h;
  d.count += 1;
}

// Schema 3's idem index is (uid, idem); schema 2 had idem UNIQUE (its autoindex).
// Schema 4 has no events_received (its digest's index is null) and events_idem is
// partial (WHERE idem IS NOT NULL), which the scan's own WHERE matches.
constexpr const char* kIndexNames[4] = {"events_type", "events_actor", "events_received",
                                        "events_idem"};
constexpr const char* kV2IdemIndex = "sqlite_autoindex_events_1";
constexpr int kIndexCols[4] = {kType, kActor, kReceived, kIdem};

// What a scan of each index finds: digests of (value, seq) for seq <= end. Runs on
// the same connection right after the walk.
struct IndexScan {
  IndexDigest seen[4] = {{kIndexNames[0], kIndexCols[0]}, {kIndexNames[1], kIndexCols[1]},
                         {kIndexNames[2], kIndexCols[2]}, {kIndexNames[3], kIndexCols[3]}};
  std::string missing;  // an index that cannot be scanned: dropped, partial, altered
  std::optional<StoreError> error;
};

void scan_indexes(sqlite3* db, const unsigned char* key, uint64_t end, IndexScan& out) {
  // An index cairn did not make could be the one a query picks, and nothing below
  // scans it: a partial index with its definition rewritten hides records. Only the
  // schema's own indexes may exist on events.
  {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'events'", -1,
                                &st, nullptr);
    if (rc != SQLITE_OK) {
      out.error = make_error(db, rc, "verify index");
      return;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      auto* name = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      std::string_view n = name ? name : "";
      bool ours = std::any_of(std::begin(out.seen), std::end(out.seen),
                              [&](const IndexDigest& d) { return d.index != nullptr && n == d.index; });
      if (!ours && out.missing.empty())
        out.missing = "index " + std::string(n) + " on events is not one cairn makes: queries may use it, so " +
                      "it could hide records (drop it)";
    }
    if (rc != SQLITE_DONE) out.error = make_error(db, rc, "verify index");
    sqlite3_finalize(st);
    if (out.error || !out.missing.empty()) return;
  }
  for (auto& d : out.seen) {
    if (d.index == nullptr) continue;  // not in this schema version
    std::string col = d.col == kType ? "type" : d.col == kActor ? "actor" : d.col == kReceived ? "received" : "idem";
    // The digest is a sum, so the order only has to be the index's own (no sort).
    bool v3_idem = d.col == kIdem && std::strcmp(d.index, kV2IdemIndex) != 0;
    std::string sql = std::string("SELECT ") + col + ", seq FROM events INDEXED BY " + d.index +
                      (d.col == kIdem ? " WHERE idem IS NOT NULL" : "") + " ORDER BY " +
                      (v3_idem ? "uid, " : "") + col + ", seq";
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
    if (rc != SQLITE_OK) {
      out.missing = std::string("index ") + d.index + " is missing or altered: " + sqlite3_errmsg(db);
      return;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      int64_t seq = sqlite3_column_int64(st, 1);
      if (seq < 1 || static_cast<uint64_t>(seq) > end) continue;  // appended after the walk began
      digest_add(key, d, st, 0, seq);
    }
    if (rc != SQLITE_DONE) out.error = make_error(db, rc, "verify index");
    sqlite3_finalize(st);
    if (out.error) return;
  }
}

class Walk {
 public:
  Walk(sqlite3* db, const VerifyOptions& opt, proto::VerifyReport& rep) : db_(db), opt_(opt), rep_(rep) {
    randombytes_buf(sipkey_, sizeof sipkey_);
  }
  StoreResult<Ok> run(Store& store);

 private:
  void fail(const char* cls, uint64_t seq, const std::string& why) {
    if (!rep_.valid) return;
    rep_.valid = false;
    rep_.failure = cls;
    rep_.break_seq = seq;
    rep_.reason = seq == 0 ? why : "seq " + std::to_string(seq) + ": " + why;
  }
  bool hard_failed() const { return !rep_.valid && rep_.failure != "loss"; }
  StoreResult<Ok> setup_key(Store& store);
  StoreResult<Ok> chunk(uint64_t from, uint64_t to, uint64_t* next);
  void check_record(sqlite3_stmt* st, uint64_t seq);
  void check_system(std::string_view type, const msgpack_object& body, uint64_t seq, int64_t received);
  void check_seal(const seal::Seal& s, uint64_t seq);
  void check_checkpoints_at_size();
  StoreResult<Ok> check_nodes(uint64_t from_pos, uint64_t to_pos);
  StoreResult<Ok> check_indexes(const IndexScan& scan);
  void check_key_file();
  // Retention (PROTOCOL.md §11): where the walk begins, the archived records, removals.
  StoreResult<Ok> setup_retention(Store& store, const std::vector<SegmentFile>& segs);
  StoreResult<Ok> walk_archive(const std::vector<SegmentFile>& segs, uint64_t horizon, uint64_t* next);
  void check_body(std::string_view body, uint64_t seq);
  void check_removal(const msgpack_object& fields, uint64_t seq, int64_t received);

  sqlite3* db_;
  const VerifyOptions& opt_;
  proto::VerifyReport& rep_;
  unsigned char sipkey_[crypto_shorthash_KEYBYTES];
  msgpack_zone zone_{};

  // The key chain.
  std::string origin_;
  std::optional<seal::PublicKey> pk_;  // the current epoch's key
  std::optional<seal::PublicKey> first_pk_;
  uint64_t epoch_ = 0;
  int64_t window_start_ = INT64_MIN;   // previous seal's time
  int64_t prev_window_start_ = INT64_MIN;  // the one before: the lower bound of a record's time
  int64_t min_received_ = INT64_MAX, max_received_ = INT64_MIN;  // since the last seal
  uint64_t window_first_seq_ = 0;

  seal::Frontier tree_;
  std::vector<std::pair<uint64_t, Hash>> nodes_;  // recomputed this chunk: (pos, hash)
  uint64_t checked_pos_ = 0;                      // tree rows below this were compared

  struct Saved {
    seal::Note note;
    seal::Checkpoint cp;
    bool done = false;
  };
  std::multimap<uint64_t, Saved> checkpoints_;  // by size

  uint64_t removed_through_ = 0;  // records 1..this were removed for good (0: none)
  uint64_t removal_seq_ = 0;      // the removal record that says so
  uint64_t first_found_ = 0;      // chunk: the seq found where the chunk's first was expected
  uint64_t pending_removal_ = 0;  // an unsealed removal record: its records are still walked

  IndexDigest digests_[4] = {{kIndexNames[0], kIndexCols[0]}, {kIndexNames[1], kIndexCols[1]},
                             {kIndexNames[2], kIndexCols[2]}, {kIndexNames[3], kIndexCols[3]}};
};

StoreResult<Ok> Walk::setup_key(Store& store) {
  if (opt_.key) {
    origin_ = opt_.key->name;
    pk_ = opt_.key->key;
    first_pk_ = pk_;
    rep_.keyed = true;
    return Ok{};
  }
  auto o = store.meta("origin");
  if (!o) return Err{o.error()};
  auto k = store.meta("first_key");
  if (!k) return Err{k.error()};
  if (o.value() && k.value()) {
    origin_ = *o.value();
    seal::PublicKey pk;
    if (seal::unb64_into(*k.value(), pk)) pk_ = first_pk_ = pk;
  }
  return Ok{};
}

void Walk::check_seal(const seal::Seal& s, uint64_t seq) {
  if (!pk_) return fail("key_chain", seq, "a seal, but no key to check it with (pass --key)");
  if (s.epoch != epoch_)
    return fail("key_chain", seq,
                "seal of epoch " + std::to_string(s.epoch) + " where epoch " + std::to_string(epoch_) +
                    " ends (seals deleted, reordered or inserted)");
  if (s.size != seq - 1)
    return fail("root", seq, "seal covers " + std::to_string(s.size) + " records, not the " +
                                 std::to_string(seq - 1) + " before it");
  if (s.root != tree_.root())
    return fail("root", seq, "sealed root differs from the root of records 1.." + std::to_string(seq - 1) +
                                 " (an earlier record was altered, inserted or removed)");
  if (!seal::verify_sig(*pk_, seal::seal_message(origin_, s), s.sig))
    return fail("seal", seq, "seal of epoch " + std::to_string(epoch_) +
                                 " is not signed by that epoch's key (forged, or re-sealed with another key)");
  if (!seal::verify_sig(*pk_, seal::checkpoint_text(origin_, s.size, s.root), s.checkpoint_sig))
    return fail("seal", seq, "checkpoint signature of epoch " + std::to_string(epoch_) + " does not verify");
  if (s.time < s.prev_time || (epoch_ > 0 && s.prev_time != window_start_))
    return fail("time", seq, "seal window [" + std::to_string(s.prev_time) + ", " + std::to_string(s.time) +
                                 "] does not follow the previous seal");
  // A record is stamped when cairnd reads it and appended when the writer reaches it, so
  // one stamped just before a seal may land just after it: the lower bound is the start
  // of the previous epoch (PROTOCOL.md §8). The upper bound is exact: a seal's time is
  // never before any record it covers.
  int64_t lower = epoch_ == 0 ? s.prev_time : prev_window_start_;
  if (min_received_ < lower || max_received_ > s.time)
    return fail("time", window_first_seq_,
                "a record of epoch " + std::to_string(epoch_) + " was received outside the epoch's window");
  // Saved checkpoints of this size are checked with this epoch's key.
  auto range = checkpoints_.equal_range(s.size);
  for (auto it = range.first; it != range.second; ++it) {
    if (!seal::note_signed_by(it->second.note, origin_, *pk_))
      return fail("checkpoint", seq, "saved checkpoint of size " + std::to_string(s.size) +
                                         " is not signed by this log's key for that epoch");
  }
  pk_ = s.next_key;
  ++epoch_;
  prev_window_start_ = s.prev_time;
  window_start_ = s.time;
  min_received_ = INT64_MAX;
  max_received_ = INT64_MIN;
  window_first_seq_ = seq + 1;
  rep_.epochs += 1;
  rep_.sealed_seq = seq;
  rep_.sealed_time = s.time;
}

void Walk::check_checkpoints_at_size() {
  auto range = checkpoints_.equal_range(tree_.size());
  if (range.first == range.second) return;
  Hash root = tree_.root();
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second.cp.root != root)
      return fail("consistency", tree_.size(),
                  "the log's first " + std::to_string(tree_.size()) +
                      " records do not have the saved checkpoint's root (rewritten or forked)");
    it->second.done = true;
  }
}

void Walk::check_system(std::string_view type, const msgpack_object& body, uint64_t seq, int64_t received) {
  const msgpack_object* fields = map_get(body, "fields");
  if (type == seal::kSealType) {
    std::optional<seal::Seal> s;
    if (fields == nullptr || !(s = seal::parse_seal_fields(*fields, received)))
      return fail("format", seq, "malformed seal record");
    return check_seal(*s, seq);
  }
  if (type == seal::kLostType) {
    const msgpack_object* r = fields ? map_get(*fields, "reason") : nullptr;
    std::string why = r && r->type == MSGPACK_OBJECT_STR ? std::string(r->via.str.ptr, r->via.str.size) : "";
    if (rep_.notes.size() < 100) rep_.notes.push_back("seq " + std::to_string(seq) + " was lost: " + why);
    return;
  }
  if (type == seal::kRecoveryType) {
    const msgpack_object* k = fields ? map_get(*fields, "key") : nullptr;
    const msgpack_object* e = fields ? map_get(*fields, "epoch") : nullptr;
    const msgpack_object* r = fields ? map_get(*fields, "reason") : nullptr;
    seal::PublicKey pk;
    if (k == nullptr || k->type != MSGPACK_OBJECT_STR || e == nullptr ||
        e->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        !seal::unb64_into(std::string_view(k->via.str.ptr, k->via.str.size), pk))
      return fail("format", seq, "malformed recovery record");
    std::string why = r && r->type == MSGPACK_OBJECT_STR ? std::string(r->via.str.ptr, r->via.str.size) : "";
    rep_.notes.push_back("seq " + std::to_string(seq) + ": " + why);
    fail("loss", seq, why);
    // Check what follows against the key the recovery names: internally consistent, but
    // not linked to the first key.
    pk_ = pk;
    epoch_ = e->via.u64;
    window_start_ = prev_window_start_ = received;
    min_received_ = INT64_MAX;
    max_received_ = INT64_MIN;
    return;
  }
  if (type == kRemovalType) return check_removal(fields ? *fields : body, seq, received);
  fail("format", seq, "unknown record type '" + std::string(type) + "'");
}

void Walk::check_record(sqlite3_stmt* st, uint64_t seq) {
  if (const char* col = type_mismatch(st))
    return fail("hidden_row", seq, std::string("column ") + col +
                                       " is stored with another SQLite type (queries would miss this record)");
  const char* body = static_cast<const char*>(sqlite3_column_blob(st, kBody));
  size_t body_len = static_cast<size_t>(sqlite3_column_bytes(st, kBody));
  if (body == nullptr) body = "";
  std::string_view bv(body, body_len);
  Hash leaf = seal::leaf_hash(bv);
  if (sqlite3_column_bytes(st, kHash) != 32 || std::memcmp(sqlite3_column_blob(st, kHash), leaf.data(), 32) != 0)
    return fail("altered", seq, "stored leaf hash is not the hash of the body (the body or hash was altered)");
  size_t off = 0;
  msgpack_object obj;
  msgpack_zone_clear(&zone_);
  if (msgpack_unpack(body, body_len, &off, &zone_, &obj) != MSGPACK_UNPACK_SUCCESS || off != body_len ||
      obj.type != MSGPACK_OBJECT_MAP)
    return fail("format", seq, "body is not one msgpack map");
  if (const char* col = column_mismatch(obj, st))
    return fail("column", seq, std::string("column ") + col + " differs from the body");
  int64_t received = sqlite3_column_int64(st, kReceived);
  bool null = false;
  std::string_view type = text_col(st, kType, &null);
  if (type.substr(0, seal::kReservedPrefix.size()) == seal::kReservedPrefix) {
    check_system(type, obj, seq, received);
    if (hard_failed()) return;
  } else {
    min_received_ = std::min(min_received_, received);
    max_received_ = std::max(max_received_, received);
  }
  for (auto& d : digests_)
    if (d.index != nullptr && (d.col != kIdem || sqlite3_column_type(st, kIdem) != SQLITE_NULL))
      digest_add(sipkey_, d, st, d.col, static_cast<int64_t>(seq));
  tree_.push(leaf, [&](unsigned level, uint64_t index, const Hash& h) {
    nodes_.emplace_back(seal::postorder(level, index), h);
  });
  check_checkpoints_at_size();
}

namespace {

std::optional<uint64_t> u64_of(const msgpack_object* o) {
  if (o == nullptr || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return std::nullopt;
  return o->via.u64;
}

std::optional<std::string_view> str_of(const msgpack_object* o) {
  if (o == nullptr || o->type != MSGPACK_OBJECT_STR) return std::nullopt;
  return std::string_view(o->via.str.ptr, o->via.str.size);
}

// A removal record's fields (PROTOCOL.md §11), decoded.
struct Removal {
  uint64_t first = 0, last = 0;
  uint64_t previous = 0;       // the removal record before this one (0: none)
  std::vector<Hash> frontier;  // the compact range of records 1..last, largest first
  std::string seal_body;       // record `last`: the last removed seal
  std::string reason;
};

std::optional<Removal> parse_removal(const msgpack_object& f) {
  Removal r;
  auto first = u64_of(map_get(f, "first"));
  auto last = u64_of(map_get(f, "last"));
  auto seal_b64 = str_of(map_get(f, "seal"));
  auto reason = str_of(map_get(f, "reason"));
  auto previous = u64_of(map_get(f, "previous"));
  const msgpack_object* fr = map_get(f, "frontier");
  if (!first || !last || !previous || !seal_b64 || !reason || fr == nullptr || fr->type != MSGPACK_OBJECT_ARRAY ||
      *first == 0 || *first > *last)
    return std::nullopt;
  for (uint32_t i = 0; i < fr->via.array.size; ++i) {
    Hash h;
    auto s = str_of(&fr->via.array.ptr[i]);
    if (!s || !seal::unb64_into(*s, h)) return std::nullopt;
    r.frontier.push_back(h);
  }
  if (r.frontier.size() != static_cast<size_t>(__builtin_popcountll(*last))) return std::nullopt;
  auto body = seal::unb64(*seal_b64);
  if (!body) return std::nullopt;
  r.first = *first;
  r.last = *last;
  r.previous = *previous;
  r.seal_body = std::move(*body);
  r.reason = std::string(*reason);
  return r;
}

}  // namespace

// The walk begins after the newest removal (meta 'removal_seq' names its record): the
// tree from the compact range the record carries, the key chain from the last removed
// seal. Whether the record is genuine is settled later in the walk: it is a leaf of the
// tree, so a seal after it must cover it (checked at the end), and that seal's root is
// computed from this compact range, so a forged range fails as `root`.
StoreResult<Ok> Walk::setup_retention(Store& store, const std::vector<SegmentFile>& segs) {
  auto rs = store.removal_seq();
  if (!rs) return Err{rs.error()};
  uint64_t r = rs.value();
  auto newest = store.latest_seal();
  if (!newest) return Err{newest.error()};
  const uint64_t sealed_to = newest.value() ? newest.value()->first : 0;
  for (;;) {
  if (r == 0) return Ok{};
  auto live = store.body_of(r);
  if (!live) return Err{live.error()};
  std::string body;
  if (live.value()) {
    body = std::move(*live.value());
  } else {
    for (const auto& f : segs) {
      if (f.first > r || f.last < r) continue;
      auto seg = read_segment(f.path);
      if (!seg) {
        fail("archive", f.first, seg.error());
        return Ok{};
      }
      body = std::string(seg.value().body(r));
      break;
    }
  }
  if (body.empty()) {
    fail("retention", r, "the removal record this database names is in neither the database nor an archive segment");
    return Ok{};
  }

  msgpack_zone zone;
  msgpack_zone_init(&zone, 1024);
  msgpack_object obj;
  size_t off = 0;
  std::optional<Removal> rm;
  const msgpack_object* type = nullptr;
  const msgpack_object* received = nullptr;
  if (msgpack_unpack(body.data(), body.size(), &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS &&
      obj.type == MSGPACK_OBJECT_MAP) {
    type = map_get(obj, "type");
    received = map_get(obj, "received");
    const msgpack_object* fields = map_get(obj, "fields");
    if (fields && str_of(type) == kRemovalType) rm = parse_removal(*fields);
  }
  int64_t when = received && received->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? static_cast<int64_t>(received->via.u64) : 0;
  msgpack_zone_destroy(&zone);
  if (!rm) {
    fail("retention", r, "the record this database names as its removal record is not a well-formed removal record");
    return Ok{};
  }
  // Not sealed yet (cairnd stopped between the removal and the seal it makes right
  // after): nothing attests the claim, so the walk begins after the removal before it
  // and reads these records from their segments, which cairnd unlinks only once the
  // removal is sealed.
  if (sealed_to < r && pending_removal_ == 0 && rm->previous < r) {
    pending_removal_ = r;
    rep_.notes.push_back("the removal record at seq " + std::to_string(r) +
                         " is not sealed yet: the records it names were checked from their segments");
    r = rm->previous;
    continue;
  }
  auto s = seal::parse_seal_body(rm->seal_body);
  if (rm->last >= r || !s || s->size + 1 != rm->last) {
    fail("retention", r, "the removal record's last removed seal is not record " + std::to_string(rm->last) +
                             " of a log that goes on to seq " + std::to_string(r));
    return Ok{};
  }
  size_t i = 0;
  auto f = seal::Frontier::load(rm->last, [&](unsigned, uint64_t) { return std::optional<Hash>(rm->frontier[i++]); });
  // The smallest subtree of an odd size is the last record itself: the seal it carries.
  if (!f || ((rm->last & 1) && rm->frontier.back() != seal::leaf_hash(rm->seal_body))) {
    fail("retention", r, "the removal record's compact range does not end with its seal's leaf");
    return Ok{};
  }
  tree_ = std::move(*f);
  checked_pos_ = seal::postorder(0, rm->last);
  if (pk_ || opt_.key) {
    pk_ = s->next_key;
    epoch_ = s->epoch + 1;
  }
  prev_window_start_ = s->prev_time;
  window_start_ = s->time;
  window_first_seq_ = rm->last + 1;
  rep_.epochs = s->epoch + 1;
  rep_.sealed_seq = rm->last;
  rep_.sealed_time = s->time;
  removed_through_ = rm->last;
  removal_seq_ = r;
  rep_.notes.push_back("records 1.." + std::to_string(rm->last) + " removed by retention on " + proto::utc_text(when) +
                       " (removal record seq " + std::to_string(r) + ", " + rm->reason +
                       "); seals after them are checked with the key the last removed seal named");
  return Ok{};
  }
}

// Records (removed_through_, horizon] from the segments, which must tile that range.
StoreResult<Ok> Walk::walk_archive(const std::vector<SegmentFile>& segs, uint64_t horizon, uint64_t* next) {
  size_t used = 0;
  while (*next <= horizon && !hard_failed()) {
    const SegmentFile* f = nullptr;
    for (const auto& s : segs)
      if (s.first <= *next && s.last >= *next) {
        f = &s;
        break;
      }
    if (f == nullptr) {
      fail("archive", *next, "records " + std::to_string(*next) + ".." + std::to_string(horizon) +
                                 " are archived, but no segment holds seq " + std::to_string(*next) +
                                 " (deleted or renamed?)");
      break;
    }
    // The horizon may sit inside the newest segment (its rows leave over several writer
    // turns): records above it are read live, and a walk that saw the horizon rise goes
    // on from the middle of that segment. Every record read is a leaf of the tree, so a
    // segment overlapping another cannot change what the walk accepts.
    const uint64_t from = *next, upto = std::min(f->last, horizon);
    auto seg = read_segment(f->path);
    if (!seg) {
      fail("archive", f->first, seg.error());
      break;
    }
    nodes_.clear();
    for (uint64_t seq = from; seq <= upto && !hard_failed(); ++seq) {
      check_body(seg.value().body(seq), seq);
      if (hard_failed()) break;
      rep_.head_seq = seq;
      ++rep_.checked;
    }
    if (hard_failed()) break;
    if (!nodes_.empty()) {
      auto c = check_nodes(checked_pos_, nodes_.back().first);
      if (!c) return c;
      checked_pos_ = nodes_.back().first + 1;
    }
    *next = upto + 1;
    ++used;
  }
  if (used > 0 && rep_.valid)
    rep_.notes.push_back("records " + std::to_string(removed_through_ + 1) + ".." + std::to_string(horizon) +
                         " read from " + std::to_string(used) + " archive segment(s)");
  return Ok{};
}

// An archived record: only its body is left, so the checks are those a body allows
// (its leaf is recomputed and the tree compared; there are no columns or index entries).
void Walk::check_body(std::string_view body, uint64_t seq) {
  Hash leaf = seal::leaf_hash(body);
  size_t off = 0;
  msgpack_object obj;
  msgpack_zone_clear(&zone_);
  if (msgpack_unpack(body.data(), body.size(), &off, &zone_, &obj) != MSGPACK_UNPACK_SUCCESS || off != body.size() ||
      obj.type != MSGPACK_OBJECT_MAP)
    return fail("format", seq, "archived body is not one msgpack map");
  auto type = str_of(map_get(obj, "type"));
  const msgpack_object* rcv = map_get(obj, "received");
  if (!type || rcv == nullptr || rcv->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
    return fail("format", seq, "archived body has no type or received");
  int64_t received = static_cast<int64_t>(rcv->via.u64);
  if (type->substr(0, seal::kReservedPrefix.size()) == seal::kReservedPrefix) {
    check_system(*type, obj, seq, received);
    if (hard_failed()) return;
  } else {
    min_received_ = std::min(min_received_, received);
    max_received_ = std::max(max_received_, received);
  }
  tree_.push(leaf, [&](unsigned level, uint64_t index, const Hash& h) {
    nodes_.emplace_back(seal::postorder(level, index), h);
  });
  rep_.head_hash = leaf;
  check_checkpoints_at_size();
}

void Walk::check_removal(const msgpack_object& fields, uint64_t seq, int64_t received) {
  auto rm = parse_removal(fields);
  if (!rm || rm->last >= seq) return fail("format", seq, "malformed removal record");
  if (rm->last > removed_through_ && seq != pending_removal_)
    return fail("retention", seq,
                "this removal record removes records through " + std::to_string(rm->last) +
                    " but the database says only " + std::to_string(removed_through_) +
                    " were removed (its meta 'removal_seq' was altered)");
  if (seq != removal_seq_ && rep_.notes.size() < 100)
    rep_.notes.push_back("seq " + std::to_string(seq) + ": records " + std::to_string(rm->first) + ".." +
                         std::to_string(rm->last) + " removed by retention on " + proto::utc_text(received));
}

StoreResult<Ok> Walk::check_nodes(uint64_t from_pos, uint64_t to_pos) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT pos, hash FROM tree WHERE pos >= ?1 AND pos <= ?2 ORDER BY pos", -1,
                              &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "verify tree")};
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(from_pos));
  sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(std::min<uint64_t>(to_pos, INT64_MAX)));
  size_t i = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && rep_.valid) {
    uint64_t pos = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    if (i >= nodes_.size() || nodes_[i].first != pos) {
      fail("tree", seq_at(pos), "stored tree node at position " + std::to_string(pos) + " should not exist");
      break;
    }
    if (sqlite3_column_bytes(st, 1) != 32 || std::memcmp(sqlite3_column_blob(st, 1), nodes_[i].second.data(), 32) != 0) {
      fail("tree", seq_at(pos), "stored tree node at position " + std::to_string(pos) + " differs from the recomputed one");
      break;
    }
    ++i;
  }
  bool done = rc == SQLITE_DONE || rc == SQLITE_ROW;
  StoreError err = done ? StoreError{} : make_error(db_, rc, "verify tree");
  sqlite3_finalize(st);
  if (!done) return Err{err};
  if (rep_.valid && i < nodes_.size())
    fail("tree", seq_at(nodes_[i].first), "tree node at position " + std::to_string(nodes_[i].first) + " is missing");
  return Ok{};
}

StoreResult<Ok> Walk::chunk(uint64_t from, uint64_t to, uint64_t* next) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_,
                              "SELECT seq, received, time, type, severity, actor, action, target, outcome, pid, "
                              "uid, gid, comm, idem, body, hash FROM events WHERE seq >= ?1 AND seq <= ?2 "
                              "ORDER BY seq LIMIT ?3",
                              -1, &st, nullptr);
  if (rc != SQLITE_OK) return Err{make_error(db_, rc, "verify")};
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(from));
  sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(to));
  sqlite3_bind_int64(st, 3, static_cast<sqlite3_int64>(opt_.chunk_rows));
  uint64_t expect = from;
  first_found_ = 0;
  nodes_.clear();
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t seq = static_cast<uint64_t>(sqlite3_column_int64(st, kSeq));
    // The first row of a chunk missing may be the writer archiving it since the last
    // chunk: the caller looks at the horizon again before calling it a gap.
    if (seq != expect && expect == from) {
      first_found_ = seq;
      break;
    }
    if (seq != expect) {
      fail("gap", seq, "expected seq " + std::to_string(expect) + (expect > 1 ? " after " + std::to_string(expect - 1) : "") +
                           " (a record was removed)");
      break;
    }
    check_record(st, seq);
    if (hard_failed()) break;
    rep_.head_seq = seq;
    std::memcpy(rep_.head_hash.data(), sqlite3_column_blob(st, kHash), 32);
    ++rep_.checked;
    ++expect;
  }
  bool done = rc == SQLITE_DONE || rc == SQLITE_ROW;
  StoreError err = done ? StoreError{} : make_error(db_, rc, "verify");
  sqlite3_finalize(st);  // ends this chunk's read snapshot
  if (!done) return Err{err};
  *next = expect;
  if (!hard_failed() && !nodes_.empty()) {
    auto c = check_nodes(checked_pos_, nodes_.back().first);
    if (!c) return c;
    checked_pos_ = nodes_.back().first + 1;
  }
  return Ok{};
}

StoreResult<Ok> Walk::check_indexes(const IndexScan& scan) {
  if (scan.error) return Err{*scan.error};
  if (!scan.missing.empty()) {
    fail("hidden_row", 0, scan.missing);
    return Ok{};
  }
  for (int i = 0; i < 4; ++i) {
    const IndexDigest &d = digests_[i], &seen = scan.seen[i];
    if (d.index == nullptr) continue;
    if (seen.sum != d.sum || seen.count != d.count) {
      fail("hidden_row", 0, std::string("index ") + d.index + " does not hold every record exactly once (" +
                                std::to_string(seen.count) + " entries for " + std::to_string(d.count) +
                                " records): queries on it would miss or misplace records");
      return Ok{};
    }
  }
  return Ok{};
}

void Walk::check_key_file() {
  // A log that never had a key (sealing off) has no key file to miss.
  if (!first_pk_ && rep_.epochs == 0) return;
  if (!opt_.key_file_error.empty()) return fail("key_file", rep_.sealed_seq, opt_.key_file_error);
  if (!opt_.key_file) return;
  const KeyFileState& k = *opt_.key_file;
  if (first_pk_ && k.first != *first_pk_)
    return fail("key_chain", 0, "the key file belongs to another log (its first key differs)");
  if (!pk_) return;
  if ((k.epoch == epoch_ && k.current == *pk_) || (k.pending && k.epoch + 1 == epoch_ && k.next == *pk_)) return;
  std::string log_ends = rep_.epochs == 0 ? "the log has no seal" : "the log's seals end at epoch " +
                                                                        std::to_string(epoch_ - 1) + " (seq " +
                                                                        std::to_string(rep_.sealed_seq) + ")";
  if (k.epoch > epoch_)
    return fail("truncated", rep_.sealed_seq + 1,
                "the key file is at epoch " + std::to_string(k.epoch) + " (sealed through seq " +
                    std::to_string(k.sealed_seq) + ") but " + log_ends +
                    ": sealed records were removed (tail truncated, -wal deleted, or an older copy restored)");
  if (k.epoch < epoch_)
    return fail("key_chain", rep_.sealed_seq,
                "the key file is at epoch " + std::to_string(k.epoch) + " but " + log_ends +
                    ": the key file is an older copy (swapped or restored)");
  fail("key_chain", rep_.sealed_seq, "the key file's key is not the one the log's newest seal hands over to");
}

StoreResult<Ok> Walk::run(Store& store) {
  auto k = setup_key(store);
  if (!k) return k;
  for (const auto& text : opt_.checkpoints) {
    auto note = seal::parse_note(text);
    std::optional<seal::Checkpoint> cp;
    if (!note || !(cp = seal::parse_checkpoint_text(note->text))) {
      fail("checkpoint", 0, "a saved checkpoint is not a signed checkpoint note");
      return Ok{};
    }
    if (!origin_.empty() && cp->origin != origin_) {
      fail("checkpoint", 0, "a saved checkpoint is for log '" + cp->origin + "', not '" + origin_ + "'");
      return Ok{};
    }
    checkpoints_.emplace(cp->size, Saved{*note, *cp});
  }
  // The head when the walk begins bounds it: records appended meanwhile wait for the next verify.
  uint64_t end = 0;
  {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, "SELECT IFNULL(MAX(seq), 0) FROM events", -1, &st, nullptr);
    if (rc != SQLITE_OK) return Err{make_error(db_, rc, "verify")};
    if (sqlite3_step(st) == SQLITE_ROW) end = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
  }
  // The index scans run after the walk, on the same connection: whatever interrupts the
  // walk (cairnd's shutdown deadline installs a progress handler on it) stops them too.
  // (A second connection scanning beside the walk saved ~25% on two cores, but could not
  // be interrupted with it: an interrupted verify then answered after its deadline.)
  IndexScan scan;
  if (store.schema_version() < 3) digests_[3].index = scan.seen[3].index = kV2IdemIndex;
  if (store.schema_version() >= 4) digests_[2].index = scan.seen[2].index = nullptr;
  msgpack_zone_init(&zone_, 4096);
  // Retention: records up to the horizon are read from archive segments (after the
  // newest removal), the rest from the events table, as one log.
  uint64_t next = 1;
  StoreResult<Ok> res = Ok{};
  auto horizon = store.archived_through();
  auto segs = list_segments(archive_dir(store.path()));
  if (!horizon) res = Err{horizon.error()};
  else if (!segs) fail("archive", 0, segs.error());
  else res = setup_retention(store, segs.value());
  if (res && !hard_failed()) {
    next = removed_through_ + 1;
    res = walk_archive(segs.value(), horizon.value(), &next);
  }
  if (res && !hard_failed() && end > 0 && end < next)
    fail("gap", end, "the newest live record is at or below the archive horizon " + std::to_string(next - 1));
  while (res && next <= end && !hard_failed()) {
    // cairnd may archive while a verify walks (each chunk is its own snapshot): records
    // that left the table since are read from their segment, which was durable first.
    if (horizon && next > 1) {
      auto now = store.archived_through();
      if (!now) {
        res = Err{now.error()};
        break;
      }
      if (now.value() >= next) {
        auto fresh = list_segments(archive_dir(store.path()));
        if (!fresh) {
          fail("archive", next, fresh.error());
          break;
        }
        res = walk_archive(fresh.value(), now.value(), &next);
        continue;
      }
    }
    uint64_t before = next;
    res = chunk(next, end, &next);
    if (!res) break;
    if (next == before) {  // no row at `next`: the first record is missing, or the tail was cut mid-walk
      auto now = store.archived_through();
      if (now && horizon && now.value() > horizon.value() && now.value() >= next) continue;  // archived meanwhile
      if (rep_.valid && first_found_ > next)
        fail("gap", first_found_, "expected seq " + std::to_string(next) +
                                      (next > 1 ? " after " + std::to_string(next - 1) : "") + " (a record was removed)");
      else if (rep_.valid)
        fail("gap", next, "expected seq " + std::to_string(next) + " (a record was removed)");
      break;
    }
  }
  msgpack_zone_destroy(&zone_);
  if (res && !hard_failed()) scan_indexes(db_, sipkey_, end, scan);
  if (!res) return res;
  rep_.root = tree_.root();
  if (hard_failed()) return Ok{};
  // Every node a record up to the head completes was compared. A node at or past the
  // position of the leaf after the newest record was written by a record that is gone
  // (what a removed tail leaves behind). The newest node and the newest record are read
  // in one statement, one snapshot: a live writer may have appended since the walk began.
  if (end == rep_.head_seq) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, "SELECT MAX(pos), (SELECT IFNULL(MAX(seq), 0) FROM events) FROM tree", -1,
                                &st, nullptr);
    if (rc != SQLITE_OK) return Err{make_error(db_, rc, "verify tree")};
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
      uint64_t last_pos = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
      uint64_t newest = static_cast<uint64_t>(sqlite3_column_int64(st, 1));
      if (last_pos >= seal::postorder(0, newest))
        fail("tree", newest + 1, "the tree holds nodes past the last record (records were removed)");
    }
    sqlite3_finalize(st);
  }
  if (hard_failed()) return Ok{};
  // Rows the walk digested and the writer archived before the index scan are in the
  // walk's digests but no longer in the indexes: compare only when the horizon held.
  auto h2 = store.archived_through();
  if (h2 && horizon && h2.value() != horizon.value()) {
    rep_.notes.push_back("records were archived during the walk: the indexes were not compared (run verify again)");
  } else {
    auto ix = check_indexes(scan);
    if (!ix) return ix;
  }
  if (!hard_failed()) {
    // Its own snapshot, which may hold records appended or archived since the walk
    // began: the maintained figures change in the same transaction as the events.
    auto qi = check_query_indexes(store);
    if (!qi) return Err{qi.error()};
    if (qi.value()) fail("index", 0, "query index: " + *qi.value());
  }
  rep_.unsealed = rep_.head_seq - (rep_.sealed_seq == 0 ? 0 : rep_.sealed_seq);
  for (const auto& [size, s] : checkpoints_) {
    if (s.done) {
      rep_.checkpoints += 1;
      continue;
    }
    if (size <= removed_through_) {  // its records are gone: nothing to recompute it from
      rep_.notes.push_back("a saved checkpoint of size " + std::to_string(size) +
                           " lies within the removed records and was not checked");
      continue;
    }
    fail("consistency", rep_.head_seq,
         "a saved checkpoint covers " + std::to_string(size) + " records but the log has only " +
             std::to_string(rep_.head_seq) + " (truncated or rolled back)");
  }
  // A removal record is a claim cairnd makes; a seal after it is what makes it the log's.
  if (removal_seq_ > 0 && removal_seq_ > rep_.sealed_seq)
    fail("retention", removal_seq_,
         "the removal record is not covered by a seal yet, so nothing tells it from a forgery "
         "(cairnd seals right after a removal)");
  check_key_file();
  if (opt_.fresh_ns && rep_.epochs == 0) fail("stale", rep_.head_seq, "the log has no seal at all");
  if (opt_.fresh_ns && rep_.epochs > 0 && opt_.now_ns - rep_.sealed_time > *opt_.fresh_ns)
    fail("stale", rep_.sealed_seq,
         "the newest seal is " + std::to_string((opt_.now_ns - rep_.sealed_time) / 1'000'000'000) +
             " s old (a log that was truncated cannot be resealed; is cairnd running?)");
  return Ok{};
}

}  // namespace

StoreResult<proto::VerifyReport> Store::verify(const VerifyOptions& opt) {
  proto::VerifyReport rep;
  Walk w(db_, opt, rep);
  auto r = w.run(*this);
  if (!r) return Err{r.error()};
  return rep;
}

}  // namespace cairn::store
