#include "prometheus.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cairn_config.h"

namespace cairn::cli {
namespace {

// Label values may hold any UTF-8; the format escapes only these three.
std::string label_escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

class Exposition {
 public:
  // HELP text is escaped like a label value but without quotes (only \ and newline).
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(const std::string& name, uint64_t v, const std::string& labels = {}) {
    out_ += name + labels + ' ' + std::to_string(v) + '\n';
  }
  void sample(const std::string& name, double v, const std::string& labels = {}) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    out_ += name + labels + ' ' + buf + '\n';
  }
  // A family with one unlabelled sample.
  void single(const char* name, const char* type, const char* help, uint64_t v) {
    family(name, type, help);
    sample(name, v);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

double seconds_of_us(uint64_t us) { return static_cast<double>(us) / 1e6; }

void log_figures(Exposition& x, const proto::Stats& s) {
  x.single("cairn_log_events", "gauge", "Records in the log (events and cairnd's own records).", s.events);
  x.family("cairn_log_events_by_type", "gauge",
           "Records in the log per event type (the most frequent types that fit one reply).");
  for (const auto& [type, n] : s.by_type)
    x.sample("cairn_log_events_by_type", n, "{type=\"" + label_escape(type) + "\"}");
  x.single("cairn_head_seq", "gauge", "Sequence number of the newest record.", s.head_seq);
  x.single("cairn_database_bytes", "gauge", "Size of the database file and its WAL.", s.db_bytes);
  x.single("cairn_archive_segments", "gauge", "Archive segment files beside the database (retention).",
           s.archive_segments);
  x.single("cairn_archive_bytes", "gauge", "Bytes of those archive segments.", s.archive_bytes);
  x.single("cairn_archived_through_seq", "gauge",
           "Records 1..this seq have left the live database for archive segments (0: none).", s.archived_through);
  x.single("cairn_removed_through_seq", "gauge",
           "Records 1..this seq were removed for good by a recorded retention rule (0: none).", s.removed_through);
}

}  // namespace

std::string render_prometheus(const proto::Stats& s, bool from_file) {
  Exposition x;
  if (from_file) {
    log_figures(x, s);
    return x.take();
  }
  x.single("cairn_up", "gauge", "1 when cairnd answered the stats request.", 1);
  x.family("cairn_info", "gauge", "Constant 1; labels describe the running cairnd.");
  x.sample("cairn_info", uint64_t{1},
           "{flush_mode=\"" + label_escape(s.flush_mode) + "\",cli_version=\"" CAIRN_VERSION "\"}");
  x.single("cairn_events_appended_total", "counter", "Client events committed since cairnd started.",
           s.events_committed);
  x.single("cairn_commits_total", "counter", "Commits (write + fsync) since cairnd started.", s.commits);
  if (s.commit_hist.size() == proto::kCommitBuckets) {
    x.family("cairn_commit_duration_seconds", "histogram", "Commit (write + fsync) time since cairnd started.");
    uint64_t cumulative = 0;
    for (size_t i = 0; i < proto::kCommitBuckets; ++i) {
      cumulative += s.commit_hist[i];
      char le[32];
      if (i < std::size(proto::kCommitBucketsUs))
        std::snprintf(le, sizeof le, "%g", seconds_of_us(proto::kCommitBucketsUs[i]));
      else
        std::snprintf(le, sizeof le, "+Inf");
      x.sample("cairn_commit_duration_seconds_bucket", cumulative, std::string("{le=\"") + le + "\"}");
    }
    x.sample("cairn_commit_duration_seconds_sum", seconds_of_us(s.commit_us_sum));
    x.sample("cairn_commit_duration_seconds_count", cumulative);
  }
  x.family("cairn_commit_duration_window_seconds", "gauge",
           "Commit (write + fsync) time: quantiles of the most recent 1024 commits.");
  x.sample("cairn_commit_duration_window_seconds", seconds_of_us(s.fsync_p50_us), "{quantile=\"0.5\"}");
  x.sample("cairn_commit_duration_window_seconds", seconds_of_us(s.fsync_p99_us), "{quantile=\"0.99\"}");
  x.family("cairn_commit_duration_max_seconds", "gauge", "Longest commit since cairnd started.");
  x.sample("cairn_commit_duration_max_seconds", seconds_of_us(s.fsync_max_us));
  x.single("cairn_queue_events", "gauge", "Events accepted and not yet committed.", s.queue_depth);
  x.single("cairn_queue_bytes", "gauge", "Bytes of events accepted and not yet committed.", s.queue_bytes);
  x.single("cairn_storage_errors_total", "counter", "Failed writes or fsyncs since cairnd started.",
           s.storage_errors);
  x.single("cairn_lost_nondurable_events_total", "counter",
           "Events acked durable:false whose commit then failed, since cairnd started.", s.lost_nondurable);
  x.single("cairn_seals_total", "counter", "Epochs sealed since cairnd started.", s.seals);
  x.single("cairn_disk_free_bytes", "gauge",
           "Bytes free to cairnd on the filesystem holding the database, at cairnd's last look.",
           s.disk_free_bytes);
  x.single("cairn_disk_reserve_bytes", "gauge",
           "Free space cairnd keeps on that filesystem (disk-reserve); below it appends are refused or pushed back.",
           s.disk_reserve_bytes);
  x.single("cairn_storage_full", "gauge",
           "1 while the database's filesystem is below the reserve (or met ENOSPC) and appends are not taken.",
           uint64_t{s.storage_full ? 1u : 0u});
  x.single("cairn_storage_full_refusals_total", "counter",
           "Appends answered storage_full since cairnd started.", s.storage_full_refusals);
  x.single("cairn_connections", "gauge", "Client connections open.", s.connections);
  x.single("cairn_uptime_seconds", "gauge", "Seconds since cairnd started.", s.uptime_s);
  log_figures(x, s);
  return x.take();
}

std::string render_prometheus_down() {
  Exposition x;
  x.single("cairn_up", "gauge", "1 when cairnd answered the stats request.", 0);
  return x.take();
}

int emit_prometheus(const std::string& text, const std::string& textfile) {
  if (textfile.empty()) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 2;
  }
  // node_exporter reads every *.prom in its directory: the temp name must not end so.
  std::string tmp = textfile + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "cairn stats: cannot create %s: %s\n", tmp.c_str(), std::strerror(errno));
    return 2;
  }
  // 0644 whatever the umask: node_exporter runs as its own user.
  bool ok = fchmod(fd, 0644) == 0;
  size_t done = 0;
  while (ok && done < text.size()) {
    ssize_t n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  int err = ok ? 0 : errno;
  if (close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (ok && rename(tmp.c_str(), textfile.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    unlink(tmp.c_str());
    std::fprintf(stderr, "cairn stats: cannot write %s: %s\n", textfile.c_str(), std::strerror(err));
    return 2;
  }
  return 0;
}

}  // namespace cairn::cli
