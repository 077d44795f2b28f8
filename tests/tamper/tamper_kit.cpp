#include "tamper_kit.hpp"

#include <fcntl.h>
#include <signal.h>
#include <msgpack.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "../../seal/merkle.hpp"
#include "../../seal/note.hpp"
#include "../../seal/record.hpp"
#include "harness.hpp"

namespace cairn::tamper {
namespace {

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what); }

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_all(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
  if (!f) die("write " + path);
}

void copy_file(const std::string& from, const std::string& to) {
  write_all(to, read_all(from));
  chmod(to.c_str(), 0600);
}

std::string golden_dir() {
  const char* d = std::getenv("CAIRN_TAMPER_DIR");
  return d ? d : "/tmp/cairn-tamper";
}

uint64_t max_seal_seq(const std::string& db) {
  sqlite3* h = nullptr;
  uint64_t v = 0;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, "SELECT IFNULL(MAX(seq),0) FROM events WHERE type='cairn.seal'", -1, &st, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
      v = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return v;
}

std::string capture(const std::vector<std::string>& argv) {
  std::string out;
  if (test::run_capture(argv, out) != 0) die("command failed: " + argv[0] + " " + argv[1]);
  return out;
}

}  // namespace

void wait_seal_after(const std::string& db, uint64_t seq) {
  int64_t deadline = test::now_ms() + 20'000;
  while (max_seal_seq(db) <= seq) {
    if (test::now_ms() > deadline) die("no seal after seq " + std::to_string(seq) + " within 20 s");
    usleep(20'000);  // polling the file: the condition is in another process's file
  }
}

uint64_t send_events(const std::string& socket, const std::string& scratch_dir, int from, int n) {
  std::string lines;
  for (int i = from; i < from + n; ++i) {
    bool fail = i % 5 == 0;
    lines += std::string("{\"type\":\"") + (fail ? "AuthFailure" : "UserLogin") + "\",\"actor\":\"user" +
             std::to_string(i % 7) + "\",\"outcome\":\"" + (fail ? "failure" : "success") +
             "\",\"fields\":{\"n\":" + std::to_string(i) + ",\"ip\":\"10.0.0." + std::to_string(i % 250) + "\"}}\n";
  }
  std::string in = scratch_dir + "/in.ndjson";
  write_all(in, lines);
  std::string out;
  if (test::run_capture({"/bin/sh", "-c", test::cli_path() + " send -o json --socket " + socket + " --stdin < " + in},
                        out) != 0)
    die("cairn send failed");
  uint64_t max = 0;
  for (size_t at = out.find("\"seq\":"); at != std::string::npos; at = out.find("\"seq\":", at + 1))
    max = std::max<uint64_t>(max, std::strtoull(out.c_str() + at + 6, nullptr, 10));
  return max;
}

namespace {

Golden build() {
  Golden g;
  g.dir = golden_dir();
  std::system(("rm -rf '" + g.dir + "'").c_str());
  if (mkdir(g.dir.c_str(), 0700) != 0) die("mkdir " + g.dir);
  test::TestDaemon d("tamper");
  test::DaemonOptions o;
  o.args = {"--seal-interval", "200ms"};
  if (!d.start(o)) die("cairnd did not start");
  send_events(d.socket(), d.dir(), 1, 133);
  wait_seal_after(d.db(), 133);
  // A checkpoint kept elsewhere, and a consistent older copy (rollback), taken now.
  g.checkpoint = capture({test::cli_path(), "checkpoint", "--db", d.db()});
  g.old_db = g.dir + "/old.db";
  {
    sqlite3* h = nullptr;
    sqlite3_open_v2(d.db().c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
    std::string sql = "VACUUM INTO '" + g.old_db + "'";
    if (sqlite3_exec(h, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) die("vacuum into");
    sqlite3_close(h);
  }
  g.old_key = g.dir + "/old.key";
  copy_file(d.db() + ".key", g.old_key);
  send_events(d.socket(), d.dir(), 134, 133);
  wait_seal_after(d.db(), 133 + 133);
  send_events(d.socket(), d.dir(), 267, 133);
  if (test::exit_code(d.stop(SIGTERM)) != 0) die("cairnd did not stop cleanly");
  copy_file(d.db(), g.dir + "/cairn.db");
  copy_file(d.db() + ".key", g.dir + "/cairn.db.key");
  g.key = capture({test::cli_path(), "key", "--db", g.dir + "/cairn.db"});
  while (!g.key.empty() && g.key.back() == '\n') g.key.pop_back();
  write_all(g.dir + "/key.txt", g.key);
  write_all(g.dir + "/checkpoint.txt", g.checkpoint);
  sqlite3* h = nullptr;
  sqlite3_open_v2((g.dir + "/cairn.db").c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(h, "SELECT MAX(seq) FROM events", -1, &st, nullptr);
  if (sqlite3_step(st) == SQLITE_ROW) g.records = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(h);
  write_all(g.dir + "/READY", std::to_string(g.records));
  return g;
}

}  // namespace

const Golden& golden() {
  static Golden g;
  static bool loaded = false;
  if (loaded) return g;
  std::string dir = golden_dir();
  // The first test process builds it; the others wait on the lock, then read it.
  std::string lock = dir + ".lock";
  int fd = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || lockf(fd, F_LOCK, 0) != 0) die("lock " + lock);
  struct stat sb {};
  std::string ready = dir + "/READY";
  std::string stamp = dir + ".run";
  // One golden per test run: the runner's pid (our parent) names the run.
  std::string run = std::to_string(getppid());
  if (stat(ready.c_str(), &sb) != 0 || read_all(stamp) != run) {
    g = build();
    write_all(stamp, run);
  } else {
    g.dir = dir;
    g.key = read_all(dir + "/key.txt");
    g.checkpoint = read_all(dir + "/checkpoint.txt");
    g.old_db = dir + "/old.db";
    g.old_key = dir + "/old.key";
    g.records = std::strtoull(read_all(ready).c_str(), nullptr, 10);
  }
  lockf(fd, F_ULOCK, 0);
  close(fd);
  loaded = true;
  return g;
}

std::string copy_golden(const std::string& name) {
  const Golden& g = golden();
  std::string tmpl = g.dir + "-" + name + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) die("mkdtemp");
  std::string dir = buf.data();
  copy_file(g.dir + "/cairn.db", dir + "/cairn.db");
  copy_file(g.dir + "/cairn.db.key", dir + "/cairn.db.key");
  return dir;
}

Verdict verify(const std::string& dir, const std::vector<std::string>& extra, const std::string& key) {
  std::vector<std::string> argv = {test::cli_path(), "verify", "--db", dir + "/cairn.db", "--key",
                                   key.empty() ? golden().key : key, "-o", "json"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Verdict v;
  v.exit = test::run_capture(argv, v.json);
  v.valid = v.json.find("\"valid\":true") != std::string::npos;
  auto field = [&](const char* k) {
    std::string pat = std::string("\"") + k + "\":\"";
    size_t at = v.json.find(pat);
    if (at == std::string::npos) return std::string();
    at += pat.size();
    return v.json.substr(at, v.json.find('"', at) - at);
  };
  v.failure = field("failure");
  v.reason = field("reason");
  return v;
}

void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string e = err ? err : "?";
    sqlite3_free(err);
    die(sql + ": " + e);
  }
}

sqlite3* open_rw(const std::string& dir) {
  sqlite3* db = nullptr;
  if (sqlite3_open((dir + "/cairn.db").c_str(), &db) != SQLITE_OK) die("open " + dir);
  exec(db, "DROP TRIGGER IF EXISTS events_no_update; DROP TRIGGER IF EXISTS events_no_delete;"
           "DROP TRIGGER IF EXISTS tree_no_update; DROP TRIGGER IF EXISTS tree_no_delete;");
  return db;
}

std::vector<Rec> read_records(sqlite3* db) {
  std::vector<Rec> out;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT body FROM events ORDER BY seq", -1, &st, nullptr);
  while (sqlite3_step(st) == SQLITE_ROW)
    out.push_back({std::string(static_cast<const char*>(sqlite3_column_blob(st, 0)),
                               static_cast<size_t>(sqlite3_column_bytes(st, 0)))});
  sqlite3_finalize(st);
  return out;
}

namespace {
struct Unpacked {
  msgpack_zone zone;
  msgpack_object obj;
  explicit Unpacked(const std::string& body) {
    msgpack_zone_init(&zone, 2048);
    size_t off = 0;
    if (msgpack_unpack(body.data(), body.size(), &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS) die("unpack");
  }
  ~Unpacked() { msgpack_zone_destroy(&zone); }
};
int to_string_cb(void* data, const char* buf, size_t len) {
  static_cast<std::string*>(data)->append(buf, len);
  return 0;
}
void bind_obj(sqlite3_stmt* st, int i, const msgpack_object* o) {
  if (o == nullptr) sqlite3_bind_null(st, i);
  else if (o->type == MSGPACK_OBJECT_STR) sqlite3_bind_text(st, i, o->via.str.ptr, static_cast<int>(o->via.str.size), SQLITE_TRANSIENT);
  else if (o->type == MSGPACK_OBJECT_BIN) sqlite3_bind_blob(st, i, o->via.bin.ptr, static_cast<int>(o->via.bin.size), SQLITE_TRANSIENT);
  else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) sqlite3_bind_int64(st, i, static_cast<sqlite3_int64>(o->via.u64));
  else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) sqlite3_bind_int64(st, i, o->via.i64);
  else sqlite3_bind_null(st, i);
}
}  // namespace

void rebuild(sqlite3* db, const std::vector<Rec>& recs) {
  exec(db, "BEGIN; DELETE FROM events; DELETE FROM tree;");
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO events (seq, received, time, type, severity, actor, action, target, outcome, "
                     "pid, uid, gid, comm, idem, body, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,"
                     "?14,?15,?16)",
                     -1, &ins, nullptr);
  sqlite3_stmt* node = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO tree (pos, hash) VALUES (?1, ?2)", -1, &node, nullptr);
  seal::Frontier tree;
  for (size_t i = 0; i < recs.size(); ++i) {
    Unpacked u(recs[i].body);
    auto get = [&](const char* k) { return seal::map_get(u.obj, k); };
    sqlite3_bind_int64(ins, 1, static_cast<sqlite3_int64>(i + 1));
    bind_obj(ins, 2, get("received"));
    bind_obj(ins, 3, get("time"));
    bind_obj(ins, 4, get("type"));
    bind_obj(ins, 5, get("severity"));
    bind_obj(ins, 6, get("actor"));
    bind_obj(ins, 7, get("action"));
    bind_obj(ins, 8, get("target"));
    const msgpack_object* oc = get("outcome");
    std::string o = oc ? std::string(oc->via.str.ptr, oc->via.str.size) : "unknown";
    sqlite3_bind_int(ins, 9, o == "success" ? 1 : o == "failure" ? 2 : 0);
    bind_obj(ins, 10, get("pid"));
    bind_obj(ins, 11, get("uid"));
    bind_obj(ins, 12, get("gid"));
    bind_obj(ins, 13, get("comm"));
    bind_obj(ins, 14, get("idem"));
    sqlite3_bind_blob(ins, 15, recs[i].body.data(), static_cast<int>(recs[i].body.size()), SQLITE_TRANSIENT);
    seal::Hash leaf = seal::leaf_hash(recs[i].body);
    sqlite3_bind_blob(ins, 16, leaf.data(), 32, SQLITE_TRANSIENT);
    if (sqlite3_step(ins) != SQLITE_DONE) die(std::string("insert: ") + sqlite3_errmsg(db));
    sqlite3_reset(ins);
    tree.push(leaf, [&](unsigned level, uint64_t index, const seal::Hash& h) {
      sqlite3_bind_int64(node, 1, static_cast<sqlite3_int64>(seal::postorder(level, index)));
      sqlite3_bind_blob(node, 2, h.data(), 32, SQLITE_TRANSIENT);
      if (sqlite3_step(node) != SQLITE_DONE) die("insert node");
      sqlite3_reset(node);
    });
  }
  sqlite3_finalize(ins);
  sqlite3_finalize(node);
  // The query index as cairnd would have it for these records (the writer had counted
  // the deleted ones too).
  exec(db, "DELETE FROM time_seq; DELETE FROM type_counts;"
           "INSERT INTO time_seq (bucket, lo, hi) SELECT received >> 30, MIN(seq), MAX(seq) FROM events GROUP BY 1;"
           "INSERT INTO type_counts (type, n) SELECT type, COUNT(*) FROM events GROUP BY type;"
           "INSERT OR REPLACE INTO meta(key, value) SELECT 'index_through', IFNULL(MAX(seq), 0) FROM events;");
  exec(db, "COMMIT");
}

std::string with_str(const std::string& body, const std::string& key, const std::string& value) {
  Unpacked u(body);
  std::string out;
  msgpack_packer pk;
  msgpack_packer_init(&pk, &out, &to_string_cb);
  msgpack_pack_map(&pk, u.obj.via.map.size);
  for (uint32_t i = 0; i < u.obj.via.map.size; ++i) {
    const auto& kv = u.obj.via.map.ptr[i];
    msgpack_pack_object(&pk, kv.key);
    if (std::string(kv.key.via.str.ptr, kv.key.via.str.size) == key) {
      msgpack_pack_str(&pk, value.size());
      msgpack_pack_str_body(&pk, value.data(), value.size());
    } else {
      msgpack_pack_object(&pk, kv.val);
    }
  }
  return out;
}

std::string without(const std::string& body, const std::string& key) {
  Unpacked u(body);
  std::string out;
  msgpack_packer pk;
  msgpack_packer_init(&pk, &out, &to_string_cb);
  uint32_t n = 0;
  for (uint32_t i = 0; i < u.obj.via.map.size; ++i)
    if (std::string(u.obj.via.map.ptr[i].key.via.str.ptr, u.obj.via.map.ptr[i].key.via.str.size) != key) ++n;
  msgpack_pack_map(&pk, n);
  for (uint32_t i = 0; i < u.obj.via.map.size; ++i) {
    const auto& kv = u.obj.via.map.ptr[i];
    if (std::string(kv.key.via.str.ptr, kv.key.via.str.size) == key) continue;
    msgpack_pack_object(&pk, kv.key);
    msgpack_pack_object(&pk, kv.val);
  }
  return out;
}

std::string type_of(const std::string& body) {
  Unpacked u(body);
  const msgpack_object* t = seal::map_get(u.obj, "type");
  return t ? std::string(t->via.str.ptr, t->via.str.size) : "";
}

std::string resign_seal(const std::string& body, const std::string& origin, const uint8_t* sk,
                        const uint8_t* new_root) {
  Unpacked u(body);
  const msgpack_object* f = seal::map_get(u.obj, "fields");
  const msgpack_object* r = seal::map_get(u.obj, "received");
  auto s = seal::parse_seal_fields(*f, static_cast<int64_t>(r->via.u64));
  if (!s) die("not a seal");
  std::memcpy(s->root.data(), new_root, 32);
  s->sig = seal::sign(sk, seal::seal_message(origin, *s));
  s->checkpoint_sig = seal::sign(sk, seal::checkpoint_text(origin, s->size, s->root));
  std::string fields = seal::seal_fields(*s);
  std::string out;
  msgpack_packer pk;
  msgpack_packer_init(&pk, &out, &to_string_cb);
  msgpack_pack_map(&pk, u.obj.via.map.size);
  for (uint32_t i = 0; i < u.obj.via.map.size; ++i) {
    const auto& kv = u.obj.via.map.ptr[i];
    msgpack_pack_object(&pk, kv.key);
    if (std::string(kv.key.via.str.ptr, kv.key.via.str.size) == "fields") out += fields;
    else msgpack_pack_object(&pk, kv.val);
  }
  return out;
}

std::vector<uint8_t> current_secret(const std::string& key_file) {
  std::string raw = read_all(key_file);
  if (raw.size() < 1024) die("short key file");
  // Both slots hold the same state after a completed write; the seed is at offset 88.
  std::vector<uint8_t> sk(64);
  uint8_t pk[32];
  crypto_sign_seed_keypair(pk, sk.data(), reinterpret_cast<const unsigned char*>(raw.data()) + 88);
  return sk;
}

}  // namespace cairn::tamper
