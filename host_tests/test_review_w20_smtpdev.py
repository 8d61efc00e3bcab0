"""Review w20 (smtpdev): home and workshop devices delivering to the receiver under micropython,
each message read back over POP3 (poplib). A device that delivers and never QUITs kept every
other sender out at an ESP32's one session; a device's refused AUTH was not in the log; and the
device habits that already worked (LF line ends timed out as documented, a final "." in a TCP
segment of its own, a close right after it, one message to two users)."""

import base64
import socket
import time

import pytest

from smtpharness import UNTRUSTED, Peer, SmtpPop3Server, body_of


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # loopback untrusted, as a LAN device is by default (from trusted_networks its LF text ends:
    # host_tests/test_smtp_barelf.py)
    s = SmtpPop3Server(str(tmp_path_factory.mktemp("smtpw20")), messages={"alice": [], "bob": []}, server=UNTRUSTED,
                       smtp={"data_timeout": 1.5})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _wait_log(srv, text, count=1, limit=10):
    deadline = time.time() + limit
    while srv.log().count(text) < count and time.time() < deadline:
        time.sleep(0.05)
    assert srv.log().count(text) >= count, srv.log()[-3000:]


def test_a_device_ending_lines_with_bare_lf_is_timed_out_and_nothing_is_stored(srv):
    """As documented (README, "A device that ends its lines with a bare LF"): a camera outside
    trusted_networks speaking SMTP with LF line ends has its commands read (a bare LF ends a
    command line), but its <LF>.<LF> is message text (the SMTP-smuggling rule), so its message
    never ends: it is timed out with 421 and nothing is stored, and the log says the timeout came
    mid-DATA's wait."""
    n = len(srv.pop3_messages("alice", "alice pass"))
    p = Peer(srv.smtp_port)
    assert p.reply().startswith(b"220 ")
    for c, want in ((b"HELO cam\n", b"250 "), (b"MAIL FROM:<cam@cam.lan>\n", b"250 "),
                    (b"RCPT TO:<alice@example.org>\n", b"250 "), (b"DATA\n", b"354 ")):
        p.send(c)
        assert p.reply().startswith(want)
    p.send(b"Subject: motion\n\nframe 1\n.\n")
    assert p.reply().startswith(b"421 4.4.2 ")  # data_timeout: the message never ended
    p.close()
    _wait_log(srv, "timeout (idle)")
    assert len(srv.pop3_messages("alice", "alice pass")) == n


def test_a_refused_auth_is_logged_with_its_mechanism_never_its_response(tmp_path):
    """A printer set to log in sends AUTH LOGIN on port 25 (502: AUTH is on the submission
    ports) or AUTH PLAIN on submission without TLS (538): each sender got its reply, but the log
    showed a connect and a disconnect only. Now one line each, with the mechanism and the reply,
    and not the initial response (the password)."""
    # trusted_networks empty: loopback is "afar", as a printer on the LAN is by default
    srv = SmtpPop3Server(str(tmp_path), messages={"alice": []}, server={"trusted_networks": []}).start()
    try:
        _refused_auth(srv)
    finally:
        srv.stop()


def _refused_auth(srv):
    secret = base64.b64encode(b"\0alice\0alice pass")
    user = base64.b64encode(b"alice")
    p = Peer(srv.smtp_port)
    p.reply()
    assert p.cmd(b"EHLO printer.lan").startswith(b"250 ")
    assert p.cmd(b"AUTH LOGIN " + user).startswith(b"502 5.5.1 ")
    p.cmd(b"QUIT")
    p.close()
    p = Peer(srv.submission_port)
    p.reply()
    assert p.cmd(b"EHLO printer.lan").startswith(b"250 ")
    assert p.cmd(b"AUTH PLAIN " + secret).startswith(b"538 5.7.11 ")
    p.cmd(b"QUIT")
    p.close()
    _wait_log(srv, "AUTH PLAIN refused: 538 5.7.11 encryption required")
    log = srv.log()
    assert "AUTH LOGIN refused: 502 5.5.1 AUTH is offered on the submission ports only" in log
    assert secret.decode() not in log and user.decode() not in log


def test_final_dot_alone_then_close_and_two_users_once_each(srv):
    """Already right (kept as a regression test): the final "." in a TCP segment of its own, QUIT
    sent without waiting; a device that closes right after the final dot; one message to two
    local users and an alias of one of them: one copy in each mailbox."""
    a = len(srv.pop3_messages("alice", "alice pass"))
    b = len(srv.pop3_messages("bob", "bobpw"))
    s = socket.create_connection(("127.0.0.1", srv.smtp_port), 10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    s.sendall(b"HELO cam\r\nMAIL FROM:<cam@cam.lan>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n"
              b"RCPT TO:<postmaster@example.org>\r\nDATA\r\n")
    for _ in range(6):
        assert f.readline()[:1] in (b"2", b"3")
    s.sendall(b"Subject: two\r\n\r\nx\r\n")
    time.sleep(0.2)
    s.sendall(b".")
    time.sleep(0.2)
    s.sendall(b"\r\nQUIT\r\n")
    assert f.readline().startswith(b"250 2.0.0 stored as ")
    assert f.readline().startswith(b"221 ")
    s.close()
    s = socket.create_connection(("127.0.0.1", srv.smtp_port), 10)
    s.recv(100)
    s.sendall(b"HELO cam\r\nMAIL FROM:<cam@cam.lan>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
              b"Subject: gone\r\n\r\ny\r\n.\r\n")
    s.close()  # at once: no reply read
    _wait_log(srv, "from <cam@cam.lan> for 1 recipient(s) in alice")
    ga = srv.pop3_messages("alice", "alice pass")[a:]
    gb = srv.pop3_messages("bob", "bobpw")[b:]
    assert [body_of(m) for m in ga] == [b"Subject: two\r\n\r\nx\r\n", b"Subject: gone\r\n\r\ny\r\n"]
    assert [body_of(m) for m in gb] == [b"Subject: two\r\n\r\nx\r\n"]


def _deliver(port, src, subject):
    """One message over a raw connection from the source address src; the socket and file are
    returned open (the sender does not QUIT) with the 250 read."""
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    f = s.makefile("rb")
    first = f.readline()
    if not first.startswith(b"220 "):
        s.close()
        return None, first
    s.sendall(b"HELO cam\r\nMAIL FROM:<cam@cam.lan>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
    for _ in range(4):
        f.readline()
    s.sendall(b"Subject: %s\r\n\r\nframe\r\n.\r\n" % subject)
    return s, f.readline()


def test_a_device_that_delivers_and_never_quits_keeps_no_one_out(tmp_path):
    """At an ESP32's caps (one SMTP session, no waiting room) a camera delivered its message and
    sat on the connection without QUIT until command_timeout (300 s): that session was past
    pre-auth, never evicted, so every other device was refused (421) for five minutes (a camera
    does not retry). Between messages, after one stored, a session's slot may be taken again as a
    pre-auth one's: the newcomer is served (left in the listen backlog until the idle device has
    been quiet 3 s), the idle device is told 421, nothing is lost."""
    srv = SmtpPop3Server(str(tmp_path), messages={"alice": []},
                         smtp={"max_sessions": 1, "max_sessions_per_addr": 1, "slot_wait": 0,
                               "command_timeout": 30}).start()
    try:
        a, ra = _deliver(srv.smtp_port, "127.0.0.1", b"first")
        assert ra.startswith(b"250 2.0.0 stored as ")
        time.sleep(0.3)
        b, rb = _deliver(srv.smtp_port, "127.0.0.2", b"second")  # another device
        assert rb.startswith(b"250 2.0.0 stored as "), (rb, srv.log()[-2000:])
        a.settimeout(5)
        assert a.recv(1000).startswith(b"421 4.7.0 ")  # the idle one was told why, then closed
        a.close()
        b.sendall(b"QUIT\r\n")
        b.close()
        got = [body_of(m) for m in srv.pop3_messages("alice", "alice pass")]
        assert got == [b"Subject: first\r\n\r\nframe\r\n", b"Subject: second\r\n\r\nframe\r\n"]
        # A session in a transaction (MAIL accepted, none stored yet) is never evicted: a new
        # connection waits in the listen backlog (no greeting yet), and is greeted once it ends.
        c, f = _mail_only(srv.smtp_port, "127.0.0.1")
        d = socket.create_connection(("127.0.0.1", srv.smtp_port), 10)
        d.settimeout(1)
        with pytest.raises(socket.timeout):
            d.recv(1000)
        c.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"221 ")
        c.close()
        d.settimeout(10)
        assert d.recv(1000).startswith(b"220 ")
        d.close()
    finally:
        srv.stop()


def _mail_only(port, src):
    s = socket.create_connection(("127.0.0.1", port), 10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    s.sendall(b"HELO nas\r\nMAIL FROM:<nas@nas.lan>\r\n")
    assert f.readline().startswith(b"250 ") and f.readline().startswith(b"250 ")
    return s, f
