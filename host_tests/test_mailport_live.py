"""Export from a board that is serving: the pseudo-board booted like a reset board (boot.py and
main.py from the image, pocketpost as .mpy), a POP3 client logged in (its mailbox locked) and an
SMTP delivery half-way through its DATA when `ppadmin export PORT` connects through mpremote
(Ctrl-C into main.py). board.main cancels every session and forgets the store's RAM state, so
the export sees a consistent, unlocked store: the POP3 user's mailbox is exported (not "in use"),
the half-delivered message is absent and leaves no temp file, a delivered one is there. Then the
host tool starts the services again (pocketpost.mailport.restart), unless --no-restart."""

import json
import os
import poplib
import smtplib
import socket
import subprocess
import sys
import time

from helpers import FIRMWARE, ROOT, free_port
from mailimage import make_image, run_ppadmin, stored_form

sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, FIRMWARE)
import ppadmin  # noqa: E402
import pseudoboard  # noqa: E402
from helpers import build_mpy  # noqa: E402
from pocketpost import config as ppconfig  # noqa: E402

from test_mailport_usb import COPY, MSGS  # noqa: E402

LOG_LEVEL = "warning"
# The POP3 server, the SMTP receiver and a delivery together: at the pseudo-board's default 256 KiB
# (64-bit unix port) DATA met MemoryError (a 4 KiB allocation, fragmentation); not this test's subject.
HEAP = "1m"

BOOT_FILES = r"""
import os
for n in ("boot.py", "main.py"):
    f = open(os.getenv("PP_FW") + "/" + n); data = f.read(); f.close()
    f = open("/flash/" + n, "w"); f.write(data); f.close()
"""


def wait_port(port, alive, up=True, timeout=20):
    """Until something listens on port (up) or nothing does (not up); bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            if up:
                return
        except OSError:
            if not up:
                return
        assert alive(), "the pseudo-board ended"
        time.sleep(0.05)
    raise AssertionError("port %d still %s" % (port, "closed" if up else "open"))


def _live_image(tmp_path, pop_port, smtp_port):
    cfg = {"store": {"root": "/flash/mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": [],
           "server": {"host": "127.0.0.1", "port": pop_port, "pop3s_port": 0},
           "smtp": {"domains": ["home.example"], "port": smtp_port, "submission_port": 0, "smtps_port": 0},
           "log": {"level": LOG_LEVEL}}
    for name in ("alice", "bob"):
        ppconfig.add_user(cfg, name, "secret", 200)
    img = str(tmp_path / "flash.img")
    make_image(img, {"alice": MSGS, "bob": MSGS[:1]}, cfg=cfg, tmpdir=str(tmp_path / "s"))
    build_mpy(str(tmp_path / "mpy"))
    ppadmin.on_image(img, COPY, {"PP_MPY": str(tmp_path / "mpy" / "pocketpost")})
    ppadmin.on_image(img, BOOT_FILES, {"PP_FW": FIRMWARE})
    return img


def _login(port, user="alice"):
    c = poplib.POP3("127.0.0.1", port, timeout=20)
    c.user(user)
    c.pass_("secret")
    return c


def test_export_interrupts_sessions_cleanly_and_the_board_serves_again(tmp_path):
    pop_port, smtp_port = free_port(), free_port()
    img = _live_image(tmp_path, pop_port, smtp_port)
    with pseudoboard.PseudoBoard(str(tmp_path / "pb"), image=img, boot=True, heapsize=HEAP) as pb:
        wait_port(pop_port, pb.alive)
        wait_port(smtp_port, pb.alive)  # the SMTP receiver listens once the POP3 server is up (board.Runner.serve_smtp)
        c = _login(pop_port)  # alice's mailbox is locked by this session
        assert c.stat()[0] == 3
        s = smtplib.SMTP("127.0.0.1", smtp_port, timeout=20)
        s.sendmail("x@y.example", ["bob@home.example"], b"Subject: whole\r\n\r\ndelivered\r\n")
        s.mail("x@y.example")
        s.rcpt("bob@home.example")
        assert s.docmd("DATA")[0] == 354
        s.send(b"Subject: half\r\n\r\n" + b"never finished\r\n" * 300)  # no final dot

        r = run_ppadmin("export", pb.tty, "--maildir", tmp_path / "md", "--progress")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "in use" not in r.stderr, r.stderr
        assert "exported alice: 3 messages" in r.stdout and "exported bob: 2 messages" in r.stdout, r.stdout
        assert "export: 5/5 messages" in r.stderr  # progress: messages and bytes done / total
        assert "board: services restarted" in r.stderr
        alice = sorted(os.listdir(tmp_path / "md" / "alice" / "cur"), key=lambda k: int(k.split("Q")[1].split(".")[0]))
        assert [(tmp_path / "md" / "alice" / "cur" / k).read_bytes() for k in alice] == [stored_form(m) for m in MSGS]
        bob = sorted((tmp_path / "md" / "bob" / "cur" / k).read_bytes() for k in os.listdir(tmp_path / "md" / "bob" / "cur"))
        assert stored_form(MSGS[0]) in bob and len(bob) == 2, bob
        assert [m for m in bob if m.endswith(b"\r\nSubject: whole\r\n\r\ndelivered\r\n")], bob  # with its trace headers

        # the interrupted sessions' sockets were closed by the board
        try:
            c.noop()
            raise AssertionError("the POP3 session survived the interrupt")
        except (poplib.error_proto, OSError, EOFError):
            pass
        c.close()
        s.sock.settimeout(20)
        try:
            assert s.sock.recv(100) == b"", "the SMTP session survived the interrupt"
        except ConnectionResetError:
            pass
        s.close()

        # serving again, with alice's mailbox free: a new session logs in and sees every message
        wait_port(pop_port, pb.alive)
        c = _login(pop_port)
        assert c.stat()[0] == 3
        # an import onto the serving board while that session is logged in: the session is ended
        # (its lock released, nothing deleted), the message goes in, the board serves it
        src = tmp_path / "in.mbox"
        src.write_bytes(b"From x@y Mon Jan  1 10:00:00 2024\nSubject: imported live\n\nhello\n")
        r = run_ppadmin("import", pb.tty, "alice", src, "--progress")
        assert "import alice: 1 added, 0 skipped" in r.stdout, r.stdout + r.stderr
        assert "import: 1/1 messages" in r.stderr and "board: services restarted" in r.stderr, r.stderr
        c.close()
        wait_port(pop_port, pb.alive)
        c = _login(pop_port)
        assert c.stat()[0] == 4
        assert b"\r\n".join(c.retr(4)[1]) == b"Subject: imported live\r\n\r\nhello"
        c.quit()

        # --no-restart: the board stays at the REPL, nothing listens (and deploy.py export is ppadmin's)
        r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "export", pb.tty, "bob",
                            "--mbox", str(tmp_path / "bob.mbox"), "--no-restart"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "exported bob: 2 messages" in r.stdout, r.stdout + r.stderr
        assert "restarted" not in r.stderr
        wait_port(pop_port, pb.alive, up=False)
    files = pseudoboard.read_image(img)

    def temp(p):  # a delivery's temp file: "<epoch>.<seq>.t<n>.<ticks>" in a bucket b<k>/ ("t..." before)
        d, n = p.split("/")[-2:]
        return d[:1] == "b" and d[1:].isdigit() and (n[0] == "t" or ".t" in n)

    # the half delivery left nothing (no temp file, none in tmp/ either, as versions before wrote)
    assert not [p for p in files if "/tmp/" in p or temp(p)], sorted(files)


def test_progress_shows_messages_and_bytes_for_every_transfer_on_an_image(tmp_path):
    img = str(tmp_path / "a.img")
    make_image(img, {"alice": [b"Subject: %d\r\n\r\n" % i + b"x" * 50000 for i in range(12)],
                     "bob": [b"Subject: b\r\n\r\nb\r\n"]}, tmpdir=str(tmp_path / "s"))
    runs = [("export", img, "--maildir", tmp_path / "md"), ("backup", img, tmp_path / "b.pp"),
            ("restore", tmp_path / "b.pp", tmp_path / "c.img"),
            ("import", tmp_path / "c.img", "carol", tmp_path / "md" / "alice", "--create-mailbox")]  # no user reads carol
    want = {"export": "export: 13/13 messages, 0.6/0.6 MiB", "backup": "backup: 13/13 messages, 0.6/0.6 MiB",
            "restore": "restore: 13/13 messages, 0.6/0.6 MiB", "import": "import: 12/12 messages, 0.6 MiB"}
    for args in runs:
        r = run_ppadmin(*(args + ("--progress",)))
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stderr.splitlines()  # "\r" rewrites one terminal line; text mode reads it as "\n"
        assert lines[-1] == want[args[0]], r.stderr
        assert [ln for ln in lines if ln.startswith(args[0] + ": 1/") or ln.startswith(args[0] + ": 1 ")], r.stderr
        quiet = run_ppadmin(*args[:-1] + (str(args[-1]) + ".2",)) if args[0] == "export" else None
        if quiet is not None:
            assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr  # no --progress: silent
