// The WAL-gathering VFS (daemon/store/wal_vfs.hpp): what it must never change is what
// another connection reads. Each test writes through it and reads back through SQLite's
// own VFS on a second connection, which finds frames by the wal-index and reads them from
// the file: a frame published but not yet written would be a short read or a corrupt page.
#include <criterion/criterion.h>
#include <sqlite3.h>

#include <string>

#include "../../../daemon/store/wal_vfs.hpp"
#include "store_test.hpp"

using namespace store_test;

namespace {

sqlite3* open_db(const std::string& path, const char* vfs) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
  cr_assert_eq(rc, SQLITE_OK, "open %s: %s", path.c_str(), sqlite3_errmsg(db));
  return db;
}

void run_sql(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql.c_str(), err ? err : "?");
}

int64_t scalar(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  cr_assert_eq(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK, "%s", sqlite3_errmsg(db));
  int rc = sqlite3_step(st);
  cr_assert_eq(rc, SQLITE_ROW, "%s: %s", sql.c_str(), sqlite3_errmsg(db));
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

std::string text(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  cr_assert_eq(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  std::string v(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  return v;
}

// A writer through the gathering VFS with `synchronous` as given, and a reader on SQLite's
// own VFS that checks every commit as soon as it returns.
void commits_are_readable_at_once(const char* synchronous) {
  TempDb t;
  const char* vfs = combining_wal_vfs();
  cr_assert_not_null(vfs);
  sqlite3* w = open_db(t.path, vfs);
  run_sql(w, "PRAGMA journal_mode=WAL");
  run_sql(w, std::string("PRAGMA synchronous=") + synchronous);
  run_sql(w, "PRAGMA wal_autocheckpoint=0");  // every frame stays in the WAL: the reader reads them there
  run_sql(w, "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB, s TEXT)");
  run_sql(w, "CREATE INDEX t_s ON t(s)");
  sqlite3* r = open_db(t.path, nullptr);
  for (int i = 1; i <= 300; ++i) {
    run_sql(w, "BEGIN IMMEDIATE");
    run_sql(w, "INSERT INTO t(v, s) VALUES (randomblob(300), hex(randomblob(8)))");
    if (i % 7 == 0) run_sql(w, "INSERT INTO t(v, s) VALUES (zeroblob(9000), 'big')");  // overflow pages
    run_sql(w, "COMMIT");
    int64_t want = i + i / 7;
    cr_assert_eq(scalar(r, "SELECT count(*) FROM t"), want, "commit %d not readable by another connection", i);
    cr_assert_eq(scalar(r, "SELECT max(k) FROM t"), want);
  }
  cr_assert_eq(text(r, "PRAGMA integrity_check"), "ok");
  sqlite3_close(r);
  sqlite3_close(w);
}

}  // namespace

Test(wal_vfs, every_commit_is_in_the_file_before_it_is_published_full) { commits_are_readable_at_once("FULL"); }

// Without synchronous there is no xSync to flush on: the commit frame itself must.
Test(wal_vfs, every_commit_is_in_the_file_before_it_is_published_off) { commits_are_readable_at_once("OFF"); }

// A transaction bigger than the page cache spills frames into the WAL before its commit,
// reads them back and may rewrite them; bigger than the buffer, it is written in pieces.
Test(wal_vfs, spilled_rewritten_and_oversized_transactions) {
  TempDb t;
  sqlite3* w = open_db(t.path, combining_wal_vfs());
  run_sql(w, "PRAGMA journal_mode=WAL");
  run_sql(w, "PRAGMA synchronous=FULL");
  run_sql(w, "PRAGMA wal_autocheckpoint=0");
  run_sql(w, "PRAGMA cache_size=8");  // pages: forces spills in every big transaction
  run_sql(w, "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB, s TEXT)");
  run_sql(w, "CREATE INDEX t_s ON t(s)");
  sqlite3* r = open_db(t.path, nullptr);
  int64_t rows = 0;
  for (int round = 0; round < 4; ++round) {
    run_sql(w, "BEGIN IMMEDIATE");
    // ~3 MiB: more than the 1 MiB gathering buffer, and index pages touched again and again.
    run_sql(w, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 4000) "
            "INSERT INTO t(v, s) SELECT randomblob(700), hex(randomblob(6)) FROM n");
    run_sql(w, "UPDATE t SET s = hex(randomblob(6)) WHERE k % 5 = 0");
    run_sql(w, "COMMIT");
    rows += 4000;
    cr_assert_eq(scalar(r, "SELECT count(*) FROM t"), rows);
    cr_assert_eq(scalar(r, "SELECT count(*) FROM t INDEXED BY t_s WHERE s >= ''"), rows);
  }
  // A rolled-back transaction leaves nothing a reader sees.
  run_sql(w, "BEGIN IMMEDIATE");
  run_sql(w, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000) "
          "INSERT INTO t(v, s) SELECT randomblob(700), 'gone' FROM n");
  run_sql(w, "ROLLBACK");
  run_sql(w, "INSERT INTO t(v, s) VALUES (x'01', 'after')");
  cr_assert_eq(scalar(r, "SELECT count(*) FROM t"), rows + 1);
  cr_assert_eq(scalar(r, "SELECT count(*) FROM t WHERE s = 'gone'"), 0);
  cr_assert_eq(text(r, "PRAGMA integrity_check"), "ok");
  sqlite3_close(r);
  // The WAL as written recovers on its own (a new process: the wal-index rebuilt from
  // the file, checksums and all).
  sqlite3_close(w);
  sqlite3* again = open_db(t.path, nullptr);
  cr_assert_eq(scalar(again, "SELECT count(*) FROM t"), rows + 1);
  cr_assert_eq(text(again, "PRAGMA integrity_check"), "ok");
  sqlite3_close(again);
}

// The store's writer with the option on: appends, a reopen, and a reader all agree.
Test(wal_vfs, store_writer_with_gathered_wal) {
  TempDb t;
  {
    auto s = Store::open(t.path, OpenMode::writer, {.combine_wal_writes = true});
    cr_assert(s.ok(), "%s", s.ok() ? "" : s.error().message.c_str());
    sqlite3* r = open_db(t.path, nullptr);
    for (int i = 0; i < 50; ++i) {
      fill(*s.value(), 1, 1000 + i);
      cr_assert_eq(scalar(r, "SELECT max(seq) FROM events"), i + 1);
    }
    cr_assert(s.value()->reopen().ok());
    fill(*s.value(), 1, 2000);
    sqlite3_close(r);
  }
  auto v = Store::open(t.path, OpenMode::readonly);
  cr_assert(v.ok());
  auto rep = v.value()->verify();
  cr_assert(rep.ok() && rep.value().valid, "verify: %s", rep.ok() ? rep.value().reason.c_str() : rep.error().message.c_str());
  cr_assert_eq(rep.value().checked, 51u);
}
