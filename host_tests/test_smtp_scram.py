"""AUTH SCRAM-SHA-256 on the SMTP receiver running under micropython, from a real client that
shares no code with ours: msmtp (its SCRAM is GNU SASL's), on the submission port without TLS
(plain-text AUTH refused there: SCRAM is all the server offers), with STARTTLS, and on the
implicit-TLS port; a wrong password is refused with 535 and stores nothing. Every message is read
back over POP3 (poplib, after STLS: plain-text logins are refused) and compared byte for byte."""

import os
import poplib
import shutil
import ssl
import subprocess

import pytest

from smtpharness import SmtpPop3Server, body_of

pytestmark = pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp not installed (apt-packages.txt)")

MSG = (b"Date: Mon, 1 Jun 2026 09:00:00 +0000\r\nFrom: carol@example.org\r\nTo: alice@example.org\r\n"
       b"Message-ID: <scram1@example.org>\r\nSubject: SCRAM over SMTP\r\n\r\nFirst line\r\n.a line starting with a dot\r\n")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = SmtpPop3Server(str(tmp_path_factory.mktemp("smtpscram")), messages={"alice": [], "carol": []},
                       server={"plaintext_auth": "never"})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _messages(srv, user, password):
    """The user's mailbox over POP3 with STLS (plain-text logins need TLS on this server)."""
    p = poplib.POP3("localhost", srv.port, timeout=10)
    try:
        p.stls(context=ssl.create_default_context(cafile=srv.ca))
        p.user(user)
        p.pass_(password)
        out = []
        for i in range(len(p.list()[1])):
            out.append(b"".join(ln + b"\r\n" for ln in p.retr(i + 1)[1]))
        p.quit()
        return out
    finally:
        p.close()


def _msmtp(srv, tmp_path, account, password="carolpw"):
    rc = tmp_path / "msmtprc"
    rc.write_text(
        "defaults\nauth scram-sha-256\nuser carol\npassword %s\ntls_trust_file %s\nfrom carol@example.org\n"
        "account plain\nhost localhost\nport %d\ntls off\n"
        "account sub\nhost localhost\nport %d\ntls on\ntls_starttls on\n"
        "account smtps\nhost localhost\nport %d\ntls on\ntls_starttls off\n"
        % (password, srv.ca, srv.submission_port, srv.submission_port, srv.smtps_port))
    os.chmod(str(rc), 0o600)
    lf = MSG.replace(b"\r\n", b"\n")  # msmtp takes a local (LF) file and sends CRLF (with Date and Message-ID: adds none)
    return subprocess.run(["msmtp", "-d", "-C", str(rc), "-a", account, "alice@example.org"], input=lf,
                          capture_output=True, timeout=60, env=dict(os.environ, HOME=str(tmp_path)))


def test_msmtp_scram_without_tls_starttls_and_smtps(srv, tmp_path):
    before = len(_messages(srv, "alice", "alice pass"))
    for acct in ("plain", "sub", "smtps"):
        r = _msmtp(srv, tmp_path, acct)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, (acct, out[-3000:], r.stderr)
        assert "--> AUTH SCRAM-SHA-256" in out and "<-- 235 2.7.0" in out, out[-3000:]
        if acct == "plain":  # no TLS: SCRAM alone is offered (PLAIN/LOGIN would send the password)
            assert "<-- 250 AUTH SCRAM-SHA-256" in out and "STARTTLS" in out, out
    got = _messages(srv, "alice", "alice pass")[before:]
    assert len(got) == 3 and [body_of(m) for m in got] == [MSG] * 3, got
    assert [b"with ESMTPA (authenticated user carol)" in got[0], b"with ESMTPSA (using TLS, authenticated user carol)"
            in got[1], b"with ESMTPSA (using TLS, authenticated user carol)" in got[2]] == [True] * 3, got
    assert srv.log().count("AUTH user=carol method=SCRAM-SHA-256") == 3


def test_msmtp_scram_wrong_password_refused_nothing_stored(srv, tmp_path):
    before = len(_messages(srv, "alice", "alice pass"))
    r = _msmtp(srv, tmp_path, "plain", password="carolpx")
    out = r.stdout.decode(errors="replace")
    assert r.returncode != 0 and "<-- 535 5.7.8" in out and "MAIL FROM" not in out, out[-3000:]
    assert len(_messages(srv, "alice", "alice pass")) == before
    assert "AUTH failed user=carol method=SCRAM-SHA-256" in srv.log()
