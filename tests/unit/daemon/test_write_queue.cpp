// test_write_queue.cpp — the writer queue's groups: fair between uids (issue 11), in
// order per connection, everything taken exactly once.
//
// The queue never dereferences a request's Session, so distinct fake addresses stand
// for connections. Properties are counts and orders, never times.
#include <criterion/criterion.h>

#include <cstdint>
#include <deque>
#include <map>
#include <vector>

#include "../../../daemon/write_queue.hpp"

using cairn::daemon::Submission;
using cairn::daemon::WriteQueue;
using cairn::daemon::WriteRequest;

namespace {

// A group of several uids ends after the round in which it reached kSharedGroupBytes:
// a uid's turn adds at most its credit, a quantum plus less than one request left over.
constexpr uint64_t kRequestCost = sizeof(WriteRequest) + 200;
constexpr uint64_t kGroupBound = WriteQueue::kSharedGroupBytes + WriteQueue::kQuantumBytes + kRequestCost;

cairn::daemon::Session* conn(uintptr_t n) { return reinterpret_cast<cairn::daemon::Session*>(n * 64); }

// `n` appends of connection `c` (uid `uid`), ids from `first_id`, bodies of `body` bytes.
std::vector<WriteRequest> reqs(uintptr_t c, uint32_t uid, uint64_t first_id, size_t n, size_t body = 200) {
  std::vector<WriteRequest> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].session = conn(c);
    out[i].trusted.uid = uid;
    out[i].id = first_id + i;
    out[i].body.assign(body, 'x');
  }
  return out;
}

void push(WriteQueue& q, uintptr_t c, uint32_t uid, uint64_t first_id, size_t n, bool urgent = false,
          size_t body = 200) {
  auto r = reqs(c, uid, first_id, n, body);
  q.push(r, urgent);
}

// Takes one group without waiting, releasing each request as the writer would.
std::deque<Submission> take(WriteQueue& q, bool* urgent = nullptr) {
  std::deque<Submission> g;
  auto t = q.take(g);
  if (urgent) *urgent = t.urgent;
  for (auto& s : g)
    for (auto& r : s.reqs) q.released(r);
  return g;
}

uint64_t bytes_of(const std::deque<Submission>& g, uint32_t uid) {
  uint64_t b = 0;
  for (auto& s : g)
    if (s.uid == uid)
      for (auto& r : s.reqs) b += r.cost();
  return b;
}

size_t count_of(const std::deque<Submission>& g, uint32_t uid) {
  size_t n = 0;
  for (auto& s : g)
    if (s.uid == uid) n += s.reqs.size();
  return n;
}

// Per connection: the ids seen so far, which must rise by one each time.
struct OrderCheck {
  std::map<void*, uint64_t> next;
  size_t seen = 0;
  void see(const std::deque<Submission>& g) {
    for (auto& s : g)
      for (auto& r : s.reqs) {
        cr_assert_eq(r.session, s.session);
        auto [it, fresh] = next.try_emplace(r.session, r.id);
        cr_assert_eq(r.id, it->second, "connection %p: id %llu came where %llu was due", (void*)r.session,
                     (unsigned long long)r.id, (unsigned long long)it->second);
        it->second = r.id + 1;
        ++seen;
      }
  }
};

}  // namespace

Test(write_queue, one_uid_gets_everything_in_one_group) {
  WriteQueue q(1'000'000, 1u << 30);
  for (uint64_t i = 0; i < 50; ++i) push(q, 1 + i % 3, 1000, 1 + (i / 3) * 10, 10);
  auto g = take(q);
  cr_assert_eq(count_of(g, 1000), 500u, "a single uid's group is its whole queue (group commit as before)");
  cr_assert(q.empty());
  cr_assert_eq(q.queued_events(), 0u);
  cr_assert_eq(q.queued_bytes(), 0u);
}

// A flood of one uid queued before another uid's single request: that request is in the
// very next group, and the flood's part of that group is bounded, not its whole backlog.
Test(write_queue, another_uids_request_is_in_the_next_group_whatever_a_flood_queued) {
  WriteQueue q(1'000'000, 1u << 30);
  constexpr uint32_t kFlood = 64101, kLight = 64201;
  for (uint64_t i = 0; i < 200; ++i) push(q, 1 + i % 16, kFlood, 1 + (i / 16) * 100, 100);  // 20,000 appends
  push(q, 99, kLight, 1, 1);
  OrderCheck order;
  auto g = take(q);
  order.see(g);
  cr_assert_eq(count_of(g, kLight), 1u, "the light uid waited behind the flood");
  uint64_t flood_bytes = bytes_of(g, kFlood);
  cr_assert_leq(flood_bytes, kGroupBound,
                "the flood took %llu bytes of the group", (unsigned long long)flood_bytes);
  cr_assert_lt(count_of(g, kFlood), 20'000u / 10, "the flood's whole backlog went in one group");
  // Then the light uid comes back with more while the flood still has most queued:
  // again in the next group.
  push(q, 99, kLight, 2, 1);
  g = take(q);
  order.see(g);
  cr_assert_eq(count_of(g, kLight), 1u);
  // The rest drains, each request once and in its connection's order.
  for (int guard = 0; !q.empty() && guard < 100'000; ++guard) order.see(take(q));
  cr_assert(q.empty());
  cr_assert_eq(order.seen, 20'002u);
  cr_assert_eq(q.queued_events(), 0u);
  cr_assert_eq(q.queued_bytes(), 0u);
}

// Two uids flooding alike get alike: over the groups taken while both have work, their
// bytes differ by at most a round's worth (deficit round-robin), though one pushed in
// submissions ten times larger than the other's.
Test(write_queue, two_floods_share_by_bytes) {
  WriteQueue q(1'000'000, 1u << 30);
  for (uint64_t i = 0; i < 100; ++i) push(q, 1, 1, 1 + i * 100, 100);  // big submissions
  for (uint64_t i = 0; i < 1000; ++i) push(q, 2, 2, 1 + i * 10, 10);   // small ones
  uint64_t b1 = 0, b2 = 0;
  OrderCheck order;
  for (int k = 0; k < 20; ++k) {
    auto g = take(q);
    order.see(g);
    b1 += bytes_of(g, 1);
    b2 += bytes_of(g, 2);
  }
  uint64_t diff = b1 > b2 ? b1 - b2 : b2 - b1;
  cr_assert_gt(b1, 0u);
  cr_assert_gt(b2, 0u);
  cr_assert_leq(diff, 2 * WriteQueue::kQuantumBytes, "uid 1 took %llu bytes, uid 2 %llu", (unsigned long long)b1,
                (unsigned long long)b2);
}

// A request larger than a round's credit is still taken (its uid saves up credit).
Test(write_queue, a_request_larger_than_a_quantum_is_taken) {
  WriteQueue q(1'000'000, 1u << 30);
  const size_t big = 3 * WriteQueue::kQuantumBytes;
  push(q, 1, 1, 1, 4, false, big);
  for (uint64_t i = 0; i < 100; ++i) push(q, 2, 2, 1 + i * 50, 50);
  OrderCheck order;
  size_t groups = 0;
  for (; !q.empty() && groups < 1000; ++groups) order.see(take(q));
  cr_assert(q.empty());
  cr_assert_eq(order.seen, 4u + 5000u);
}

// Urgent work jumps the round-robin with its connection's earlier submissions, and a
// flush stays behind its own connection's appends.
Test(write_queue, urgent_goes_first_with_its_connections_earlier_work) {
  WriteQueue q(1'000'000, 1u << 30);
  for (uint64_t i = 0; i < 50; ++i) push(q, 1, 1, 1 + i * 100, 100);
  push(q, 7, 2, 1, 3);                // connection 7 (uid 2): routine ...
  push(q, 7, 2, 4, 1, /*urgent=*/true);  // ... then urgent
  push(q, 8, 2, 1, 2);                // another connection of uid 2: not urgent
  bool urgent = false;
  auto g = take(q, &urgent);
  cr_assert(urgent);
  OrderCheck order;
  order.see(g);
  cr_assert_eq(count_of(g, 2), 4u, "connection 7's routine and urgent work, not connection 8's");
  cr_assert_eq(count_of(g, 1), 0u);
  for (int guard = 0; !q.empty() && guard < 10'000; ++guard) order.see(take(q));
  cr_assert_eq(order.seen, 5000u + 6u);
}

// put_back (the writer serving urgent work mid-group) restores each connection's order,
// including a submission the writer had started.
Test(write_queue, put_back_keeps_order) {
  WriteQueue q(1'000'000, 1u << 30);
  for (uint64_t i = 0; i < 40; ++i) push(q, 1 + i % 2, 1, 1 + (i / 2) * 100, 100);
  for (uint64_t i = 0; i < 40; ++i) push(q, 3, 2, 1 + i * 100, 100);
  std::deque<Submission> g;
  q.take(g);
  cr_assert_geq(g.size(), 2u);
  OrderCheck order;
  // The writer did the first submission and half of the second, then put the rest back.
  std::deque<Submission> done;
  for (auto& r : g[0].reqs) q.released(r);
  done.push_back(std::move(g[0]));
  size_t half = g[1].reqs.size() / 2;
  Submission first_half{g[1].session, g[1].uid, false, 0, {}};
  for (size_t i = 0; i < half; ++i) {
    q.released(g[1].reqs[i]);
    first_half.reqs.push_back(std::move(g[1].reqs[i]));
  }
  done.push_back(std::move(first_half));
  g[1].reqs.erase(g[1].reqs.begin(), g[1].reqs.begin() + static_cast<long>(half));
  q.put_back(g, 1);
  order.see(done);
  for (int guard = 0; !q.empty() && guard < 10'000; ++guard) order.see(take(q));
  cr_assert_eq(order.seen, 8000u);
  cr_assert_eq(q.queued_events(), 0u);
  cr_assert_eq(q.queued_bytes(), 0u);
}

// A client that waits for each ack is off the queue between its requests: the flood
// alone is queued then. Its groups stay bounded for a while after another uid was served,
// so the client finds a bounded group ahead when it comes back.
Test(write_queue, a_lone_flood_stays_bounded_just_after_another_uid_was_served) {
  WriteQueue q(1'000'000, 1u << 30);
  for (uint64_t i = 0; i < 200; ++i) push(q, 1, 1, 1 + i * 100, 100);
  push(q, 2, 2, 1, 1);
  auto g = take(q);
  cr_assert_eq(count_of(g, 2), 1u);
  // Only uid 1 is queued now.
  for (uint32_t k = 0; k < WriteQueue::kSharedLingerGroups; ++k) {
    g = take(q);
    cr_assert_leq(bytes_of(g, 1), kGroupBound,
                  "group %u after the other uid left took %llu bytes", k, (unsigned long long)bytes_of(g, 1));
  }
  // Then, alone for long enough, it gets everything again (bulk throughput).
  g = take(q);
  cr_assert(q.empty(), "a lone uid's queue is taken whole once no other uid was seen lately");
}
