// merkle.hpp — the RFC 6962 / RFC 9162 Merkle tree over every record of the log.
//
// Glossary:
//   leaf i      record seq i+1; its hash is leaf_hash(body)
//   node (l,i)  the complete subtree of 2^l leaves starting at leaf i*2^l (level 0 = leaf)
//   frontier    the complete subtrees that make up a tree of n leaves: one per set bit
//               of n, largest first. Enough to append and to compute the root.
//   postorder   the order in which an append-only tree completes its nodes. Storing
//               nodes keyed by it appends at the right edge of the B-tree.
//   MTH(a,b)    RFC 6962's Merkle Tree Hash of leaves [a,b)
//
// Nothing here does I/O: stored nodes come through a NodeFn the caller supplies.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "hash.hpp"

namespace cairn::seal {

// The root of the empty tree: SHA-256 of nothing (RFC 6962 §2.1).
Hash empty_root();

// Position of node (level, index) in the order nodes complete, counting leaves too:
// leaf 0 is 0, leaf 1 is 1, node (1,0) is 2, leaf 2 is 3 ...
uint64_t postorder(unsigned level, uint64_t index);

// Returns the stored hash of complete node (level, index), or nullopt if it cannot be read.
using NodeFn = std::function<std::optional<Hash>(unsigned level, uint64_t index)>;

class Frontier {
 public:
  uint64_t size() const { return size_; }
  // Appends a leaf; `completed(level, index, hash)` is called for each node of level >= 1
  // that this leaf completes, lowest first.
  template <class F>
  void push(const Hash& leaf, F&& completed) {
    Hash h = leaf;
    uint64_t new_size = size_ + 1;
    unsigned level = 0;
    while ((size_ >> level) & 1) {
      h = node_hash(stack_.back(), h);
      stack_.pop_back();
      ++level;
      completed(level, (new_size >> level) - 1, h);
    }
    stack_.push_back(h);
    size_ = new_size;
  }
  Hash root() const;
  const std::vector<Hash>& subtrees() const { return stack_; }
  // The frontier of a tree of `size` leaves from stored nodes (O(log n) reads).
  static std::optional<Frontier> load(uint64_t size, const NodeFn& node);

 private:
  uint64_t size_ = 0;
  std::vector<Hash> stack_;  // largest first
};

// MTH of leaves [a, b), b > a, from stored nodes.
std::optional<Hash> subtree_root(const NodeFn& node, uint64_t a, uint64_t b);
// The root of the first `size` leaves (empty_root() for 0).
std::optional<Hash> root_at(const NodeFn& node, uint64_t size);
// RFC 6962 PATH(index, D[0:size]); index < size.
std::optional<std::vector<Hash>> inclusion_proof(const NodeFn& node, uint64_t index, uint64_t size);
// RFC 6962 PROOF(m, D[0:n]); 0 < m <= n.
std::optional<std::vector<Hash>> consistency_proof(const NodeFn& node, uint64_t m, uint64_t n);

// RFC 9162 §2.1.3.2.
bool verify_inclusion(const Hash& leaf, uint64_t index, uint64_t size,
                      const std::vector<Hash>& proof, const Hash& root);
// RFC 9162 §2.1.4.2. m == n needs an empty proof and equal roots; m == 0 is always
// consistent (with an empty proof).
bool verify_consistency(uint64_t m, uint64_t n, const Hash& root_m, const Hash& root_n,
                        const std::vector<Hash>& proof);

}  // namespace cairn::seal
