"""w19-users: what users of the product hit (README / docs as the manual, real peers), each fixed
with a test that fails without the fix."""

import base64
import socket
import time

import pytest

from serverharness import Pop3Server, msg
from smtpharness import SmtpPop3Server


def _hang_up_after(port, lines):
    """A guesser that sends its login and hangs up without waiting for the answer."""
    s = socket.create_connection(("127.0.0.1", port), 5)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(lines)
    time.sleep(0.15)  # (the check runs: ~0.05 s at the harness's iterations)
    s.close()


def _pop3_login_time(port, user=b"alice", pw=b"alice pass"):
    s = socket.create_connection(("127.0.0.1", port), 10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"USER " + user + b"\r\n")
    assert f.readline().startswith(b"+OK")
    t = time.monotonic()
    s.sendall(b"PASS " + pw + b"\r\n")
    r = f.readline()
    took = time.monotonic() - t
    s.sendall(b"QUIT\r\n")
    f.readline()
    s.close()
    return r, took


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = SmtpPop3Server(str(tmp_path_factory.mktemp("w19users")), messages={"alice": [msg(1)]},
                       server={"auth_delays": [1.5], "max_auth_failures": 5})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_pop3_a_right_password_after_a_failure_waits_out_its_delay(srv):
    """README: "Failed logins are delayed 2, 4, 8, 15 s per address". A guesser that hung up on
    each failed login's delay (no answer within the hash's time: wrong) and tried again at once got
    a right password answered at once: one guess every ~0.3 s on a board, whatever the delays.
    Now a login from an address whose last failure's delay is not over waits out the rest of it,
    right password or not; a user who read the failure and typed again waits nothing more."""
    _hang_up_after(srv.port, b"USER alice\r\nPASS guess\r\n")
    r, took = _pop3_login_time(srv.port)
    assert r.startswith(b"+OK"), r
    assert 1.0 < took < 3.0, took  # before: ~0.05 s
    # the failures are forgotten with that login: the next one is answered at once
    r, took = _pop3_login_time(srv.port)
    assert r.startswith(b"+OK") and took < 0.8, (r, took)
    # a user who got the failure's answer (after its delay) and typed again waits nothing more
    r, took = _pop3_login_time(srv.port, pw=b"typo")
    assert r.startswith(b"-ERR [AUTH]") and took > 1.4, (r, took)
    r, took = _pop3_login_time(srv.port)
    assert r.startswith(b"+OK") and took < 0.8, (r, took)


def test_smtp_auth_right_after_a_hung_up_failure_waits_out_its_delay(srv):
    """The same for the SMTP receiver's AUTH (the POP3 users and throttle, README)."""
    plain = base64.b64encode(b"\0alice\0guess")
    s = socket.create_connection(("127.0.0.1", srv.submission_port), 5)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO t\r\nAUTH PLAIN " + plain + b"\r\n")
    time.sleep(0.15)
    s.close()
    s = socket.create_connection(("127.0.0.1", srv.submission_port), 10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO t\r\n")
    while f.readline()[3:4] == b"-":
        pass
    t = time.monotonic()
    s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0alice pass") + b"\r\n")
    r = f.readline()
    took = time.monotonic() - t
    s.sendall(b"QUIT\r\n")
    s.close()
    assert r.startswith(b"235"), r
    assert 1.0 < took < 3.0, took  # before: ~0.05 s
