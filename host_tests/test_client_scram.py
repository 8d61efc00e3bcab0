"""The fetcher's SCRAM-SHA-256 (scram.ScramClient through client.Pop3Client._scram), run under
MicroPython through the CLI: against a private Dovecot offering SCRAM-SHA-256 (a user stored
{PLAIN}, and one stored as the {SCRAM-SHA-256} record `doveadm pw` makes), over POP3S and over
plain POP3 (where "auto" would otherwise pick APOP); and against our own server under micropython
with plain-text logins refused, where SCRAM is the only way in."""

import json
import os
import subprocess

import pytest

from dovecot import Dovecot
from serverharness import Pop3Server, msg
from test_client_dovecot import MESSAGES, PASSWORD, account, check_ok, expected, local_messages, run_cli

SOME = MESSAGES[:3]


@pytest.fixture(scope="module")
def dcs():
    rec = subprocess.run(["doveadm", "pw", "-s", "SCRAM-SHA-256", "-p", PASSWORD], capture_output=True, check=True,
                         timeout=30).stdout.decode().strip()
    assert rec.startswith("{SCRAM-SHA-256}4096,"), rec
    d = Dovecot(users={"alice": PASSWORD, "bob": rec}, mechs="plain login apop scram-sha-256")
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.mark.parametrize("tls", ["implicit", "none"])
@pytest.mark.parametrize("user", ["alice", "bob"])
def test_auto_prefers_scram_with_dovecot(dcs, tmp_path, tls, user):
    dcs.seed(user, SOME)
    rc, out = run_cli(tmp_path, account(dcs, tmp_path, tls=tls, user=user, mailbox=user))
    check_ok(rc, out)
    assert "auth scram-sha-256 as %s" % user in out, out
    assert local_messages(tmp_path / "store", user) == [expected(m) for m in SOME]
    assert "Login: user=<%s>, method=SCRAM-SHA-256" % user in dcs.log()


def test_scram_wrong_password_with_dovecot(dcs, tmp_path):
    dcs.seed("alice", SOME)
    rc, out = run_cli(tmp_path, account(dcs, tmp_path, auth="scram-sha-256", password="wonder lamp"))
    assert rc == 1 and "FAILED" in out and "scram-sha-256" in out, out
    assert local_messages(tmp_path / "store") == []


def test_our_client_against_our_server_scram_only(tmp_path):
    """No plain-text login is allowed and there is no TLS: SCRAM-SHA-256 is the only way in."""
    (tmp_path / "srv").mkdir()
    s = Pop3Server(str(tmp_path / "srv"), {"alice": [msg(1), msg(2)]}, server={"plaintext_auth": "never"})
    s.start()
    try:
        acct = {"name": "own", "host": "127.0.0.1", "port": s.port, "tls": "none", "allow_plaintext": True,
                "user": "alice", "password": "alice pass", "mailbox": "alice", "state_dir": str(tmp_path / "state"),
                "policy": "delete", "timeouts": {"connect_timeout": 5, "read_timeout": 10}}
        rc, out = run_cli(tmp_path, acct)
        check_ok(rc, out)
        assert "auth scram-sha-256 as alice" in out, out
        assert local_messages(tmp_path / "store") == [msg(1), msg(2)]
        assert "login user=alice method=AUTH SCRAM-SHA-256 tls=0" in s.log()
        acct["password"] = "alice pas"
        rc, out = run_cli(tmp_path, acct)
        assert rc == 1 and "authentication failed" in out, out
    finally:
        s.stop()
    assert s.mailbox("alice") == []  # fetched, then deleted after a SCRAM login


# --- an impostor: a server that does not hold the user's keys --------------------------------------
def _impostor(mode, lines, port, ready):
    """One connection: CAPA offers SCRAM; the server-first is well formed; then, by mode, a wrong
    signature, a +OK with no signature, or (huge) an iteration count no board should pay."""
    import base64
    import socket

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    srv.settimeout(20)
    ready.set()
    try:
        c, _ = srv.accept()
        c.settimeout(20)
        rf = c.makefile("rb")

        def said():
            ln = rf.readline().rstrip(b"\r\n")
            lines.append(ln)
            return ln

        try:
            c.sendall(b"+OK impostor\r\n")
            assert said() == b"CAPA"
            c.sendall(b"+OK\r\nUIDL\r\nSASL SCRAM-SHA-256 PLAIN\r\n.\r\n")
            first = said()
            assert first.startswith(b"AUTH SCRAM-SHA-256 "), first
            bare = base64.b64decode(first.split(b" ")[2])[3:]
            cnonce = bare.split(b",r=")[1]
            its = b"10000000" if mode == "huge" else b"64"
            c.sendall(b"+ " + base64.b64encode(b"r=" + cnonce + b"srv,s=" + base64.b64encode(b"salt") + b",i=" + its) + b"\r\n")
            said()  # the client-final, or "*" for the huge count
            if mode == "huge":
                c.sendall(b"-ERR cancelled\r\n")
            elif mode == "bad-signature":
                c.sendall(b"+ " + base64.b64encode(b"v=" + base64.b64encode(b"\x00" * 32)) + b"\r\n")
                said()  # "*"
                c.sendall(b"-ERR cancelled\r\n")
            else:
                c.sendall(b"+OK welcome, no questions asked\r\n")
            c.settimeout(5)
            while said():  # whatever else the client says before it hangs up
                pass
        finally:
            c.close()
    except (OSError, AssertionError):
        pass
    finally:
        srv.close()


@pytest.mark.parametrize("mode", ["bad-signature", "no-signature", "huge"])
def test_client_refuses_a_server_that_cannot_prove_the_password(tmp_path, mode):
    import threading

    from helpers import free_port
    from pocketpost import client
    from pocketpost.store import Store

    lines = []
    port = free_port()
    ready = threading.Event()
    t = threading.Thread(target=_impostor, args=(mode, lines, port, ready), daemon=True)
    t.start()
    assert ready.wait(10)
    acct = {"name": "imp", "host": "127.0.0.1", "port": port, "tls": "none", "allow_plaintext": True, "user": "alice",
            "password": "pw", "mailbox": "alice", "state_dir": str(tmp_path / "state"),
            "timeouts": {"connect_timeout": 5, "read_timeout": 10}}
    with pytest.raises(client.AuthFailed) as e:
        client.fetch_account_sync(acct, Store(str(tmp_path / "store"), quota=0, reserve=0))
    t.join(15)
    assert not t.is_alive()
    want = {"bad-signature": "signature is wrong", "no-signature": "did not prove", "huge": "10000000 iterations"}[mode]
    assert want in str(e.value), str(e.value)
    assert not any(ln.startswith((b"STAT", b"UIDL", b"LIST", b"RETR")) for ln in lines), lines
    if mode != "no-signature":
        assert b"*" in lines  # the exchange was cancelled (RFC 5034)
