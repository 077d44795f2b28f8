// Flush-mode decisions: which acks wait for fsync, and when the writer must commit.
#include <criterion/criterion.h>

#include "../../../daemon/config.hpp"
#include "../../../daemon/flush_policy.hpp"

using namespace cairn::daemon;
using cairn::proto::Event;

namespace {

Config config_for(FlushMode mode) {
  Config c;
  c.flush_mode = mode;
  c.batch_size = 100;
  c.batch_interval_ms = 50;
  c.critical_types = {"AuthFailure", "PolicyViolation"};
  return c;
}

Event event(const char* type, uint8_t severity = 6, bool sync = false) {
  Event e;
  e.type = type;
  e.severity = severity;
  e.sync = sync;
  return e;
}

constexpr int64_t kMs = 1'000'000;

}  // namespace

Test(flush_policy, critical_set_severity_and_sync_make_an_event_critical) {
  FlushPolicy p(config_for(FlushMode::hybrid));
  cr_assert(p.is_critical(event("AuthFailure")));
  cr_assert(p.is_critical(event("PolicyViolation")));
  cr_assert_not(p.is_critical(event("UserLogin")));
  cr_assert_not(p.is_critical(event("authfailure")), "types are case-sensitive");
  cr_assert(p.is_critical(event("UserLogin", 2)), "crit");
  cr_assert(p.is_critical(event("UserLogin", 1)), "alert");
  cr_assert(p.is_critical(event("UserLogin", 0)), "emerg");
  cr_assert_not(p.is_critical(event("UserLogin", 3)), "err is not critical");
  cr_assert(p.is_critical(event("UserLogin", 6, true)), "sync:true");
}

Test(flush_policy, immediate_mode_every_ack_waits_and_every_group_commits) {
  FlushPolicy p(config_for(FlushMode::immediate));
  cr_assert(p.waits_for_commit(event("UserLogin")));
  cr_assert(p.waits_for_commit(event("AuthFailure")));
  cr_assert_not(p.urgent(event("AuthFailure")), "immediate mode has no queue to jump");
  cr_assert(p.must_commit(1, false, 0, 0));
  cr_assert_not(p.must_commit(0, false, 0, 0), "nothing open, nobody waiting");
}

Test(flush_policy, batched_mode_commits_on_size_or_interval_only) {
  FlushPolicy p(config_for(FlushMode::batched));
  cr_assert_not(p.waits_for_commit(event("UserLogin")));
  cr_assert_not(p.waits_for_commit(event("AuthFailure")), "batched mode has no critical set");
  cr_assert(p.waits_for_commit(event("UserLogin", 6, true)), "but sync:true is honoured");
  cr_assert(p.urgent(event("UserLogin", 6, true)));
  cr_assert_not(p.must_commit(99, false, 0, 49 * kMs));
  cr_assert(p.must_commit(100, false, 0, 1 * kMs), "batch full");
  cr_assert(p.must_commit(1, false, 0, 50 * kMs), "interval passed");
  cr_assert_eq(p.commit_deadline(7 * kMs), 57 * kMs);
  cr_assert(p.must_commit(1, true, 0, 0), "a flush forces the commit");
}

Test(flush_policy, hybrid_mode_critical_waits_and_forces_commit_routine_does_not) {
  FlushPolicy p(config_for(FlushMode::hybrid));
  cr_assert_not(p.waits_for_commit(event("UserLogin")));
  cr_assert(p.waits_for_commit(event("AuthFailure")));
  cr_assert(p.waits_for_commit(event("UserLogin", 1)));
  cr_assert(p.urgent(event("AuthFailure")));
  cr_assert_not(p.urgent(event("UserLogin")));
  cr_assert_not(p.must_commit(10, false, 0, 1 * kMs));
  cr_assert(p.must_commit(10, true, 0, 1 * kMs), "critical waiter commits everything open");
}

Test(config, flags_override_defaults_and_bad_values_name_the_option) {
  Config c;
  cr_assert(config_set(c, "flush-mode", "hybrid").ok());
  cr_assert_eq(c.flush_mode, FlushMode::hybrid);
  cr_assert(config_set(c, "socket-mode", "0600").ok());
  cr_assert_eq(c.socket_mode, 0600u);
  auto bad = config_set(c, "flush-mode", "sometimes");
  cr_assert_not(bad.ok());
  cr_assert(bad.error().find("flush-mode") != std::string::npos, "%s", bad.error().c_str());
  auto range = config_set(c, "batch-size", "0");
  cr_assert_not(range.ok());
  cr_assert(range.error().find("batch-size") != std::string::npos);
  auto unknown = config_set(c, "colour", "red");
  cr_assert_not(unknown.ok());
  cr_assert(unknown.error().find("colour") != std::string::npos);
  cr_assert(config_set(c, "critical-types", "A, B.c ,D:e").ok());
  cr_assert_eq(c.critical_types.size(), 3u);
  cr_assert_eq(c.critical_types[1], "B.c");
  cr_assert_not(config_set(c, "critical-types", "bad type").ok());
}
