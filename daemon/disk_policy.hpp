// disk_policy.hpp — the disk-full settings of cairnd (issue 14 part 2); the guard that
// applies them is disk_guard.hpp.
//
//   reserve   free space cairnd keeps on the filesystem holding the database: the larger
//             of reserve_bytes and reserve_pct of the filesystem's size (0 and 0: none,
//             SQLite meets ENOSPC itself). Below it new appends are not taken; what was
//             already accepted, seals and WAL checkpoints still have the reserve to use.
//   action    what an append meets while the disk is below the reserve:
//               refuse    answered `storage_full` at once (nothing stored), named with
//                         the free and reserved bytes
//               pushback  its connection is not read any further, so the client blocks
//                         (as on a full queue); queries, stats and verify go on, on
//                         connections that are not waiting to append
//   interval  how often the filesystem is looked at (statvfs) besides every
//             DiskPolicy::check_every() bytes of appends admitted.
//
// Header-only: parsed by config_set (config.cpp) through disk_policy_set; every field
// is read on the loop thread only, so SIGHUP may change all of them (apply_reload).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace cairn::daemon {

enum class DiskFullAction { refuse, pushback };

struct DiskPolicy {
  uint64_t reserve_bytes = uint64_t{64} << 20;
  uint32_t reserve_pct = 2;
  DiskFullAction action = DiskFullAction::refuse;
  uint32_t check_interval_ms = 1000;

  // The reserve in bytes on a filesystem of `fs_bytes`.
  uint64_t reserve_for(uint64_t fs_bytes) const {
    uint64_t pct = fs_bytes / 100 * reserve_pct;
    return pct > reserve_bytes ? pct : reserve_bytes;
  }
  // Appended bytes admitted between two looks at the filesystem (besides the timer): a
  // sixteenth of the reserve, within 64 KiB..4 MiB, so a burst cannot eat the reserve
  // between two ticks of the timer, and a quiet log costs no syscall per event.
  static uint64_t check_every(uint64_t reserve) {
    uint64_t n = reserve / 16;
    if (n < (uint64_t{64} << 10)) return uint64_t{64} << 10;
    if (n > (uint64_t{4} << 20)) return uint64_t{4} << 20;
    return n;
  }
  // Hysteresis: once below the reserve, appends are taken again only when this much
  // more than the reserve is free (an eighth of it, at least 1 MiB), so a log that
  // hovers at the threshold does not flap between refusing and accepting.
  static uint64_t resume_margin(uint64_t reserve) {
    uint64_t m = reserve / 8;
    return m < (uint64_t{1} << 20) ? uint64_t{1} << 20 : m;
  }
};

inline const char* disk_full_action_name(DiskFullAction a) {
  return a == DiskFullAction::pushback ? "pushback" : "refuse";
}

inline constexpr std::string_view kDiskPolicyNames[] = {
    "disk-reserve", "disk-full-action", "disk-check-interval-ms"};

// Spliced into kUsage (config.cpp) as a string literal.
#define CAIRN_DISK_POLICY_USAGE \
    "  --disk-reserve SIZE[,PCT%] free space kept on the database's filesystem: the larger\n" \
    "                             of SIZE (bytes, or with K/M/G/T) and PCT% of the\n" \
    "                             filesystem; 0: none [64M,2%]\n" \
    "  --disk-full-action ACTION  below the reserve, appends are: refuse (answered\n" \
    "                             storage_full) | pushback (not read: clients block) [refuse]\n" \
    "  --disk-check-interval-ms MS  how often free space is looked at, besides every few\n" \
    "                             MiB appended [1000]\n"

// "64M,2%" — the way a config file line spells the policy's reserve.
inline std::string disk_reserve_text(const DiskPolicy& p) {
  std::string out;
  uint64_t b = p.reserve_bytes;
  const char* units = "KMGT";
  int u = -1;
  while (b != 0 && b % 1024 == 0 && u < 3) {
    b /= 1024;
    ++u;
  }
  out = std::to_string(b);
  if (u >= 0) out += units[u];
  if (p.reserve_pct != 0) out += "," + std::to_string(p.reserve_pct) + "%";
  return out;
}

// Sets `key` if it is one of ours: nullopt when it is not, else an empty string on
// success or the message naming what is wrong.
inline std::optional<std::string> disk_policy_set(DiskPolicy& p, std::string_view key,
                                                  const std::string& v) {
  const std::string k(key);
  if (key == "disk-reserve") {
    // One size and/or one percentage, comma-separated, in any order.
    DiskPolicy next = p;
    next.reserve_bytes = 0;
    next.reserve_pct = 0;
    bool had_size = false, had_pct = false;
    size_t start = 0;
    if (v.empty()) return k + ": empty value (0 turns the reserve off)";
    while (start <= v.size()) {
      size_t comma = v.find(',', start);
      if (comma == std::string::npos) comma = v.size();
      std::string item = v.substr(start, comma - start);
      while (!item.empty() && item.front() == ' ') item.erase(item.begin());
      while (!item.empty() && item.back() == ' ') item.pop_back();
      start = comma + 1;
      errno = 0;
      char* end = nullptr;
      unsigned long long n = std::strtoull(item.c_str(), &end, 10);
      if (item.empty() || item[0] < '0' || item[0] > '9' || errno != 0 || end == item.c_str())
        return k + ": '" + item + "' is not a size (64M, 1G, 67108864) or a percentage (2%)";
      std::string unit(end);
      if (unit == "%") {
        if (had_pct) return k + ": '" + v + "' names two percentages";
        if (n > 50) return k + ": " + item + " is over 50%";
        next.reserve_pct = static_cast<uint32_t>(n);
        had_pct = true;
        continue;
      }
      if (had_size) return k + ": '" + v + "' names two sizes";
      int shift = 0;
      if (unit == "" || unit == "B") shift = 0;
      else if (unit == "K" || unit == "KiB") shift = 10;
      else if (unit == "M" || unit == "MiB") shift = 20;
      else if (unit == "G" || unit == "GiB") shift = 30;
      else if (unit == "T" || unit == "TiB") shift = 40;
      else return k + ": '" + item + "' has an unknown unit (K, M, G, T or %)";
      if (n > (uint64_t{1} << 50) >> shift) return k + ": " + item + " is over 1 PiB";
      next.reserve_bytes = static_cast<uint64_t>(n) << shift;
      had_size = true;
    }
    p = next;
    return std::string();
  }
  if (key == "disk-full-action") {
    if (v == "refuse") p.action = DiskFullAction::refuse;
    else if (v == "pushback") p.action = DiskFullAction::pushback;
    else return k + ": '" + v + "' is not refuse or pushback";
    return std::string();
  }
  if (key == "disk-check-interval-ms") {
    errno = 0;
    char* end = nullptr;
    unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || v[0] == '-' || errno != 0 || end == nullptr || *end != '\0')
      return k + ": '" + v + "' is not a number";
    if (n < 10 || n > 60'000) return k + ": " + v + " is out of range 10..60000";
    p.check_interval_ms = static_cast<uint32_t>(n);
    return std::string();
  }
  return std::nullopt;
}

}  // namespace cairn::daemon
