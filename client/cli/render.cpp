#include "render.hpp"

#include <msgpack.h>

#include "json.hpp"
#include "utf8.hpp"
#include "when.hpp"

namespace cairn::cli {

std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

std::string cell(std::string_view s, size_t max) {
  std::string out;
  size_t chars = 0, i = 0;
  char buf[16];
  while (i < s.size() && chars < max) {
    uint32_t cp = 0;
    size_t n = utf8_decode(s.substr(i), cp);
    if (n == 0) {
      // Not UTF-8 (the daemon refuses it; a damaged file might not): show the byte.
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(s[i]));
      out += buf;
      n = 1;
    } else if (unsafe_on_terminal(cp)) {
      if (cp < 0x80) std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(cp));
      else std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
      out += buf;
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
    ++chars;
  }
  if (i < s.size()) out += "…";
  return out;
}

namespace {

struct Body {
  msgpack_unpacked up;
  bool ok = false;
  explicit Body(const std::string& bytes) {
    msgpack_unpacked_init(&up);
    size_t off = 0;
    ok = msgpack_unpack_next(&up, bytes.data(), bytes.size(), &off) == MSGPACK_UNPACK_SUCCESS &&
         up.data.type == MSGPACK_OBJECT_MAP;
  }
  ~Body() { msgpack_unpacked_destroy(&up); }
  const msgpack_object* get(std::string_view k) const {
    if (!ok) return nullptr;
    return proto::map_get(up.data, k);
  }
  std::string str(std::string_view k) const {
    const msgpack_object* o = get(k);
    if (o == nullptr || o->type != MSGPACK_OBJECT_STR) return "";
    return std::string(o->via.str.ptr, o->via.str.size);
  }
  std::string num(std::string_view k) const {
    const msgpack_object* o = get(k);
    if (o == nullptr) return "";
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return std::to_string(o->via.u64);
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return std::to_string(o->via.i64);
    return "";
  }
};

}  // namespace

std::string event_json(const proto::StoredEvent& e) {
  std::string out = "{\"seq\":" + std::to_string(e.seq) + ",\"hash\":\"" +
                    hex(e.hash.data(), e.hash.size()) + "\"";
  Body b(e.body);
  if (b.ok) {
    for (uint32_t i = 0; i < b.up.data.via.map.size; ++i) {
      const auto& kv = b.up.data.via.map.ptr[i];
      if (kv.key.type != MSGPACK_OBJECT_STR) continue;
      out += ',';
      json_escape({kv.key.via.str.ptr, kv.key.via.str.size}, out);
      out += ':';
      msgpack_to_json(kv.val, out);
    }
  }
  out += '}';
  return out;
}

void EventTable::header() {
  std::fprintf(out_, "%-8s %-24s %-7s %-22s %-14s %-12s %-16s %-7s %7s %5s %-12s %s\n", "SEQ",
               "RECEIVED (UTC)", "SEV", "TYPE", "ACTOR", "ACTION", "TARGET", "OUTCOME", "PID",
               "UID", "COMM", "MESSAGE");
}

void EventTable::row(const proto::StoredEvent& e) {
  Body b(e.body);
  const msgpack_object* sev = b.get("severity");
  std::string sev_name = sev && sev->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                             ? std::string(proto::severity_name(static_cast<uint8_t>(sev->via.u64)))
                             : "";
  const msgpack_object* rec = b.get("received");
  std::string received =
      rec && rec->type == MSGPACK_OBJECT_POSITIVE_INTEGER
          ? format_utc_ms(static_cast<int64_t>(rec->via.u64))
          : "";
  std::fprintf(out_, "%-8llu %-24s %-7s %-22s %-14s %-12s %-16s %-7s %7s %5s %-12s %s\n",
               static_cast<unsigned long long>(e.seq), received.c_str(), sev_name.c_str(),
               cell(b.str("type"), 22).c_str(), cell(b.str("actor"), 14).c_str(),
               cell(b.str("action"), 12).c_str(), cell(b.str("target"), 16).c_str(),
               cell(b.str("outcome"), 7).c_str(), b.num("pid").c_str(), b.num("uid").c_str(),
               cell(b.str("comm"), 12).c_str(), cell(b.str("message"), 60).c_str());
}

void print_stats(FILE* out, const proto::Stats& s, Output mode, bool from_file) {
  if (mode == Output::json) {
    std::string j = "{\"events\":" + std::to_string(s.events) + ",\"by_type\":{";
    for (size_t i = 0; i < s.by_type.size(); ++i) {
      if (i) j += ',';
      json_escape(s.by_type[i].first, j);
      j += ':' + std::to_string(s.by_type[i].second);
    }
    if (from_file) {
      j += "},\"head_seq\":" + std::to_string(s.head_seq) +
           ",\"db_bytes\":" + std::to_string(s.db_bytes) +
           ",\"archived_through\":" + std::to_string(s.archived_through) +
           ",\"removed_through\":" + std::to_string(s.removed_through) +
           ",\"archive_segments\":" + std::to_string(s.archive_segments) +
           ",\"archive_bytes\":" + std::to_string(s.archive_bytes) + "}";
      std::fprintf(out, "%s\n", j.c_str());
      return;
    }
    char epc[32];
    std::snprintf(epc, sizeof epc, "%.2f", s.events_per_commit);
    j += "},\"head_seq\":" + std::to_string(s.head_seq) +
         ",\"queue_depth\":" + std::to_string(s.queue_depth) +
         ",\"queue_bytes\":" + std::to_string(s.queue_bytes) +
         ",\"commits\":" + std::to_string(s.commits) +
         ",\"events_committed\":" + std::to_string(s.events_committed) +
         ",\"events_per_commit\":" + epc +
         ",\"fsync_p50_us\":" + std::to_string(s.fsync_p50_us) +
         ",\"fsync_p99_us\":" + std::to_string(s.fsync_p99_us) +
         ",\"fsync_max_us\":" + std::to_string(s.fsync_max_us) +
         ",\"storage_errors\":" + std::to_string(s.storage_errors) +
         ",\"lost_nondurable\":" + std::to_string(s.lost_nondurable) +
         ",\"seals\":" + std::to_string(s.seals) +
         ",\"db_bytes\":" + std::to_string(s.db_bytes) +
         ",\"connections\":" + std::to_string(s.connections) + ",\"flush_mode\":";
    json_escape(s.flush_mode, j);
    j += ",\"uptime_s\":" + std::to_string(s.uptime_s) +
         ",\"disk_free_bytes\":" + std::to_string(s.disk_free_bytes) +
         ",\"disk_reserve_bytes\":" + std::to_string(s.disk_reserve_bytes) +
         ",\"storage_full\":" + (s.storage_full ? "true" : "false") + ",\"disk_full_action\":";
    json_escape(s.disk_full_action, j);
    j += ",\"storage_full_refusals\":" + std::to_string(s.storage_full_refusals) +
         ",\"archived_through\":" + std::to_string(s.archived_through) +
         ",\"removed_through\":" + std::to_string(s.removed_through) +
         ",\"archive_segments\":" + std::to_string(s.archive_segments) +
         ",\"archive_bytes\":" + std::to_string(s.archive_bytes) + "}";
    std::fprintf(out, "%s\n", j.c_str());
    return;
  }
  std::fprintf(out, "events            %llu (head seq %llu)\n",
               static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.head_seq));
  std::fprintf(out, "database          %.1f MiB\n", static_cast<double>(s.db_bytes) / (1 << 20));
  if (s.archived_through > 0)
    std::fprintf(out, "archive           %llu segments, %.1f MiB; seq 1..%llu archived, 1..%llu removed\n",
                 static_cast<unsigned long long>(s.archive_segments), static_cast<double>(s.archive_bytes) / (1 << 20),
                 static_cast<unsigned long long>(s.archived_through),
                 static_cast<unsigned long long>(s.removed_through));
  if (!from_file) {
    std::fprintf(out, "flush mode        %s\n", s.flush_mode.c_str());
    std::fprintf(out, "queue             %llu events, %llu bytes\n",
                 static_cast<unsigned long long>(s.queue_depth),
                 static_cast<unsigned long long>(s.queue_bytes));
    std::fprintf(out, "commits           %llu (%.1f events per commit)\n",
                 static_cast<unsigned long long>(s.commits), s.events_per_commit);
    std::fprintf(out, "commit+fsync      p50 %llu us, p99 %llu us, max %llu us\n",
                 static_cast<unsigned long long>(s.fsync_p50_us),
                 static_cast<unsigned long long>(s.fsync_p99_us),
                 static_cast<unsigned long long>(s.fsync_max_us));
    std::fprintf(out, "storage errors    %llu (%llu events acked durable:false lost with their commit)\n",
                 static_cast<unsigned long long>(s.storage_errors),
                 static_cast<unsigned long long>(s.lost_nondurable));
    std::fprintf(out, "seals             %llu since start\n", static_cast<unsigned long long>(s.seals));
    if (s.disk_reserve_bytes != 0 || s.disk_free_bytes != 0 || s.storage_full)
      std::fprintf(out, "disk              %.1f MiB free, reserve %.1f MiB%s (%llu appends refused storage_full)\n",
                   static_cast<double>(s.disk_free_bytes) / (1 << 20),
                   static_cast<double>(s.disk_reserve_bytes) / (1 << 20),
                   !s.storage_full ? ""
                   : s.disk_full_action == "pushback" ? ": FULL, appends pushed back"
                                                      : ": FULL, appends refused",
                   static_cast<unsigned long long>(s.storage_full_refusals));
    std::fprintf(out, "connections       %llu\n", static_cast<unsigned long long>(s.connections));
    std::fprintf(out, "uptime            %llu s\n", static_cast<unsigned long long>(s.uptime_s));
  }
  std::fprintf(out, "by type:\n");
  for (const auto& [t, n] : s.by_type)
    std::fprintf(out, "  %-28s %llu\n", cell(t, 28).c_str(), static_cast<unsigned long long>(n));
}

// ---- cairn query's output modes ----

std::optional<EventFormat> event_format_from(std::string_view s) {
  if (s == "short" || s == "table") return EventFormat::short_;
  if (s == "verbose") return EventFormat::verbose;
  if (s == "json") return EventFormat::json;
  if (s == "json-pretty") return EventFormat::json_pretty;
  if (s == "cat") return EventFormat::cat;
  if (s == "export") return EventFormat::export_;
  return std::nullopt;
}

namespace {

std::optional<int64_t> int_of(const msgpack_object* o) {
  if (o == nullptr) return std::nullopt;
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return static_cast<int64_t>(o->via.u64);
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return o->via.i64;
  return std::nullopt;
}

// A value for a person: strings as cells (escaped), everything else as JSON.
std::string human_value(const msgpack_object& v, size_t max) {
  if (v.type == MSGPACK_OBJECT_STR) return cell({v.via.str.ptr, v.via.str.size}, max);
  std::string j;
  msgpack_to_json(v, j);
  return cell(j, max);
}

// Appends " k=v k2=v2" for the fields map (nested maps as JSON).
void append_fields(const Body& b, std::string& out) {
  const msgpack_object* f = b.get("fields");
  if (f == nullptr || f->type != MSGPACK_OBJECT_MAP) return;
  for (uint32_t i = 0; i < f->via.map.size; ++i) {
    const auto& kv = f->via.map.ptr[i];
    if (kv.key.type != MSGPACK_OBJECT_STR) continue;
    out += ' ';
    out += cell({kv.key.via.str.ptr, kv.key.via.str.size}, 64);
    out += '=';
    out += human_value(kv.val, 200);
  }
}

const char* severity_color(const Body& b) {
  auto sev = int_of(b.get("severity"));
  if (!sev) return nullptr;
  if (*sev <= 2) return "\x1b[1;31m";
  if (*sev == 3) return "\x1b[31m";
  if (*sev == 4) return "\x1b[33m";
  if (*sev == 5) return "\x1b[1m";
  return nullptr;
}

void indent_json(const std::string& in, std::string& out) {
  int depth = 0;
  bool str = false, esc = false;
  auto nl = [&] {
    out += '\n';
    out.append(static_cast<size_t>(depth) * 2, ' ');
  };
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (str) {
      out += c;
      if (esc) esc = false;
      else if (c == '\\') esc = true;
      else if (c == '"') str = false;
      continue;
    }
    switch (c) {
      case '"': str = true; out += c; break;
      case '{': case '[':
        out += c;
        if (i + 1 < in.size() && (in[i + 1] == '}' || in[i + 1] == ']')) break;
        ++depth;
        nl();
        break;
      case '}': case ']':
        if (i > 0 && (in[i - 1] == '{' || in[i - 1] == '[')) { out += c; break; }
        --depth;
        nl();
        out += c;
        break;
      case ',': out += c; nl(); break;
      case ':': out += ": "; break;
      default: out += c;
    }
  }
}

}  // namespace

std::string event_json_full(const proto::StoredEvent& e, bool pretty) {
  std::string j = event_json(e);
  Body b(e.body);
  std::string extra;
  for (const char* k : {"received", "time"}) {
    auto v = int_of(b.get(k));
    if (!v) continue;
    extra += ",\"";
    extra += k;
    extra += "_utc\":\"" + format_utc_ms(*v) + "\"";
  }
  j.insert(j.size() - 1, extra);
  if (!pretty) return j;
  std::string out;
  indent_json(j, out);
  return out;
}

std::string event_export(const proto::StoredEvent& e) {
  Body b(e.body);
  std::string out = "{";
  if (!b.ok) return out + "}";
  bool first = true;
  for (uint32_t i = 0; i < b.up.data.via.map.size; ++i) {
    const auto& kv = b.up.data.via.map.ptr[i];
    if (kv.key.type != MSGPACK_OBJECT_STR) continue;
    std::string_view k(kv.key.via.str.ptr, kv.key.via.str.size);
    // Only what a client sends: the daemon's stamps (received, pid, comm, exe ...) would
    // be refused by `send --stdin`, and idem is a bin the stdin format takes as text.
    if (k != "type" && k != "severity" && k != "actor" && k != "action" && k != "target" &&
        k != "outcome" && k != "time" && k != "message" && k != "fields")
      continue;
    if (!first) out += ',';
    first = false;
    json_escape(k, out);
    out += ':';
    msgpack_to_json(kv.val, out);
  }
  return out + "}";
}

void EventPrinter::header() {
  if (opt_.format != EventFormat::short_) return;
  std::fprintf(out_, "%-8s %-27s %-7s %-22s %-14s %-12s %-16s %-7s %7s %5s %-12s %s\n", "SEQ",
               opt_.utc ? "RECEIVED (UTC)" : "RECEIVED", "SEV", "TYPE", "ACTOR", "ACTION", "TARGET",
               "OUTCOME", "PID", "UID", "COMM", "MESSAGE [FIELDS]");
}

void EventPrinter::event(const proto::StoredEvent& e) {
  switch (opt_.format) {
    case EventFormat::json:
    case EventFormat::json_pretty:
      std::fprintf(out_, "%s\n", event_json_full(e, opt_.format == EventFormat::json_pretty).c_str());
      return;
    case EventFormat::export_:
      std::fprintf(out_, "%s\n", event_export(e).c_str());
      return;
    default: break;
  }
  Body b(e.body);
  const char* color = opt_.color ? severity_color(b) : nullptr;
  const char* reset = color ? "\x1b[0m" : "";
  if (!color) color = "";
  if (opt_.format == EventFormat::cat) {
    // The message as written (its newlines kept), control characters escaped.
    const msgpack_object* m = b.get("message");
    std::string text;
    if (m && m->type == MSGPACK_OBJECT_STR) {
      std::string_view v(m->via.str.ptr, m->via.str.size);
      size_t at = 0;
      while (at <= v.size()) {
        size_t nl = v.find('\n', at);
        if (nl == std::string_view::npos) nl = v.size();
        text += cell(v.substr(at, nl - at), SIZE_MAX);
        if (nl < v.size()) text += '\n';
        at = nl + 1;
      }
    }
    std::fprintf(out_, "%s%s%s\n", color, text.c_str(), reset);
    return;
  }
  auto received = int_of(b.get("received"));
  std::string when = received ? format_human(*received, opt_.utc) : "";
  if (opt_.format == EventFormat::verbose) {
    std::fprintf(out_, "%sseq %llu  %s%s\n", color, static_cast<unsigned long long>(e.seq), when.c_str(), reset);
    std::fprintf(out_, "    hash=%s\n", hex(e.hash.data(), e.hash.size()).c_str());
    if (!b.ok) return;
    for (uint32_t i = 0; i < b.up.data.via.map.size; ++i) {
      const auto& kv = b.up.data.via.map.ptr[i];
      if (kv.key.type != MSGPACK_OBJECT_STR) continue;
      std::string_view k(kv.key.via.str.ptr, kv.key.via.str.size);
      std::string v;
      if ((k == "received" || k == "time") && int_of(&kv.val))
        v = format_human(*int_of(&kv.val), opt_.utc) + " (" + std::to_string(*int_of(&kv.val)) + ")";
      else if (k == "severity" && int_of(&kv.val))
        v = std::string(proto::severity_name(static_cast<uint8_t>(*int_of(&kv.val))));
      else if (k == "fields" && kv.val.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t f = 0; f < kv.val.via.map.size; ++f) {
          const auto& fkv = kv.val.via.map.ptr[f];
          if (fkv.key.type != MSGPACK_OBJECT_STR) continue;
          std::fprintf(out_, "    fields.%s=%s\n", cell({fkv.key.via.str.ptr, fkv.key.via.str.size}, 128).c_str(),
                       human_value(fkv.val, SIZE_MAX).c_str());
        }
        continue;
      } else if (kv.val.type == MSGPACK_OBJECT_BIN) {
        v = hex(reinterpret_cast<const uint8_t*>(kv.val.via.bin.ptr), kv.val.via.bin.size);
      } else {
        v = human_value(kv.val, SIZE_MAX);
      }
      std::fprintf(out_, "    %s=%s\n", cell(k, 64).c_str(), v.c_str());
    }
    return;
  }
  const msgpack_object* sev = b.get("severity");
  std::string sev_name = sev && sev->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                             ? std::string(proto::severity_name(static_cast<uint8_t>(sev->via.u64)))
                             : "";
  std::string msg = cell(b.str("message"), 60);
  append_fields(b, msg);
  std::fprintf(out_, "%s%-8llu %-27s %-7s %-22s %-14s %-12s %-16s %-7s %7s %5s %-12s %s%s\n", color,
               static_cast<unsigned long long>(e.seq), when.c_str(), sev_name.c_str(),
               cell(b.str("type"), 22).c_str(), cell(b.str("actor"), 14).c_str(),
               cell(b.str("action"), 12).c_str(), cell(b.str("target"), 16).c_str(),
               cell(b.str("outcome"), 7).c_str(), b.num("pid").c_str(), b.num("uid").c_str(),
               cell(b.str("comm"), 12).c_str(), msg.c_str(), reset);
}

}  // namespace cairn::cli
