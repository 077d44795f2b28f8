// event.hpp — the audit event: validation rules and canonical encoding (PROTOCOL.md §3-4).
//
// Glossary:
//   Event      what a client asked to record, validated, owning its bytes.
//   Trusted    what the daemon stamps: receive time and the peer's pid/uid/gid/comm.
//   body       the canonical MessagePack encoding of Event + Trusted; it is what the
//              store keeps and what the hash chain covers. Same event -> same bytes.
//   Violation  why an event was refused: the field path, a stable rule name, and a
//              sentence for humans.
#pragma once

#include <msgpack.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "result.hpp"

namespace cairn::proto {

struct Limits {
  uint32_t max_frame = 64 * 1024;  // bytes of one request frame payload
  uint32_t max_string = 1024;      // bytes of any one string value
  uint32_t max_fields = 64;        // entries in `fields` (and in each nested map/array)
  uint32_t max_depth = 4;          // nesting depth of `fields` (the fields map itself is 1)
};

enum class Outcome : uint8_t { unknown = 0, success = 1, failure = 2 };
std::string_view outcome_name(Outcome o);
std::optional<Outcome> outcome_from_name(std::string_view s);

// Syslog severities 0..7 and their names ("emerg" .. "debug"; "err"/"error",
// "warning"/"warn" and "crit"/"critical" are accepted on input; output uses the first).
inline constexpr uint8_t kSeverityInfo = 6;
std::string_view severity_name(uint8_t severity);
std::optional<uint8_t> severity_from_name(std::string_view s);

struct Event {
  std::string type;  // 1..64 chars of [A-Za-z0-9_.:-]
  uint8_t severity = kSeverityInfo;
  std::optional<std::string> actor;
  std::optional<std::string> action;
  std::optional<std::string> target;
  Outcome outcome = Outcome::unknown;
  std::optional<int64_t> time;  // client's event time, ns since the Unix epoch
  std::optional<std::string> message;
  std::string fields;  // canonical msgpack of the fields map; empty when absent
  bool sync = false;   // client asks for a durable ack for this event
  std::string idem;    // idempotency key, 8..32 raw bytes; empty when absent
};

struct Trusted {
  int64_t received = 0;  // ns since the Unix epoch, daemon clock
  uint32_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  // /proc/<pid>/comm of the peer at connect time; may be empty. The process chooses
  // it (prctl PR_SET_NAME): a hint, never an identity. exe and cgroup are what it
  // cannot choose, read at connect time too (empty when unreadable).
  std::string comm;
  std::string exe;     // /proc/<pid>/exe: the executable's path
  std::string cgroup;  // the unified-hierarchy line of /proc/<pid>/cgroup: the systemd
                       // unit (system.slice/sshd.service) or user session it runs in
};

struct Violation {
  std::string field;    // "actor", "fields.user.name", "event" for the map itself
  std::string rule;     // stable: required, type, utf8, control_char, bidi, bom,
                        // too_long, pattern, range, unknown_key, trusted_field,
                        // too_many_entries, too_deep, duplicate_key, empty
  std::string message;  // "actor: control character U+001B at byte 3 is not allowed"
};

// Validates an event map (the value of "event" in an append request). Never trusts,
// never strips: the first rule broken is reported and nothing is returned.
Result<Event, Violation> event_from_msgpack(const msgpack_object& obj, const Limits& limits);

// Checks one string value against the text rules (UTF-8, no C0 controls but TAB, no
// LF/CR unless allow_newlines, no bidi overrides U+202A-202E / U+2066-2069, no BOM,
// at most max_bytes). Returns the rule broken and a message, field left empty.
std::optional<Violation> check_text(std::string_view s, uint32_t max_bytes, bool allow_newlines);

// An untrusted string made safe to echo in a Violation's field or message (replies are
// msgpack str, which clients decode as UTF-8, and the CLI prints them on a terminal).
// Text that passes check_text and fits in max_shown bytes is returned unchanged; anything
// else has every byte outside printable ASCII (and '\') written as \xNN, cut to
// max_shown input bytes followed by "...".
std::string text_for_display(std::string_view s, size_t max_shown = 64);

// The canonical body: a msgpack map with keys in this fixed order, optional ones
// omitted when absent: type, severity, actor, action, target, outcome, time, message,
// fields, idem, received, pid, uid, gid, comm, exe, cgroup (the last two only when
// known). Integers in their shortest form.
// `received_at`, if given, gets the offset of the 8-byte big-endian value of `received`
// (after its 0xcf marker) when it is encoded as a uint64 (any time after 1970-01-01
// 00:00:04), else 0: cairnd's writer stamps the final time there when it appends.
std::string event_canonical_body(const Event& event, const Trusted& trusted, size_t* received_at = nullptr);

// "YYYY-MM-DD HH:MM:SS UTC" for ns since the Unix epoch (verify's notes, CLI reports).
std::string utc_text(int64_t ns);

// The critical set used by hybrid mode when none is configured.
inline constexpr std::string_view kDefaultCriticalTypes[] = {
    "AuthFailure",           "TokenRevoked",      "PolicyViolation",
    "SealVerificationFailed", "PathTraversalAttempt", "InvalidTokenUsed",
    "SuspiciousActivity",    "IntegrityViolation", "MalformedModelRejected",
    "ResourceLimitViolation",
};

}  // namespace cairn::proto
