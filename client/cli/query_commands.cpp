// query_commands.cpp — `cairn query` and `cairn report`.
//
// Pages come from cairnd (op query, PROTOCOL.md §6.4) or, with --db, from the file
// through the same QueryEngine the daemon runs. A filter that no index serves is
// bounded per page on the daemon (it answers with `next` and `scanned` after at most
// kMaxScan rows); this loop keeps asking until the page limit is reached or `next` is
// absent, and shows a progress line on a terminal while it scans.
#include "query_commands.hpp"

#include <cairn/cairn.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../../daemon/store/query_engine.hpp"
#include "../../daemon/store/store.hpp"
#include "args.hpp"
#include "follow.hpp"
#include "json.hpp"
#include "render.hpp"
#include "when.hpp"

namespace cairn::cli {

namespace {

constexpr uint64_t kDefaultLines = 50;
constexpr uint64_t kFollowBacklog = 10;

const char* const kQueryUsage =
    "Usage: cairn query [OPTIONS] [FIELD=VALUE ...]\n"
    "List events, newest first (-r: oldest first). Values given for one FIELD (or one\n"
    "option used twice) are OR'ed; different fields are AND'ed.\n"
    "Filters:\n"
    "  -t, --type T       --actor A  --action X  --target Y  --comm C\n"
    "  --outcome O        success | failure | unknown\n"
    "  --uid N  --pid N  --gid N\n"
    "  -p, --severity S   this severity or worse: 0-7 or emerg..debug\n"
    "  -g, --grep TEXT    message contains TEXT (case-insensitive)\n"
    "  FIELD=VALUE        a column above by name, or any key of the event's fields\n"
    "                     (dotted path for nested maps: user.name=alice)\n"
    "  -S, --since WHEN   -U, --until WHEN   received time range\n"
    "Output:\n"
    "  -n, --lines N      show at most N events [50]; --all: every match\n"
    "  -r, --reverse      oldest first\n"
    "  -c, --count        print only the number of matches\n"
    "  -o, --output F     short | verbose | json | json-pretty | cat | export [short]\n"
    "                     (export: one `cairn send --stdin` line per event)\n"
    "  --utc              show times in UTC [local time]\n"
    "  --no-pager         never page (a pager is used only on a terminal)\n"
    "  -f, --follow       show the last events, then new ones as they are stored;\n"
    "                     rides out a cairnd restart (resumes by cursor: nothing lost,\n"
    "                     nothing repeated). Ctrl-C stops.\n"
    "Cursors (a cursor is a seq):\n"
    "  --after SEQ        continue past SEQ in the listing's direction (`next:` line)\n"
    "  --cursor-file F    if F holds a cursor, show what came after it (oldest first);\n"
    "                     then write the newest seq shown to F\n"
    "  --db PATH          read the database file directly, read-only (daemon down)\n"
    "  --socket PATH      cairnd's socket [$CAIRN_SOCKET, else /run/cairn/cairn.sock]\n"
    "WHEN: now, today, yesterday, tomorrow (local midnight), 30s, -1h, \"1h ago\", 1h30m,\n"
    "      \"2 days ago\", +1h, 2026-11-23 (local midnight), 2026-11-23T10:00:05.250 (local),\n"
    "      2026-11-23T10:00:05Z, \"2026-11-23 10:00 UTC\", 2026-11-23T10:00+02:00,\n"
    "      @SECONDS since the epoch (date +%s), @SECONDS.FRACTION\n"
    "Exit 0 ok, 2 usage or connection error.\n";

const char* const kReportUsage =
    "Usage: cairn report [-S WHEN] [-U WHEN] [FILTERS] [--top N] [-o text|json]\n"
    "Summarise a time range [today]: failures first (by type, actor, and where from:\n"
    "the fields ip, addr, src, host, remote), then events by type, outcome, actor,\n"
    "uid and comm. FILTERS as for cairn query (--type, --actor, FIELD=VALUE ...).\n"
    "  --top N   rows per table [10]\n"
    "Exit 0 ok, 2 usage or connection error.\n";

std::string socket_path(const Args& a) {
  if (a.has("socket")) return a.get("socket");
  if (const char* env = std::getenv("CAIRN_SOCKET"); env && *env) return env;
  return "/run/cairn/cairn.sock";
}

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 19) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// Where pages come from: cairnd, or the file with the daemon's own engine.
class Source {
 public:
  ~Source() {
    engine_.reset();
    store_.reset();
    if (c_) cairn_close(c_);
  }
  // Prints the failure itself.
  bool open(const Args& a, const char* cmd, int reconnect_ms) {
    if (a.has("db")) {
      auto s = store::Store::open(a.get("db"), store::OpenMode::readonly);
      if (!s) {
        std::fprintf(stderr, "cairn %s: --db: %s\n", cmd, s.error().message.c_str());
        return false;
      }
      store_ = std::move(s.value());
      engine_ = std::make_unique<store::QueryEngine>(*store_);
      return true;
    }
    cairn_options o;
    cairn_options_init(&o);
    o.client_name = "cairn-cli";
    o.reconnect_timeout_ms = reconnect_ms;
    std::string path = socket_path(a);
    errno = 0;
    int rc = cairn_open(&c_, path.c_str(), &o);
    if (rc != 0) {
      int err = errno;
      std::string why = rc == CAIRN_E_CONNECT ? std::string("cannot connect to cairnd: ") +
                                                    (err ? std::strerror(err) : "unknown reason")
                                              : cairn_strerror(rc);
      if (rc == CAIRN_E_CONNECT && err == ENOENT) why += " (no socket there: is cairnd running? --socket or $CAIRN_SOCKET)";
      if (rc == CAIRN_E_OVERLOADED) why = "cairnd refused the connection: overloaded (too many connections; try again)";
      std::fprintf(stderr, "cairn: %s: %s\n", path.c_str(), why.c_str());
      c_ = nullptr;
      return false;
    }
    return true;
  }
  bool is_file() const { return engine_ != nullptr; }
  // One page; prints the failure itself.
  std::optional<proto::QueryPage> fetch(const proto::QuerySpec& q, const char* cmd) {
    if (engine_) {
      auto r = engine_->page(q);
      if (!r) {
        std::fprintf(stderr, "cairn %s: %s\n", cmd, r.error().message.c_str());
        return std::nullopt;
      }
      return std::move(r.value());
    }
    std::string args;
    proto::encode_query_args(args, q);
    void* buf = nullptr;
    size_t len = 0;
    int rc = cairn_request(c_, "query", args.data(), args.size(), &buf, &len);
    std::unique_ptr<void, void (*)(void*)> own(buf, cairn_free);
    if (rc != 0) {
      const char *code = nullptr, *field = nullptr, *rule = nullptr, *msg = nullptr;
      cairn_last_error(c_, &code, &field, &rule, &msg);
      std::string line = std::string("cairn: query ") + (code ? code : cairn_strerror(rc));
      if (msg) line += std::string(": ") + msg;
      if (rule) line += std::string(" [rule ") + rule + "]";
      std::fprintf(stderr, "%s\n", line.c_str());
      return std::nullopt;
    }
    auto d = proto::Decoded::parse({static_cast<const uint8_t*>(buf), len}, 16);
    if (!d) {
      std::fprintf(stderr, "cairn %s: undecodable reply: %s\n", cmd, d.error().c_str());
      return std::nullopt;
    }
    auto r = proto::reply_from(d.value());
    if (!r) {
      std::fprintf(stderr, "cairn %s: bad reply: %s\n", cmd, r.error().c_str());
      return std::nullopt;
    }
    auto page = proto::query_page_from(r.value());
    if (!page) {
      std::fprintf(stderr, "cairn %s: %s\n", cmd, page.error().c_str());
      return std::nullopt;
    }
    return std::move(page.value());
  }

 private:
  cairn_client* c_ = nullptr;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<store::QueryEngine> engine_;
};

// "scanned 1200000 events ..." on stderr while a bounded filter walks, on a terminal.
class Progress {
 public:
  Progress() : on_(isatty(2) == 1) {}
  ~Progress() { done(); }
  void add(uint64_t scanned) {
    total_ += scanned;
    if (!on_ || total_ < 200000) return;
    std::fprintf(stderr, "\rscanned %llu events ...", static_cast<unsigned long long>(total_));
    shown_ = true;
  }
  void done() {
    if (shown_) std::fputs("\r\x1b[K", stderr);
    shown_ = false;
  }

 private:
  bool on_;
  bool shown_ = false;
  uint64_t total_ = 0;
};

std::optional<uint8_t> severity_arg(const std::string& s) {
  if (s.size() == 1 && s[0] >= '0' && s[0] <= '7') return static_cast<uint8_t>(s[0] - '0');
  return proto::severity_from_name(s);
}

proto::ColumnMatch& match_for(proto::QuerySpec& q, proto::Column c) {
  for (auto& m : q.match)
    if (m.column == c) return m;
  q.match.push_back(proto::ColumnMatch{c, {}, {}});
  return q.match.back();
}

// The filter options shared by query and report.
const std::vector<OptionSpec> kFilterOptions = {
    {"type", true, 't', true},  {"actor", true, 0, true}, {"action", true, 0, true},
    {"target", true, 0, true},  {"comm", true, 0, true},  {"outcome", true, 0, true},
    {"uid", true, 0, true},     {"pid", true, 0, true},   {"gid", true, 0, true},
    {"severity", true, 'p'},    {"grep", true, 'g'},      {"since", true, 'S'},
    {"until", true, 'U'},       {"socket", true},         {"db", true},
    {"help", false, 'h'},
};

// Builds the filters of q from the options and positional FIELD=VALUE arguments.
Result<Ok, std::string> filters_from(const Args& a, proto::QuerySpec& q) {
  for (const char* col : {"type", "actor", "action", "target", "comm", "outcome", "uid", "pid", "gid"}) {
    auto it = a.all.find(col);
    if (it == a.all.end()) continue;
    for (const auto& v : it->second) {
      auto r = add_match(q, col, v);
      if (!r) return Err{"--" + std::string(col) + ": " + r.error()};
    }
  }
  for (const auto& p : a.positional) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0)
      return Err{"'" + p + "' is not FIELD=VALUE (text search: -g TEXT; an actor: --actor NAME)"};
    auto r = add_match(q, p.substr(0, eq), p.substr(eq + 1));
    if (!r) return Err{"'" + p + "': " + r.error()};
  }
  int64_t now = wall_now_ns();
  for (const char* k : {"since", "until"}) {
    if (!a.has(k)) continue;
    auto t = parse_when(a.get(k), now);
    if (!t) return Err{"--" + std::string(k) + ": " + t.error()};
    (std::strcmp(k, "since") == 0 ? q.since : q.until) = t.value();
  }
  if (q.since && q.until && *q.until <= *q.since)
    return Err{"--until must be later than --since (the range is empty)"};
  if (a.has("severity")) {
    auto s = severity_arg(a.get("severity"));
    if (!s) return Err{"--severity '" + a.get("severity") + "' is not 0-7 or a syslog level name"};
    q.severity = *s;
  }
  if (a.has("grep")) {
    if (a.get("grep").empty()) return Err{std::string("--grep needs some text")};
    q.text = a.get("grep");
  }
  return Ok{};
}

// Reads a cursor file: nullopt if absent or empty; an error if it holds anything else.
Result<std::optional<uint64_t>, std::string> read_cursor_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::optional<uint64_t>();
  std::string s;
  std::getline(in, s);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  if (s.empty()) return std::optional<uint64_t>();
  if (!all_digits(s)) return Err{"--cursor-file " + path + ": '" + s + "' is not a cursor (a seq)"};
  return std::optional<uint64_t>(std::strtoull(s.c_str(), nullptr, 10));
}

// Output through a pager on a terminal ($PAGER, else less -FRSX), else stdout.
class Out {
 public:
  explicit Out(bool page) {
    if (page) {
      const char* pager = std::getenv("PAGER");
      std::string cmd = pager && *pager ? pager : "less -FRSX";
      if (cmd != "cat") pipe_ = popen(cmd.c_str(), "w");
    }
  }
  ~Out() {
    if (pipe_) pclose(pipe_);
  }
  FILE* f() const { return pipe_ ? pipe_ : stdout; }

 private:
  FILE* pipe_ = nullptr;
};

}  // namespace

bool write_cursor_file(const std::string& path, uint64_t seq) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return false;
  bool ok = std::fprintf(f, "%llu\n", static_cast<unsigned long long>(seq)) > 0;
  ok = std::fclose(f) == 0 && ok;
  return ok && std::rename(tmp.c_str(), path.c_str()) == 0;
}


Result<Ok, std::string> add_match(proto::QuerySpec& q, const std::string& name, const std::string& value) {
  if (value.empty()) return Err{std::string("empty value")};
  if (name == "severity" || name == "seq" || name == "received" || name == "time" || name == "message" ||
      name == "idem" || name == "hash")
    return Err{"'" + name + "' cannot be matched by value (use --severity, --since/--until, -g TEXT)"};
  auto col = proto::column_from_name(name);
  if (!col) {
    // A key of the event's fields.
    for (auto& f : q.fields)
      if (f.path == name) {
        if (f.values.size() >= proto::kMaxMatchValues) return Err{std::string("too many values (at most 16)")};
        f.values.push_back(value);
        return Ok{};
      }
    if (q.fields.size() >= proto::kMaxFieldMatches) return Err{std::string("too many field keys (at most 8)")};
    q.fields.push_back(proto::FieldMatch{name, {value}});
    return Ok{};
  }
  proto::ColumnMatch& m = match_for(q, *col);
  if (m.text.size() + m.ints.size() >= proto::kMaxMatchValues) return Err{std::string("too many values (at most 16)")};
  if (*col == proto::Column::outcome) {
    auto o = proto::outcome_from_name(value);
    if (!o) return Err{"'" + value + "' is not success, failure or unknown"};
    m.ints.push_back(static_cast<int64_t>(*o));
  } else if (proto::column_is_int(*col)) {
    if (!all_digits(value) || std::strtoull(value.c_str(), nullptr, 10) > 0xffffffffu)
      return Err{"'" + value + "' is not a number"};
    m.ints.push_back(static_cast<int64_t>(std::strtoull(value.c_str(), nullptr, 10)));
  } else {
    m.text.push_back(value);
  }
  return Ok{};
}

int query_main(int argc, char** argv) {
  std::vector<OptionSpec> spec = kFilterOptions;
  for (OptionSpec o : std::initializer_list<OptionSpec>{
           {"lines", true, 'n'}, {"limit", true}, {"all", false}, {"reverse", false, 'r'},
           {"count", false, 'c'}, {"output", true, 'o'}, {"utc", false}, {"no-pager", false},
           {"follow", false, 'f'}, {"after", true}, {"cursor-file", true}})
    spec.push_back(o);
  auto a = parse_args(argc, argv, 2, spec);
  if (!a) {
    std::fprintf(stderr, "cairn query: %s\n(cairn query --help lists the options)\n", a.error().c_str());
    return 2;
  }
  const Args& args = a.value();
  if (args.has("help")) {
    std::fputs(kQueryUsage, stdout);
    return 0;
  }
  auto usage_error = [](const std::string& what) {
    std::fprintf(stderr, "cairn query: %s\n", what.c_str());
    return 2;
  };
  proto::QuerySpec q;
  if (auto r = filters_from(args, q); !r) return usage_error(r.error());
  auto fmt = event_format_from(args.get("output", "short"));
  if (!fmt) return usage_error("-o '" + args.get("output") + "' is not short, verbose, json, json-pretty, cat or export");
  const bool follow = args.has("follow"), count = args.has("count"), all = args.has("all");
  if (args.has("lines") && args.has("limit")) return usage_error("-n and --limit are the same option; give one");
  std::string lines_opt = args.has("lines") ? "lines" : "limit";
  uint64_t want = follow ? kFollowBacklog : kDefaultLines;
  if (args.has(lines_opt)) {
    std::string l = args.get(lines_opt);
    if (!all_digits(l) || (std::strtoull(l.c_str(), nullptr, 10) == 0 && !follow))
      return usage_error("--" + lines_opt + " '" + l + "' is not a positive number");
    want = std::strtoull(l.c_str(), nullptr, 10);
  }
  if (all && args.has(lines_opt)) return usage_error("--all and -n contradict each other; give one");
  if (count && (follow || args.has(lines_opt) || args.has("output")))
    return usage_error("--count prints only a number: it takes no -n, -o or -f");
  if (all || count) want = UINT64_MAX;
  q.oldest_first = args.has("reverse");
  if (args.has("after")) {
    std::string s = args.get("after");
    if (!all_digits(s)) return usage_error("--after '" + s + "' is not a cursor (a seq, the `next:` of a page)");
    q.after = std::strtoull(s.c_str(), nullptr, 10);
  }
  std::optional<std::string> cursor_file;
  if (args.has("cursor-file")) {
    if (args.has("after")) return usage_error("--after and --cursor-file both give a cursor; give one");
    cursor_file = args.get("cursor-file");
    auto c = read_cursor_file(*cursor_file);
    if (!c) return usage_error(c.error());
    if (c.value()) {
      q.after = *c.value();
      q.oldest_first = true;  // what came after the saved cursor, in order
    }
  }
  if (follow && q.oldest_first && !cursor_file) return usage_error("-f shows the newest events; it takes no -r");

  Source src;
  // Follow rides out a restart: libcairn reconnects and resends the page request.
  if (!src.open(args, "query", follow ? 24 * 3600 * 1000 : 0)) return 2;
  const bool tty = isatty(1) == 1;
  RenderOptions ro;
  ro.format = *fmt;
  ro.utc = args.has("utc");
  ro.color = tty && std::getenv("NO_COLOR") == nullptr;
  std::unique_ptr<Out> out;  // opened with the first page: a refusal leaves stdout empty
  std::unique_ptr<EventPrinter> printer;
  auto start_output = [&] {
    if (out) return;
    out = std::make_unique<Out>(tty && !follow && !count && !args.has("no-pager"));
    printer = std::make_unique<EventPrinter>(out->f(), ro);
    if (!count) printer->header();
  };
  Progress progress;
  uint64_t shown = 0, newest = 0;
  std::optional<uint64_t> next;
  std::vector<proto::StoredEvent> backlog;  // -f: printed oldest first
  uint64_t head_before = 0;
  if (follow && !q.after) {
    // The log's end before the backlog is read: if the (filtered) backlog is empty,
    // following starts here, so an event stored while the backlog was read is not lost.
    proto::QuerySpec head;
    head.limit = 1;
    auto p = src.fetch(head, "query");
    if (!p) return 2;
    if (!p->events.empty()) head_before = p->events.front().seq;
  }
  // The page loop; for -f the backlog is read newest first, then printed in order.
  while (shown < want) {
    q.limit = static_cast<uint32_t>(std::min<uint64_t>(count ? proto::kMaxQueryLimit : want - shown,
                                                       proto::kMaxQueryLimit));
    auto page = src.fetch(q, "query");
    if (!page) return 2;
    progress.add(page->scanned);
    start_output();
    for (auto& e : page->events) {
      newest = std::max(newest, e.seq);
      if (follow && !q.oldest_first) backlog.push_back(std::move(e));
      else if (!count) printer->event(e);
    }
    shown += page->events.size();
    next = page->next;
    if (!next) break;
    q.after = next;
  }
  progress.done();
  start_output();
  if (count) {
    std::fprintf(out->f(), "%llu\n", static_cast<unsigned long long>(shown));
    return 0;
  }
  for (auto it = backlog.rbegin(); it != backlog.rend(); ++it) printer->event(*it);
  if (next && !follow && *fmt == EventFormat::short_)
    std::fprintf(out->f(), "next: --after %llu\n", static_cast<unsigned long long>(*next));
  if (cursor_file && newest > 0 && !follow && !write_cursor_file(*cursor_file, newest)) {
    std::fprintf(stderr, "cairn query: --cursor-file %s: cannot write: %s\n", cursor_file->c_str(), std::strerror(errno));
    return 2;
  }
  if (!follow) return 0;

  // Follow: oldest first from the newest seq seen, page after page. The cursor is the
  // newest seq shown, so a reconnect (or a restart of cairnd) resumes exactly there.
  std::fflush(out->f());
  if (newest == 0 && !q.after) newest = head_before;  // an empty (filtered) backlog
  proto::QuerySpec f = q;
  f.oldest_first = true;
  f.limit = proto::kMaxQueryLimit;
  f.after = std::max(newest, q.oldest_first && q.after ? *q.after : 0);
  if (!src.is_file()) {
    // cairnd pushes each new event once it is stored (subscribe): no polling. The cursor
    // is sent explicitly, so an event stored since the backlog was read is not missed.
    FollowOptions fo;
    fo.socket = socket_path(args);
    fo.filters = f;
    fo.after = *f.after;
    fo.cursor_file = cursor_file;
    fo.out = out->f();
    if (cursor_file && shown > 0) (void)write_cursor_file(*cursor_file, *f.after);  // the backlog's
    return follow_subscribe(fo, *printer);
  }
  // A file can only be polled.
  for (;;) {
    auto page = src.fetch(f, "query");
    if (!page) return 2;
    for (const auto& e : page->events) printer->event(e);
    if (!page->events.empty()) {
      f.after = page->events.back().seq;
      if (cursor_file) (void)write_cursor_file(*cursor_file, *f.after);
    }
    std::fflush(out->f());
    if (page->next) {
      f.after = std::max(*f.after, *page->next);
      continue;  // more is there already
    }
    if (src.is_file()) {
      timespec ts{0, 200'000'000};  // --db: the interval between polls of the file
      nanosleep(&ts, nullptr);
    }
  }
}

// ---- report ----

namespace {

struct Tally {
  std::map<std::string, uint64_t> n;
  void add(const std::string& k) { ++n[k]; }
  std::vector<std::pair<std::string, uint64_t>> top(size_t k) const {
    std::vector<std::pair<std::string, uint64_t>> v(n.begin(), n.end());
    std::sort(v.begin(), v.end(), [](const auto& x, const auto& y) {
      return x.second != y.second ? x.second > y.second : x.first < y.first;
    });
    if (v.size() > k) v.resize(k);
    return v;
  }
};

std::string str_of(const msgpack_object* o) {
  if (o == nullptr) return "";
  if (o->type == MSGPACK_OBJECT_STR) return std::string(o->via.str.ptr, o->via.str.size);
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return std::to_string(o->via.u64);
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return std::to_string(o->via.i64);
  return "";
}

}  // namespace

int report_main(int argc, char** argv) {
  std::vector<OptionSpec> spec = kFilterOptions;
  spec.push_back({"top", true});
  spec.push_back({"output", true, 'o'});
  auto a = parse_args(argc, argv, 2, spec);
  if (!a) {
    std::fprintf(stderr, "cairn report: %s\n(cairn report --help lists the options)\n", a.error().c_str());
    return 2;
  }
  const Args& args = a.value();
  if (args.has("help")) {
    std::fputs(kReportUsage, stdout);
    return 0;
  }
  proto::QuerySpec q;
  if (auto r = filters_from(args, q); !r) {
    std::fprintf(stderr, "cairn report: %s\n", r.error().c_str());
    return 2;
  }
  if (!q.since) q.since = parse_when("today", wall_now_ns()).value();
  size_t top = 10;
  if (args.has("top")) {
    if (!all_digits(args.get("top")) || args.get("top") == "0") {
      std::fprintf(stderr, "cairn report: --top '%s' is not a positive number\n", args.get("top").c_str());
      return 2;
    }
    top = std::strtoull(args.get("top").c_str(), nullptr, 10);
  }
  std::string mode = args.get("output", "text");
  if (mode != "text" && mode != "json") {
    std::fprintf(stderr, "cairn report: -o '%s' is not text or json\n", mode.c_str());
    return 2;
  }
  Source src;
  if (!src.open(args, "report", 0)) return 2;
  Tally by_type, by_outcome, by_actor, by_uid, by_comm, fail_type, fail_actor, fail_from, fail_who;
  uint64_t total = 0, failures = 0;
  int64_t first = 0, last = 0;
  Progress progress;
  q.oldest_first = true;
  q.limit = proto::kMaxQueryLimit;
  for (;;) {
    auto page = src.fetch(q, "report");
    if (!page) return 2;
    progress.add(page->scanned);
    for (const auto& e : page->events) {
      msgpack_unpacked up;
      msgpack_unpacked_init(&up);
      size_t off = 0;
      if (msgpack_unpack_next(&up, e.body.data(), e.body.size(), &off) == MSGPACK_UNPACK_SUCCESS &&
          up.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object& m = up.data;
        auto g = [&](const char* k) { return str_of(proto::map_get(m, k)); };
        std::string type = g("type"), outcome = g("outcome"), actor = g("actor");
        ++total;
        const msgpack_object* rec = proto::map_get(m, "received");
        if (rec && rec->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
          if (first == 0) first = static_cast<int64_t>(rec->via.u64);
          last = static_cast<int64_t>(rec->via.u64);
        }
        by_type.add(type);
        by_outcome.add(outcome.empty() ? "unknown" : outcome);
        by_actor.add(actor.empty() ? "-" : actor);
        by_uid.add(g("uid"));
        by_comm.add(g("comm").empty() ? "-" : g("comm"));
        if (outcome == "failure") {
          ++failures;
          fail_type.add(type);
          fail_actor.add(actor.empty() ? "-" : actor);
          std::string from;
          if (const msgpack_object* f = proto::map_get(m, "fields"))
            for (const char* k : {"ip", "addr", "src", "source", "host", "remote", "from"})
              if (std::string v = str_of(proto::map_get(*f, k)); !v.empty()) {
                from = v;
                break;
              }
          if (!from.empty()) fail_from.add(from);
          fail_who.add((actor.empty() ? "-" : actor) + " " + type + (from.empty() ? "" : " from " + from));
        }
      }
      msgpack_unpacked_destroy(&up);
    }
    if (!page->next) break;
    q.after = page->next;
  }
  progress.done();
  auto tables = std::vector<std::pair<const char*, const Tally*>>{
      {"failures by actor, type and origin", &fail_who}, {"failures by type", &fail_type},
      {"failures by actor", &fail_actor}, {"failures by origin (fields ip/addr/src/host/remote)", &fail_from},
      {"events by type", &by_type}, {"events by outcome", &by_outcome}, {"events by actor", &by_actor},
      {"events by uid", &by_uid}, {"events by comm", &by_comm}};
  if (mode == "json") {
    std::string j = "{\"since\":" + std::to_string(*q.since) +
                    (q.until ? ",\"until\":" + std::to_string(*q.until) : std::string()) +
                    ",\"events\":" + std::to_string(total) + ",\"failures\":" + std::to_string(failures);
    const char* keys[] = {"failures_by_who", "failures_by_type", "failures_by_actor", "failures_by_origin",
                          "by_type", "by_outcome", "by_actor", "by_uid", "by_comm"};
    for (size_t i = 0; i < tables.size(); ++i) {
      j += ",\"" + std::string(keys[i]) + "\":[";
      bool firstrow = true;
      for (const auto& [k, n] : tables[i].second->top(top)) {
        if (!firstrow) j += ',';
        firstrow = false;
        j += "[";
        json_escape(k, j);
        j += "," + std::to_string(n) + "]";
      }
      j += "]";
    }
    std::printf("%s}\n", j.c_str());
    return 0;
  }
  std::printf("report %s .. %s\n", format_human(*q.since, false).c_str(),
              q.until ? format_human(*q.until, false).c_str() : "now");
  std::printf("%llu events, %llu failures", static_cast<unsigned long long>(total),
              static_cast<unsigned long long>(failures));
  if (total > 0) std::printf(" (first %s, last %s)", format_human(first, false).c_str(), format_human(last, false).c_str());
  std::printf("\n");
  for (const auto& [title, t] : tables) {
    auto rows = t->top(top);
    if (rows.empty()) continue;
    std::printf("\n%s:\n", title);
    for (const auto& [k, n] : rows)
      std::printf("  %8llu  %s\n", static_cast<unsigned long long>(n), cell(k, 80).c_str());
  }
  return 0;
}

}  // namespace cairn::cli
