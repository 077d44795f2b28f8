// Reading the stored Merkle tree (tree.cpp): every root, inclusion proof and consistency
// proof of a 40-record log, from the writer and from a read-only store, is the RFC 6962
// one of the bodies on disk and verifies with seal::; requests outside the log are
// refused rather than answered with invented hashes; seal records are found by seq.
#include "../../../seal/record.hpp"
#include "store_test.hpp"

using namespace store_test;

TestSuite(store_tree, .timeout = 60);

namespace {

constexpr uint64_t kN = 40;

// 40 records appended in transactions of 1, 2, 3 ... records.
void fill_batched(Store& s) {
  uint64_t n = 0;
  for (int batch = 1; n < kN; ++batch) {
    cr_assert(s.begin().ok());
    for (int i = 0; i < batch && n < kN; ++i, ++n)
      append(s, event(n % 3 ? "UserLogin" : "AuthFailure", "u" + std::to_string(n)), static_cast<int64_t>(1000 + n));
    cr_assert(s.commit().ok());
  }
}

void check_every_proof(Store& s, const std::vector<Hash>& leaves) {
  std::vector<Hash> roots{ref_root(leaves, 0)};
  for (uint64_t n = 1; n <= kN; ++n) {
    auto r = s.root_at(n);
    cr_assert(r.ok(), "root_at(%llu): %s", static_cast<unsigned long long>(n), r.ok() ? "" : r.error().message.c_str());
    cr_assert(r.value() == ref_root(leaves, n), "root_at(%llu) is not the RFC 6962 root of the bodies",
              static_cast<unsigned long long>(n));
    roots.push_back(r.value());
  }
  auto r0 = s.root_at(0);
  cr_assert(r0.ok() && r0.value() == seal::empty_root());
  for (uint64_t n = 1; n <= kN; ++n) {
    for (uint64_t seq = 1; seq <= n; ++seq) {
      auto p = s.inclusion_proof(seq, n);
      cr_assert(p.ok(), "%s", p.ok() ? "" : p.error().message.c_str());
      if (!seal::verify_inclusion(leaves[seq - 1], seq - 1, n, p.value(), roots[n]))
        cr_assert_fail("inclusion of seq %llu in %llu does not verify", static_cast<unsigned long long>(seq),
                       static_cast<unsigned long long>(n));
      if (n > 1 && seal::verify_inclusion(leaves[seq % n], seq - 1, n, p.value(), roots[n]))
        cr_assert_fail("the proof of seq %llu also proves another record", static_cast<unsigned long long>(seq));
    }
    for (uint64_t m = 1; m <= n; ++m) {
      auto p = s.consistency_proof(m, n);
      cr_assert(p.ok(), "%s", p.ok() ? "" : p.error().message.c_str());
      if (!seal::verify_consistency(m, n, roots[m], roots[n], p.value()))
        cr_assert_fail("consistency %llu -> %llu does not verify", static_cast<unsigned long long>(m),
                       static_cast<unsigned long long>(n));
      if (m < n && seal::verify_consistency(m, n, roots[m == 1 ? 2 : m - 1], roots[n], p.value()))
        cr_assert_fail("consistency %llu -> %llu accepts another old root", static_cast<unsigned long long>(m),
                       static_cast<unsigned long long>(n));
    }
  }
}

}  // namespace

Test(store_tree, every_root_and_proof_of_a_40_record_log_verifies_from_writer_and_reader) {
  TempDb t;
  auto w = open_store(t.path);
  fill_batched(*w);
  auto leaves = leaves_on_disk(w->handle());
  cr_assert_eq(leaves.size(), kN);
  check_every_proof(*w, leaves);
  auto r = open_store(t.path, OpenMode::readonly);
  check_every_proof(*r, leaves);
  // node(): level 0 is the stored leaf hash; interior nodes by (level, index).
  cr_assert(r->node(0, 7) == leaves[7]);
  cr_assert(r->node(3, 2) == ref_mth(leaves, 16, 24));
  cr_assert(r->node(5, 0) == ref_mth(leaves, 0, 32));
  cr_assert(r->node(3, 4) == ref_mth(leaves, 32, 40));
  cr_assert_not(r->node(4, 2).has_value(), "leaves 32..47 are not all there");
  cr_assert_not(r->node(3, 5).has_value());
  cr_assert_not(r->node(0, kN).has_value());
}

Test(store_tree, roots_and_proofs_outside_the_log_are_refused) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 10);
  auto r = s->root_at(11);
  cr_assert_not(r.ok(), "a root for a record that does not exist");
  cr_assert_eq(r.error().kind, StoreErrorKind::corrupt, "%s", r.error().message.c_str());
  auto i0 = s->inclusion_proof(0, 10);
  cr_assert_not(i0.ok());
  cr_assert_eq(i0.error().kind, StoreErrorKind::misuse);
  auto i11 = s->inclusion_proof(11, 10);
  cr_assert_not(i11.ok());
  cr_assert_eq(i11.error().kind, StoreErrorKind::misuse);
  cr_assert_not(s->inclusion_proof(5, 11).ok(), "a tree larger than the log");
  auto c0 = s->consistency_proof(0, 10);
  cr_assert_not(c0.ok());
  cr_assert_eq(c0.error().kind, StoreErrorKind::misuse);
  auto c = s->consistency_proof(10, 9);
  cr_assert_not(c.ok());
  cr_assert_eq(c.error().kind, StoreErrorKind::misuse);
  cr_assert_not(s->consistency_proof(3, 12).ok());
  auto b = s->body_of(11);
  cr_assert(b.ok() && !b.value().has_value());
  b = s->body_of(10);
  cr_assert(b.ok() && b.value() && seal::leaf_hash(*b.value()) == s->head_hash());
}

Test(store_tree, a_damaged_node_makes_roots_and_proofs_fail_not_lie) {
  TempDb t;
  auto s = open_store(t.path);
  fill(*s, 12);
  exec(s->handle(), "DROP TRIGGER tree_no_update");
  // A node of the wrong length is unreadable, not a hash.
  std::string q = "UPDATE tree SET hash = zeroblob(31) WHERE pos = " + std::to_string(seal::postorder(3, 0));
  exec(s->handle(), q.c_str());
  auto r = s->root_at(12);
  cr_assert_not(r.ok());
  cr_assert_eq(r.error().kind, StoreErrorKind::corrupt);
  cr_assert_not(s->inclusion_proof(9, 12).ok(), "leaves 0..7 are seq 9's sibling");
  cr_assert_not(s->consistency_proof(10, 12).ok());
  cr_assert(s->root_at(4).ok(), "roots below the damage are still there");
  cr_assert(s->inclusion_proof(1, 4).ok());
}

Test(store_tree, seal_records_are_found_by_seq) {
  TempDb t;
  auto s = open_store(t.path);
  auto add_seal = [&](uint64_t epoch) {
    seal::Seal x;
    x.epoch = epoch;
    x.size = s->head_seq();
    x.root = s->root();
    x.boot_id = "b";
    cr_assert(s->begin().ok());
    auto a = s->append_record(seal::kSealType, seal::seal_fields(x), proto::Trusted{5000, 1, 0, 0, "cairnd"});
    cr_assert(a.ok());
    cr_assert(s->commit().ok());
    return a.value();
  };
  fill(*s, 3);
  uint64_t s1 = add_seal(0);  // 4
  fill(*s, 3);
  uint64_t s2 = add_seal(1);  // 8
  fill(*s, 2);
  cr_assert_eq(s1, 4u);
  cr_assert_eq(s2, 8u);
  auto all = s->seals(1, 100);
  cr_assert(all.ok());
  cr_assert_eq(all.value().size(), 2u);
  cr_assert_eq(all.value()[0].first, 4u);
  cr_assert_eq(all.value()[1].first, 8u);
  cr_assert(all.value()[1].second == *s->body_of(8).value());
  auto some = s->seals(5, 8);
  cr_assert(some.ok() && some.value().size() == 1 && some.value()[0].first == 8u);
  // The seal that covers a record is the first one after it.
  for (uint64_t seq : {1u, 3u}) {
    auto a = s->seal_after(seq);
    cr_assert(a.ok() && a.value() && a.value()->first == 4u, "seq %llu", static_cast<unsigned long long>(seq));
  }
  auto a4 = s->seal_after(4);
  cr_assert(a4.ok() && a4.value() && a4.value()->first == 8u, "a seal does not cover itself");
  auto a9 = s->seal_after(9);
  cr_assert(a9.ok() && !a9.value(), "the unsealed tail has no covering seal");
  auto latest = s->latest_seal();
  cr_assert(latest.ok() && latest.value() && latest.value()->first == 8u);
}
