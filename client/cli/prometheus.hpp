// prometheus.hpp — `cairn stats -o prometheus`: the stats reply in the Prometheus text
// exposition format (version 0.0.4), for node_exporter's textfile collector.
//
// Names follow Prometheus conventions: a `cairn_` prefix, base units (seconds, bytes),
// `_total` only on counters (they restart from 0 with cairnd, which Prometheus' rate()
// expects), and labels only where a series is one of a set (event type, histogram le).
// The metric list is in cairn(1), METRICS.
#pragma once

#include <string>

#include "../../protocol/message.hpp"

namespace cairn::cli {

// The whole exposition for one stats reply. `from_file`: `s` came from `--db`, which
// knows only the log's contents (events, by type, head seq, size), so only those are
// printed, and no cairn_up (the daemon was not asked).
std::string render_prometheus(const proto::Stats& s, bool from_file);

// What a scrape shows when cairnd could not be reached or refused: cairn_up 0, so an
// alert can tell "down" from "stale file".
std::string render_prometheus_down();

// Writes `text` to stdout, or with a non-empty `textfile` replaces that file
// atomically (a temp file beside it, then rename), so the collector never reads half a
// file; the file is 0644 for node_exporter's user. Returns 0, or 2 with a message on
// stderr.
int emit_prometheus(const std::string& text, const std::string& textfile);

}  // namespace cairn::cli
