"""The POP3 client against scripted misbehaving servers: each misbehaviour gives a clear exception,
a bounded wait, and a consistent store + UIDL state (nothing stored, nothing recorded).

Every scenario runs twice through the `fetch` fixture: "cpython" calls client.fetch_account_sync
in-process (the _CpyConn transport), "micropython" runs it under the real micropython binary
(host_tests/clientdriver.py: the _UpyConn transport, the board's timeout and TLS code) and
re-raises its error as the same client class, so one body holds the expectation for both.
The scripted servers are CPython threads on loopback (bounded loops, closed sockets)."""

import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

import clientdriver
from helpers import FIRMWARE, MICROPYTHON, free_port
from serverharness import cert_dir
from uidtool import entries as state_entries

from pocketpost import client, store as storemod, uidstate
from pocketpost.pop3 import ProtocolError
from pocketpost.store import Store

GOOD = b"Subject: hi\r\n\r\nbody\r\n"
RUNTIMES = ["cpython", "micropython"]
CONNECT_TIMEOUT = 2  # seconds, every account here
READ_TIMEOUT = 1
MARGIN = 1.5  # seconds on top of a timeout: scheduling, and micropython's start (~0.1 s)


class _Rec:
    """The script's view of the client's bytes: readline() records every line into `seen`."""

    def __init__(self, f, seen):
        self.f = f
        self.seen = seen

    def readline(self):
        line = self.f.readline()
        if line:
            self.seen.append(line.strip())
        return line


class Script(threading.Thread):
    """Serves `script(conn, rfile)` to each connection (up to `conns`) on a free loopback port.
    With `tls` (a server SSLContext) the connection is POP3S: wrapped before the script runs.
    When a script returns, the server hangs up (shutdown for writing) and reads the rest of what
    the client sends until it closes (5 s at most), so `lines` holds every command the client
    sent, e.g. whether it said QUIT."""

    def __init__(self, script, conns=1, tls=None):
        super().__init__(daemon=True)
        self.script = script
        self.tls = tls
        self.lines = []
        self.port = free_port()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(4)
        self.srv.settimeout(20)
        self.conns = conns
        self.start()

    def run(self):
        try:
            for _ in range(self.conns):
                c, _ = self.srv.accept()
                c.settimeout(20)
                try:
                    if self.tls is not None:
                        c = self.tls.wrap_socket(c, server_side=True)
                    rf = _Rec(c.makefile("rb"), self.lines)
                    self.script(c, rf)
                    c.shutdown(socket.SHUT_WR)  # the server hangs up; the client may still talk
                    c.settimeout(5)
                    while rf.readline():
                        pass
                except (OSError, ValueError):
                    pass
                finally:
                    c.close()
        except OSError:
            pass
        finally:
            self.srv.close()

    def saw(self, cmd):
        """Whether the client sent `cmd` (waits for the script and the client's hang-up)."""
        self.join(25)
        assert not self.is_alive(), "scripted server still running"
        return any(l.upper().startswith(cmd.encode()) for l in self.lines)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory):
    d = cert_dir(str(tmp_path_factory.mktemp("hostile-tls")))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d + "/cert.pem", d + "/key.pem")
    return ctx


def expect(rf, cmd):
    line = rf.readline()
    if not line:
        raise OSError("client hung up")  # the client gave up, as the test expects
    assert line.upper().startswith(cmd.encode()), line


def login(c, rf, capa=b"+OK\r\nUSER\r\nUIDL\r\n.\r\n"):
    c.sendall(b"+OK hello\r\n")
    expect(rf, "CAPA")
    c.sendall(capa)
    expect(rf, "USER")
    c.sendall(b"+OK\r\n")
    expect(rf, "PASS")
    c.sendall(b"+OK\r\n")


def serve_mailbox(c, rf, uidl=b"1 u1\r\n", listing=b"1 21\r\n", retr=None):
    login(c, rf)
    expect(rf, "STAT")
    c.sendall(b"+OK 1 21\r\n")
    expect(rf, "UIDL")
    c.sendall(b"+OK\r\n" + uidl + b".\r\n")
    expect(rf, "LIST")
    c.sendall(b"+OK\r\n" + listing + b".\r\n")
    expect(rf, "RETR")
    c.sendall(retr if retr is not None else b"+OK\r\n" + GOOD + b".\r\n")
    expect(rf, "QUIT")
    c.sendall(b"+OK bye\r\n")


def mailbox(msgs, seen=None, dele_reply=b"+OK\r\n"):
    """A scripted server for `msgs`, a list of (uid or None for no UIDL, body): answers STAT, UIDL,
    LIST, RETR, TOP, DELE and QUIT in any order; each command line goes to `seen` (a list)."""

    def script(c, rf):
        login(c, rf)
        while True:
            line = rf.readline()
            if not line:
                return
            if seen is not None:
                seen.append(line.strip())
            w = line.strip().split(b" ")
            k = w[0].upper()
            if k == b"STAT":
                c.sendall(b"+OK %d %d\r\n" % (len(msgs), sum(len(b) for _, b in msgs)))
            elif k == b"UIDL":
                if msgs and msgs[0][0] is None:
                    c.sendall(b"-ERR no UIDL here\r\n")
                else:
                    c.sendall(b"+OK\r\n" + b"".join(b"%d %s\r\n" % (i + 1, u) for i, (u, _) in enumerate(msgs)) + b".\r\n")
            elif k == b"LIST":
                c.sendall(b"+OK\r\n" + b"".join(b"%d %d\r\n" % (i + 1, len(b)) for i, (_, b) in enumerate(msgs)) + b".\r\n")
            elif k in (b"RETR", b"TOP"):
                c.sendall(b"+OK\r\n" + msgs[int(w[1]) - 1][1] + b".\r\n")
            elif k == b"DELE":
                c.sendall(dele_reply)
            elif k == b"QUIT":
                c.sendall(b"+OK\r\n")
                return
            else:
                c.sendall(b"-ERR unknown\r\n")

    return script


class Crash(BaseException):
    """Stands for a power cut at a crash point: no cleanup code of the client runs for it."""


def account(tmp_path, port, **kw):
    acct = {"name": "h", "host": "127.0.0.1", "port": port, "tls": "none", "allow_plaintext": True, "user": "u",
            "password": "p", "mailbox": "m", "state_dir": str(tmp_path / "state"),
            "timeouts": {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT}}
    acct.update(kw)
    return acct


class Fetcher:
    """fetch(tmp_path, port, quota=0, on_message=None, now=None, crash=None,
    fail_pending_save=False, **account keys) -> stats, in the fixture's runtime.
    now: what client.compat.now() returns; crash=(step, k): Crash raised at the k-th crash
    point `step`; fail_pending_save: saving a pending UIDL entry raises OSError (flash full).
    Afterwards: .elapsed (s, wall clock), .busy (deliveries left open on the mailbox)."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.elapsed = None
        self.busy = None

    def __call__(self, tmp_path, port, quota=0, on_message=None, now=None, crash=None,
                 fail_pending_save=False, **kw):
        acct = account(tmp_path, port, **kw)
        if self.runtime == "micropython":
            return self._micropython(tmp_path, acct, quota, on_message, now, crash, fail_pending_save)
        return self._cpython(tmp_path, acct, quota, on_message, now, crash, fail_pending_save)

    def _cpython(self, tmp_path, acct, quota, on_message, now, crash, fail_pending_save):
        saved = (client.compat.now, client._crash_point, uidstate.UidState.save)
        if now is not None:
            client.compat.now = lambda: now
        if crash is not None:
            seen = {}

            def point(step):
                seen[step] = seen.get(step, 0) + 1
                if step == crash[0] and seen[step] == crash[1]:
                    raise Crash(step)

            client._crash_point = point
        if fail_pending_save:
            real_save = saved[2]

            def failing_save(self):
                if self.pending is not None:
                    raise OSError(28, "no space")
                return real_save(self)

            uidstate.UidState.save = failing_save
        storemod.reboot()
        s = Store(str(tmp_path / "store"), quota=quota)
        t = time.time()
        try:
            return client.fetch_account_sync(acct, s, on_message)
        finally:
            self.elapsed = time.time() - t
            client.compat.now, client._crash_point, uidstate.UidState.save = saved
            self.busy = s._box("m").busy if s.exists("m") else None

    def _micropython(self, tmp_path, acct, quota, on_message, now, crash, fail_pending_save):
        spec = {"account": acct, "root": str(tmp_path / "store"), "quota": quota, "now": now,
                "crash": list(crash) if crash else None, "fail_pending_save": fail_pending_save}
        res, self.elapsed, out = clientdriver.run(spec)
        assert res["implementation"] == "micropython", out
        self.busy = res.get("busy")
        if on_message is not None:
            for info in res["messages"]:
                info["uid"] = info["uid"].encode()
                on_message(info)
        if "ok" in res:
            return res["ok"]
        print(out)  # shown by pytest when the test fails
        clientdriver.raise_like(res, Crash)


@pytest.fixture(params=RUNTIMES)
def fetch(request):
    return Fetcher(request.param)


def stored(tmp_path):
    storemod.reboot()
    s = Store(str(tmp_path / "store"), quota=0)
    if not s.exists("m"):
        return []
    mb = s.lock("m")
    try:
        out = []
        for i in range(mb.count):
            f = mb.open(i)
            out.append(f.read())
            f.close()
        return out
    finally:
        mb.release()


def state_uids(tmp_path):
    """Every UID the state file holds (a no-UIDL entry as its SHA-1 hex), pending one included."""
    st = uidstate.UidState(str(tmp_path / "state"), "h").load()
    out = [k[1:] if uidstate.is_hash_key(k) else k for k, _, _ in state_entries(st)]
    if st.pending is not None:
        out.append(st.pending[5])
    return out


def nothing_kept(tmp_path, s):
    """After a failed session: nothing stored or recorded, and no QUIT (no DELE committed)."""
    return stored(tmp_path) == [] and state_uids(tmp_path) == [] and not s.saw("QUIT")


def test_good_server_baseline(tmp_path, fetch):
    s = Script(serve_mailbox)
    st = fetch(tmp_path, s.port)
    assert st["fetched"] == 1 and stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [b"u1"] and s.saw("QUIT")


def test_good_server_over_tls_baseline(tmp_path, fetch, server_tls):
    """POP3S to a scripted server: the TLS transport itself works (the board's path: a socket
    wrapped after the asyncio connect, handshake driven by the first read)."""
    s = Script(serve_mailbox, tls=server_tls)
    st = fetch(tmp_path, s.port, tls="implicit", verify=False)
    assert st["fetched"] == 1 and stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [b"u1"] and s.saw("QUIT")


def test_overlong_greeting(tmp_path, fetch):
    s = Script(lambda c, rf: (c.sendall(b"+OK " + b"x" * 5000 + b"\r\n"), time.sleep(1)))
    with pytest.raises(ProtocolError, match="longer than"):
        fetch(tmp_path, s.port)
    assert nothing_kept(tmp_path, s)


def test_capa_never_ends(tmp_path, fetch):
    def script(c, rf):
        c.sendall(b"+OK hi\r\n")
        expect(rf, "CAPA")
        c.sendall(b"+OK\r\n")
        for i in range(1000):
            c.sendall(b"X-CAP-%d\r\n" % i)

    s = Script(script)
    with pytest.raises(ProtocolError, match="does not end"):
        fetch(tmp_path, s.port)
    assert nothing_kept(tmp_path, s)


def test_listing_never_ends(tmp_path, fetch):
    s = Script(lambda c, rf: serve_mailbox(c, rf, uidl=b"".join(b"%d u%d\r\n" % (i, i) for i in range(1, 50))))
    with pytest.raises(ProtocolError, match="does not end"):
        fetch(tmp_path, s.port)
    assert nothing_kept(tmp_path, s)


def test_stat_claims_a_huge_mailbox(tmp_path, fetch):
    def script(c, rf):
        login(c, rf)
        expect(rf, "STAT")
        c.sendall(b"+OK 2000000000 1\r\n")

    s = Script(script)
    with pytest.raises(ProtocolError, match="more than"):
        fetch(tmp_path, s.port)
    assert nothing_kept(tmp_path, s)


def test_size_lies(tmp_path, fetch):
    huge = b"+OK\r\n" + b"y" * 200 + b"\r\n" + b"z" * 100000 + b"\r\n.\r\n"
    s = Script(lambda c, rf: serve_mailbox(c, rf, retr=huge))
    with pytest.raises(ProtocolError, match="larger than the server said"):
        fetch(tmp_path, s.port)
    assert nothing_kept(tmp_path, s)


def test_duplicate_uidl(tmp_path, fetch):
    def script(c, rf):
        login(c, rf)
        expect(rf, "STAT")
        c.sendall(b"+OK 2 42\r\n")
        expect(rf, "UIDL")
        c.sendall(b"+OK\r\n1 same\r\n2 same\r\n.\r\n")

    s = Script(script)
    with pytest.raises(ProtocolError, match="duplicate UIDL"):
        fetch(tmp_path, s.port)
    assert nothing_kept(tmp_path, s)


def test_overlong_uidl(tmp_path, fetch):
    s = Script(lambda c, rf: serve_mailbox(c, rf, uidl=b"1 " + b"u" * 71 + b"\r\n"))
    with pytest.raises(ProtocolError, match="invalid UIDL"):
        fetch(tmp_path, s.port)
    assert nothing_kept(tmp_path, s)


def retr_part(c, rf, part=b"+OK\r\nSubject: hi\r\n"):
    """A session up to RETR, which gets only `part` of its reply."""
    login(c, rf)
    expect(rf, "STAT")
    c.sendall(b"+OK 1 21\r\n")
    expect(rf, "UIDL")
    c.sendall(b"+OK\r\n1 u1\r\n.\r\n")
    expect(rf, "LIST")
    c.sendall(b"+OK\r\n1 21\r\n.\r\n")
    expect(rf, "RETR")
    c.sendall(part)


def test_disconnect_mid_retr_then_recover(tmp_path, fetch):
    s = Script(retr_part)  # and hang up
    with pytest.raises(client.ConnectionLost):
        fetch(tmp_path, s.port)
    assert nothing_kept(tmp_path, s) and fetch.busy == 0
    s = Script(serve_mailbox)
    assert fetch(tmp_path, s.port)["fetched"] == 1
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [b"u1"]


@pytest.mark.parametrize("tls", ["none", "implicit"])
def test_stall_mid_retr_times_out(tmp_path, fetch, server_tls, tls):
    """Half a message, then silence (plain, and inside TLS): one read_timeout, then a timeout
    error; the partial delivery is gone and the next session fetches the message."""
    s = Script(lambda c, rf: (retr_part(c, rf), time.sleep(READ_TIMEOUT + MARGIN + 0.5)),
               tls=server_tls if tls == "implicit" else None)
    with pytest.raises(client.Pop3Timeout):
        fetch(tmp_path, s.port, tls=tls, verify=False)
    assert fetch.elapsed < READ_TIMEOUT + MARGIN
    assert nothing_kept(tmp_path, s) and fetch.busy == 0
    s = Script(serve_mailbox, tls=server_tls if tls == "implicit" else None)
    assert fetch(tmp_path, s.port, tls=tls, verify=False)["fetched"] == 1
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [b"u1"]


def test_silent_server_times_out(tmp_path, fetch):
    s = Script(lambda c, rf: time.sleep(3))
    with pytest.raises(client.Pop3Timeout):
        fetch(tmp_path, s.port)
    assert fetch.elapsed < READ_TIMEOUT + MARGIN


@pytest.mark.parametrize("tls", ["none", "implicit"])
def test_trickling_server_is_not_a_timeout(tmp_path, fetch, server_tls, tls):
    """read_timeout bounds each wait, not a reply: a greeting trickled a byte at a time over
    more than read_timeout (each gap well inside it) is read, and the session completes."""

    def script(c, rf):
        for i in range(len(b"+OK hello\r\n")):
            c.sendall(b"+OK hello\r\n"[i:i + 1])
            time.sleep(READ_TIMEOUT / 6)
        # and the rest of a good session, without the greeting already sent
        expect(rf, "CAPA")
        c.sendall(b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
        for cmd, reply in (("USER", b"+OK\r\n"), ("PASS", b"+OK\r\n"), ("STAT", b"+OK 0 0\r\n"),
                           ("UIDL", b"+OK\r\n.\r\n"), ("QUIT", b"+OK\r\n")):
            expect(rf, cmd)
            c.sendall(reply)

    s = Script(script, tls=server_tls if tls == "implicit" else None)
    assert fetch(tmp_path, s.port, tls=tls, verify=False)["on_server"] == 0
    assert fetch.elapsed > READ_TIMEOUT and s.saw("QUIT")


def test_tls_handshake_stall_times_out(tmp_path, fetch):
    """A POP3S port that accepts and never answers the ClientHello: bounded (MicroPython: by
    read_timeout, the handshake runs in the reads; CPython: by connect_timeout, it is part of
    the connect)."""
    s = Script(lambda c, rf: time.sleep(3))
    with pytest.raises(client.Pop3Timeout):
        fetch(tmp_path, s.port, tls="implicit", verify=False)
    assert fetch.elapsed < max(CONNECT_TIMEOUT, READ_TIMEOUT) + MARGIN


def test_stls_handshake_stall_times_out(tmp_path, fetch):
    """STLS answered +OK, then the server never answers the ClientHello: bounded by read_timeout,
    and no credentials were sent."""

    def script(c, rf):
        c.sendall(b"+OK hi\r\n")
        expect(rf, "CAPA")
        c.sendall(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
        expect(rf, "STLS")
        c.sendall(b"+OK begin TLS\r\n")
        time.sleep(READ_TIMEOUT + MARGIN + 0.5)

    s = Script(script)
    with pytest.raises(client.Pop3Timeout):
        fetch(tmp_path, s.port, tls="stls", verify=False)
    assert fetch.elapsed < READ_TIMEOUT + MARGIN
    assert not s.saw("USER") and not s.saw("PASS")


def test_tls_port_hangs_up_in_handshake(tmp_path, fetch):
    """A POP3S port that closes the connection on the ClientHello: a lost connection, at once."""

    def script(c, rf):
        c.recv(1)  # the ClientHello arrived

    s = Script(script)
    with pytest.raises(client.ConnectionLost):
        fetch(tmp_path, s.port, tls="implicit", verify=False)
    assert fetch.elapsed < MARGIN


def test_connection_refused(tmp_path, fetch):
    """Nobody listening: a lost connection (the same class on both runtimes), at once."""
    with pytest.raises(client.ConnectionLost):
        fetch(tmp_path, free_port())
    assert fetch.elapsed < MARGIN and stored(tmp_path) == []


def test_stls_required_not_offered(tmp_path, fetch):
    def script(c, rf):
        c.sendall(b"+OK hi\r\n")
        expect(rf, "CAPA")
        c.sendall(b"+OK\r\nUSER\r\n.\r\n")
        line = rf.readline()
        assert not line.upper().startswith(b"USER"), "credentials sent in the clear"

    s = Script(script)
    with pytest.raises(client.TlsRequired):
        fetch(tmp_path, s.port, tls="stls", verify=False)
    assert not s.saw("USER") and not s.saw("PASS")


def test_no_capa_uses_apop_when_offered(tmp_path, fetch):
    def script(c, rf):
        c.sendall(b"+OK ready <1896.697170952@dbc.mtview.ca.us>\r\n")
        expect(rf, "CAPA")
        c.sendall(b"-ERR what?\r\n")
        line = rf.readline()
        # RFC 1939 example: secret "tanstaaf" gives this digest
        assert line == b"APOP u c4c9334bac560ecc979e58001b3e22fb\r\n", line
        c.sendall(b"+OK\r\n")
        expect(rf, "STAT")
        c.sendall(b"+OK 0 0\r\n")
        expect(rf, "UIDL")
        c.sendall(b"+OK\r\n.\r\n")
        expect(rf, "QUIT")
        c.sendall(b"+OK\r\n")

    s = Script(script)
    assert fetch(tmp_path, s.port, password="tanstaaf")["on_server"] == 0
    assert s.saw("QUIT")


def test_no_uidl_keep_refused_delete_best_effort(tmp_path, fetch):
    def script(c, rf):
        c.sendall(b"+OK hi\r\n")
        expect(rf, "CAPA")
        c.sendall(b"-ERR\r\n")
        expect(rf, "USER")
        c.sendall(b"+OK\r\n")
        expect(rf, "PASS")
        c.sendall(b"+OK\r\n")
        expect(rf, "STAT")
        c.sendall(b"+OK 1 21\r\n")
        expect(rf, "UIDL")
        c.sendall(b"-ERR no UIDL here\r\n")
        line = rf.readline()
        if not line:
            return
        if line.startswith(b"QUIT"):
            c.sendall(b"+OK\r\n")
            return
        assert line.startswith(b"LIST"), line
        c.sendall(b"+OK\r\n1 21\r\n.\r\n")
        expect(rf, "RETR")
        c.sendall(b"+OK\r\n" + GOOD + b".\r\n")
        expect(rf, "DELE")
        c.sendall(b"+OK\r\n")
        expect(rf, "QUIT")
        c.sendall(b"+OK\r\n")

    s = Script(script)
    with pytest.raises(client.ClientError, match="no UIDL"):
        fetch(tmp_path, s.port)
    assert nothing_kept(tmp_path, s)
    s = Script(script)
    st = fetch(tmp_path, s.port, policy="delete")
    assert st["fetched"] == 1 and st["deleted"] == 1 and stored(tmp_path) == [GOOD] and s.saw("QUIT")


def test_account_validation():
    """Pure validation (no I/O): CPython only; the dual-runtime unit tests cover the module."""
    with pytest.raises(client.ConfigError):
        client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p", "policy": "sometimes"})
    with pytest.raises(client.ConfigError):
        client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p", "colour": 1})
    a = client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p"})
    assert a["port"] == 995 and a["tls"] == "implicit" and a["verify"] is True and a["policy"] == "keep"
    assert a["read_timeout"] == client.READ_TIMEOUT


# --- session continues / ends cleanly -------------------------------------------------------------
TWO = b"Subject: two\r\n\r\nx\r\n"


def test_refused_dele_does_not_end_the_session(tmp_path, fetch):
    """A read-only maildrop answers DELE with -ERR: logged, not counted, the session goes on
    (the new message is fetched) and ends with QUIT; a later session deletes both."""
    s = Script(mailbox([(b"u1", GOOD)]))
    fetch(tmp_path, s.port)
    seen = []
    s = Script(mailbox([(b"u1", GOOD), (b"u2", TWO)], seen, dele_reply=b"-ERR read-only\r\n"))
    st = fetch(tmp_path, s.port, policy="delete")
    assert st["fetched"] == 1 and st["deleted"] == 0
    assert b"QUIT" in seen and stored(tmp_path) == [GOOD, TWO]
    assert sorted(state_uids(tmp_path)) == [b"u1", b"u2"]
    seen = []
    s = Script(mailbox([(b"u1", GOOD), (b"u2", TWO)], seen))
    st = fetch(tmp_path, s.port, policy="delete")
    assert st["fetched"] == 0 and st["deleted"] == 2 and b"DELE 1" in seen and b"DELE 2" in seen
    assert stored(tmp_path) == [GOOD, TWO] and state_uids(tmp_path) == []


def test_full_store_at_begin_ends_cleanly_with_quit(tmp_path, fetch):
    """The quota is reached before the second message: it is not downloaded, not deleted, the
    session ends with QUIT (the first message's DELE commits) and the error is reported."""
    seen = []
    s = Script(mailbox([(b"u1", GOOD), (b"u2", TWO)], seen))
    with pytest.raises(client.ClientError, match="store: .*quota"):
        fetch(tmp_path, s.port, quota=len(GOOD), policy="delete")
    assert b"DELE 1" in seen and b"RETR 2" not in seen and b"DELE 2" not in seen and seen[-1] == b"QUIT"
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [] and fetch.busy == 0


def test_failed_pending_save_leaves_no_open_delivery(tmp_path, fetch):
    """st.save() of the pending entry fails (flash full): the delivery is aborted (no temp file,
    mailbox not busy), the pending entry is dropped, the error propagates; the next run works."""
    s = Script(mailbox([(b"u1", GOOD)]))
    with pytest.raises(OSError):
        fetch(tmp_path, s.port, fail_pending_save=True)
    assert os.listdir(tmp_path / "store" / "m" / "tmp") == []
    assert fetch.busy == 0  # in the client's process: the mailbox is not stuck "delivering"
    assert nothing_kept(tmp_path, s)
    s = Script(mailbox([(b"u1", GOOD)]))
    assert fetch(tmp_path, s.port)["fetched"] == 1
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [b"u1"]


def test_crash_between_pending_and_commit_with_an_identical_message(tmp_path, fetch):
    """Two server messages with the same bytes; power lost after the second one's pending entry
    was saved but before its commit. The next run must not take the first copy for the second
    (it looks for the local UID the commit would have given): the second is fetched again, not
    taken as stored and deleted unread."""
    msgs = [(b"u1", GOOD), (b"u2", GOOD)]
    s = Script(mailbox(msgs))
    with pytest.raises(Crash):
        fetch(tmp_path, s.port, policy="delete", crash=("pending", 2))
    assert stored(tmp_path) == [GOOD]
    seen = []
    s = Script(mailbox(msgs, seen))
    st = fetch(tmp_path, s.port, policy="delete")
    assert st["fetched"] == 1 and st["deleted"] == 2 and b"RETR 2" in seen
    assert stored(tmp_path) == [GOOD, GOOD] and state_uids(tmp_path) == []


def test_crash_after_commit_with_an_identical_message_is_recovered(tmp_path, fetch):
    """The same, with the power lost just after the commit: the local UID recorded in the pending
    entry is there with that size and hash, so the second message is recorded as stored and not
    fetched again."""
    msgs = [(b"u1", GOOD), (b"u2", GOOD)]
    s = Script(mailbox(msgs))
    with pytest.raises(Crash):
        fetch(tmp_path, s.port, crash=("committed", 2))
    seen = []
    s = Script(mailbox(msgs, seen))
    st = fetch(tmp_path, s.port)
    assert st["fetched"] == 0 and b"RETR 2" not in seen
    assert stored(tmp_path) == [GOOD, GOOD] and sorted(state_uids(tmp_path)) == [b"u1", b"u2"]


# --- UIDs and synthetic keys ---------------------------------------------------------------------
def test_real_uid_starting_with_hash_is_a_uid(tmp_path, fetch):
    """'#abc' is a valid UID (RFC 1939: 0x21-0x7E), not a synthetic key: it stays recorded while
    it is on the server, however old, and is never fetched twice."""
    s = Script(mailbox([(b"#abc", GOOD)]))
    assert fetch(tmp_path, s.port)["fetched"] == 1
    for _ in range(2):
        s = Script(mailbox([(b"#abc", GOOD)]))
        assert fetch(tmp_path, s.port, now=int(time.time()) + 31 * 86400)["fetched"] == 0
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [b"#abc"]


def test_no_uidl_quit_lost_then_duplicate_dropped(tmp_path, fetch):
    """Server without UIDL, policy delete: the QUIT reply is lost (the DELE never commits), so
    the next session is offered the message again; its content key says it is here already."""

    def script(c, rf):
        login(c, rf)
        for cmd, reply in (("STAT", b"+OK 1 21\r\n"), ("UIDL", b"-ERR no\r\n"), ("LIST", b"+OK\r\n1 21\r\n.\r\n"),
                           ("RETR", b"+OK\r\n" + GOOD + b".\r\n"), ("DELE", b"+OK\r\n"), ("QUIT", None)):
            expect(rf, cmd)
            if reply is None:
                return  # hang up instead of answering QUIT
            c.sendall(reply)

    s = Script(script)
    with pytest.raises(client.ConnectionLost):
        fetch(tmp_path, s.port, policy="delete")
    data = (tmp_path / "state" / "h.uidl").read_bytes()
    keys = [k for k, _, _ in state_entries(uidstate.UidState(str(tmp_path / "state"), "h").load())]
    assert len(keys) == 1 and uidstate.is_hash_key(keys[0]) and b"\nH " in data and b"#" not in data
    seen = []
    s = Script(mailbox([(None, GOOD)], seen))
    st = fetch(tmp_path, s.port, policy="delete")
    assert st["duplicates"] == 1 and st["fetched"] == 0 and st["deleted"] == 1 and seen[-1] == b"QUIT"
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == []


def state_times(tmp_path):
    st = uidstate.UidState(str(tmp_path / "state"), "h").load()
    return [fs for k, fs, _ in state_entries(st) if not uidstate.is_hash_key(k)]


def test_keep_days_clock_unset_at_first_sight(tmp_path, fetch):
    """A board fetches before NTP set its clock (1970): first_seen is recorded as unknown (0),
    stamped by the first session with a set clock, and the message is only deleted keep_days
    after that, not at once for looking 50 years old."""
    t0 = int(time.time())
    s = Script(mailbox([(b"u1", GOOD)]))
    assert fetch(tmp_path, s.port, policy="keep_days", keep_days=7, now=1000)["fetched"] == 1
    assert state_times(tmp_path) == [0]
    seen = []
    s = Script(mailbox([(b"u1", GOOD)], seen))
    assert fetch(tmp_path, s.port, policy="keep_days", keep_days=7, now=t0)["deleted"] == 0
    assert not any(l.startswith(b"DELE") for l in seen) and state_times(tmp_path) == [t0]
    # the clock is lost again (no RTC battery): nothing happens either way
    s = Script(mailbox([(b"u1", GOOD)], seen))
    assert fetch(tmp_path, s.port, policy="keep_days", keep_days=7, now=1000)["deleted"] == 0
    assert state_times(tmp_path) == [t0]
    seen = []
    s = Script(mailbox([(b"u1", GOOD)], seen))
    assert fetch(tmp_path, s.port, policy="keep_days", keep_days=7, now=t0 + 8 * 86400)["deleted"] == 1
    assert b"DELE 1" in seen and stored(tmp_path) == [GOOD] and state_uids(tmp_path) == []


@pytest.mark.parametrize("oversize", [None, "headers"])
def test_headers_without_empty_line(tmp_path, fetch, oversize):
    """A message (or a TOP n 0 reply) that is all header, with no empty line: its fields still
    reach on_message."""
    msg = b"From: a@example.org\r\nSubject: only a header\r\n"
    got = []
    kw = {"max_size": 10, "oversize": oversize} if oversize else {}
    s = Script(mailbox([(b"u1", msg)]))
    fetch(tmp_path, s.port, on_message=got.append, **kw)
    assert got[0]["headers"] == {"from": "a@example.org", "subject": "only a header"}
    assert got[0]["headers_only"] == bool(oversize)


# --- the fetch CLI -------------------------------------------------------------------------------
def run_fetch_cli(runtime, config_path, capsys):
    """The fetch CLI: fetch.main in-process, or `micropython -m pocketpost.fetch`. -> (rc, output)"""
    if runtime == "micropython":
        env = dict(os.environ)
        env["MICROPYPATH"] = FIRMWARE + ":.frozen"
        r = subprocess.run([MICROPYTHON, "-m", "pocketpost.fetch", config_path], capture_output=True,
                           timeout=30, env=env, cwd=os.path.dirname(config_path))
        return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    from pocketpost import fetch as fetchmod

    storemod.reboot()
    rc = fetchmod.main(config_path)
    return rc, capsys.readouterr().out


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fetch_cli_opens_the_store_like_the_server(tmp_path, capsys, runtime):
    """fetch.main reads the config through config.load and opens the store with its reserve:
    a reserve larger than the free flash stops the delivery (cleanly, with QUIT)."""
    acct = {"name": "h", "host": "127.0.0.1", "tls": "none", "allow_plaintext": True, "user": "u", "password": "p", "mailbox": "m",
            "state_dir": str(tmp_path / "state"), "timeouts": {"connect_timeout": 2, "read_timeout": 1}}
    for reserve, fetched in ((1 << 60, 0), (0, 1)):
        seen = []
        s = Script(mailbox([(b"u1", GOOD)], seen))
        acct["port"] = s.port
        cfg = {"store": {"root": str(tmp_path / "store"), "reserve": reserve}, "accounts": [acct]}
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        rc, out = run_fetch_cli(runtime, str(tmp_path / "config.json"), capsys)
        assert rc == (0 if fetched else 1), out
        assert ("flash full" in out) == (not fetched) and seen[-1] == b"QUIT", out
        assert len(stored(tmp_path)) == fetched


def test_max_entries_per_account(tmp_path, fetch):
    """The UIDL state holds at most the account's max_entries (default small enough for an
    ESP32): further new messages wait, reported as state_full, until deletions make room."""
    assert client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p"})["max_entries"] == 2000
    with pytest.raises(client.ConfigError):
        client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p", "max_entries": 0})
    msgs = [(b"u%d" % i, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(1, 5)]
    s = Script(mailbox(msgs))
    st = fetch(tmp_path, s.port, max_entries=2)
    assert st["fetched"] == 2 and st["state_full"] and sorted(state_uids(tmp_path)) == [b"u1", b"u2"]
    s = Script(mailbox(msgs))
    st = fetch(tmp_path, s.port, max_entries=2, policy="delete")  # deletes u1, u2; u3, u4 still wait
    assert st["fetched"] == 0 and st["deleted"] == 2 and state_uids(tmp_path) == []
    s = Script(mailbox(msgs[2:]))
    st = fetch(tmp_path, s.port, max_entries=2)
    assert st["fetched"] == 2 and not st["state_full"] and len(stored(tmp_path)) == 4


def test_new_messages_in_batches(tmp_path, fetch):
    """More new messages than client._NEW_BATCH (64): the session reads UIDL again per batch
    (the full UIDs of one batch only are held) and still fetches them all; duplicates across
    batches are still refused; max_entries still bounds the state."""
    msgs = [(b"u%d" % i, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(1, 151)]
    seen = []
    s = Script(mailbox(msgs, seen))
    st = fetch(tmp_path, s.port)
    assert st["fetched"] == 150 and not st["state_full"] and len(state_uids(tmp_path)) == 150
    assert seen.count(b"UIDL") == 3 and seen[-1] == b"QUIT"
    seen = []
    s = Script(mailbox(msgs + [(b"u151", GOOD)], seen))
    st = fetch(tmp_path, s.port)
    assert st["fetched"] == 1 and seen.count(b"UIDL") == 1 and len(state_uids(tmp_path)) == 151
    st = fetch(tmp_path / "b", Script(mailbox(msgs)).port, max_entries=100)
    assert st["fetched"] == 100 and st["state_full"]
    dup = msgs[:100] + [(b"u80", TWO)]  # both copies beyond the first batch
    with pytest.raises(ProtocolError, match="duplicate UIDL"):
        fetch(tmp_path / "c", Script(mailbox(dup)).port)
