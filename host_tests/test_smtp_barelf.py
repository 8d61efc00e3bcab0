"""SMTP senders that end lines with a bare LF (cameras, printers, scripts; curl uploading a file
written on Linux) against the receiver under micropython, each message read back over POP3.
From server.trusted_networks (loopback by default: the `near` server) a line ends at LF, so
<LF>.<LF> ends the message, as Postfix accepts from $mynetworks
(smtpd_forbid_bare_newline_exclusions); from anywhere else (the `far` server, trusted_networks
empty) only <CRLF>.<CRLF> does: the SMTP-smuggling rule (host_tests/test_smtp_hostile.py,
test_review_w20_smtpdev.py: the same device timed out)."""

import smtplib

import pytest

from smtpharness import UNTRUSTED, Peer, SmtpPop3Server, body_of, curl


def _server(tmp_path_factory, name, server=None):
    s = SmtpPop3Server(str(tmp_path_factory.mktemp(name)), messages={"alice": []}, server=server,
                       smtp={"data_timeout": 1.5})
    return s.start()


@pytest.fixture(scope="module")
def near(tmp_path_factory):
    s = _server(tmp_path_factory, "near")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def far(tmp_path_factory):
    s = _server(tmp_path_factory, "far", UNTRUSTED)
    try:
        yield s
    finally:
        s.stop()


def _new(srv, before):
    return srv.pop3_messages("alice", "alice pass")[before:]


def test_smtpdata_keeps_the_unstuffers_lf_lines_number():
    from pocketpost import smtpdata, unstuffer

    assert smtpdata._LF_LINES == unstuffer._LF_LINES == 2


def test_a_device_ending_lines_with_lf_delivers_from_a_trusted_network(near):
    # A camera's session, every line ended with LF: two messages, the first ended by <LF>.<LF>
    # (a stuffed ".." line among them), the second by <LF>.<CRLF>; stored with CRLF line ends.
    before = len(near.pop3_messages("alice", "alice pass"))
    p = Peer(near.smtp_port)
    assert p.reply().startswith(b"220 ")
    for text, end in ((b"Subject: motion\n\nframe 1\n..dot\n", b".\n"), (b"Subject: motion\n\nframe 2\n", b".\r\n")):
        for c, want in ((b"HELO cam\n", b"250 "), (b"MAIL FROM:<cam@cam.lan>\n", b"250 "),
                        (b"RCPT TO:<alice@example.org>\n", b"250 "), (b"DATA\n", b"354 ")):
            p.send(c)
            assert p.reply().startswith(want), c
        p.send(text + end)
        assert p.reply().startswith(b"250 2.0.0 stored"), end
    p.send(b"QUIT\n")
    assert p.reply().startswith(b"221 ")
    p.close()
    got = _new(near, before)
    assert [body_of(m) for m in got] == [b"Subject: motion\r\n\r\nframe 1\r\n.dot\r\n", b"Subject: motion\r\n\r\nframe 2\r\n"]
    assert "smtp 127.0.0.1 stored" in near.log()


def _upload(srv, path):
    return curl("smtp://127.0.0.1:%d" % srv.smtp_port, "--mail-from", "nas@example.net", "--mail-rcpt",
                 "alice@example.org", "--upload-file", str(path))


LF_FILE = b"Subject: nightly log\n\nline one\n..two dots\n.hidden\nFrom the NAS\nlast line\n"


def test_curl_uploads_a_file_with_lf_line_ends_from_afar_as_the_file_has_it(far, tmp_path):
    # The README's `curl --upload-file m.eml` with a file written on Linux: curl sends its LF
    # line ends as they are. It got 554 5.6.0 (bare LF) and curl "(8) Weird server reply": a
    # permanent failure for every cron script mailing a log. Stored with CRLF line ends; a line
    # "." or ".." after an LF is stored as the file has it (curl stuffs only after a CRLF).
    before = len(far.pop3_messages("alice", "alice pass"))
    f = tmp_path / "lf.eml"
    text = b"Subject: nightly log\n\nline one\n.\n..two dots\nFrom the NAS\nlast line\n"
    f.write_bytes(text)
    r = _upload(far, f)
    assert r.returncode == 0, r.stderr
    got = _new(far, before)
    # curl ends the text with its own CRLF before the final dot when the file does not end in CRLF
    assert len(got) == 1 and body_of(got[0]) == text.replace(b"\n", b"\r\n") + b"\r\n", got


def test_curl_uploads_a_file_with_lf_line_ends_from_a_trusted_network_as_postfix_reads_it(near, tmp_path):
    # From a trusted network a line ends at LF, so a "." that opens a line of the file is a
    # stuffing dot, removed (curl does not stuff after an LF), as Postfix reads it from
    # $mynetworks; the line ends are stored as CRLF.
    before = len(near.pop3_messages("alice", "alice pass"))
    f = tmp_path / "lf.eml"
    f.write_bytes(LF_FILE)
    r = _upload(near, f)
    assert r.returncode == 0, r.stderr
    got = _new(near, before)
    want = b"Subject: nightly log\r\n\r\nline one\r\n.two dots\r\nhidden\r\nFrom the NAS\r\nlast line\r\n\r\n"
    assert len(got) == 1 and body_of(got[0]) == want, got
    # As the README warns: a line holding only "." ends the message there; curl, answered 250,
    # reports success (the rest of the file is read as commands, each refused).
    f.write_bytes(b"Subject: cut\n\nline one\n.\nlost\n")
    r = _upload(near, f)
    assert r.returncode == 0, r.stderr
    got = _new(near, before + 1)
    assert len(got) == 1 and body_of(got[0]) == b"Subject: cut\r\n\r\nline one\r\n", got


def test_smtplib_stores_the_same_bytes_from_near_and_far(near, far):
    # smtplib sends CRLF and stuffs its dots: the trusted path changes nothing for it (and its
    # CRLF text keeps the store's fast path: no bare LF).
    msg = b"Subject: same\r\n\r\n.one dot\r\n..two\r\n.\r\nend\r\n"
    for srv in (near, far):
        before = len(srv.pop3_messages("alice", "alice pass"))
        with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=15) as s:
            assert s.sendmail("ada@example.net", ["alice@example.org"], msg) == {}
        got = _new(srv, before)
        assert len(got) == 1 and body_of(got[0]) == msg, (srv is near, got)
