"""The client against our own server (both under micropython), and the relay: mail fetched from
Dovecot lands in a local mailbox that our server then serves to a household client (poplib)."""

import poplib
import ssl

import pytest

from dovecot import Dovecot
from serverharness import USERS, Pop3Server, msg
from test_client_dovecot import MESSAGES, expected, local_messages, run_cli

MSGS = [msg(1), msg(2, 40, b"\xe9 8-bit\r\n"), msg(3, 1, b"x" * 30000 + b"\r\n")]


def own_account(srv, tmp, **kw):
    a = {"name": "own", "host": "localhost", "port": srv.pop3s_port, "tls": "implicit", "user": "alice",
         "password": USERS["alice"], "ca": srv.ca[:-4] + ".der", "mailbox": "alice", "state_dir": str(tmp / "state"),
         "policy": "delete", "timeouts": {"connect_timeout": 5, "read_timeout": 10}}
    a.update(kw)
    return a


@pytest.mark.parametrize("tls", ["implicit", "stls"])
def test_fetch_from_our_server(tmp_path, tls):
    base = tmp_path / "srv"
    base.mkdir()
    srv = Pop3Server(str(base), {"alice": MSGS})
    srv.start()
    try:
        acct = own_account(srv, tmp_path, tls=tls, port=srv.pop3s_port if tls == "implicit" else srv.port)
        rc, out = run_cli(tmp_path, acct)
        assert rc == 0, out + srv.log()
        assert "3 deleted" in out, out
        rc, out = run_cli(tmp_path, acct)
        assert rc == 0 and "0 fetched" in out, out
    finally:
        srv.stop()
    assert local_messages(tmp_path / "store") == MSGS
    assert srv.mailbox("alice") == []


def test_relay_dovecot_to_household(tmp_path):
    d = Dovecot(users={"alice": "isp pw"})
    d.start()
    try:
        d.seed("alice", MESSAGES)
        base = tmp_path / "srv"
        base.mkdir()
        srv = Pop3Server(str(base), {"alice": []})
        acct = {"name": "isp", "host": "localhost", "port": d.port, "tls": "stls", "user": "alice",
                "password": "isp pw", "ca": d.path("ca.der"), "mailbox": "alice",
                "state_dir": str(tmp_path / "state"), "policy": "delete"}
        cfg_store = tmp_path / "relay"
        cfg_store.mkdir()
        # Fetch straight into the store our server serves (the server is not running yet).
        import json, os
        from helpers import FIRMWARE, MICROPYTHON
        import subprocess

        (cfg_store / "config.json").write_text(json.dumps({"store": {"root": srv.store_root, "quota": 0}, "accounts": [acct]}))
        env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen")
        r = subprocess.run([MICROPYTHON, "-m", "pocketpost.fetch", str(cfg_store / "config.json")], capture_output=True,
                           timeout=120, env=env, cwd=str(cfg_store))
        assert r.returncode == 0, r.stdout + r.stderr
        assert d.messages("alice") == []
    finally:
        d.stop()
    srv.start()
    try:
        c = poplib.POP3_SSL("localhost", srv.pop3s_port, context=ssl.create_default_context(cafile=srv.ca), timeout=20)
        c.user("alice")
        c.pass_(USERS["alice"])
        got = []
        for i in range(len(MESSAGES)):
            resp, lines, octets = c.retr(i + 1)
            got.append(b"\r\n".join(lines) + b"\r\n")
        c.quit()
    finally:
        srv.stop()
    assert got == [expected(m) for m in MESSAGES]
