"""The POP3 client against a private Dovecot (STLS, POP3S, test CA), run under MicroPython through
the CLI (`micropython -m pocketpost.fetch`) and in-process under CPython: every TLS mode, auth
method and fetch policy, byte-exact messages, and crash safety (SIGKILL at each step of a fetch)."""

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
import storeread
from dovecot import Dovecot
from helpers import FIRMWARE, MICROPYTHON, ROOT
from uidtool import entries as state_entries

from pocketpost import pop3client, client, store as storemod, uidstate
from pocketpost.store import Store

PASSWORD = "wonder land"

BIG = b"".join(b"Line %06d of a long message, 8-bit \xe9\xe8 and some padding text...\r\n" % i for i in range(15000))
MESSAGES = [
    b"From: =?utf-8?Q?J=C3=BCrgen?= <j@example.org>\r\nTo: alice@example.org\r\nSubject: =?ISO-8859-1?Q?caf=E9?=\r\n"
    b"Message-ID: <1@x>\r\n\r\nHello.\r\n",
    b"From: b@example.org\r\nSubject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n",
    b"From: c@example.org\r\nSubject: 8-bit\r\n\r\n\xc3\xa9t\xc3\xa9 \xff\xfe raw bytes\r\n",
    b"From: d@example.org\r\nSubject: big\r\n\r\n" + BIG,  # ~1 MiB
    b"From: e@example.org\r\nSubject: no final newline\r\n\r\nlast line without CRLF",
]


def expected(m):
    """What a POP3 client can receive: a body always ends with a line end (RFC 1939 section 3)."""
    return m if m.endswith(b"\r\n") else m + b"\r\n"


@pytest.fixture(scope="module")
def dc():
    d = Dovecot(users={"alice": PASSWORD, "bob": PASSWORD})
    d.start()
    try:
        yield d
    finally:
        d.stop()


def account(dc, tmp, **kw):
    a = {"name": "isp", "host": "localhost", "port": dc.sport, "tls": "implicit", "user": "alice",
         "password": PASSWORD, "ca": dc.path("ca.der"), "mailbox": "alice", "state_dir": str(tmp / "state"),
         "policy": "keep", "timeouts": {"connect_timeout": 5, "read_timeout": 10}}
    if kw.get("tls") in ("stls", "none"):
        a["port"] = dc.port
    if kw.get("tls") == "none":
        a["allow_plaintext"] = True  # config.load refuses a plaintext account without it
    a.update(kw)
    return a


def local_messages(root, mailbox="alice"):
    storemod.reboot()
    return storeread.messages(Store(str(root)), mailbox)


def run_cli(tmp, acct, crash=None, timeout=120):
    cfg = {"store": {"root": str(tmp / "store"), "quota": 0}, "accounts": [acct]}
    path = tmp / "config.json"
    path.write_text(json.dumps(cfg))
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":.frozen"
    cmd = [MICROPYTHON, "-m", "pocketpost.fetch", str(path)]
    if crash:  # the crash points are patched in by test code (host_tests/crashpoints.py)
        cmd = [MICROPYTHON, os.path.join(ROOT, "host_tests", "crashfetch.py"), crash, str(path)]
    if not crash:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=str(tmp), env=env)
        return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(tmp), env=env)
    out = b""
    deadline = time.time() + timeout
    try:
        while b"CRASHPOINT" not in out:
            left = deadline - time.time()
            assert left > 0, "no crash point reached: " + out.decode(errors="replace")
            ready, _, _ = select.select([p.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError("exited before the crash point %s: %s" % (crash, out.decode(errors="replace")))
            out += chunk
        os.kill(p.pid, signal.SIGKILL)
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(10)
        p.stdout.close()
    return -9, out.decode(errors="replace")


def check_ok(rc, out):
    assert rc == 0, out


# --- TLS modes x auth methods, under MicroPython --------------------------------------------------
@pytest.mark.parametrize("tls", ["implicit", "stls", "none"])
@pytest.mark.parametrize("auth", ["auto", "plain", "user", "apop"])
def test_modes_and_auth_micropython(dc, tmp_path, tls, auth):
    dc.seed("alice", MESSAGES[:3])
    rc, out = run_cli(tmp_path, account(dc, tmp_path, tls=tls, auth=auth))
    check_ok(rc, out)
    want = {"auto": "plain" if tls != "none" else "apop"}.get(auth, auth)
    assert "auth %s as alice" % want in out, out
    assert local_messages(tmp_path / "store") == [expected(m) for m in MESSAGES[:3]]


def test_byte_exact_all_policies_keep_then_delete(dc, tmp_path):
    """keep: everything byte-exact (1 MiB, dots, 8-bit, no final newline), server untouched, a
    second run fetches nothing; then delete: nothing fetched twice, server emptied."""
    dc.seed("alice", MESSAGES)
    acct = account(dc, tmp_path, policy="keep")
    check_ok(*run_cli(tmp_path, acct))
    assert local_messages(tmp_path / "store") == [expected(m) for m in MESSAGES]
    assert dc.messages("alice") == MESSAGES
    rc, out = run_cli(tmp_path, acct)
    check_ok(rc, out)
    assert "0 fetched" in out
    assert len(local_messages(tmp_path / "store")) == len(MESSAGES)
    acct["policy"] = "delete"
    rc, out = run_cli(tmp_path, acct)
    check_ok(rc, out)
    assert "0 fetched" in out and "%d deleted" % len(MESSAGES) in out, out
    assert dc.messages("alice") == []
    assert local_messages(tmp_path / "store") == [expected(m) for m in MESSAGES]


def test_policy_delete(dc, tmp_path):
    dc.seed("alice", MESSAGES[:3])
    check_ok(*run_cli(tmp_path, account(dc, tmp_path, policy="delete", tls="stls")))
    assert dc.messages("alice") == []
    assert local_messages(tmp_path / "store") == [expected(m) for m in MESSAGES[:3]]


def test_policy_keep_days(dc, tmp_path):
    dc.seed("alice", MESSAGES[:3])
    acct = account(dc, tmp_path, policy="keep_days", keep_days=2)
    check_ok(*run_cli(tmp_path, acct))
    assert len(dc.messages("alice")) == 3
    # Age the first message's state entry by 3 days: the next run deletes just that one.
    st = uidstate.UidState(str(tmp_path / "state"), "isp").load()
    uid, first_seen, flag = state_entries(st)[0]
    st.add(uid, first_seen - 3 * 86400, flag)
    st.save()
    rc, out = run_cli(tmp_path, acct)
    check_ok(rc, out)
    assert "1 deleted" in out, out
    assert len(dc.messages("alice")) == 2
    assert len(local_messages(tmp_path / "store")) == 3


def test_oversize_skip_headers_and_cap(dc, tmp_path):
    dc.seed("alice", MESSAGES)
    acct = account(dc, tmp_path, max_size=100000, oversize="skip", max_messages=2)
    rc, out = run_cli(tmp_path, acct)
    check_ok(rc, out)
    assert local_messages(tmp_path / "store") == [expected(m) for m in MESSAGES[:2]]
    rc, out = run_cli(tmp_path, acct)  # next 2 (the big one is skipped, not counted)
    check_ok(rc, out)
    assert "1 skipped" in out, out
    assert local_messages(tmp_path / "store") == [expected(m) for m in MESSAGES[:3]] + [expected(MESSAGES[4])]
    acct["oversize"] = "headers"
    rc, out = run_cli(tmp_path, acct)
    check_ok(rc, out)
    got = local_messages(tmp_path / "store")
    assert got[-1] == b"From: d@example.org\r\nSubject: big\r\n\r\n"
    assert "(headers only)" in out
    acct["policy"] = "delete"
    check_ok(*run_cli(tmp_path, acct))
    assert dc.messages("alice") == [MESSAGES[3]]  # the headers-only message stays on the server
    assert len(local_messages(tmp_path / "store")) == 5


def test_verification(dc, tmp_path):
    """Certificate trouble fails the account with words a user can act on, naming the account,
    host:port and step."""
    dc.seed("alice", MESSAGES[:1])
    rc, out = run_cli(tmp_path, account(dc, tmp_path, ca=dc.path("otherca.der")))
    assert rc == 1 and "FAILED" in out, out
    assert "isp localhost:%d" % dc.sport in out and "unknown CA" in out and "otherca.der" in out, out
    rc, out = run_cli(tmp_path, account(dc, tmp_path, ca=str(tmp_path / "missing.der")))
    assert rc == 1 and "missing.der not found" in out, out
    rc, out = run_cli(tmp_path, account(dc, tmp_path, ca=dc.path("ca.pem")))
    # refused when the config loads, before any connection: one line, no traceback
    assert rc == 2 and "ca.pem is PEM; the board needs DER" in out and "openssl x509" in out, out
    assert "Traceback" not in out, out
    # Dovecot also listens on 127.0.0.2, where its certificate (localhost, 127.0.0.1) names another
    # host: the client must refuse it for the name, over STLS and POP3S alike.
    for tls in ("stls", "implicit"):
        rc, out = run_cli(tmp_path, account(dc, tmp_path, host="127.0.0.2", tls=tls))
        assert rc == 1 and "FAILED" in out, out
        assert "certificate name mismatch" in out and "isp 127.0.0.2:" in out, out
    assert local_messages(tmp_path / "store") == []
    # the same address without verification works: the refusal above was the name check
    rc, out = run_cli(tmp_path, account(dc, tmp_path, host="127.0.0.2", tls="stls", ca=None, verify=False))
    check_ok(rc, out)
    # the same mailbox at another address than the one its state was made at: refused until the
    # user says so by deleting <name>.who (clientconf._owner)
    rc, out = run_cli(tmp_path, account(dc, tmp_path, ca=None, verify=False))
    assert rc == 1 and "for server 127.0.0.2, not localhost" in out, out
    (tmp_path / "state" / "isp.who").unlink()
    rc, out = run_cli(tmp_path, account(dc, tmp_path, ca=None, verify=False))
    check_ok(rc, out)
    assert "verification DISABLED" in out


def test_wrong_password(dc, tmp_path):
    dc.seed("alice", MESSAGES[:1])
    rc, out = run_cli(tmp_path, account(dc, tmp_path, password="nope"))
    assert rc == 1 and "AuthFailed" in out, out


def test_cpython_runtime(dc, tmp_path):
    """The same module, unchanged, under CPython: STLS + POP3S, a caller's stream via Pop3Client."""
    dc.seed("alice", MESSAGES)
    storemod.reboot()
    s = Store(str(tmp_path / "store"), quota=0)
    st = client.fetch_account_sync(account(dc, tmp_path, tls="stls", policy="delete"), s)
    assert st["fetched"] == len(MESSAGES) and st["deleted"] == len(MESSAGES)
    assert local_messages(tmp_path / "store") == [expected(m) for m in MESSAGES]
    dc.seed("alice", MESSAGES)
    import asyncio
    import ssl

    async def stream_one():
        ctx = ssl.create_default_context(cafile=dc.path("ca.pem"))
        from pocketpost import clientauth, clientend, clientget

        c = client.Pop3Client("localhost", dc.sport, "implicit", ctx, 5, 10)
        await clientauth.connect(c)
        await clientauth.login(c, "alice", PASSWORD)
        parts = []
        n = await clientget.retr(c, 4, lambda chunk: parts.append(bytes(chunk)))
        await clientend.quit(c)
        return n, parts

    n, parts = asyncio.run(stream_one())
    assert b"".join(parts) == MESSAGES[3] and n == len(MESSAGES[3])
    # streamed: whole clean lines straight from the receive buffer, never the whole message
    assert len(parts) > 1 and max(len(p) for p in parts) <= pop3client._RECV_BUFSIZE


# --- crash safety ---------------------------------------------------------------------------------
CRASH_MSGS = [MESSAGES[0], MESSAGES[1], b"Subject: mid\r\n\r\n" + BIG[:20000]]
STEPS = ["chunk#3", "pending#2", "committed#2", "stored#2", "dele#2", "quit"]


@pytest.mark.parametrize("policy", ["delete", "keep"])
def test_crash_at_each_step(dc, tmp_path, policy):
    steps = STEPS if policy == "delete" else [s for s in STEPS if not s.startswith("dele")]
    for step in steps:
        tmp = tmp_path / step.replace("#", "_")
        tmp.mkdir()
        dc.seed("alice", CRASH_MSGS)
        acct = account(dc, tmp, policy=policy)
        rc, out = run_cli(tmp, acct, crash=step)
        assert "CRASHPOINT" in out
        rc, out = run_cli(tmp, acct)
        check_ok(rc, out)
        got = local_messages(tmp / "store")
        assert sorted(got) == sorted(expected(m) for m in CRASH_MSGS), (step, out)
        assert dc.messages("alice") == ([] if policy == "delete" else CRASH_MSGS), step
        rc, out = run_cli(tmp, acct)  # and a third run changes nothing
        check_ok(rc, out)
        assert len(local_messages(tmp / "store")) == len(CRASH_MSGS)
