// record.hpp — the log's own records: seals (epoch handovers), lost-seq placeholders and
// recovery notices. They are stored like events (same table, same canonical body, one
// seq each, leaves of the same Merkle tree) with a type in the reserved "cairn."
// namespace that clients cannot send.
//
// A seal closes epoch `epoch`: it commits to the tree of every record before it
// (size = its seq - 1, root), is signed with that epoch's key, names the next epoch's
// public key, and carries the checkpoint signature for (origin, size, root) made with
// the same key. The writer erases the epoch's secret key once the seal is durable.
#pragma once

#include <msgpack.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "hash.hpp"

namespace cairn::seal {

inline constexpr std::string_view kSealType = "cairn.seal";
inline constexpr std::string_view kLostType = "cairn.lost";
inline constexpr std::string_view kRecoveryType = "cairn.recovery";
// Types starting with this are written by cairnd only.
inline constexpr std::string_view kReservedPrefix = "cairn.";

struct Seal {
  uint64_t epoch = 0;      // the epoch this record closes (0 is the first)
  uint64_t size = 0;       // tree size sealed: every record before this one
  Hash root{};             // MTH of those records
  int64_t time = 0;        // the record's `received` (ns): end of the epoch's window
  int64_t prev_time = 0;   // start of the window: the previous seal's time, or log creation
  std::string boot_id;     // /proc/sys/kernel/random/boot_id when sealed
  PublicKey next_key{};    // the next epoch's public key
  Signature checkpoint_sig{};  // over checkpoint_text(origin, size, root)
  Signature sig{};             // over seal_message(origin, *this)
};

// What the epoch key signs: every field but the signatures, one per line.
std::string seal_message(std::string_view origin, const Seal& s);
// The canonical `fields` map of a seal record (keys sorted bytewise).
std::string seal_fields(const Seal& s);
// Reads a seal back from its decoded `fields` map and the record's `received`.
std::optional<Seal> parse_seal_fields(const msgpack_object& fields, int64_t received);
// The same from a whole canonical body (nullopt if it is not a well-formed seal record).
std::optional<Seal> parse_seal_body(std::string_view body);

// `fields` of a cairn.lost placeholder and of a cairn.recovery notice.
std::string lost_fields(std::string_view reason);
std::string recovery_fields(uint64_t first_missing, uint64_t last_missing, uint64_t sealed_size,
                            int64_t sealed_time, uint64_t epoch, const PublicKey& key,
                            std::string_view reason);

// Looks up key `k` in a msgpack map; nullptr when absent.
const msgpack_object* map_get(const msgpack_object& map, std::string_view k);

}  // namespace cairn::seal
