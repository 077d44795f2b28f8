// cairn-audisp — auditd dispatcher plugin (auditd-plugins(5)) that records auditd's
// events in cairn.
//
// Why: auditd sees what no PAM module or sudo plugin does (kernel-side EXECVE of
// watched programs, file watches, SELinux/AppArmor denials, useradd/userdel, its own
// errors). auditd starts this program from /etc/audit/plugins.d/cairn.conf and writes
// every record to its stdin in the string format (one line per record); records of one
// event are grouped (record.hpp) and the ones that matter are mapped to cairn events
// named "auditd.<TYPE>" that keep the raw lines.
//
// It must never block auditd (auditd's own queue to plugins would fill and drop): this
// thread only reads, parses and pushes into a bounded queue (sender.hpp); a second
// thread talks to cairnd. What cannot be delivered is counted and recorded as an
// `auditd.undelivered` event, and the kernel's own loss counter (AUDIT_GET's `lost`:
// events the kernel dropped before auditd saw them) is read every --lost-interval
// seconds and recorded as `auditd.lost` when it grows.
//
// Signals: SIGTERM/SIGINT (auditd stopping) and EOF end the stream: the open group is
// mapped, the queue gets --drain-ms to empty, the totals go to syslog and stderr.
// SIGHUP (auditd reconfiguring) is ignored. Options: cairn-audisp --help.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <cairn/cairn.h>
#include <msgpack.h>

#include "record.hpp"
#include "sender.hpp"

using namespace cairn::audisp;

namespace {

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

constexpr size_t kMaxLine = 64 * 1024;  // auditd's records are < 9 KiB, enriched < 16 KiB
constexpr int kIdleFlushMs = 250;       // an open group with no EOE is mapped after this

struct Config {
  SenderOptions sender;
  bool all = false;
  int lost_interval_s = 10;
  int drain_ms = 2000;
};

void usage(FILE* f) {
  std::fprintf(f,
               "Usage: cairn-audisp [OPTIONS]   (started by auditd; reads its records on stdin)\n"
               "  --socket PATH        cairnd's socket [/run/cairn/cairn.sock]\n"
               "  --queue N            events held for cairnd before dropping (counted) [4096]\n"
               "  --timeout-ms N       bound on one call to cairnd [2000]\n"
               "  --drain-ms N         at exit, time to deliver what is queued [2000]\n"
               "  --lost-interval S    read the kernel's lost counter every S s; 0: never [10]\n"
               "  --all                record every auditd event, not only the mapped types\n");
}

bool parse_args(int argc, char** argv, Config& c) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&](long lo, long hi, long& out) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      out = std::strtol(argv[++i], &end, 10);
      return *end == '\0' && out >= lo && out <= hi;
    };
    long v = 0;
    if (a == "--socket" && i + 1 < argc) c.sender.socket = argv[++i];
    else if (a == "--queue" && next(1, 1 << 20, v)) c.sender.queue_max = static_cast<size_t>(v);
    else if (a == "--timeout-ms" && next(1, 60000, v)) c.sender.timeout_ms = static_cast<int>(v);
    else if (a == "--drain-ms" && next(0, 600000, v)) c.drain_ms = static_cast<int>(v);
    else if (a == "--lost-interval" && next(0, 86400, v)) c.lost_interval_s = static_cast<int>(v);
    else if (a == "--all") c.all = true;
    else if (a == "--help") {
      usage(stdout);
      std::exit(0);
    } else {
      std::fprintf(stderr, "cairn-audisp: bad option %s\n", a.c_str());
      usage(stderr);
      return false;
    }
  }
  return true;
}

// The kernel's audit status over NETLINK_AUDIT (needs CAP_AUDIT_CONTROL, which a plugin
// started by auditd has). Returns the lost counter, or -errno.
long long kernel_lost() {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT);
  if (fd < 0) return -errno;
  struct {
    nlmsghdr h;
    char pad[16];
  } req{};
  req.h.nlmsg_len = NLMSG_LENGTH(0);
  req.h.nlmsg_type = AUDIT_GET;
  req.h.nlmsg_flags = NLM_F_REQUEST;
  req.h.nlmsg_seq = 1;
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  long long result = -EPROTO;
  if (sendto(fd, &req, req.h.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
    result = -errno;
  } else {
    pollfd p{fd, POLLIN, 0};
    alignas(nlmsghdr) char buf[8192];
    if (poll(&p, 1, 1000) == 1) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n < 0) result = -errno;
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf); n > 0 && NLMSG_OK(h, static_cast<unsigned>(n));
           h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type == NLMSG_ERROR) {
          auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
          if (e->error != 0) result = e->error;
        } else if (h->nlmsg_type == AUDIT_GET) {
          audit_status st{};
          std::memcpy(&st, NLMSG_DATA(h), std::min<size_t>(sizeof st, h->nlmsg_len - NLMSG_LENGTH(0)));
          result = st.lost;
        }
      }
    } else {
      result = -ETIMEDOUT;
    }
  }
  close(fd);
  return result;
}

Mapped lost_event(long long total, long long grew) {
  Mapped m;
  m.type = "auditd.lost";
  m.actor = "kernel";
  m.action = "lost";
  m.outcome = "failure";
  m.severity = CAIRN_SEV_WARNING;
  m.sync = true;
  msgpack_sbuffer buf;
  msgpack_sbuffer_init(&buf);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  msgpack_pack_str(&pk, 4);
  msgpack_pack_str_body(&pk, "lost", 4);
  msgpack_pack_int64(&pk, grew);
  msgpack_pack_str(&pk, 10);
  msgpack_pack_str_body(&pk, "lost_total", 10);
  msgpack_pack_int64(&pk, total);
  m.fields.assign(buf.data, buf.size);
  msgpack_sbuffer_destroy(&buf);
  return m;
}

// Groups records into events (record.hpp) and hands each mapped event to the sender.
class Stream {
 public:
  Stream(Sender& s, bool all) : sender_(s), all_(all) {}
  void line(std::string_view text) {
    auto r = parse_record(text);
    if (!r) {
      ++unparsed;
      return;
    }
    if (r->type == "EOE") {
      if (!open_.empty() && same(open_.front(), *r)) flush();
      return;
    }
    if (standalone(r->type)) {
      if (!open_.empty() && !same(open_.front(), *r)) flush();
      emit({std::move(*r)});
      return;
    }
    if (!open_.empty() && !same(open_.front(), *r)) flush();
    open_.push_back(std::move(*r));
  }
  void flush() {
    if (open_.empty()) return;
    std::vector<Record> g;
    g.swap(open_);
    emit(g);
  }
  uint64_t unparsed = 0, ignored = 0;

 private:
  static bool same(const Record& a, const Record& b) { return a.serial == b.serial && a.node == b.node; }
  void emit(const std::vector<Record>& g) {
    auto m = map_group(g, all_);
    if (!m) {
      ++ignored;
      return;
    }
    sender_.push(std::move(*m));
  }
  Sender& sender_;
  bool all_;
  std::vector<Record> open_;
};

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  if (!parse_args(argc, argv, cfg)) return 2;
  openlog("cairn-audisp", LOG_PID, LOG_DAEMON);
  struct sigaction sa{};
  sa.sa_handler = on_stop;
  sigaction(SIGTERM, &sa, nullptr);  // no SA_RESTART: poll returns EINTR
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);

  Sender sender(cfg.sender);
  sender.start();
  Stream stream(sender, cfg.all);
  std::string buf;
  bool skipping = false;  // inside a line over kMaxLine, dropped whole
  long long lost_seen = -1;
  int64_t next_lost = 0;
  bool lost_warned = false;
  char chunk[16384];
  while (!g_stop) {
    if (cfg.lost_interval_s > 0 && cairn::audisp::mono_ms() >= next_lost) {
      next_lost = cairn::audisp::mono_ms() + cfg.lost_interval_s * 1000LL;
      long long lost = kernel_lost();
      if (lost < 0) {
        if (!lost_warned) syslog(LOG_WARNING, "kernel audit loss counter unavailable: %s", std::strerror(static_cast<int>(-lost)));
        lost_warned = true;
      } else {
        // The first reading records losses since boot; later ones what was added.
        long long grew = lost_seen < 0 ? lost : lost - lost_seen;
        if (grew > 0) sender.push(lost_event(lost, grew));
        lost_seen = lost;
      }
    }
    pollfd p{0, POLLIN, 0};
    int n = poll(&p, 1, kIdleFlushMs);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (n == 0) {
      stream.flush();  // no EOE came: the event is complete as far as anyone knows
      continue;
    }
    ssize_t got = read(0, chunk, sizeof chunk);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break;
    }
    if (got == 0) break;  // auditd closed the pipe
    size_t start = 0;
    for (size_t i = 0; i < static_cast<size_t>(got); ++i) {
      if (chunk[i] != '\n') continue;
      if (!skipping) {
        buf.append(chunk + start, i - start);
        stream.line(buf);
      }
      buf.clear();
      skipping = false;
      start = i + 1;
    }
    if (!skipping) buf.append(chunk + start, static_cast<size_t>(got) - start);
    if (buf.size() > kMaxLine) {
      ++stream.unparsed;
      buf.clear();
      skipping = true;
    }
  }
  if (!buf.empty() && !skipping) stream.line(buf);
  stream.flush();
  sender.finish(cfg.drain_ms);
  SenderTotals t = sender.totals();
  char summary[512];
  std::snprintf(summary, sizeof summary,
                "cairn-audisp: %llu events queued, %llu delivered, %llu dropped (queue full), %llu refused by "
                "cairnd, %llu unsent at exit; %llu lines unreadable, %llu events not mapped",
                static_cast<unsigned long long>(t.queued), static_cast<unsigned long long>(t.delivered),
                static_cast<unsigned long long>(t.dropped), static_cast<unsigned long long>(t.refused),
                static_cast<unsigned long long>(t.unsent_at_exit), static_cast<unsigned long long>(stream.unparsed),
                static_cast<unsigned long long>(stream.ignored));
  syslog(t.dropped + t.refused + t.unsent_at_exit > 0 ? LOG_WARNING : LOG_INFO, "%s", summary + 14);
  std::fprintf(stderr, "%s\n", summary);
  return 0;
}
