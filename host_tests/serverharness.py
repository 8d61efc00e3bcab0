"""Start the real POP3 server under micropython for the e2e tests (host_tests/test_server_*.py).

A Pop3Server gets its own temp dir: a store (a directory, filled from CPython with the same
store.py the server runs), a config.json, and a self-signed EC certificate shared by the run
(DER for micropython, PEM for the clients' CA file). Ports are picked by CPython (MicroPython
sockets have no getsockname). stop() always kills the process.
"""

import json
import os
import poplib
import socket
import subprocess
import sys
import time

from helpers import FIRMWARE, MICROPYTHON, ROOT, free_port

sys.path.insert(0, FIRMWARE)
sys.path.insert(0, os.path.join(ROOT, "host_tests", "dual"))  # tools import this harness too
import storeread  # noqa: E402
from feed import reader  # noqa: E402
from pocketpost import config  # noqa: E402
from pocketpost.store import Store  # noqa: E402

_CERT_DIR = []


def cert_dir(base):
    """A self-signed certificate for localhost / 127.0.0.1 (made once per test run)."""
    if _CERT_DIR:
        return _CERT_DIR[0]
    d = os.path.join(base, "tls")
    os.makedirs(d, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", d + "/key.pem", "-out", d + "/cert.pem", "-days", "30",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-in", d + "/cert.pem", "-outform", "DER", "-out", d + "/cert.der"], check=True)
    subprocess.run(["openssl", "pkey", "-in", d + "/key.pem", "-outform", "DER", "-out", d + "/key.der"], check=True)
    _CERT_DIR.append(d)
    return d


# Short delays and timeouts so hostile-input tests stay fast (the config allows any positive value).
TEST_SERVER = {
    "host": "127.0.0.1",
    "pbkdf2_iterations": 200,
    "auth_delays": [0.2, 0.4, 0.8],
    "auth_fail_window": 60,
    "idle_timeout": 2,
    "auth_timeout": 6,
    "tls_handshake_timeout": 3,
    "max_sessions": 6,
    "max_sessions_per_addr": 6,
    # At a full cap a new connection waits this long for a slot, then evicts (listener.py); short:
    # every test that fills a cap waits it out once per eviction. The waiting room's own tests
    # (test_server_slots.py, test_smtp_slots.py, test_server_deadlines.py, dual/test_listener_slots.py)
    # set their own waits.
    "slot_wait": 0.3,
}

USERS = {"alice": "alice pass", "bob": "bobpw", "carol": "carolpw"}


class Pop3Server:
    def __init__(self, base, messages=None, server=None, users=None, apop=None, heapsize=None):
        self.dir = base
        tlsd = cert_dir(os.path.dirname(base))
        self.ca = tlsd + "/cert.pem"
        self.port = free_port()
        self.pop3s_port = free_port()
        while self.pop3s_port == self.port:
            self.pop3s_port = free_port()
        sv = dict(TEST_SERVER)
        sv.update({"port": self.port, "pop3s_port": self.pop3s_port, "cert": tlsd + "/cert.der", "key": tlsd + "/key.der"})
        sv.update(server or {})
        self.pop3s_on = bool(sv["cert"] and sv["pop3s_port"])
        root = os.path.join(base, "mail")
        cfg = {"store": {"root": root, "quota": 0, "reserve": 0}, "server": sv, "log": {"level": "debug"}}
        for name, pw in (users or USERS).items():
            config.add_user(cfg, name, pw, 200, apop_secret=(apop or {}).get(name))
        config.check(cfg)
        self.config_path = os.path.join(base, "config.json")
        self.write_config(cfg)
        self.store_root = root
        st = Store(root, quota=0, reserve=0)
        self.uids = {}
        for box, msgs in (messages or {}).items():
            st.create(box)
            self.uids[box] = [st.deliver_stream(box, reader(m)) for m in msgs]
        self.heapsize = heapsize
        self.proc = None
        self.logf = None

    def read_config(self):
        """The config the server starts with, as a dict (change it, then write_config)."""
        with open(self.config_path) as f:
            return json.load(f)

    def write_config(self, cfg):
        with open(self.config_path, "w") as f:
            json.dump(cfg, f)

    def start(self, args=None, micropypath=None, cpython=False, cwd=ROOT):
        env = dict(os.environ)
        env["MICROPYPATH"] = (micropypath or FIRMWARE) + ":.frozen"
        cmd = [MICROPYTHON]
        if cpython:  # the same firmware under CPython 3.11
            env["PYTHONPATH"] = FIRMWARE
            cmd = [sys.executable]
        elif self.heapsize:
            cmd += ["-X", "heapsize=%s" % self.heapsize]
        cmd += args or ["-m", "pocketpost.server", self.config_path]
        self.log_path = os.path.join(self.dir, "server.log")
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: %s" % self.log())
            try:
                if self.pop3s_on:
                    socket.create_connection(("127.0.0.1", self.pop3s_port), 0.5).close()
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start: %s" % self.log())

    def probes_done(self, limit=10):
        """Wait until start()'s probes (POP3S, then POP3) have left the server, and return the
        log's length then. Each is a session that disconnects or, with one session per address,
        a connection that came before the server saw the other close, waited for the slot and is
        gone (it never became a session: no disconnect line; seen under -n 2)."""
        deadline = time.time() + limit
        while True:
            log = self.log()
            if log.count(" disconnect ") + log.count(" gone while waiting") >= 1 + self.pop3s_on:
                return len(log)
            if time.time() > deadline:
                raise AssertionError("the start-up probes did not end: " + log[-3000:])
            time.sleep(0.02)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def mailbox(self, box):
        """[(uid, bytes)] as stored, read from CPython (the server must be stopped or idle)."""
        from pocketpost import store as store_mod

        store_mod.reboot()  # forget RAM state: the server process changed the flash
        return storeread.entries(Store(self.store_root, quota=0, reserve=0), box)


def msg(i, body_lines=3, extra=b""):
    """A distinct test message with CRLF line ends, a dot-leading line and some extra bytes."""
    head = b"From: sender%d@example.org\r\nTo: alice@example.org\r\nSubject: message %d\r\nMessage-ID: <m%d@test>\r\n\r\n" % (i, i, i)
    body = b"".join(b"line %d of message %d\r\n" % (k, i) for k in range(body_lines))
    return head + body + b".dot line\r\n" + extra


def user_reads_all(port, count, user="alice", password="alice pass"):
    """poplib from 127.0.0.1 exactly (attackers hold the other loopback addresses): log in, RETR
    messages 1..count, QUIT. Returns (the messages, each CRLF-terminated; the seconds it took)."""

    class POP3From(poplib.POP3):
        def _create_socket(self, timeout):
            return socket.create_connection((self.host, self.port), timeout, ("127.0.0.1", 0))

    t0 = time.perf_counter()
    p = POP3From("127.0.0.1", port, timeout=10)
    p.user(user)
    p.pass_(password)
    got = [b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n" for i in range(count)]
    p.quit()
    return got, time.perf_counter() - t0


class Raw:
    """A raw line-oriented client socket for hostile-input tests."""

    def __init__(self, port, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def block(self):
        """The lines of a multi-line block, un-stuffed, without the terminator."""
        out = []
        while True:
            ln = self.line()
            if ln == b".":
                return out
            out.append(ln[1:] if ln.startswith(b".") else ln)

    def cmd(self, c):
        self.send(c + b"\r\n")
        return self.line()

    def eof(self, timeout=10):
        """True if the server closes the connection (within timeout), after any pending bytes."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, ConnectionResetError):
            return False

    def close(self):
        self.s.close()
