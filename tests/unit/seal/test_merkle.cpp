// The RFC 6962 Merkle tree (seal/merkle.hpp): the published test vectors, the frontier
// against a direct transcription of RFC 6962 §2.1 over the leaves, and every inclusion
// and consistency proof of every tree up to 70 leaves — generated from stored nodes
// through a NodeFn, checked by RFC 9162's verification algorithms, and rejected after
// any single change an attacker could make to them.
#include <criterion/criterion.h>

#include <bit>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "../../../seal/merkle.hpp"

using namespace cairn::seal;

namespace {

Hash from_hex(const char* s) {
  auto raw = unhex(s);
  cr_assert(raw && raw->size() == 32, "bad test vector %s", s);
  Hash h;
  std::memcpy(h.data(), raw->data(), 32);
  return h;
}

// The leaves of the RFC 6962 test vectors (certificate-transparency's merkle tests).
std::vector<std::string> rfc_leaves() {
  std::string sixteen;
  for (int c = 0x60; c <= 0x6f; ++c) sixteen += static_cast<char>(c);
  return {std::string(),
          std::string(1, '\0'),
          "\x10",
          "\x20\x21",
          "\x30\x31",
          "\x40\x41\x42\x43",
          "\x50\x51\x52\x53\x54\x55\x56\x57",
          sixteen};
}

const char* kRfcRoots[8] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

// ---- RFC 6962 §2.1, transcribed over the leaf hashes (no stored nodes) ----

uint64_t split(uint64_t n) { return std::bit_floor(n - 1); }  // largest power of 2 < n

Hash ref_mth(const std::vector<Hash>& l, uint64_t a, uint64_t b) {
  if (b - a == 1) return l[a];
  uint64_t k = split(b - a);
  return node_hash(ref_mth(l, a, a + k), ref_mth(l, a + k, b));
}

void ref_path(const std::vector<Hash>& l, uint64_t m, uint64_t a, uint64_t b, std::vector<Hash>& out) {
  if (b - a == 1) return;
  uint64_t k = split(b - a);
  if (m < k) {
    ref_path(l, m, a, a + k, out);
    out.push_back(ref_mth(l, a + k, b));
  } else {
    ref_path(l, m - k, a + k, b, out);
    out.push_back(ref_mth(l, a, a + k));
  }
}

void ref_subproof(const std::vector<Hash>& l, uint64_t m, uint64_t a, uint64_t b, bool whole,
                  std::vector<Hash>& out) {
  uint64_t n = b - a;
  if (m == n) {
    if (!whole) out.push_back(ref_mth(l, a, b));
    return;
  }
  uint64_t k = split(n);
  if (m <= k) {
    ref_subproof(l, m, a, a + k, whole, out);
    out.push_back(ref_mth(l, a + k, b));
  } else {
    ref_subproof(l, m - k, a + k, b, false, out);
    out.push_back(ref_mth(l, a, a + k));
  }
}

// ---- an in-memory node store, filled the way the store fills its tables ----

struct Nodes {
  std::vector<Hash> leaves;
  std::map<uint64_t, Hash> interior;  // by postorder position
  Frontier frontier;
  uint64_t next_pos = 0;              // the position the next completed node must take
  uint64_t reads = 0;

  void push(const Hash& leaf) {
    uint64_t index = leaves.size();
    cr_assert_eq(postorder(0, index), next_pos, "leaf %llu is not next in completion order",
                 static_cast<unsigned long long>(index));
    ++next_pos;
    leaves.push_back(leaf);
    frontier.push(leaf, [&](unsigned level, uint64_t i, const Hash& h) {
      cr_assert_eq(((i + 1) << level) - 1, index, "node (%u,%llu) is not completed by leaf %llu", level,
                   static_cast<unsigned long long>(i), static_cast<unsigned long long>(index));
      uint64_t pos = postorder(level, i);
      cr_assert_eq(pos, next_pos, "node (%u,%llu) at %llu, expected %llu", level,
                   static_cast<unsigned long long>(i), static_cast<unsigned long long>(pos),
                   static_cast<unsigned long long>(next_pos));
      ++next_pos;
      cr_assert(h == ref_mth(leaves, i << level, (i + 1) << level));
      interior[pos] = h;
    });
  }
  NodeFn fn() {
    return [this](unsigned level, uint64_t index) -> std::optional<Hash> {
      ++reads;
      if (level == 0) {
        if (index >= leaves.size()) return std::nullopt;
        return leaves[index];
      }
      auto it = interior.find(postorder(level, index));
      if (it == interior.end()) return std::nullopt;
      return it->second;
    };
  }
};

Nodes tree_of(uint64_t n) {
  Nodes t;
  for (uint64_t i = 0; i < n; ++i) {
    std::string data = "leaf " + std::to_string(i);
    t.push(leaf_hash(data));
  }
  return t;
}

Hash flip(Hash h, unsigned bit) {
  h[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  return h;
}

unsigned long long ull(uint64_t v) { return v; }

// The bits to flip in each hash of the proofs of a tree of n leaves: all 256 up to 16
// leaves (every proof of a small tree), beyond that each bit position once, in bytes
// spread over the hash and moving with n and the index. Every bit of every proof to 70
// costs about a minute of SHA-256 on the CI machine for no more assurance.
std::vector<unsigned> flips(uint64_t n, uint64_t i) {
  std::vector<unsigned> out;
  for (unsigned b = 0; b < 256; ++b)
    if (n <= 16 || b / 8 == (b % 8) * 4 + (n + i) % 4) out.push_back(b);
  return out;
}

// Sizes an off-by-one or a power-of-two mix-up would produce instead of x (callers drop
// those out of range). Every other size costs SHA-256 time and finds nothing new.
std::vector<uint64_t> near(uint64_t x) {
  return {1, x - 2, x - 1, x + 1, x + 2, std::bit_floor(x), std::bit_ceil(x), 2 * x};
}

constexpr uint64_t kMax = 70;

// Fails the test when a forged proof is accepted. Plain `if`, not cr_assert_not: Criterion
// reports every passing assertion to its runner, and the brute force makes millions.
#define REJECT(accepted, ...)                         \
  do {                                                \
    if (accepted) cr_assert_fail(__VA_ARGS__);        \
  } while (0)

}  // namespace

TestSuite(seal_merkle, .timeout = 120);

Test(seal_merkle, leaf_and_node_hashes_are_rfc6962_and_the_empty_root_is_sha256_of_nothing) {
  cr_assert(empty_root() == from_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
  cr_assert(leaf_hash("") == from_hex(kRfcRoots[0]), "the one-leaf tree's root is its leaf hash");
  // SHA-256(0x00 || "") and SHA-256(0x01 || l || r), spelled out through plain sha256().
  cr_assert(leaf_hash("abc") == sha256(std::string("\0abc", 4)));
  Hash l = leaf_hash("l"), r = leaf_hash("r");
  std::string buf(1, '\x01');
  buf.append(reinterpret_cast<const char*>(l.data()), 32);
  buf.append(reinterpret_cast<const char*>(r.data()), 32);
  cr_assert(node_hash(l, r) == sha256(buf));
  cr_assert(node_hash(l, r) != node_hash(r, l));
}

Test(seal_merkle, roots_of_the_rfc6962_test_vectors_for_sizes_1_to_8) {
  auto data = rfc_leaves();
  Nodes t;
  for (size_t i = 0; i < data.size(); ++i) {
    t.push(leaf_hash(data[i]));
    Hash want = from_hex(kRfcRoots[i]);
    cr_assert(t.frontier.root() == want, "Frontier::root of size %zu: %s", i + 1, hex(t.frontier.root()).c_str());
    cr_assert_eq(t.frontier.size(), i + 1);
  }
  // root_at from stored nodes, for every size, after the tree has grown past it.
  for (size_t n = 1; n <= data.size(); ++n) {
    auto r = root_at(t.fn(), n);
    cr_assert(r.has_value());
    cr_assert(*r == from_hex(kRfcRoots[n - 1]), "root_at(%zu): %s", n, hex(*r).c_str());
  }
  auto r0 = root_at(t.fn(), 0);
  cr_assert(r0 && *r0 == empty_root());
  cr_assert(Frontier().root() == empty_root());
}

Test(seal_merkle, frontier_root_at_and_load_agree_with_rfc6962_for_every_size_to_70) {
  Nodes t;
  std::vector<Hash> roots{empty_root()};
  for (uint64_t n = 1; n <= kMax; ++n) {
    t.push(leaf_hash("leaf " + std::to_string(n - 1)));
    Hash want = ref_mth(t.leaves, 0, n);
    cr_assert(t.frontier.root() == want, "frontier root of %llu", static_cast<unsigned long long>(n));
    cr_assert_eq(t.frontier.subtrees().size(), static_cast<size_t>(std::popcount(n)),
                 "one subtree per set bit of the size");
    roots.push_back(want);
  }
  cr_assert_eq(t.interior.size(), kMax - std::popcount(kMax), "n - popcount(n) interior nodes");
  for (uint64_t n = 0; n <= kMax; ++n) {
    auto r = root_at(t.fn(), n);
    cr_assert(r && *r == roots[n], "root_at(%llu) from stored nodes", static_cast<unsigned long long>(n));
    auto f = Frontier::load(n, t.fn());
    cr_assert(f.has_value());
    cr_assert_eq(f->size(), n);
    cr_assert(f->root() == roots[n], "Frontier::load(%llu)", static_cast<unsigned long long>(n));
    // A loaded frontier appends exactly like the one that was built leaf by leaf.
    if (n < kMax) {
      Frontier g = *f;
      g.push(t.leaves[n], [](unsigned, uint64_t, const Hash&) {});
      cr_assert(g.root() == roots[n + 1]);
    }
  }
  cr_assert_not(root_at(t.fn(), kMax + 1).has_value(), "no root for leaves that do not exist");
  cr_assert_not(Frontier::load(kMax + 2, t.fn()).has_value());
}

Test(seal_merkle, postorder_counts_every_node_in_completion_order) {
  // Nodes::push asserts that each leaf and each completed node takes the next position.
  Nodes t = tree_of(300);
  cr_assert_eq(t.next_pos, 2 * 300 - std::popcount(300u));
  // The position of the root of a perfect tree of 2^l leaves is its node count minus one.
  for (unsigned l = 0; l < 62; ++l)
    cr_assert_eq(postorder(l, 0), (uint64_t{2} << l) - 2, "level %u", l);
  // Right edge of a huge log: strictly after everything that completed before it.
  uint64_t big = uint64_t{1} << 40;
  cr_assert_lt(postorder(40, 0), postorder(0, big));
  cr_assert_eq(postorder(0, big), postorder(40, 0) + 1);
}

Test(seal_merkle, a_missing_node_fails_roots_and_proofs_instead_of_inventing_them) {
  Nodes t = tree_of(13);
  // Node (2,1), leaves 4..7: a sibling on the path of leaf 0 and in PROOF(3, 13), but not
  // one of the complete subtrees that make up 13 = 8 + 4 + 1.
  t.interior.erase(postorder(2, 1));
  cr_assert_not(inclusion_proof(t.fn(), 0, 13).has_value());
  cr_assert_not(consistency_proof(t.fn(), 3, 13).has_value());
  cr_assert(root_at(t.fn(), 13).has_value(), "the root does not need node (2,1)");
  // Node (3,0), leaves 0..7: the first subtree of 13.
  t.interior.erase(postorder(3, 0));
  cr_assert_not(root_at(t.fn(), 13).has_value());
  cr_assert_not(Frontier::load(13, t.fn()).has_value());
  cr_assert(root_at(t.fn(), 4).has_value(), "a root not needing the nodes is still there");
  cr_assert_not(inclusion_proof(t.fn(), 13, 13).has_value(), "index must be < size");
  cr_assert_not(consistency_proof(t.fn(), 0, 13).has_value(), "m must be > 0");
  cr_assert_not(consistency_proof(t.fn(), 14, 13).has_value(), "m must be <= n");
}

Test(seal_merkle, every_inclusion_proof_to_70_verifies_and_any_change_to_it_is_rejected) {
  Nodes t = tree_of(kMax + 2);
  std::vector<Hash> roots;
  for (uint64_t n = 0; n <= kMax + 2; ++n) roots.push_back(n ? ref_mth(t.leaves, 0, n) : empty_root());
  uint64_t max_reads = 0, proofs = 0;
  for (uint64_t n = 1; n <= kMax; ++n) {
    for (uint64_t i = 0; i < n; ++i) {
      t.reads = 0;
      auto p = inclusion_proof(t.fn(), i, n);
      cr_assert(p.has_value());
      max_reads = std::max(max_reads, t.reads);
      cr_assert_leq(t.reads, 2u * std::bit_width(n), "O(log n) reads: %llu for (%llu, %llu)",
                    static_cast<unsigned long long>(t.reads), static_cast<unsigned long long>(i),
                    static_cast<unsigned long long>(n));
      std::vector<Hash> want;
      ref_path(t.leaves, i, 0, n, want);
      cr_assert(*p == want, "PATH(%llu, D[%llu]) differs from RFC 6962", static_cast<unsigned long long>(i),
                static_cast<unsigned long long>(n));
      const Hash& leaf = t.leaves[i];
      cr_assert(verify_inclusion(leaf, i, n, *p, roots[n]));
      ++proofs;
      // Single-bit flips of the leaf, the root and each proof hash (see flips()).
      for (unsigned b : flips(n, i)) {
        REJECT(verify_inclusion(flip(leaf, b), i, n, *p, roots[n]), "forgery accepted for (%llu, %llu)", ull(i), ull(n));
        REJECT(verify_inclusion(leaf, i, n, *p, flip(roots[n], b)), "forgery accepted for (%llu, %llu)", ull(i), ull(n));
        for (size_t j = 0; j < p->size(); ++j) {
          auto q = *p;
          q[j] = flip(q[j], b);
          REJECT(verify_inclusion(leaf, i, n, q, roots[n]), "flip bit %u of hash %zu", b, j);
        }
      }
      // Another index; another size with that size's root.
      for (uint64_t j = 0; j < n; ++j)
        if (j != i) REJECT(verify_inclusion(leaf, j, n, *p, roots[n]), "index %llu", static_cast<unsigned long long>(j));
      REJECT(verify_inclusion(leaf, n, n, *p, roots[n]), "index == size");
      for (uint64_t m = i + 1; m <= kMax + 2; ++m)
        if (m != n)
          REJECT(verify_inclusion(leaf, i, m, *p, roots[m]), "(%llu, %llu) proof accepted for size %llu",
                        static_cast<unsigned long long>(i), static_cast<unsigned long long>(n),
                        static_cast<unsigned long long>(m));
      // A hash dropped, or one added at either end.
      for (size_t j = 0; j < p->size(); ++j) {
        auto q = *p;
        q.erase(q.begin() + static_cast<long>(j));
        REJECT(verify_inclusion(leaf, i, n, q, roots[n]), "hash %zu dropped", j);
      }
      for (const Hash& extra : {roots[n], leaf, Hash{}}) {
        auto q = *p;
        q.push_back(extra);
        REJECT(verify_inclusion(leaf, i, n, q, roots[n]), "forgery accepted for (%llu, %llu)", ull(i), ull(n));
        q = *p;
        q.insert(q.begin(), extra);
        REJECT(verify_inclusion(leaf, i, n, q, roots[n]), "forgery accepted for (%llu, %llu)", ull(i), ull(n));
      }
    }
  }
  cr_assert_eq(proofs, kMax * (kMax + 1) / 2);
  cr_log_info("inclusion: %llu proofs, at most %llu node reads each", static_cast<unsigned long long>(proofs),
              static_cast<unsigned long long>(max_reads));
}

Test(seal_merkle, every_consistency_proof_to_70_verifies_and_any_change_to_it_is_rejected) {
  Nodes t = tree_of(kMax + 2);
  std::vector<Hash> roots;
  for (uint64_t n = 0; n <= kMax + 2; ++n) roots.push_back(n ? ref_mth(t.leaves, 0, n) : empty_root());
  uint64_t max_reads = 0;
  for (uint64_t n = 1; n <= kMax; ++n) {
    cr_assert(verify_consistency(0, n, roots[0], roots[n], {}), "the empty tree is a prefix of any tree");
    for (uint64_t m = 1; m <= n; ++m) {
      t.reads = 0;
      auto p = consistency_proof(t.fn(), m, n);
      cr_assert(p.has_value());
      max_reads = std::max(max_reads, t.reads);
      cr_assert_leq(t.reads, 2u * std::bit_width(n), "O(log n) reads: %llu for (%llu, %llu)",
                    static_cast<unsigned long long>(t.reads), static_cast<unsigned long long>(m),
                    static_cast<unsigned long long>(n));
      std::vector<Hash> want;
      ref_subproof(t.leaves, m, 0, n, true, want);
      cr_assert(*p == want, "PROOF(%llu, D[%llu]) differs from RFC 6962", static_cast<unsigned long long>(m),
                static_cast<unsigned long long>(n));
      cr_assert(verify_consistency(m, n, roots[m], roots[n], *p), "(%llu, %llu)",
                static_cast<unsigned long long>(m), static_cast<unsigned long long>(n));
      if (m == n) {
        cr_assert(p->empty());
        REJECT(verify_consistency(m, n, roots[m], roots[n], {roots[m]}), "forgery accepted for (%llu, %llu)", ull(m), ull(n));
        REJECT(verify_consistency(m, n, roots[m], flip(roots[n], 0), {}), "forgery accepted for (%llu, %llu)", ull(m), ull(n));
        continue;
      }
      for (unsigned b : flips(n, m)) {
        REJECT(verify_consistency(m, n, flip(roots[m], b), roots[n], *p), "forgery accepted for (%llu, %llu)", ull(m), ull(n));
        REJECT(verify_consistency(m, n, roots[m], flip(roots[n], b), *p), "forgery accepted for (%llu, %llu)", ull(m), ull(n));
        for (size_t j = 0; j < p->size(); ++j) {
          auto q = *p;
          q[j] = flip(q[j], b);
          REJECT(verify_consistency(m, n, roots[m], roots[n], q), "(%llu, %llu): flip bit %u of hash %zu",
                        static_cast<unsigned long long>(m), static_cast<unsigned long long>(n), b, j);
        }
      }
      // Another old size or another new size, each with its own (genuine) root.
      for (uint64_t m2 : near(m))
        if (m2 != m && m2 >= 1 && m2 <= n)
          REJECT(verify_consistency(m2, n, roots[m2], roots[n], *p), "(%llu, %llu) accepted as m %llu", ull(m),
                 ull(n), ull(m2));
      for (uint64_t n2 : near(n))
        if (n2 != n && n2 >= m && n2 <= kMax + 2)
          REJECT(verify_consistency(m, n2, roots[m], roots[n2], *p), "(%llu, %llu) accepted as n %llu", ull(m),
                 ull(n), ull(n2));
      REJECT(verify_consistency(n, m, roots[n], roots[m], *p), "sizes swapped");
      REJECT(verify_consistency(m, n, roots[m], roots[n], {}), "empty proof");
      for (size_t j = 0; j < p->size(); ++j) {
        auto q = *p;
        q.erase(q.begin() + static_cast<long>(j));
        REJECT(verify_consistency(m, n, roots[m], roots[n], q), "hash %zu dropped", j);
      }
      for (const Hash& extra : {roots[m], roots[n], Hash{}}) {
        auto q = *p;
        q.push_back(extra);
        REJECT(verify_consistency(m, n, roots[m], roots[n], q), "forgery accepted for (%llu, %llu)", ull(m), ull(n));
        q = *p;
        q.insert(q.begin(), extra);
        REJECT(verify_consistency(m, n, roots[m], roots[n], q), "forgery accepted for (%llu, %llu)", ull(m), ull(n));
      }
    }
  }
  cr_log_info("consistency: at most %llu node reads per proof", static_cast<unsigned long long>(max_reads));
}
