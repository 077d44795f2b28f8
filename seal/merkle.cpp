#include "merkle.hpp"

#include <bit>

namespace cairn::seal {
namespace {

// Largest power of two strictly below n (n >= 2).
uint64_t split_point(uint64_t n) { return std::bit_floor(n - 1); }

bool is_pow2(uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

bool path(const NodeFn& node, uint64_t m, uint64_t a, uint64_t b, std::vector<Hash>& out) {
  uint64_t n = b - a;
  if (n == 1) return true;
  uint64_t k = split_point(n);
  std::optional<Hash> sib;
  if (m < k) {
    if (!path(node, m, a, a + k, out)) return false;
    sib = subtree_root(node, a + k, b);
  } else {
    if (!path(node, m - k, a + k, b, out)) return false;
    sib = subtree_root(node, a, a + k);
  }
  if (!sib) return false;
  out.push_back(*sib);
  return true;
}

bool subproof(const NodeFn& node, uint64_t m, uint64_t a, uint64_t b, bool whole,
              std::vector<Hash>& out) {
  uint64_t n = b - a;
  if (m == n) {
    if (whole) return true;
    auto h = subtree_root(node, a, b);
    if (!h) return false;
    out.push_back(*h);
    return true;
  }
  uint64_t k = split_point(n);
  std::optional<Hash> sib;
  if (m <= k) {
    if (!subproof(node, m, a, a + k, whole, out)) return false;
    sib = subtree_root(node, a + k, b);
  } else {
    if (!subproof(node, m - k, a + k, b, false, out)) return false;
    sib = subtree_root(node, a, a + k);
  }
  if (!sib) return false;
  out.push_back(*sib);
  return true;
}

}  // namespace

Hash empty_root() { return sha256({}); }

uint64_t postorder(unsigned level, uint64_t index) {
  // Nodes completed by the first m leaves: sum over levels of floor(m / 2^l) = 2m - popcount(m).
  // Node (level, index) completes with leaf m-1, m = (index+1) << level, after the
  // leaf and the nodes of levels 1 .. level-1 completed by that same leaf.
  uint64_t last = ((index + 1) << level) - 1;  // its last leaf
  return 2 * last - static_cast<uint64_t>(std::popcount(last)) + level;
}

Hash Frontier::root() const {
  if (stack_.empty()) return empty_root();
  Hash acc = stack_.back();
  for (size_t i = stack_.size() - 1; i-- > 0;) acc = node_hash(stack_[i], acc);
  return acc;
}

std::optional<Frontier> Frontier::load(uint64_t size, const NodeFn& node) {
  Frontier f;
  uint64_t start = 0;
  for (int level = 63; level >= 0; --level) {
    if (!((size >> level) & 1)) continue;
    auto h = node(static_cast<unsigned>(level), start >> level);
    if (!h) return std::nullopt;
    f.stack_.push_back(*h);
    start += uint64_t{1} << level;
  }
  f.size_ = size;
  return f;
}

std::optional<Hash> subtree_root(const NodeFn& node, uint64_t a, uint64_t b) {
  uint64_t n = b - a;
  if (is_pow2(n) && a % n == 0) return node(static_cast<unsigned>(std::countr_zero(n)), a / n);
  uint64_t k = split_point(n);
  auto l = subtree_root(node, a, a + k);
  if (!l) return std::nullopt;
  auto r = subtree_root(node, a + k, b);
  if (!r) return std::nullopt;
  return node_hash(*l, *r);
}

std::optional<Hash> root_at(const NodeFn& node, uint64_t size) {
  if (size == 0) return empty_root();
  return subtree_root(node, 0, size);
}

std::optional<std::vector<Hash>> inclusion_proof(const NodeFn& node, uint64_t index, uint64_t size) {
  if (index >= size) return std::nullopt;
  std::vector<Hash> out;
  if (!path(node, index, 0, size, out)) return std::nullopt;
  return out;
}

std::optional<std::vector<Hash>> consistency_proof(const NodeFn& node, uint64_t m, uint64_t n) {
  if (m == 0 || m > n) return std::nullopt;
  std::vector<Hash> out;
  if (!subproof(node, m, 0, n, true, out)) return std::nullopt;
  return out;
}

bool verify_inclusion(const Hash& leaf, uint64_t index, uint64_t size,
                      const std::vector<Hash>& proof, const Hash& root) {
  if (index >= size) return false;
  uint64_t fn = index, sn = size - 1;
  Hash r = leaf;
  for (const Hash& p : proof) {
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      r = node_hash(p, r);
      if (!(fn & 1))
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
    } else {
      r = node_hash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

bool verify_consistency(uint64_t m, uint64_t n, const Hash& root_m, const Hash& root_n,
                        const std::vector<Hash>& proof) {
  if (m > n) return false;
  if (m == n) return proof.empty() && root_m == root_n;
  if (m == 0) return proof.empty();
  if (proof.empty()) return false;
  std::vector<Hash> p;
  p.reserve(proof.size() + 1);
  if (is_pow2(m)) p.push_back(root_m);
  p.insert(p.end(), proof.begin(), proof.end());
  uint64_t fn = m - 1, sn = n - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = p[0], sr = p[0];
  for (size_t i = 1; i < p.size(); ++i) {
    const Hash& c = p[i];
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      fr = node_hash(c, fr);
      sr = node_hash(c, sr);
      if (!(fn & 1))
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
    } else {
      sr = node_hash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return fr == root_m && sr == root_n && sn == 0;
}

}  // namespace cairn::seal
