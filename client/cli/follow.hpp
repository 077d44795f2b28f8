// follow.hpp — `cairn query -f` after the backlog: new events pushed by cairnd's
// `subscribe` (PROTOCOL.md §6.8), across restarts of cairnd.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "../../protocol/message.hpp"
#include "render.hpp"

namespace cairn::cli {

struct FollowOptions {
  std::string socket;                      // cairnd's socket
  proto::QuerySpec filters;                // the query's filters (order, limit, wait unused)
  uint64_t after = 0;                      // the newest seq already shown
  std::optional<std::string> cursor_file;  // rewritten with the newest seq shown
  FILE* out = stdout;
};

// Subscribes with `after` and prints each pushed event. When the connection is lost (EOF,
// or cairnd stopping) it reconnects with backoff (50 ms doubling to 2 s, for at most 24 h
// without a connection) and subscribes again after the newest seq it printed, so a
// restart of cairnd loses and repeats nothing. Returns only on an error it cannot ride
// out (printed): 2.
int follow_subscribe(const FollowOptions& opt, EventPrinter& printer);

// Writes `seq` to `path` through a temporary file and a rename, so a reader never sees a
// half-written cursor (query_commands.cpp). False on any failure.
bool write_cursor_file(const std::string& path, uint64_t seq);

}  // namespace cairn::cli
