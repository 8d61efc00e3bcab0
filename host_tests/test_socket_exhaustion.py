"""The server out of sockets, with a real limit: the POP3 server runs under micropython (and under
CPython, whose listener is asyncio.start_server), its RLIMIT_NOFILE lowered (prlimit on the running
process) to the descriptors it holds with a few sessions open, so that the next accept() fails with
EMFILE, as an ESP32's fails with ENFILE at lwIP's CONFIG_LWIP_MAX_SOCKETS (boards/*/BUDGET.md,
"Sockets"). The server must live on, answer the sessions it holds, say so in one log line for
the run of failed accepts (not a line per 100 ms poll; MicroPython: listener._accept) and take the
waiting connection once sessions end. And the fetch's connect without
a socket free says so, naming the account."""

import os
import resource
import socket
import subprocess
import sys
import time

import pytest

from helpers import FIRMWARE, run_micropython
from serverharness import USERS, Pop3Server

_LINE = "a connection dropped at its accept"


def _greet(port, timeout):
    """A connection to port and its greeting line (b"" if none came within timeout)."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    s.settimeout(timeout)
    try:
        line = s.recv(1, socket.MSG_PEEK)  # (a timed-out makefile() cannot be read again)
    except socket.timeout:
        return s, None, b""
    s.settimeout(5)
    f = s.makefile("rb")
    return s, f, f.readline()


def _limit(pid):
    """No descriptor above the ones open now: RLIMIT_NOFILE is one past the highest number open
    (a lower free number, a hole, is still taken first: the caller fills those)."""
    top = max(int(n) for n in os.listdir("/proc/%d/fd" % pid))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (top + 1, top + 1))


def _login(port, user, pw):
    s, f, line = _greet(port, 5)
    assert line.startswith(b"+OK"), line
    for cmd in (b"USER " + user.encode(), b"PASS " + pw.encode()):
        s.sendall(cmd + b"\r\n")
        assert f.readline().startswith(b"+OK")
    return s, f


def _noop(s, f):
    s.sendall(b"NOOP\r\n")
    return f.readline()


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_server_survives_running_out_of_sockets(tmp_path, runtime):
    """Logged-in sessions (their session code loaded: on the unix port a module import needs a
    descriptor too, on a board it does not) are held; then no descriptor is left."""
    srv = Pop3Server(str(tmp_path), server={"max_sessions": 20, "max_sessions_per_addr": 20, "idle_timeout": 60})
    srv.start(cpython=runtime == "cpython")
    held = []
    fill = []
    waiting = None
    try:
        for user, pw in sorted(USERS.items()):
            held.append(_login(srv.port, user, pw))
            assert _noop(*held[-1]).startswith(b"+OK")
        _limit(srv.proc.pid)
        # Connections until one is not greeted: the ones before it filled the descriptor numbers
        # below the limit that were free (holes), that one waits in the kernel's backlog (EMFILE).
        for _ in range(8):
            s, f, line = _greet(srv.port, 1.5)
            if not line:
                waiting = (s, f)
                break
            assert line.startswith(b"+OK"), line
            fill.append((s, f))
        assert waiting is not None, "every connection was accepted: no limit reached\n" + srv.log()
        time.sleep(1.5)  # ~15 failed accepts on MicroPython (one each _ACCEPT_RETRY_MS), ~2 on CPython
        assert srv.proc.poll() is None, srv.log()
        for s, f in held:  # the open sessions go on
            assert _noop(s, f).startswith(b"+OK"), srv.log()
        log = srv.log()
        if runtime == "micropython":  # (CPython's accept loop is asyncio's: it logs on its own)
            assert log.count(_LINE) == 1, log  # one line for the run, not one per failed accept
            assert "OSError(24" in [ln for ln in log.splitlines() if _LINE in ln][0], log  # EMFILE
        for s, f in fill + held[:2]:  # connections end: descriptors come free
            f.close()  # (the socket closes with its last file)
            s.close()
        fill = []
        held = held[2:]
        waiting[0].settimeout(5)  # CPython retries after 1 s (asyncio's ACCEPT_RETRY_DELAY)
        assert waiting[0].makefile("rb").readline().startswith(b"+OK"), srv.log()  # the waiting connection is taken
        s, f, line = _greet(srv.port, 5)  # and a new one
        fill.append((s, f))
        assert line.startswith(b"+OK"), srv.log()
        for s, f in held:
            assert _noop(s, f).startswith(b"+OK"), srv.log()
        assert srv.proc.poll() is None, srv.log()
    finally:
        for s, f in held + fill + ([waiting] if waiting else []):
            if f is not None:
                f.close()
            s.close()
        srv.stop()


# The fetch's connect with every descriptor in use (filled up to the process's real limit): the
# error names the account and what ran out. The error path's modules are loaded first (on the unix
# port an import needs a descriptor; on a board it needs no socket), and under CPython the event
# loop is made before the filling (its selector and self-pipe are descriptors).
_FETCH = r"""
import sys
import asyncio
from pocketpost.client import ConnectionLost, Pop3Client
from pocketpost.clientauth import connect
from pocketpost import clientfail, tls, tlserror  # noqa: F401

held = []


async def main(port):
    try:
        while True:
            held.append(open("/dev/null"))
    except OSError:
        pass
    c = Pop3Client("127.0.0.1", port, connect_timeout=5, read_timeout=5, account="home")
    try:
        await connect(c)
        print("CONNECTED")
    except ConnectionLost as e:
        print("ERROR", e.args[0])
    for f in held:
        f.close()


asyncio.run(main(int(sys.argv[1])))
"""


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_fetch_out_of_sockets_names_the_account_and_what_ran_out(tmp_path, runtime):
    script = tmp_path / "fetch.py"
    script.write_text(_FETCH)
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    port = lst.getsockname()[1]

    def lim():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    try:
        if runtime == "micropython":
            r = run_micropython([str(script), str(port)], timeout=60, preexec_fn=lim)
        else:
            env = dict(os.environ, PYTHONPATH=FIRMWARE)
            r = subprocess.run([sys.executable, str(script), str(port)], capture_output=True, timeout=60, env=env,
                               preexec_fn=lim)
    finally:
        lst.close()
    out = r.stdout.decode() + r.stderr.decode()
    assert "ERROR home 127.0.0.1:%d: connect: no socket free to connect to 127.0.0.1:%d" % (port, port) in out, out
    assert "24" in out.split("no socket free")[1], out  # EMFILE, as the runtime says it


def test_out_of_heap_is_not_called_out_of_sockets():
    """MicroPython's mbedTLS raises OSError(ENOMEM) for a handshake out of heap, and lwIP ENOBUFS for
    a connection without memory: neither is "every socket here is in use" (only ENFILE / EMFILE are)."""
    from pocketpost import tlserror

    for code in (12, 105):
        assert "no socket free" not in tlserror.describe(OSError(code), "pop.example", 995), code
    for code in (23, 24):
        assert "no socket free to connect to pop.example:995" in tlserror.describe(OSError(code), "pop.example", 995)
