#include "sealer.hpp"

#include <msgpack.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "../seal/note.hpp"
#include "../seal/record.hpp"
#include "writer.hpp"  // realtime_ns

namespace cairn::daemon {
namespace {

std::string first_line(const char* path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string time_text(int64_t ns) {
  time_t t = static_cast<time_t>(ns / 1'000'000'000);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The newest seal record of the database, decoded.
struct LastSeal {
  uint64_t seq = 0;
  seal::Seal seal;
};
Result<std::optional<LastSeal>, std::string> last_seal(store::Store& store) {
  auto r = store.latest_seal();
  if (!r) return Err{r.error().message};
  if (!r.value()) return std::optional<LastSeal>();
  const auto& [seq, body] = *r.value();
  std::optional<LastSeal> out;
  if (auto sl = seal::parse_seal_body(body)) out = LastSeal{seq, *sl};
  if (!out) return Err{"the seal record at seq " + std::to_string(seq) + " is malformed (run cairn verify)"};
  return out;
}

}  // namespace

std::string default_origin() {
  std::string id = first_line("/etc/machine-id");
  if (id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    id = host;
  }
  return "cairn/" + id;
}

proto::Trusted own_stamp(int64_t received) {
  proto::Trusted t;
  t.received = received;
  t.pid = static_cast<uint32_t>(getpid());
  t.uid = static_cast<uint32_t>(geteuid());
  t.gid = static_cast<uint32_t>(getegid());
  t.comm = "cairnd";
  return t;
}

Result<std::unique_ptr<Sealer>, std::string> Sealer::open(const Config& config, store::Store& store) {
  std::unique_ptr<Sealer> s(new Sealer());
  s->interval_ns_ = int64_t{config.seal_interval_ms} * 1'000'000;
  s->boot_id_ = first_line("/proc/sys/kernel/random/boot_id");
  std::string path = key_file_path(config);
  auto origin = store.meta("origin");
  auto first = store.meta("first_key");
  if (!origin) return Err{origin.error().message};
  if (!first) return Err{first.error().message};
  bool db_has_identity = origin.value().has_value() && first.value().has_value();
  if (db_has_identity && !KeyFile::exists(path))
    return Err{"the log in " + config.db_path + " (" + *origin.value() + ") was sealed with the key file " + path +
               ", which is missing: restore it, or move the database away to start a new log"};
  std::string want_origin = config.origin.empty() ? (db_has_identity ? *origin.value() : default_origin())
                                                  : config.origin;
  // Epoch 0 begins when the log did, so records written before sealing was turned on
  // fall inside its window.
  int64_t start = realtime_ns();
  if (auto created = store.meta("created"); created && created.value())
    start = std::min<int64_t>(start, std::strtoll(created.value()->c_str(), nullptr, 10));
  if (auto oldest = store.min_received(); oldest && oldest.value())  // imported or clock-skewed records
    start = std::min(start, *oldest.value());
  auto k = KeyFile::open(path, !db_has_identity, want_origin, start);
  if (!k) return Err{k.error()};
  s->keys_ = std::move(k.value());
  const KeyPublic& kp = s->keys_->state();
  if (db_has_identity) {
    if (*origin.value() != kp.origin || *first.value() != seal::b64(kp.first))
      return Err{"the key file " + path + " belongs to another log (" + kp.origin + ", first key " +
                 seal::b64(kp.first).substr(0, 12) + "...) than " + config.db_path + " (" + *origin.value() + ")"};
  } else {
    auto a = store.set_meta("origin", kp.origin);
    if (a) a = store.set_meta("first_key", seal::b64(kp.first));
    if (!a) return Err{a.error().message};
  }
  if (!config.origin.empty() && config.origin != kp.origin)
    return Err{"--origin " + config.origin + " differs from the log's origin " + kp.origin +
               " (an origin is fixed when the log is created)"};
  auto r = s->reconcile(store, config.accept_loss);
  if (!r) return Err{r.error()};
  return s;
}

Result<Ok, std::string> Sealer::reconcile(store::Store& store, bool accept_loss) {
  auto ls = last_seal(store);
  if (!ls) return Err{ls.error()};
  const auto& last = ls.value();
  KeyPublic k = keys_->state();
  if (k.pending && last && last->seal.epoch == k.epoch && last->seal.next_key == k.next) {
    // Step 2 of a handover was durable, step 3 was not: finish it.
    auto a = keys_->advance(last->seal.size, last->seq, last->seal.time);
    if (!a) return Err{a.error()};
    k = keys_->state();
  }
  uint64_t head = store.head_seq();
  std::string key_says = "the key file says records 1.." + std::to_string(k.sealed_seq) + " were sealed (epoch " +
                         std::to_string(k.epoch == 0 ? 0 : k.epoch - 1) + ", " + time_text(k.window_start) + ")";
  if (last && last->seal.epoch + 1 > k.epoch)
    return Err{"the key file is at epoch " + std::to_string(k.epoch) + " but the log was sealed through epoch " +
               std::to_string(last->seal.epoch) + ": the key file is an older copy (swapped or restored). " +
               "cairnd will not sign with a key it has already handed over"};
  bool behind = k.epoch > 0 && (!last || last->seal.epoch + 1 < k.epoch || head < k.sealed_seq);
  if (!behind && k.epoch > 0 && (last->seal.next_key != k.current || last->seq != k.sealed_seq))
    return Err{"the log's newest seal (seq " + std::to_string(last->seq) +
               ") does not hand over to the key file's key: the database or the key file was replaced"};
  if (!behind) return Ok{};
  std::string what = "database ends at seq " + std::to_string(head) + " but " + key_says +
                     ": records are missing (the -wal file deleted, or an older copy of the database restored)";
  if (!accept_loss)
    return Err{what + ". Restore the missing files, or start with --accept-loss to go on and record the loss "
                      "in the log (cairn verify will report it)"};
  auto r = record_loss(store, head, k);
  if (!r) return Err{r.error().message};
  return Ok{};
}

store::StoreResult<Ok> Sealer::record_loss(store::Store& store, uint64_t head, const KeyPublic& k) {
  auto b = store.begin();
  if (!b) return b;
  int64_t now = std::max(realtime_ns(), newest_received_);
  // Placeholders keep every seq that may have been acked from being handed out again.
  for (uint64_t seq = head + 1; seq <= k.sealed_seq; ++seq) {
    auto a = store.append_record(seal::kLostType,
                                 seal::lost_fields("missing at start-up; sealed earlier, loss accepted by the operator"),
                                 own_stamp(now));
    if (!a) {
      store.rollback();
      return Err{a.error()};
    }
  }
  std::string reason = "operator accepted the loss of records " + std::to_string(head + 1) + ".." +
                       std::to_string(std::max(head, k.sealed_seq)) + " (" + "sealed through seq " +
                       std::to_string(k.sealed_seq) + " at " + time_text(k.window_start) +
                       "); records after this are signed with keys not linked to the first key";
  // The recovery names the key and epoch that sign from here on.
  auto a = store.append_record(seal::kRecoveryType,
                               seal::recovery_fields(head + 1, std::max(head, k.sealed_seq), k.sealed_size,
                                                     k.window_start, k.epoch, k.current, reason),
                               own_stamp(now));
  if (!a) {
    store.rollback();
    return Err{a.error()};
  }
  return store.commit();
}

store::StoreResult<Ok> Sealer::seal(store::Store& store) {
  auto p = keys_->prepare_next();  // step 1
  if (!p) return Err{store::StoreError{store::StoreErrorKind::io, 0, p.error()}};
  const KeyPublic& k = keys_->state();
  seal::Seal s;
  s.epoch = k.epoch;
  s.size = store.head_seq();
  s.root = store.root();
  s.time = std::max({realtime_ns(), newest_received_, k.window_start});
  s.prev_time = k.window_start;
  s.boot_id = boot_id_;
  s.next_key = k.next;
  s.sig = seal::sign(keys_->secret(), seal::seal_message(k.origin, s));
  s.checkpoint_sig = seal::sign(keys_->secret(), seal::checkpoint_text(k.origin, s.size, s.root));
  auto b = store.begin();  // step 2
  if (!b) return b;
  auto a = store.append_record(seal::kSealType, seal::seal_fields(s), own_stamp(s.time));
  if (!a) {
    store.rollback();
    return Err{a.error()};
  }
  auto c = store.commit();
  if (!c) return c;
  auto adv = keys_->advance(s.size, a.value(), s.time);  // step 3
  if (!adv) return Err{store::StoreError{store::StoreErrorKind::io, 0, adv.error()}};
  return Ok{};
}

}  // namespace cairn::daemon
