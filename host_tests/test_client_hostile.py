"""The POP3 client against scripted misbehaving servers: each misbehaviour gives a clear exception,
a bounded wait, and a consistent store + UIDL state (nothing stored, nothing recorded).

Every scenario runs twice through the `fetch` fixture: "cpython" calls client.fetch_account_sync
in-process (hostconn.Conn), "micropython" runs it under the real micropython binary
(host_tests/clientdriver.py: transport.Conn, the board's timeout and TLS code) and
re-raises its error as the same client class, so one body holds the expectation for both.
The scripted servers are CPython threads on loopback (bounded loops, closed sockets).
Scenarios that need no socket, TLS, clock or crash point run on an in-process connection pair
instead, under both runtimes: host_tests/dual/test_client_scripted.py."""

import json
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

import clientdriver
import crashpoints
from helpers import FIRMWARE, MICROPYTHON, free_port
from serverharness import cert_dir
from uidtool import entries as state_entries

from pocketpost import client, clientstls, store as storemod, uidstate
from pocketpost.store import Store
import storeread

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
    expect(rf, "NOOP")  # the client proves the stream in step after each message
    c.sendall(b"+OK\r\n")
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
            elif k == b"NOOP":
                c.sendall(b"+OK\r\n")
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
        saved = (client.compat.now, uidstate.UidState.save)
        undo = None
        if now is not None:
            client.compat.now = lambda: now
        if crash is not None:
            undo = crashpoints.install(crashpoints.counter(crash, Crash))
        if fail_pending_save:
            crashpoints.fail_pending_saves()  # undone below, with the clock
        storemod.reboot()
        s = Store(str(tmp_path / "store"), quota=quota)
        t = time.time()
        try:
            return client.fetch_account_sync(acct, s, on_message)
        finally:
            self.elapsed = time.time() - t
            if undo is not None:
                undo()
            client.compat.now, uidstate.UidState.save = saved
            self.busy = s.box("m").busy if s.exists("m") else None

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
    return storeread.messages(Store(str(tmp_path / "store"), quota=0), "m")


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
def test_trickled_greeting_is_cut_at_its_deadline(tmp_path, fetch, server_tls, tls):
    """A greeting trickled a byte at a time (each gap well inside read_timeout) is cut off when
    its deadline (read_timeout from the connect) passes: replies have deadlines, not only reads."""

    def script(c, rf):
        for i in range(len(b"+OK hello\r\n")):
            c.sendall(b"+OK hello\r\n"[i:i + 1])
            time.sleep(READ_TIMEOUT / 4)

    s = Script(script, tls=server_tls if tls == "implicit" else None)
    with pytest.raises(client.Pop3Timeout, match="greeting: its deadline passed"):
        fetch(tmp_path, s.port, tls=tls, verify=False)
    assert fetch.elapsed < READ_TIMEOUT + MARGIN and not s.saw("QUIT")


def test_dripping_message_is_cut_at_its_deadline(tmp_path, fetch):
    """RETR answered a byte every half read_timeout: the message's deadline (read_timeout +
    size / min_rate) ends it; nothing is stored or recorded, no QUIT."""

    def script(c, rf):
        retr_part(c, rf, b"+OK\r\n")
        for b in GOOD + b".\r\n":
            c.sendall(bytes([b]))
            time.sleep(READ_TIMEOUT / 2)

    s = Script(script)
    with pytest.raises(client.Pop3Timeout, match="RETR 1: its deadline passed"):
        fetch(tmp_path, s.port, timeouts={"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                                          "min_rate": 1000})
    assert fetch.elapsed < READ_TIMEOUT + 0.1 + MARGIN
    assert nothing_kept(tmp_path, s) and fetch.busy == 0


def test_session_deadline(tmp_path, fetch):
    """Every reply in time, the whole session not: session_timeout ends it."""

    def script(c, rf):
        c.sendall(b"+OK hi\r\n")
        expect(rf, "CAPA")
        c.sendall(b"+OK\r\nUSER\r\n.\r\n")
        for _ in range(20):
            line = rf.readline()
            if not line:
                return
            time.sleep(READ_TIMEOUT / 2)
            c.sendall(b"+OK\r\n")

    s = Script(script)
    with pytest.raises(client.Pop3Timeout, match="session's deadline passed"):
        fetch(tmp_path, s.port, timeouts={"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                                          "session_timeout": 1.2})
    assert fetch.elapsed < 1.2 + MARGIN and not s.saw("QUIT")


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
    """Nobody listening: a lost connection (the same class on both runtimes), at once, saying
    which account, host:port and what to do."""
    port = free_port()
    with pytest.raises(client.ConnectionLost, match="h 127.0.0.1:%d: (connect|waiting for the greeting): connection refused by 127.0.0.1:%d: "
                                                    "nothing listens on that port; check .host. and .port." % (port, port)):
        fetch(tmp_path, port)
    assert fetch.elapsed < MARGIN and stored(tmp_path) == []


def test_stls_required_not_offered(tmp_path, fetch):
    def script(c, rf):
        c.sendall(b"+OK hi\r\n")
        expect(rf, "CAPA")
        c.sendall(b"+OK\r\nUSER\r\n.\r\n")
        line = rf.readline()
        assert not line.upper().startswith(b"USER"), "credentials sent in the clear"

    s = Script(script)
    with pytest.raises(clientstls.TlsRequired):
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


def test_account_validation():
    """Pure validation (no I/O): CPython only; the dual-runtime unit tests cover the module."""
    with pytest.raises(client.ConfigError):
        client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p", "policy": "sometimes"})
    with pytest.raises(client.ConfigError):
        client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p", "colour": 1})
    a = client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p"})
    assert a["port"] == 995 and a["tls"] == "implicit" and a["verify"] is True and a["policy"] == "keep"
    assert a["read_timeout"] == client.READ_TIMEOUT
    # Every named default (clientconf.DEFAULTS), and each choice refused with its allowed values.
    assert (a["auth"], a["keep_days"], a["max_size"], a["oversize"], a["max_messages"], a["mailbox"],
            a["state_dir"]) == ("auto", 7, 0, "skip", 0, "inbox", "state")
    for key, bad, allowed in (("tls", "ssl", "implicit, stls, none"), ("policy", "sometimes", "delete, keep, keep_days"),
                              ("oversize", "trim", "skip, headers"), ("auth", "cram-md5", "auto, scram-sha-256, plain")):
        with pytest.raises(client.ConfigError) as e:
            client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p", key: bad})
        assert "account x: %s must be one of %s" % (key, allowed) in e.value.msg
    assert client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p", "tls": "stls",
                                     "oversize": "headers", "policy": "keep_days"})["port"] == 110


# --- session continues / ends cleanly -------------------------------------------------------------
TWO = b"Subject: two\r\n\r\nx\r\n"


def test_failed_pending_save_leaves_no_open_delivery(tmp_path, fetch):
    """st.save() of the pending entry fails (flash full): the delivery is aborted (no temp file,
    mailbox not busy), the pending entry is dropped, the error propagates, said as a full flash
    (test_client_review_w16); the next run works."""
    s = Script(mailbox([(b"u1", GOOD)]))
    with pytest.raises(client.ClientError, match="the flash is full"):
        fetch(tmp_path, s.port, fail_pending_save=True)
    assert storeread.temp_files(str(tmp_path / "store" / "m")) == []
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


TWO_BATCHES = [(b"u%d" % i, b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)) for i in range(20)]


@pytest.mark.parametrize("crash, committed", [(("pending", 1), 0), (("committed", 5), 5), (("stored", 16), 16),
                                              (("pending", 17), 16), (("committed", 18), 18), (("stored", 20), 20)])
def test_a_crash_in_either_batch_leaves_each_message_stored_once(tmp_path, fetch, crash, committed):
    """20 new messages: two batches (clientplan's 16, then 4). Each message's pending entry goes to
    a slot file of its own; a batch's records reach the state file in one write before the next
    batch's downloads (uidstate.py). Power lost in either batch (after the first batch's journal
    write, or before it): the next run records the messages committed before the cut without
    fetching them again, fetches the others, and each is stored once."""
    with pytest.raises(Crash):
        fetch(tmp_path, Script(mailbox(TWO_BATCHES)).port, crash=crash)
    assert len(stored(tmp_path)) == committed
    st = fetch(tmp_path, Script(mailbox(TWO_BATCHES)).port)
    assert st["fetched"] == 20 - committed, st
    assert sorted(stored(tmp_path)) == sorted(m for _, m in TWO_BATCHES)
    assert sorted(state_uids(tmp_path)) == sorted(u for u, _ in TWO_BATCHES)


def test_settle_records_every_message_a_cut_left_in_slot_files(tmp_path, fetch):
    """The board's settle at boot (client.settle) after a cut that left three committed messages
    recorded in slot files only: all three recorded in the state file (its table made for what is
    on file: made again with room for them), none fetched again."""
    with pytest.raises(Crash):
        fetch(tmp_path, Script(mailbox(TWO_BATCHES)).port, crash=("stored", 3))
    storemod.reboot()
    assert client.settle(account(tmp_path, 1), Store(str(tmp_path / "store"), quota=0)) is True
    assert sorted(state_uids(tmp_path)) == [b"u0", b"u1", b"u2"]
    st = uidstate.UidState(str(tmp_path / "state"), "h").load()
    assert st.pending is None and st._count == 0  # the journal write made the slots out of date
    storemod.reboot()
    assert client.settle(account(tmp_path, 1), Store(str(tmp_path / "store"), quota=0)) is False


# --- the fetch CLI -------------------------------------------------------------------------------
def run_fetch_cli(runtime, config_path, capsys, verbose=False):
    """The fetch CLI: in-process as fetch.py runs it (fetchargs.command_line, then fetch.main),
    or `micropython -m pocketpost.fetch`. -> (rc, output)"""
    args = (["-v"] if verbose else []) + [config_path]
    if runtime == "micropython":
        env = dict(os.environ)
        env["MICROPYPATH"] = FIRMWARE + ":.frozen"
        r = subprocess.run([MICROPYTHON, "-m", "pocketpost.fetch"] + args, capture_output=True,
                           timeout=30, env=env, cwd=os.path.dirname(config_path))
        return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    from pocketpost import fetch as fetchmod, fetchargs

    storemod.reboot()
    a = fetchargs.command_line(args)
    rc = a if isinstance(a, int) else fetchmod.main(*a)
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



FROM_MSG = b"From: ada@example.org\r\nSubject: hello there\r\n\r\nbody\r\n"


def cli_config(tmp_path, port):
    acct = {"name": "h", "host": "127.0.0.1", "port": port, "tls": "none", "allow_plaintext": True, "user": "u",
            "password": "p", "mailbox": "m", "state_dir": str(tmp_path / "state"),
            "timeouts": {"connect_timeout": 2, "read_timeout": 2}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"store": {"root": str(tmp_path / "store")}, "accounts": [acct]}))
    return str(path)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_fetch_cli_prints_from_and_subject_only_with_v(tmp_path, capsys, runtime):
    """The progress line gives the local UID and size; From and Subject (parsed by headers.py
    while the message streams in) only with -v."""
    for verbose, uid in ((False, b"u1"), (True, b"u2")):
        s = Script(mailbox([(uid, FROM_MSG)]))
        rc, out = run_fetch_cli(runtime, cli_config(tmp_path, s.port), capsys, verbose)
        assert rc == 0 and "1 fetched" in out and " %d bytes" % len(FROM_MSG) in out, out
        assert ("From: ada@example.org  Subject: hello there" in out) == verbose, out
        tmp_path = tmp_path / "again"
        tmp_path.mkdir()


CLI_MODULES = """
import sys
import pocketpost
from pocketpost import fetch
rc = fetch.main(sys.argv[1], None, None, sys.argv[2] == "v")
print("RC", rc)
print("MODS", " ".join(sorted(k[11:] for k in sys.modules if k.startswith("pocketpost."))))
print("ATTRS", " ".join(n for n in ("clientconf", "clientauth", "clientget", "uidcompact", "config", "auth", "heapmark", "headers",
                                    "store", "pop3listing")
                        if hasattr(pocketpost, n)))
"""


def test_fetch_cli_drops_its_cold_modules_under_micropython(tmp_path):
    """Under micropython a fetch loads its cold code only for its moment (account checks, state
    load, login; the config checks and heapmark) and drops it after: none of it is left in
    sys.modules or on the package once a message was fetched (the heap it frees: docs/FIGURES.md);
    headers.py is loaded only for -v. Each run fetches a new message, so every dropped module ran."""
    probe = tmp_path / "probe.py"
    probe.write_text(CLI_MODULES)
    cold = {"clientconf", "clientauth", "clientget", "clientfail", "clientstls", "clientend", "clientplan", "uidcompact", "clientrecover", "config", "serverconf",
            "auth", "heapmark", "nativescan", "fetchload", "pop3listing"}
    for verbose, uid in (("-", b"u1"), ("v", b"u2")):
        s = Script(mailbox([(b"u1", FROM_MSG)] + ([(uid, GOOD)] if uid != b"u1" else [])))
        r = subprocess.run([MICROPYTHON, str(probe), cli_config(tmp_path, s.port), verbose], capture_output=True,
                           timeout=30, env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"), cwd=str(tmp_path))
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0 and "RC 0" in out and "1 fetched" in out, out + r.stderr.decode(errors="replace")
        mods = set(out.split("MODS ")[1].split("\n")[0].split())
        attrs = out.split("ATTRS")[1].split("\n")[0].split()
        assert "client" in mods and "uidstate" in mods and not mods & cold, sorted(mods & cold)
        assert ("headers" in mods) == (verbose == "v"), sorted(mods)
        assert attrs == (["headers"] if verbose == "v" else []), attrs
        # The store: its recovery (storescan, run at the mailbox's first open) is dropped after it,
        # its delivery code (store.py, loaded by the first Store.begin) after the downloads, and
        # its session side (storesession: lock, Mailbox, deletion commit) is never loaded.
        assert "storecore" in mods and not mods & {"store", "storemerge", "storescan", "storecheck", "storesession"}, sorted(mods)
