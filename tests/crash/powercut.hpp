// powercut.hpp — rebuild the database files as a power cut could have left them.
//
// Model: a file's writes become durable at that file's next xSync; at a cut, writes
// after the last sync are lost, torn (half their 512-byte sectors), or partly applied,
// in any combination. Everything synced before the cut survives.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "oplog.hpp"

namespace cairn::crash {

enum class CutVariant { drop_unsynced, tear_last, random_subset };
const char* variant_name(CutVariant v);

class PowerCut {
 public:
  explicit PowerCut(std::vector<Op> ops) : ops_(std::move(ops)) {}
  size_t size() const { return ops_.size(); }
  const Op& op(size_t k) const { return ops_[k]; }
  // Advances the durable state to just before op k (k never decreases between calls).
  void advance_to(size_t k);
  // Writes <dir>/cairn.db and <dir>/cairn.db-wal as the cut at the current point left them.
  void materialize(const std::string& dir, CutVariant v, std::mt19937& rng) const;

 private:
  struct FileState {
    std::string durable;
    bool exists = false;
    std::vector<const Op*> pending;  // writes/truncates since the last sync
  };
  static void apply(std::string& img, const Op& op, size_t max_len);
  std::vector<Op> ops_;
  size_t next_ = 0;
  FileState files_[2];
};

}  // namespace cairn::crash
