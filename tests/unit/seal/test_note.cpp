// Keys, checkpoints and C2SP signed notes (seal/note.hpp), and the strict hex and base64
// under them. The Go sumdb/note example (golang.org/x/mod/sumdb/note) pins the key id,
// the vkey format and the note bytes to an independent implementation: a witness or
// verifier written against that package must read what cairn writes.
#include <criterion/criterion.h>
#include <sodium.h>

#include <cstring>
#include <string>

#include "../../../seal/note.hpp"

using namespace cairn::seal;

namespace {

struct KeyPair {
  PublicKey pk{};
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
};

KeyPair keypair() {
  cr_assert_geq(sodium_init(), 0);
  KeyPair k;
  crypto_sign_keypair(k.pk.data(), k.sk);
  return k;
}

// golang.org/x/mod/sumdb/note's documented example.
constexpr const char* kGoVkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
constexpr const char* kGoSkeyB64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";  // 0x01 || seed
constexpr const char* kGoText =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n";
constexpr const char* kGoNote =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\xE2\x80\x94 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

KeyPair go_keypair() {
  cr_assert_geq(sodium_init(), 0);
  auto raw = unb64(kGoSkeyB64);
  cr_assert(raw && raw->size() == 33 && (*raw)[0] == '\x01');
  KeyPair k;
  crypto_sign_seed_keypair(k.pk.data(), k.sk, reinterpret_cast<const unsigned char*>(raw->data() + 1));
  return k;
}

Hash some_root() {
  Hash h;
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(i * 7 + 1);
  return h;
}

}  // namespace

TestSuite(seal_note, .timeout = 60);

Test(seal_note, the_go_sumdb_note_example_is_reproduced_byte_for_byte) {
  KeyPair k = go_keypair();
  auto vk = parse_vkey(kGoVkey);
  cr_assert(vk.has_value(), "Go's verifier key is refused");
  cr_assert_eq(vk->name, "PeterNeumann");
  cr_assert(vk->key == k.pk, "the public key of Go's signer key");
  cr_assert_eq(key_id("PeterNeumann", k.pk), 0xc74f20a3u);
  cr_assert_eq(format_vkey("PeterNeumann", k.pk), kGoVkey);
  // Ed25519 is deterministic: the same key and text give Go's signature exactly.
  std::string note = format_note(kGoText, "PeterNeumann", k.pk, sign(k.sk, kGoText));
  cr_assert_eq(note, kGoNote);
  auto n = parse_note(kGoNote);
  cr_assert(n.has_value());
  cr_assert_eq(n->text, kGoText);
  cr_assert(note_signed_by(*n, vk->name, vk->key));
  // Another of Go's test keys parses too (a second, independent key id).
  auto enoch = parse_vkey("EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop");
  cr_assert(enoch.has_value());
  cr_assert_eq(key_id(enoch->name, enoch->key), 0xaf0cfe78u);
  cr_assert_not(note_signed_by(*n, enoch->name, enoch->key));
}

Test(seal_note, sign_and_verify_sig_round_trip_and_any_change_fails) {
  KeyPair a = keypair(), b = keypair();
  Signature s = sign(a.sk, "message");
  cr_assert(verify_sig(a.pk, "message", s));
  cr_assert_not(verify_sig(b.pk, "message", s), "another key");
  cr_assert_not(verify_sig(a.pk, "messagE", s), "another message");
  for (size_t i = 0; i < s.size(); ++i) {
    Signature t = s;
    t[i] ^= 0x40;
    if (verify_sig(a.pk, "message", t)) cr_assert_fail("signature byte %zu changed and still verifies", i);
  }
}

Test(seal_note, checkpoint_text_is_origin_size_root_and_parses_back) {
  Hash root = some_root();
  std::string text = checkpoint_text("cairn/0123abcd", 12345, root);
  cr_assert_eq(text, "cairn/0123abcd\n12345\n" + b64(root) + "\n");
  auto c = parse_checkpoint_text(text);
  cr_assert(c.has_value());
  cr_assert_eq(c->origin, "cairn/0123abcd");
  cr_assert_eq(c->size, 12345u);
  cr_assert(c->root == root);
  auto zero = parse_checkpoint_text(checkpoint_text("o", 0, root));
  cr_assert(zero && zero->size == 0u, "an empty log has a checkpoint too");
  auto big = parse_checkpoint_text(checkpoint_text("o", UINT64_MAX, root));
  cr_assert(big && big->size == UINT64_MAX);
  // C2SP tlog-checkpoint: extension lines after the root are allowed.
  auto ext = parse_checkpoint_text(text + "extension line\n");
  cr_assert(ext && ext->size == 12345u && ext->root == root);
}

Test(seal_note, malformed_checkpoint_text_is_refused) {
  Hash root = some_root();
  std::string r = b64(root);
  const std::string bad[] = {
      "",
      "\n12\n" + r + "\n",                        // empty origin
      "o\n012\n" + r + "\n",                      // leading zero
      "o\n-1\n" + r + "\n",                       // not a number
      "o\n+1\n" + r + "\n",
      "o\n 1\n" + r + "\n",
      "o\n18446744073709551616\n" + r + "\n",     // 2^64
      "o\n12\n" + r,                              // no final newline
      "o\n12\n" + r.substr(0, r.size() - 4) + "\n",  // 30-byte root
      "o\n12\n" + b64(std::string(33, 'x')) + "\n",  // 33-byte root
      "o\n12\n" + r + " \n",                      // trailing space
      "o\n12\n",
  };
  for (const auto& t : bad)
    cr_assert_not(parse_checkpoint_text(t).has_value(), "accepted: '%s'", t.c_str());
}

Test(seal_note, a_signed_note_round_trips_and_verifies_only_for_its_name_key_and_text) {
  KeyPair a = keypair(), b = keypair();
  std::string text = checkpoint_text("cairn/host", 42, some_root());
  std::string note = format_note(text, "cairn/host", a.pk, sign(a.sk, text));
  cr_assert_eq(note.substr(0, text.size() + 1), text + "\n", "text, then a blank line");
  cr_assert_eq(note.substr(text.size() + 1, 4), "\xE2\x80\x94 ", "signature lines start with an em dash");
  auto n = parse_note(note);
  cr_assert(n.has_value());
  cr_assert_eq(n->text, text);
  cr_assert_eq(n->sigs.size(), 1u);
  cr_assert_eq(n->sigs[0].name, "cairn/host");
  cr_assert_eq(n->sigs[0].id, key_id("cairn/host", a.pk));
  cr_assert(note_signed_by(*n, "cairn/host", a.pk));
  cr_assert_not(note_signed_by(*n, "cairn/host", b.pk), "another key");
  cr_assert_not(note_signed_by(*n, "cairn/other", a.pk), "another name");

  // The text altered after signing: one more record claimed.
  std::string forged = note;
  forged.replace(forged.find("\n42\n"), 4, "\n43\n");
  auto f = parse_note(forged);
  cr_assert(f.has_value());
  cr_assert_not(note_signed_by(*f, "cairn/host", a.pk));
  // Re-signed with another key under the same name: the key id differs, and the
  // signature is not by the key the verifier holds.
  std::string other = format_note(f->text, "cairn/host", b.pk, sign(b.sk, f->text));
  auto o = parse_note(other);
  cr_assert(o.has_value());
  cr_assert_not(note_signed_by(*o, "cairn/host", a.pk));
  // A second signature (a witness's cosignature, say) does not hide the first.
  std::string two = note + "\xE2\x80\x94 witness " + b64(std::string(68, '\x07')) + "\n";
  auto t = parse_note(two);
  cr_assert(t.has_value());
  cr_assert_eq(t->sigs.size(), 2u);
  cr_assert(note_signed_by(*t, "cairn/host", a.pk));
  // A signature line whose payload is not an Ed25519 signature is not ours to check:
  // skipped, not fatal.
  std::string odd = note + "\xE2\x80\x94 someone " + b64(std::string(40, '\x01')) + "\n";
  auto d = parse_note(odd);
  cr_assert(d.has_value());
  cr_assert_eq(d->sigs.size(), 1u);
  cr_assert(note_signed_by(*d, "cairn/host", a.pk));
}

Test(seal_note, malformed_notes_are_refused) {
  KeyPair a = keypair();
  std::string text = "o\n1\n" + b64(some_root()) + "\n";
  std::string note = format_note(text, "o", a.pk, sign(a.sk, text));
  std::string sigline = note.substr(text.size() + 1);
  const std::string bad[] = {
      text,                                           // no signature at all
      text + "\n",                                    // blank line, no signature
      note.substr(0, note.size() - 1),                // last line without "\n"
      text + "\n- o " + sigline.substr(sigline.find(' ', 4) + 1),   // ASCII dash
      text + "\n\xE2\x80\x94 o\n",                    // no signature after the name
      text + "\n\xE2\x80\x94 o not-base64!\n",
      text + "\n" + sigline + "junk line\n",          // a line that is not a signature
  };
  for (const auto& n : bad) cr_assert_not(parse_note(n).has_value(), "accepted:\n%s", n.c_str());
}

Test(seal_note, vkeys_format_and_parse_and_a_wrong_id_or_algorithm_is_refused) {
  KeyPair a = keypair();
  std::string vk = format_vkey("cairn/5f1e", a.pk);
  auto k = parse_vkey(vk);
  cr_assert(k.has_value());
  cr_assert_eq(k->name, "cairn/5f1e");
  cr_assert(k->key == a.pk);
  auto nl = parse_vkey(vk + "\n");
  cr_assert(nl && nl->key == a.pk, "the trailing newline of a copied line is fine");
  // Base64 may hold '+' (about half of all keys do); names may not. A key of
  // transparency-dev/formats' tests whose base64 has one:
  auto plus = parse_vkey("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6");
  cr_assert(plus.has_value(), "a vkey whose base64 contains '+' was refused");
  cr_assert_eq(plus->name, "TEST");
  cr_assert_eq(key_id(plus->name, plus->key), 0x7997405cu);
  for (int i = 0; i < 200; ++i) {
    KeyPair r = keypair();
    auto back = parse_vkey(format_vkey("cairn/5f1e", r.pk));
    if (!back || back->key != r.pk || back->name != "cairn/5f1e")
      cr_assert_fail("format_vkey/parse_vkey round trip failed for %s", format_vkey("cairn/5f1e", r.pk).c_str());
  }

  size_t p1 = vk.find('+'), p2 = vk.find('+', p1 + 1);
  std::string id = vk.substr(p1 + 1, 8);
  std::string wrong_id = id;
  wrong_id[7] = wrong_id[7] == '0' ? '1' : '0';
  std::string raw = *unb64(vk.substr(p2 + 1));
  std::string alg2 = raw;
  alg2[0] = '\x02';
  const std::string bad[] = {
      "",
      "cairn/5f1e",
      vk.substr(0, p2),                                        // no key
      "cairn/5f1e+" + wrong_id + vk.substr(p2),                // id not of this key
      "cairn/5f1f" + vk.substr(p1),                            // id not of this name
      "cairn/5f1e+" + id.substr(0, 6) + vk.substr(p2),         // 3-byte id
      "cairn/5f1e+" + id + "+" + b64(alg2),                    // not Ed25519
      "cairn/5f1e+" + id + "+" + b64(raw.substr(0, 32)),       // short key
      "cairn/5f1e+" + id + "+" + b64(raw + "x"),               // long key
      "cairn/5f1e+" + id + "+" + vk.substr(p2 + 1, 40),        // truncated base64
      "+" + id + vk.substr(p2),                                // no name
  };
  for (const auto& s : bad) cr_assert_not(parse_vkey(s).has_value(), "accepted: '%s'", s.c_str());
}

Test(seal_note, base64_and_hex_are_strict) {
  cr_assert_eq(b64(std::string("A")), "QQ==");
  cr_assert_eq(b64(std::string("AB")), "QUI=");
  cr_assert_eq(b64(std::string("\xfb\xff", 2)), "+/8=", "standard alphabet, not URL-safe");
  auto e = unb64("");
  cr_assert(e && e->empty());
  auto q = unb64("QQ==");
  cr_assert(q && *q == "A");
  for (const char* s : {"QQ", "QQ=", "QR==", "QUJ=", "Q===", "QQ== ", " QQ==", "QQ\n==", "QQ==\n", "-_8=",
                        "QQ==QQ==", "Q", "QUI"})
    cr_assert_not(unb64(s).has_value(), "accepted '%s'", s);
  Hash h;
  cr_assert(unb64_into(b64(some_root()), h) && h == some_root());
  cr_assert_not(unb64_into(b64(std::string(31, 'x')), h), "31 bytes into a 32-byte hash");
  cr_assert_not(unb64_into(b64(std::string(33, 'x')), h), "33 bytes into a 32-byte hash");

  cr_assert_eq(hex(some_root()).size(), 64u);
  auto x = unhex("00ff10Ab");
  cr_assert(x && *x == std::string("\x00\xff\x10\xab", 4));
  for (const char* s : {"0", "abc", "0g", "zz", " 00", "00 ", "0x00"})
    cr_assert_not(unhex(s).has_value(), "accepted '%s'", s);
  auto round = unhex(hex(some_root()));
  cr_assert(round && round->size() == 32 && std::memcmp(round->data(), some_root().data(), 32) == 0);
}
