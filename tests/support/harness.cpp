#include "harness.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace cairn::test {

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

static std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

// CAIRN_TEST_CAIRND / CAIRN_TEST_CLI, when set, win over the CAIRND / CAIRN_CLI that
// meson's test environment sets: ./dev test runs the integration suite (whose Criterion
// binaries cannot run under ThreadSanitizer, Criterion issue #274) against the cairnd
// and cairn built with -fsanitize=thread in build-tsan.
std::string cairnd_path() {
  return env_or("CAIRN_TEST_CAIRND", env_or("CAIRND", "build/daemon/cairnd").c_str());
}
std::string cli_path() {
  return env_or("CAIRN_TEST_CLI", env_or("CAIRN_CLI", "build/client/cairn").c_str());
}

static std::string make_temp_dir(const std::string& name) {
  std::string tmpl = env_or("TMPDIR", "/tmp") + "/" + name + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  return buf.data();
}

// ---- NotifyListener ----

NotifyListener::NotifyListener() {
  dir_ = make_temp_dir("cairn-notify");
  path_ = dir_ + "/notify.sock";
  fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path_.c_str(), sizeof sa.sun_path - 1);
  if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    std::perror("notify bind");
    std::abort();
  }
}

NotifyListener::~NotifyListener() {
  if (fd_ >= 0) close(fd_);
  unlink(path_.c_str());
  rmdir(dir_.c_str());
}

std::optional<std::string> NotifyListener::next(int timeout_ms) {
  pollfd p{fd_, POLLIN, 0};
  int rc = poll(&p, 1, timeout_ms);
  if (rc <= 0) return std::nullopt;
  char buf[4096];
  ssize_t n = recv(fd_, buf, sizeof buf, 0);
  if (n < 0) return std::nullopt;
  std::string msg(buf, static_cast<size_t>(n));
  log_.push_back(msg);
  arrival_ms.push_back(now_ms());
  return msg;
}

bool NotifyListener::wait_for(const std::string& needle, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) return false;
    auto m = next(static_cast<int>(left));
    if (m && m->find(needle) != std::string::npos) return true;
  }
}

// ---- TestDaemon ----

TestDaemon::TestDaemon(const std::string& name) {
  dir_ = make_temp_dir(name);
  socket_ = dir_ + "/cairn.sock";
  db_ = dir_ + "/cairn.db";
  log_ = dir_ + "/cairnd.log";
}

TestDaemon::~TestDaemon() {
  if (pid_ > 0) kill9();
  delete notify_;
  if (std::getenv("CAIRN_KEEP_TEST_DIR") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

bool TestDaemon::start(const DaemonOptions& opts) {
  delete notify_;
  notify_ = new NotifyListener();
  std::vector<std::string> args;
  if (opts.via_socket_activate)
    args = {"/usr/bin/systemd-socket-activate", "-l", socket_, "-E",
            "NOTIFY_SOCKET=" + notify_->path()};
  for (const auto& a : std::vector<std::string>{cairnd_path(), "--socket", socket_, "--db", db_})
    args.push_back(a);
  args.insert(args.end(), opts.args.begin(), opts.args.end());
  // A config file installed on the test machine (/etc/cairn/cairnd.conf) must not change
  // the daemon under test: none is read unless the test names one.
  if (std::find(opts.args.begin(), opts.args.end(), "--config") == opts.args.end()) args.push_back("--no-config");
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    int logfd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd >= 0) {
      dup2(logfd, STDERR_FILENO);
      dup2(logfd, STDOUT_FILENO);
    }
    setenv("NOTIFY_SOCKET", notify_->path().c_str(), 1);
    if (opts.listen_fd >= 0) {
      if (opts.listen_fd != 3) {
        dup2(opts.listen_fd, 3);  // dup2 clears FD_CLOEXEC on the copy
      } else {
        fcntl(3, F_SETFD, 0);
      }
      setenv("LISTEN_FDS", "1", 1);
      setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    }
    for (const auto& e : opts.env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  pid_ = pid;
  if (!opts.wait_ready) return true;
  int64_t deadline = now_ms() + 30'000;
  while (now_ms() < deadline) {
    auto m = notify_->next(200);
    if (m && m->find("READY=1") != std::string::npos) return true;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      std::fprintf(stderr, "cairnd exited before READY=1 (status %d); log %s\n", exit_code(st),
                   log_.c_str());
      return false;
    }
  }
  return false;
}

int TestDaemon::stop(int sig) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  int st = 0;
  while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return st;
}

int make_listening_socket(const std::string& path, int backlog) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  unlink(path.c_str());
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      listen(fd, backlog) != 0) {
    std::perror("make_listening_socket");
    std::abort();
  }
  return fd;
}

int exit_code(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

// ---- database checks ----

namespace {

struct Db {
  sqlite3* db = nullptr;
  explicit Db(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      db = nullptr;
    }
  }
  ~Db() { sqlite3_close(db); }
};

std::string col_text(sqlite3_stmt* st, int i) {
  const unsigned char* t = sqlite3_column_text(st, i);
  return t ? std::string(reinterpret_cast<const char*>(t),
                         static_cast<size_t>(sqlite3_column_bytes(st, i)))
           : std::string();
}

std::string col_blob(sqlite3_stmt* st, int i) {
  const void* b = sqlite3_column_blob(st, i);
  return b ? std::string(static_cast<const char*>(b),
                         static_cast<size_t>(sqlite3_column_bytes(st, i)))
           : std::string();
}

}  // namespace

std::vector<Row> read_rows(const std::string& db_path) { return read_rows_from(db_path, 1); }

std::vector<Row> read_rows_from(const std::string& db_path, uint64_t from_seq) {
  std::vector<Row> rows;
  Db d(db_path);
  if (d.db == nullptr) return rows;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(d.db,
                         "SELECT seq, type, actor, idem, pid, uid, gid, severity FROM events "
                         "WHERE seq >= ?1 AND type NOT LIKE 'cairn.%' ORDER BY seq",
                         -1, &st, nullptr) != SQLITE_OK)
    return rows;
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(from_seq));
  while (sqlite3_step(st) == SQLITE_ROW) {
    Row r;
    r.seq = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    r.type = col_text(st, 1);
    r.actor = col_text(st, 2);
    r.idem = col_blob(st, 3);
    r.pid = static_cast<uint32_t>(sqlite3_column_int64(st, 4));
    r.uid = static_cast<uint32_t>(sqlite3_column_int64(st, 5));
    r.gid = static_cast<uint32_t>(sqlite3_column_int64(st, 6));
    r.severity = sqlite3_column_int(st, 7);
    rows.push_back(std::move(r));
  }
  sqlite3_finalize(st);
  return rows;
}

std::string check_database(const std::string& db_path) {
  ChainCursor cursor;
  return check_database_from(db_path, cursor, true);
}

std::string check_database_from(const std::string& db_path, ChainCursor& cursor, bool integrity) {
  if (sodium_init() < 0) return "sodium_init failed";
  Db d(db_path);
  if (d.db == nullptr) return "cannot open " + db_path;
  sqlite3_stmt* st = nullptr;
  if (integrity) {
    if (sqlite3_prepare_v2(d.db, "PRAGMA integrity_check", -1, &st, nullptr) != SQLITE_OK)
      return "integrity_check: " + std::string(sqlite3_errmsg(d.db));
    std::string verdict = sqlite3_step(st) == SQLITE_ROW ? col_text(st, 0) : "no answer";
    sqlite3_finalize(st);
    if (verdict != "ok") return "integrity_check: " + verdict;
  }
  if (sqlite3_prepare_v2(d.db, "SELECT seq, body, hash FROM events WHERE seq >= ?1 ORDER BY seq",
                         -1, &st, nullptr) != SQLITE_OK)
    return "select: " + std::string(sqlite3_errmsg(d.db));
  sqlite3_bind_int64(st, 1, static_cast<sqlite3_int64>(cursor.next_seq));
  std::string problem;
  while (sqlite3_step(st) == SQLITE_ROW) {
    uint64_t seq = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    if (seq != cursor.next_seq) {
      problem = "seq " + std::to_string(seq) + " follows " + std::to_string(cursor.next_seq - 1) +
                " (gap)";
      break;
    }
    std::string body = col_blob(st, 1), hash = col_blob(st, 2);
    seal::Hash leaf = seal::leaf_hash(body);
    if (hash.size() != 32 || std::memcmp(leaf.data(), hash.data(), 32) != 0) {
      problem = "seq " + std::to_string(seq) + ": stored leaf hash is not the hash of its body";
      break;
    }
    // Every interior node this leaf completes must be stored, with the recomputed hash.
    cursor.tree.push(leaf, [&](unsigned level, uint64_t index, const seal::Hash& h) {
      if (!problem.empty()) return;
      sqlite3_stmt* nst = nullptr;
      sqlite3_prepare_v2(d.db, "SELECT hash FROM tree WHERE pos = ?1", -1, &nst, nullptr);
      sqlite3_bind_int64(nst, 1, static_cast<sqlite3_int64>(seal::postorder(level, index)));
      if (sqlite3_step(nst) != SQLITE_ROW || col_blob(nst, 0) != std::string(h.begin(), h.end()))
        problem = "seq " + std::to_string(seq) + ": tree node (" + std::to_string(level) + ", " +
                  std::to_string(index) + ") is missing or wrong";
      sqlite3_finalize(nst);
    });
    if (!problem.empty()) break;
    ++cursor.next_seq;
  }
  sqlite3_finalize(st);
  return problem;
}

int run_capture(const std::vector<std::string>& argv, std::string& out) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    std::vector<char*> a;
    for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execv(a[0], a.data());
    _exit(127);
  }
  close(pipefd[1]);
  out.clear();
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return exit_code(st);
}

bool wait_exit(pid_t pid, int timeout_ms) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return false;
  pollfd p{fd, POLLIN, 0};
  int rc;
  while ((rc = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
  }
  close(fd);
  return rc > 0;
}

}  // namespace cairn::test
