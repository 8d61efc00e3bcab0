"""Hostile input against the server under micropython: overlong lines, NUL, bare LF, garbage,
commands out of state, a pipelined flood, idle clients, a client that stops reading mid-RETR, drops,
two sessions on one mailbox, wrong passwords, plain text on the POP3S port, session limits."""

import fcntl
import re
import socket
import struct
import termios
import time

import pytest

from serverharness import Pop3Server, Raw, msg

BIG = msg(50, 1, b"y" * 70 + b"\r\n") + b"".join(b"%07d " % i + b"z" * 100 + b"\r\n" for i in range(20000))  # ~2.2 MB
MSGS = [msg(1), msg(2), BIG]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Pop3Server(str(tmp_path_factory.mktemp("hostile")), {"alice": MSGS, "bob": [msg(7)]})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def wait_for(cond, what, timeout=10):
    """Poll cond() until it is true (bounded): synchronisation without guessing a sleep."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.02)


def open_sessions(srv):
    """Sessions open as of the server's last connect/disconnect log line."""
    vals = re.findall(r" sessions=(\d+)", srv.log())
    return int(vals[-1]) if vals else 0


def accepted(srv):
    """Connections the server has taken up so far (each logs a connect or a refusal)."""
    return len(re.findall(r" connect tls=| refused: ", srv.log()))


def pending_bytes(sock):
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def login(port, user=b"alice", pw=b"alice pass"):
    c = Raw(port)
    assert c.line().startswith(b"+OK")
    assert c.cmd(b"USER " + user).startswith(b"+OK")
    r = c.cmd(b"PASS " + pw)
    return c, r


def test_overlong_nul_bare_lf_garbage(srv):
    c = Raw(srv.port)
    c.line()
    # overlong: one -ERR, and its tail ("QUIT") is never read as a command
    c.send(b"NOOP " + b"x" * 400 + b"QUIT\r\n")
    assert c.line().startswith(b"-ERR")
    assert c.cmd(b"CAPA").startswith(b"+OK")
    c.block()
    c.send(b"US\x00ER alice\r\n")
    assert c.line().startswith(b"-ERR")
    c.send(b"USER alice\n")  # bare LF accepted; replies always end in CRLF
    assert c.line() == b"+OK send PASS"
    c.send(b"PASS alice pass\n")
    assert c.line().startswith(b"+OK")
    garbage = bytes((i * 37 + 11) % 256 for i in range(3000)).replace(b"\n", b"")
    c.send(garbage + b"\r\n")
    # whatever the garbage was cut into, every reply is an -ERR line, then the session still works
    c.send(b"STAT\r\n")
    for _ in range(100):
        ln = c.line()
        if ln.startswith(b"+OK"):
            assert ln.startswith(b"+OK 3 ")
            break
        assert ln.startswith(b"-ERR"), ln
    else:
        raise AssertionError("no STAT reply")
    assert c.cmd(b"QUIT").startswith(b"+OK")
    assert c.eof()
    assert srv.alive()


def test_commands_out_of_state(srv):
    c = Raw(srv.port)
    c.line()
    for cmd in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"TOP 1 1", b"UIDL", b"RSET", b"NOOP", b"PASS x"):
        assert c.cmd(cmd).startswith(b"-ERR"), cmd
    c.cmd(b"USER alice")
    assert c.cmd(b"PASS alice pass").startswith(b"+OK")
    for cmd in (b"USER alice", b"PASS x", b"APOP a b", b"AUTH PLAIN", b"STLS"):
        assert c.cmd(cmd).startswith(b"-ERR"), cmd
    c.cmd(b"QUIT")
    c.close()


def test_pipelined_flood_in_order(srv):
    c, r = login(srv.port)
    assert r.startswith(b"+OK")
    n = 3000
    batch = b"".join(b"LIST %d\r\n" % (1 + i % 3) for i in range(n)) + b"NOOP\r\n"
    c.send(batch)
    for i in range(n):
        k = 1 + i % 3
        assert c.line() == b"+OK %d %d" % (k, len(MSGS[k - 1])), i
    assert c.line() == b"+OK"
    c.cmd(b"QUIT")
    c.close()


def test_idle_timeout(srv):
    c, r = login(srv.port, b"bob", b"bobpw")  # logged in: the idle timer (2 s here) applies
    assert r.startswith(b"+OK")
    t = time.time()
    assert c.eof(timeout=10)
    took = time.time() - t
    assert 1.5 < took < 6, took
    assert b"idle timeout" in c.buf


def test_stalled_reader_stalls_only_itself(srv):
    c, r = login(srv.port)
    assert r.startswith(b"+OK")
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(b"RETR 3\r\n")  # ~2.2 MB, and we do not read it
    wait_for(lambda: pending_bytes(c.s) >= 4096, "the server to stream RETR 3 into our full window")
    # another session on another mailbox is served meanwhile
    t = time.time()
    d, r = login(srv.port, b"bob", b"bobpw")
    assert r.startswith(b"+OK")
    d.send(b"RETR 1\r\n")
    assert d.line().startswith(b"+OK")
    assert b"\r\n".join(d.block()) + b"\r\n" == msg(7)
    d.cmd(b"QUIT")
    assert time.time() - t < 2
    # the stalled session is dropped by the idle timeout, and its lock is freed
    deadline = time.time() + 10
    while time.time() < deadline:
        e, r = login(srv.port)
        e.cmd(b"QUIT")
        e.close()
        if r.startswith(b"+OK"):
            break
        assert b"[IN-USE]" in r
        time.sleep(0.5)
    else:
        raise AssertionError("lock of the stalled session never freed")
    c.close()


def test_drop_mid_session_deletes_nothing_and_frees_lock(srv):
    c, r = login(srv.port)
    assert c.cmd(b"DELE 1").startswith(b"+OK")
    assert c.cmd(b"DELE 2").startswith(b"+OK")
    d, r = login(srv.port)
    assert r.startswith(b"-ERR [IN-USE]")
    c.s.close()  # drop without QUIT
    for _ in range(50):
        e, r = login(srv.port)
        if r.startswith(b"+OK"):
            break
        e.close()
        time.sleep(0.1)
    assert r.startswith(b"+OK")
    assert e.cmd(b"STAT").startswith(b"+OK 3 ")
    e.cmd(b"QUIT")
    # and the first blocked client may retry on the same connection
    d.send(b"USER alice\r\n")
    d.line()
    assert d.cmd(b"PASS alice pass").startswith(b"+OK")
    d.cmd(b"QUIT")


def test_wrong_passwords_growing_delay_no_enumeration(tmp_path):
    s = Pop3Server(str(tmp_path), {"alice": [msg(1)]}, server={"max_auth_failures": 5})
    s.start()
    try:
        c = Raw(s.port)
        c.line()
        times = []
        answers = []
        for user in (b"alice", b"nobody", b"alice", b"nobody"):
            c.cmd(b"USER " + user)
            t = time.time()
            answers.append(c.cmd(b"PASS wrong"))
            times.append(time.time() - t)
        assert len(set(answers)) == 1 and answers[0].startswith(b"-ERR [AUTH]")
        # delays 0.2, 0.4, 0.8, 0.8 (+ hashing): growing, same for unknown and known users
        assert 0.18 < times[0] < 0.35 and 0.38 < times[1] < 0.6 and 0.78 < times[2] < 1.1 and times[3] > 0.78, times
        c.cmd(b"USER alice")
        assert c.cmd(b"PASS wrong again").startswith(b"-ERR [AUTH]")
        assert c.eof(3)  # max_auth_failures reached: closed
        # the address is still penalised in a new session
        c = Raw(s.port)
        c.line()
        c.cmd(b"USER alice")
        t = time.time()
        c.cmd(b"PASS wrong")
        assert time.time() - t > 0.75
        assert c.cmd(b"USER alice").startswith(b"+OK")
        assert c.cmd(b"PASS alice pass").startswith(b"+OK")
        assert c.cmd(b"DELE 1").startswith(b"+OK")
        c.cmd(b"QUIT")
        assert c.eof(3)
    finally:
        s.stop()
    # The log: ISO 8601 UTC stamps (the host's clock is set), the session number on every line of
    # a session, each failed login with its method and the delay it was given.
    lines = [ln for ln in s.log().splitlines() if " pop3 #" in ln]
    for ln in lines:
        stamp = ln.split(" ")[0]
        assert len(stamp) == 20 and stamp[10] == "T" and stamp.endswith("Z"), ln
    sids = []  # the sessions that logged something beyond connect/disconnect, in order
    for ln in lines:
        sid = ln.split(" pop3 #", 1)[1].split(" ", 1)[0]
        if "login" in ln and sid not in sids:
            sids.append(sid)
    assert len(sids) == 2, lines
    first = [ln.split(" INFO ", 1)[1] for ln in lines if " pop3 #%s " % sids[0] in ln]
    second = [ln.split(" INFO ", 1)[1] for ln in lines if " pop3 #%s " % sids[1] in ln]
    fails = [ln for ln in first if "login failed" in ln]
    assert [f.split("login failed ", 1)[1] for f in fails] == [
        "user=alice method=USER/PASS failures=1 delay=0.2s", "user=nobody method=USER/PASS failures=2 delay=0.4s",
        "user=alice method=USER/PASS failures=3 delay=0.8s", "user=nobody method=USER/PASS failures=4 delay=0.8s",
        "user=alice method=USER/PASS failures=5 delay=0.8s"], first
    assert fails[0].startswith("pop3 #%s 127.0.0.1 login failed" % sids[0])
    tag = "pop3 #%s 127.0.0.1 " % sids[1]
    assert tag + "login failed user=alice method=USER/PASS failures=1 delay=0.8s" in second, second
    assert tag + "login user=alice method=USER/PASS tls=0 messages=1" in second, second
    assert tag + "quit user=alice deleted=1" in second, second


def test_plaintext_on_pop3s_port_leaks_nothing(srv):
    wait_for(lambda: open_sessions(srv) == 0, "the earlier tests' sessions to end")
    before = srv.fds()
    taken = accepted(srv)
    for i in range(20):
        c = socket.create_connection(("127.0.0.1", srv.pop3s_port), 5)
        c.sendall(b"USER alice\r\nPASS x\r\n" if i % 2 else b"\x16\x03\x01\x00\x05garbage" * 3)
        c.close()
    for i in range(5):  # and some that just connect and wait for the idle timeout
        c = socket.create_connection(("127.0.0.1", srv.pop3s_port), 5)
        c.close()
    # every one of the 25 was taken up by the server, and every session has ended...
    wait_for(lambda: accepted(srv) >= taken + 25 and open_sessions(srv) == 0, "all 25 connections handled")
    # ...and the descriptors are back (a close may trail the log line by a moment)
    wait_for(lambda: srv.fds() == before, "the fd count to return to %d" % before, timeout=8)
    assert srv.alive()
    # still serving TLS
    import ssl
    ctx = ssl.create_default_context(cafile=srv.ca)
    with socket.create_connection(("127.0.0.1", srv.pop3s_port), 5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as t:
            assert t.recv(100).startswith(b"+OK")


class RawFrom(Raw):
    """A Raw client whose connection comes from another loopback address (Linux routes 127/8)."""

    def __init__(self, port, source, timeout=10):
        self.s = socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0))
        self.buf = b""


def test_session_limits(tmp_path):
    s = Pop3Server(str(tmp_path), {"alice": [msg(1)], "bob": [msg(2)]},
                   server={"max_sessions": 2, "max_sessions_per_addr": 2, "trusted_networks": []})
    s.start()
    try:
        wait_for(lambda: open_sessions(s) == 0, "the start-up probes' sessions to end")
        a = Raw(s.port)
        b = Raw(s.port)
        assert a.line().startswith(b"+OK") and b.line().startswith(b"+OK")
        # full, but only of connections not logged in: after its wait for a slot (0.3 s) the new one
        # takes the oldest one's slot, which is told why (as a refused one is), not dropped without a word
        c = Raw(s.port)
        assert c.line().startswith(b"+OK")
        assert a.eof(3) and a.buf == b"-ERR [SYS/TEMP] too many sessions, closing\r\n", a.buf
        # loopback is not trusted here: plain-text login refused until STLS
        assert c.cmd(b"USER alice").startswith(b"-ERR [AUTH]")
        c.send(b"CAPA\r\n")
        assert c.line().startswith(b"+OK")
        capa = c.block()
        assert b"STLS" in capa and b"USER" not in capa
        c.cmd(b"QUIT")
        assert c.eof(3)
        b.close()
        assert s.alive()
    finally:
        s.stop()


def test_session_limit_full_of_logged_in_users_refuses(tmp_path):
    # (idle_timeout: the two logged-in sessions outlast the refused ones' waits for a slot, 0.3 s each)
    s = Pop3Server(str(tmp_path), {"alice": [msg(1)], "bob": [msg(2)]},
                   server={"max_sessions": 2, "max_sessions_per_addr": 2, "idle_timeout": 30})
    s.start()
    try:
        a, r = login(s.port)
        assert r.startswith(b"+OK")
        b, r = login(s.port, b"bob", b"bobpw")
        assert r.startswith(b"+OK")
        c = Raw(s.port)  # a third from 127.0.0.1: the per-address cap, every slot logged in: after its wait
        assert c.line().startswith(b"-ERR [SYS/TEMP]")
        assert c.eof(3)
        e = RawFrom(s.port, "127.0.0.2")  # another address: the global cap
        assert e.line().startswith(b"-ERR [SYS/TEMP]")
        assert e.eof(3)
        refusals = [ln.split(" WARN ", 1)[1] for ln in s.log().splitlines() if "refused" in ln]
        assert refusals == [
            "pop3 127.0.0.1 refused: per-address cap max_sessions_per_addr=2 reached, every slot logged in or logging in"
            " (open: 2 in all, 2 from 127.0.0.1)",
            "pop3 127.0.0.2 refused: global session cap max_sessions=2 reached, every slot logged in or logging in"
            " (open: 2 in all, 0 from 127.0.0.2)"], refusals
        assert a.cmd(b"STAT").startswith(b"+OK 1 ") and b.cmd(b"STAT").startswith(b"+OK 1 ")
        a.cmd(b"QUIT")
        assert a.eof(3)
        for _ in range(50):  # the slot is free again once the server has seen the QUIT through
            d = Raw(s.port)
            if d.line().startswith(b"+OK"):
                break
            d.close()
            time.sleep(0.05)
        else:
            raise AssertionError("slot never freed")
        assert s.alive()
    finally:
        s.stop()
