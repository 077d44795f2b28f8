#!/usr/bin/env python3
"""A dependency-free Python client for cairnd, written from protocol/PROTOCOL.md alone.

    from cairn_client import Client
    with Client("/run/cairn/cairn.sock") as c:
        ack = c.append({"type": "UserLogin", "actor": "alice", "outcome": "success"})
        print(ack["seq"], ack["durable"])

It speaks the wire format directly (4-byte big-endian length + one MessagePack map) with
a small MessagePack codec below, so it runs on any python3 without extra packages. It
does not reconnect; use libcairn where a restart must neither lose nor duplicate events.
"""
import os
import socket
import struct
import sys

__all__ = ["Client", "CairnError", "packb", "unpackb"]


# ---- MessagePack: the subset cairn uses (nil, bool, int, float64, str, bin, array, map)

def packb(o):
    out = bytearray()
    _pack(o, out)
    return bytes(out)


def _pack(o, out):
    if o is None:
        out.append(0xC0)
    elif o is True:
        out.append(0xC3)
    elif o is False:
        out.append(0xC2)
    elif isinstance(o, int):
        if 0 <= o < 0x80:
            out.append(o)
        elif -32 <= o < 0:
            out.append(o & 0xFF)
        elif 0 <= o <= 0xFF:
            out += b"\xcc" + struct.pack(">B", o)
        elif 0 <= o <= 0xFFFF:
            out += b"\xcd" + struct.pack(">H", o)
        elif 0 <= o <= 0xFFFFFFFF:
            out += b"\xce" + struct.pack(">I", o)
        elif 0 <= o:
            out += b"\xcf" + struct.pack(">Q", o)
        elif o >= -0x80:
            out += b"\xd0" + struct.pack(">b", o)
        elif o >= -0x8000:
            out += b"\xd1" + struct.pack(">h", o)
        elif o >= -0x80000000:
            out += b"\xd2" + struct.pack(">i", o)
        else:
            out += b"\xd3" + struct.pack(">q", o)
    elif isinstance(o, float):
        out += b"\xcb" + struct.pack(">d", o)
    elif isinstance(o, str):
        b = o.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        elif n <= 0xFF:
            out += b"\xd9" + struct.pack(">B", n)
        elif n <= 0xFFFF:
            out += b"\xda" + struct.pack(">H", n)
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += b
    elif isinstance(o, (bytes, bytearray)):
        n = len(o)
        if n <= 0xFF:
            out += b"\xc4" + struct.pack(">B", n)
        elif n <= 0xFFFF:
            out += b"\xc5" + struct.pack(">H", n)
        else:
            out += b"\xc6" + struct.pack(">I", n)
        out += o
    elif isinstance(o, (list, tuple)):
        n = len(o)
        if n < 16:
            out.append(0x90 | n)
        elif n <= 0xFFFF:
            out += b"\xdc" + struct.pack(">H", n)
        else:
            out += b"\xdd" + struct.pack(">I", n)
        for x in o:
            _pack(x, out)
    elif isinstance(o, dict):
        n = len(o)
        if n < 16:
            out.append(0x80 | n)
        elif n <= 0xFFFF:
            out += b"\xde" + struct.pack(">H", n)
        else:
            out += b"\xdf" + struct.pack(">I", n)
        for k, v in o.items():
            _pack(k, out)
            _pack(v, out)
    else:
        raise TypeError("cannot pack %r" % type(o))


def unpackb(b):
    v, i = _unpack(memoryview(b), 0)
    if i != len(b):
        raise ValueError("trailing bytes after msgpack object")
    return v


def _unpack(b, i):
    t = b[i]
    i += 1
    if t <= 0x7F:
        return t, i
    if t >= 0xE0:
        return t - 0x100, i
    if 0xA0 <= t <= 0xBF:
        n = t & 0x1F
        return bytes(b[i:i + n]).decode("utf-8"), i + n
    if 0x90 <= t <= 0x9F:
        return _array(b, i, t & 0x0F)
    if 0x80 <= t <= 0x8F:
        return _map(b, i, t & 0x0F)
    fixed = {0xC0: None, 0xC2: False, 0xC3: True}
    if t in fixed:
        return fixed[t], i
    ints = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
            0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q", 0xCA: ">f", 0xCB: ">d"}
    if t in ints:
        fmt = ints[t]
        n = struct.calcsize(fmt)
        return struct.unpack(fmt, b[i:i + n])[0], i + n
    lens = {0xD9: (">B", "str"), 0xDA: (">H", "str"), 0xDB: (">I", "str"),
            0xC4: (">B", "bin"), 0xC5: (">H", "bin"), 0xC6: (">I", "bin"),
            0xDC: (">H", "arr"), 0xDD: (">I", "arr"), 0xDE: (">H", "map"), 0xDF: (">I", "map")}
    if t in lens:
        fmt, kind = lens[t]
        k = struct.calcsize(fmt)
        n = struct.unpack(fmt, b[i:i + k])[0]
        i += k
        if kind == "str":
            return bytes(b[i:i + n]).decode("utf-8"), i + n
        if kind == "bin":
            return bytes(b[i:i + n]), i + n
        return (_array if kind == "arr" else _map)(b, i, n)
    raise ValueError("unsupported msgpack type 0x%02x" % t)


def _array(b, i, n):
    out = []
    for _ in range(n):
        v, i = _unpack(b, i)
        out.append(v)
    return out, i


def _map(b, i, n):
    out = {}
    for _ in range(n):
        k, i = _unpack(b, i)
        v, i = _unpack(b, i)
        out[k] = v
    return out, i


# ---- the client

class CairnError(Exception):
    """A request the daemon refused: .code is the stable error code (PROTOCOL.md §5)."""

    def __init__(self, reply):
        self.code = reply.get("error")
        self.field = reply.get("field")
        self.rule = reply.get("rule")
        super().__init__("%s: %s" % (self.code, reply.get("message")))


class Client:
    def __init__(self, path=None, client_name="python"):
        path = path or os.environ.get("CAIRN_SOCKET", "/run/cairn/cairn.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.next_id = 1
        self.server = self.call("hello", version=1, client=client_name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def call(self, op, **args):
        rid = self.next_id
        self.next_id += 1
        payload = packb(dict(op=op, id=rid, **args))
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)
        reply = unpackb(self._read_frame())
        if reply.get("id") != rid:
            raise CairnError({"error": "protocol", "message": "reply id mismatch"})
        if not reply.get("ok"):
            raise CairnError(reply)
        return reply

    def append(self, event):
        """Blocks until the ack; returns {"seq", "durable", "duplicate"}."""
        event = dict(event)
        event.setdefault("idem", os.urandom(16))
        return self.call("append", event=event)

    def query(self, **filters):
        return self.call("query", **filters)

    def _read_frame(self):
        n = struct.unpack(">I", self._read_exact(4))[0]
        return self._read_exact(n)

    def _read_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("cairnd closed the connection")
            buf += chunk
        return bytes(buf)


if __name__ == "__main__":
    with Client() as c:
        ack = c.append({"type": sys.argv[1] if len(sys.argv) > 1 else "PythonHello",
                        "actor": os.environ.get("USER", "unknown")})
        print(ack["seq"], "durable" if ack["durable"] else "accepted")
