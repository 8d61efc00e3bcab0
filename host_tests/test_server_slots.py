"""Admission at a full cap against the server under micropython, with real clients (listener.py's
theory of operation): a mail client's two connections from one address at once (Thunderbird
checking two accounts at start-up) are both served in turn at the ESP32's caps, the second
waiting for the first to quit (it used to evict the first: poplib saw `-ERR CAPA not supported`);
a silent peer holding the slot is still evicted once the wait runs out; a flood waits at most
two at a time, the rest get the old rule at once; a waiting connection whose peer closes is let
go at once; a client's connection that is getting somewhere is not cut by its own second one;
waiting connections are served in arrival order; one host holding both waiting places gives one
up to another host's newcomer; a POP3S peer that hangs up after its ClientHello while it waits
is let go at once and evicts no one."""

import json
import os
import poplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from helpers import ROOT
from serverharness import Pop3Server, Raw, config, msg, user_reads_all

MAIL = {"alice": [msg(1), msg(2, 200)], "bob": [msg(3)]}


def _board(board="esp32"):
    with open(os.path.join(ROOT, "boards", board, "config.json")) as f:
        return json.load(f)


def _esp32_caps():
    sv = _board()["server"]
    assert (sv["max_sessions"], sv["max_sessions_per_addr"]) == (2, 1)  # the smallest board
    # the wait the board runs with: its config's, else the default
    return {"max_sessions": 2, "max_sessions_per_addr": 1,
            "slot_wait": sv.get("slot_wait", config.SERVER_DEFAULTS["slot_wait"])}


def _count(srv, text):
    """How often text occurs in the server's log since its mark (_server: after the harness's
    start-up probes, so that no probe's line counts for a test's connection)."""
    return srv.log()[getattr(srv, "mark", 0):].count(text)


def _wait_log(srv, text, count, limit=10):
    deadline = time.time() + limit
    while _count(srv, text) < count and time.time() < deadline:
        time.sleep(0.02)
    assert _count(srv, text) >= count, srv.log()[-3000:]


def _server(tmp_path, **sv):
    s = Pop3Server(str(tmp_path), MAIL, server=sv)
    s.start()
    s.mark = s.probes_done()  # the tests count their own connections' lines only
    return s


def _ctx(srv):
    return ssl.create_default_context(cafile=srv.ca)


class RawFrom(Raw):
    def __init__(self, port, source="127.0.0.1", timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0))
        self.buf = b""


def _fds_back(srv, fds):
    deadline = time.time() + 10
    while srv.fds() != fds and time.time() < deadline:
        time.sleep(0.05)
    assert srv.fds() == fds, (srv.fds(), fds)


@pytest.mark.parametrize("tls", [True, False], ids=["pop3s", "pop3"])
def test_two_connections_of_one_client_at_once_are_both_served_in_turn(tmp_path, tls):
    """poplib (alice) connects; curl (bob's account, the same machine) connects while alice's
    session has not logged in yet: it waits for a slot, holding only its socket. poplib then asks
    CAPA (what was answered `-ERR [SYS/TEMP] too many sessions, closing` when the second connection
    evicted the first), logs in, reads, takes its time (a slow link) and quits; curl then gets its
    greeting and its LIST. Nothing evicted, nothing refused."""
    caps = _esp32_caps()
    s = _server(tmp_path, **caps)
    try:
        port = s.pop3s_port if tls else s.port
        fds = s.fds()
        if tls:
            a = poplib.POP3_SSL("localhost", port, timeout=10, context=_ctx(s))
            url = ["--cacert", s.ca, "pop3s://localhost:%d/" % port]
        else:
            a = poplib.POP3("127.0.0.1", port, timeout=10)
            url = ["pop3://127.0.0.1:%d/" % port]
        got = {}

        def second():
            t0 = time.time()
            r = subprocess.run(["curl", "-s", "-S", "--max-time", "30", "-u", "bob:bobpw"] + url,
                               capture_output=True, timeout=40)
            got["curl"] = (r.returncode, r.stdout, r.stderr, time.time() - t0)

        t = threading.Thread(target=second)
        t.start()
        # the server has taken the second connection up (it waits; it used to evict the first)
        deadline = time.time() + 10
        while "127.0.0.1 waits for a slot" not in s.log() and "evicted" not in s.log():
            assert time.time() < deadline, s.log()[-3000:]
            time.sleep(0.02)
        capa = a.capa()
        assert "UIDL" in capa, capa
        a.user("alice")
        a.pass_("alice pass")
        assert a.stat()[0] == 2
        assert b"\r\n".join(a.retr(1)[1]) + b"\r\n" == MAIL["alice"][0]
        time.sleep(1.0)  # a slow link: the second connection keeps waiting meanwhile
        assert a.quit().startswith(b"+OK")
        t.join(40)
        rc, out, err, took = got["curl"]
        assert rc == 0, (rc, err, s.log()[-3000:])
        assert out == b"1 %d\r\n" % len(MAIL["bob"][0]), out
        assert 1.0 < took < caps["slot_wait"], took  # in turn: after the first quit, within the wait
        log = s.log()
        assert log.count("evicted") == 0 and log.count("refused") == 0, log[-3000:]
        assert log.count("waits for a slot") == 1
        _fds_back(s, fds)
    finally:
        s.stop()


def test_a_silent_peer_holding_the_slot_is_evicted_once_the_wait_runs_out(tmp_path):
    """A silent peer (greeted, then nothing) holds 127.0.0.1's one slot, a silent POP3S peer
    from 127.0.0.2 the other: poplib from 127.0.0.1 waits slot_wait, then takes the silent
    peer's slot (told why) and reads its mail; the other address's peer is left alone."""
    wait = 2.0
    s = _server(tmp_path, max_sessions=2, max_sessions_per_addr=1, slot_wait=wait,
                tls_handshake_timeout=20, auth_timeout=60)
    try:
        silent = Raw(s.port)
        assert silent.line().startswith(b"+OK")
        other = socket.create_connection(("127.0.0.1", s.pop3s_port), 10, source_address=("127.0.0.2", 0))
        _wait_log(s, " connect tls=1", 1)
        got, waited = user_reads_all(s.port, 2)
        assert got == MAIL["alice"]
        assert wait * 0.9 < waited < wait + 3, waited
        assert silent.eof(5) and silent.buf == b"-ERR [SYS/TEMP] too many sessions, closing\r\n", silent.buf
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.recv(100)  # still open, nothing said
        assert s.log().count("evicted") == 1
        other.close()
    finally:
        s.stop()


def test_a_flood_waits_at_most_two_at_a_time(tmp_path):
    """alice is logged in on 127.0.0.1's one slot; six more connections from there, one right
    after the other: two wait for a slot, the other four are refused at once (the old rule: no pre-auth slot to take);
    the two are refused when their wait runs out. Nothing leaks; alice is served throughout."""
    wait = 2.0
    s = _server(tmp_path, max_sessions=2, max_sessions_per_addr=1, slot_wait=wait, idle_timeout=30)
    try:
        fds = s.fds()
        a = Raw(s.port)
        assert a.line().startswith(b"+OK")
        a.cmd(b"USER alice")
        assert a.cmd(b"PASS alice pass").startswith(b"+OK")
        flood = []
        t0 = []
        for _ in range(6):  # (a few ms apart: the listen backlog is 4, and a dropped SYN costs 1 s)
            flood.append(Raw(s.port))
            t0.append(time.time())
            time.sleep(0.02)
        ends = {}
        while len(ends) < 6 and time.time() - t0[0] < wait + 5:
            for i, c in enumerate(flood):
                if i not in ends and c.eof(0.02):
                    ends[i] = (time.time() - t0[i], c.buf)
        assert len(ends) == 6, ends
        quick = sorted(v[0] for v in ends.values())
        assert quick[3] < wait * 0.5 and quick[4] > wait * 0.9 and quick[5] < wait + 2, quick
        for took, said in ends.values():
            assert said == b"-ERR [SYS/TEMP] too many sessions, try later\r\n", said
        assert s.log().count("waits for a slot") == 2, s.log()[-3000:]
        assert s.log().count("refused") == 6 and s.log().count("evicted") == 0
        assert a.cmd(b"STAT").startswith(b"+OK 2 ")
        a.cmd(b"QUIT")
        assert a.eof(3)
        for c in flood:
            c.close()
        _fds_back(s, fds)
    finally:
        s.stop()


def test_a_waiting_connection_whose_peer_closes_is_let_go(tmp_path):
    """A connection waiting for a slot that its peer closes (plain port; POP3S before any
    ClientHello) is let go at once, not at the end of its 10 s wait: its socket is closed and the
    waiting room has room again."""
    s = _server(tmp_path, max_sessions=2, max_sessions_per_addr=1, slot_wait=10, idle_timeout=60)
    try:
        fds = s.fds()
        a = Raw(s.port)
        assert a.line().startswith(b"+OK")
        a.cmd(b"USER alice")
        assert a.cmd(b"PASS alice pass").startswith(b"+OK")
        fds_in = s.fds()
        for n, port in enumerate((s.port, s.pop3s_port)):
            w = socket.create_connection(("127.0.0.1", port), 10)
            _wait_log(s, "waits for a slot", n + 1)
            t0 = time.time()
            w.close()
            _wait_log(s, "gone while waiting for a slot", n + 1, 3)
            assert time.time() - t0 < 1.0
            _fds_back(s, fds_in)
        # the waiting room is free again: two more wait (none refused at once)
        ws = [Raw(s.port), Raw(s.port)]
        _wait_log(s, "waits for a slot", 4)
        assert "refused" not in s.log()
        a.cmd(b"QUIT")
        assert a.eof(3)
        assert ws[0].line().startswith(b"+OK") or ws[1].line().startswith(b"+OK")  # one gets the slot
        for w in ws:
            w.close()
        _fds_back(s, fds)
    finally:
        s.stop()


def test_a_connection_getting_somewhere_is_not_cut_by_its_own_addresss_next_one(tmp_path):
    """A client's connection that answers commands before its login (CAPA every 0.3 s here, as a
    client that looks at CAPA, then AUTH, takes its round trips) is young and getting somewhere: a
    second connection from its address, once its wait runs out, is refused, not given the first's
    slot. Once the first has said nothing for 3 s, the next one from its address takes it."""
    wait = 1.0
    s = _server(tmp_path, max_sessions=2, max_sessions_per_addr=1, slot_wait=wait, auth_timeout=60)
    try:
        p = Raw(s.port)
        assert p.line().startswith(b"+OK")
        n = Raw(s.port)
        t0 = time.time()
        while time.time() - t0 < wait + 1.0:
            p.send(b"CAPA\r\n")
            assert p.line().startswith(b"+OK")
            p.block()
            time.sleep(0.3)
        assert n.eof(2) and n.buf == b"-ERR [SYS/TEMP] too many sessions, try later\r\n", n.buf
        assert p.cmd(b"NOOP").startswith(b"-ERR")  # still there (NOOP before login: -ERR)
        time.sleep(3.2)  # nothing said for longer than it counts as getting somewhere
        m = Raw(s.port)
        t1 = time.time()
        assert m.line().startswith(b"+OK")
        assert wait * 0.9 < time.time() - t1 < wait + 2
        assert p.eof(3) and p.buf == b"-ERR [SYS/TEMP] too many sessions, closing\r\n", p.buf
        assert s.log().count("evicted") == 1
    finally:
        s.stop()


class _From(poplib.POP3):
    """poplib from a source address of our choosing (127.0.0.x: a host of its own to the caps)."""

    def __init__(self, source, port):
        self.source = source
        super().__init__("127.0.0.1", port, timeout=15)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def _account(port, name, pw, got, t0, source="127.0.0.1", hold=0.0):
    """One account's check, as a mail client does it: greeting, login, STAT, QUIT; its greeting's
    time (from t0) in got[name], or the error."""
    try:
        p = _From(source, port)
        greeted = time.time() - t0
        p.user(name)
        p.pass_(pw)
        p.stat()
        time.sleep(hold)
        p.quit()
        got[name] = greeted
    except Exception as e:
        got[name] = repr(e)


def test_accounts_checked_at_once_from_one_address_are_served_in_arrival_order(tmp_path):
    """One PC checks three accounts at the ESP32's caps: alice's connection is logged in, bob's
    waits; alice quits and carol's connection arrives right after. bob, who came first, gets the
    slot (carol found it free and took it: bob then waited on, and on the board was refused
    after the 8 s, his wait spent); carol waits and is served when bob quits."""
    caps = _esp32_caps()
    s = _server(tmp_path, **dict(caps, slot_wait=4))
    s_users = {"bob": "bobpw", "carol": "carolpw"}
    try:
        a = _From("127.0.0.1", s.port)
        a.user("alice")
        a.pass_("alice pass")
        got = {}
        t0 = time.time()
        tb = threading.Thread(target=_account, args=(s.port, "bob", s_users["bob"], got, t0, "127.0.0.1", 0.5))
        tb.start()
        _wait_log(s, "127.0.0.1 waits for a slot", 1)
        assert a.quit().startswith(b"+OK")
        tc = threading.Thread(target=_account, args=(s.port, "carol", s_users["carol"], got, t0))
        tc.start()
        tb.join(20)
        tc.join(20)
        assert isinstance(got.get("bob"), float) and isinstance(got.get("carol"), float), (got, s.log()[-3000:])
        assert got["bob"] + 0.4 < got["carol"], got  # carol after bob's session (0.5 s held)
        log = s.log()
        assert log.count("evicted") == 0 and log.count("refused") == 0, log[-3000:]
    finally:
        s.stop()


def test_one_host_holding_both_waiting_places_does_not_keep_another_from_waiting(tmp_path):
    """An attacker (127.0.0.3) holds a silent slot and both waiting places of POP3. A user's PC
    (127.0.0.2) is logged in on one account and opens a second connection for another: it takes
    the attacker's newest waiting place (it was refused at once: the room full, its own slot logged
    in) and is served when the first quits. The attacker's displaced connection gets the rule at
    once (it evicts the attacker's own silent slot)."""
    caps = _esp32_caps()
    s = _server(tmp_path, **dict(caps, slot_wait=4, auth_timeout=60))
    try:
        silent = RawFrom(s.port, "127.0.0.3")
        assert silent.line().startswith(b"+OK")
        a = _From("127.0.0.2", s.port)
        a.user("alice")
        a.pass_("alice pass")
        room = [RawFrom(s.port, "127.0.0.3") for _ in range(2)]
        _wait_log(s, "127.0.0.3 waits for a slot (2 waiting)", 1)
        got = {}
        t0 = time.time()
        tb = threading.Thread(target=_account, args=(s.port, "bob", "bobpw", got, t0, "127.0.0.2"))
        tb.start()
        _wait_log(s, "127.0.0.2 waits for a slot", 1)
        time.sleep(0.5)
        assert a.quit().startswith(b"+OK")
        tb.join(20)
        assert isinstance(got.get("bob"), float) and got["bob"] < 3, (got, s.log()[-3000:])
        log = s.log()
        assert "127.0.0.3 gives its place in the waiting room to 127.0.0.2" in log, log[-3000:]
        assert "refused" not in log, log[-3000:]
        for c in [silent] + room:
            c.close()
    finally:
        s.stop()


def _hello_then_hang_up(port, src):
    """A TLS client from src that sends its ClientHello, gets no answer (it waits for a slot) and
    hangs up: whether its handshake timed out on the client's side."""
    g = socket.create_connection(("127.0.0.1", port), 10, source_address=(src, 0))
    g.settimeout(0.3)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.wrap_socket(g, server_hostname="localhost")
    except (socket.timeout, TimeoutError):
        return True
    finally:
        g.close()
    return False


def test_a_pop3s_peer_that_hangs_up_after_its_hello_while_waiting_is_let_go_and_evicts_no_one(tmp_path):
    """A POP3S peer sends its ClientHello and hangs up while it waits for a slot: its close,
    behind the unread hello, was seen only when its wait ended, and then it evicted the session
    not yet logged in (the user's client, greeted and about to log in) before its own handshake
    failed. Its close is seen while it waits now (poll's POLLRDHUP on the unix port): it is let go
    at once and evicts no one. A client that waits and then refuses the certificate still gets
    the hint."""
    s = _server(tmp_path, max_sessions=1, max_sessions_per_addr=1, slot_wait=2, idle_timeout=60, auth_timeout=30)
    try:
        a = Raw(s.port)  # greeted, not logged in yet: pre-auth, its slot evictable
        assert a.line().startswith(b"+OK")
        assert _hello_then_hang_up(s.pop3s_port, "127.0.0.3")
        _wait_log(s, "127.0.0.3 gone while waiting for a slot", 1, 1.5)  # within its 2 s wait
        time.sleep(2.5)  # past the end of that wait: nothing evicted then either
        a.cmd(b"USER alice")
        assert a.cmd(b"PASS alice pass").startswith(b"+OK"), s.log()[-3000:]
        assert _count(s, "evicted") == 0, s.log()[-3000:]
        got = []

        def refuses():  # a client that waits, then refuses the certificate
            try:
                poplib.POP3_SSL("localhost", s.pop3s_port, context=ssl.create_default_context(), timeout=10)
            except ssl.SSLCertVerificationError:
                got.append(True)

        t = threading.Thread(target=refuses)
        t.start()
        _wait_log(s, "waits for a slot", 2)
        time.sleep(0.3)
        assert a.cmd(b"QUIT").startswith(b"+OK")  # the slot goes to the waiting connection
        t.join(10)
        assert got == [True]
        _wait_log(s, "does it trust this server's certificate?", 1, 5)
    finally:
        s.stop()
