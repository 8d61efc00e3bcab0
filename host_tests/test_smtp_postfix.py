"""Postfix as a real MTA relaying a domain to the board's SMTP receiver (under micropython), started
by the test on loopback with its own config directory (host_tests/postfix.py). Mail submitted to
Postfix arrives in the board's mailbox (read back over POP3); a temporary failure (the board's flash
full: 452 4.3.1) makes Postfix keep the message and retry, and once space is back exactly one copy
arrives. First with the store's reserve set past any disk (the board restarted to free it), then on
a real littlefs image (tools/hostflash.py) filled over SMTP and freed by a POP3 DELE while the board
runs, with the refusal at MAIL FROM (Postfix declares SIZE) and after the final dot (it does not).
Last, a mailbox at its quota: Postfix's SIZE gets 452 at that RCPT only, the other recipient's copy
goes through at once and the full one follows once space is freed."""

import os
import poplib
import smtplib
import time

import pytest

import postfix
from helpers import ROOT
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
    cfg = board.read_config()
    cfg["store"]["reserve"] = 1 << 50
    board.write_config(cfg)
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
        board.write_config(cfg)
        board.start()
        pf.flush()
        assert pf.wait_log("status=sent"), pf.log()[-3000:]
        assert pf.wait_log("removed", 20) and pf.queue_empty(), pf.log()[-3000:]
        a = board.pop3_messages("alice", "alice pass")
        b = board.pop3_messages("bob", "bobpw")
        assert len(a) == 1 and len(b) == 1, (len(a), len(b))
        assert body_of(a[0]).endswith(MSG) and a[0] == b[0]
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


# --- a real littlefs flash that fills up and is freed while the board keeps running ----------------

FLASH_BLOCKS = 64  # 256 KiB littlefs image: fills in a few SMTP messages, still holds the store's index
FILL_STEPS = 24  # filler messages at most (bounded loop): halving the room, then one block at a time
# The relayed message: larger than one 4 KiB block, so that the flash can be left with some room,
# yet not enough for it (littlefs frees and fills whole blocks).
# 8-bit text (Postfix relays it as is to a server that announces 8BITMIME) and dot-leading lines.
BIG = (MSG + "Grüße aus der Werkstatt, 温度 21 °C\r\n..two dots\r\n.\r\n".encode()
       + b"".join(b"backup volume %05d ok, checksum verified\r\n" % i for i in range(400)))


def flash_board(tmp_path):
    """The board (POP3 + SMTP under micropython) on a littlefs image mounted at /flash by
    tools/hostflash.py, as on an ESP32: the store's free space is the image's."""
    board = SmtpPop3Server(str(tmp_path), messages={})
    cfg = board.read_config()
    cfg["store"] = {"root": "/flash/mail", "quota": 0, "reserve": 0}
    board.write_config(cfg)
    image = str(tmp_path / "flash.img")
    with open(image, "wb") as f:  # erased NOR flash, formatted by --mkfs (blank images only)
        f.write(b"\xff" * (FLASH_BLOCKS * 4096))
    args = [os.path.join(ROOT, "tools", "hostflash.py"), image, "--mkfs", "-m", "pocketpost.smtpserver",
            board.config_path]
    return board, args


def flash_room(port):
    """The largest SIZE the board accepts at MAIL FROM now (its free flash), by bisection."""
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
        s.ehlo("probe.test")
        lo, hi = 0, FLASH_BLOCKS * 4096
        while lo < hi:
            mid = (lo + hi + 1) // 2
            code = s.mail("probe@relay.test", ["SIZE=%d" % mid])[0]
            assert code in (250, 452), code
            s.rset()
            if code == 250:
                lo = mid
            else:
                hi = mid - 1
        return lo


def fill_flash(port, below):
    """Deliver filler messages to bob until the board has room for less than `below` bytes but not
    none: fillers take half the room above 2 * below, then 2 KiB ones take a block each (the
    room is an estimate; littlefs's own overhead shows near the end). Returns the room left."""
    for n in range(FILL_STEPS):
        room = flash_room(port)
        if room < below:
            return room
        size = (room - 2 * below) // 2 if room > 3 * below else 2048
        head = b"Subject: filler %d\r\n\r\n" % n
        filler = head + (b"x" * 76 + b"\r\n") * max(1, (size - len(head)) // 78)
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            try:
                s.sendmail("fill@relay.test", ["bob@example.org"], filler)
            except smtplib.SMTPResponseException as e:
                assert e.smtp_code == 452, (e.smtp_code, e.smtp_error)
    raise AssertionError("flash still has %d bytes of room after %d fillers" % (flash_room(port), FILL_STEPS))


@pytest.mark.parametrize("size_ext", ["size", "nosize"])
def test_postfix_retries_when_real_flash_is_full_then_freed(tmp_path, size_ext):
    """The littlefs image really fills up (filler mail for bob); Postfix's message for alice gets
    452 4.3.1, at MAIL FROM when Postfix declares SIZE ("size"), after the final dot when it is told
    to ignore the SIZE extension ("nosize": the refusal comes from the store while writing), and is
    deferred. Bob deletes his filler over POP3 (the board runs on), Postfix retries: exactly one
    copy of the message reaches alice, byte for byte after the trace headers."""
    board, args = flash_board(tmp_path)
    board.start(args)
    extra = "" if size_ext == "size" else "smtp_discard_ehlo_keywords = size\n"
    pf = postfix.Postfix("example.org", board.smtp_port, extra_main=extra)
    try:
        # alice's mailbox exists before the flash fills (making it takes blocks of its own)
        with smtplib.SMTP("127.0.0.1", board.smtp_port, timeout=20) as s:
            s.sendmail("welcome@relay.test", ["alice@example.org"], b"Subject: welcome\r\n\r\nhello\r\n")
        room = fill_flash(board.smtp_port, len(BIG))
        # some room left but not enough: without SIZE the board finds out while storing the text
        assert 0 < room < len(BIG), room
        pf.start()
        submit(pf, ["alice@example.org"], BIG)
        assert pf.wait_log("status=deferred"), pf.log()[-3000:]
        where = "in reply to MAIL FROM command" if size_ext == "size" else "in reply to end of DATA command"
        deferred = [ln for ln in pf.log().splitlines() if "status=deferred" in ln]
        assert "452 4.3.1" in deferred[0] and where in deferred[0], deferred
        assert len(board.pop3_messages("alice", "alice pass")) == 1
        # bob frees the flash over POP3 while the board runs
        p = poplib.POP3("127.0.0.1", board.port, timeout=10)
        p.user("bob")
        p.pass_("bobpw")
        for i in range(len(p.list()[1])):
            p.dele(i + 1)
        p.quit()
        assert flash_room(board.smtp_port) > 4 * len(BIG)
        pf.flush()
        assert pf.wait_log("status=sent"), pf.log()[-3000:]
        assert pf.wait_log("removed", 20) and pf.queue_empty(), pf.log()[-3000:]
        a = board.pop3_messages("alice", "alice pass")
        assert len(a) == 2 and body_of(a[0]).endswith(b"hello\r\n"), [m[:300] for m in a]
        assert body_of(a[1]).endswith(BIG), a[1][:600]
        sent = [ln for ln in pf.log().splitlines() if "status=sent" in ln]
        assert len(sent) == 1 and "250 2.0.0 stored as" in sent[0], sent
    finally:
        pf.stop()
        board.stop()


QUOTA = 24 * 1024  # per-mailbox quota for the test below: alice's two old messages nearly fill it


def test_postfix_defers_only_the_full_mailbox(tmp_path):
    """One message for alice (her mailbox at its quota) and bob: Postfix declares SIZE, the board
    answers 452 4.3.1 to alice's RCPT only, bob's copy is stored and Postfix defers alice alone.
    alice deletes her old mail over POP3 (the board runs on), flush: she gets exactly one copy and
    bob still has exactly one."""
    old = [b"Subject: old %d\r\n\r\n" % i + b"y" * 10000 + b"\r\n" for i in range(2)]
    board = SmtpPop3Server(str(tmp_path), messages={"alice": old, "bob": []})
    cfg = board.read_config()
    cfg["store"]["quota"] = QUOTA
    board.write_config(cfg)
    board.start()
    pf = postfix.Postfix("example.org", board.smtp_port)
    try:
        pf.start()
        submit(pf, ["alice@example.org", "bob@example.org"], BIG)
        assert pf.wait_log("to=<alice@example.org>") and pf.wait_log("to=<bob@example.org>"), pf.log()[-3000:]
        lines = pf.log().splitlines()
        alice = [ln for ln in lines if "to=<alice@example.org>" in ln]
        bob = [ln for ln in lines if "to=<bob@example.org>" in ln]
        assert "status=deferred" in alice[0] and "452 4.3.1" in alice[0], alice
        assert "in reply to RCPT TO command" in alice[0], alice
        assert len(bob) == 1 and "status=sent" in bob[0], bob
        assert len(board.pop3_messages("bob", "bobpw")) == 1
        p = poplib.POP3("127.0.0.1", board.port, timeout=10)
        p.user("alice")
        p.pass_("alice pass")
        p.dele(1)
        p.dele(2)
        p.quit()
        pf.flush()
        deadline = time.time() + 30
        while not any("to=<alice@example.org>" in ln and "status=sent" in ln for ln in pf.log().splitlines()):
            assert time.time() < deadline, pf.log()[-3000:]  # bounded poll
            time.sleep(0.1)
        assert pf.wait_log("removed", 20) and pf.queue_empty(), pf.log()[-3000:]
        a = board.pop3_messages("alice", "alice pass")
        b = board.pop3_messages("bob", "bobpw")
        assert len(a) == 1 and len(b) == 1, (len(a), len(b))
        assert body_of(a[0]).endswith(BIG) and body_of(b[0]).endswith(BIG)
    finally:
        pf.stop()
        board.stop()
