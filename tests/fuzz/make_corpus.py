#!/usr/bin/env python3
"""make_corpus.py — writes the hand-made seed corpus under tests/fuzz/corpus/.

Each seed is a small valid input or an edge case the fuzzer would take long to find
alone. Re-run after changing it (it rewrites corpus/*/seed-*); the files are committed so
the fuzz suite needs no Python. Encodes MessagePack by hand: no module needed.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def pk(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v <= 0x7F:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v <= 0xFF:
            return b"\xcc" + bytes([v])
        if 0 <= v <= 0xFFFF:
            return b"\xcd" + struct.pack(">H", v)
        if 0 <= v <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode("utf-8", "surrogatepass")
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, Raw):
        return v.b
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(pk(x) for x in v)
    if isinstance(v, (dict, Pairs)):
        items = v.items() if isinstance(v, dict) else v.pairs
        items = list(items)
        return bytes([0x80 | len(items)]) + b"".join(pk(k) + pk(x) for k, x in items)
    raise TypeError(v)


class Raw:
    def __init__(self, b):
        self.b = b


class Pairs:  # a map that may repeat keys
    def __init__(self, *pairs):
        self.pairs = pairs


def frame(payload):
    return struct.pack(">I", len(payload)) + payload


def req(op, id_, **kw):
    m = {"op": op, "id": id_}
    m.update(kw)
    return frame(pk(m))


EVENT = {"type": "UserLogin", "severity": "warning", "actor": "alice", "action": "login",
         "target": "host:ssh", "outcome": "success", "time": 1700000000000000000,
         "message": "line one\nline two", "fields": {"ip": "10.1.2.3", "n": -5, "f": 1.5,
         "ok": True, "z": None, "list": [1, "x", {"deep": [1]}]}, "sync": True,
         "idem": b"0123456789abcdef"}

STREAMS = {
    "hello_ping": req("hello", 1, version=1, client="fuzz") + req("ping", 2),
    "append_full": req("hello", 1, version=1) + req("append", 2, event=EVENT) + req("flush", 3),
    "append_min": req("append", 7, event={"type": "A"}),
    "append_critical": req("append", 1, event={"type": "AuthFailure", "severity": 2}) +
                       req("append", 2, event={"type": "Crit", "sync": True}),
    "append_idem_dup": req("append", 1, event={"type": "T", "idem": "idem-key-1"}) +
                       req("append", 2, event={"type": "T", "idem": "idem-key-1"}),
    "query_all": req("query", 5, type="UserLogin", actor="alice", since=0, until=2**62,
                     severity="err", limit=10, after=100) + req("stats", 6) + req("verify", 7),
    "bad_utf8": req("append", 1, event={"type": "T", "actor": Raw(b"\xa3\xe2\x80\xae")}),
    "bidi_bom": req("append", 1, event={"type": "T", "message": "x\u202ey\ufeff"}),
    "control_char": req("append", 1, event={"type": "T", "actor": "a\x1bb"}),
    "unknown_key": req("append", 1, event={"type": "T", "bogus\x01": 1}),
    "trusted_field": req("append", 1, event={"type": "T", "seq": 9, "pid": 1}),
    "fields_deep": req("append", 1, event={"type": "T", "fields": {"a": {"b": {"c": {"d": {"e": 1}}}}}}),
    "fields_dup": req("append", 1, event={"type": "T", "fields": Pairs(("k", 1), ("k", 2))}),
    "event_dup": req("append", 1, event=Pairs(("type", "A"), ("type", "B"))),
    "request_dup_op": frame(pk(Pairs(("op", "ping"), ("id", 1), ("op", "append")))),
    "fields_nan": req("append", 1, event={"type": "T", "fields": {"x": float("nan")}}),
    "int8_id": frame(b"\x82\xa2op\xa4ping\xa2id\xd0\x2a"),
    "str8_keys": frame(b"\x82\xd9\x02op\xa4ping\xd9\x02id\x01"),
    "unknown_op": req("fly", 3),
    "no_id": frame(pk({"op": "ping"})),
    "not_a_map": frame(pk([1, 2, 3])),
    "hostile_count": frame(b"\xdd\xff\xff\xff\xff\x00"),
    "deep_array": frame(b"\x91" * 40 + b"\x00"),
    "trailing": frame(pk({"op": "ping", "id": 1}) + b"\x00"),
    "reserved_c1": frame(b"\x81\xa2op\xc1"),
    "zero_length": b"\x00\x00\x00\x00" + req("ping", 1),
    "oversize": b"\x00\x10\x00\x01" + b"x" * 16,
    "partial": req("ping", 1) + req("ping", 2)[:7],
    "pipeline": b"".join(req("append", i, event={"type": "Bulk", "fields": {"i": i}}) for i in range(1, 40)),
}

REPLIES = {
    "ack": pk({"id": 1, "ok": True, "seq": 42, "durable": True, "duplicate": False}),
    "ack_u64": pk({"id": 2**40, "ok": True, "seq": 2**63, "durable": False, "duplicate": True}),
    "pong": pk({"id": 3, "ok": True}),
    "flush": pk({"id": 4, "ok": True, "durable_seq": 99}),
    "error": pk({"id": 5, "ok": False, "error": "invalid_field", "message": "actor: too long",
                 "field": "actor", "rule": "too_long"}),
    "error_unknown_code": pk({"id": 0, "ok": False, "error": "brand_new", "message": "?"}),
    "query": pk({"id": 6, "ok": True, "events": [
        {"seq": 2, "hash": b"\x11" * 32, "event": {"type": "A", "severity": 6}},
        {"seq": 1, "hash": b"\x22" * 32, "event": {"type": "B"}}], "next": 1}),
    "query_end": pk({"id": 7, "ok": True, "events": [], "next": None}),
    "stats": pk({"id": 8, "ok": True, "events": 3, "by_type": {"A": 2, "B": 1}, "head_seq": 3,
                 "events_per_commit": 1.5, "flush_mode": "hybrid", "uptime_s": 10}),
    "verify": pk({"id": 9, "ok": True, "valid": False, "checked": 10, "head_seq": 10,
                  "head_hash": b"\x33" * 32, "break_seq": 4, "reason": "hash mismatch"}),
    "hello": pk({"id": 1, "ok": True, "version": 1, "server": "cairnd 0.1.0", "flush_mode": "immediate",
                 "max_frame": 65536, "max_string": 1024, "max_fields": 64, "max_depth": 4,
                 "max_inflight": 4096}),
    "map16": b"\xde\x00\x02" + pk("id")[0:] + b"\x01" + pk("ok") + b"\xc3",
    "not_reply": pk([1, 2]),
    "truncated": pk({"id": 1, "ok": True, "seq": 42})[:-1],
}

JSON = {
    "event": b'{"type":"DataAccess","actor":"svc","fields":{"rows":12,"f":1.5e-3,"l":[true,null]}}',
    "escapes": b'"a\\"b\\\\c\\n\\u0001\\u00e9\\ud83d\\udd12\\/"',
    "numbers": b'[0,-0,1e308,-1.5E-7,9223372036854775807,-9223372036854775808,9223372036854775808,0.1]',
    "nested": b"[" * 32 + b"]" * 32,
    "too_deep": b"[" * 34 + b"]" * 34,
    "bad_surrogate": b'"\\ud800x"',
    "utf8": '{"k":"\u20ac\u202e\ufeff"}'.encode(),
    "bad_utf8": b'"\xc0\xaf"',
    "ws": b' \t\r\n{ "a" : [ ] } \n',
    "dup_keys": b'{"a":1,"a":2}',
    "lead_zero": b"01",
    "trailing": b"{} x",
    "mp_map": pk({"k": b"\x00\xff", 1: [1.0, -2, None], "s": "\x7f\u0085\u2028"}),
    "mp_ext": b"\xd4\x01\x02",
    "mp_float32": b"\xca\x7f\x80\x00\x00",
}


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    for name, s in STREAMS.items():
        write("protocol", name, b"\x00" + s)
        # session: whole stream in one write; a few also in pieces or hung up on.
        write("session", name, b"\x00" + s)
    write("protocol", "small_limits", b"\x0f" + STREAMS["append_full"])
    write("session", "pieces_1", b"\x01" + STREAMS["append_full"])
    write("session", "pieces_5", b"\x04" + STREAMS["pipeline"])
    write("session", "hang_up", b"\x80" + STREAMS["pipeline"])
    for name, r in REPLIES.items():
        write("reply", name, r)
    for name, j in JSON.items():
        write("cli_json", name, j)


if __name__ == "__main__":
    main()
