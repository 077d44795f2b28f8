// Seal records (seal/record.hpp) and proof bundles (seal/bundle.hpp). A small log is
// built by hand the way cairnd builds it — events and seal records as canonical bodies,
// one Merkle tree over all of them, each seal signed by its own epoch's Ed25519 key and
// naming the next — and then forged the ways a root attacker would: the error must name
// the class an auditor acts on.
#include <criterion/criterion.h>
#include <sodium.h>

#include <map>
#include <string>
#include <vector>

#include "../../../protocol/event.hpp"
#include "../../../seal/bundle.hpp"
#include "../../../seal/merkle.hpp"
#include "../../../seal/record.hpp"

using namespace cairn;
using namespace cairn::seal;

namespace {

constexpr const char* kOrigin = "cairn/test-machine";

struct Key {
  PublicKey pk{};
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
};

// Decodes `fields` of a seal record body and parses it back.
std::optional<Seal> seal_of_body(const std::string& body) {
  msgpack_zone zone;
  msgpack_zone_init(&zone, 2048);
  size_t off = 0;
  msgpack_object obj;
  std::optional<Seal> out;
  if (msgpack_unpack(body.data(), body.size(), &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS) {
    const msgpack_object* f = map_get(obj, "fields");
    const msgpack_object* r = map_get(obj, "received");
    if (f && r && r->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
      out = parse_seal_fields(*f, static_cast<int64_t>(r->via.u64));
  }
  msgpack_zone_destroy(&zone);
  return out;
}

// Parses a bare `fields` map (what seal_fields() returns).
std::optional<Seal> parse_fields(const std::string& fields, int64_t received) {
  msgpack_zone zone;
  msgpack_zone_init(&zone, 2048);
  size_t off = 0;
  msgpack_object obj;
  std::optional<Seal> out;
  if (msgpack_unpack(fields.data(), fields.size(), &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS &&
      off == fields.size())
    out = parse_seal_fields(obj, received);
  msgpack_zone_destroy(&zone);
  return out;
}

// A log of `per_epoch` events then one seal, `epochs` times, over keys[0..epochs].
// Records are canonical bodies; leaves[i] is record seq i+1.
struct Log {
  std::vector<Key> keys;
  std::vector<std::string> records;
  std::vector<Hash> leaves;
  std::map<uint64_t, Hash> nodes;  // interior nodes by postorder position
  Frontier tree;
  std::vector<uint64_t> seal_seqs;
  std::vector<Seal> seals;
  int64_t created = 1'000'000'000;

  explicit Log(int epochs, int per_epoch = 4) {
    cr_assert_geq(sodium_init(), 0);
    keys.resize(static_cast<size_t>(epochs) + 1);
    for (auto& k : keys) crypto_sign_keypair(k.pk.data(), k.sk);
    int64_t t = created;
    for (int e = 0; e < epochs; ++e) {
      for (int i = 0; i < per_epoch; ++i) {
        proto::Event ev;
        ev.type = i % 2 ? "UserLogin" : "AuthFailure";
        ev.actor = "user" + std::to_string(records.size());
        add(proto::event_canonical_body(ev, proto::Trusted{t += 1000, 42, 1000, 1000, "sshd"}));
      }
      Seal s;
      s.epoch = static_cast<uint64_t>(e);
      s.size = records.size();
      s.root = tree.root();
      s.time = (t += 1000);
      s.prev_time = seals.empty() ? created : seals.back().time;
      s.boot_id = "3f2a6c1e-0000-4000-8000-000000000001";
      s.next_key = keys[static_cast<size_t>(e) + 1].pk;
      sign_seal(s, keys[static_cast<size_t>(e)]);
      seals.push_back(s);
      seal_seqs.push_back(records.size() + 1);
      add(seal_body(s));
    }
  }
  static void sign_seal(Seal& s, const Key& k) {
    s.sig = sign(k.sk, seal_message(kOrigin, s));
    s.checkpoint_sig = sign(k.sk, checkpoint_text(kOrigin, s.size, s.root));
  }
  static std::string seal_body(const Seal& s) {
    proto::Event ev;
    ev.type = std::string(kSealType);
    ev.fields = seal_fields(s);
    return proto::event_canonical_body(ev, proto::Trusted{s.time, 1, 0, 0, "cairnd"});
  }
  void add(std::string body) {
    records.push_back(std::move(body));
    leaves.push_back(leaf_hash(records.back()));
    tree.push(leaves.back(), [&](unsigned l, uint64_t i, const Hash& h) { nodes[postorder(l, i)] = h; });
  }
  NodeFn fn() const {
    return [this](unsigned l, uint64_t i) -> std::optional<Hash> {
      if (l == 0) return i < leaves.size() ? std::optional(leaves[i]) : std::nullopt;
      auto it = nodes.find(postorder(l, i));
      return it == nodes.end() ? std::nullopt : std::optional(it->second);
    };
  }
  // The bundle `cairn prove seq` writes: the first seal after seq, and every seal up to it.
  Bundle prove(uint64_t seq) const {
    size_t e = 0;
    while (seal_seqs[e] <= seq) ++e;
    const Seal& s = seals[e];
    Bundle b;
    b.origin = kOrigin;
    b.seq = seq;
    b.record = records[seq - 1];
    b.size = s.size;
    b.inclusion = *inclusion_proof(fn(), seq - 1, s.size);
    for (size_t i = 0; i <= e; ++i) b.seals.push_back(records[seal_seqs[i] - 1]);
    b.checkpoint = format_note(checkpoint_text(kOrigin, s.size, s.root), kOrigin, keys[e].pk, s.checkpoint_sig);
    return b;
  }
  VKey vkey() const { return VKey{kOrigin, keys[0].pk}; }
};

// verify_bundle's error, "" when it accepts.
std::string error_of(const Bundle& b, const VKey& k) {
  auto r = verify_bundle(b, k);
  return r.ok() ? std::string() : r.error();
}

void expect_class(const Bundle& b, const VKey& k, const char* cls) {
  std::string e = error_of(b, k);
  cr_assert_neq(e, "", "a forged bundle was accepted (expected %s)", cls);
  cr_assert(e.rfind(std::string(cls) + ": ", 0) == 0, "expected class '%s', got '%s'", cls, e.c_str());
}

}  // namespace

TestSuite(seal_bundle, .timeout = 60);

// ---- seal records ----

Test(seal_bundle, seal_fields_round_trip_every_field) {
  Log log(1);
  Seal s = log.seals[0];
  auto back = parse_fields(seal_fields(s), s.time);
  cr_assert(back.has_value());
  cr_assert_eq(back->epoch, s.epoch);
  cr_assert_eq(back->size, s.size);
  cr_assert(back->root == s.root);
  cr_assert_eq(back->time, s.time, "time is the record's received");
  cr_assert_eq(back->prev_time, s.prev_time);
  cr_assert_eq(back->boot_id, s.boot_id);
  cr_assert(back->next_key == s.next_key);
  cr_assert(back->checkpoint_sig == s.checkpoint_sig);
  cr_assert(back->sig == s.sig);
  cr_assert_eq(seal_message(kOrigin, *back), seal_message(kOrigin, s));
  // The same through a whole record body, as verify reads it.
  auto rec = seal_of_body(log.records[log.seal_seqs[0] - 1]);
  cr_assert(rec && rec->sig == s.sig && rec->time == s.time);
}

Test(seal_bundle, seal_fields_with_an_extra_missing_or_mistyped_key_are_refused) {
  Log log(1);
  std::string f = seal_fields(log.seals[0]);
  cr_assert_eq(static_cast<unsigned char>(f[0]), 0x88u, "a fixmap of the 8 signed fields");
  // One more key: nothing unsigned may ride along in a seal.
  std::string extra = "\x89" + f.substr(1) + "\xa5zzzzz\x01";
  cr_assert_not(parse_fields(extra, 1).has_value(), "an extra key was accepted");
  // A key renamed (so "sig" is missing).
  std::string renamed = f;
  size_t at = renamed.find("\xa3sig");
  cr_assert_neq(at, std::string::npos);
  renamed[at + 3] = 'h';
  cr_assert_not(parse_fields(renamed, 1).has_value(), "a seal without sig was accepted");
  // epoch as a string instead of an unsigned integer.
  Seal s = log.seals[0];
  std::string typed = f;
  at = typed.find("\xa5""epoch");
  cr_assert_neq(at, std::string::npos);
  cr_assert_eq(static_cast<unsigned char>(typed[at + 6]), 0x00u, "epoch 0 is a positive fixint");
  typed.replace(at + 6, 1, "\xa1""0");
  cr_assert_not(parse_fields(typed, 1).has_value(), "a string epoch was accepted");
  // A root of 30 bytes (its base64 string re-headed with the new length).
  std::string r44 = b64(log.seals[0].root);
  std::string shortroot = f;
  at = shortroot.find("\xd9\x2c" + r44);
  cr_assert_neq(at, std::string::npos, "root is a str8 of 44 base64 characters");
  std::string r40 = b64(std::string(30, 'r'));
  shortroot.replace(at, 46, "\xd9\x28" + r40);
  cr_assert_not(parse_fields(shortroot, 1).has_value(), "a 30-byte root was accepted");
}

// ---- bundles ----

Test(seal_bundle, an_honest_bundle_verifies_for_every_sealed_record_and_survives_its_text_form) {
  Log log(3);
  for (uint64_t seq = 1; seq < log.seal_seqs.back(); ++seq) {
    Bundle b = log.prove(seq);
    auto v = verify_bundle(b, log.vkey());
    cr_assert(v.ok(), "seq %llu: %s", static_cast<unsigned long long>(seq), v.ok() ? "" : v.error().c_str());
    size_t e = 0;
    while (log.seal_seqs[e] <= seq) ++e;
    cr_assert_eq(v.value().seq, seq);
    cr_assert_eq(v.value().size, log.seals[e].size);
    cr_assert_eq(v.value().epoch, e, "the first seal after the record vouches for it");
    cr_assert_eq(v.value().sealed_at, log.seals[e].time);
    auto parsed = parse_bundle(format_bundle(b));
    cr_assert(parsed.ok(), "%s", parsed.ok() ? "" : parsed.error().c_str());
    cr_assert(verify_bundle(parsed.value(), log.vkey()).ok());
    cr_assert(parsed.value().record == b.record && parsed.value().inclusion == b.inclusion &&
              parsed.value().seals == b.seals && parsed.value().checkpoint == b.checkpoint);
  }
}

Test(seal_bundle, a_seal_signed_by_another_epochs_key_breaks_the_key_chain) {
  Log log(3);
  for (size_t signer : {size_t{0}, size_t{2}, size_t{3}}) {  // an earlier key, later keys
    Bundle b = log.prove(log.seal_seqs[0] + 1);                // a record of epoch 1
    Seal s = log.seals[1];
    Log::sign_seal(s, log.keys[signer]);
    b.seals[1] = Log::seal_body(s);
    expect_class(b, log.vkey(), "key chain");
  }
}

Test(seal_bundle, a_later_key_cannot_reseal_an_earlier_epoch) {
  // The attacker took the host during epoch 2 and holds its key; keys 0 and 1 were erased.
  Log log(2);
  const Key& current = log.keys[2];
  // (a) Re-sign epoch 0's seal over an altered record with the current key.
  {
    Bundle b = log.prove(2);
    Seal s = log.seals[0];
    Log::sign_seal(s, current);
    b.seals[0] = Log::seal_body(s);
    expect_class(b, log.vkey(), "key chain");
  }
  // (b) Alter a record of epoch 0, rebuild the whole tree and seal it in epoch 2 with
  // the current key, keeping the genuine seals 0 and 1 in the chain: the record is
  // covered by seal 0, so only epoch 0's key may vouch for it (journald's CVE-2023-31439).
  {
    Log forged = log;
    proto::Event ev;
    ev.type = "UserLogin";  // was AuthFailure
    ev.actor = "user1";
    std::string altered = proto::event_canonical_body(ev, proto::Trusted{log.created + 2000, 42, 1000, 1000, "sshd"});
    forged.records[1] = altered;
    forged.leaves.clear();
    forged.nodes.clear();
    forged.tree = Frontier();
    auto recs = forged.records;
    forged.records.clear();
    for (auto& r : recs) forged.add(r);
    Seal s;
    s.epoch = 2;
    s.size = forged.records.size();
    s.root = forged.tree.root();
    s.prev_time = log.seals[1].time;
    s.time = s.prev_time + 1000;
    s.boot_id = log.seals[1].boot_id;
    s.next_key = log.keys[0].pk;
    Log::sign_seal(s, current);
    Bundle b;
    b.origin = kOrigin;
    b.seq = 2;
    b.record = altered;
    b.size = s.size;
    b.inclusion = *inclusion_proof(forged.fn(), 1, s.size);
    b.seals = {log.records[log.seal_seqs[0] - 1], log.records[log.seal_seqs[1] - 1], Log::seal_body(s)};
    b.checkpoint = format_note(checkpoint_text(kOrigin, s.size, s.root), kOrigin, current.pk, s.checkpoint_sig);
    expect_class(b, log.vkey(), "key chain");
    // Control: the same forgery for a record of the attacker's own epoch is what nothing
    // on the host can catch (README threat model) — it verifies.
    b.seq = s.size;
    b.record = forged.records.back();
    b.inclusion = *inclusion_proof(forged.fn(), s.size - 1, s.size);
    cr_assert(verify_bundle(b, log.vkey()).ok(), "%s", error_of(b, log.vkey()).c_str());
  }
}

Test(seal_bundle, seals_missing_reordered_or_for_another_log_break_the_key_chain) {
  Log log(3);
  Bundle good = log.prove(log.seal_seqs[1] + 1);  // epoch 2: seals 0, 1, 2
  cr_assert(verify_bundle(good, log.vkey()).ok());
  Bundle b = good;
  b.seals.erase(b.seals.begin());
  expect_class(b, log.vkey(), "key chain");
  b = good;
  std::swap(b.seals[0], b.seals[1]);
  expect_class(b, log.vkey(), "key chain");
  b = good;
  b.seals.insert(b.seals.begin() + 1, b.seals[1]);
  expect_class(b, log.vkey(), "key chain");
  expect_class(good, VKey{"cairn/another-machine", log.keys[0].pk}, "key chain");
  expect_class(good, VKey{kOrigin, log.keys[1].pk}, "key chain");  // not the first key
  // A seal whose window goes back before the previous seal, even if properly signed.
  b = good;
  Seal s = log.seals[1];
  s.prev_time = log.seals[0].time - 1;
  Log::sign_seal(s, log.keys[1]);
  b.seals[1] = Log::seal_body(s);
  expect_class(b, log.vkey(), "key chain");
  // Something that is not a seal record where a seal should be.
  b = good;
  b.seals[1] = log.records[0];
  expect_class(b, log.vkey(), "format");
}

Test(seal_bundle, an_altered_record_or_proof_fails_inclusion) {
  Log log(2);
  Bundle good = log.prove(3);
  Bundle b = good;
  b.record[b.record.size() / 2] ^= 1;
  expect_class(b, log.vkey(), "inclusion");
  b = good;
  b.record = log.records[1];  // another genuine record under this one's seq
  expect_class(b, log.vkey(), "inclusion");
  b = good;
  b.seq = 4;
  expect_class(b, log.vkey(), "inclusion");
  b = good;
  b.inclusion[0][0] ^= 1;
  expect_class(b, log.vkey(), "inclusion");
  b = good;
  b.inclusion.pop_back();
  expect_class(b, log.vkey(), "inclusion");
  b = good;
  b.seq = good.size + 1;
  expect_class(b, log.vkey(), "inclusion");
}

Test(seal_bundle, an_altered_checkpoint_fails_the_checkpoint_check) {
  Log log(2);
  Bundle good = log.prove(log.seal_seqs[0] + 1);  // epoch 1
  const Seal& s = log.seals[1];
  std::string text = checkpoint_text(kOrigin, s.size, s.root);
  Bundle b = good;
  b.checkpoint.replace(b.checkpoint.find("\n" + std::to_string(s.size) + "\n"),
                       std::to_string(s.size).size() + 2, "\n" + std::to_string(s.size + 1) + "\n");
  expect_class(b, log.vkey(), "checkpoint");
  b = good;  // the right text, signed by the next epoch's key
  b.checkpoint = format_note(text, kOrigin, log.keys[2].pk, sign(log.keys[2].sk, text));
  expect_class(b, log.vkey(), "checkpoint");
  b = good;  // a genuine checkpoint, but of the previous epoch
  b.checkpoint = log.prove(1).checkpoint;
  expect_class(b, log.vkey(), "checkpoint");
  b = good;  // the right text and key, under another name
  b.checkpoint = format_note(text, "cairn/other", log.keys[1].pk, s.checkpoint_sig);
  expect_class(b, log.vkey(), "checkpoint");
  b = good;  // the bundle's size disagrees with the seal's
  b.size = s.size - 1;
  expect_class(b, log.vkey(), "checkpoint");
  // The seal's own checkpoint signature forged (the seal's main signature still good).
  b = good;
  Seal f = s;
  f.checkpoint_sig = sign(log.keys[2].sk, text);
  f.sig = sign(log.keys[1].sk, seal_message(kOrigin, f));
  b.seals[1] = Log::seal_body(f);
  expect_class(b, log.vkey(), "checkpoint");
}

Test(seal_bundle, malformed_bundle_text_is_a_format_error) {
  Log log(1);
  std::string good = format_bundle(log.prove(1));
  cr_assert(parse_bundle(good).ok());
  auto cut = [&](const std::string& line) {
    std::string t = good;
    size_t at = t.find(line);
    cr_assert_neq(at, std::string::npos, "%s", line.c_str());
    t.erase(at, t.find('\n', at) + 1 - at);
    return t;
  };
  std::string bad[] = {
      "",
      "cairn proof v2\n" + good.substr(good.find('\n') + 1),
      cut("seq "),
      cut("size "),
      cut("record "),
      cut("origin "),
      cut("seal "),
      good.substr(0, good.find("checkpoint\n")),
      [&] { std::string t = good; t.insert(t.find("size "), "color blue\n"); return t; }(),
      [&] { std::string t = good; t.replace(t.find("seq 1"), 5, "seq 0"); return t; }(),
      [&] { std::string t = good; t.replace(t.find("seq 1"), 5, "seq x"); return t; }(),
      [&] { std::string t = good; t.insert(t.find("record ") + 7, "!"); return t; }(),
      [&] { std::string t = good; t.insert(t.find("size "), "inclusion AAAA\n"); return t; }(),
  };
  for (const auto& t : bad) {
    auto r = parse_bundle(t);
    cr_assert_not(r.ok(), "accepted:\n%s", t.c_str());
    cr_assert(r.error().rfind("format: ", 0) == 0, "%s", r.error().c_str());
  }
}
