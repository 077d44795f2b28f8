// wal_vfs.hpp — a SQLite VFS that hands each commit's WAL frames to the kernel in one write.
//
// SQLite writes a WAL frame as two pwrite calls (its 24-byte header, then the page), so
// a commit of 7 pages is 14 system calls before the fsync, and at one event per commit
// those calls were half of cairnd's (strace: 14.4 pwrite of 25 syscalls per C=1 event).
// This VFS wraps the default one and, for -wal files only, gathers consecutive writes in
// a buffer that goes out as ONE pwrite:
//   - right after the page of a commit frame (the frame header's "database size" field is
//     non-zero only there), so a transaction's frames are in the file before SQLite
//     publishes them in the wal-index, whatever `synchronous` is;
//   - before anything that looks at the file: xSync, xRead, xFileSize, xTruncate, xClose,
//     and before a write that is not contiguous with the buffer (a rewritten frame);
//   - when the buffer reaches kMaxBuffered.
// What it does not change: the bytes and offsets written, the order of write and fsync
// (an fsync always follows the writes it must cover), and the errors: a failed gathered
// write returns the wrapped VFS's own code (SQLITE_FULL for ENOSPC, SQLITE_IOERR_WRITE)
// from the call that flushed, and the transaction fails as it would have.
// The database file, -shm and temporary files are passed through untouched.
//
// Used by the daemon's writer connection only (Store::open's OpenOptions): readers and the
// checkpointer never write the WAL, and the bench's naive writer keeps SQLite's own I/O.
#pragma once

namespace cairn::store {

// The registered VFS's name, registering it on first use over the VFS that is the default
// at that moment (thread-safe). nullptr when registration failed: open with the default.
const char* combining_wal_vfs();

}  // namespace cairn::store
