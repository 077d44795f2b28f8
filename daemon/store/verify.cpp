// verify.cpp — walk the whole chain and check every row against its body.
//
// One statement, stepped from seq 1 upwards: in WAL mode it reads one consistent
// snapshot, and memory stays constant whatever the size of the database.
#include <msgpack.h>

#include <cstring>

#include "store_internal.hpp"

namespace cairn::store {
namespace {

std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

std::string_view text_col(sqlite3_stmt* st, int i, bool* null) {
  *null = sqlite3_column_type(st, i) == SQLITE_NULL;
  const unsigned char* t = sqlite3_column_text(st, i);
  return t ? std::string_view(reinterpret_cast<const char*>(t),
                              static_cast<size_t>(sqlite3_column_bytes(st, i)))
           : std::string_view();
}

const msgpack_object* get(const msgpack_object& m, std::string_view k) {
  for (uint32_t i = 0; i < m.via.map.size; ++i) {
    const auto& kv = m.via.map.ptr[i];
    if (kv.key.type == MSGPACK_OBJECT_STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == k)
      return &kv.val;
  }
  return nullptr;
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

// Returns the name of the first column that disagrees with the body, or nullptr.
const char* column_mismatch(const msgpack_object& body, sqlite3_stmt* st) {
  if (!str_eq(get(body, "type"), st, 3)) return "type";
  if (!int_eq(get(body, "severity"), st, 4)) return "severity";
  if (!str_eq(get(body, "actor"), st, 5)) return "actor";
  if (!str_eq(get(body, "action"), st, 6)) return "action";
  if (!str_eq(get(body, "target"), st, 7)) return "target";
  const msgpack_object* oc = get(body, "outcome");
  static const char* kOutcomes[] = {"unknown", "success", "failure"};
  int out = sqlite3_column_int(st, 8);
  if (oc == nullptr || oc->type != MSGPACK_OBJECT_STR || out < 0 || out > 2 ||
      std::string_view(oc->via.str.ptr, oc->via.str.size) != kOutcomes[out])
    return "outcome";
  if (!int_eq(get(body, "time"), st, 2)) return "time";
  if (!int_eq(get(body, "received"), st, 1)) return "received";
  if (!int_eq(get(body, "pid"), st, 9)) return "pid";
  if (!int_eq(get(body, "uid"), st, 10)) return "uid";
  if (!int_eq(get(body, "gid"), st, 11)) return "gid";
  if (!str_eq(get(body, "comm"), st, 12)) return "comm";
  const msgpack_object* idem = get(body, "idem");
  bool idem_null = sqlite3_column_type(st, 13) == SQLITE_NULL;
  if (idem == nullptr) {
    if (!idem_null) return "idem";
  } else if (idem_null || idem->type != MSGPACK_OBJECT_BIN ||
             static_cast<int>(idem->via.bin.size) != sqlite3_column_bytes(st, 13) ||
             std::memcmp(idem->via.bin.ptr, sqlite3_column_blob(st, 13), idem->via.bin.size) != 0) {
    return "idem";
  }
  return nullptr;
}

}  // namespace

StoreResult<proto::VerifyReport> Store::verify() {
  int rc = 0;
  // One statement is one read transaction: the walk sees a single snapshot even while
  // the writer appends, and SQLite streams the rows, so memory does not grow with the
  // database. Not cached: verify is rare and long.
  sqlite3_stmt* st = prepare(db_,
                             "SELECT seq, received, time, type, severity, actor, action, target, "
                             "outcome, pid, uid, gid, comm, idem, body, hash FROM events ORDER BY seq",
                             &rc);
  if (st == nullptr) return Err{make_error(db_, rc, "verify")};
  proto::VerifyReport rep;
  Hash prev = kGenesis;
  uint64_t expect = 1;
  // One zone for every body, cleared per row: the decoded map points into the row's
  // blob and into the zone, both valid until the next step.
  msgpack_zone zone;
  msgpack_zone_init(&zone, 4096);
  auto broken = [&](uint64_t seq, const std::string& why) {
    rep.valid = false;
    rep.break_seq = seq;
    rep.reason = "seq " + std::to_string(seq) + ": " + why;
  };
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    uint64_t seq = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    if (seq != expect) {
      broken(seq, expect == 1 ? "expected seq 1 first (gap)"
                              : "expected seq " + std::to_string(expect) + " after " +
                                    std::to_string(expect - 1) + " (gap)");
      break;
    }
    const char* body = static_cast<const char*>(sqlite3_column_blob(st, 14));
    size_t body_len = static_cast<size_t>(sqlite3_column_bytes(st, 14));
    if (body == nullptr) body = "";
    Hash computed = chain_hash(prev, seq, std::string_view(body, body_len));
    if (sqlite3_column_bytes(st, 15) != static_cast<int>(computed.size()) ||
        std::memcmp(sqlite3_column_blob(st, 15), computed.data(), computed.size()) != 0) {
      std::string stored = sqlite3_column_bytes(st, 15) == 32
                               ? hex(static_cast<const uint8_t*>(sqlite3_column_blob(st, 15)), 8) + "…"
                               : "malformed, " + std::to_string(sqlite3_column_bytes(st, 15)) + " bytes";
      broken(seq, "hash mismatch (stored " + stored + ", computed " + hex(computed.data(), 8) +
                      "…): this row's body or hash was altered");
      break;
    }
    size_t off = 0;
    msgpack_object obj;
    msgpack_zone_clear(&zone);
    if (msgpack_unpack(body, body_len, &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
        obj.type != MSGPACK_OBJECT_MAP) {
      broken(seq, "body is not one msgpack map");
      break;
    }
    if (const char* col = column_mismatch(obj, st)) {
      broken(seq, std::string("column ") + col + " differs from body");
      break;
    }
    prev = computed;
    rep.head_seq = seq;
    rep.head_hash = computed;
    ++rep.checked;
    ++expect;
  }
  msgpack_zone_destroy(&zone);
  bool done = rc == SQLITE_DONE || rc == SQLITE_ROW;
  StoreError err = done ? StoreError{} : make_error(db_, rc, "verify");
  sqlite3_finalize(st);
  if (!done) return Err{err};
  return rep;
}

}  // namespace cairn::store
