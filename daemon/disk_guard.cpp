#include "disk_guard.hpp"

#include <sqlite3.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "../protocol/message.hpp"
#include "log.hpp"
#include "session.hpp"

namespace cairn::daemon {

namespace {

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string mib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

}  // namespace

DiskGuard::DiskGuard(uv_loop_t* loop, const Config& config)
    : loop_(loop), config_(config), dir_(dir_of(config.db_path)) {}

int DiskGuard::start() {
  look();
  int rc = uv_timer_init(loop_, &timer_);
  if (rc < 0) return rc;
  timer_.data = this;
  timer_ms_ = config_.disk.check_interval_ms;
  rc = uv_timer_start(&timer_, &DiskGuard::on_timer, timer_ms_, timer_ms_);
  if (rc < 0) return rc;
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
  timer_on_ = true;
  // The reserve is what carries the writer's queue (accepted before the disk was seen
  // below it) to disk. A queue that can outgrow it can meet ENOSPC: not unsafe (those
  // events fail storage_failed, never acked), but worth a word.
  uint64_t stored_queue = config_.queue_max_bytes * 2;  // a stored event takes ~2x its body
  if (reserve_ != 0 && reserve_ < stored_queue)
    log_msg(LogLevel::warning,
            "disk-reserve (%llu bytes here) is below twice queue-max-bytes (%llu): events queued "
            "when the disk reaches the reserve may meet ENOSPC (answered storage_failed, never acked)",
            static_cast<unsigned long long>(reserve_), static_cast<unsigned long long>(config_.queue_max_bytes));
  return 0;
}

void DiskGuard::on_timer(uv_timer_t* t) noexcept { static_cast<DiskGuard*>(t->data)->look(); }

bool DiskGuard::admit(size_t bytes, bool draining) {
  since_look_ += bytes;
  if (since_look_ >= DiskPolicy::check_every(reserve_) || enospc_seen_.load(std::memory_order_relaxed))
    look();
  if (!full_) return true;
  // Pushback: the session did not take this frame off its buffer while we were full
  // (holding()); one that did slipped in at the look that found the disk full, and the
  // reserve is there for it. During a drain nothing waits: it would stall the shutdown.
  if (config_.disk.action == DiskFullAction::pushback && !draining) return true;
  ++refusals_;
  return false;
}

bool DiskGuard::is_append(std::span<const uint8_t> payload, uint32_t max_depth) {
  auto d = proto::Decoded::parse(payload, max_depth);
  if (!d) return false;
  auto r = proto::request_from(d.value());
  return r && r.value().op == proto::Op::append;
}

void DiskGuard::hold(Session* s) {
  if (std::find(held_.begin(), held_.end(), s) == held_.end()) held_.push_back(s);
}

void DiskGuard::forget(Session* s) { std::erase(held_, s); }

void DiskGuard::release_held() {
  std::vector<Session*> resume;
  resume.swap(held_);
  for (Session* s : resume) s->resume_disk();  // one still held goes back on the list
}

void DiskGuard::note_store_error(int sqlite_code) {
  if ((sqlite_code & 0xff) != SQLITE_FULL) return;
  // Only a filesystem that statvfs shows full (below the level the guard would resume
  // at) is waited out. ENOSPC with room left (a quota, a thin volume, an injected fault)
  // is a disk that fails: it stays on the storage_failed path, where three failed
  // transactions in a row make cairnd exit for systemd to restart it. A failure path:
  // the syscall costs nothing here.
  struct statvfs st {};
  if (statvfs(dir_.c_str(), &st) == 0 &&
      static_cast<uint64_t>(st.f_bavail) * st.f_frsize >= resume_at_.load(std::memory_order_relaxed))
    return;
  // Writer first, then the loop's hint: a loop that sees the hint sees the block.
  blocked_.store(true, std::memory_order_relaxed);
  enospc_seen_.store(true, std::memory_order_release);
}

// One look at the filesystem, and the transitions it implies (each logged once).
void DiskGuard::look() {
  since_look_ = 0;
  const DiskPolicy& p = config_.disk;
  struct statvfs st {};
  bool seen = statvfs(dir_.c_str(), &st) == 0;
  if (!seen) {
    int e = errno;
    if (e != statvfs_errno_)
      log_msg(LogLevel::warning, "cannot read the free space of %s: %s; the disk reserve is not applied until it can",
              dir_.c_str(), std::strerror(e));
    statvfs_errno_ = e;
  } else {
    if (statvfs_errno_ != 0) log_msg(LogLevel::notice, "free space of %s readable again", dir_.c_str());
    statvfs_errno_ = 0;
    free_ = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
    fs_bytes_ = static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
  }
  reserve_ = p.reserve_for(fs_bytes_);
  const bool enospc = enospc_seen_.exchange(false, std::memory_order_acquire);
  const uint64_t resume_at = reserve_ + DiskPolicy::resume_margin(reserve_);
  resume_at_.store(resume_at, std::memory_order_relaxed);
  if (!full_ && (enospc || (seen && free_ < reserve_))) {
    full_ = true;
    enospc_full_ = enospc;
    const char* what = p.action == DiskFullAction::pushback
                           ? "appends are pushed back (connections with an append to send are not read)"
                           : "appends are refused with storage_full";
    if (enospc)
      log_msg(LogLevel::err,
              "disk full: writing %s met ENOSPC (%llu bytes free, reserve %llu); %s until %llu bytes are free",
              config_.db_path.c_str(), static_cast<unsigned long long>(free_),
              static_cast<unsigned long long>(reserve_), what, static_cast<unsigned long long>(resume_at));
    else
      log_msg(LogLevel::warning,
              "disk full: %s has %llu bytes free, below the reserve of %llu (disk-reserve %s); %s until "
              "%llu bytes are free",
              dir_.c_str(), static_cast<unsigned long long>(free_), static_cast<unsigned long long>(reserve_),
              disk_reserve_text(p).c_str(), what, static_cast<unsigned long long>(resume_at));
  } else if (full_ && enospc) {
    enospc_full_ = true;  // still full: a writer that met ENOSPC again changes nothing
  } else if (full_ && seen && free_ >= resume_at) {
    full_ = false;
    enospc_full_ = false;
    blocked_.store(false, std::memory_order_relaxed);
    log_msg(LogLevel::notice, "disk space back: %s has %llu bytes free (reserve %llu); appends accepted again (%llu refused so far)",
            dir_.c_str(), static_cast<unsigned long long>(free_), static_cast<unsigned long long>(reserve_),
            static_cast<unsigned long long>(refusals_));
  }
  // Not holding (space back, or a reload switched to refuse): waiting sessions go on,
  // and what they send next is admitted or refused like any other append.
  if (!holding() && !held_.empty()) release_held();
  if (timer_on_ && timer_ms_ != p.check_interval_ms) {
    timer_ms_ = p.check_interval_ms;
    uv_timer_start(&timer_, &DiskGuard::on_timer, timer_ms_, timer_ms_);
  }
}

std::string DiskGuard::refusal_message() const {
  std::string where = "the filesystem holding " + config_.db_path;
  std::string state = enospc_full_ ? where + " is full (ENOSPC): " + std::to_string(free_) + " bytes free"
                                   : where + " has " + std::to_string(free_) +
                                         " bytes free, below cairnd's reserve";
  return state + " of " + std::to_string(reserve_) + " bytes (disk-reserve); " +
         std::to_string(reserve_ + DiskPolicy::resume_margin(reserve_)) +
         " bytes must be free before appends are taken again. This event was not stored: free space, then resend it";
}

DiskFigures DiskGuard::figures() const {
  DiskFigures f;
  f.free_bytes = free_;
  f.reserve_bytes = reserve_;
  f.full = full_;
  f.action = disk_full_action_name(config_.disk.action);
  f.refusals = refusals_;
  f.held = held_.size();
  return f;
}

std::string DiskGuard::status_note() const {
  if (!full_) return {};
  std::string s = "DISK FULL: " + mib(free_) + " free, reserve " + mib(reserve_) + "; appends ";
  if (config_.disk.action == DiskFullAction::pushback)
    s += "pushed back (" + std::to_string(held_.size()) + " connections waiting)";
  else
    s += "refused storage_full (" + std::to_string(refusals_) + " so far)";
  return s;
}

}  // namespace cairn::daemon
