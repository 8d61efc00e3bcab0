"""The server's named deadlines under micropython (server.py's docstring): a whole TLS handshake
(POP3S and after STLS), the AUTHORIZATION state from connect, and idle once logged in. Each
closes the connection with a log line naming it; a garbage ClientHello is cut at the handshake
deadline, not held until the idle timeout."""

import select
import socket
import time

import pytest

from serverharness import Pop3Server, Raw, msg, user_reads_all

HANDSHAKE_S = 1.0
AUTH_S = 3.0
IDLE_S = 2.0

# A TLS record header (handshake, TLS 1.0, 16384 octets) whose handshake message, a ClientHello,
# claims 8 MB: mbedTLS waits for the rest of the record forever.
GARBAGE_HELLO = b"\x16\x03\x01\x40\x00" + b"\x01\x80\x00\x00" + b"\x03\x03" + b"\x00" * 40


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Pop3Server(str(tmp_path_factory.mktemp("deadlines")), {"alice": [msg(1)]},
                   server={"tls_handshake_timeout": HANDSHAKE_S, "auth_timeout": AUTH_S, "idle_timeout": IDLE_S})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def closed_after(socks, limit):
    """{name: seconds until the server closed it} for every socket (bounded by limit)."""
    t0 = time.time()
    left = dict(socks)
    out = {}
    while left and time.time() - t0 < limit:
        r, _, _ = select.select(list(left.values()), [], [], 0.05)
        for s in r:
            name = [k for k, v in left.items() if v is s][0]
            try:
                d = s.recv(65536)
            except (ConnectionResetError, OSError):
                d = b""
            if not d:
                out[name] = time.time() - t0
                del left[name]
    return out


def test_handshake_deadline(srv):
    """A garbage ClientHello (POP3S and after STLS) and a silent POP3S peer are cut at the
    handshake deadline, well before the AUTHORIZATION one."""
    before = srv.log().count("tls-handshake deadline passed")
    g = socket.create_connection(("127.0.0.1", srv.pop3s_port), 5)
    g.sendall(GARBAGE_HELLO)
    s = socket.create_connection(("127.0.0.1", srv.pop3s_port), 5)
    c = Raw(srv.port)
    assert c.line().startswith(b"+OK")
    assert c.cmd(b"STLS").startswith(b"+OK")
    c.send(GARBAGE_HELLO)
    took = closed_after({"pop3s": g, "silent": s, "stls": c.s}, AUTH_S + 5)
    for k in ("pop3s", "silent", "stls"):  # before the AUTHORIZATION deadline could have cut it
        assert HANDSHAKE_S * 0.8 < took.get(k, 99) < AUTH_S - 0.3, took
    deadline = time.time() + 5
    while srv.log().count("tls-handshake deadline passed") < before + 3 and time.time() < deadline:
        time.sleep(0.05)
    assert srv.log().count("tls-handshake deadline passed") == before + 3, srv.log()


def test_authorization_deadline_and_idle_after_login(srv):
    """AUTHORIZATION: from connect, however busy the peer is; once logged in, only idle counts."""
    q = Raw(srv.port)
    q.line()
    b = Raw(srv.port)  # busy: a CAPA every 0.3 s does not extend the deadline
    b.line()
    a = Raw(srv.port)
    a.line()
    a.cmd(b"USER alice")
    assert a.cmd(b"PASS alice pass").startswith(b"+OK")
    t0 = time.time()
    while time.time() - t0 < AUTH_S - 0.6:
        b.send(b"CAPA\r\n")
        assert b.line().startswith(b"+OK")
        b.block()
        assert a.cmd(b"NOOP").startswith(b"+OK")
        time.sleep(0.3)
    took = closed_after({"silent": q.s, "busy": b.s}, 5)
    for k in ("silent", "busy"):
        assert AUTH_S * 0.8 < took.get(k, 99) + (AUTH_S - 0.6) < AUTH_S + 1.5, took
    # logged in and active: past the AUTHORIZATION deadline, still served
    while time.time() - t0 < AUTH_S + 0.5:
        assert a.cmd(b"NOOP").startswith(b"+OK")
        time.sleep(0.3)
    t1 = time.time()
    assert a.eof(IDLE_S + 3)
    assert IDLE_S * 0.8 < time.time() - t1 < IDLE_S + 1.5
    assert b"-ERR idle timeout" in a.buf
    log = srv.log()
    assert log.count("authorization deadline passed") >= 2 and "idle deadline passed" in log, log


# --- fairness: pre-auth connections never keep a user out (listener.py, class Slots) ----------

SLOT_WAIT = 2.0  # seconds a connection that finds a cap full waits for a slot before it evicts


def _board_caps(board="esp32"):
    import json
    import os

    from helpers import ROOT

    with open(os.path.join(ROOT, "boards", board, "config.json")) as f:
        sv = json.load(f)["server"]
    return sv["max_sessions"], sv["max_sessions_per_addr"]


def _conn(port, src):
    s = socket.socket()
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def _wait_log(srv, text, count, limit=10):
    deadline = time.time() + limit
    while srv.log().count(text) < count and time.time() < deadline:
        time.sleep(0.02)
    assert srv.log().count(text) >= count, srv.log()


def test_preauth_connections_never_keep_a_user_out(tmp_path):
    """Six pre-auth attackers above the ESP32's caps, then a user: each connection that finds a
    cap full waits SLOT_WAIT for a slot (none frees: the attackers never log in), then takes the
    oldest pre-auth slot it may (its own address's at the per-address cap). The user waits that
    long too, then takes the failed login's slot (in its 30 s delay) and reads the mail, far
    below every deadline."""
    max_sessions, per_addr = _board_caps("esp32")  # the smallest board: 2 sessions, 1 per address
    assert (max_sessions, per_addr) == (2, 1)
    mail = [msg(1), msg(2, 200)]
    s = Pop3Server(str(tmp_path), {"alice": mail}, server={
        "max_sessions": max_sessions, "max_sessions_per_addr": per_addr, "slot_wait": SLOT_WAIT,
        # the real deadlines and a long failed-login delay: only eviction can free a slot here
        "tls_handshake_timeout": 20, "auth_timeout": 60, "idle_timeout": 600, "auth_delays": [30]})
    s.start()
    held = []
    try:
        s.probes_done()
        connects = [s.log().count(" connect tls=")]
        fds = s.fds()
        admitted_after = []

        def attacker(src, kind):
            port = s.pop3s_port if kind != "silent" and kind != "failed-login" else s.port
            t0 = time.time()
            c = _conn(port, src)
            held.append((kind, src, c))
            connects[0] += 1
            _wait_log(s, " connect tls=", connects[0], SLOT_WAIT + 10)
            admitted_after.append(time.time() - t0)
            if kind == "garbage-tls":
                c.sendall(GARBAGE_HELLO)
            elif kind == "failed-login":
                r = Raw.__new__(Raw)
                r.s, r.buf = c, b""
                assert r.line().startswith(b"+OK")
                r.send(b"USER alice\r\nPASS wrong\r\n")
                assert r.line().startswith(b"+OK")
                _wait_log(s, "login failed", 1)  # now in its 30 s delay, holding its slot
            return c

        # six attackers (above the cap of 2) from two addresses, each kind of pre-auth peer
        attacker("127.0.0.2", "silent")
        attacker("127.0.0.3", "silent-tls")
        attacker("127.0.0.3", "garbage-tls")
        last_b = attacker("127.0.0.3", "failed-login")
        attacker("127.0.0.2", "garbage-tls")
        last_a = attacker("127.0.0.2", "silent-tls")
        assert s.log().count("evicted") == 4, s.log()  # each address churned only its own slot
        assert s.log().count("#8 127.0.0.2 evicted") == 0
        # the two below the caps at once; each above them after its wait (nothing frees a slot)
        assert max(admitted_after[:2]) < SLOT_WAIT * 0.5, admitted_after
        for took in admitted_after[2:]:
            assert SLOT_WAIT * 0.9 < took < SLOT_WAIT + 2, admitted_after
        assert s.log().count("waits for a slot") == 4, s.log()

        got, waited = user_reads_all(s.port, len(mail))
        assert got == mail
        # the wait, then far below every deadline (20 s, 60 s, the 30 s delay)
        assert SLOT_WAIT * 0.9 < waited < SLOT_WAIT + 3, waited
        # the oldest pre-auth slot (the failed login in its delay) was taken; the newest is still held
        last_b.settimeout(5)  # told why, in place of the reply its failed PASS was waiting for
        assert last_b.recv(100) == b"-ERR [SYS/TEMP] too many sessions, closing\r\n"
        assert last_b.recv(100) == b""
        last_a.setblocking(False)
        try:
            d = last_a.recv(100)
            raise AssertionError("the newest pre-auth connection was closed: %r" % d)
        except BlockingIOError:
            pass  # still open: held while the user logged in and read the mail
        assert s.log().count("evicted") == 5, s.log()
        print("pre-auth attackers: %d opened, %d held open while the user logged in; user waited %.3f s"
              " (slot_wait %.1f s)" % (len(held), 1, waited, SLOT_WAIT))
        assert s.alive()
        for _, _, c in held:
            c.close()
        deadline = time.time() + 10  # evicted (cancelled) sessions leaked no socket
        while s.fds() != fds and time.time() < deadline:
            time.sleep(0.05)
        assert s.fds() == fds, (s.fds(), fds)
    finally:
        for _, _, c in held:
            c.close()
        s.stop()
