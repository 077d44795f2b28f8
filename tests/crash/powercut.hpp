// powercut.hpp — rebuild the database files as a power cut could have left them.
//
// Model: a file's writes and truncations become durable at that file's next xSync (the
// op log records the sync before SQLite performs it, see vfs_shim.cpp); at a cut, what
// came after a file's last sync may be lost or half done in any combination. The ways
// of losing it that the sweep tries:
//   drop     every unsynced write and truncation of both files is lost
//   tear     unsynced ops land in order, but the last one only for the first half of its
//            512-byte sectors (the disk stopped mid-write)
//   subset   each unsynced op lands whole or not at all (the disk reordered them)
//   sectors  each 512-byte sector of each unsynced write lands or not, independently
// Everything synced before the cut survives. Writes pending at a sync the shim failed
// on purpose never survive (see OpKind::sync_failed), whatever comes later. Deleting the -wal is taken as durable at
// once (SQLite deletes it only when the database already holds all of it, so an
// undeleted copy would add nothing).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "oplog.hpp"

namespace cairn::crash {

enum class CutVariant { drop_unsynced, tear_last, random_subset, sector_subset };
inline constexpr CutVariant kAllVariants[] = {CutVariant::drop_unsynced, CutVariant::tear_last,
                                              CutVariant::random_subset, CutVariant::sector_subset};
const char* variant_name(CutVariant v);

class PowerCut {
 public:
  explicit PowerCut(std::vector<Op> ops) : ops_(std::move(ops)) {}
  size_t size() const { return ops_.size(); }
  const Op& op(size_t k) const { return ops_[k]; }
  // Advances the durable state to just before op k (k never decreases between calls).
  void advance_to(size_t k);
  // Unsynced ops (all files) at the current point.
  size_t pending() const {
    return files_[0].pending.size() + files_[1].pending.size() + files_[2].pending.size();
  }
  // Writes <dir>/cairn.db, <dir>/cairn.db-wal and <dir>/cairn.db.key as the cut at the
  // current point left them (and removes <dir>/cairn.db-shm). `seed` picks which ops/sectors land, so one
  // (op log, cut point, variant, seed) always gives the same files.
  void materialize(const std::string& dir, CutVariant v, uint64_t seed) const;

 private:
  struct FileState {
    std::string durable;
    bool exists = false;
    std::vector<const Op*> pending;  // writes/truncates since the last sync
  };
  static void apply(std::string& img, const Op& op, size_t max_len);
  static void apply_sectors(std::string& img, const Op& op, std::mt19937_64& rng);
  std::vector<Op> ops_;
  size_t next_ = 0;
  FileState files_[kFiles];
};

}  // namespace cairn::crash
