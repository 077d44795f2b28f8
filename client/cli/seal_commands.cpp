// seal_commands.cpp — cairn verify / key / checkpoint / prove.
//
// key, checkpoint and prove read the database file (read-only) like `--db` does: they
// are an administrator's tools on the host (default /var/lib/cairn/cairn.db). verify
// runs on the file with --db, or asks cairnd; a proof bundle (--proof) needs neither.
#include "seal_commands.hpp"

#include <msgpack.h>
#include <time.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "../../daemon/keys.hpp"
#include "../../daemon/store/store.hpp"
#include "../../seal/bundle.hpp"
#include "../../seal/record.hpp"
#include "json.hpp"

namespace cairn::cli {
namespace {

constexpr const char* kDefaultDb = "/var/lib/cairn/cairn.db";

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

std::string utc(int64_t ns) {
  return ns <= 0 ? "-" : proto::utc_text(ns);
}

// "30s", "15m", "2h", "1d", bare seconds.
bool parse_duration_ns(const std::string& v, int64_t& out) {
  size_t i = 0;
  int64_t n = 0;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') {
    if (n > 1'000'000'000) return false;
    n = n * 10 + (v[i] - '0');
    ++i;
  }
  if (i == 0) return false;
  std::string u = v.substr(i);
  int64_t mul = u == "ms" ? 1'000'000 : u == "s" || u.empty() ? 1'000'000'000 : u == "m" ? 60'000'000'000
              : u == "h" ? 3'600'000'000'000 : u == "d" ? 86'400'000'000'000 : 0;
  if (mul == 0) return false;
  out = n * mul;
  return true;
}

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Every value of a repeatable option (Args keeps only the last).
std::vector<std::string> all_values(int argc, char** argv, const char* name) {
  std::vector<std::string> out;
  std::string eq = std::string("--") + name + "=";
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], (std::string("--") + name).c_str()) == 0 && i + 1 < argc) out.push_back(argv[++i]);
    else if (std::strncmp(argv[i], eq.c_str(), eq.size()) == 0) out.push_back(argv[i] + eq.size());
  }
  return out;
}

int append_to_string(void* data, const char* buf, size_t len) {
  static_cast<std::string*>(data)->append(buf, len);
  return 0;
}

void pack_str(msgpack_packer* pk, const std::string& s) {
  msgpack_pack_str(pk, s.size());
  msgpack_pack_str_body(pk, s.data(), s.size());
}

std::optional<seal::VKey> load_key(const std::string& arg, std::string& err) {
  std::string text = arg;
  if (arg.find('+') == std::string::npos && !read_file(arg, text)) {
    err = "--key: '" + arg + "' is neither a key (NAME+ID+KEY) nor a readable file";
    return std::nullopt;
  }
  auto k = seal::parse_vkey(text);
  if (!k) err = "--key: not a cairn verifier key (expected NAME+ID+BASE64, as `cairn key` prints)";
  return k;
}

void print_report(const proto::VerifyReport& rep, bool json) {
  if (json) {
    std::string out = "{\"valid\":" + std::string(rep.valid ? "true" : "false");
    auto s = [&](const char* k, const std::string& v) {
      std::string e;
      json_escape(v, e);
      out += std::string(",\"") + k + "\":" + e;
    };
    auto u = [&](const char* k, long long v) { out += std::string(",\"") + k + "\":" + std::to_string(v); };
    u("checked", static_cast<long long>(rep.checked));
    u("head_seq", static_cast<long long>(rep.head_seq));
    s("root", seal::hex(rep.root));
    out += std::string(",\"keyed\":") + (rep.keyed ? "true" : "false");
    u("epochs", static_cast<long long>(rep.epochs));
    u("sealed_seq", static_cast<long long>(rep.sealed_seq));
    u("sealed_time", rep.sealed_time);
    u("unsealed", static_cast<long long>(rep.unsealed));
    u("checkpoints", static_cast<long long>(rep.checkpoints));
    if (!rep.valid) {
      s("failure", rep.failure);
      u("break_seq", static_cast<long long>(rep.break_seq.value_or(0)));
      s("reason", rep.reason);
    }
    out += ",\"notes\":[";
    for (size_t i = 0; i < rep.notes.size(); ++i) {
      std::string e;
      json_escape(rep.notes[i], e);
      out += (i ? "," : "") + e;
    }
    out += "]}";
    std::puts(out.c_str());
    return;
  }
  if (rep.valid)
    std::printf("ok: %llu records, root %s\n", static_cast<unsigned long long>(rep.checked), seal::hex(rep.root).c_str());
  else
    std::printf("FAILED [%s] %s\n", rep.failure.c_str(), rep.reason.c_str());
  if (rep.epochs > 0)
    std::printf("sealed through seq %llu at %s (%llu epochs, every seal checked with its own epoch's key)\n",
                static_cast<unsigned long long>(rep.sealed_seq), utc(rep.sealed_time).c_str(),
                static_cast<unsigned long long>(rep.epochs));
  else if (rep.valid)
    std::printf("no seal yet: nothing here is attested by a key\n");
  if (rep.unsealed > 0)
    std::printf("unsealed tail: %llu record(s) after seq %llu, attested by nothing yet\n",
                static_cast<unsigned long long>(rep.unsealed), static_cast<unsigned long long>(rep.sealed_seq));
  if (rep.checkpoints > 0)
    std::printf("extends %llu saved checkpoint(s)\n", static_cast<unsigned long long>(rep.checkpoints));
  if (!rep.keyed && rep.epochs > 0)
    std::printf("warning: key taken from the database itself; pass --key (kept off this host) for proof\n");
  for (const auto& n : rep.notes) std::printf("note: %s\n", n.c_str());
}

int verify_proof(const std::string& path, const std::optional<seal::VKey>& key, bool json) {
  std::string text;
  if (!read_file(path, text)) {
    std::fprintf(stderr, "cairn verify: cannot read %s\n", path.c_str());
    return 2;
  }
  if (!key) {
    std::fprintf(stderr, "cairn verify: --proof needs --key\n");
    return 2;
  }
  auto b = seal::parse_bundle(text);
  if (!b) {
    std::printf(json ? "{\"valid\":false,\"reason\":\"%s\"}\n" : "FAILED %s\n", b.error().c_str());
    return 1;
  }
  auto v = seal::verify_bundle(b.value(), *key);
  if (!v) {
    std::string e;
    json_escape(v.error(), e);
    if (json) std::printf("{\"valid\":false,\"reason\":%s}\n", e.c_str());
    else std::printf("FAILED %s\n", v.error().c_str());
    return 1;
  }
  if (json)
    std::printf("{\"valid\":true,\"seq\":%llu,\"size\":%llu,\"epoch\":%llu,\"sealed_time\":%lld}\n",
                static_cast<unsigned long long>(v.value().seq), static_cast<unsigned long long>(v.value().size),
                static_cast<unsigned long long>(v.value().epoch), static_cast<long long>(v.value().sealed_at));
  else
    std::printf("ok: record seq %llu is in the log %s, sealed at %s (epoch %llu, tree size %llu)\n",
                static_cast<unsigned long long>(v.value().seq), b.value().origin.c_str(),
                utc(v.value().sealed_at).c_str(), static_cast<unsigned long long>(v.value().epoch),
                static_cast<unsigned long long>(v.value().size));
  return 0;
}

std::unique_ptr<store::Store> open_db(const std::string& cmd, const Args& args) {
  std::string path = args.get("db", kDefaultDb);
  auto s = store::Store::open(path, store::OpenMode::readonly);
  if (!s) {
    std::fprintf(stderr, "cairn %s: %s\n", cmd.c_str(), s.error().message.c_str());
    return nullptr;
  }
  return std::move(s.value());
}

std::optional<seal::Seal> seal_of(const std::string& body) { return seal::parse_seal_body(body); }

struct Identity {
  std::string origin;
  seal::PublicKey first{};
};
std::optional<Identity> identity(store::Store& s) {
  auto o = s.meta("origin");
  auto k = s.meta("first_key");
  if (!o || !k || !o.value() || !k.value()) return std::nullopt;
  Identity id;
  id.origin = *o.value();
  if (!seal::unb64_into(*k.value(), id.first)) return std::nullopt;
  return id;
}

// The checkpoint note of a seal: its text and its checkpoint signature by the epoch key
// the previous seal named (epoch 0: the first key).
std::optional<std::string> checkpoint_note(store::Store& s, const Identity& id, uint64_t seal_seq,
                                           const seal::Seal& sl) {
  seal::PublicKey pk = id.first;
  if (sl.epoch > 0) {
    auto prev = s.seals(1, seal_seq - 1);
    if (!prev || prev.value().empty()) return std::nullopt;
    auto p = seal_of(prev.value().back().second);
    if (!p) return std::nullopt;
    pk = p->next_key;
  }
  return seal::format_note(seal::checkpoint_text(id.origin, sl.size, sl.root), id.origin, pk, sl.checkpoint_sig);
}

}  // namespace

int verify_main(int argc, char** argv, const OnlineVerify& online) {
  auto a = parse_args(argc, argv, 2,
                      {{"socket", true}, {"db", true}, {"output", true, 'o'}, {"key", true}, {"checkpoint", true},
                       {"fresh", true}, {"proof", true}, {"key-file", true}, {"help", false, 'h'}});
  if (!a) {
    std::fprintf(stderr, "cairn verify: %s\n", a.error().c_str());
    return 2;
  }
  const Args& args = a.value();
  if (args.has("help")) {
    std::puts(
        "Usage: cairn verify [--socket PATH | --db PATH] [--key KEY] [--checkpoint FILE]...\n"
        "                    [--fresh DURATION] [-o table|json]\n"
        "       cairn verify --proof FILE --key KEY\n"
        "Checks every record against its leaf hash and the Merkle tree, every seal with the key\n"
        "of its own epoch (following the handovers from KEY, the line `cairn key` printed),\n"
        "that queries can see every record, that the log extends each saved checkpoint, and\n"
        "(--fresh 10m) that the newest seal is recent. KEY is the key itself or a file holding it.\n"
        "With --db, the key file (--key-file, default DB.key; `none` on a copy made off the host)\n"
        "must agree with the newest seal: sealed records cut off the end show up there.\n"
        "--proof checks a bundle from `cairn prove` with no database.\n"
        "Exit 0 when everything checked holds, 1 on a failure (its class and first seq are\n"
        "named), 2 on errors.");
    return 0;
  }
  std::string o = args.get("output", "table");
  if (o != "table" && o != "json") {
    std::fprintf(stderr, "cairn verify: -o must be table or json\n");
    return 2;
  }
  bool json = o == "json";
  std::optional<seal::VKey> key;
  if (args.has("key")) {
    std::string err;
    key = load_key(args.get("key"), err);
    if (!key) {
      std::fprintf(stderr, "cairn verify: %s\n", err.c_str());
      return 2;
    }
  }
  if (args.has("proof")) return verify_proof(args.get("proof"), key, json);
  store::VerifyOptions opt;
  opt.key = key;
  opt.now_ns = now_ns();
  for (const auto& path : all_values(argc, argv, "checkpoint")) {
    std::string text;
    if (!read_file(path, text)) {
      std::fprintf(stderr, "cairn verify: --checkpoint: cannot read %s\n", path.c_str());
      return 2;
    }
    opt.checkpoints.push_back(text);
  }
  if (args.has("fresh")) {
    int64_t ns = 0;
    if (!parse_duration_ns(args.get("fresh"), ns)) {
      std::fprintf(stderr, "cairn verify: --fresh: '%s' is not a duration (30s, 10m, 2h, 1d)\n",
                   args.get("fresh").c_str());
      return 2;
    }
    opt.fresh_ns = ns;
  }
  proto::VerifyReport rep;
  if (args.has("db")) {
    std::string kf = args.get("key-file", args.get("db") + ".key");
    if (kf != "none") {
      if (!daemon::KeyFile::exists(kf)) {
        opt.key_file_error = "the key file " + kf + " is missing (deleted? pass --key-file none to verify a copy "
                             "made off the host)";
      } else {
        auto k = daemon::KeyFile::read_public(kf);
        if (!k) {
          opt.key_file_error = k.error();
        } else {
          store::KeyFileState st;
          st.epoch = k.value().epoch;
          st.pending = k.value().pending;
          st.sealed_seq = k.value().sealed_seq;
          st.first = k.value().first;
          st.current = k.value().current;
          st.next = k.value().next;
          opt.key_file = st;
        }
      }
    }
    auto s = store::Store::open(args.get("db"), store::OpenMode::readonly);
    if (!s && s.error().kind == store::StoreErrorKind::schema && opt.key_file && opt.key_file->epoch > 0) {
      // Not even a schema left (the -wal that held everything was deleted), while the
      // key file says records were sealed: that is a truncation, not a usage error.
      rep.valid = false;
      rep.failure = "truncated";
      rep.break_seq = 1;
      rep.reason = "the database holds no cairn log at all (" + s.error().message + "), but the key file is at epoch " +
                   std::to_string(opt.key_file->epoch) + " (sealed through seq " +
                   std::to_string(opt.key_file->sealed_seq) + ")";
      print_report(rep, json);
      return 1;
    }
    if (!s) {
      std::fprintf(stderr, "cairn verify: %s\n", s.error().message.c_str());
      return 2;
    }
    auto r = s.value()->verify(opt);
    if (!r) {
      std::fprintf(stderr, "cairn verify: %s\n", r.error().message.c_str());
      return 2;
    }
    rep = r.value();
  } else {
    std::string req;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &req, &append_to_string);
    msgpack_pack_map(&pk, (key ? 1 : 0) + (opt.checkpoints.empty() ? 0 : 1) + (opt.fresh_ns ? 1 : 0));
    if (key) {
      pack_str(&pk, "key");
      pack_str(&pk, seal::format_vkey(key->name, key->key));
    }
    if (!opt.checkpoints.empty()) {
      pack_str(&pk, "checkpoints");
      msgpack_pack_array(&pk, opt.checkpoints.size());
      for (const auto& c : opt.checkpoints) pack_str(&pk, c);
    }
    if (opt.fresh_ns) {
      pack_str(&pk, "fresh");
      msgpack_pack_uint64(&pk, static_cast<uint64_t>(*opt.fresh_ns));
    }
    int rc = online(args, req == std::string("\x80") ? std::string() : req, rep);
    if (rc != 0) return rc;
    if (key && !rep.keyed) {
      std::fprintf(stderr, "cairn verify: this cairnd did not check with --key; use --db\n");
      return 2;
    }
  }
  print_report(rep, json);
  return rep.valid ? 0 : 1;
}

int cmd_key(int argc, char** argv) {
  auto a = parse_args(argc, argv, 2, {{"db", true}, {"help", false, 'h'}});
  if (!a || a.value().has("help")) {
    std::puts("Usage: cairn key [--db PATH]\n"
              "Prints the log's verification key (origin + first public key) on one line. Copy it\n"
              "off the host: `cairn verify --key` and `cairn verify --proof` check against it.");
    return a ? 0 : 2;
  }
  auto s = open_db("key", a.value());
  if (!s) return 2;
  auto id = identity(*s);
  if (!id) {
    std::fprintf(stderr, "cairn key: this log has no key (sealing was never on)\n");
    return 2;
  }
  std::puts(seal::format_vkey(id->origin, id->first).c_str());
  return 0;
}

int cmd_checkpoint(int argc, char** argv) {
  auto a = parse_args(argc, argv, 2, {{"db", true}, {"help", false, 'h'}});
  if (!a || a.value().has("help")) {
    std::puts("Usage: cairn checkpoint [--db PATH]\n"
              "Prints the newest signed checkpoint (C2SP tlog-checkpoint note): keep it elsewhere and\n"
              "pass it to `cairn verify --checkpoint FILE` to prove the log still extends it.");
    return a ? 0 : 2;
  }
  auto s = open_db("checkpoint", a.value());
  if (!s) return 2;
  auto id = identity(*s);
  auto last = s->latest_seal();
  if (!id || !last || !last.value()) {
    std::fprintf(stderr, "cairn checkpoint: no seal yet\n");
    return 2;
  }
  auto sl = seal_of(last.value()->second);
  std::optional<std::string> note;
  if (sl) note = checkpoint_note(*s, *id, last.value()->first, *sl);
  if (!note) {
    std::fprintf(stderr, "cairn checkpoint: the newest seal cannot be read (run cairn verify)\n");
    return 2;
  }
  std::fputs(note->c_str(), stdout);
  return 0;
}

int cmd_prove(int argc, char** argv) {
  auto a = parse_args(argc, argv, 2, {{"db", true}, {"help", false, 'h'}});
  if (!a || a.value().has("help") || a.value().positional.size() != 1) {
    std::fputs("Usage: cairn prove SEQ [--db PATH] > proof.txt\n"
               "Writes a bundle proving record SEQ is in the log: the record, its inclusion proof, the\n"
               "seals from the first key to the first seal covering it, and that seal's checkpoint.\n"
               "Check it anywhere with `cairn verify --proof FILE --key KEY`.\n",
               a && a.value().has("help") ? stdout : stderr);
    return a && a.value().has("help") ? 0 : 2;
  }
  char* end = nullptr;
  const std::string& arg = a.value().positional[0];
  unsigned long long seq = std::strtoull(arg.c_str(), &end, 10);
  if (arg.empty() || *end != '\0' || seq == 0) {
    std::fprintf(stderr, "cairn prove: SEQ: '%s' is not a record number\n", arg.c_str());
    return 2;
  }
  auto s = open_db("prove", a.value());
  if (!s) return 2;
  auto id = identity(*s);
  if (!id) {
    std::fprintf(stderr, "cairn prove: this log has no key (sealing was never on)\n");
    return 2;
  }
  auto body = s->body_of(seq);
  if (!body || !body.value()) {
    std::fprintf(stderr, "cairn prove: no record %llu\n", seq);
    return 2;
  }
  auto covering = s->seal_after(seq);
  if (!covering || !covering.value()) {
    std::fprintf(stderr, "cairn prove: record %llu is not sealed yet (wait for the next seal)\n", seq);
    return 1;
  }
  uint64_t seal_seq = covering.value()->first;
  auto sl = seal_of(covering.value()->second);
  auto chain = s->seals(1, seal_seq);
  if (!sl || !chain) {
    std::fprintf(stderr, "cairn prove: the seals cannot be read (run cairn verify)\n");
    return 2;
  }
  auto note = checkpoint_note(*s, *id, seal_seq, *sl);
  auto path = s->inclusion_proof(seq, sl->size);
  if (!note || !path) {
    std::fprintf(stderr, "cairn prove: %s\n", path ? "the checkpoint cannot be built" : path.error().message.c_str());
    return 2;
  }
  seal::Bundle b;
  b.origin = id->origin;
  b.seq = seq;
  b.record = *body.value();
  b.size = sl->size;
  b.inclusion = path.value();
  for (auto& [q, sb] : chain.value()) b.seals.push_back(std::move(sb));
  b.checkpoint = *note;
  std::fputs(seal::format_bundle(b).c_str(), stdout);
  return 0;
}

}  // namespace cairn::cli
