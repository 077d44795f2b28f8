// fuzz_reply.cpp — libcairn's two readers of a reply payload, side by side.
//
// libcairn reads every reply with reply_peek (the fast reader: id, ok and the ack's
// seq/durable/duplicate, without unpacking) and only unpacks in full (Decoded::parse +
// reply_from and the per-op decoders) for refusals and for replies it hands to the
// caller. The two must never tell a different story about the same bytes, or the same
// daemon reply means one thing to cairn_append and another to cairn_request:
//   - what the fast reader takes as a reply, the full decoder takes as a reply too, with
//     the same id and the same ok (the fast reader may refuse more: where reading would
//     mean guessing — a repeated or mistyped key — it refuses, and libcairn treats the
//     reply as broken; it must never read a different value);
//   - when the reply carries a seq: the fast reader's seq, durable and duplicate are
//     the full decoder's ack (a seq the full decoder cannot read as an ack must not be
//     acked as seq 0 by the fast one).
// The per-op decoders (query page, stats, verify, hello) run too, for the sanitizers.
// Set CAIRN_FUZZ_REPLY_MEMORY_ONLY=1 to skip the agreement checks (memory safety only),
// e.g. to measure the rest while a known disagreement is being fixed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "../../protocol/frame.hpp"
#include "../../protocol/message.hpp"
#include "fuzz_check.hpp"

using namespace cairn;
using namespace cairn::proto;

namespace {

constexpr uint32_t kClientDepth = 16;  // what libcairn passes to Decoded::parse

bool g_agreement = true;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* m = std::getenv("CAIRN_FUZZ_REPLY_MEMORY_ONLY");
  g_agreement = !(m != nullptr && m[0] == '1');
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  auto head = reply_peek(bytes);

  std::optional<Reply> full;
  auto d = Decoded::parse(bytes, kClientDepth);
  if (d) {
    auto r = reply_from(d.value());
    if (r) {
      full = r.value();
      const Reply& rep = *full;
      (void)ack_from(rep);
      if (auto q = query_page_from(rep)) {
        for (const auto& e : q.value().events)
          FUZZ_CHECK(!msgpack_prescan(fuzz::bytes_of(e.body), 64).has_value(),
                     "query_page_from handed out an event body that is not one msgpack object");
      }
      (void)stats_from(rep);
      (void)verify_from(rep);
      (void)hello_info_from(rep);
    }
  }
  if (!g_agreement) return 0;
  // Nested deeper than libcairn's full decoder reads (but within the fast reader's
  // 64): the full decoder refuses on depth alone, which is not a disagreement.
  if (msgpack_prescan(bytes, kClientDepth).has_value() && !msgpack_prescan(bytes, 64).has_value())
    return 0;

  if (!head) return 0;
  FUZZ_CHECK(full.has_value(), "the fast reply reader accepts a reply the full decoder refuses");
  FUZZ_CHECK(head->id == full->id, "the fast reader and the full decoder read different ids");
  FUZZ_CHECK(head->ok == full->ok, "the fast reader and the full decoder read different ok");
  if (full->ok && map_get(*full->map, "seq") != nullptr) {
    auto ack = ack_from(*full);
    FUZZ_CHECK(ack.ok(), "the fast reader acks a seq the full decoder cannot read");
    FUZZ_CHECK(ack.value().seq == head->seq,
               "the fast reader and the full decoder read different seqs");
    FUZZ_CHECK(ack.value().durable == head->durable,
               "the fast reader and the full decoder read different durable flags");
    FUZZ_CHECK(ack.value().duplicate == head->duplicate,
               "the fast reader and the full decoder read different duplicate flags");
  }
  return 0;
}
