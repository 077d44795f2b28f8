#include "commands.hpp"
#include "seal_commands.hpp"

#include <cairn/cairn.h>
#include <signal.h>
#include <cerrno>
#include <time.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "../../daemon/store/query_engine.hpp"
#include "../../daemon/store/store.hpp"
#include "../../protocol/pack.hpp"
#include "args.hpp"
#include "json.hpp"
#include "prometheus.hpp"
#include "render.hpp"
#include "when.hpp"

namespace cairn::cli {

const char* const kUsage =
    "Usage: cairn COMMAND [OPTIONS]\n"
    "Record and inspect events in the cairn audit log.\n"
    "\n"
    "Commands:\n"
    "  send     record one event (or NDJSON events from stdin) and print its seq\n"
    "  query    list events (newest first; -r oldest first) with filters, output modes,\n"
    "           cursors and -f to follow\n"
    "  report   summarise a time range: failures first, then by type, outcome, actor\n"
    "  verify   check records, Merkle tree, seals (--key), checkpoints; exit 1 on a failure\n"
    "  key      print the log's verification key (copy it off the host)\n"
    "  checkpoint  print the newest signed checkpoint\n"
    "  prove SEQ   write a proof bundle for one record (check: verify --proof F --key K)\n"
    "  stats    counts by type, queue depth, commits, fsync latency, db size\n"
    "  ping     check that cairnd answers\n"
    "\n"
    "Common options:\n"
    "  --socket PATH   cairnd's socket [$CAIRN_SOCKET, else /run/cairn/cairn.sock]\n"
    "  --db PATH       (query, verify, stats) read the database file directly, read-only,\n"
    "                  when the daemon is down (forensics)\n"
    "  -o table|json   output format [table]\n"
    "\n"
    "Exit status: 0 ok; 1 an event was refused or the chain is broken; 2 usage error,\n"
    "or cairnd could not be reached or refused the request (permission_denied,\n"
    "overloaded, shutting_down), or its reply could not be read. Nothing is printed to\n"
    "stdout for a request that failed. `cairn COMMAND --help` shows each command's options.\n";

namespace {

const char* const kSendUsage =
    "Usage: cairn send --type T [OPTIONS] [key=value ...]\n"
    "       cairn send --stdin < events.ndjson\n"
    "  --type T          event type, [A-Za-z0-9_.:-]{1,64} (required)\n"
    "  --severity S      0-7 or emerg|alert|crit|err|warning|notice|info|debug [info]\n"
    "  --actor A  --action X  --target Y\n"
    "  --outcome O       success | failure | unknown\n"
    "  --message M       free text (may contain newlines)\n"
    "  --time WHEN       event time (see `cairn query --help` for WHEN) [not sent]\n"
    "  --sync            ask for a durable ack even in batched/hybrid mode\n"
    "  --idem KEY        idempotency key, 8-32 bytes [random]\n"
    "  --stdin           read newline-delimited JSON events; print one seq per line\n"
    "  --reconnect MS    with --stdin: if cairnd restarts, reconnect for up to MS and\n"
    "                    resend unacked events (same idem keys: no loss, no duplicates)\n"
    "                    [0: fail at once]\n"
    "  -o table|json     print the seq, or the whole ack as JSON\n"
    "  key=value         a field; integers and true/false become typed values\n"
    "  key:=value        a field kept as a string whatever it looks like\n"
    "  --socket PATH     cairnd's socket [$CAIRN_SOCKET, else /run/cairn/cairn.sock]\n"
    "Field values: a value that is wholly an integer (-?[0-9]{1,18}) is sent as an int,\n"
    "true/false as a bool, anything else as a string; key:=value always sends a string.\n"
    "Each stdin line is a JSON object with the event keys of PROTOCOL.md (type, severity,\n"
    "actor, action, target, outcome, message, time, fields, sync, idem); `time` is ns or\n"
    "a WHEN string, `fields` a JSON object. Events are pipelined; one seq (or `-` for a\n"
    "refused line, named with its line number on stderr) is printed per line, in order.\n"
    "Exit 0 ok, 1 an event was refused, 2 usage or connection error.\n";

std::string socket_path(const Args& a) {
  if (a.has("socket")) return a.get("socket");
  if (const char* env = std::getenv("CAIRN_SOCKET"); env && *env) return env;
  return "/run/cairn/cairn.sock";
}

// What the user needs to act on a failed connect: the socket path and either the errno
// text (with a hint for the common ones) or the daemon's refusal.
std::string connect_failure(const std::string& path, int rc, int err) {
  std::string why;
  switch (rc) {
    case CAIRN_E_OVERLOADED:
      why = "cairnd refused the connection: overloaded (too many connections; try again)";
      break;
    case CAIRN_E_SHUTTING_DOWN: why = "cairnd refused the connection: it is shutting down"; break;
    case CAIRN_E_CONNECT:
      why = "cannot connect to cairnd: ";
      why += err != 0 ? std::strerror(err) : "unknown reason";
      if (err == ENOENT) why += " (no socket there: is cairnd running? --socket or $CAIRN_SOCKET)";
      else if (err == EACCES || err == EPERM)
        why += " (not allowed to use the socket: see its owner and mode, or run as a member of its group)";
      else if (err == ECONNREFUSED) why += " (no cairnd is listening on it)";
      break;
    default: why = cairn_strerror(rc); break;
  }
  return "cairn: " + path + ": " + why;
}

// Connects with reconnection off by default, so that a daemon that is down is reported
// at once; `send --reconnect MS` turns it on for long --stdin streams. On failure says
// which: the socket path with the errno text (ENOENT, EACCES ...), or the daemon's
// refusal (overloaded, shutting_down).
cairn_client* connect_or_report(const Args& a, int reconnect_ms = 0) {
  cairn_options o;
  cairn_options_init(&o);
  o.client_name = "cairn-cli";
  o.reconnect_timeout_ms = reconnect_ms;
  cairn_client* c = nullptr;
  std::string path = socket_path(a);
  errno = 0;
  int rc = cairn_open(&c, path.c_str(), &o);
  if (rc != 0) {
    int err = errno;
    std::fprintf(stderr, "%s\n", connect_failure(path, rc, err).c_str());
    return nullptr;
  }
  return c;
}

Output output_of(const Args& a, bool* ok) {
  std::string o = a.get("output", "table");
  *ok = o == "table" || o == "json";
  return o == "json" ? Output::json : Output::table;
}

void report_refusal(cairn_client* c, int rc, const std::string& where) {
  const char *code = nullptr, *field = nullptr, *rule = nullptr, *msg = nullptr;
  cairn_last_error(c, &code, &field, &rule, &msg);
  std::string line = "cairn: " + (where.empty() ? std::string("refused: ") : where);
  line += code ? code : cairn_strerror(rc);
  if (msg) line += std::string(": ") + msg;
  if (rule) line += std::string(" [rule ") + rule + "]";
  std::fprintf(stderr, "%s\n", line.c_str());
}

// Runs an op through libcairn and decodes the reply map. Prints errors itself.
struct RawReply {
  void* buf = nullptr;
  size_t len = 0;
  proto::Decoded decoded;
  proto::Reply reply;
  ~RawReply() { cairn_free(buf); }
};

int request(cairn_client* c, const char* op, const std::string& args, RawReply& out) {
  int rc = cairn_request(c, op, args.empty() ? nullptr : args.data(), args.size(), &out.buf, &out.len);
  if (rc != 0) {
    report_refusal(c, rc, std::string(op) + " ");
    return 2;
  }
  auto d = proto::Decoded::parse({static_cast<const uint8_t*>(out.buf), out.len}, 16);
  if (!d) {
    std::fprintf(stderr, "cairn: undecodable reply: %s\n", d.error().c_str());
    return 2;
  }
  out.decoded = std::move(d.value());
  auto r = proto::reply_from(out.decoded);
  if (!r) {
    std::fprintf(stderr, "cairn: bad reply: %s\n", r.error().c_str());
    return 2;
  }
  out.reply = r.value();
  return 0;
}

// 1 for a refusal that belongs to the event (the daemon's invalid_field, storage_failed
// ..., or one libcairn made before sending, like frame_too_large); 2 for everything else:
// the connection, the daemon's refusal of the request, or a reply that could not be read.
int exit_for(int rc) {
  return rc == CAIRN_E_REJECTED || rc == CAIRN_E_STORAGE || rc == CAIRN_E_STORAGE_FULL ||
                 rc == CAIRN_E_INVALID_ARG
             ? 1
             : 2;
}

std::optional<uint8_t> severity_arg(const std::string& s) {
  if (s.size() == 1 && s[0] >= '0' && s[0] <= '7') return static_cast<uint8_t>(s[0] - '0');
  return proto::severity_from_name(s);
}

bool all_digits(const std::string& s) {
  size_t i = (s.size() > 1 && s[0] == '-') ? 1 : 0;
  if (i >= s.size() || s.size() - i > 18) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

// ---- send ----

struct OwnedEvent {
  cairn_event ev{};
  std::string type, actor, action, target, outcome, message, idem, fields;
  bool has_actor = false, has_action = false, has_target = false, has_outcome = false,
       has_message = false;
  void bind() {
    ev.type = type.c_str();
    ev.actor = has_actor ? actor.c_str() : nullptr;
    ev.action = has_action ? action.c_str() : nullptr;
    ev.target = has_target ? target.c_str() : nullptr;
    ev.outcome = has_outcome ? outcome.c_str() : nullptr;
    ev.message = has_message ? message.c_str() : nullptr;
    ev.idem = idem.empty() ? nullptr : idem.data();
    ev.idem_len = idem.size();
    ev.fields_msgpack = fields.empty() ? nullptr : fields.data();
    ev.fields_msgpack_len = fields.size();
  }
};

Result<OwnedEvent, std::string> event_from_json(const Json& j) {
  if (j.kind != Json::Kind::object) return Err{std::string("not a JSON object")};
  OwnedEvent o;
  for (size_t m = 0; m < j.members.size(); ++m) {
    const auto& [k, v] = j.members[m];
    for (size_t before = 0; before < m; ++before)
      if (j.members[before].first == k) return Err{k + ": key given twice"};
    auto want_str = [&](std::string& dst, bool* has) -> Result<Ok, std::string> {
      if (v.kind != Json::Kind::string) return Err{k + ": expected a string"};
      dst = v.s;
      if (has) *has = true;
      return Ok{};
    };
    Result<Ok, std::string> r = Ok{};
    if (k == "type") r = want_str(o.type, nullptr);
    else if (k == "actor") r = want_str(o.actor, &o.has_actor);
    else if (k == "action") r = want_str(o.action, &o.has_action);
    else if (k == "target") r = want_str(o.target, &o.has_target);
    else if (k == "outcome") r = want_str(o.outcome, &o.has_outcome);
    else if (k == "message") r = want_str(o.message, &o.has_message);
    else if (k == "idem") r = want_str(o.idem, nullptr);
    else if (k == "severity") {
      if (v.kind == Json::Kind::integer && v.i >= 0 && v.i <= 7) o.ev.severity = CAIRN_SEVERITY(static_cast<int>(v.i));
      else if (v.kind == Json::Kind::string && severity_arg(v.s)) o.ev.severity = CAIRN_SEVERITY(*severity_arg(v.s));
      else return Err{std::string("severity: expected 0-7 or a severity name")};
    } else if (k == "time") {
      if (v.kind == Json::Kind::integer && v.i > 0) o.ev.time_ns = v.i;
      else if (v.kind == Json::Kind::string) {
        auto t = parse_when(v.s, wall_now_ns());
        if (!t) return Err{"time: " + t.error()};
        o.ev.time_ns = t.value();
      } else return Err{std::string("time: expected ns or a time string")};
    } else if (k == "sync") {
      if (v.kind != Json::Kind::boolean) return Err{std::string("sync: expected true or false")};
      o.ev.sync = v.b ? 1 : 0;
    } else if (k == "fields") {
      if (v.kind != Json::Kind::object) return Err{std::string("fields: expected an object")};
      json_to_msgpack(v, o.fields);
    } else {
      // Passed through so the daemon names the rule (unknown_key, trusted_field).
      return Err{k + ": not an event key (see PROTOCOL.md)"};
    }
    if (!r) return Err{r.error()};
  }
  if (o.type.empty()) return Err{std::string("type: required")};
  return o;
}

int send_stdin(cairn_client* c, Output mode) {
  std::string line;
  size_t lineno = 0;
  int status = 0;
  struct Sent {
    uint64_t ticket;
    size_t line;
  };
  std::deque<Sent> sent;
  auto collect_one = [&]() {
    uint64_t ticket = 0;
    cairn_ack ack{};
    int rc = cairn_next_ack(c, &ticket, &ack);
    size_t ln = sent.front().line;
    sent.pop_front();
    if (rc != 0) {
      report_refusal(c, rc, "line " + std::to_string(ln) + ": ");
      status = std::max(status, exit_for(rc));
      std::printf("-\n");
      return;
    }
    if (mode == Output::json)
      std::printf("{\"line\":%zu,\"seq\":%llu,\"durable\":%s,\"duplicate\":%s}\n", ln,
                  static_cast<unsigned long long>(ack.seq), ack.durable ? "true" : "false",
                  ack.duplicate ? "true" : "false");
    else
      std::printf("%llu\n", static_cast<unsigned long long>(ack.seq));
  };
  while (std::getline(std::cin, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto j = json_parse(line);
    Result<OwnedEvent, std::string> ev = j ? event_from_json(j.value()) : Err{j.error()};
    if (!ev) {
      // Keep output aligned with input order: flush what is in flight first.
      while (!sent.empty()) collect_one();
      std::fprintf(stderr, "cairn: line %zu: %s\n", lineno, ev.error().c_str());
      std::printf("-\n");
      status = 1;
      continue;
    }
    ev.value().bind();
    uint64_t ticket = 0;
    int rc = cairn_append_async(c, &ev.value().ev, &ticket);
    if (rc == CAIRN_E_INVALID_ARG) {
      // Refused before sending (e.g. over the daemon's max_frame): this line fails.
      while (!sent.empty()) collect_one();
      report_refusal(c, rc, "line " + std::to_string(lineno) + ": ");
      std::printf("-\n");
      status = 1;
      continue;
    }
    if (rc != 0) {
      while (!sent.empty()) collect_one();
      report_refusal(c, rc, "line " + std::to_string(lineno) + ": ");
      return 2;
    }
    sent.push_back({ticket, lineno});
    while (sent.size() > 256) collect_one();
  }
  while (!sent.empty()) collect_one();
  int rc = cairn_flush(c, nullptr);
  if (rc != 0) {
    report_refusal(c, rc, "flush: ");
    return 2;
  }
  return status;
}

}  // namespace

int cmd_send(int argc, char** argv) {
  auto a = parse_args(argc, argv, 2,
                      {{"socket", true}, {"type", true}, {"severity", true}, {"actor", true},
                       {"action", true}, {"target", true}, {"outcome", true}, {"message", true},
                       {"time", true}, {"sync", false}, {"idem", true}, {"stdin", false},
                       {"reconnect", true},
                       {"output", true, 'o'}, {"help", false, 'h'}});
  if (!a) {
    std::fprintf(stderr, "cairn send: %s\n%s", a.error().c_str(), kSendUsage);
    return 2;
  }
  const Args& args = a.value();
  if (args.has("help")) {
    std::fputs(kSendUsage, stdout);
    return 0;
  }
  bool ok_mode = true;
  Output mode = output_of(args, &ok_mode);
  if (!ok_mode) {
    std::fprintf(stderr, "cairn send: -o must be table or json\n");
    return 2;
  }
  if (args.has("stdin")) {
    if (args.has("type") || !args.positional.empty()) {
      std::fprintf(stderr, "cairn send: --stdin takes events from stdin only\n");
      return 2;
    }
    int reconnect_ms = 0;
    if (args.has("reconnect")) {
      std::string r = args.get("reconnect");
      if (!all_digits(r) || r[0] == '-' || r.size() > 9) {
        std::fprintf(stderr, "cairn send: --reconnect takes milliseconds\n");
        return 2;
      }
      reconnect_ms = std::atoi(r.c_str());
    }
    cairn_client* c = connect_or_report(args, reconnect_ms);
    if (c == nullptr) return 2;
    int rc = send_stdin(c, mode);
    cairn_close(c);
    return rc;
  }
  if (!args.has("type")) {
    std::fprintf(stderr, "cairn send: --type is required\n%s", kSendUsage);
    return 2;
  }
  OwnedEvent o;
  o.type = args.get("type");
  if (args.has("severity")) {
    auto s = severity_arg(args.get("severity"));
    if (!s) {
      std::fprintf(stderr, "cairn send: --severity '%s' is not 0-7 or a syslog level name\n",
                   args.get("severity").c_str());
      return 2;
    }
    o.ev.severity = CAIRN_SEVERITY(*s);
  }
  auto take = [&](const char* k, std::string& dst, bool& has) {
    if (args.has(k)) {
      dst = args.get(k);
      has = true;
    }
  };
  take("actor", o.actor, o.has_actor);
  take("action", o.action, o.has_action);
  take("target", o.target, o.has_target);
  take("outcome", o.outcome, o.has_outcome);
  take("message", o.message, o.has_message);
  if (o.has_outcome && !proto::outcome_from_name(o.outcome)) {
    std::fprintf(stderr, "cairn send: --outcome must be success, failure or unknown\n");
    return 2;
  }
  if (args.has("time")) {
    auto t = parse_when(args.get("time"), wall_now_ns());
    if (!t) {
      std::fprintf(stderr, "cairn send: --time: %s\n", t.error().c_str());
      return 2;
    }
    o.ev.time_ns = t.value();
  }
  o.ev.sync = args.has("sync") ? 1 : 0;
  o.idem = args.get("idem");
  if (!args.positional.empty()) {
    proto::detail::Packer pk(o.fields);
    pk.map(args.positional.size());
    for (const auto& kv : args.positional) {
      size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::fprintf(stderr, "cairn send: '%s' is not key=value\n", kv.c_str());
        return 2;
      }
      bool force_str = eq > 0 && kv[eq - 1] == ':';
      std::string key = kv.substr(0, force_str ? eq - 1 : eq);
      std::string val = kv.substr(eq + 1);
      pk.str(key);
      if (force_str) pk.str(val);
      else if (all_digits(val)) pk.i64(std::strtoll(val.c_str(), nullptr, 10));
      else if (val == "true" || val == "false") pk.boolean(val == "true");
      else pk.str(val);
    }
  }
  o.bind();
  cairn_client* c = connect_or_report(args);
  if (c == nullptr) return 2;
  cairn_ack ack{};
  int rc = cairn_append(c, &o.ev, &ack);
  if (rc != 0) {
    report_refusal(c, rc, "");
    cairn_close(c);
    return exit_for(rc);
  }
  cairn_close(c);
  if (mode == Output::json)
    std::printf("{\"seq\":%llu,\"durable\":%s,\"duplicate\":%s}\n",
                static_cast<unsigned long long>(ack.seq), ack.durable ? "true" : "false",
                ack.duplicate ? "true" : "false");
  else
    std::printf("%llu%s\n", static_cast<unsigned long long>(ack.seq),
                ack.duplicate ? " (duplicate)" : (ack.durable ? "" : " (accepted, not yet durable)"));
  return 0;
}

// ---- query, report: query_commands.cpp ----

// ---- verify, stats, ping ----

int cmd_verify(int argc, char** argv) {
  return verify_main(argc, argv, [](const Args& args, const std::string& req_args, proto::VerifyReport& rep) {
    cairn_client* c = connect_or_report(args);
    if (c == nullptr) return 2;
    RawReply rr;
    int rc = request(c, "verify", req_args, rr);
    cairn_close(c);
    if (rc != 0) return rc;
    auto r = proto::verify_from(rr.reply);
    if (!r) {
      std::fprintf(stderr, "cairn verify: %s\n", r.error().c_str());
      return 2;
    }
    rep = r.value();
    return 0;
  });
}

int cmd_stats(int argc, char** argv) {
  auto a = parse_args(argc, argv, 2, {{"socket", true}, {"db", true}, {"output", true, 'o'},
                                      {"textfile", true}, {"help", false, 'h'}});
  if (!a) {
    std::fprintf(stderr, "cairn stats: %s\n", a.error().c_str());
    return 2;
  }
  const Args& args = a.value();
  if (args.has("help")) {
    std::puts("Usage: cairn stats [--socket PATH | --db PATH] [-o table|json|prometheus]\n"
              "                   [--textfile FILE]\n"
              "Counts by type, queue depth, commits, fsync latency and database size. With\n"
              "--db only what the file knows: events, by type, head seq, database size.\n"
              "-o prometheus: the Prometheus text format (metric names in cairn(1));\n"
              "--textfile FILE replaces FILE atomically instead of printing (for\n"
              "node_exporter's textfile collector), and writes cairn_up 0 when cairnd\n"
              "cannot be asked.\n"
              "Exit 0 ok, 2 on errors.");
    return 0;
  }
  bool ok_mode = true;
  Output mode = output_of(args, &ok_mode);
  const bool prom = args.get("output") == "prometheus";  // prometheus.hpp
  if (!ok_mode && !prom) {
    std::fprintf(stderr, "cairn stats: -o must be table, json or prometheus\n");
    return 2;
  }
  if (args.has("textfile") && !prom) {
    std::fprintf(stderr, "cairn stats: --textfile needs -o prometheus\n");
    return 2;
  }
  // Down or refusing: the textfile still changes, to cairn_up 0 (exit status stays 2).
  auto failed = [&](int rc) {
    if (prom && args.has("textfile")) emit_prometheus(render_prometheus_down(), args.get("textfile"));
    return rc;
  };
  proto::Stats st;
  if (args.has("db")) {
    auto s = store::Store::open(args.get("db"), store::OpenMode::readonly);
    if (!s) {
      std::fprintf(stderr, "cairn stats: %s\n", s.error().message.c_str());
      return 2;
    }
    // Maintained per-type counts when the file has them (O(types)), else a count.
    store::QueryEngine engine(*s.value());
    auto r = engine.info();
    if (!r) {
      std::fprintf(stderr, "cairn stats: %s\n", r.error().message.c_str());
      return 2;
    }
    store::put_log_figures(std::move(r.value()), st);
    st.head_seq = s.value()->head_seq();
  } else {
    cairn_client* c = connect_or_report(args);
    if (c == nullptr) return failed(2);
    RawReply rr;
    int rc = request(c, "stats", {}, rr);
    cairn_close(c);
    if (rc != 0) return failed(rc);
    auto r = proto::stats_from(rr.reply);
    if (!r) {
      std::fprintf(stderr, "cairn stats: %s\n", r.error().c_str());
      return 2;
    }
    st = r.value();
  }
  if (prom) return emit_prometheus(render_prometheus(st, args.has("db")), args.get("textfile"));
  print_stats(stdout, st, mode, args.has("db"));
  return 0;
}

int cmd_ping(int argc, char** argv) {
  auto a = parse_args(argc, argv, 2, {{"socket", true}, {"help", false, 'h'}});
  if (!a) {
    std::fprintf(stderr, "cairn ping: %s\n", a.error().c_str());
    return 2;
  }
  if (a.value().has("help")) {
    std::puts("Usage: cairn ping [--socket PATH]\n"
              "Prints \"pong\" and exits 0 when cairnd answers, else exits 2.");
    return 0;
  }
  cairn_client* c = connect_or_report(a.value());
  if (c == nullptr) return 2;
  int rc = cairn_ping(c);
  if (rc != 0) report_refusal(c, rc, "ping: ");
  cairn_close(c);
  if (rc != 0) return 2;
  std::puts("pong");
  return 0;
}

}  // namespace cairn::cli
