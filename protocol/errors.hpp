// errors.hpp — the stable error codes of the wire protocol (PROTOCOL.md §5).
//
// The names are part of the protocol: clients match on them. Never rename one; add new
// codes at the end.
#pragma once

#include <optional>
#include <string_view>

namespace cairn::proto {

enum class ErrorCode {
  frame_too_large,      // length prefix > max_frame; connection closed
  malformed,            // not one msgpack map, missing op/id, bad length 0; see PROTOCOL.md
  invalid_field,        // event or argument failed validation; names field and rule
  unsupported_version,  // hello asked for a protocol version we do not speak
  unknown_op,           // op string not known
  storage_failed,       // the write failed; the event is NOT stored/acked
  shutting_down,        // daemon is draining; retry against the next instance
  overloaded,           // too many requests in flight on this connection
  permission_denied,    // peer uid not allowed to use this op
  internal,             // a daemon bug; the request did not take effect
  events_lost,          // acks this connection got durable:false were lost with their
                        // commit; this flush / durable event did not take effect
  idem_conflict,        // this uid already stored a different event under the idem key;
                        // nothing was stored
  rate_limited,         // the peer's uid is over a per-uid limit (rate, bytes in flight);
                        // the request did not take effect, retry later
  storage_full,         // the database's filesystem is below cairnd's disk reserve
                        // (disk-reserve) or full; the append was NOT stored; the message
                        // names the free and reserved bytes; retry once space is freed
  subscribed,           // a request on a connection that holds a subscription (which
                        // takes no other request); the connection is closed
};

std::string_view error_code_name(ErrorCode code);
std::optional<ErrorCode> error_code_from_name(std::string_view name);

}  // namespace cairn::proto
