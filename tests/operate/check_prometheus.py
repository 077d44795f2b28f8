#!/usr/bin/env python3
"""Reads a cairn textfile with prometheus_client's own parser (Debian package
python3-prometheus-client) and checks what a Prometheus user relies on.
usage: check_prometheus.py FILE up|down|file"""
import sys

from prometheus_client.parser import text_string_to_metric_families

path, mode = sys.argv[1], sys.argv[2]
text = open(path).read()
# The parser is lenient about some things; the exposition format is not: one trailing
# newline, no blank lines, every family typed before its samples.
assert text.endswith("\n") and "\n\n" not in text, "blank line or no final newline"
fams = {f.name: f for f in text_string_to_metric_families(text)}


def value(name, labels=None):
    for fam in fams.values():
        for s in fam.samples:
            if s.name == name and (labels is None or all(s.labels.get(k) == v for k, v in labels.items())):
                return s.value
    raise AssertionError("no sample %s %r" % (name, labels))


if mode == "down":
    assert set(fams) == {"cairn_up"}, fams.keys()
    assert value("cairn_up") == 0
    sys.exit(0)
if mode == "file":
    assert "cairn_up" not in fams, "a database file says nothing of the daemon"
    assert value("cairn_log_events") >= 5
    assert value("cairn_log_events_by_type", {"type": "UserLogin"}) == 2
    sys.exit(0)

assert value("cairn_up") == 1
# prometheus_client strips _total from a counter family's name; the sample keeps it.
assert fams["cairn_events_appended"].type == "counter", fams["cairn_events_appended"].type
assert value("cairn_events_appended_total") == 5
assert fams["cairn_commits"].type == "counter"
assert value("cairn_commits_total") >= 1
for name in ("cairn_queue_events", "cairn_queue_bytes", "cairn_connections", "cairn_database_bytes",
             "cairn_head_seq", "cairn_log_events"):
    assert fams[name].type == "gauge", name
assert value("cairn_database_bytes") > 0
for name in ("cairn_storage_errors", "cairn_seals", "cairn_lost_nondurable_events"):
    assert fams[name].type == "counter", name
assert value("cairn_storage_errors_total") == 0
assert value("cairn_log_events_by_type", {"type": "UserLogin"}) == 2
assert value("cairn_log_events_by_type", {"type": "Odd.Type"}) == 3
assert value("cairn_info", {"flush_mode": "immediate"}) == 1
p50 = value("cairn_commit_duration_window_seconds", {"quantile": "0.5"})
p99 = value("cairn_commit_duration_window_seconds", {"quantile": "0.99"})
assert 0 < p50 <= p99 <= value("cairn_commit_duration_max_seconds"), (p50, p99)
if "cairn_commit_duration_seconds" in fams:  # the histogram, when the daemon sends one
    h = fams["cairn_commit_duration_seconds"]
    assert h.type == "histogram"
    buckets = [s for s in h.samples if s.name.endswith("_bucket")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    assert buckets[-1].labels["le"] == "+Inf"
    assert buckets[-1].value == value("cairn_commit_duration_seconds_count") == value("cairn_commits_total")
print("ok: %d families" % len(fams))
