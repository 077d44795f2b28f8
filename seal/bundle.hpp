// bundle.hpp — an inclusion proof an auditor checks with nothing but the log's key.
//
// Text, one item per line (PROTOCOL.md §7):
//   cairn proof v1
//   origin <origin>
//   seq <seq>
//   record <base64 canonical body>
//   size <tree size of the checkpoint>
//   inclusion <base64 hash>        (0 or more, RFC 6962 audit path, leaf to root)
//   seal <base64 seal record body> (1 or more: every seal from epoch 0 to the one whose
//                                   checkpoint covers the record, in order)
//   checkpoint
//   <the signed checkpoint note, verbatim, to the end>
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hash.hpp"
#include "note.hpp"
#include "../protocol/result.hpp"

namespace cairn::seal {

struct Bundle {
  std::string origin;
  uint64_t seq = 0;
  std::string record;  // canonical body
  uint64_t size = 0;
  std::vector<Hash> inclusion;
  std::vector<std::string> seals;  // seal record bodies
  std::string checkpoint;          // the signed note
};

std::string format_bundle(const Bundle& b);
Result<Bundle, std::string> parse_bundle(std::string_view text);

struct BundleVerdict {
  uint64_t seq = 0;
  uint64_t size = 0;
  uint64_t epoch = 0;   // epoch whose key signed the checkpoint
  int64_t sealed_at = 0;
};
// Follows the seals from `key` (epoch 0) and checks each signature with its own epoch's
// key, the checkpoint's signature and text, and the record's inclusion. The error names
// the class: "key chain", "checkpoint", "inclusion", "format".
Result<BundleVerdict, std::string> verify_bundle(const Bundle& b, const VKey& key);

}  // namespace cairn::seal
