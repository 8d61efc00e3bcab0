"""Every file a session opens on littlefs is closed when the session ends, however it ends.

On a board's littlefs each open file is an object in the GC heap with its own cache (448 B with
flashfs's geometry, docs/FIGURES.md "littlefs geometry"). Here the real POP3 server and SMTP
receiver run under micropython on a littlefs image (tools/hostflash.py: the board's geometry) and
serve 10 rounds of sessions that end every way a session ends (QUIT after a RETR; a RETR cut by
the peer; a login dropped without QUIT; a delivery; a DATA cut by the peer). Every file the
services open is tracked (builtins.open wrapped in the driver; the firmware's modules call it):
none may still be open once a round's sessions have ended. Only tracking sees a file left open
and dropped: MicroPython's collector closes a file nothing refers to (its finaliser; measured:
such files did not grow the heap). A file left open and still referred to does, for good: the
live heap after a collection must be the same after 50 sessions as after 10.

Checked: leaving the RETR's message file, the session's index file or an aborted delivery's
temp file open (pop3trans _FileReply.release, storesession Mailbox.close, store Delivery.abort)
each fails the first round."""

import os
import smtplib
import socket
import time

from helpers import FIRMWARE, ROOT
from mailimage import make_image
from serverharness import Raw
from smtpharness import UNTRUSTED, SmtpPop3Server

BIG = 1024 * 1024  # alice's message: a RETR the peer cuts is still in progress (small receive buffer)
ROUND = 5  # sessions per round (one of each way to end)
SLACK = 256  # bytes: what the heap after a collection may differ by, with nothing left open (seen: 0-96)

# The services as board.Runner runs them (one loop), on the store /flash/mail of the mounted
# image, every file they open tracked (builtins.open, which the firmware's modules call, wrapped:
# the list keeps each file object, so one left open cannot be closed by a collection's finaliser
# either). Once the file ASK appears (then removed): "OPEN <n> <paths>" for the files still open,
# then "HEAP <live bytes>" after a collection (the closed ones dropped first).
DRIVER = r"""
import asyncio, builtins, gc, os
from pocketpost import config, server, smtpserver

_open = builtins.open
opened = []


def tracked(path, *args):
    f = _open(path, *args)
    opened.append((path, f))
    return f


builtins.open = tracked


def still_open():
    out = []
    for path, f in opened:
        try:
            f.tell()  # (ValueError once closed)
            out.append((path, f))
        except ValueError:
            pass
    opened[:] = out
    return [p for p, _ in out]


async def main():
    cfg = config.load(CFG)
    st = config.open_store(cfg)
    srv = await server.start(cfg, st)
    await smtpserver.start(cfg, st, getattr(srv, "svc", None))
    while True:
        try:
            os.remove(ASK)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        paths = still_open()
        print("OPEN", len(paths), " ".join(paths))
        gc.collect()
        print("HEAP", gc.mem_alloc())


asyncio.run(main())
"""


def message(size):
    head = b"From: a@example.org\r\nSubject: files\r\n\r\n"
    line = b"x" * 78 + b"\r\n"
    return head + line * ((size - len(head)) // len(line))


def _ended(srv):
    return srv.log().count(" disconnect sessions=") + srv.log().count(" gone while waiting")


def _wait_ended(srv, n, limit=20):
    deadline = time.time() + limit
    while _ended(srv) < n:
        assert time.time() < deadline, "sessions still open: " + srv.log()[-3000:]
        time.sleep(0.02)


def _ask(srv, ask):
    """(the files the services still hold open, the live heap after a collection), from the driver."""
    before = srv.log().count("\nHEAP ")
    open(ask, "w").close()
    deadline = time.time() + 10
    while srv.log().count("\nHEAP ") == before:
        assert time.time() < deadline and srv.alive(), srv.log()[-3000:]
        time.sleep(0.02)
    tail = srv.log().rsplit("\nOPEN ", 1)[1].splitlines()
    return tail[0].split()[1:], int(tail[1].split()[1])


def _pop3_login(port, rcvbuf=None):
    """A logged-in Raw client; rcvbuf: its receive buffer, set before it connects (a RETR of
    BIG then stays in progress on the server until the client reads)."""
    r = Raw.__new__(Raw)
    r.buf = b""
    r.s = socket.socket()
    if rcvbuf:
        r.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    r.s.settimeout(10)
    r.s.connect(("127.0.0.1", port))
    assert r.line().startswith(b"+OK")
    assert r.cmd(b"USER alice").startswith(b"+OK")
    assert r.cmd(b"PASS alicepw").startswith(b"+OK")
    return r


def _round(srv):
    """One session of each way to end."""
    r = _pop3_login(srv.port)  # RETR to the end, QUIT
    assert r.cmd(b"RETR 1").startswith(b"+OK")
    r.block()
    assert r.cmd(b"QUIT").startswith(b"+OK")
    r.close()
    r = _pop3_login(srv.port, 4096)  # RETR cut by the peer in the middle
    assert r.cmd(b"RETR 1").startswith(b"+OK")
    r.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # a reset
    r.close()
    r = _pop3_login(srv.port)  # logged in (the index open), then gone without QUIT
    assert r.cmd(b"STAT").startswith(b"+OK")
    r.close()
    c = smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=10)  # a delivery
    c.sendmail("a@example.org", ["bob@example.org"], message(2048))
    c.quit()
    s = socket.create_connection(("127.0.0.1", srv.smtp_port), 10)  # DATA cut by the peer
    f = s.makefile("rb")
    f.readline()
    for cmd in (b"EHLO x", b"MAIL FROM:<a@example.org>", b"RCPT TO:<bob@example.org>", b"DATA"):
        s.sendall(cmd + b"\r\n")
        ln = f.readline()
        while ln[3:4] == b"-":
            ln = f.readline()
        assert ln[:1] in (b"2", b"3"), ln
    s.sendall(b"Subject: cut\r\n\r\n" + b"y" * 8000 + b"\r\n")
    time.sleep(0.05)  # (the receiver has the delivery open)
    s.close()


def test_no_file_left_open_after_50_sessions_on_littlefs(tmp_path):
    image = str(tmp_path / "flash.img")
    make_image(image, {"alice": [message(BIG)], "bob": [message(1024)]}, size=4 * 1024 * 1024)
    srv = SmtpPop3Server(str(tmp_path), server=dict(UNTRUSTED, pop3s_port=0, idle_timeout=10),
                         users={"alice": "alicepw", "bob": "bobpw"},
                         smtp={"submission_port": 0, "smtps_port": 0, "data_timeout": 10})
    cfg = srv.read_config()
    cfg["store"] = dict(cfg["store"], root="/flash/mail")
    srv.write_config(cfg)
    ask = str(tmp_path / "ask")
    driver = str(tmp_path / "driver.py")
    with open(driver, "w") as f:
        f.write("CFG, ASK = %r, %r\n" % (srv.config_path, ask) + DRIVER)
    srv.start(args=[os.path.join(ROOT, "tools", "hostflash.py"), image, "-f", driver],
              micropypath=FIRMWARE + ":" + os.path.join(ROOT, "tools"))
    try:
        _wait_ended(srv, 2)  # start()'s probes, one POP3 and one SMTP
        ended = _ended(srv)
        heaps = []
        for k in range(1, 11):
            _round(srv)
            _wait_ended(srv, ended + k * ROUND)
            files, heap = _ask(srv, ask)
            assert files == [], "round %d: files still open once its sessions ended: %s" % (k, files)
            if k in (2, 10):
                heaps.append(heap)
        assert "Traceback" not in srv.log(), srv.log()[-3000:]
        grown = heaps[1] - heaps[0]
        assert grown <= SLACK, "live heap after 10 sessions %d B, after 50 %d B: +%d B (a file left open?)" % (
            heaps[0], heaps[1], grown)
    finally:
        srv.stop()
