"""Real POP3 clients against the server running under micropython: curl, poplib, fetchmail,
getmail6. Every test compares message bytes exactly."""

import mailbox
import os
import pathlib
import poplib
import shutil
import ssl
import subprocess
import tempfile
import time

import pytest

from serverharness import Pop3Server, msg

ATTACH = b"".join(b"QUJDRA%04d" % i + b"x" * 60 + b"\r\n" for i in range(400))  # ~28 KB base64-ish
MSGS = [msg(1), msg(2, 50), msg(3, 1, b"Content-Transfer-Encoding: base64\r\n\r\n" + ATTACH)]


@pytest.fixture
def srv(tmp_path):
    s = Pop3Server(str(tmp_path), {"alice": MSGS, "bob": [msg(9)]}, apop={"carol": "tanstaaf"})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def curl(*args, check=True):
    r = subprocess.run(["curl", "-s", "-S", "--max-time", "20"] + list(args), capture_output=True, timeout=30)
    if check:
        assert r.returncode == 0, r.stderr
    return r.stdout


def test_curl_list_retr_top_uidl_dele(srv):
    base = "pop3://127.0.0.1:%d/" % srv.port
    u = ["-u", "alice:alice pass"]
    listing = curl(*u, base)
    assert listing == b"".join(b"%d %d\r\n" % (i + 1, len(m)) for i, m in enumerate(MSGS))
    for i, m in enumerate(MSGS):
        assert curl(*u, base + str(i + 1)) == m
    assert curl(*u, base, "-X", "UIDL") == b"".join(b"%d %s\r\n" % (i + 1, x.encode()) for i, x in enumerate(srv.uids["alice"]))
    top = curl(*u, base, "-X", "TOP 2 3")
    assert top == MSGS[1][: MSGS[1].index(b"line 3 of")]
    # DELE via curl: -X DELE then QUIT commits; --list-only keeps curl from RETR
    curl(*u, base + "2", "-X", "DELE", "-I")
    assert curl(*u, base) == b"1 %d\r\n2 %d\r\n" % (len(MSGS[0]), len(MSGS[2]))
    srv.stop()
    assert [m for _, m in srv.mailbox("alice")] == [MSGS[0], MSGS[2]]


def test_curl_pop3s_and_stls(srv):
    u = ["-u", "alice:alice pass", "--cacert", srv.ca]
    assert curl(*u, "pop3s://localhost:%d/3" % srv.pop3s_port) == MSGS[2]
    assert curl(*u, "--ssl-reqd", "pop3://localhost:%d/1" % srv.port) == MSGS[0]
    assert curl(*u, "--ssl-reqd", "pop3://localhost:%d/" % srv.port, "-X", "UIDL").count(b"\r\n") == 3
    assert "STLS" in srv.log()


def test_poplib_user_capa_uidl_top_retr_dele(srv):
    p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    try:
        capa = p.capa()
        for c in ("TOP", "UIDL", "USER", "SASL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS", "IMPLEMENTATION"):
            assert c in capa, c
        assert capa["SASL"] == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
        p.user("alice")
        assert p.pass_("alice pass").startswith(b"+OK")
        assert p.stat() == (3, sum(len(m) for m in MSGS))
        assert "STLS" not in p.capa() and "USER" not in p.capa()
        resp, lines, octets = p.uidl()
        assert [l.split()[1].decode() for l in lines] == srv.uids["alice"]
        for i, m in enumerate(MSGS):
            resp, lines, octets = p.retr(i + 1)
            assert b"\r\n".join(lines) + b"\r\n" == m
        resp, lines, octets = p.top(2, 0)
        assert b"\r\n".join(lines) + b"\r\n" == MSGS[1][: MSGS[1].index(b"\r\n\r\n") + 4]
        p.dele(1)
        p.quit()
    finally:
        p.close()
    p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    p.user("alice")
    p.pass_("alice pass")
    assert p.stat()[0] == 2
    p.quit()


def test_poplib_stls_and_pop3_ssl(srv):
    ctx = ssl.create_default_context(cafile=srv.ca)
    p = poplib.POP3("localhost", srv.port, timeout=10)
    p.stls(ctx)
    assert "STLS" not in p.capa()
    p.user("bob")
    p.pass_("bobpw")
    resp, lines, octets = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == msg(9)
    p.quit()
    p = poplib.POP3_SSL("localhost", srv.pop3s_port, context=ctx, timeout=10)
    assert "STLS" not in p.capa()
    p.user("alice")
    p.pass_("alice pass")
    resp, lines, octets = p.retr(3)
    assert b"\r\n".join(lines) + b"\r\n" == MSGS[2]
    p.quit()


def test_poplib_apop(srv):
    p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    assert p.apop("carol", "tanstaaf").startswith(b"+OK")
    assert p.stat() == (0, 0)
    p.quit()
    p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
    with pytest.raises(poplib.error_proto) as e:
        p.apop("alice", "alice pass")  # alice did not opt in to APOP
    assert b"[AUTH]" in e.value.args[0]
    p.close()


def _fetchmailrc(tmp_path, srv, keep, mda_dir):
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        'set no bouncemail\n'
        'poll 127.0.0.1 with proto POP3 port %d uidl\n'
        '  user "alice" there with password "alice pass" is "me" here\n'
        '  %s sslproto "" no sslcertck\n'
        '  mda "%s/save.sh %s"\n' % (srv.port, "keep" if keep else "nokeep", mda_dir, mda_dir))
    os.chmod(rc, 0o600)
    save = os.path.join(mda_dir, "save.sh")
    with open(save, "w") as f:
        f.write('#!/bin/sh\nn=$(ls "$1" | grep -c msg)\ncat > "$1/msg$n"\n')
    os.chmod(save, 0o755)
    return str(rc)


def _fetchmail(rc, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--idfile", str(tmp_path / "fetchids")],
                       capture_output=True, timeout=60, env=env)
    return r


def _saved(d):
    names = sorted((n for n in os.listdir(d) if n.startswith("msg")), key=lambda n: int(n[3:]))
    out = []
    for n in names:
        with open(os.path.join(d, n), "rb") as f:
            out.append(f.read())
    return out


def _body_of(delivered):
    """fetchmail prepends a Received: header (and the mda gets LF line ends): strip it."""
    data = delivered.replace(b"\r\n", b"\n")
    if data.startswith(b"Received:"):
        lines = data.split(b"\n")
        k = 1
        while lines[k].startswith((b" ", b"\t")):
            k += 1
        data = b"\n".join(lines[k:])
    return data


def test_fetchmail_keep_uidl_then_delete(srv, tmp_path):
    mda = tmp_path / "mda"
    mda.mkdir()
    rc = _fetchmailrc(tmp_path, srv, True, str(mda))
    r = _fetchmail(rc, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    got = _saved(str(mda))
    assert [_body_of(g) for g in got] == [m.replace(b"\r\n", b"\n") for m in MSGS]
    # keep + UIDL: a second run fetches nothing new (exit 1 = no mail)
    r = _fetchmail(rc, tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert len(_saved(str(mda))) == 3
    srv.stop()
    assert len(srv.mailbox("alice")) == 3
    srv.start()
    # now fetch without keep: messages are deleted on the server
    mda2 = tmp_path / "mda2"
    mda2.mkdir()
    rc = _fetchmailrc(tmp_path, srv, False, str(mda2))
    os.remove(tmp_path / "fetchids")
    r = _fetchmail(rc, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [_body_of(g) for g in _saved(str(mda2))] == [m.replace(b"\r\n", b"\n") for m in MSGS]
    srv.stop()
    assert srv.mailbox("alice") == []


def _getmail(tmp_path, srv, delete, tag, mdbase):
    md = mdbase / ("Maildir-" + tag)
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    # getmail refuses to deliver as root: then it must switch to an unprivileged user
    user = ""
    if os.getuid() == 0:
        user = "user = nobody\n"
        for d in (md, md / "cur", md / "new", md / "tmp"):
            os.chmod(d, 0o777)
    gdir = tmp_path / ("getmail-" + tag)
    gdir.mkdir(exist_ok=True)
    rc = gdir / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = %d\nusername = alice\npassword = alice pass\n\n"
        "[destination]\ntype = Maildir\npath = %s/\n%s\n[options]\ndelete = %s\nread_all = false\nverbose = 0\n"
        % (srv.port, md, user, "true" if delete else "false"))
    r = subprocess.run(["getmail", "--getmaildir", str(gdir), "--rcfile", str(rc)], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return md


def _maildir_bodies(md):
    box = mailbox.Maildir(str(md), factory=None, create=False)
    out = []
    for key in box.keys():
        data = box.get_bytes(key)
        # getmail adds Delivered-To/Return-Path/Received headers at the top; strip them
        lines = data.split(b"\n")
        k = 0
        while not lines[k].startswith(b"From: sender"):
            k += 1
        out.append(b"\n".join(lines[k:]))
    return sorted(out)


def test_getmail_keep_uidl_then_delete(srv, tmp_path):
    # The Maildir lives outside pytest's 0700 tmp tree: as root, getmail delivers as "nobody".
    mdbase = pathlib.Path(tempfile.mkdtemp(prefix="pp-getmail-"))
    try:
        os.chmod(mdbase, 0o755)
        want = sorted(m.replace(b"\r\n", b"\n") for m in MSGS)
        md = _getmail(tmp_path, srv, False, "keep", mdbase)
        assert _maildir_bodies(md) == want
        md = _getmail(tmp_path, srv, False, "keep", mdbase)  # same getmaildir: UIDL state says "seen"
        assert _maildir_bodies(md) == want  # nothing new delivered twice
        srv.stop()
        assert len(srv.mailbox("alice")) == 3
        srv.start()
        md2 = _getmail(tmp_path, srv, True, "del", mdbase)
        assert _maildir_bodies(md2) == want
        srv.stop()
        assert srv.mailbox("alice") == []
    finally:
        shutil.rmtree(mdbase, ignore_errors=True)


def test_same_server_under_cpython(tmp_path):
    # Every firmware module runs unchanged on CPython 3.11: the server too (host debugging).
    s = Pop3Server(str(tmp_path), {"alice": MSGS})
    s.start(cpython=True)
    try:
        ctx = ssl.create_default_context(cafile=s.ca)
        p = poplib.POP3("localhost", s.port, timeout=10)
        p.stls(ctx)
        p.user("alice")
        p.pass_("alice pass")
        for i, m in enumerate(MSGS):
            assert b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n" == m
        p.dele(2)
        p.quit()
        p = poplib.POP3_SSL("localhost", s.pop3s_port, context=ctx, timeout=10)
        p.user("alice")
        p.pass_("alice pass")
        assert p.stat() == (2, len(MSGS[0]) + len(MSGS[2]))
        p.quit()
        assert curl("-u", "alice:alice pass", "pop3://127.0.0.1:%d/" % s.port) == b"1 %d\r\n2 %d\r\n" % (len(MSGS[0]), len(MSGS[2]))
    finally:
        s.stop()
    assert [m for _, m in s.mailbox("alice")] == [MSGS[0], MSGS[2]]


def test_plaintext_pipelined_after_stls_never_runs_inside_tls(tmp_path):
    # RFC 2595 section 4: commands sent in the clear after STLS must not be answered once TLS is up.
    # Both shells: MicroPython's and CPython's (whose asyncio reader buffers beyond our LineReader).
    import socket

    for cpython in (False, True):
        d = tmp_path / ("c" if cpython else "m")
        d.mkdir()
        s = Pop3Server(str(d), {"alice": MSGS}, server={"idle_timeout": 30})
        s.start(cpython=cpython)
        try:
            c = socket.create_connection(("127.0.0.1", s.port), 10)
            assert c.recv(200).startswith(b"+OK")
            # One write: on loopback all of it is in the server's socket before sendall returns,
            # so before the server sends its +OK.
            c.sendall(b"STLS\r\n" + b"NOOP\r\n" * 100 + b"CAPA\r\n")
            got = b""
            while b"\r\n" not in got:
                got += c.recv(200)
            assert got == b"+OK begin TLS negotiation\r\n", (cpython, got)  # and no answer to the NOOPs
            # The server dropped the injected plaintext: the handshake must succeed on both shells.
            ctx = ssl.create_default_context(cafile=s.ca)
            t = ctx.wrap_socket(c, server_hostname="localhost")
            # Inside TLS, the first bytes are the answer to our own command: an answer to any of
            # the injected NOOPs or the injected CAPA would come first (one more +OK).
            t.settimeout(5)
            t.sendall(b"CAPA\r\n")
            capa = b""
            while not capa.endswith(b"\r\n.\r\n"):
                chunk = t.recv(1000)
                assert chunk, (cpython, capa)
                capa += chunk
            assert capa.startswith(b"+OK") and capa.count(b"+OK") == 1 and b"STLS" not in capa, (cpython, capa)
            assert b"\r\nUSER\r\n" in capa, (cpython, capa)  # inside TLS plain-text logins are offered
            t.sendall(b"NOOP\r\n")  # and the session goes on inside TLS
            assert t.recv(100) == b"-ERR NOOP not valid in this state\r\n", cpython
            t.close()
        finally:
            s.stop()


DOTTY = (b"From: dots@example.org\r\nSubject: dots\r\n\r\n.\r\n..\r\n...leading\r\n.\r\nplain\r\n"
         + b"".join(b".line %d\r\nbody %d\r\n" % (k, k) for k in range(300)) + b". last")


def _unstuff(b):
    return b[1:].replace(b"\r\n..", b"\r\n.") if b.startswith(b"..") else b.replace(b"\r\n..", b"\r\n.")


def test_stuffed_and_old_format_files_served_byte_exact(tmp_path):
    """The store keeps each message in its wire form (dot lines stuffed, the number of added dots
    in the file name): RETR and TOP to curl and poplib are byte-exact, LIST gives the unstuffed
    CRLF octets. A file written before the wire form (three-part name, unstuffed) is still
    served the same way (the stuffing path)."""
    want = MSGS + [DOTTY + b"\r\n", msg(5)]
    s = Pop3Server(str(tmp_path), {"alice": MSGS + [DOTTY, msg(5)]})
    box = os.path.join(s.store_root, "alice")
    names = sorted(n for d in os.listdir(box) if d.startswith("b") for n in os.listdir(os.path.join(box, d)))
    dots = [int(n.rsplit(".d", 1)[1]) for n in names]  # every test message has a dot line
    assert dots == [1, 1, 1, 305, 1], names
    # Message 5 as an older version stored it: unstuffed, no flag; the index is rebuilt from the names.
    d = [d for d in os.listdir(box) if d.startswith("b")][0]
    new = [n for n in os.listdir(os.path.join(box, d)) if n.split(".")[1] == "5"][0]
    with open(os.path.join(box, d, new), "rb") as f:
        stuffed = f.read()
    assert stuffed == msg(5).replace(b"\r\n.", b"\r\n..")
    with open(os.path.join(box, d, new.rsplit(".", 1)[0]), "wb") as f:
        f.write(_unstuff(stuffed))
    os.remove(os.path.join(box, d, new))
    os.remove(os.path.join(box, "index"))
    s.start()
    try:
        base = "pop3://127.0.0.1:%d/" % s.port
        u = ["-u", "alice:alice pass"]
        assert curl(*u, base) == b"".join(b"%d %d\r\n" % (i + 1, len(m)) for i, m in enumerate(want))
        for i, m in enumerate(want):
            assert curl(*u, base + str(i + 1)) == m, i
        top = curl(*u, base, "-X", "TOP 4 7")
        assert top == b"\r\n".join(DOTTY.split(b"\r\n")[:10]) + b"\r\n"
        p = poplib.POP3("127.0.0.1", s.port, timeout=10)
        try:
            p.user("alice")
            p.pass_("alice pass")
            assert p.stat() == (5, sum(len(m) for m in want))
            for i, m in enumerate(want):
                resp, lines, octets = p.retr(i + 1)
                assert b"\r\n".join(lines) + b"\r\n" == m, i
                for n in (0, 1, 5):
                    resp, lines, octets = p.top(i + 1, n)
                    head, body = m.split(b"\r\n\r\n", 1)
                    assert lines == (head + b"\r\n").split(b"\r\n")[:-1] + [b""] + body.split(b"\r\n")[:-1][:n], (i, n)
            p.quit()
        finally:
            p.close()
    finally:
        s.stop()
    assert [m for _, m in s.mailbox("alice")] == want  # Mailbox.open un-stuffs
