"""Postfix as a real MTA relaying a domain to the board's SMTP receiver (under micropython), started
by the test on loopback with its own config directory (host_tests/postfix.py). Mail submitted to
Postfix arrives in the board's mailbox (read back over POP3); a temporary failure (the board's flash
full: 452 4.3.1) makes Postfix keep the message and retry, and once space is back exactly one copy
arrives."""

import json
import smtplib
import time

import pytest

import postfix
from smtpharness import SmtpPop3Server, body_of

pytestmark = pytest.mark.skipif(not postfix.available(), reason="postfix not installed or not root")

MSG = (b"From: cron@relay.test\r\nTo: alice@example.org\r\nSubject: via postfix\r\nMessage-ID: <pf1@relay.test>\r\n"
       b"Date: Mon, 1 Jun 2026 09:00:00 +0000\r\n\r\nnightly backup ok\r\n.dot line\r\n")


def submit(pf, rcpts, msg):
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=20) as s:
        assert s.sendmail("cron@relay.test", rcpts, msg) == {}


def test_postfix_relays_to_the_board_and_retries_after_flash_full(tmp_path):
    board = SmtpPop3Server(str(tmp_path), messages={"alice": [], "bob": []})
    # Flash "full": the store keeps a reserve larger than any disk, so no delivery fits.
    with open(board.config_path) as f:
        cfg = json.load(f)
    cfg["store"]["reserve"] = 1 << 50
    with open(board.config_path, "w") as f:
        json.dump(cfg, f)
    board.start()
    pf = postfix.Postfix("example.org", board.smtp_port)
    try:
        pf.start()
        submit(pf, ["alice@example.org", "bob@example.org"], MSG)
        assert pf.wait_log("status=deferred"), pf.log()[-3000:]
        assert "452 4.3.1" in pf.log(), pf.log()[-3000:]
        assert board.pop3_messages("alice", "alice pass") == [] and board.pop3_messages("bob", "bobpw") == []
        # Space is back (the board restarts with its normal reserve); Postfix retries.
        board.stop()
        cfg["store"]["reserve"] = 0
        with open(board.config_path, "w") as f:
            json.dump(cfg, f)
        board.start()
        pf.flush()
        assert pf.wait_log("status=sent"), pf.log()[-3000:]
        assert pf.wait_log("removed", 20) and pf.queue_empty(), pf.log()[-3000:]
        a = board.pop3_messages("alice", "alice pass")
        b = board.pop3_messages("bob", "bobpw")
        assert len(a) == 1 and len(b) == 1, (len(a), len(b))
        assert body_of(a[0]).endswith(MSG[MSG.index(b"Subject:"):]) and a[0] == b[0]
        assert b"Received: from relay.test ([127.0.0.1])" in a[0] and b"(using TLS)" in a[0], a[0][:400]
        # Postfix's own Received line sits below ours; the Return-Path is the envelope sender.
        assert a[0].startswith(b"Return-Path: <cron@relay.test>\r\n") and b"by relay.test (Postfix)" in a[0]
        # and one more message goes straight through, once
        submit(pf, ["alice@example.org"], MSG.replace(b"pf1@", b"pf2@"))
        deadline = time.time() + 20
        while len(board.pop3_messages("alice", "alice pass")) < 2:  # bounded poll
            assert time.time() < deadline, pf.log()[-3000:]
            time.sleep(0.2)
        assert len(board.pop3_messages("alice", "alice pass")) == 2
    finally:
        pf.stop()
        board.stop()
