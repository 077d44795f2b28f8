// record.hpp — auditd's text records, parsed, grouped into events and mapped to cairn
// events. No I/O: main.cpp feeds lines in, sender.cpp takes events out.
//
// Glossary:
//   record  one line as auditd hands it to a plugin in its string format:
//           `[node=NAME ]type=TYPE msg=audit(SECONDS.MS:SERIAL): key=value ...`, where a
//           user-space message carries its own pairs inside msg='...', and an ENRICHED
//           log_format adds interpreted fields after a 0x1D byte.
//   group   the records of one auditd event (same node and serial): a SYSCALL with its
//           EXECVE, CWD, PATH, PROCTITLE ... records, ended by EOE; user-space messages
//           (USER_LOGIN ...) are groups of one.
//   mapped  the cairn event for a group: type "auditd.<TYPE>", actor/action/target/
//           outcome from the record's fields, the fields themselves, and the raw lines.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::audisp {

struct Record {
  std::string node;       // from a node= prefix; empty without one
  std::string type;       // USER_LOGIN, SYSCALL, ...
  int64_t time_ns = 0;    // from msg=audit(SECONDS.MS:SERIAL)
  uint64_t serial = 0;
  // key=value pairs in order, the msg='...' pairs of a user-space message flattened in,
  // hex-encoded untrusted strings (acct, exe, cmd, a0 ...) decoded when printable text.
  std::vector<std::pair<std::string, std::string>> fields;
  std::string raw;        // the line as received (without the newline)

  const std::string* get(std::string_view key) const;
};

// Parses one line; nullopt if it is not an auditd record (it is then counted, not sent).
std::optional<Record> parse_record(std::string_view line);

struct Mapped {
  std::string type;       // "auditd.<TYPE>"
  std::string actor, action, target;
  const char* outcome = nullptr;  // "success", "failure" or nullptr (unknown)
  int severity = 0;       // CAIRN_SEV_* or 0 (daemon default, info)
  bool sync = false;      // failures, anomalies, auditd's own errors: durable ack always
  int64_t time_ns = 0;
  std::string fields;     // encoded msgpack map: record fields, node, serial, raw lines
};

// Whether a record type stands alone (a user-space or daemon message, never followed
// by records of the same event) rather than opening a kernel event that EOE closes.
bool standalone(std::string_view type);

// The cairn event for a group, or nullopt when no record in it is one cairn records
// (with `all`, every group is recorded).
std::optional<Mapped> map_group(const std::vector<Record>& group, bool all);

// Makes `s` acceptable to cairn's text rules (max_string bytes, no control characters):
// control bytes and non-ASCII become \xNN. auditd's own text is ASCII.
std::string sanitize(std::string_view s, size_t max = 1000);

}  // namespace cairn::audisp
