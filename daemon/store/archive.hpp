// archive.hpp — sealed archive segments: records moved out of the live database.
//
// Glossary (PROTOCOL.md §11):
//   segment   one file DB.archive/<first>-<last>.cairnar holding records first..last
//             (20-digit seqs) as their canonical bodies, zstd-compressed; its last record
//             is a seal, so every segment carries the signed root of everything up to it
//   horizon   meta 'archived_through': records 1..horizon live in segments (or were
//             removed), records above it in the events table
//   removed   meta 'removed_through': records 1..removed are gone for good, declared by
//             a cairn.retention.removed record in the log (meta 'removal_seq' names it)
//
// A segment is written to a temporary name, fsynced, renamed, and its directory
// fsynced before the rows leave the database, so a crash at any point leaves either
// the rows, or the rows and a complete segment, never neither. Files are 0600 and the
// directory 0700 whatever the umask; nothing here follows a symlink.
//
// Nothing here logs; errors are strings that name the file and what is wrong with it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../../protocol/result.hpp"
#include "../../seal/hash.hpp"

namespace cairn::store {

inline constexpr std::string_view kArchiveSuffix = ".cairnar";
inline constexpr std::string_view kRemovalType = "cairn.retention.removed";

// DB.archive: the segments of the database at `db_path`.
std::string archive_dir(const std::string& db_path);

struct SegmentFile {
  uint64_t first = 0, last = 0;
  std::string path;
};

// The segments in `dir` by first seq (an absent directory: none). Temporary files of an
// interrupted run and other names are skipped; a name that looks like a segment but does
// not parse is an error.
Result<std::vector<SegmentFile>, std::string> list_segments(const std::string& dir);

// The decoded contents of one segment.
struct Segment {
  uint64_t first = 0, last = 0;
  int64_t min_received = 0, max_received = 0;  // header copy: lets a time query skip it
  uint64_t file_bytes = 0;                      // size on disk
  seal::Hash sha256{};                          // of the whole file
  std::string raw;                              // the bodies, each after its u32le length
  std::vector<uint32_t> offsets;                // where body i starts in raw (i = seq - first)
  std::string_view body(uint64_t seq) const;
  uint64_t count() const { return offsets.size(); }
};

// Reads and checks one segment: header fields, the payload checksum, the decompressed
// size and the number of records. It does not check the records themselves (verify
// recomputes their leaves and the tree).
Result<Segment, std::string> read_segment(const std::string& path);
// Only the header (first, last, received range): what a time query needs to skip a file.
Result<Segment, std::string> read_segment_header(const std::string& path);

struct WrittenSegment {
  std::string path;
  uint64_t raw_bytes = 0, file_bytes = 0;
  seal::Hash sha256{};
};

// Writes bodies[i] as record first+i into dir (created 0700 if missing), durably (see
// the file comment). An existing file of the same name (from an interrupted run) is
// replaced. `level` is zstd's compression level.
Result<WrittenSegment, std::string> write_segment(const std::string& dir, uint64_t first,
                                                  const std::vector<std::string>& bodies,
                                                  int64_t min_received, int64_t max_received, int level);

// Removes a segment for good and fsyncs the directory.
Result<Ok, std::string> remove_segment(const std::string& path);

// Bytes of every segment in dir.
uint64_t archive_bytes(const std::string& dir);

}  // namespace cairn::store
