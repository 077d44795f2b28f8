// fuzz_cli_json.cpp — the CLI's JSON reader (cairn send --stdin) and JSON writer
// (cairn query -o json), fed arbitrary bytes both as JSON text and as msgpack.
//
// Promises checked besides the sanitizers':
//   - what json_parse accepts converts to one well-formed msgpack object;
//   - JSON -> msgpack -> JSON is a fixpoint after one round (the writer's output reads
//     back, through the parser, as the same value: strings, integers, floats by %.17g);
//   - whatever msgpack the writer is handed (a damaged database can hold anything),
//     its output is JSON the parser accepts: `cairn query -o json` never prints
//     something `jq` or `cairn send --stdin` cannot read.
#include <cstddef>
#include <cstdint>
#include <string>

#include "../../client/cli/json.hpp"
#include "../../protocol/message.hpp"
#include "fuzz_check.hpp"

using namespace cairn;
using cairn::fuzz::bytes_of;

namespace {

// The parser nests at most 32 deep; a msgpack object at most this deep prints within it.
constexpr uint32_t kPrintableDepth = 31;

std::string json_round(const std::string& msgpack_bytes) {
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  auto rc = msgpack_unpack_next(&u, msgpack_bytes.data(), msgpack_bytes.size(), &off);
  FUZZ_CHECK(rc == MSGPACK_UNPACK_SUCCESS && off == msgpack_bytes.size(),
             "json_to_msgpack wrote something msgpack-c does not read as one object");
  std::string out;
  cli::msgpack_to_json(u.data, out);
  msgpack_unpacked_destroy(&u);
  return out;
}

void from_json_text(std::string_view text) {
  auto j = cli::json_parse(text);
  if (!j) {
    FUZZ_CHECK(!j.error().empty(), "json_parse refused without saying why");
    return;
  }
  std::string mp;
  cli::json_to_msgpack(j.value(), mp);
  FUZZ_CHECK(!proto::msgpack_prescan(bytes_of(mp), 64).has_value(),
             "json_to_msgpack wrote malformed msgpack");
  std::string once = json_round(mp);
  auto j2 = cli::json_parse(once);
  FUZZ_CHECK(j2.ok(), "the JSON writer printed text the JSON parser refuses");
  std::string mp2;
  cli::json_to_msgpack(j2.value(), mp2);
  std::string twice = json_round(mp2);
  FUZZ_CHECK(once == twice, "JSON -> msgpack -> JSON is not a fixpoint");
}

void from_msgpack(std::span<const uint8_t> bytes) {
  if (proto::msgpack_prescan(bytes, kPrintableDepth).has_value()) return;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  auto rc = msgpack_unpack_next(&u, reinterpret_cast<const char*>(bytes.data()), bytes.size(), &off);
  if (rc == MSGPACK_UNPACK_SUCCESS) {
    std::string out;
    cli::msgpack_to_json(u.data, out);
    auto j = cli::json_parse(out);
    FUZZ_CHECK(j.ok(), "msgpack_to_json printed text the JSON parser refuses");
  }
  msgpack_unpacked_destroy(&u);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  from_json_text(fuzz::view_of(in));
  from_msgpack(in);
  return 0;
}
