// render.hpp — printing events and figures for people (table) and programs (JSON lines).
#pragma once

#include <cstdio>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "../../protocol/message.hpp"

namespace cairn::cli {

enum class Output { table, json };

// One JSON object per event: {"seq":N,"hash":"hex",<body keys>}.
std::string event_json(const proto::StoredEvent& e);

// `cairn query -o`: short (a table row per event, fields as key=value at the end),
// verbose (every key on its own line), json (one object per line, times also as UTC
// text), json-pretty, cat (the message only), export (one `cairn send --stdin` line per
// event: what a script reads back or replays).
enum class EventFormat { short_, verbose, json, json_pretty, cat, export_ };
std::optional<EventFormat> event_format_from(std::string_view s);  // "table" = short

struct RenderOptions {
  EventFormat format = EventFormat::short_;
  bool utc = false;    // human times in UTC, else the local zone
  bool color = false;  // severity colours (only on a terminal)
};

// One JSON object: event_json plus received_utc/time_utc; indented when `pretty`.
std::string event_json_full(const proto::StoredEvent& e, bool pretty);
// The event as a `cairn send --stdin` line (the client's keys only; seq, hash and the
// daemon's stamps are left out, so the line is accepted as it is).
std::string event_export(const proto::StoredEvent& e);

class EventPrinter {
 public:
  EventPrinter(FILE* out, RenderOptions opt) : out_(out), opt_(opt) {}
  void header();  // short only: the column names
  void event(const proto::StoredEvent& e);

 private:
  FILE* out_;
  RenderOptions opt_;
};

class EventTable {
 public:
  explicit EventTable(FILE* out) : out_(out) {}
  void header();
  void row(const proto::StoredEvent& e);

 private:
  FILE* out_;
};

// Text shown in a table cell: control characters (which the daemon refuses anyway)
// are rendered as \xNN so a hostile database cannot drive the terminal.
std::string cell(std::string_view s, size_t max);

// `from_file`: only what a database file knows (events, by_type, head_seq, db_bytes) is
// meaningful in `s`, and only that is printed.
void print_stats(FILE* out, const proto::Stats& s, Output mode, bool from_file = false);
std::string hex(const uint8_t* p, size_t n);

}  // namespace cairn::cli
