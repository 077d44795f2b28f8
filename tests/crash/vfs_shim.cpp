// vfs_shim.cpp — a SQLite VFS over the default "unix" one, for crash tests only.
//
// Linked into the test build `cairnd-crashsim` (never into cairnd). At process start,
// if either variable below is set, it registers itself as the default VFS:
//
//   CAIRN_VFS_OPLOG=/path   append every write, truncate, sync and delete of the main
//                           database and its -wal to an op log, BEFORE doing it, so the
//                           log is never behind the files. The power-cut replayer
//                           (powercut.cpp) rebuilds the files as a power cut at any op
//                           could have left them.
//   CAIRN_VFS_FAULT=kind@N[,kind@N]   fail the N-th operation of that kind:
//                           fsync_eio     N-th xSync returns SQLITE_IOERR_FSYNC, syncs nothing
//                                         (logged as sync_failed: the writes it would
//                                         have covered are lost to a power cut for good)
//                           write_eio     N-th xWrite returns SQLITE_IOERR_WRITE, writes nothing
//                           write_enospc  N-th xWrite returns SQLITE_FULL, writes nothing
//                           db_write_eio  N-th xWrite to the main database file (only
//                                         checkpoints and schema set-up write there)
//                           db_fsync_eio  N-th xSync of the main database file
//                           kind@N-M fails the N-th to the M-th; a `+` after N
//                           (fsync_eio@5+) fails every one from N on.
//                           Counts are per process (fsync_eio, write_eio and write_enospc
//                           leave out cairnd's checkpoint thread: see on_checkpoint_thread)
//                           and cover the main database and -wal files only.
//
// Log order is real order: a write or truncation holds its file's lock shared from
// logging it to finishing it, a sync holds it exclusively from logging to finishing. So
// every write logged before a sync record had finished before that sync began (it is
// covered), and every write logged after it began after the sync ended (it is not).
// Without this a checkpointer's fsync of the -wal, racing the writer thread's frame
// writes, could be logged as covering a frame that was in fact written after it.
//
// The -shm file is not logged: it is a cache that SQLite rebuilds from the WAL.
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "oplog.hpp"

namespace {

sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;
int g_log_fd = -1;
std::mutex g_log_mu;

struct Fault {
  int64_t at = 0;     // first op that fails; 0 = off
  int64_t until = 0;  // last op that fails (INT64_MAX: every one from `at` on)
};
Fault g_fsync_eio, g_write_eio, g_write_enospc, g_db_write_eio, g_db_fsync_eio;
std::atomic<int64_t> g_syncs{0}, g_writes{0}, g_db_syncs{0}, g_db_writes{0};
std::shared_mutex g_file_mu[2];  // per file id: orders log records as the I/O happened

struct ShimFile {
  sqlite3_file base;
  sqlite3_file* real;  // lives right after this struct
  int file_id;         // cairn::crash::kFileDb, kFileWal, or -1 (not logged)
};

// Says so on stderr (cairnd's log in the tests) the first time a fault fires, so a test
// can tell that its fault was really injected.
bool hits(const Fault& f, int64_t n, const char* kind) {
  bool hit = f.at != 0 && n >= f.at && n <= f.until;
  if (hit && n == f.at)
    std::fprintf(stderr, "cairn-crash-shim: injecting %s at op %lld\n", kind,
                 static_cast<long long>(n));
  return hit;
}

void log_op(cairn::crash::OpKind kind, int file_id, int64_t offset, const void* data, int64_t len) {
  if (g_log_fd < 0 || file_id < 0) return;
  std::string rec = cairn::crash::encode_op(kind, file_id, offset, data, len);
  std::lock_guard lk(g_log_mu);
  size_t off = 0;
  while (off < rec.size()) {
    ssize_t n = ::write(g_log_fd, rec.data() + off, rec.size() - off);
    if (n <= 0) std::abort();  // a crash test with a broken log proves nothing
    off += static_cast<size_t>(n);
  }
}

}  // namespace

// cairnd's key file writes and syncs (daemon/keys.cpp calls this hook when it is linked
// in), logged in the same order as the database's so a power cut can tear them too.
extern "C" void cairn_keyfile_io(int op, int64_t offset, const void* data, size_t len) {
  log_op(op == 1 ? cairn::crash::OpKind::write : cairn::crash::OpKind::sync, cairn::crash::kFileKey, offset, data,
         static_cast<int64_t>(len));
}

namespace {

sqlite3_file* R(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f)->real; }
int id_of(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f)->file_id; }

int x_close(sqlite3_file* f) { return R(f)->pMethods->xClose(R(f)); }
int x_read(sqlite3_file* f, void* b, int n, sqlite3_int64 o) { return R(f)->pMethods->xRead(R(f), b, n, o); }
bool on_checkpoint_thread();
int x_write(sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
  const int id = id_of(f);
  if (id < 0) return R(f)->pMethods->xWrite(R(f), b, n, o);
  // Like fsync_eio, write_eio/write_enospc leave out the checkpoint thread, whose
  // page-by-page copies now outnumber the writer's writes (it gathers a commit's frames
  // into one, daemon/store/wal_vfs.hpp): N names the same commit in every run.
  int64_t k = on_checkpoint_thread() ? 0 : ++g_writes;
  if (k > 0 && hits(g_write_eio, k, "write_eio")) return SQLITE_IOERR_WRITE;
  if (k > 0 && hits(g_write_enospc, k, "write_enospc")) return SQLITE_FULL;
  if (id == cairn::crash::kFileDb && hits(g_db_write_eio, ++g_db_writes, "db_write_eio"))
    return SQLITE_IOERR_WRITE;
  std::shared_lock lk(g_file_mu[id]);
  log_op(cairn::crash::OpKind::write, id, o, b, n);
  return R(f)->pMethods->xWrite(R(f), b, n, o);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  const int id = id_of(f);
  if (id < 0) return R(f)->pMethods->xTruncate(R(f), size);
  std::shared_lock lk(g_file_mu[id]);
  log_op(cairn::crash::OpKind::truncate, id, size, nullptr, 0);
  return R(f)->pMethods->xTruncate(R(f), size);
}
// cairnd's background checkpoint thread ("cairnd-ckpt") syncs when the load says so,
// not at a fixed point: fsync_eio@N counts only the other threads' syncs, so N names the
// same commit in every run (a checkpoint's fsync taking the N-th made a test that expects
// a client to see storage_failed fail now and then). db_fsync_eio counts every thread.
bool on_checkpoint_thread() {
  thread_local int known = -1;
  if (known < 0) {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    known = std::strcmp(name, "cairnd-ckpt") == 0 ? 1 : 0;
  }
  return known == 1;
}

int x_sync(sqlite3_file* f, int flags) {
  const int id = id_of(f);
  if (id < 0) return R(f)->pMethods->xSync(R(f), flags);
  int64_t k = on_checkpoint_thread() ? 0 : ++g_syncs;
  if ((k > 0 && hits(g_fsync_eio, k, "fsync_eio")) ||
      (id == cairn::crash::kFileDb && hits(g_db_fsync_eio, ++g_db_syncs, "db_fsync_eio"))) {
    std::unique_lock lk(g_file_mu[id]);
    log_op(cairn::crash::OpKind::sync_failed, id, 0, nullptr, 0);
    return SQLITE_IOERR_FSYNC;
  }
  std::unique_lock lk(g_file_mu[id]);
  log_op(cairn::crash::OpKind::sync, id, 0, nullptr, 0);
  return R(f)->pMethods->xSync(R(f), flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* s) { return R(f)->pMethods->xFileSize(R(f), s); }
int x_lock(sqlite3_file* f, int l) { return R(f)->pMethods->xLock(R(f), l); }
int x_unlock(sqlite3_file* f, int l) { return R(f)->pMethods->xUnlock(R(f), l); }
int x_check_reserved(sqlite3_file* f, int* o) { return R(f)->pMethods->xCheckReservedLock(R(f), o); }
int x_file_control(sqlite3_file* f, int op, void* a) { return R(f)->pMethods->xFileControl(R(f), op, a); }
int x_sector_size(sqlite3_file* f) { return R(f)->pMethods->xSectorSize(R(f)); }
int x_device_chars(sqlite3_file* f) { return R(f)->pMethods->xDeviceCharacteristics(R(f)); }
int x_shm_map(sqlite3_file* f, int pg, int sz, int ext, void volatile** p) {
  return R(f)->pMethods->xShmMap(R(f), pg, sz, ext, p);
}
int x_shm_lock(sqlite3_file* f, int off, int n, int fl) { return R(f)->pMethods->xShmLock(R(f), off, n, fl); }
void x_shm_barrier(sqlite3_file* f) { R(f)->pMethods->xShmBarrier(R(f)); }
int x_shm_unmap(sqlite3_file* f, int del) { return R(f)->pMethods->xShmUnmap(R(f), del); }
int x_fetch(sqlite3_file* f, sqlite3_int64 o, int n, void** p) { return R(f)->pMethods->xFetch(R(f), o, n, p); }
int x_unfetch(sqlite3_file* f, sqlite3_int64 o, void* p) { return R(f)->pMethods->xUnfetch(R(f), o, p); }

const sqlite3_io_methods kMethods = {
    3,           x_close,          x_read,         x_write,         x_truncate,   x_sync,
    x_file_size, x_lock,           x_unlock,       x_check_reserved, x_file_control, x_sector_size,
    x_device_chars, x_shm_map,     x_shm_lock,     x_shm_barrier,   x_shm_unmap,  x_fetch,
    x_unfetch,
};

int v_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out) {
  auto* s = reinterpret_cast<ShimFile*>(f);
  s->real = reinterpret_cast<sqlite3_file*>(s + 1);
  s->file_id = (flags & SQLITE_OPEN_MAIN_DB) ? cairn::crash::kFileDb
               : (flags & SQLITE_OPEN_WAL)   ? cairn::crash::kFileWal
                                             : -1;
  int rc = g_real->xOpen(g_real, name, s->real, flags, out);
  // SQLite calls xClose only if pMethods is set, so leave it null on failure.
  s->base.pMethods = (rc == SQLITE_OK && s->real->pMethods) ? &kMethods : nullptr;
  return rc;
}

int v_delete(sqlite3_vfs*, const char* name, int sync_dir) {
  size_t n = std::strlen(name);
  if (n > 4 && std::strcmp(name + n - 4, "-wal") == 0)
    log_op(cairn::crash::OpKind::remove, cairn::crash::kFileWal, 0, nullptr, 0);
  return g_real->xDelete(g_real, name, sync_dir);
}

// Parses "kind@N[-M|+][,...]". An unknown kind or a bad count aborts: a fault
// test whose fault silently never fires would prove nothing.
void parse_faults(const char* spec) {
  struct Kind {
    const char* name;
    Fault* fault;
  } kinds[] = {{"fsync_eio", &g_fsync_eio},
               {"write_eio", &g_write_eio},
               {"write_enospc", &g_write_enospc},
               {"db_write_eio", &g_db_write_eio},
               {"db_fsync_eio", &g_db_fsync_eio}};
  std::string all(spec);
  size_t pos = 0;
  while (pos <= all.size()) {
    size_t comma = all.find(',', pos);
    std::string item =
        all.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? all.size() + 1 : comma + 1;
    if (item.empty()) continue;
    size_t at = item.find('@');
    Fault* target = nullptr;
    for (auto& k : kinds)
      if (at != std::string::npos && item.compare(0, at, k.name) == 0 && std::strlen(k.name) == at)
        target = k.fault;
    char* end = nullptr;
    long long n = at == std::string::npos ? 0 : std::strtoll(item.c_str() + at + 1, &end, 10);
    long long last = n;
    if (end != nullptr && *end == '-') last = std::strtoll(end + 1, &end, 10);
    if (target == nullptr || n <= 0 || last < n || end == nullptr ||
        (*end != '\0' && std::strcmp(end, "+") != 0)) {
      std::fprintf(stderr, "CAIRN_VFS_FAULT: cannot parse '%s'\n", item.c_str());
      std::abort();
    }
    target->at = n;
    target->until = *end == '+' ? INT64_MAX : last;
  }
}

__attribute__((constructor)) void install() {
  const char* log = std::getenv("CAIRN_VFS_OPLOG");
  const char* fault = std::getenv("CAIRN_VFS_FAULT");
  if (log == nullptr && fault == nullptr) return;
  if (log != nullptr) {
    g_log_fd = ::open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (g_log_fd < 0) std::abort();
  }
  if (fault != nullptr) {
    parse_faults(fault);
  }
  sqlite3_initialize();
  g_real = sqlite3_vfs_find(nullptr);
  g_vfs = *g_real;
  g_vfs.zName = "cairn-crash-shim";
  g_vfs.szOsFile = static_cast<int>(sizeof(ShimFile)) + g_real->szOsFile;
  g_vfs.xOpen = v_open;
  g_vfs.xDelete = v_delete;
  g_vfs.pAppData = nullptr;
  sqlite3_vfs_register(&g_vfs, 1);
}

}  // namespace
