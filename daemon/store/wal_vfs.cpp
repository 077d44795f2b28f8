#include "wal_vfs.hpp"

#include <sqlite3.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

namespace cairn::store {
namespace {

// A commit of a few pages is ~30 KiB; a group commit of thousands of events is megabytes
// and goes out in pieces of at most this size (still ~30 frames per write, not 2 writes
// per frame). The unix VFS masks every write's length to 17 bits (it never expects more
// than a page, seekAndWriteFd: nBuf &= 0x1ffff) and reports a longer one as SQLITE_FULL,
// so a piece must stay under 128 KiB.
constexpr size_t kMaxBuffered = 120 * 1024;
constexpr int kFrameHeaderBytes = 24;  // a WAL frame's header, written on its own by SQLite

sqlite3_vfs* g_base = nullptr;  // the VFS wrapped: the default when we registered
sqlite3_vfs g_vfs;

// SQLite allocates szOsFile bytes for each open file: this struct, then the wrapped
// VFS's file right after it. The buffer is malloc'd and belongs to this file until xClose.
struct File {
  sqlite3_file base;
  sqlite3_file* real;
  bool wal;              // only -wal files are gathered
  bool commit_pending;   // the last write was a commit frame's header: its page ends the commit
  char* buf;
  size_t len;
  size_t cap;
  sqlite3_int64 off;     // file offset of buf[0]
};

File* as_file(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
sqlite3_file* real_of(sqlite3_file* f) { return as_file(f)->real; }

// Writes what is gathered, in one call. On failure the bytes are dropped and the wrapped
// VFS's error is returned: SQLite fails the transaction, and what it wrote past the last
// commit is ignored by every reader (the wal-index never pointed at it).
int flush(File* p) {
  if (p->len == 0) return SQLITE_OK;
  int rc = p->real->pMethods->xWrite(p->real, p->buf, static_cast<int>(p->len), p->off);
  p->len = 0;
  return rc;
}

bool reserve(File* p, size_t need) {
  if (need <= p->cap) return true;
  size_t cap = p->cap == 0 ? 64 * 1024 : p->cap;
  while (cap < need) cap *= 2;
  void* nb = std::realloc(p->buf, cap);
  if (nb == nullptr) return false;
  p->buf = static_cast<char*>(nb);
  p->cap = cap;
  return true;
}

int x_close(sqlite3_file* f) {
  File* p = as_file(f);
  int rc = flush(p);
  int rc2 = p->real->pMethods->xClose(p->real);
  std::free(p->buf);
  p->buf = nullptr;
  p->cap = 0;
  return rc != SQLITE_OK ? rc : rc2;
}

int x_read(sqlite3_file* f, void* data, int n, sqlite3_int64 off) {
  File* p = as_file(f);
  if (int rc = flush(p); rc != SQLITE_OK) return rc;
  return p->real->pMethods->xRead(p->real, data, n, off);
}

int x_write(sqlite3_file* f, const void* data, int n, sqlite3_int64 off) {
  File* p = as_file(f);
  if (!p->wal || n <= 0 || static_cast<size_t>(n) > kMaxBuffered / 2) {
    if (int rc = flush(p); rc != SQLITE_OK) return rc;
    return p->real->pMethods->xWrite(p->real, data, n, off);
  }
  const auto* bytes = static_cast<const unsigned char*>(data);
  auto un = static_cast<size_t>(n);
  if (p->len > 0 && off >= p->off && off + n <= p->off + static_cast<sqlite3_int64>(p->len)) {
    // A frame rewritten inside the gathered range (SQLite overwrites a page written
    // earlier in the same transaction): patch the buffer.
    std::memcpy(p->buf + (off - p->off), bytes, un);
  } else {
    if (p->len > 0 && off != p->off + static_cast<sqlite3_int64>(p->len)) {
      if (int rc = flush(p); rc != SQLITE_OK) return rc;
    }
    if (p->len + un > kMaxBuffered && p->len > 0) {
      if (int rc = flush(p); rc != SQLITE_OK) return rc;
    }
    if (!reserve(p, p->len + un)) {
      // No memory for the buffer: write through (correct, just not gathered).
      if (int rc = flush(p); rc != SQLITE_OK) return rc;
      return p->real->pMethods->xWrite(p->real, data, n, off);
    }
    if (p->len == 0) p->off = off;
    std::memcpy(p->buf + p->len, bytes, un);
    p->len += un;
  }
  if (p->commit_pending) {
    // The page after a commit frame's header: the transaction's last frame.
    p->commit_pending = false;
    return flush(p);
  }
  // A frame header holds the page number, then the database size in pages after a commit
  // (zero in every other frame), both big-endian.
  if (n == kFrameHeaderBytes && (bytes[4] | bytes[5] | bytes[6] | bytes[7]) != 0) p->commit_pending = true;
  return SQLITE_OK;
}

int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  File* p = as_file(f);
  if (int rc = flush(p); rc != SQLITE_OK) return rc;
  return p->real->pMethods->xTruncate(p->real, size);
}

int x_sync(sqlite3_file* f, int flags) {
  File* p = as_file(f);
  if (int rc = flush(p); rc != SQLITE_OK) return rc;
  return p->real->pMethods->xSync(p->real, flags);
}

int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  File* p = as_file(f);
  if (int rc = flush(p); rc != SQLITE_OK) return rc;
  return p->real->pMethods->xFileSize(p->real, size);
}

int x_lock(sqlite3_file* f, int l) { return real_of(f)->pMethods->xLock(real_of(f), l); }
int x_unlock(sqlite3_file* f, int l) { return real_of(f)->pMethods->xUnlock(real_of(f), l); }
int x_check_reserved(sqlite3_file* f, int* out) {
  return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
  return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
int x_sector_size(sqlite3_file* f) { return real_of(f)->pMethods->xSectorSize(real_of(f)); }
int x_device_characteristics(sqlite3_file* f) {
  return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
int x_shm_map(sqlite3_file* f, int pg, int pgsz, int extend, void volatile** out) {
  sqlite3_file* r = real_of(f);
  if (r->pMethods->iVersion < 2 || r->pMethods->xShmMap == nullptr) return SQLITE_IOERR_SHMMAP;
  return r->pMethods->xShmMap(r, pg, pgsz, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  sqlite3_file* r = real_of(f);
  if (r->pMethods->iVersion < 2 || r->pMethods->xShmLock == nullptr) return SQLITE_IOERR_SHMLOCK;
  return r->pMethods->xShmLock(r, offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) {
  sqlite3_file* r = real_of(f);
  if (r->pMethods->iVersion >= 2 && r->pMethods->xShmBarrier != nullptr) r->pMethods->xShmBarrier(r);
}
int x_shm_unmap(sqlite3_file* f, int del) {
  sqlite3_file* r = real_of(f);
  if (r->pMethods->iVersion < 2 || r->pMethods->xShmUnmap == nullptr) return SQLITE_OK;
  return r->pMethods->xShmUnmap(r, del);
}
int x_fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** out) {
  sqlite3_file* r = real_of(f);
  if (as_file(f)->wal || r->pMethods->iVersion < 3 || r->pMethods->xFetch == nullptr) {
    *out = nullptr;  // "no mapping": SQLite reads with xRead instead
    return SQLITE_OK;
  }
  return r->pMethods->xFetch(r, off, n, out);
}
int x_unfetch(sqlite3_file* f, sqlite3_int64 off, void* ptr) {
  sqlite3_file* r = real_of(f);
  if (r->pMethods->iVersion < 3 || r->pMethods->xUnfetch == nullptr) return SQLITE_OK;
  return r->pMethods->xUnfetch(r, off, ptr);
}

const sqlite3_io_methods kMethods = {
    3,           x_close,     x_read,      x_write,     x_truncate,        x_sync,
    x_file_size, x_lock,      x_unlock,    x_check_reserved, x_file_control, x_sector_size,
    x_device_characteristics, x_shm_map,   x_shm_lock,  x_shm_barrier,     x_shm_unmap,
    x_fetch,     x_unfetch,
};

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  File* p = as_file(f);
  std::memset(p, 0, sizeof(File));
  p->real = reinterpret_cast<sqlite3_file*>(p + 1);
  p->wal = (flags & SQLITE_OPEN_WAL) != 0;
  int rc = g_base->xOpen(g_base, name, p->real, flags, out_flags);
  // SQLite calls xClose whenever pMethods is set, even after a failed open (it then
  // closes the wrapped file through us).
  p->base.pMethods = p->real->pMethods != nullptr ? &kMethods : nullptr;
  return rc;
}

}  // namespace

const char* combining_wal_vfs() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    g_base = sqlite3_vfs_find(nullptr);
    if (g_base == nullptr) return;
    // Everything but xOpen (and the size of a file) is the wrapped VFS's own: its
    // other methods take the VFS pointer but read nothing from it but pAppData, copied.
    g_vfs = *g_base;
    g_vfs.pNext = nullptr;
    g_vfs.szOsFile = static_cast<int>(sizeof(File)) + g_base->szOsFile;
    g_vfs.zName = "cairn-wal";
    g_vfs.xOpen = x_open;
    ok = sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK;
  });
  return ok ? g_vfs.zName : nullptr;
}

}  // namespace cairn::store
