"""A host name whose first address answers nothing (::1 first, as "localhost" resolves on many
hosts) while the server listens on 127.0.0.1 only: the POP3 client's connect
(clientauth._open: MicroPython's own non-blocking connect; CPython's asyncio tries every address
itself) and the OAuth token POST (oauth2.http_post, blocking, both runtimes) try each address in
turn, and when every one fails, the error names host:port and the last failure in words.

This machine's /etc/hosts maps no name to ::1 before 127.0.0.1, so the name's addresses come
through a seam in the test script, not in the firmware: `socket.getaddrinfo` answers for
NAME the real getaddrinfo of "::1" and then of "127.0.0.1" (MicroPython: a stand-in socket
module in sys.modules, which the firmware's function-level `import socket` finds; CPython: the
module's attribute, which asyncio's resolver calls too). Loopback only; each script runs under
micropython and under CPython, in a subprocess.
"""

import errno
import os
import socket
import subprocess
import sys
import threading

import pytest

from helpers import FIRMWARE, free_port, run_micropython

NAME = "pp-v6first.invalid"
WAIT_S = 10  # bounded waits of the test's server thread
ACCEPT_POLL_S = 0.1  # the server thread looks for close() this often

# What the scripts below share: under MicroPython, where a built-in module takes no new attributes,
# a stand-in copy of the socket module with some parts replaced is installed as "socket"; and the
# client's connect, reporting how it went.
PRELUDE = r"""
def stand_in(real, **over):
    class Socket:
        pass

    fake = Socket()
    for k in dir(real):
        if not k.startswith("__"):
            setattr(fake, k, getattr(real, k))
    for k in over:
        setattr(fake, k, over[k])
    sys.modules["socket"] = fake


def pop3_connect(name, port):
    from pocketpost.client import ConnectionLost, Pop3Client
    from pocketpost.clientauth import connect

    c = Pop3Client(name, port, connect_timeout=5, read_timeout=5)
    try:
        asyncio.run(connect(c))
        print("CONNECTED caps=%r" % (c.caps,))
        c._conn.close()
    except ConnectionLost as e:
        print("ERROR", e.args[0])
"""

SCRIPT = r"""
import sys
import asyncio
%s

NAME = %r
mode, port = sys.argv[1], int(sys.argv[2])


def install():
    import socket as real

    orig = real.getaddrinfo

    def gai(host, port, *a):
        if host != NAME:
            return orig(host, port, *a)
        out = []
        for h in ("::1", "127.0.0.1"):  # ::1 first: nothing listens there
            try:
                out += orig(h, port, *a)
            except OSError:  # a host without IPv6 at all: the name's first address is missing
                pass
        return out

    if sys.implementation.name == "micropython":
        stand_in(real, getaddrinfo=gai)
    else:
        real.getaddrinfo = gai


install()
if mode == "pop3":
    pop3_connect(NAME, port)
else:
    from pocketpost import oauth2

    try:
        st = oauth2.http_post("http://%%s:%%d/token" %% (NAME, port), b"grant_type=x", {"allow_plaintext": True}, 5)
        print("STATUS", st[0])
    except oauth2.OAuthError as e:
        print("ERROR", e.msg)
"""


def _run(runtime, tmp_path, mode, port):
    script = tmp_path / "connect_addrs.py"
    script.write_text(SCRIPT % (PRELUDE, NAME))
    if runtime == "micropython":
        r = run_micropython([str(script), mode, str(port)], timeout=60)
    else:
        env = dict(os.environ, PYTHONPATH=FIRMWARE)
        r = subprocess.run([sys.executable, str(script), mode, str(port)], capture_output=True, timeout=60, env=env)
    out = r.stdout.decode(errors="replace").strip()
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    return out


class _Server:
    """One TCP server on 127.0.0.1 only: POP3 (greeting, -ERR to CAPA) or HTTP (200), accepting
    until close(), each connection served by a thread of its own. `served`: the sessions that came
    through whole. Not one accept only: another test's probe of a port free_port() gave it before
    (serverharness.py's and dovecot.py's connect-and-close while their server starts), ours now on
    a busy machine, was that one session, and the script's connection waited in the backlog for a
    greeting that never came (its read timeout). The port is held on ::1 too, bound and not
    listening, so nothing can listen there while the test runs: the first address stays one that
    answers nothing (refused)."""

    def __init__(self, kind):
        self.kind = kind
        self.served = 0
        self.count = threading.Lock()
        self.sessions = []
        self.stop = threading.Event()
        for _ in range(10):  # (a port free on 127.0.0.1 but taken on ::1: another)
            self.port = free_port()
            self.v6 = _held_on_v6(self.port)
            if self.v6 is not False:
                break
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", self.port))
        self.ls.listen(4)
        self.ls.settimeout(ACCEPT_POLL_S)
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._session, args=(c,), daemon=True)
            t.start()
            self.sessions.append(t)

    def _session(self, c):
        with c:
            c.settimeout(WAIT_S)
            try:
                if self._exchange(c):
                    with self.count:
                        self.served += 1
            except OSError:
                pass

    def _exchange(self, c):
        """The server's side of one session: True when it came through whole."""
        if self.kind == "pop3":
            c.sendall(b"+OK ready\r\n")
            if not _read_until(c, b"\n"):
                return False
            c.sendall(b"-ERR no CAPA here\r\n")
            while c.recv(100):  # until the client closes
                pass
            return True
        if not _read_until(c, b"grant_type=x"):
            return False
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        return True

    def close(self):
        self.stop.set()
        self.t.join(WAIT_S)
        for t in self.sessions:
            t.join(WAIT_S)
        self.ls.close()
        if self.v6:
            self.v6.close()


def _held_on_v6(port):
    """A socket bound to [::1]:port, not listening (a connect there is refused): None on a host
    without IPv6 (no address of the name there either), False when the port is taken on ::1."""
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        s.bind(("::1", port))
    except OSError as e:
        s.close()
        return False if e.errno == errno.EADDRINUSE else None
    return s


def _read_until(c, marker):
    """Read from socket c until `marker` has come: False if the peer closed first."""
    got = b""
    while marker not in got:
        d = c.recv(1000)
        if not d:
            return False
        got += d
    return True


RUNTIMES = ["micropython", "cpython"]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("kind", ["pop3", "http"])
def test_the_next_address_is_tried_when_the_first_answers_nothing(tmp_path, runtime, kind):
    srv = _Server(kind)
    try:
        out = _run(runtime, tmp_path, kind, srv.port)
    finally:
        srv.close()
    assert out == ("CONNECTED caps=None" if kind == "pop3" else "STATUS 200"), out
    assert srv.served == 1


def test_the_test_server_outlives_a_probe_of_its_port_and_keeps_v6_unanswered(tmp_path):
    """The server above, after another test's connect-and-close on its port (a port free_port()
    gave that test before: what failed the pop3-cpython case once in a full suite, with its read
    timeout waiting for the greeting): the script still connects and is served. While it runs,
    nothing else can listen on [::1]:port."""
    srv = _Server("pop3")
    try:
        socket.create_connection(("127.0.0.1", srv.port), WAIT_S).close()
        if socket.has_ipv6:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as other:
                with pytest.raises(OSError) as e:
                    other.bind(("::1", srv.port))
                assert e.value.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL), e.value
        out = _run("cpython", tmp_path, "pop3", srv.port)
    finally:
        srv.close()
    assert out == "CONNECTED caps=None", out
    assert srv.served == 1


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("kind", ["pop3", "http"])
def test_every_address_refused_names_host_port_and_the_error(tmp_path, runtime, kind):
    port = free_port()  # nothing listens, on either address
    out = _run(runtime, tmp_path, kind, port)
    assert out.startswith("ERROR") and "%s:%d" % (NAME, port) in out, out
    if runtime == "cpython" and kind == "pop3":  # asyncio's own error: every address's, by errno
        assert "Multiple exceptions: [Errno 111]" in out, out
    else:
        assert "refused" in out, out


NOMEM_SCRIPT = r"""
import sys
import asyncio
import socket as real
%s

port = int(sys.argv[1])


def nomem(*a):
    raise MemoryError("socket")  # what a board short of heap gives


stand_in(real, socket=nomem)
from pocketpost.client import Pop3Client
from pocketpost.clientauth import connect

c = Pop3Client("127.0.0.1", port, connect_timeout=5, read_timeout=5)
try:
    asyncio.run(connect(c))
    print("CONNECTED")
except MemoryError:
    print("MemoryError")
except Exception as e:
    print("OTHER", repr(e))
"""


def test_no_heap_for_the_socket_stays_a_memory_error(tmp_path):
    """MicroPython's connect (clientauth._open): socket() itself raising MemoryError comes out as
    that MemoryError (board.py restarts on it), not as an AttributeError of closing no socket."""
    script = tmp_path / "connect_nomem.py"
    script.write_text(NOMEM_SCRIPT % PRELUDE)
    r = run_micropython([str(script), str(free_port())], timeout=60)
    out = r.stdout.decode(errors="replace").strip()
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert out == "MemoryError", out


UNREACH_SCRIPT = r"""
import sys
import asyncio
%s

NAME = %r
kind, mode, numbering, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
MP = sys.implementation.name == "micropython"
if numbering == "newlib":  # ESP-IDF's errno numbering (newlib's sys/errno.h), as on a board
    class Newlib:  # a stand-in module (MicroPython's errno has no ENETUNREACH on any port)
        EAGAIN = 11
        ECONNABORTED = 113
        ECONNREFUSED = 111
        ECONNRESET = 104
        EHOSTUNREACH = 118
        EINPROGRESS = 119
        ENOTCONN = 128
        ETIMEDOUT = 116
    sys.modules["errno"] = Newlib
# (not `errno.X`: MicroPython's compiler folds that to its own number at compile time)
E = __import__("errno")
CODE = {"net": 114 if numbering == "newlib" else 101, "host": E.EHOSTUNREACH}[kind]  # 101: this Linux host's
import socket as real

UNREACH = 1 if mode == "first" else 2  # attempts whose connect fails after it started (both: every address)
tries = [0]
orig = real.getaddrinfo


def gai(host, p, *a):
    return orig(host, p, *a) if host != NAME else orig("127.0.0.1", p, *a) * 2  # two addresses


if MP:
    import io

    class Unreach(io.IOBase):
        # a socket whose non-blocking connect starts (EINPROGRESS), is writable at once, and whose
        # second connect() then says how it failed: what lwIP / Linux give when no route is found
        calls = 0

        def setblocking(self, flag):
            pass

        def connect(self, addr):
            self.calls += 1
            raise OSError(E.EINPROGRESS if self.calls == 1 else CODE)

        def ioctl(self, req, arg):
            return arg & 4 if req == 3 else 0  # MP_STREAM_POLL: writable (POLLOUT)

        def close(self):
            pass

    def sock(*a):
        tries[0] += 1
        return Unreach() if tries[0] <= UNREACH else real.socket(*a)

    stand_in(real, getaddrinfo=gai, socket=sock)
else:
    Base = real.socket

    class Sock(Base):
        # asyncio's connect: connect() raises BlockingIOError, then SO_ERROR says how it ended
        def connect(self, addr):
            if addr[1] == port and tries[0] < UNREACH:
                tries[0] += 1
                self.unreach = True
                raise BlockingIOError(E.EINPROGRESS, "in progress")
            return Base.connect(self, addr)

        def getsockopt(self, *a):
            if getattr(self, "unreach", False) and a == (real.SOL_SOCKET, real.SO_ERROR):
                return CODE
            return Base.getsockopt(self, *a)

    real.getaddrinfo = gai
    real.socket = Sock

pop3_connect(NAME, port)
"""

UNREACH_WORDS = {"net": "network unreachable", "host": "host unreachable"}


def _run_unreach(runtime, tmp_path, kind, mode, numbering, port):
    script = tmp_path / "connect_unreach.py"
    script.write_text(UNREACH_SCRIPT % (PRELUDE, NAME))
    args = [str(script), kind, mode, numbering, str(port)]
    if runtime == "micropython":
        r = run_micropython(args, timeout=60)
    else:
        env = dict(os.environ, PYTHONPATH=FIRMWARE)
        r = subprocess.run([sys.executable] + args, capture_output=True, timeout=60, env=env)
    out = r.stdout.decode(errors="replace").strip()
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    return out


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("kind", ["net", "host"])
def test_an_address_unreachable_after_the_connect_started_is_passed_over(tmp_path, runtime, kind):
    """ENETUNREACH / EHOSTUNREACH from the connect's outcome (the second connect() on MicroPython,
    SO_ERROR in CPython's asyncio), not from connect() itself: the next address is tried."""
    srv = _Server("pop3")
    try:
        out = _run_unreach(runtime, tmp_path, kind, "first", "own", srv.port)
    finally:
        srv.close()
    assert out == "CONNECTED caps=None", out
    assert srv.served == 1


@pytest.mark.parametrize("runtime,numbering", [("micropython", "own"), ("micropython", "newlib"), ("cpython", "own")])
@pytest.mark.parametrize("kind", ["net", "host"])
def test_every_address_unreachable_names_host_port_and_says_so(tmp_path, runtime, numbering, kind):
    """Every address unreachable: the error names host:port and says "network unreachable" (or
    "host unreachable") in words, in this host's errno numbering and in ESP-IDF's (newlib's:
    ENETUNREACH 114, EHOSTUNREACH 118; MicroPython's errno module has no ENETUNREACH name)."""
    port = free_port()
    out = _run_unreach(runtime, tmp_path, kind, "every", numbering, port)
    assert out.startswith("ERROR") and "%s:%d" % (NAME, port) in out, out
    assert UNREACH_WORDS[kind] in out, out
