"""The installed cairn_client against a real cairnd: appends, refusals, query paging,
reconnect across a restart without loss or duplicates, and timeouts.

Each test starts the freshly built cairnd (CAIRND) in a temp dir with NOTIFY_SOCKET
pointing at a datagram socket here, and waits for READY=1 with a deadline. What the
tests conclude about storage they read back through a new connection's query.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import cairn_client
from cairn_client import CairnConnectionError, CairnError, CairnStorageFull, CairnTimeout, Client

CAIRND = os.environ["CAIRND"]


class Daemon:
    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "cairn.sock")
        self.db = os.path.join(tmp, "cairn.db")
        self.proc = None

    def start(self, *extra):
        notify_path = os.path.join(self.tmp, "notify-%d" % time.monotonic_ns())
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        log = open(os.path.join(self.tmp, "cairnd.log"), "ab")
        self.proc = subprocess.Popen([CAIRND, "--no-config", "--socket", self.sock, "--db", self.db,
                                      "--seal-interval", "0"] + list(extra),
                                     env=env, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                notify.settimeout(0.2)
                try:
                    msg = notify.recv(4096).decode()
                except socket.timeout:
                    if self.proc.poll() is not None:
                        raise AssertionError("cairnd exited with %d before READY=1" % self.proc.returncode)
                    continue
                if "READY=1" in msg:
                    return
            raise AssertionError("cairnd not ready within 30 s")
        finally:
            notify.close()
            os.unlink(notify_path)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc


class ClientTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cairn-pytest-")
        self.d = Daemon(self.tmp)
        self.d.start()

    def tearDown(self):
        if self.d.proc is not None and self.d.proc.poll() is None:
            self.d.proc.kill()
            self.d.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_the_installed_package_is_tested(self):
        venv = os.environ.get("CAIRN_VENV")
        self.assertTrue(venv, "run through run_tests.py")
        self.assertTrue(os.path.realpath(cairn_client.__file__).startswith(os.path.realpath(venv)),
                        cairn_client.__file__)

    def test_append_is_acked_durable_and_queried_back(self):
        with Client(self.d.sock, timeout=10) as c:
            ack = c.append({"type": "UserLogin", "actor": "alice", "outcome": "success",
                            "fields": {"ip": "10.0.0.5", "tries": 2}})
            self.assertTrue(ack["durable"])
            self.assertFalse(ack["duplicate"])
        with Client(self.d.sock, timeout=10) as c:
            page = c.query(type="UserLogin")
            self.assertEqual([e["seq"] for e in page["events"]], [ack["seq"]])
            ev = page["events"][0]["event"]
            self.assertEqual(ev["actor"], "alice")
            self.assertEqual(ev["fields"], {"ip": "10.0.0.5", "tries": 2})

    def test_a_refusal_names_the_field_and_the_connection_goes_on(self):
        with Client(self.d.sock, timeout=10) as c:
            with self.assertRaises(CairnError) as cm:
                c.append({"type": "bad type!"})
            self.assertEqual(cm.exception.code, "invalid_field")
            self.assertEqual(cm.exception.field, "type")
            self.assertEqual(c.reconnects, 0)
            c.ping()

    def test_paging_returns_every_event_once_newest_first(self):
        with Client(self.d.sock, timeout=30) as c:
            seqs = [c.append({"type": "Paged", "actor": "p%d" % i})["seq"] for i in range(250)]
            c.append({"type": "Other"})
            got = [e["seq"] for e in c.events(type="Paged", page_size=40)]
        self.assertEqual(got, sorted(seqs, reverse=True))

    def test_append_survives_a_restart_without_loss_or_duplicates(self):
        with Client(self.d.sock, timeout=60, reconnect_timeout=30) as c:
            first = c.append({"type": "Before", "idem": b"restart-idem-0001"})
            self.d.stop()
            # The daemon comes back while append is already retrying.
            t = threading.Thread(target=self.d.start)
            t.start()
            try:
                again = c.append({"type": "Before", "idem": b"restart-idem-0001"})
                after = c.append({"type": "After"})
            finally:
                t.join()
            self.assertGreaterEqual(c.reconnects, 1)
        self.assertTrue(again["duplicate"], again)
        self.assertEqual(again["seq"], first["seq"])
        self.assertGreater(after["seq"], first["seq"])
        with Client(self.d.sock, timeout=10) as c:
            types = [e["event"]["type"] for e in c.events() if not e["event"]["type"].startswith("cairn.")]
        self.assertEqual(sorted(types), ["After", "Before"])

    def test_subscribe_pushes_matching_events_once_in_order_across_a_restart(self):
        with Client(self.d.sock, timeout=60, reconnect_timeout=30) as c:
            start = c.append({"type": "Old"})["seq"]
            sub = c.subscribe(after=start, type="Sub")
            try:
                acked = [c.append({"type": "Sub", "actor": "a0"})["seq"]]
                got = [next(sub)["seq"]]
                # Pushed: the subscription is running; these go in after it started.
                c.append({"type": "Other"})
                acked.append(c.append({"type": "Sub", "actor": "a1"})["seq"])
                got.append(next(sub)["seq"])
                c.ping()   # the Client itself stays usable: the subscription has its own connection
                self.d.stop()
                self.d.start()
                acked.append(c.append({"type": "Sub", "actor": "a2"})["seq"])
                ev = next(sub)
                got.append(ev["seq"])
                self.assertEqual(ev["event"]["actor"], "a2")
            finally:
                sub.close()
        self.assertEqual(got, acked)

    def test_subscribe_with_a_bad_argument_raises_the_named_error(self):
        with Client(self.d.sock, timeout=10) as c:
            with self.assertRaises(CairnError) as cm:
                next(c.subscribe(order="newest"))
            self.assertEqual(cm.exception.code, "invalid_field")
            self.assertEqual(cm.exception.field, "order")

    def test_without_reconnect_a_lost_daemon_is_an_error_at_once(self):
        c = Client(self.d.sock, timeout=10, reconnect_timeout=0)
        self.d.stop()
        with self.assertRaises(CairnConnectionError) as cm:
            c.append({"type": "Lost"})
        self.assertIn(cm.exception.code, ("io", "connect"))
        c.close()
        with self.assertRaises(CairnConnectionError) as cm:
            Client(self.d.sock, reconnect_timeout=0)
        self.assertEqual(cm.exception.code, "connect")

    def test_timeout_bounds_a_daemon_that_never_answers(self):
        # A listener that accepts and never replies: hello cannot complete.
        path = os.path.join(self.tmp, "mute.sock")
        mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mute.bind(path)
        mute.listen(4)
        try:
            with self.assertRaises(CairnTimeout):
                Client(path, timeout=0.3, reconnect_timeout=0)
            with self.assertRaises(TimeoutError):  # also a builtin TimeoutError
                Client(path, timeout=0.3, reconnect_timeout=0)
        finally:
            mute.close()

    def test_stats_and_verify(self):
        with Client(self.d.sock, timeout=30) as c:
            c.append({"type": "S"})
            st = c.stats()
            self.assertGreaterEqual(st["events_committed"], 1)
            rep = c.verify()
            self.assertTrue(rep["valid"], rep)

    def test_storage_full_is_raised_by_name_and_nothing_is_stored(self):
        # A reserve larger than any filesystem: cairnd is below it from the start (the
        # real small-filesystem test is tests/diskfull).
        self.d.stop()
        self.d.start("--disk-reserve", "1024T")
        with Client(self.d.sock, timeout=10) as c:
            with self.assertRaises(CairnStorageFull) as cm:
                c.append({"type": "DiskFull", "idem": "py-disk-full-1"})
            self.assertEqual(cm.exception.code, "storage_full")
            self.assertIn("bytes free", cm.exception.message)
            self.assertEqual(c.reconnects, 0)
            st = c.stats()
            self.assertTrue(st["storage_full"])
            self.assertEqual(st["disk_reserve_bytes"], 1 << 50)
            self.assertGreaterEqual(st["storage_full_refusals"], 1)
            self.assertEqual(c.query(type="DiskFull")["events"], [])



if __name__ == "__main__":
    unittest.main()
