"""The server's named deadlines under micropython (server.py's docstring): a whole TLS handshake
(POP3S and after STLS), the AUTHORIZATION state from connect, and idle once logged in. Each
closes the connection with a log line naming it; a garbage ClientHello is cut at the handshake
deadline, not held until the idle timeout."""

import select
import socket
import time

import pytest

from serverharness import Pop3Server, Raw, msg

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
    for k in ("pop3s", "silent", "stls"):
        assert HANDSHAKE_S * 0.8 < took.get(k, 99) < HANDSHAKE_S + 1.2, took
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
