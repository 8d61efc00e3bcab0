"""Real SMTP senders against the receiver running under micropython (pocketpost.smtpserver: POP3
server and SMTP receiver in one process): Python's smtplib (plain, STARTTLS, SMTPS, AUTH,
pipelined), curl (smtp://, smtps://, --ssl-reqd), swaks and msmtp. Every message is read back
over POP3 with poplib and compared byte for byte (after the trace fields we prepend)."""

import os
import shutil
import smtplib
import ssl
import subprocess

import pytest

from smtpharness import SmtpPop3Server, body_of, curl

MSG = (b"From: Ada <ada@example.net>\r\nTo: alice@example.org\r\nSubject: hello over SMTP\r\n"
       b"Message-ID: <s1@example.net>\r\n\r\nFirst line\r\n.a line starting with a dot\r\n..two\r\n"
       b"8bit: \xc3\xa9t\xc3\xa9\r\n")
BIG = b"Subject: big\r\n\r\n" + b"".join(b"%06d " % i + b"x" * 70 + b"\r\n" for i in range(14000))  # ~1 MiB


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = SmtpPop3Server(str(tmp_path_factory.mktemp("smtp")), messages={"alice": [], "bob": [], "carol": []})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _ctx(srv):
    ctx = ssl.create_default_context(cafile=srv.ca)
    return ctx


class Box:
    """Messages that arrived in a mailbox since this object was made (read over POP3)."""

    def __init__(self, srv, user, pw):
        self.srv, self.user, self.pw = srv, user, pw
        self.before = len(srv.pop3_messages(user, pw))

    def new(self):
        return self.srv.pop3_messages(self.user, self.pw)[self.before :]


def test_smtplib_plain_port_25_style(srv):
    box = Box(srv, "alice", "alice pass")
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=20) as s:
        code, ext = s.ehlo("client.example")
        assert code == 250 and s.has_extn("size") and s.has_extn("pipelining") and s.has_extn("8bitmime")
        assert s.has_extn("starttls") and not s.has_extn("auth")  # no AUTH on port 25
        assert s.sendmail("ada@example.net", ["alice@example.org"], MSG) == {}
    got = box.new()
    assert len(got) == 1 and body_of(got[0]) == MSG
    assert got[0].startswith(b"Return-Path: <ada@example.net>\r\nReceived: from client.example ([127.0.0.1])")


def test_smtplib_starttls_and_multiple_recipients(srv):
    a = Box(srv, "alice", "alice pass")
    b = Box(srv, "bob", "bobpw")
    with smtplib.SMTP("localhost", srv.smtp_port, timeout=20) as s:
        s.starttls(context=_ctx(srv))
        s.ehlo("tls.example")
        refused = s.sendmail("ada@example.net", ["alice+tag@example.org", "info@home.example", "x@elsewhere.example"],
                             MSG)
        assert list(refused) == ["x@elsewhere.example"] and refused["x@elsewhere.example"][0] == 550
    ga, gb = a.new(), b.new()
    assert len(ga) == 1 and len(gb) == 1 and ga[0] == gb[0] and body_of(ga[0]) == MSG
    assert b"with ESMTPS (using TLS) id" in ga[0]


def test_smtplib_submission_auth_and_smtps(srv):
    box = Box(srv, "carol", "carolpw")
    with smtplib.SMTP("localhost", srv.submission_port, timeout=20) as s:
        s.starttls(context=_ctx(srv))
        with pytest.raises(smtplib.SMTPSenderRefused):
            s.sendmail("carol@example.org", ["carol@example.org"], MSG)  # 530: AUTH first
        s.login("carol", "carolpw")  # smtplib picks PLAIN
        s.sendmail("carol@example.org", ["carol@example.org"], MSG)
    with smtplib.SMTP_SSL("localhost", srv.smtps_port, timeout=20, context=_ctx(srv)) as s:
        s.ehlo()
        s.user, s.password = "carol", "carolpw"
        assert s.auth("LOGIN", s.auth_login)[0] == 235
        s.sendmail("carol@example.org", ["carol@example.org"], BIG)
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # authenticated, still no relaying
            s.sendmail("carol@example.org", ["someone@gmail.example"], MSG)
    with smtplib.SMTP_SSL("localhost", srv.smtps_port, timeout=20, context=_ctx(srv)) as s:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("carol", "wrong")
    got = box.new()
    assert len(got) == 2 and body_of(got[0]) == MSG and body_of(got[1]) == BIG
    assert b"with ESMTPSA (using TLS, authenticated user carol) id" in got[1]


def test_smtplib_paths_without_brackets_and_quoted_local_parts(srv):
    """An embedded sender's envelope (smtplib's raw docmd): a space after the colon and no angle
    brackets (Postfix accepts both: strict_rfc821_envelopes = no), and a quoted local part
    (RFC 5321 4.1.2), delivered to the mailbox its unquoted form names."""
    a = Box(srv, "alice", "alice pass")
    b = Box(srv, "bob", "bobpw")
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=20) as s:
        s.ehlo("scanner.example")
        assert s.docmd("MAIL", "FROM: scan@scanner.example SIZE=%d" % len(MSG))[0] == 250
        assert s.docmd("RCPT", "TO:alice@example.org")[0] == 250
        assert s.docmd("RCPT", 'TO: <"Bob"@example.org>')[0] == 250
        assert s.docmd("RCPT", 'TO:<"alice@elsewhere.example"@example.org>')[0] == 553
        assert s.data(MSG)[0] == 250
    ga, gb = a.new(), b.new()
    assert len(ga) == 1 and len(gb) == 1 and ga[0] == gb[0] and body_of(ga[0]) == MSG
    assert ga[0].startswith(b"Return-Path: <scan@scanner.example>\r\nReceived: from scanner.example ([127.0.0.1])")


def test_pipelined_transactions_in_one_write(srv):
    """Three whole transactions sent in one write (RFC 2920), replies read afterwards."""
    import socket

    box = Box(srv, "bob", "bobpw")
    s = socket.create_connection(("127.0.0.1", srv.smtp_port), 20)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    batch = b"EHLO p.example\r\n"
    for i in range(3):
        batch += (b"MAIL FROM:<p@p.example>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<nobody@nowhere.example>\r\n"
                  b"DATA\r\nSubject: %d\r\n\r\nbody %d\r\n.\r\n" % (i, i))
    s.sendall(batch + b"QUIT\r\n")
    codes = []
    while True:
        ln = f.readline()
        if not ln:
            break
        if ln[3:4] == b" ":
            codes.append(int(ln[:3]))
    s.close()
    assert codes == [250] + [250, 250, 550, 354, 250] * 3 + [221], codes
    got = box.new()
    assert [body_of(m) for m in got] == [b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i) for i in range(3)]


def test_curl_smtp_smtps_and_ssl_reqd(srv, tmp_path):
    box = Box(srv, "alice", "alice pass")
    f = tmp_path / "m.eml"
    f.write_bytes(MSG)
    base = ["--mail-from", "ada@example.net", "--mail-rcpt", "alice@example.org", "--upload-file", str(f)]
    r = curl("smtp://127.0.0.1:%d" % srv.smtp_port, *base)
    assert r.returncode == 0, r.stderr
    r = curl("--ssl-reqd", "--cacert", srv.ca, "smtp://localhost:%d" % srv.smtp_port, *base)
    assert r.returncode == 0, r.stderr
    r = curl("--cacert", srv.ca, "-u", "alice:alice pass", "smtps://localhost:%d" % srv.smtps_port, *base)
    assert r.returncode == 0, r.stderr
    r = curl("--ssl-reqd", "--cacert", srv.ca, "-u", "alice:alice pass", "smtp://localhost:%d" % srv.submission_port,
              *base)
    assert r.returncode == 0, r.stderr
    # relay attempt: curl reports the refusal
    r = curl("smtp://127.0.0.1:%d" % srv.smtp_port, "--mail-from", "a@b.example", "--mail-rcpt", "x@gmail.example",
              "--upload-file", str(f))
    assert r.returncode != 0 and b"550" in r.stderr, r.stderr
    got = box.new()
    assert len(got) == 4 and all(body_of(m) == MSG for m in got), len(got)
    assert b"(using TLS, authenticated user alice)" in got[2] and b"(using TLS) id" in got[1]


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed (apt-packages.txt)")
def test_swaks_plain_tls_auth(srv, tmp_path):
    box = Box(srv, "bob", "bobpw")
    f = tmp_path / "m.eml"
    f.write_bytes(MSG)
    common = ["swaks", "--to", "bob@example.org", "--from", "ada@example.net", "--server", "127.0.0.1",
              "--data", "@" + str(f), "--timeout", "20"]
    runs = [
        ["--port", str(srv.smtp_port)],
        ["--port", str(srv.smtp_port), "--tls", "--tls-ca-path", srv.ca],
        ["--port", str(srv.submission_port), "--tls", "--auth", "LOGIN", "--auth-user", "bob", "--auth-password", "bobpw"],
        ["--port", str(srv.smtps_port), "--tlsc", "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", "bobpw",
         "--pipeline"],
    ]
    for extra in runs:
        r = subprocess.run(common + extra, capture_output=True, timeout=60)
        assert r.returncode == 0, (extra, r.stdout[-2000:], r.stderr[-2000:])
    r = subprocess.run(["swaks", "--to", "bob@example.org", "--server", "127.0.0.1", "--port", str(srv.submission_port),
                        "--tls", "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", "nope", "--timeout", "20"],
                       capture_output=True, timeout=60)
    assert r.returncode != 0 and b"535 5.7.8" in r.stdout, r.stdout[-2000:]
    got = box.new()
    # swaks sends the file, then its own CRLF before the final dot: one empty line more
    assert len(got) == 4 and all(body_of(m) == MSG + b"\r\n" for m in got), got


@pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp not installed (apt-packages.txt)")
def test_msmtp_submission_starttls_and_smtps(srv, tmp_path):
    box = Box(srv, "carol", "carolpw")
    rc = tmp_path / "msmtprc"
    rc.write_text(
        "defaults\nauth on\nuser carol\npassword carolpw\ntls_trust_file %s\nfrom carol@example.org\n"
        "account sub\nhost localhost\nport %d\ntls on\ntls_starttls on\n"
        "account smtps\nhost localhost\nport %d\ntls on\ntls_starttls off\n"
        % (srv.ca, srv.submission_port, srv.smtps_port))
    os.chmod(str(rc), 0o600)
    dated = b"Date: Mon, 1 Jun 2026 09:00:00 +0000\r\n" + MSG  # else msmtp adds a Date: field
    lf = dated.replace(b"\r\n", b"\n")  # msmtp takes a local (LF) file and sends CRLF
    for acct in ("sub", "smtps"):
        r = subprocess.run(["msmtp", "-C", str(rc), "-a", acct, "carol@example.org"], input=lf, capture_output=True,
                           timeout=60)
        assert r.returncode == 0, (acct, r.stderr)
    got = box.new()
    assert len(got) == 2 and [body_of(m) for m in got] == [dated, dated], got


@pytest.mark.skipif(shutil.which("s-nail") is None, reason="s-nail not installed (apt-packages.txt)")
def test_snail_plain_and_starttls_auth(srv, tmp_path):
    box = Box(srv, "bob", "bobpw")
    env = dict(os.environ, HOME=str(tmp_path), MAILRC="/dev/null")
    common = ["s-nail", "-n", "-#", "-S", "v15-compat", "-S", "sendwait", "-S", "nosave", "-S", "tls-ca-file=" + srv.ca,
              "-S", "from=ada@example.net", "-s", "from s-nail"]
    runs = [
        ["-S", "mta=smtp://127.0.0.1:%d" % srv.smtp_port, "-S", "smtp-auth=none"],
        ["-S", "mta=smtp://bob:bobpw@localhost:%d" % srv.submission_port, "-S", "smtp-use-starttls",
         "-S", "smtp-auth=login"],
    ]
    for extra in runs:
        r = subprocess.run(common + extra + ["bob@example.org"], input=b"hello from s-nail\n.dot line\n",
                           capture_output=True, env=env, timeout=60)
        assert r.returncode == 0, (extra, r.stdout[-2000:], r.stderr[-2000:])
    got = box.new()
    assert len(got) == 2, got
    for m in got:
        b = body_of(m)
        assert b"Subject: from s-nail\r\n" in b and b.endswith(b"\r\n\r\nhello from s-nail\r\n.dot line\r\n"), b
    assert b"(using TLS, authenticated user bob)" in got[1]


def test_board_runner_starts_the_smtp_service(tmp_path):
    """board.main (what main.py runs on a board) starts the receiver beside the POP3 server."""
    s = SmtpPop3Server(str(tmp_path), messages={"alice": []})
    s.start(args=["-c", "from pocketpost import board; board.main(%r)" % s.config_path])
    try:
        with smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=20) as c:
            c.sendmail("ada@example.net", ["alice@example.org"], MSG)
        got = s.pop3_messages("alice", "alice pass")
        assert len(got) == 1 and body_of(got[0]) == MSG
        assert "services ['server', 'smtp'] started" in s.log() or "services ['smtp', 'server'] started" in s.log(), s.log()
    finally:
        s.stop()
