// retention.cpp — the retention thread (prepare) and the writer's turn (retention.hpp).
#include "retention.hpp"

#include <msgpack.h>
#include <pthread.h>
#include <sys/stat.h>

#include <chrono>

#include "../seal/record.hpp"
#include "clock.hpp"
#include "log.hpp"
#include "store/archive.hpp"

namespace cairn::daemon {
namespace {

constexpr int kZstdLevel = 3;
// Rows one writer turn moves out: ~0.1 s of deletes (index and query-index upkeep
// included) on a loaded disk, so appends wait that long at most; a segment takes as many
// turns as it needs.
constexpr uint64_t kRowsPerTurn = 5000;  // zstd's default: ~10x on audit records at >100 MB/s (bench/run)

// First column of a one-row query binding ?1, ?2 (0 for NULL or no row; -1 on error).
int64_t scalar(sqlite3* db, const char* sql, int64_t a, int64_t b) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) != SQLITE_OK) return -1;
  if (sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_int64(st, 1, a);
  if (sqlite3_bind_parameter_count(st) >= 2) sqlite3_bind_int64(st, 2, b);
  int rc = sqlite3_step(st);
  int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : rc == SQLITE_DONE ? 0 : -1;
  sqlite3_finalize(st);
  return v;
}

void pack_str(msgpack_packer& pk, std::string_view s) {
  msgpack_pack_str(&pk, s.size());
  msgpack_pack_str_body(&pk, s.data(), s.size());
}

int append_to_string(void* data, const char* buf, size_t len) {
  static_cast<std::string*>(data)->append(buf, len);
  return 0;
}

uint64_t file_size(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

}  // namespace

Result<std::unique_ptr<Retention>, std::string> Retention::create(const Config& config) {
  bool archive = config.archive_after_ms > 0 || config.max_live_mb > 0;
  bool remove = config.remove_after_ms > 0 || config.max_archive_mb > 0;
  if (!archive && !remove) return std::unique_ptr<Retention>();
  if (config.seal_interval_ms == 0)
    return Err{std::string("retention (archive-after, max-live-mb, remove-after, max-archive-mb) needs sealing: "
                           "segments end at a seal and a removal is sealed; set seal-interval")};
  std::unique_ptr<Retention> r(new Retention());
  r->config_ = config;
  r->archive_dir_ = store::archive_dir(config.db_path);
  return r;
}

Retention::~Retention() { stop(); }

void Retention::start() { thread_ = std::thread([this] { run(); }); }

void Retention::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool Retention::may_remove(const std::string&, uint64_t) { return true; }

void Retention::run() {
  pthread_setname_np(pthread_self(), "cairnd-retain");
  std::unique_ptr<store::Store> ro;
  for (;;) {
    bool posted = false;
    if (!due()) {
      if (!ro) {
        auto s = store::Store::open(config_.db_path, store::OpenMode::readonly);
        if (s) ro = std::move(s.value());
        else log_msg(LogLevel::err, "retention: %s", s.error().message.c_str());
      }
      if (ro) posted = prepare(*ro);
    }
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, std::chrono::milliseconds(config_.retention_check_ms), [&] { return stopping_ || step_done_; });
    if (stopping_) break;
    step_done_ = false;  // the writer took a step: there may be more to do at once
    (void)posted;
  }
}

bool Retention::prepare(store::Store& ro) {
  auto h = ro.archived_through();
  auto rt = ro.removed_through();
  if (!h || !rt) {
    log_msg(LogLevel::err, "retention: %s", (!h ? h.error() : rt.error()).message.c_str());
    return false;
  }
  // A removal that committed before its segments were unlinked (a crash in between).
  // Only once a seal covers the removal record: until then verify still reads those
  // records from their segments (an unsealed removal is a claim nothing attests).
  auto rs = ro.removal_seq();
  int64_t sealed = scalar(ro.handle(), "SELECT IFNULL(MAX(seq), 0) FROM events WHERE type = 'cairn.seal'", 0, 0);
  bool removal_sealed = rs && rs.value() > 0 && sealed > static_cast<int64_t>(rs.value());
  if (auto segs = store::list_segments(archive_dir_); segs && removal_sealed) {
    for (const auto& f : segs.value())
      if (f.last <= rt.value())
        if (auto r = store::remove_segment(f.path); !r) log_msg(LogLevel::err, "retention: %s", r.error().c_str());
  }
  // Removal first: archive steps can follow one another for long (a backlog), and
  // segments due for removal must not wait behind them.
  if (prepare_removal(ro, h.value())) return true;
  // A segment the horizon is inside of (a run of turns cut by a stop or a crash): its
  // file is durable and holds the records still live, so the turns go on with it.
  if (auto segs = store::list_segments(archive_dir_)) {
    for (const auto& f : segs.value())
      if (f.first <= h.value() && f.last > h.value()) {
        kind_ = Kind::archive;
        first_ = f.first;
        last_ = f.last;
        what_ = f.path + " (resumed)";
        due_.store(true, std::memory_order_release);
        return true;
      }
  }
  return prepare_archive(ro, h.value());
}

bool Retention::prepare_archive(store::Store& ro, uint64_t horizon) {
  sqlite3* db = ro.handle();
  int64_t target = static_cast<int64_t>(horizon);
  std::string why;
  if (config_.archive_after_ms > 0) {
    // `received` never decreases along seq (PROTOCOL.md §4): everything below this seq
    // is older too.
    int64_t cutoff = realtime_ns() - static_cast<int64_t>(config_.archive_after_ms) * 1'000'000;
    int64_t t = scalar(db, "SELECT IFNULL(MAX(seq), 0) FROM events WHERE received < ?1", cutoff, 0);
    if (t > target) target = t, why = "age";
  }
  if (config_.max_live_mb > 0) {
    // Pages in use, not the file size: SQLite reuses the pages of deleted rows but does
    // not shrink the file, so the file alone would never fall below the cap.
    int64_t pages = scalar(db, "PRAGMA page_count", 0, 0) - scalar(db, "PRAGMA freelist_count", 0, 0);
    int64_t used = pages * scalar(db, "PRAGMA page_size", 0, 0);
    int64_t cap = static_cast<int64_t>(config_.max_live_mb) << 20;
    // Not ro.head_seq(): a read-only Store's head is the one it saw when it opened.
    int64_t live = scalar(db, "SELECT IFNULL(MAX(seq), 0) FROM events", 0, 0) - static_cast<int64_t>(horizon);
    if (used > cap && live > 0) {
      int64_t per = std::max<int64_t>(1, used / live);
      int64_t t = static_cast<int64_t>(horizon) + (used - cap) / per + 1;
      if (t > target) target = t, why = "size";
    }
  }
  if (target <= static_cast<int64_t>(horizon)) return false;
  // The segment ends at a seal: the largest one within segment-events records, or, if
  // that leaves less than a quarter segment (an epoch longer than the rest), the first
  // one past them. The newest seal always stays live.
  const int64_t quarter = static_cast<int64_t>(config_.segment_events / 4);
  int64_t newest = scalar(db, "SELECT IFNULL(MAX(seq), 0) FROM events WHERE type = 'cairn.seal'", 0, 0);
  target = std::min(target, newest - 1);  // (when everything is old, the newest seal was the pick)
  int64_t lim = std::min<int64_t>(target, static_cast<int64_t>(horizon + config_.segment_events));
  int64_t end = scalar(db, "SELECT IFNULL(MAX(seq), 0) FROM events WHERE type = 'cairn.seal' AND seq > ?1 AND seq <= ?2",
                       static_cast<int64_t>(horizon), lim);
  if (end - static_cast<int64_t>(horizon) < quarter) {
    int64_t past = scalar(db, "SELECT IFNULL(MIN(seq), 0) FROM events WHERE type = 'cairn.seal' AND seq > ?1 AND seq <= ?2",
                          lim, target);
    if (past > 0) end = past;
  }
  // Over the size cap by less than an epoch: the segment must still end at a seal, so it
  // takes the records up to the next one (the age rule never does: those may be young).
  if (end == 0 && why == "size")
    end = scalar(db, "SELECT IFNULL(MIN(seq), 0) FROM events WHERE type = 'cairn.seal' AND seq > ?1 AND seq < ?2",
                 static_cast<int64_t>(horizon), newest);
  if (end <= 0 || end >= newest) return false;
  // By age alone, a quarter segment at least: an idle log still gains a seal every
  // seal-interval, and archiving each as it ages would make one tiny file per seal.
  if (why == "age" && end - static_cast<int64_t>(horizon) < quarter) return false;
  std::vector<std::string> bodies;
  int64_t lo = 0, hi = 0;
  const int64_t t0 = monotonic_ns();
  auto b = ro.bodies(horizon + 1, static_cast<uint64_t>(end), bodies, lo, hi);
  if (!b) {
    log_msg(LogLevel::err, "retention: %s", b.error().message.c_str());
    return false;
  }
  auto w = store::write_segment(archive_dir_, horizon + 1, bodies, lo, hi, kZstdLevel);
  if (!w) {
    log_msg(LogLevel::err, "retention: %s", w.error().c_str());
    return false;
  }
  kind_ = Kind::archive;
  first_ = horizon + 1;
  last_ = static_cast<uint64_t>(end);
  what_ = w.value().path + " (" + why + ", " + std::to_string(w.value().raw_bytes) + " -> " +
          std::to_string(w.value().file_bytes) + " bytes, read + compressed + written in " +
          std::to_string((monotonic_ns() - t0) / 1'000'000) + " ms)";
  due_.store(true, std::memory_order_release);
  return true;
}

bool Retention::prepare_removal(store::Store& ro, uint64_t horizon) {
  if (config_.remove_after_ms == 0 && config_.max_archive_mb == 0) return false;
  auto rt = ro.removed_through();
  auto segs = store::list_segments(archive_dir_);
  if (!rt || !segs) return false;
  uint64_t total = 0;
  for (const auto& f : segs.value())
    if (f.first > rt.value() && f.last <= horizon) total += file_size(f.path);
  const int64_t cutoff = realtime_ns() - static_cast<int64_t>(config_.remove_after_ms) * 1'000'000;
  const uint64_t cap = config_.max_archive_mb << 20;
  uint64_t expect = rt.value() + 1;
  std::vector<store::Segment> chosen;
  std::vector<std::string> names;
  std::string why;
  for (const auto& f : segs.value()) {
    if (f.last <= rt.value() || f.last > horizon) continue;
    if (f.first != expect) break;  // only the oldest run, in order
    bool big = cap > 0 && total > cap;
    auto hdr = store::read_segment_header(f.path);
    bool old = config_.remove_after_ms > 0 && hdr && hdr.value().max_received < cutoff;
    if ((!old && !big) || !may_remove(f.path, f.last)) break;
    // Read it whole: a damaged segment is never removed (that would hide the damage).
    auto seg = store::read_segment(f.path);
    if (!seg) {
      log_msg(LogLevel::err, "retention: not removing a damaged segment: %s", seg.error().c_str());
      break;
    }
    why = old ? "age" : "size";
    total -= std::min(total, seg.value().file_bytes);
    size_t slash = f.path.rfind('/');
    names.push_back(f.path.substr(slash + 1) + " " + seal::hex(seg.value().sha256));
    expect = f.last + 1;
    chosen.push_back(std::move(seg.value()));
  }
  if (chosen.empty()) return false;
  const store::Segment& tail = chosen.back();
  uint64_t last = tail.last;
  std::string seal_body(tail.body(last));
  if (!seal::parse_seal_body(seal_body)) {
    log_msg(LogLevel::err, "retention: record %llu, the end of a segment, is not a seal; nothing removed",
            static_cast<unsigned long long>(last));
    return false;
  }
  // The compact range of records 1..last: interior nodes from the tree table (kept whole),
  // the one leaf a frontier may need (the last record, when `last` is odd) from the segment.
  auto f = seal::Frontier::load(last, [&](unsigned level, uint64_t index) -> std::optional<seal::Hash> {
    if (level == 0) return index + 1 == last ? std::optional(seal::leaf_hash(seal_body)) : std::nullopt;
    return ro.node(level, index);
  });
  if (!f) {
    log_msg(LogLevel::err, "retention: the tree of %llu records is missing a node; nothing removed",
            static_cast<unsigned long long>(last));
    return false;
  }
  std::string out;
  msgpack_packer pk;
  msgpack_packer_init(&pk, &out, &append_to_string);
  auto prev = ro.removal_seq();
  msgpack_pack_map(&pk, 7);  // keys in bytewise order (canonical body, PROTOCOL.md §4)
  pack_str(pk, "first");
  msgpack_pack_uint64(&pk, chosen.front().first);
  pack_str(pk, "frontier");
  msgpack_pack_array(&pk, f->subtrees().size());
  for (const auto& h : f->subtrees()) pack_str(pk, seal::b64(h));
  pack_str(pk, "last");
  msgpack_pack_uint64(&pk, last);
  pack_str(pk, "previous");  // the removal before this one (0: none)
  msgpack_pack_uint64(&pk, prev ? prev.value() : 0);
  pack_str(pk, "reason");
  std::string reason = why == "age" ? "remove-after " + std::to_string(config_.remove_after_ms / 1000) + "s"
                                    : "max-archive-mb " + std::to_string(config_.max_archive_mb);
  pack_str(pk, reason);
  pack_str(pk, "seal");
  pack_str(pk, seal::b64(seal_body));
  pack_str(pk, "segments");
  msgpack_pack_array(&pk, names.size());
  for (const auto& n : names) pack_str(pk, n);
  kind_ = Kind::removal;
  first_ = chosen.front().first;
  last_ = last;
  fields_ = std::move(out);
  what_ = std::to_string(names.size()) + " segment(s), " + reason;
  due_.store(true, std::memory_order_release);
  return true;
}

store::StoreResult<bool> Retention::turn(store::Store& store, const proto::Trusted& stamp) {
  if (!due()) return false;
  bool removal = kind_ == Kind::removal;
  store::StoreResult<bool> out = removal;
  if (!removal) {
    const int64_t t0 = monotonic_ns();
    auto h = store.archived_through();
    if (!h) return Err{h.error()};
    uint64_t to = std::min(last_, h.value() + kRowsPerTurn);
    auto r = store.archive_commit(to);
    if (r) turn_ns_ += monotonic_ns() - t0;
    if (r && to < last_) return false;  // more turns for this segment (due_ stays set)
    if (r) {
      log_msg(LogLevel::notice, "retention: records %llu..%llu archived into %s; rows out in %lld ms",
              static_cast<unsigned long long>(first_), static_cast<unsigned long long>(last_), what_.c_str(),
              static_cast<long long>(turn_ns_ / 1'000'000));
      turn_ns_ = 0;
    } else if (r.error().kind == store::StoreErrorKind::misuse) {
      // The horizon or the newest seal moved since the step was prepared: prepare again.
      log_msg(LogLevel::info, "retention: step dropped: %s", r.error().message.c_str());
      out = false;
    } else {
      out = Err{r.error()};
    }
  } else {
    auto r = store.append_removal(fields_, last_, stamp);
    if (r)
      log_msg(LogLevel::notice, "retention: records %llu..%llu removed for good (%s), recorded at seq %llu",
              static_cast<unsigned long long>(first_), static_cast<unsigned long long>(last_), what_.c_str(),
              static_cast<unsigned long long>(r.value()));
    else
      out = Err{r.error()};
  }
  turn_ns_ = 0;
  due_.store(false, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(mu_);
    step_done_ = true;
  }
  cv_.notify_all();
  return out;
}

}  // namespace cairn::daemon
