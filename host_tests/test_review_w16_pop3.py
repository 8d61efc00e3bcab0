"""Stop 25 review of the POP3 server as real clients use it (w16-rvpop3): what the server's log
tells the user whose client failed, and what such clients receive."""

import poplib
import socket
import ssl
import time

import pytest

from serverharness import Pop3Server, msg


@pytest.fixture
def srv(tmp_path):
    s = Pop3Server(str(tmp_path), {"alice": [msg(1)]})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _wait_log(srv, text, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in srv.log():
            return True
        time.sleep(0.05)
    return False


def test_tls_refused_by_client_is_told_in_words(srv):
    """A client that does not trust the self-signed certificate (Thunderbird before the user
    accepts it, poplib / curl without --cacert) ends TLS at once. The log said `closed: OSError
    OSError(-30592, 'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE')` (STLS) or `closed: OSError
    OSError(32,)` (POP3S): nothing a user can act on. It now names the likely cause."""
    untrusting = ssl.create_default_context()  # the system CAs only
    p = poplib.POP3("localhost", srv.port, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        p.stls(untrusting)
    p.sock.close()
    assert _wait_log(srv, "does it trust this server's certificate?"), srv.log()
    n = srv.log().count("does it trust this server's certificate?")
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL("localhost", srv.pop3s_port, context=untrusting, timeout=10)
    deadline = time.time() + 10
    while srv.log().count("does it trust this server's certificate?") == n and time.time() < deadline:
        time.sleep(0.05)
    assert srv.log().count("does it trust this server's certificate?") == n + 1, srv.log()
    n += 1
    # A plain POP3 client on the POP3S port: told which port it wants.
    s = socket.create_connection(("127.0.0.1", srv.pop3s_port), 10)
    s.sendall(b"CAPA\r\n")
    try:
        s.recv(100)
    except OSError:
        pass
    s.close()
    assert _wait_log(srv, "the client does not speak TLS"), srv.log()
    # A client that trusts it logs in as before; a session that ends normally says nothing of TLS.
    ok = ssl.create_default_context(cafile=srv.ca)
    q = poplib.POP3_SSL("localhost", srv.pop3s_port, context=ok, timeout=10)
    q.user("alice")
    q.pass_("alice pass")
    q.quit()
    assert _wait_log(srv, "quit user=alice")
    assert srv.log().count("does it trust") == n, srv.log()


def test_in_use_says_what_to_do(srv):
    """A second client on a mailbox in use (a phone while the laptop's session is open, or a
    session its client abandoned) was told only `-ERR [IN-USE] mailbox is in use by another
    session`: nothing about which, or how long. Now it says to quit the other client or how long
    an abandoned session lasts (the idle timeout: 2 s in this harness, 10 min by default)."""
    a = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    a.user("alice")
    a.pass_("alice pass")
    b = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    b.user("alice")
    with pytest.raises(poplib.error_proto) as e:
        b.pass_("alice pass")
    line = e.value.args[0]
    assert line.startswith(b"-ERR [IN-USE] mailbox is in use by another session"), line
    assert b"quit the other mail client" in line and b"ends after 2 s without a command" in line, line
    assert len(line) < 200  # one status line, well under RFC 2449's 512
    b.close()
    a.quit()


@pytest.mark.parametrize("typed", ["alice@example.org", "Alice", "ALICE@pocketpost.local"])
def test_login_name_as_mail_clients_fill_it_in(srv, typed):
    """Outlook and Apple Mail fill the user name in with the e-mail address (alice@example.org),
    some clients capitalise it: the server answered `-ERR [AUTH] authentication failed` after the
    failure delay, and the user, sure of the password, could not tell why. The address's local
    part (any case) is now the user, for USER/PASS, AUTH PLAIN and AUTH LOGIN; a wrong password
    still fails, and a name that is no user's still fails the same way."""
    p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    p.user(typed)
    assert p.pass_("alice pass").startswith(b"+OK 1 messages")
    p.quit()
    assert _wait_log(srv, "login user=alice method=USER/PASS"), srv.log()
    import base64
    for cmd in ("AUTH PLAIN " + base64.b64encode(b"\0" + typed.encode() + b"\0alice pass").decode(),):
        q = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        assert q._shortcmd(cmd).startswith(b"+OK 1 messages")
        q.quit()
    q = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    q._putcmd("AUTH LOGIN")
    assert q._getline()[0].startswith(b"+ ")
    q._putcmd(base64.b64encode(typed.encode()).decode())
    assert q._getline()[0].startswith(b"+ ")
    assert q._shortcmd(base64.b64encode(b"alice pass").decode()).startswith(b"+OK 1 messages")
    q.quit()
    for name, pw in ((typed, "wrong"), ("nobody@example.org", "alice pass"), ("alice@", "x"), ("@alice", "alice pass")):
        r = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        r.user(name)
        with pytest.raises(poplib.error_proto) as e:
            r.pass_(pw)
        assert e.value.args[0].startswith(b"-ERR [AUTH] authentication failed"), (name, e.value.args)
        r.quit()


def test_tls12_client_refusing_the_certificate_is_told_in_words(srv):
    """A TLS 1.2 client sends its alert inside the handshake (TLS 1.3's comes after it): after
    STLS too, the failure is logged in words, not as the bare mbedTLS error."""
    untrusting = ssl.create_default_context()
    untrusting.maximum_version = ssl.TLSVersion.TLSv1_2
    p = poplib.POP3("localhost", srv.port, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        p.stls(untrusting)
    p.sock.close()
    assert _wait_log(srv, "does it trust this server's certificate?"), srv.log()
    with pytest.raises(ssl.SSLCertVerificationError):
        poplib.POP3_SSL("localhost", srv.pop3s_port, context=untrusting, timeout=10)
    deadline = time.time() + 10
    while srv.log().count("does it trust this server's certificate?") < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert srv.log().count("does it trust this server's certificate?") == 2, srv.log()
