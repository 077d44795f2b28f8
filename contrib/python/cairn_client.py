#!/usr/bin/env python3
"""A dependency-free Python client for cairnd, written from protocol/PROTOCOL.md alone.

    from cairn_client import Client
    with Client("/run/cairn/cairn.sock", timeout=5) as c:
        ack = c.append({"type": "UserLogin", "actor": "alice", "outcome": "success"})
        print(ack["seq"], ack["durable"])
        for ev in c.events(type="UserLogin"):       # every page, newest first
            print(ev["seq"], ev["event"]["actor"])

It speaks the wire format directly (4-byte big-endian length + one MessagePack map) with
a small MessagePack codec below, so it runs on any python3 without extra packages.

Like libcairn (cairn.h), it survives a daemon restart: when the connection is lost, or
the daemon answers shutting_down, it reconnects with exponential backoff for up to
`reconnect_timeout` seconds and sends the request again. An append is resent with the
same idempotency key, so the daemon answers duplicate:true with the original seq if it
had stored it: nothing is lost and nothing is stored twice. Refusals (invalid_field,
storage_failed, permission_denied ...) are raised as CairnError, never retried;
rate_limited (the caller's uid is over cairnd's --uid-append-rate) as its subclass
CairnRateLimited: that event was not stored, append it again later.
storage_full (cairnd's disk is below its reserve) as its subclass CairnStorageFull.
`timeout` bounds each call as a whole (connect, hello, reconnects, send, reply); when
it runs out the call raises CairnTimeout and the connection is closed: an append in
flight may or may not be stored (append it again with the same `idem` to learn which).
The next call connects afresh.

A Client is not thread-safe: use one per thread.
"""
import os
import socket
import struct
import sys
import time

__all__ = ["Client", "CairnError", "CairnStorageFull", "CairnTimeout", "CairnConnectionError",
           "CairnProtocolError", "CairnRateLimited", "packb", "unpackb"]
__version__ = "0.1.0"


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
        self.message = reply.get("message")
        super().__init__("%s: %s" % (self.code, self.message))


class CairnRateLimited(CairnError):
    """rate_limited: this uid is over cairnd's --uid-append-rate. The event was not
    stored and is not resent by the client: append it again later (same idem)."""


class CairnStorageFull(CairnError):
    """storage_full: the filesystem holding cairnd's database is below cairnd's reserve
    (disk-reserve) or full. The event was NOT stored; .message names the free and
    reserved bytes. Not retried here: resend it (same idem) once space is freed."""


class CairnTimeout(CairnError, TimeoutError):
    """The call's `timeout` ran out; the connection was closed."""

    def __init__(self, what):
        super().__init__({"error": "timeout", "message": what})


class CairnConnectionError(CairnError, ConnectionError):
    """cairnd could not be reached (within `reconnect_timeout`), or it went away with
    reconnection off (reconnect_timeout=0). .code is "connect" or "io"; .errno as the
    socket call set it (ENOENT: no socket there, is cairnd running? EACCES: not allowed
    to use it; ECONNREFUSED: nothing listening)."""

    def __init__(self, code, message, errno_=None):
        super().__init__({"error": code, "message": message})
        self.errno = errno_


class CairnProtocolError(CairnError):
    """The daemon sent something this client cannot read; never retried."""

    def __init__(self, message):
        super().__init__({"error": "protocol", "message": message})


class _Lost(Exception):
    """The connection broke, or cairnd said shutting_down/overloaded: reconnect, resend."""

    def __init__(self, why, errno_=None, code="io"):
        super().__init__(why)
        self.errno = errno_
        self.code = code


MAX_REPLY = 16 << 20   # the largest max_frame a daemon can have (PROTOCOL.md §1)
DEFAULT_SOCKET = "/run/cairn/cairn.sock"


class Client:
    """One connection to cairnd (opened at once, reopened as needed).

    path               the socket [$CAIRN_SOCKET, else /run/cairn/cairn.sock]
    timeout            seconds any one call may take in all, or None for no bound
    reconnect_timeout  seconds to keep reconnecting after a loss; 0: never [30]
    """

    def __init__(self, path=None, client_name="python", timeout=None, reconnect_timeout=30.0):
        self.path = path or os.environ.get("CAIRN_SOCKET", DEFAULT_SOCKET)
        self.client_name = client_name
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self.sock = None
        self.server = None
        self.next_id = 1
        self.reconnects = 0   # connections made after the first (for tests and logs)
        self._opened = 0
        self._run(None, None, self._deadline())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # ---- requests

    def call(self, op, **args):
        """Any op; returns the reply map, raises CairnError for a refusal."""
        return self._run(op, args, self._deadline())

    def append(self, event):
        """Blocks until the ack; returns {"seq", "durable", "duplicate"}. An event
        without "idem" gets 16 random bytes, kept across resends."""
        event = dict(event)
        event.setdefault("idem", os.urandom(16))
        return self.call("append", event=event)

    def flush(self):
        """Returns the newest durable seq once every event this connection sent is
        durable. After a reconnect it covers only what was sent on the new connection;
        in batched mode, call it before relying on durable:false acks."""
        return self.call("flush")["durable_seq"]

    def ping(self):
        self.call("ping")

    def stats(self):
        return self.call("stats")

    def verify(self, **args):
        return self.call("verify", **args)

    def query(self, **filters):
        """One page (PROTOCOL.md §6.4): {"events": [...], "next": seq or None}. Filters:
        type, actor, action, target, comm (str or list of str), outcome (name or list),
        uid, pid, gid (int or list), severity, since, until (ns), fields ({path: str or
        list}), text, order ("newest" | "oldest"), after, limit, scan, wait (ms). To be sent each new
        event as it is stored, use subscribe()."""
        return self.call("query", **filters)

    def events(self, page_size=100, **filters):
        """Every matching event, newest first, page by page (keyset paging on `next`);
        a generator, so a big log is never held in memory at once."""
        after = filters.pop("after", None)
        while True:
            args = dict(filters, limit=page_size)
            if after is not None:
                args["after"] = after
            page = self.query(**args)
            for e in page["events"]:
                yield e
            after = page.get("next")
            if after is None:
                return

    def follow(self, after=None, wait_ms=30000, **filters):
        """Every matching event stored after seq `after` (default: from now), oldest
        first, forever: each page is asked with `wait`, so cairnd answers as soon as an
        event is committed (PROTOCOL.md §6.4), and a reconnect resumes at the last seq
        seen. Filters as for query (type, actor, outcome, uid, fields={...}, text ...).
        Keep wait_ms below the client's timeout, if it has one."""
        if after is None:
            page = self.query(limit=1)  # the log's newest seq, whatever the filters
            after = page["events"][0]["seq"] if page["events"] else 0
        while True:
            page = self.query(order="oldest", after=after, wait=wait_ms, limit=1000, **filters)
            for e in page["events"]:
                yield e
                after = e["seq"]
            if page.get("next") is not None:
                after = max(after, page["next"])

    def subscribe(self, after=None, **filters):
        """Every matching event stored after seq `after` (default: from now), oldest
        first, forever, pushed by cairnd (PROTOCOL.md §6.8): one `subscribe` request,
        then only reading, so an event is yielded as soon as it is stored. It runs on a
        connection of its own (a subscribing connection takes no other request; this
        Client stays usable). After a loss (cairnd restarting) it reconnects like any
        call and subscribes again after the last seq yielded: nothing is lost or
        repeated. Filters as for query (type, actor, outcome, uid, fields={...}, text
        ...). A generator: closing it closes its connection."""
        sub = Client(self.path, self.client_name + "-subscribe", timeout=None,
                     reconnect_timeout=self.reconnect_timeout)
        try:
            while True:
                try:
                    args = dict(filters)
                    if after is not None:
                        args["after"] = after
                    reply = sub._request("subscribe", args, None)
                    while True:
                        for e in reply["events"]:
                            if after is not None and e["seq"] <= after:
                                continue   # never twice, whatever a daemon sends
                            yield e
                            after = e["seq"]
                        nxt = reply.get("next")
                        if nxt is not None and (after is None or nxt > after):
                            after = nxt
                        reply = sub._read_reply(None)
                        if not reply.get("ok"):
                            if reply.get("error") in ("shutting_down", "overloaded"):
                                raise _Lost("cairnd: %s" % reply.get("message"), code=reply["error"])
                            raise CairnError(reply)
                except _Lost:
                    pass
                except OSError:
                    pass
                sub.close()
                sub._run(None, None, None)   # reconnects with backoff, as every call does
        finally:
            sub.close()

    # ---- connection and retries

    def _deadline(self):
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _left(self, deadline):
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            self.close()
            raise CairnTimeout("no answer within %gs" % self.timeout)
        return left

    def _run(self, op, args, deadline):
        """Connects if needed and makes one request (none for op None), retrying after a
        loss as the class says."""
        lost_since = None
        backoff = 0.01
        while True:
            try:
                if self.sock is None:
                    self._connect(deadline)
                if op is None:
                    return None
                return self._request(op, args, deadline)
            except _Lost as e:
                self.close()
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                if self.reconnect_timeout <= 0 or now - lost_since >= self.reconnect_timeout:
                    if e.code in ("shutting_down", "overloaded"):
                        raise CairnError({"error": e.code, "message": str(e)})
                    raise CairnConnectionError("connect" if self._opened == 0 or e.code == "connect"
                                               else e.code, str(e), e.errno)
                pause = min(backoff, lost_since + self.reconnect_timeout - now)
                left = self._left(deadline)
                if left is not None:
                    pause = min(pause, left)
                # The backoff between attempts; what ends the wait is the daemon coming
                # back (the next attempt), the reconnect deadline or the call's timeout.
                time.sleep(max(pause, 0))
                backoff = min(backoff * 2, 1.0)

    def _connect(self, deadline):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self._left(deadline))
        try:
            s.connect(self.path)
        except socket.timeout:
            s.close()
            self.close()
            raise CairnTimeout("connect to %s timed out" % self.path)
        except OSError as e:
            s.close()
            raise _Lost("cannot connect to %s: %s" % (self.path, e.strerror), e.errno, "connect")
        self.sock = s
        if self._opened:
            self.reconnects += 1
        self._opened += 1
        self.server = self._request("hello", {"version": 1, "client": self.client_name}, deadline)

    def _request(self, op, args, deadline):
        rid = self.next_id
        self.next_id += 1
        payload = packb(dict(op=op, id=rid, **(args or {})))
        try:
            self.sock.settimeout(self._left(deadline))
            self.sock.sendall(struct.pack(">I", len(payload)) + payload)
            reply = self._read_reply(deadline)
        except socket.timeout:
            self.close()
            raise CairnTimeout("%s: no answer within %gs" % (op, self.timeout))
        except OSError as e:
            raise _Lost("%s: connection lost: %s" % (op, e.strerror or e), e.errno)
        if not reply.get("ok"):
            code = reply.get("error")
            # Id 0: refused as a connection (overloaded at accept) or a broken frame.
            if code in ("shutting_down", "overloaded") and (reply.get("id") in (0, rid)):
                raise _Lost("cairnd: %s" % reply.get("message"), code=code)
            if reply.get("id") != rid:
                self.close()
                raise CairnProtocolError("reply id %r to request %d" % (reply.get("id"), rid))
            if code == "storage_full":
                raise CairnStorageFull(reply)
            raise (CairnRateLimited if code == "rate_limited" else CairnError)(reply)
        if reply.get("id") != rid:
            self.close()
            raise CairnProtocolError("reply id %r to request %d" % (reply.get("id"), rid))
        return reply

    def _read_reply(self, deadline):
        n = struct.unpack(">I", self._read_exact(4, deadline))[0]
        if n == 0 or n > MAX_REPLY:
            self.close()
            raise CairnProtocolError("reply frame of %d bytes" % n)
        body = self._read_exact(n, deadline)
        try:
            reply = unpackb(body)
        except (ValueError, IndexError, TypeError, struct.error, UnicodeDecodeError) as e:
            self.close()
            raise CairnProtocolError("malformed reply: %s" % e)
        if not isinstance(reply, dict):
            self.close()
            raise CairnProtocolError("reply is not a map")
        return reply

    def _read_exact(self, n, deadline):
        buf = bytearray()
        while len(buf) < n:
            self.sock.settimeout(self._left(deadline))
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise _Lost("cairnd closed the connection")
            buf += chunk
        return bytes(buf)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with Client(timeout=10) as c:
        ack = c.append({"type": argv[0] if argv else "PythonHello",
                        "actor": os.environ.get("USER", "unknown")})
        print(ack["seq"], "durable" if ack["durable"] else "accepted")


if __name__ == "__main__":
    main()
