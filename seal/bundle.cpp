#include "bundle.hpp"

#include <charconv>

#include "merkle.hpp"
#include "record.hpp"

namespace cairn::seal {
namespace {

bool parse_u64(std::string_view s, uint64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

}  // namespace

std::string format_bundle(const Bundle& b) {
  std::string s = "cairn proof v1\norigin " + b.origin + "\nseq " + std::to_string(b.seq) +
                  "\nrecord " + b64(b.record) + "\nsize " + std::to_string(b.size) + "\n";
  for (const auto& h : b.inclusion) s += "inclusion " + b64(h) + "\n";
  for (const auto& r : b.seals) s += "seal " + b64(r) + "\n";
  s += "checkpoint\n" + b.checkpoint;
  return s;
}

Result<Bundle, std::string> parse_bundle(std::string_view text) {
  Bundle b;
  auto fail = [](const std::string& why) { return Err{"format: " + why}; };
  auto line = [&](std::string_view& out) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) return false;
    out = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    return true;
  };
  std::string_view l;
  if (!line(l) || l != "cairn proof v1") return fail("first line is not 'cairn proof v1'");
  bool have_seq = false, have_size = false, have_record = false;
  for (;;) {
    if (!line(l)) return fail("no 'checkpoint' line");
    if (l == "checkpoint") break;
    size_t sp = l.find(' ');
    if (sp == std::string_view::npos) return fail("line without a value: " + std::string(l.substr(0, 40)));
    std::string_view k = l.substr(0, sp), v = l.substr(sp + 1);
    if (k == "origin") {
      b.origin = std::string(v);
    } else if (k == "seq") {
      if (!parse_u64(v, b.seq) || b.seq == 0) return fail("bad seq");
      have_seq = true;
    } else if (k == "size") {
      if (!parse_u64(v, b.size)) return fail("bad size");
      have_size = true;
    } else if (k == "record") {
      auto r = unb64(v);
      if (!r) return fail("record is not base64");
      b.record = std::move(*r);
      have_record = true;
    } else if (k == "inclusion") {
      Hash h;
      if (!unb64_into(v, h)) return fail("inclusion hash is not 32 bytes of base64");
      b.inclusion.push_back(h);
    } else if (k == "seal") {
      auto r = unb64(v);
      if (!r) return fail("seal is not base64");
      b.seals.push_back(std::move(*r));
    } else {
      return fail("unknown line '" + std::string(k) + "'");
    }
  }
  if (!have_seq || !have_size || !have_record || b.origin.empty() || b.seals.empty())
    return fail("origin, seq, record, size and at least one seal are required");
  b.checkpoint = std::string(text);
  return b;
}

Result<BundleVerdict, std::string> verify_bundle(const Bundle& b, const VKey& key) {
  if (b.origin != key.name)
    return Err{"key chain: the bundle is for log '" + b.origin + "', the key for '" + key.name + "'"};
  PublicKey pk = key.key;
  Seal last;
  int64_t prev_time = INT64_MIN;
  uint64_t covered = 0;  // size of the seal before the last: records sealed by an earlier key
  std::string err;
  for (size_t i = 0; i < b.seals.size() && err.empty(); ++i) {
    std::optional<Seal> s = parse_seal_body(b.seals[i]);
    if (!s) {
      err = "format: seal " + std::to_string(i) + " is not a seal record";
    } else if (s->epoch != i) {
      err = "key chain: seal " + std::to_string(i) + " closes epoch " + std::to_string(s->epoch);
    } else if (!verify_sig(pk, seal_message(b.origin, *s), s->sig)) {
      err = "key chain: the seal of epoch " + std::to_string(i) + " is not signed by that epoch's key";
    } else if (s->time < s->prev_time || s->prev_time < prev_time) {
      err = "key chain: the seal of epoch " + std::to_string(i) + " goes back in time";
    } else if (i + 1 < b.seals.size()) {
      pk = s->next_key;
      prev_time = s->time;
      covered = s->size;
    } else {
      last = *s;
    }
  }
  if (!err.empty()) return Err{err};
  // Only the first seal after a record may vouch for it: a later epoch's key (the one a
  // root attacker holds) could otherwise re-seal an altered earlier record in a tree of
  // its own (journald's CVE-2023-31439).
  if (b.seq <= covered)
    return Err{"key chain: record " + std::to_string(b.seq) + " was sealed in epoch " +
               std::to_string(last.epoch - 1) + " (size " + std::to_string(covered) +
               "); a later epoch's checkpoint cannot prove it"};
  // The last seal's checkpoint: same key, same (size, root) as the note.
  std::string text = checkpoint_text(b.origin, last.size, last.root);
  if (!verify_sig(pk, text, last.checkpoint_sig))
    return Err{std::string("checkpoint: the last seal's checkpoint signature does not verify")};
  auto note = parse_note(b.checkpoint);
  if (!note) return Err{std::string("format: the checkpoint is not a signed note")};
  if (note->text != text || last.size != b.size)
    return Err{std::string("checkpoint: the note is not the last seal's checkpoint (size ") +
               std::to_string(b.size) + ")"};
  if (!note_signed_by(*note, b.origin, pk))
    return Err{std::string("checkpoint: the note's signature is not by the sealing key")};
  if (b.seq > b.size)
    return Err{"inclusion: seq " + std::to_string(b.seq) + " is past the checkpoint's size " +
               std::to_string(b.size)};
  if (!verify_inclusion(leaf_hash(b.record), b.seq - 1, b.size, b.inclusion, last.root))
    return Err{"inclusion: the record is not leaf " + std::to_string(b.seq - 1) +
               " of the checkpointed tree (altered record or proof)"};
  return BundleVerdict{b.seq, b.size, last.epoch, last.time};
}

}  // namespace cairn::seal
