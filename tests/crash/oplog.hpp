// oplog.hpp — the op log written by vfs_shim and read by the power-cut replayer.
//
// Record: u8 kind, u8 file, i64 offset, u32 length, then `length` bytes of data
// (little-endian, this machine only: the log never leaves the test).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace cairn::crash {

// sync_failed: an fsync the shim failed on purpose (CAIRN_VFS_FAULT). As Linux does after
// a writeback error, the writes it would have covered are taken as never reaching the
// disk, although the process goes on reading them from the page cache ("fsyncgate").
enum class OpKind : uint8_t { write = 1, sync = 2, truncate = 3, remove = 4, sync_failed = 5 };
inline constexpr int kFileDb = 0;
inline constexpr int kFileWal = 1;
inline constexpr int kFileKey = 2;  // cairnd's key file (logged through cairn_keyfile_io)
inline constexpr int kFiles = 3;

struct Op {
  OpKind kind;
  int file;
  int64_t offset;  // write: where; truncate: new size
  std::string data;
  uint64_t log_offset;  // where this record starts in the log
};

inline std::string encode_op(OpKind kind, int file, int64_t offset, const void* data, int64_t len) {
  std::string r(14, '\0');
  r[0] = static_cast<char>(kind);
  r[1] = static_cast<char>(file);
  std::memcpy(&r[2], &offset, 8);
  uint32_t n = static_cast<uint32_t>(len);
  std::memcpy(&r[10], &n, 4);
  if (len > 0) r.append(static_cast<const char*>(data), static_cast<size_t>(len));
  return r;
}

// Parses a whole log; a torn last record (the writer was killed mid-append) is dropped.
inline std::vector<Op> parse_oplog(const std::string& log) {
  std::vector<Op> ops;
  size_t i = 0;
  while (i + 14 <= log.size()) {
    Op op;
    op.kind = static_cast<OpKind>(log[i]);
    op.file = log[i + 1];
    std::memcpy(&op.offset, &log[i + 2], 8);
    uint32_t n;
    std::memcpy(&n, &log[i + 10], 4);
    if (i + 14 + n > log.size()) break;
    op.data = log.substr(i + 14, n);
    op.log_offset = i;
    ops.push_back(std::move(op));
    i += 14 + n;
  }
  return ops;
}

}  // namespace cairn::crash
