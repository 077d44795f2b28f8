// store_test.hpp — helpers shared by the store's unit tests: a temporary directory,
// event builders, raw SQL against Store::handle(), and an RFC 6962 tree recomputed from
// the bodies on disk (never from what the store says about itself).
#pragma once

#include <criterion/criterion.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../../../daemon/store/store.hpp"

namespace store_test {

using namespace cairn;
using namespace cairn::store;

// A fresh directory under /tmp, removed with everything in it at scope exit.
struct TempDb {
  std::string dir, path;
  TempDb() {
    char tmpl[] = "/tmp/cairn-store-XXXXXX";
    const char* d = mkdtemp(tmpl);
    cr_assert(d != nullptr, "mkdtemp failed");
    dir = d;
    path = dir + "/audit.db";
  }
  ~TempDb() {
    std::error_code ec;
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(dir, ec);
  }
};

inline std::unique_ptr<Store> open_store(const std::string& path, OpenMode mode = OpenMode::writer) {
  auto s = Store::open(path, mode);
  cr_assert(s.ok(), "open %s: %s", path.c_str(), s.ok() ? "" : s.error().message.c_str());
  return std::move(s.value());
}

inline proto::Event event(const std::string& type, const std::string& actor,
                          const std::string& idem = {}) {
  proto::Event e;
  e.type = type;
  e.actor = actor;
  e.idem = idem;
  return e;
}

inline proto::Trusted trusted(int64_t received) {
  return proto::Trusted{received, 10, 1000, 100, "test"};
}

inline AppendResult append(Store& s, const proto::Event& e, int64_t received) {
  auto t = trusted(received);
  auto r = s.append(e, t, proto::event_canonical_body(e, t));
  cr_assert(r.ok(), "append: %s", r.ok() ? "" : r.error().message.c_str());
  return r.value();
}

// n events in one transaction, received t0, t0+1, ...; event i has type AuthFailure
// when i%3==0 (else UserLogin), actor alice when i is odd (else bob), and severity
// i%8.
inline void fill(Store& s, int n, int64_t t0 = 1000) {
  cr_assert(s.begin().ok());
  for (int i = 0; i < n; ++i) {
    auto e = event(i % 3 == 0 ? "AuthFailure" : "UserLogin", i % 2 ? "alice" : "bob");
    e.severity = static_cast<uint8_t>(i % 8);
    append(s, e, t0 + i);
  }
  auto c = s.commit();
  cr_assert(c.ok(), "commit: %s", c.ok() ? "" : c.error().message.c_str());
}

// The first column of the first row as text, "" when no row; asserts the SQL runs.
inline std::string sql_text(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, nullptr), SQLITE_OK, "%s: %s", sql,
               sqlite3_errmsg(db));
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    out = t ? reinterpret_cast<const char*>(t) : "";
  }
  sqlite3_finalize(st);
  return out;
}

inline void exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : "");
  sqlite3_free(err);
}

// Runs raw SQL on a connection of its own (not through a Store).
inline void exec_on_file(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  cr_assert_eq(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  exec(db, sql);
  sqlite3_close(db);
}

// SHA-256 through libsodium: a second implementation beside the store's libcrypto.
inline Hash sodium_sha256(const std::string& data) {
  Hash h;
  crypto_hash_sha256(h.data(), reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return h;
}
inline Hash ref_leaf(const std::string& body) { return sodium_sha256(std::string(1, '\0') + body); }
inline Hash ref_node(const Hash& l, const Hash& r) {
  std::string buf(1, '\x01');
  buf.append(reinterpret_cast<const char*>(l.data()), 32);
  buf.append(reinterpret_cast<const char*>(r.data()), 32);
  return sodium_sha256(buf);
}
// RFC 6962 §2.1 MTH of leaves [a, b), b > a.
inline Hash ref_mth(const std::vector<Hash>& l, size_t a, size_t b) {
  if (b - a == 1) return l[a];
  size_t k = std::bit_floor(b - a - 1);
  return ref_node(ref_mth(l, a, a + k), ref_mth(l, a + k, b));
}
inline Hash ref_root(const std::vector<Hash>& l, size_t n) {
  return n == 0 ? sodium_sha256("") : ref_mth(l, 0, n);
}

// The canonical bodies on disk, in seq order.
inline std::vector<std::string> bodies_on_disk(sqlite3* db) {
  sqlite3_stmt* st = nullptr;
  cr_assert_eq(sqlite3_prepare_v2(db, "SELECT body FROM events ORDER BY seq", -1, &st, nullptr), SQLITE_OK);
  std::vector<std::string> out;
  while (sqlite3_step(st) == SQLITE_ROW)
    out.emplace_back(static_cast<const char*>(sqlite3_column_blob(st, 0)),
                     static_cast<size_t>(sqlite3_column_bytes(st, 0)));
  sqlite3_finalize(st);
  return out;
}
// Leaf hashes recomputed from the bodies on disk.
inline std::vector<Hash> leaves_on_disk(sqlite3* db) {
  std::vector<Hash> out;
  for (const auto& b : bodies_on_disk(db)) out.push_back(ref_leaf(b));
  return out;
}

// Writes blob `b` into column `col` of record `seq` (triggers must be gone).
inline void set_blob(sqlite3* db, uint64_t seq, const char* col, const void* b, size_t n) {
  std::string q = std::string("UPDATE events SET ") + col + " = ?1 WHERE seq = ?2";
  sqlite3_stmt* st = nullptr;
  cr_assert_eq(sqlite3_prepare_v2(db, q.c_str(), -1, &st, nullptr), SQLITE_OK, "%s", sqlite3_errmsg(db));
  sqlite3_bind_blob(st, 1, b, static_cast<int>(n), SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, static_cast<sqlite3_int64>(seq));
  cr_assert_eq(sqlite3_step(st), SQLITE_DONE, "%s", sqlite3_errmsg(db));
  sqlite3_finalize(st);
}

// What an attacker who read PROTOCOL.md does after editing records: drop the tree's
// triggers and rebuild every interior node from the stored leaf hashes.
inline void rebuild_tree(sqlite3* db) {
  exec(db, "DROP TRIGGER IF EXISTS tree_no_update; DROP TRIGGER IF EXISTS tree_no_delete; DELETE FROM tree");
  sqlite3_stmt* rd = nullptr;
  cr_assert_eq(sqlite3_prepare_v2(db, "SELECT hash FROM events ORDER BY seq", -1, &rd, nullptr), SQLITE_OK);
  std::vector<Hash> leaves;
  while (sqlite3_step(rd) == SQLITE_ROW) {
    Hash h;
    std::memcpy(h.data(), sqlite3_column_blob(rd, 0), 32);
    leaves.push_back(h);
  }
  sqlite3_finalize(rd);
  sqlite3_stmt* ins = nullptr;
  cr_assert_eq(sqlite3_prepare_v2(db, "INSERT INTO tree (pos, hash) VALUES (?1, ?2)", -1, &ins, nullptr), SQLITE_OK);
  seal::Frontier f;
  for (const Hash& l : leaves)
    f.push(l, [&](unsigned level, uint64_t index, const Hash& h) {
      sqlite3_bind_int64(ins, 1, static_cast<sqlite3_int64>(seal::postorder(level, index)));
      sqlite3_bind_blob(ins, 2, h.data(), 32, SQLITE_TRANSIENT);
      cr_assert_eq(sqlite3_step(ins), SQLITE_DONE);
      sqlite3_reset(ins);
    });
  sqlite3_finalize(ins);
}

}  // namespace store_test
