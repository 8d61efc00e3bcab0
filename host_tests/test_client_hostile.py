"""The POP3 client against scripted misbehaving servers: each misbehaviour gives a clear exception,
a bounded wait, and a consistent store + UIDL state (nothing stored, nothing recorded)."""

import os
import socket
import threading
import time

import pytest

from helpers import free_port

from pocketpost import client, store as storemod, uidstate
from pocketpost.pop3 import ProtocolError
from pocketpost.store import Store

GOOD = b"Subject: hi\r\n\r\nbody\r\n"


class Script(threading.Thread):
    """Serves `script(conn, rfile)` to each connection (up to `conns`) on a free loopback port."""

    def __init__(self, script, conns=1):
        super().__init__(daemon=True)
        self.script = script
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
                    self.script(c, c.makefile("rb"))
                except OSError:
                    pass
                finally:
                    c.close()
        except OSError:
            pass
        finally:
            self.srv.close()


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


def fetch(tmp_path, port, quota=0, on_message=None, **kw):
    acct = {"name": "h", "host": "127.0.0.1", "port": port, "tls": "none", "user": "u", "password": "p",
            "mailbox": "m", "state_dir": str(tmp_path / "state"), "timeouts": {"connect_timeout": 2, "read_timeout": 1}}
    acct.update(kw)
    storemod.reboot()
    s = Store(str(tmp_path / "store"), quota=quota)
    return client.fetch_account_sync(acct, s, on_message)


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
    try:
        data = (tmp_path / "state" / "h.uidl").read_bytes()
    except FileNotFoundError:
        return []
    return [l.split(b" ")[-1] for l in data.split(b"\n")[1:] if l]


def test_good_server_baseline(tmp_path):
    s = Script(serve_mailbox)
    st = fetch(tmp_path, s.port)
    assert st["fetched"] == 1 and stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [b"u1"]


def test_overlong_greeting(tmp_path):
    s = Script(lambda c, rf: (c.sendall(b"+OK " + b"x" * 5000 + b"\r\n"), time.sleep(1)))
    with pytest.raises(ProtocolError, match="longer than"):
        fetch(tmp_path, s.port)


def test_capa_never_ends(tmp_path):
    def script(c, rf):
        c.sendall(b"+OK hi\r\n")
        expect(rf, "CAPA")
        c.sendall(b"+OK\r\n")
        for i in range(1000):
            c.sendall(b"X-CAP-%d\r\n" % i)

    s = Script(script)
    with pytest.raises(ProtocolError, match="does not end"):
        fetch(tmp_path, s.port)


def test_listing_never_ends(tmp_path):
    s = Script(lambda c, rf: serve_mailbox(c, rf, uidl=b"".join(b"%d u%d\r\n" % (i, i) for i in range(1, 50))))
    with pytest.raises(ProtocolError, match="does not end"):
        fetch(tmp_path, s.port)
    assert stored(tmp_path) == [] and state_uids(tmp_path) == []


def test_size_lies(tmp_path):
    huge = b"+OK\r\n" + b"y" * 200 + b"\r\n" + b"z" * 100000 + b"\r\n.\r\n"
    s = Script(lambda c, rf: serve_mailbox(c, rf, retr=huge))
    with pytest.raises(ProtocolError, match="larger than the server said"):
        fetch(tmp_path, s.port)
    assert stored(tmp_path) == [] and state_uids(tmp_path) == []


def test_duplicate_uidl(tmp_path):
    def script(c, rf):
        login(c, rf)
        expect(rf, "STAT")
        c.sendall(b"+OK 2 42\r\n")
        expect(rf, "UIDL")
        c.sendall(b"+OK\r\n1 same\r\n2 same\r\n.\r\n")

    s = Script(script)
    with pytest.raises(ProtocolError, match="duplicate UIDL"):
        fetch(tmp_path, s.port)


def test_overlong_uidl(tmp_path):
    s = Script(lambda c, rf: serve_mailbox(c, rf, uidl=b"1 " + b"u" * 71 + b"\r\n"))
    with pytest.raises(ProtocolError, match="invalid UIDL"):
        fetch(tmp_path, s.port)


def test_disconnect_mid_retr_then_recover(tmp_path):
    def script(c, rf):
        serve_mailbox_part(c, rf)

    def serve_mailbox_part(c, rf):
        login(c, rf)
        expect(rf, "STAT")
        c.sendall(b"+OK 1 21\r\n")
        expect(rf, "UIDL")
        c.sendall(b"+OK\r\n1 u1\r\n.\r\n")
        expect(rf, "LIST")
        c.sendall(b"+OK\r\n1 21\r\n.\r\n")
        expect(rf, "RETR")
        c.sendall(b"+OK\r\nSubject: hi\r\n")  # and hang up

    s = Script(script)
    with pytest.raises(client.ConnectionLost):
        fetch(tmp_path, s.port)
    assert stored(tmp_path) == [] and state_uids(tmp_path) == []
    s = Script(serve_mailbox)
    assert fetch(tmp_path, s.port)["fetched"] == 1
    assert stored(tmp_path) == [GOOD]


def test_silent_server_times_out(tmp_path):
    s = Script(lambda c, rf: time.sleep(3))
    t = time.time()
    with pytest.raises(client.Pop3Timeout):
        fetch(tmp_path, s.port)
    assert time.time() - t < 2.5


def test_tls_handshake_stall_times_out(tmp_path):
    """A POP3S port that accepts and never answers the ClientHello: bounded by read_timeout."""
    s = Script(lambda c, rf: time.sleep(3))
    t = time.time()
    with pytest.raises(client.Pop3Timeout):
        fetch(tmp_path, s.port, tls="implicit", verify=False)
    assert time.time() - t < 3.5


def test_stls_required_not_offered(tmp_path):
    def script(c, rf):
        c.sendall(b"+OK hi\r\n")
        expect(rf, "CAPA")
        c.sendall(b"+OK\r\nUSER\r\n.\r\n")
        line = rf.readline()
        assert not line.upper().startswith(b"USER"), "credentials sent in the clear"

    s = Script(script)
    with pytest.raises(client.TlsRequired):
        fetch(tmp_path, s.port, tls="stls", verify=False)


def test_no_capa_uses_apop_when_offered(tmp_path):
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


def test_no_uidl_keep_refused_delete_best_effort(tmp_path):
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
    s = Script(script)
    st = fetch(tmp_path, s.port, policy="delete")
    assert st["fetched"] == 1 and st["deleted"] == 1 and stored(tmp_path) == [GOOD]


def test_account_validation():
    with pytest.raises(client.ConfigError):
        client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p", "policy": "sometimes"})
    with pytest.raises(client.ConfigError):
        client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p", "colour": 1})
    a = client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p"})
    assert a["port"] == 995 and a["tls"] == "implicit" and a["verify"] is True and a["policy"] == "keep"
    assert a["read_timeout"] == client.READ_TIMEOUT


# --- session continues / ends cleanly -------------------------------------------------------------
TWO = b"Subject: two\r\n\r\nx\r\n"


def test_refused_dele_does_not_end_the_session(tmp_path):
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


def test_full_store_at_begin_ends_cleanly_with_quit(tmp_path):
    """The quota is reached before the second message: it is not downloaded, not deleted, the
    session ends with QUIT (the first message's DELE commits) and the error is reported."""
    seen = []
    s = Script(mailbox([(b"u1", GOOD), (b"u2", TWO)], seen))
    with pytest.raises(client.ClientError, match="store: .*quota"):
        fetch(tmp_path, s.port, quota=len(GOOD), policy="delete")
    assert b"DELE 1" in seen and b"RETR 2" not in seen and b"DELE 2" not in seen and seen[-1] == b"QUIT"
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == []


def test_failed_pending_save_leaves_no_open_delivery(tmp_path, monkeypatch):
    """st.save() of the pending entry fails (flash full): the delivery is aborted (no temp file,
    mailbox not busy), the pending entry is dropped, the error propagates; the next run works."""
    real_save = uidstate.UidState.save

    def failing_save(self):
        if self.pending is not None:
            raise OSError(28, "no space")
        return real_save(self)

    monkeypatch.setattr(uidstate.UidState, "save", failing_save)
    s = Script(mailbox([(b"u1", GOOD)]))
    storemod.reboot()
    store = Store(str(tmp_path / "store"), quota=0)
    acct = {"name": "h", "host": "127.0.0.1", "port": s.port, "tls": "none", "user": "u", "password": "p",
            "mailbox": "m", "state_dir": str(tmp_path / "state"), "timeouts": {"connect_timeout": 2, "read_timeout": 1}}
    with pytest.raises(OSError):
        client.fetch_account_sync(acct, store)
    assert os.listdir(tmp_path / "store" / "m" / "tmp") == []
    assert store._box("m").busy == 0  # in this process: the mailbox is not stuck "delivering"
    monkeypatch.undo()
    s = Script(mailbox([(b"u1", GOOD)]))
    assert fetch(tmp_path, s.port)["fetched"] == 1
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [b"u1"]


class Crash(BaseException):
    """Stands for a power cut at a crash point: no cleanup code of the client runs for it."""


def crash_at(monkeypatch, step, k):
    seen = {}

    def point(s):
        seen[s] = seen.get(s, 0) + 1
        if s == step and seen[s] == k:
            raise Crash(step)

    monkeypatch.setattr(client, "_crash_point", point)


def test_crash_between_pending_and_commit_with_an_identical_message(tmp_path, monkeypatch):
    """Two server messages with the same bytes; power lost after the second one's pending entry
    was saved but before its commit. The next run must see that only the first copy is local
    (prior = 1, found = 1): the second is fetched again, not taken as stored and deleted unread."""
    msgs = [(b"u1", GOOD), (b"u2", GOOD)]
    crash_at(monkeypatch, "pending", 2)
    s = Script(mailbox(msgs))
    with pytest.raises(Crash):
        fetch(tmp_path, s.port, policy="delete")
    monkeypatch.undo()
    assert stored(tmp_path) == [GOOD]
    seen = []
    s = Script(mailbox(msgs, seen))
    st = fetch(tmp_path, s.port, policy="delete")
    assert st["fetched"] == 1 and st["deleted"] == 2 and b"RETR 2" in seen
    assert stored(tmp_path) == [GOOD, GOOD] and state_uids(tmp_path) == []


def test_crash_after_commit_with_an_identical_message_is_recovered(tmp_path, monkeypatch):
    """The same, with the power lost just after the commit: found (2) > prior (1), so the second
    message is recorded as stored and not fetched again."""
    msgs = [(b"u1", GOOD), (b"u2", GOOD)]
    crash_at(monkeypatch, "committed", 2)
    s = Script(mailbox(msgs))
    with pytest.raises(Crash):
        fetch(tmp_path, s.port)
    monkeypatch.undo()
    seen = []
    s = Script(mailbox(msgs, seen))
    st = fetch(tmp_path, s.port)
    assert st["fetched"] == 0 and b"RETR 2" not in seen
    assert stored(tmp_path) == [GOOD, GOOD] and sorted(state_uids(tmp_path)) == [b"u1", b"u2"]


# --- UIDs and synthetic keys ---------------------------------------------------------------------
def test_real_uid_starting_with_hash_is_a_uid(tmp_path, monkeypatch):
    """'#abc' is a valid UID (RFC 1939: 0x21-0x7E), not a synthetic key: it stays recorded while
    it is on the server, however old, and is never fetched twice."""
    s = Script(mailbox([(b"#abc", GOOD)]))
    assert fetch(tmp_path, s.port)["fetched"] == 1
    real_now = client.compat.now
    monkeypatch.setattr(client.compat, "now", lambda: real_now() + 31 * 86400)
    for _ in range(2):
        s = Script(mailbox([(b"#abc", GOOD)]))
        assert fetch(tmp_path, s.port)["fetched"] == 0
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == [b"#abc"]


def test_no_uidl_quit_lost_then_duplicate_dropped(tmp_path):
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
    assert data.split(b"\n")[1].startswith(b"H ") and b"#" not in data
    seen = []
    s = Script(mailbox([(None, GOOD)], seen))
    st = fetch(tmp_path, s.port, policy="delete")
    assert st["duplicates"] == 1 and st["fetched"] == 0 and st["deleted"] == 1 and seen[-1] == b"QUIT"
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == []


def state_times(tmp_path):
    data = (tmp_path / "state" / "h.uidl").read_bytes()
    return [int(l.split(b" ")[1]) for l in data.split(b"\n")[1:] if l.startswith(b"S ")]


def test_keep_days_clock_unset_at_first_sight(tmp_path, monkeypatch):
    """A board fetches before NTP set its clock (1970): first_seen is recorded as unknown (0),
    stamped by the first session with a set clock, and the message is only deleted keep_days
    after that, not at once for looking 50 years old."""
    real_now = client.compat.now
    t0 = real_now()
    clock = [1000]
    monkeypatch.setattr(client.compat, "now", lambda: clock[0])
    s = Script(mailbox([(b"u1", GOOD)]))
    assert fetch(tmp_path, s.port, policy="keep_days", keep_days=7)["fetched"] == 1
    assert state_times(tmp_path) == [0]
    clock[0] = t0
    seen = []
    s = Script(mailbox([(b"u1", GOOD)], seen))
    assert fetch(tmp_path, s.port, policy="keep_days", keep_days=7)["deleted"] == 0
    assert not any(l.startswith(b"DELE") for l in seen) and state_times(tmp_path) == [t0]
    clock[0] = 1000  # the clock is lost again (no RTC battery): nothing happens either way
    s = Script(mailbox([(b"u1", GOOD)], seen))
    assert fetch(tmp_path, s.port, policy="keep_days", keep_days=7)["deleted"] == 0
    assert state_times(tmp_path) == [t0]
    clock[0] = t0 + 8 * 86400
    seen = []
    s = Script(mailbox([(b"u1", GOOD)], seen))
    assert fetch(tmp_path, s.port, policy="keep_days", keep_days=7)["deleted"] == 1 and b"DELE 1" in seen
    assert stored(tmp_path) == [GOOD] and state_uids(tmp_path) == []


@pytest.mark.parametrize("oversize", [None, "headers"])
def test_headers_without_empty_line(tmp_path, oversize):
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
def test_fetch_cli_opens_the_store_like_the_server(tmp_path, capsys):
    """fetch.main reads the config through config.load and opens the store with its reserve:
    a reserve larger than the free flash stops the delivery (cleanly, with QUIT)."""
    import json

    from pocketpost import fetch as fetchmod

    acct = {"name": "h", "host": "127.0.0.1", "tls": "none", "user": "u", "password": "p", "mailbox": "m",
            "state_dir": str(tmp_path / "state"), "timeouts": {"connect_timeout": 2, "read_timeout": 1}}
    for reserve, fetched in ((1 << 60, 0), (0, 1)):
        seen = []
        s = Script(mailbox([(b"u1", GOOD)], seen))
        acct["port"] = s.port
        cfg = {"store": {"root": str(tmp_path / "store"), "reserve": reserve}, "accounts": [acct]}
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        storemod.reboot()
        assert fetchmod.main(str(tmp_path / "config.json")) == (0 if fetched else 1)
        out = capsys.readouterr().out
        assert ("flash full" in out) == (not fetched) and seen[-1] == b"QUIT"
        assert len(stored(tmp_path)) == fetched


def test_max_entries_per_account(tmp_path):
    """The UIDL state holds at most the account's max_entries (default small enough for an
    ESP32): further new messages wait, reported as state_full, until deletions make room."""
    assert client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p"})["max_entries"] == 200
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
