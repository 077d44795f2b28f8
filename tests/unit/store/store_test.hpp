// store_test.hpp — helpers shared by the store's unit tests: a temporary directory,
// event builders, raw SQL against Store::handle().
#pragma once

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

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

}  // namespace store_test
