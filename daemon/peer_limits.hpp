// peer_limits.hpp — what one connection and one uid may hold of cairnd (issue 11).
//
// cairnd is shared by every process on the host, hostile ones included. These limits make
// a client's misbehaviour cost that client (its connection, then its uid), never the
// daemon and never another uid:
//   budget     bytes a connection holds: its requests in flight (appends until acked,
//              a reservation of max_frame for each query/stats/verify until answered)
//              plus its replies not yet written to the socket. At conn_max_bytes we stop
//              reading from it; the uid's sum stops at uid_max_bytes and all of cairnd's
//              at global_max_bytes (a uid holding less than fair_floor_bytes may always
//              go on, so a light client is never stopped by a heavy one).
//   writer     appends a uid has queued for the writer, in bytes: at uid_write_share
//              (a fraction of queue-max-bytes) that uid's connections stop reading before
//              the shared queue fills for everyone; a uid with less than
//              fair_floor_bytes queued never pauses on the shared queue's limit.
//   idle       a connection with nothing in flight, nothing buffered and nothing sent
//              for idle_timeout_ms is closed (clients reconnect and resend by idem).
//   frame      a frame begun must be complete within frame_timeout_ms; a connection
//              whose replies make no write progress for idle_timeout_ms is closed too.
//   reserved   the last reserved_connections of max-connections are only for root and
//              cairnd's own uid; they are also exempt from max-connections-per-uid.
//   rate       uid_append_rate appends per second per uid (token bucket of
//              uid_append_burst appends, 0 = one second's worth; rate 0 = no limit; root
//              and cairnd's uid are exempt). Over it, an append is refused
//              `rate_limited`, named, never dropped silently.
//
// Every limit here may change on SIGHUP (config.cpp's kLiveOptions): all are read on
// the loop thread at the moment they apply, and Server::limits_changed() restarts the
// sweep and lets paused connections look again.
//
// Header-only: parsed by config_set (config.cpp) through peer_limits_set.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace cairn::daemon {

struct PeerLimits {
  uint64_t conn_max_bytes = 4u << 20;
  uint64_t uid_max_bytes = 64u << 20;
  uint64_t global_max_bytes = 512u << 20;
  uint64_t fair_floor_bytes = 1u << 20;
  uint32_t uid_write_share_pct = 5;    // of queue-max-bytes, per unprivileged uid
  uint32_t idle_timeout_ms = 300'000;  // 0: never
  uint32_t frame_timeout_ms = 10'000;  // 0: never
  uint32_t reserved_connections = 32;
  uint32_t uid_append_rate = 0;        // events/s per unprivileged uid; 0: unlimited
  uint32_t uid_append_burst = 0;       // the bucket's size; 0: uid_append_rate (one second)
};

inline constexpr std::string_view kPeerLimitNames[] = {
    "conn-max-bytes",      "uid-max-bytes",        "global-max-bytes",
    "uid-write-share-pct", "idle-timeout-ms",      "frame-timeout-ms",
    "reserved-connections", "uid-append-rate",     "uid-append-burst",
};

// Spliced into kUsage (config.cpp) as a string literal.
#define CAIRN_PEER_LIMITS_USAGE \
    "  --conn-max-bytes BYTES     bytes one connection may hold in requests in flight and\n" \
    "                             unread replies before we stop reading it [4194304]\n" \
    "  --uid-max-bytes BYTES      the same, summed over one uid's connections [67108864]\n" \
    "  --global-max-bytes BYTES   the same, summed over all connections [536870912]\n" \
    "  --uid-write-share-pct N    % of --queue-max-bytes one unprivileged uid may fill [5]\n" \
    "  --idle-timeout-ms MS       close a connection idle this long; 0: never [300000]\n" \
    "  --frame-timeout-ms MS      close a connection whose frame is not complete this\n" \
    "                             long after it began; 0: never [10000]\n" \
    "  --reserved-connections N   of --max-connections, kept for root and cairnd's uid [32]\n" \
    "  --uid-append-rate N        appends per second per unprivileged uid, refused\n" \
    "                             `rate_limited` above it; 0: no limit [0]\n" \
    "  --uid-append-burst N       appends a uid may send at once before the rate applies;\n" \
    "                             0: one second's worth [0]\n"

// Sets `key` if it is one of ours: nullopt when it is not, else an empty string on
// success or the message naming what is wrong.
inline std::optional<std::string> peer_limits_set(PeerLimits& p, std::string_view key,
                                                  const std::string& v) {
  auto num = [&](uint64_t lo, uint64_t hi, auto& field) -> std::optional<std::string> {
    errno = 0;
    char* end = nullptr;
    unsigned long long n = std::strtoull(v.c_str(), &end, 10);
    if (v.empty() || v[0] == '-' || errno != 0 || end == nullptr || *end != '\0')
      return std::string(key) + ": '" + v + "' is not a number";
    if (n < lo || n > hi)
      return std::string(key) + ": " + v + " is out of range " + std::to_string(lo) + ".." +
             std::to_string(hi);
    field = static_cast<std::remove_reference_t<decltype(field)>>(n);
    return std::string();
  };
  if (key == "conn-max-bytes") return num(64 * 1024, uint64_t{1} << 40, p.conn_max_bytes);
  if (key == "uid-max-bytes") return num(64 * 1024, uint64_t{1} << 40, p.uid_max_bytes);
  if (key == "global-max-bytes") return num(64 * 1024, uint64_t{1} << 42, p.global_max_bytes);
  if (key == "uid-write-share-pct") return num(1, 100, p.uid_write_share_pct);
  if (key == "idle-timeout-ms") return num(0, 86'400'000, p.idle_timeout_ms);
  if (key == "frame-timeout-ms") return num(0, 86'400'000, p.frame_timeout_ms);
  if (key == "reserved-connections") return num(0, 1'000'000, p.reserved_connections);
  if (key == "uid-append-rate") return num(0, 100'000'000, p.uid_append_rate);
  if (key == "uid-append-burst") return num(0, 100'000'000, p.uid_append_burst);
  return std::nullopt;
}

}  // namespace cairn::daemon
