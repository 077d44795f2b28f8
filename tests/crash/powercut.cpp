#include "powercut.hpp"

#include <fstream>
#include <unistd.h>

namespace cairn::crash {

const char* variant_name(CutVariant v) {
  switch (v) {
    case CutVariant::drop_unsynced: return "drop";
    case CutVariant::tear_last: return "tear";
    case CutVariant::random_subset: return "subset";
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
  if (img.size() < off + n) img.resize(off + n, '\0');
  img.replace(off, n, op.data, 0, n);
}

void PowerCut::advance_to(size_t k) {
  for (; next_ < k && next_ < ops_.size(); ++next_) {
    const Op& op = ops_[next_];
    if (op.file < 0 || op.file > 1) continue;
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
      case OpKind::remove:
        f.durable.clear();
        f.pending.clear();
        f.exists = false;
        break;
    }
  }
}

void PowerCut::materialize(const std::string& dir, CutVariant v, std::mt19937& rng) const {
  const char* names[2] = {"/cairn.db", "/cairn.db-wal"};
  unlink((dir + "/cairn.db-shm").c_str());
  for (int i = 0; i < 2; ++i) {
    const FileState& f = files_[i];
    std::string img = f.durable;
    if (v == CutVariant::tear_last) {
      for (size_t p = 0; p < f.pending.size(); ++p) {
        const Op& op = *f.pending[p];
        if (p + 1 < f.pending.size()) {
          apply(img, op, SIZE_MAX);
        } else {
          size_t sectors = (op.data.size() + 511) / 512;
          apply(img, op, (sectors / 2) * 512);  // the first half of the sectors made it
        }
      }
    } else if (v == CutVariant::random_subset) {
      for (const Op* p : f.pending)
        if (rng() % 2) apply(img, *p, SIZE_MAX);
    }
    std::string path = dir + names[i];
    unlink(path.c_str());
    if (!f.exists && img.empty()) continue;
    std::ofstream(path, std::ios::binary).write(img.data(), static_cast<std::streamsize>(img.size()));
  }
}

}  // namespace cairn::crash
