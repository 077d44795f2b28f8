// render.hpp — printing events and figures for people (table) and programs (JSON lines).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "../../protocol/message.hpp"

namespace cairn::cli {

enum class Output { table, json };

// One JSON object per event: {"seq":N,"hash":"hex",<body keys>}.
std::string event_json(const proto::StoredEvent& e);

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
