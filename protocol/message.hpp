// message.hpp — requests and replies (PROTOCOL.md §2, §5, §6).
//
// Glossary:
//   Decoded      one unpacked msgpack payload; owns the zone its objects live in.
//   Request      op + id + the borrowed request map (valid while its Decoded lives).
//   *_reply      encoders that append one whole frame (header + map) to a std::string.
// Nothing here does I/O; the daemon and libcairn both link it.
#pragma once

#include <msgpack.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "errors.hpp"
#include "event.hpp"
#include "frame.hpp"
#include "result.hpp"

namespace cairn::proto {

inline constexpr uint32_t kProtocolVersion = 1;

enum class Op { hello, append, flush, query, stats, verify, ping, subscribe };
std::string_view op_name(Op op);
std::optional<Op> op_from_name(std::string_view s);

// Owns one unpacked payload. Movable, not copyable. Strings and bins in it point into
// the bytes it was parsed from (msgpack-c does not copy them): keep those bytes alive
// and unmoved for as long as the Decoded is used.
class Decoded {
 public:
  Decoded();
  ~Decoded();
  Decoded(Decoded&& other) noexcept;
  Decoded& operator=(Decoded&& other) noexcept;
  Decoded(const Decoded&) = delete;
  Decoded& operator=(const Decoded&) = delete;

  const msgpack_object& root() const { return unpacked_.data; }

  // Unpacks exactly one msgpack object filling all of `bytes`. Before handing bytes to
  // msgpack-c it walks them once (msgpack_prescan) so that a 10-byte frame cannot
  // claim a 4-billion-entry array and make the unpacker allocate for it.
  static Result<Decoded, std::string> parse(std::span<const uint8_t> bytes, uint32_t max_depth);

 private:
  msgpack_unpacked unpacked_;
};

// Structural check of msgpack bytes without allocating: one complete object that ends
// exactly at bytes.size(), element counts no larger than the bytes left, nesting no
// deeper than max_depth. Returns an explanation on failure.
std::optional<std::string> msgpack_prescan(std::span<const uint8_t> bytes, uint32_t max_depth);

// Looks up a string key in a msgpack map; nullptr if absent or obj is not a map.
const msgpack_object* map_get(const msgpack_object& map, std::string_view key);

struct Request {
  Op op = Op::ping;
  uint64_t id = 0;
  const msgpack_object* map = nullptr;  // borrowed from the Decoded
};

struct RequestError {
  ErrorCode code;  // malformed, unknown_op, invalid_field (a repeated key)
  uint64_t id;     // 0 when the id itself could not be read
  std::string field;
  std::string message;
  std::string rule;  // invalid_field only: duplicate_key
};

// Reads op and id from a decoded request map. A key that appears twice anywhere in the
// map refuses the request (invalid_field, rule duplicate_key, naming the key).
Result<Request, RequestError> request_from(const Decoded& decoded);

struct Hello {
  uint32_t version = kProtocolVersion;
  std::string client;  // may be empty
};
Result<Hello, Violation> hello_from(const Request& req);

// Query arguments (PROTOCOL.md §6.4). Newest first unless `oldest_first`; `after` is an
// exclusive seq cursor in the direction of the walk.
//
// Filters: the values given for one column are OR'ed, different columns (and `fields`
// keys, and `text`) are AND'ed. `type`/`actor` hold a one-value filter as version 1 of
// the protocol sent it (a plain str); `match` holds every other column filter, and more
// values of type/actor (the wire sends a column's values as one str or one array).
enum class Column : uint8_t { type, actor, action, target, comm, outcome, uid, pid, gid };
std::string_view column_name(Column c);
std::optional<Column> column_from_name(std::string_view s);
bool column_is_int(Column c);  // outcome, uid, pid, gid: values are integers
struct ColumnMatch {
  Column column = Column::type;
  std::vector<std::string> text;  // text columns
  std::vector<int64_t> ints;      // integer columns (outcome as its number)
};
// One `fields` key (a dotted path into nested maps) and the values it may have: a str
// value equals one of them, an int its decimal text, a bool "true"/"false".
struct FieldMatch {
  std::string path;
  std::vector<std::string> values;
};
inline constexpr size_t kMaxMatchValues = 16;  // values per column or field key
inline constexpr size_t kMaxFieldMatches = 8;  // field keys per query
struct QuerySpec {
  std::optional<std::string> type;
  std::optional<std::string> actor;
  std::optional<int64_t> since;    // received >= since (ns)
  std::optional<int64_t> until;    // received < until (ns)
  std::optional<uint8_t> severity; // severity <= this (this severe or worse)
  uint32_t limit = 100;            // 1..kMaxQueryLimit
  std::optional<uint64_t> after;   // only seq < after (seq > after when oldest_first)
  std::vector<ColumnMatch> match;  // at most one entry per column
  std::vector<FieldMatch> fields;
  std::optional<std::string> text;  // case-insensitive (ASCII) substring of `message`
  bool oldest_first = false;
  // Rows a filter that no index serves may examine for this page (the daemon caps it at
  // kMaxScan); the page then ends with `next` set although it holds fewer than `limit`.
  std::optional<uint64_t> scan;
  // Oldest first only: when nothing matches past `after` yet, the daemon holds the
  // request until an event is committed (then runs it again) or this many ms pass (then
  // answers the empty page). What `cairn query -f` waits on instead of polling.
  std::optional<uint32_t> wait_ms;
};
inline constexpr uint32_t kMaxQueryLimit = 1000;
inline constexpr uint32_t kMaxQueryWaitMs = 60000;
inline constexpr uint64_t kMaxScan = 100000;
Result<QuerySpec, Violation> query_from(const Request& req, const Limits& limits);
// `subscribe` (PROTOCOL.md §6.8): the query filters, `after` and `limit` of §6.4; always
// oldest first (`order` may only say "oldest"); no `wait` (a subscription waits by
// itself). `after` absent: start at the head (the daemon resolves it).
Result<QuerySpec, Violation> subscribe_from(const Request& req, const Limits& limits);

// Verify arguments (PROTOCOL.md §8): all optional.
struct VerifyArgs {
  std::optional<std::string> key;        // the log's verifier key, "NAME+ID+BASE64"
  std::vector<std::string> checkpoints;  // saved signed checkpoints (<= 16, <= 4 KiB each)
  std::optional<uint64_t> fresh_ns;      // newest seal at most this old
  bool operator==(const VerifyArgs&) const = default;  // verifies with equal args share a walk
};
Result<VerifyArgs, Violation> verify_args_from(const Request& req);

using Hash = std::array<uint8_t, 32>;

struct StoredEvent {
  uint64_t seq = 0;
  Hash hash{};
  std::string body;  // canonical msgpack map
};

struct QueryPage {
  std::vector<StoredEvent> events;
  std::optional<uint64_t> next;  // pass as `after` for the next page; absent at the end
  uint64_t scanned = 0;          // rows examined for this page (0: not reported)
};

// Upper bounds (µs) of the commit-latency histogram in stats (`commit_hist`); one more
// bucket counts every slower commit. `cairn stats -o prometheus` turns them into the
// `le` labels of cairn_commit_duration_seconds.
inline constexpr uint64_t kCommitBucketsUs[] = {100,   250,   500,    1000,   2500,   5000,
                                                10000, 25000, 50000, 100000, 250000, 1000000};
inline constexpr size_t kCommitBuckets = std::size(kCommitBucketsUs) + 1;

struct Stats {
  uint64_t events = 0;                                     // rows in the store
  std::vector<std::pair<std::string, uint64_t>> by_type;   // rows per type, most first
  uint64_t head_seq = 0;
  uint64_t queue_depth = 0;   // events accepted, not yet committed
  uint64_t queue_bytes = 0;
  uint64_t commits = 0;       // since start
  uint64_t events_committed = 0;
  double events_per_commit = 0;
  uint64_t fsync_p50_us = 0;  // commit (write + fsync) latency, recent window
  uint64_t fsync_p99_us = 0;
  uint64_t fsync_max_us = 0;
  uint64_t storage_errors = 0;
  uint64_t lost_nondurable = 0;  // events acked durable:false, then lost with a failed commit
  uint64_t seals = 0;            // epochs sealed since cairnd started
  uint64_t db_bytes = 0;      // main file + WAL
  uint64_t connections = 0;
  std::string flush_mode;
  uint64_t uptime_s = 0;
  // Commits since start per kCommitBucketsUs bucket (not cumulative), and their summed
  // time; empty/0 from a daemon that does not send them.
  std::vector<uint64_t> commit_hist;
  uint64_t commit_us_sum = 0;
  // The database's filesystem (issue 14 part 2; 0/false/"" from a daemon that does not
  // send them): bytes free to cairnd, the reserve it keeps, whether it is below it
  // (appends refused or pushed back), the action, and appends refused storage_full
  // since start.
  uint64_t disk_free_bytes = 0;
  uint64_t disk_reserve_bytes = 0;
  bool storage_full = false;
  std::string disk_full_action;
  uint64_t storage_full_refusals = 0;
  // Retention (issue 14 part 1; 0 from a daemon that does not send them): records
  // 1..archived_through are in archive segments, 1..removed_through removed for good;
  // the segment files on disk and their bytes.
  uint64_t archived_through = 0, removed_through = 0;
  uint64_t archive_segments = 0, archive_bytes = 0;
};

// What `verify` found (PROTOCOL.md §8). `failure` names the class of the first
// failure: gap, altered, column, hidden_row, index, tree, root, seal, key_chain, time,
// consistency, checkpoint, stale, loss, format.
struct VerifyReport {
  bool valid = true;
  uint64_t checked = 0;
  uint64_t head_seq = 0;
  Hash head_hash{};
  std::optional<uint64_t> break_seq;  // first seq that does not verify
  std::string reason;                 // why, when !valid
  std::string failure;                // class of the first failure, when !valid
  Hash root{};                        // root of the tree of records 1..head_seq
  bool keyed = false;                 // seals were checked with a key given by the caller
  uint64_t epochs = 0;                // seals checked
  uint64_t sealed_seq = 0;            // the newest seal's seq (0: none)
  int64_t sealed_time = 0;            // ... and its time (ns)
  uint64_t unsealed = 0;              // records after the newest seal
  uint64_t checkpoints = 0;           // saved checkpoints the log was shown to extend
  std::vector<std::string> notes;     // lost seqs, recoveries: true, and worth knowing
};

// ---- replies (daemon side). Each appends one whole frame to `out`. ----
struct HelloInfo {
  std::string server;      // "cairnd 0.1.0"
  std::string flush_mode;  // immediate | batched | hybrid
  Limits limits;
  uint32_t max_inflight = 0;
};
// The message is cut to kMaxErrorMessage bytes and the field to kMaxErrorField (on a
// UTF-8 boundary, "..." appended), so an error reply always fits the smallest max_frame.
inline constexpr size_t kMaxErrorMessage = 512;
inline constexpr size_t kMaxErrorField = 256;
void encode_error(std::string& out, uint64_t id, ErrorCode code, std::string_view message,
                  std::string_view field = {}, std::string_view rule = {});
void encode_hello_reply(std::string& out, uint64_t id, const HelloInfo& info);
void encode_ack(std::string& out, uint64_t id, uint64_t seq, bool durable, bool duplicate);
void encode_flush_reply(std::string& out, uint64_t id, uint64_t durable_seq);
void encode_query_reply(std::string& out, uint64_t id, const QueryPage& page);
// Builds the same reply one event at a time, straight from the rows storage reads (no
// per-event copy). The event count is patched in by finish(), so the events array
// always has a 16-bit length header (fine for kMaxQueryLimit events).
class QueryReplyBuilder {
 public:
  QueryReplyBuilder(std::string& out, uint64_t id);
  void add(uint64_t seq, std::string_view hash, std::string_view body);  // hash: 32 bytes
  // `scanned` (> 0) is sent as the page's `scanned` figure (rows a filter examined).
  void finish(std::optional<uint64_t> next, uint64_t scanned = 0);
  uint32_t count() const { return count_; }
  // Whether one more event with a body of `body_size` bytes still leaves the finished
  // reply's payload within max_payload (PROTOCOL.md §2: no reply exceeds max_frame).
  bool fits(size_t body_size, uint32_t max_payload) const;
  // Whether a page holding only this event fits: the daemon refuses to store an event
  // that would not, so every stored event can be sent.
  static bool fits_alone(size_t body_size, uint32_t max_payload);
  // Whether finish() may add `scanned` and stay within max_payload (a page holding one
  // event at the size limit may not; it then goes without the figure).
  bool room_for_scanned(uint32_t max_payload) const;

 private:
  std::string& out_;
  size_t frame_at_ = 0, count_at_ = 0;
  uint32_t count_ = 0;
};
// `by_type` is cut, most frequent first, so the payload stays within max_payload; the
// number of types left out is sent as `by_type_omitted` (only when > 0).
void encode_stats_reply(std::string& out, uint64_t id, const Stats& stats,
                        uint32_t max_payload = kDefaultMaxFrame);
void encode_verify_reply(std::string& out, uint64_t id, const VerifyReport& report);
void encode_pong(std::string& out, uint64_t id);

// ---- requests (client side). Each appends one whole frame to `out`. ----
// A client event: borrowed views; `fields` is already-encoded msgpack (a map) or empty.
struct EventView {
  std::string_view type;
  std::optional<uint8_t> severity;
  std::optional<std::string_view> actor, action, target, message;
  std::optional<Outcome> outcome;
  std::optional<int64_t> time;
  std::string_view fields;  // raw msgpack map bytes, spliced in as-is
  bool sync = false;
  std::string_view idem;    // raw bytes, empty = none
};
void encode_hello(std::string& out, uint64_t id, uint32_t version, std::string_view client);
void encode_append(std::string& out, uint64_t id, const EventView& event);
void encode_simple(std::string& out, uint64_t id, Op op);  // flush, stats, verify, ping
void encode_query(std::string& out, uint64_t id, const QuerySpec& spec);
// A `subscribe` frame with the filters, `after` and `limit` of `spec` (its order and
// wait are not sent: a subscription is always oldest first and waits by itself).
void encode_subscribe(std::string& out, uint64_t id, const QuerySpec& spec);
// Just the query's arguments as a msgpack map (no frame, op or id), for cairn_request.
void encode_query_args(std::string& out, const QuerySpec& spec);

// ---- reply decoding (client side). ----
struct Reply {
  uint64_t id = 0;
  bool ok = false;
  std::optional<ErrorCode> error;  // set when !ok (nullopt if the code is unknown to us)
  std::string error_name;          // the code as sent
  std::string message, field, rule;
  const msgpack_object* map = nullptr;  // the whole reply map, borrowed
};
Result<Reply, std::string> reply_from(const Decoded& decoded);

// The id and ok of a reply map, read without unpacking the rest (a client that only
// needs to match an ack to its request should not allocate for a 1000-event page).
// Also checks that `bytes` is one well-formed map. nullopt if it is not a reply, or if
// id/ok/seq/durable/duplicate appear twice or with a value not of their type (integers
// in any msgpack encoding with a value >= 0, as reply_from and ack_from read them).
struct ReplyHead {
  uint64_t id = 0;
  bool ok = false;
  bool has_seq = false;  // acks: seq is also read here, since they are the common case
  uint64_t seq = 0;
  bool durable = false;
  bool duplicate = false;
};
std::optional<ReplyHead> reply_peek(std::span<const uint8_t> bytes);

struct Ack {
  uint64_t seq = 0;
  bool durable = false;
  bool duplicate = false;
};
Result<Ack, std::string> ack_from(const Reply& reply);
Result<QueryPage, std::string> query_page_from(const Reply& reply);
Result<Stats, std::string> stats_from(const Reply& reply);
Result<VerifyReport, std::string> verify_from(const Reply& reply);
Result<HelloInfo, std::string> hello_info_from(const Reply& reply);

}  // namespace cairn::proto
