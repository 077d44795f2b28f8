#include "powercut.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

namespace cairn::crash {

const char* variant_name(CutVariant v) {
  switch (v) {
    case CutVariant::drop_unsynced:
      return "drop";
    case CutVariant::tear_last:
      return "tear";
    case CutVariant::random_subset:
      return "subset";
    case CutVariant::sector_subset:
      return "sectors";
  }
  return "?";
}

void PowerCut::apply(std::string& img, const Op& op, size_t max_len) {
  if (op.kind == OpKind::truncate) {
    img.resize(static_cast<size_t>(op.offset));
    return;
  }
  size_t off = static_cast<size_t>(op.offset);
  size_t n = std::min(op.data.size(), max_len);
  if (n == 0) return;
  if (img.size() < off + n) img.resize(off + n, '\0');
  img.replace(off, n, op.data, 0, n);
}

// Sector boundaries are those of the file (offset multiples of 512), as a disk sees them.
void PowerCut::apply_sectors(std::string& img, const Op& op, std::mt19937_64& rng) {
  if (op.kind == OpKind::truncate) {
    if (rng() & 1) apply(img, op, SIZE_MAX);
    return;
  }
  size_t off = static_cast<size_t>(op.offset), end = off + op.data.size();
  for (size_t s = off; s < end;) {
    size_t next = std::min(end, (s / 512 + 1) * 512);
    if (rng() & 1) {
      if (img.size() < next) img.resize(next, '\0');
      img.replace(s, next - s, op.data, s - off, next - s);
    }
    s = next;
  }
}

void PowerCut::advance_to(size_t k) {
  for (; next_ < k && next_ < ops_.size(); ++next_) {
    const Op& op = ops_[next_];
    if (op.file < 0 || op.file >= kFiles) continue;
    FileState& f = files_[op.file];
    switch (op.kind) {
      case OpKind::write:
      case OpKind::truncate:
        f.pending.push_back(&op);
        f.exists = true;
        break;
      case OpKind::sync:
        for (const Op* p : f.pending) apply(f.durable, *p, SIZE_MAX);
        f.pending.clear();
        break;
      case OpKind::sync_failed:
        f.pending.clear();  // marked clean by the kernel, never written: lost for good
        break;
      case OpKind::remove:
        f.durable.clear();
        f.pending.clear();
        f.exists = false;
        break;
    }
  }
}

void PowerCut::materialize(const std::string& dir, CutVariant v, uint64_t seed) const {
  const char* names[kFiles] = {"/cairn.db", "/cairn.db-wal", "/cairn.db.key"};
  std::mt19937_64 rng(seed);
  unlink((dir + "/cairn.db-shm").c_str());
  for (int i = 0; i < kFiles; ++i) {
    const FileState& f = files_[i];
    std::string img = f.durable;
    for (size_t p = 0; p < f.pending.size(); ++p) {
      const Op& op = *f.pending[p];
      switch (v) {
        case CutVariant::drop_unsynced:
          break;
        case CutVariant::tear_last:
          if (p + 1 < f.pending.size()) {
            apply(img, op, SIZE_MAX);
          } else {
            size_t sectors = (op.data.size() + 511) / 512;
            apply(img, op, (sectors / 2) * 512);  // the first half of the sectors made it
          }
          break;
        case CutVariant::random_subset:
          if (rng() & 1) apply(img, op, SIZE_MAX);
          break;
        case CutVariant::sector_subset:
          apply_sectors(img, op, rng);
          break;
      }
    }
    std::string path = dir + names[i];
    unlink(path.c_str());
    if (!f.exists && img.empty()) continue;
    std::ofstream(path, std::ios::binary)
        .write(img.data(), static_cast<std::streamsize>(img.size()));
    if (i == kFileKey) chmod(path.c_str(), 0600);
  }
}

}  // namespace cairn::crash
