// record.cpp — parse auditd's string records, group them, map groups to cairn events.
// See record.hpp for the glossary. Limits: a mapped event carries at most 56 of a
// record's pairs, 16 path names and 48 raw chunks of 1000 bytes (cairn: ≤ 64 entries per
// map or array, ≤ 1024 bytes per string, 64 KiB per frame); what is cut is said in the
// event (fields truncated:true).
#include "record.hpp"

#include <msgpack.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <set>

#include <cairn/cairn.h>

namespace cairn::audisp {

namespace {

constexpr size_t kMaxPairs = 56;
constexpr size_t kMaxPaths = 16;
constexpr size_t kMaxRawChunks = 48;
constexpr size_t kChunk = 1000;

// Fields auditd writes through audit_log_untrustedstring / audit_encode_value: quoted
// when plain, hex when they hold a space, quote or control character.
bool untrusted(std::string_view key) {
  static const std::set<std::string_view> keys = {"acct", "exe", "cmd", "comm", "cwd", "name",
                                                  "proctitle", "data", "path", "key", "old", "new",
                                                  "grp", "id", "terminal", "hostname"};
  if (keys.count(key)) return true;
  if (key.size() >= 2 && key[0] == 'a' && std::isdigit(static_cast<unsigned char>(key[1]))) return true;
  return false;
}

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Decodes a hex value into printable ASCII (NULs, as in proctitle, become spaces);
// nullopt when it is not hex or would not be printable text (kept as hex then).
std::optional<std::string> unhex(std::string_view v) {
  if (v.size() < 2 || v.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(v.size() / 2);
  for (size_t i = 0; i < v.size(); i += 2) {
    int hi = hexval(v[i]), lo = hexval(v[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    auto c = static_cast<unsigned char>(hi * 16 + lo);
    if (c == 0) c = ' ';
    if (c < 0x20 || c >= 0x7f) return std::nullopt;
    out.push_back(static_cast<char>(c));
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

void add_pair(Record& r, std::string key, std::string value) {
  // cairn refuses a key twice in one map: a repeat (outer uid vs msg's uid) gets a suffix.
  std::string k = key;
  for (int n = 2; std::any_of(r.fields.begin(), r.fields.end(), [&](auto& p) { return p.first == k; }); ++n)
    k = key + "_" + std::to_string(n);
  r.fields.emplace_back(std::move(k), std::move(value));
}

// Reads `key=value` pairs; a msg='...' value is parsed as pairs itself (user messages).
// Tokens without '=' (AVC's "avc:", "denied", "{ read }") are collected in `words`.
void parse_pairs(std::string_view s, Record& r, std::string* words, int depth) {
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    if (i >= s.size()) break;
    size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '=') ++i;
    if (i >= s.size() || s[i] == ' ') {
      if (words) {
        if (!words->empty()) words->push_back(' ');
        words->append(s.substr(start, i - start));
      }
      continue;
    }
    std::string key(s.substr(start, i - start));
    ++i;  // '='
    std::string value;
    bool quoted = false;
    if (i < s.size() && (s[i] == '"' || s[i] == '\'')) {
      char q = s[i++];
      size_t end = s.find(q, i);
      if (end == std::string_view::npos) end = s.size();
      value.assign(s.substr(i, end - i));
      i = end + 1;
      quoted = true;
      if (q == '\'' && key == "msg" && depth == 0) {
        parse_pairs(value, r, words, depth + 1);
        continue;
      }
    } else {
      size_t end = s.find(' ', i);
      if (end == std::string_view::npos) end = s.size();
      value.assign(s.substr(i, end - i));
      i = end;
    }
    if (key.empty()) continue;
    if (!quoted && untrusted(key) && value != "?" && value != "(null)")
      if (auto d = unhex(value)) value = std::move(*d);
    add_pair(r, std::move(key), std::move(value));
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// Record types cairn records by default (plus every DAEMON_* and ANOM_*).
bool wanted(std::string_view t) {
  static const std::set<std::string_view> types = {
      "USER_LOGIN", "USER_LOGOUT", "USER_AUTH", "USER_ACCT", "USER_CMD", "USER_START", "USER_END",
      "USER_CHAUTHTOK", "USER_ERR", "USER_MGMT", "USER_ROLE_CHANGE", "USER_AVC", "USER_SELINUX_ERR",
      "CRED_ACQ", "CRED_REFR", "ADD_USER", "DEL_USER", "ADD_GROUP", "DEL_GROUP", "GRP_MGMT",
      "GRP_CHAUTHTOK", "ACCT_LOCK", "ACCT_UNLOCK", "ROLE_ASSIGN", "ROLE_REMOVE", "AVC",
      "SELINUX_ERR", "APPARMOR_DENIED", "EXECVE", "CONFIG_CHANGE", "SYSTEM_BOOT", "SYSTEM_SHUTDOWN",
      "SYSTEM_RUNLEVEL", "LOGIN", "INTEGRITY_RULE", "CRYPTO_KEY_USER", "CRYPTO_SESSION"};
  return types.count(t) || starts_with(t, "DAEMON_") || starts_with(t, "ANOM_");
}

struct Packer {
  msgpack_sbuffer buf;
  msgpack_packer pk;
  Packer() {
    msgpack_sbuffer_init(&buf);
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
  }
  ~Packer() { msgpack_sbuffer_destroy(&buf); }
  Packer(const Packer&) = delete;
  Packer& operator=(const Packer&) = delete;
  void str(std::string_view s) {
    msgpack_pack_str(&pk, s.size());
    msgpack_pack_str_body(&pk, s.data(), s.size());
  }
};

}  // namespace

const std::string* Record::get(std::string_view key) const {
  for (const auto& [k, v] : fields)
    if (k == key) return &v;
  return nullptr;
}

std::optional<Record> parse_record(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  Record r;
  r.raw.assign(line);
  std::string_view enriched;
  if (size_t gs = line.find('\x1d'); gs != std::string_view::npos) {
    enriched = line.substr(gs + 1);
    line = line.substr(0, gs);
  }
  if (starts_with(line, "node=")) {
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) return std::nullopt;
    r.node.assign(line.substr(5, sp - 5));
    line.remove_prefix(sp + 1);
  }
  if (!starts_with(line, "type=")) return std::nullopt;
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  r.type.assign(line.substr(5, sp - 5));
  line.remove_prefix(sp + 1);
  if (!starts_with(line, "msg=audit(")) return std::nullopt;
  line.remove_prefix(10);
  size_t close = line.find(')');
  if (close == std::string_view::npos) return std::nullopt;
  std::string stamp(line.substr(0, close));
  unsigned long long sec = 0, serial = 0;
  unsigned ms = 0;
  if (std::sscanf(stamp.c_str(), "%llu.%u:%llu", &sec, &ms, &serial) != 3 || r.type.empty())
    return std::nullopt;
  r.time_ns = static_cast<int64_t>(sec) * 1'000'000'000 + static_cast<int64_t>(ms) * 1'000'000;
  r.serial = serial;
  line.remove_prefix(close + 1);
  if (starts_with(line, ":")) line.remove_prefix(1);
  std::string words;
  parse_pairs(line, r, &words, 0);
  if (!words.empty()) add_pair(r, "text", words);  // AVC: "avc: denied { read } for"
  if (!enriched.empty()) parse_pairs(enriched, r, nullptr, 1);  // UID="root" AUID="alice" ...
  return r;
}

bool standalone(std::string_view t) {
  return starts_with(t, "USER_") || starts_with(t, "DAEMON_") || starts_with(t, "CRED_") ||
         starts_with(t, "ANOM_LOGIN") || t == "ADD_USER" || t == "DEL_USER" || t == "ADD_GROUP" ||
         t == "DEL_GROUP" || t == "GRP_MGMT" || t == "GRP_CHAUTHTOK" || t == "ACCT_LOCK" ||
         t == "ACCT_UNLOCK" || t == "SYSTEM_BOOT" || t == "SYSTEM_SHUTDOWN" ||
         t == "SYSTEM_RUNLEVEL" || t == "ROLE_ASSIGN" || t == "ROLE_REMOVE" ||
         t == "CRYPTO_KEY_USER" || t == "CRYPTO_SESSION";
}

std::string sanitize(std::string_view s, size_t max) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max) break;
    if (c < 0x20 || c >= 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (out.size() > max) out.resize(max);
  return out;
}

std::optional<Mapped> map_group(const std::vector<Record>& group, bool all) {
  if (group.empty()) return std::nullopt;
  const Record* primary = nullptr;
  const Record* syscall = nullptr;
  const Record* cwd = nullptr;
  std::vector<const Record*> paths;
  for (const auto& r : group) {
    if (r.type == "SYSCALL") syscall = &r;
    else if (r.type == "CWD") cwd = &r;
    else if (r.type == "PATH") paths.push_back(&r);
  }
  // An event's meaning comes from its most specific record: EXECVE, an AVC, then the
  // first one cairn records; a SYSCALL that a rule's key marked (a watched path) next.
  for (const char* t : {"EXECVE", "AVC", "APPARMOR_DENIED", "SELINUX_ERR"})
    for (const auto& r : group)
      if (!primary && r.type == t) primary = &r;
  for (const auto& r : group)
    if (!primary && wanted(r.type)) primary = &r;
  const std::string* rule_key = syscall ? syscall->get("key") : nullptr;
  if (!primary && syscall && rule_key && *rule_key != "(null)") primary = syscall;
  if (!primary && all) primary = &group.front();
  if (!primary) return std::nullopt;

  Mapped m;
  const std::string& t = primary->type;
  m.type = "auditd." + sanitize(t, 56);
  m.time_ns = primary->time_ns;
  auto val = [](const Record* r, std::string_view k) -> std::string {
    if (!r) return {};
    const std::string* v = r->get(k);
    return v && *v != "?" && *v != "(null)" ? *v : std::string();
  };
  // Who: a login name where the record has one (acct, the enriched AUID), else the
  // audit uid. What: the op, or the record type. To what: the program or the object.
  std::string acct = val(primary, "acct");
  std::string auid = val(primary, "AUID").empty() ? val(syscall ? syscall : primary, "auid")
                                                  : val(primary, "AUID");
  if (auid.empty()) auid = val(primary, "auid");
  if (auid == "4294967295") auid = "unset";
  std::string op = val(primary, "op");
  m.action = op.empty() ? lower(t) : op;
  if (t == "ADD_USER" || t == "DEL_USER" || t == "ADD_GROUP" || t == "DEL_GROUP" || t == "USER_MGMT" ||
      t == "GRP_MGMT") {
    m.actor = auid;  // the admin; the account changed is the target
    m.target = !acct.empty() ? acct : val(primary, "id");
  } else if (t == "EXECVE" || primary == syscall) {
    m.actor = auid;
    m.target = val(syscall, "exe");
    if (m.target.empty()) m.target = val(primary, "a0");
    if (t == "EXECVE") m.action = "execve";
    else m.action = "syscall " + (val(syscall, "SYSCALL").empty() ? val(syscall, "syscall") : val(syscall, "SYSCALL"));
  } else if (t == "AVC" || t == "USER_AVC" || t == "APPARMOR_DENIED" || t == "SELINUX_ERR") {
    m.actor = val(primary, "comm");
    if (m.actor.empty()) m.actor = auid;
    m.target = val(primary, "name");
    if (m.target.empty() && !paths.empty()) m.target = val(paths.front(), "name");
    m.action = lower(t);
  } else if (starts_with(t, "DAEMON_")) {
    m.actor = "auditd";
  } else {
    m.actor = !acct.empty() ? acct : auid;
    m.target = t == "USER_CMD" ? val(primary, "cmd") : val(primary, "exe");
  }
  // Outcome: res= (user messages), success= (syscalls), the AVC decision.
  std::string res = val(primary, "res");
  std::string success = val(syscall, "success");
  const std::string text = val(primary, "text");
  if (res == "success" || res == "1" || res == "yes") m.outcome = "success";
  else if (res == "failed" || res == "0" || res == "no") m.outcome = "failure";
  else if (text.find("denied") != std::string::npos || t == "APPARMOR_DENIED" || t == "SELINUX_ERR") m.outcome = "failure";
  else if (text.find("granted") != std::string::npos) m.outcome = "success";
  else if (success == "yes") m.outcome = "success";
  else if (success == "no") m.outcome = "failure";
  bool anomaly = starts_with(t, "ANOM_");
  bool daemon_trouble = t == "DAEMON_ERR" || t == "DAEMON_ABORT";
  if (anomaly) m.severity = CAIRN_SEV_ALERT;
  else if (daemon_trouble) m.severity = CAIRN_SEV_ERR;
  else if (m.outcome && std::strcmp(m.outcome, "failure") == 0) m.severity = CAIRN_SEV_WARNING;
  else if (starts_with(t, "DAEMON_")) m.severity = CAIRN_SEV_NOTICE;
  m.sync = m.severity != 0 && m.severity <= CAIRN_SEV_WARNING;
  m.actor = sanitize(m.actor);
  m.action = sanitize(m.action);
  m.target = sanitize(m.target);

  // fields: the SYSCALL's pairs and the primary record's, then what EXECVE, CWD and
  // PATH records add, then node, serial and the raw lines.
  std::vector<std::pair<std::string, std::string>> pairs;
  bool truncated = false;
  auto take = [&](const Record* r) {
    if (!r) return;
    for (const auto& [k, v] : r->fields) {
      if (k == "text" && r != primary) continue;
      std::string key = sanitize(k, 64);
      if (std::any_of(pairs.begin(), pairs.end(), [&](auto& p) { return p.first == key; })) continue;
      if (pairs.size() >= kMaxPairs) {
        truncated = true;
        return;
      }
      pairs.emplace_back(std::move(key), sanitize(v));
    }
  };
  if (t == "EXECVE") {
    std::string command;
    for (size_t i = 0;; ++i) {
      const std::string* a = primary->get("a" + std::to_string(i));
      if (!a) break;
      if (!command.empty()) command.push_back(' ');
      command += *a;
    }
    pairs.emplace_back("command", sanitize(command));
    if (command.size() > 1000) truncated = true;
    take(syscall);
    // EXECVE's own pairs are argc and a0..aN, already in `command`.
  } else {
    take(syscall != primary ? syscall : nullptr);
    take(primary);
  }
  if (cwd && !val(cwd, "cwd").empty() && !std::any_of(pairs.begin(), pairs.end(), [](auto& p) { return p.first == "cwd"; }))
    pairs.emplace_back("cwd", sanitize(val(cwd, "cwd")));

  // The raw lines, each cut into chunks cairn accepts; a line's chunks are consecutive.
  std::vector<std::string> chunks;
  for (const auto& r : group) {
    std::string clean = sanitize(r.raw, SIZE_MAX);
    for (size_t at = 0; at < clean.size() || at == 0; at += kChunk) {
      if (chunks.size() == kMaxRawChunks) {
        truncated = true;
        break;
      }
      chunks.push_back(clean.substr(at, kChunk));
      if (clean.empty()) break;
    }
  }
  Packer p;
  size_t n = pairs.size() + 3 + (paths.empty() ? 0 : 1) + (truncated ? 1 : 0) + (primary->node.empty() ? 0 : 1);
  msgpack_pack_map(&p.pk, n);
  for (const auto& [k, v] : pairs) {
    p.str(k);
    p.str(v);
  }
  if (!paths.empty()) {
    p.str("paths");
    size_t np = std::min(paths.size(), kMaxPaths);
    msgpack_pack_array(&p.pk, np);
    for (size_t i = 0; i < np; ++i) p.str(sanitize(val(paths[i], "name")));
  }
  if (!primary->node.empty()) {
    p.str("node");
    p.str(sanitize(primary->node));
  }
  p.str("serial");
  msgpack_pack_uint64(&p.pk, primary->serial);
  p.str("records");
  {
    std::string types;
    for (const auto& r : group) types += (types.empty() ? "" : " ") + r.type;
    p.str(sanitize(types));
  }
  p.str("raw");
  msgpack_pack_array(&p.pk, chunks.size());
  for (const auto& c : chunks) p.str(c);
  if (truncated) {
    p.str("truncated");
    msgpack_pack_true(&p.pk);
  }
  m.fields.assign(p.buf.data, p.buf.size);
  return m;
}

}  // namespace cairn::audisp
