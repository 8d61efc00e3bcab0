"""Export from a live board over USB: `ppadmin export PORT ...` against the pseudo-board (the unix
micropython REPL behind a pty, a littlefs image at /flash, pocketpost as .mpy in /flash/lib), through
mpremote's raw REPL. The mailbox lock is respected: a mailbox a session holds is reported, not read,
and the export ends with exit status 4 (incomplete: run again), never 0."""

import mailbox
import os
import subprocess
import sys

from helpers import ROOT, tool
from mailimage import make_image, run_ppadmin, stored_form

sys.path.insert(0, os.path.join(ROOT, "tools"))
import ppadmin  # noqa: E402
import pseudoboard  # noqa: E402
from helpers import build_mpy  # noqa: E402

MSGS = [b"Subject: one\r\n\r\n.dot\r\nFrom here\r\n", b"Subject: two\n\n\x04\x00\xff binary-ish\n",
        b"Subject: big\r\n\r\n" + b"".join(b"line %05d\r\n" % i for i in range(20000))]

COPY = r"""
import os
src = os.getenv("PP_MPY")
for d in ("/flash/lib", "/flash/lib/pocketpost"):
    try:
        os.mkdir(d)
    except OSError:
        pass
for n in os.listdir(src):
    f = open(src + "/" + n, "rb"); data = f.read(); f.close()
    f = open("/flash/lib/pocketpost/" + n, "wb"); f.write(data); f.close()
"""


def test_export_from_live_board_over_usb(tmp_path):
    img = str(tmp_path / "flash.img")
    cfg = {"store": {"root": "/flash/mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": []}
    uids = make_image(img, {"alice": MSGS, "bob": MSGS[:1]}, cfg=cfg, tmpdir=str(tmp_path / "s"))
    build_mpy(str(tmp_path / "mpy"))
    ppadmin.on_image(img, COPY, {"PP_MPY": str(tmp_path / "mpy" / "pocketpost")})
    with pseudoboard.PseudoBoard(str(tmp_path / "pb"), image=img) as pb:
        r = run_ppadmin("export", pb.tty, "--maildir", tmp_path / "md", "--progress")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "exported alice: 3 messages" in r.stdout and "exported bob: 1 messages" in r.stdout
        assert "export: 4/4 messages" in r.stderr  # progress: messages and bytes done / total
        md = mailbox.Maildir(str(tmp_path / "md" / "alice"), factory=None, create=False)
        keys = sorted(md.keys(), key=lambda k: int(k.split("Q")[1].split(".")[0]))
        assert [md.get_bytes(k) for k in keys] == [stored_form(m) for m in MSGS]
        assert ["%s.%s" % (k.split(".P")[1].split("Q")[0], k.split("Q")[1].split(".")[0]) for k in keys] == uids["alice"]
        # a POP3 session holds bob (the lock lives in the board's RAM): export skips it, says so,
        # and exits 4 (incomplete), so `export && wipe` stops; alice is still exported
        held = subprocess.run([tool("mpremote"), "connect", pb.tty, "resume", "exec",
                               "from pocketpost import config\n"
                               "_mb = config.open_store(config.load('config.json')).lock('bob')\n"],
                              capture_output=True, text=True, timeout=60)
        assert held.returncode == 0, held.stdout + held.stderr
        r = run_ppadmin("export", pb.tty, "--mbox", tmp_path / "all")
        assert r.returncode == 4, r.stdout + r.stderr
        assert "mailbox bob is in use" in r.stderr and "exported alice: 3 messages" in r.stdout
        assert "incomplete: mailbox bob was in use" in r.stderr and "run again" in r.stderr, r.stderr
        assert "exported bob" not in r.stdout and not (tmp_path / "all" / "bob.mbox").exists()
        assert len(mailbox.mbox(str(tmp_path / "all" / "alice.mbox"))) == 3
        # a backup needs every mailbox: refused, saying why and what to do (it said "stop the
        # server", which --live is there to avoid), and no half archive (.part) left behind
        held = subprocess.run(held.args, capture_output=True, text=True, timeout=60)  # the restart freed it
        assert held.returncode == 0, held.stdout + held.stderr
        r = run_ppadmin("backup", pb.tty, tmp_path / "b.pp")
        assert r.returncode == 3, r.stdout + r.stderr
        assert "mailbox bob is in use (a POP3 session holds it)" in r.stderr and "run it again" in r.stderr, r.stderr
        assert sorted(os.listdir(tmp_path)) == sorted(p for p in os.listdir(tmp_path) if not p.startswith("b.pp"))


def _board_image(tmp_path, name, mail):
    img = str(tmp_path / (name + ".img"))
    cfg = {"store": {"root": "/flash/mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": []}
    uids = make_image(img, mail, cfg=cfg, tmpdir=str(tmp_path / (name + "-src")))
    mpy = tmp_path / "mpy"
    if not mpy.exists():
        build_mpy(str(mpy))
    ppadmin.on_image(img, COPY, {"PP_MPY": str(mpy / "pocketpost")})
    return img, uids


def test_import_backup_restore_with_live_boards_over_usb(tmp_path):
    from mailimage import contents

    img, uids = _board_image(tmp_path, "one", {"alice": MSGS})
    src = tmp_path / "in.mbox"
    src.write_bytes(b"From x@y Mon Jan  1 10:00:00 2024\nSubject: usb\n\n\x03\x04 control bytes\nFrom here\n\n"
                    b"From x@y Tue Jan  2 10:00:00 2024\nSubject: usb 2\n\n" + b"z" * 7000 + b"\n")
    with pseudoboard.PseudoBoard(str(tmp_path / "pb1"), image=img) as pb:
        r = run_ppadmin("import", pb.tty, "alice", src)
        assert "import alice: 2 added, 0 skipped" in r.stdout, r.stdout + r.stderr
        r = run_ppadmin("import", pb.tty, "alice", src)
        assert "import alice: 0 added, 2 skipped" in r.stdout, r.stdout + r.stderr
        r = run_ppadmin("backup", pb.tty, tmp_path / "board.pp")
        assert r.returncode == 0 and "1 mailboxes, 5 messages" in r.stdout, r.stdout + r.stderr
    want = contents(img)
    assert [m for _, _, m in want["alice"][3:]] == [b"Subject: usb\r\n\r\n\x03\x04 control bytes\r\nFrom here\r\n",
                                                    b"Subject: usb 2\r\n\r\n" + b"z" * 7000 + b"\r\n"]
    # onto another (blank) board: same UIDs, arrival times, bytes and config
    img2, _ = _board_image(tmp_path, "two", {})
    with pseudoboard.PseudoBoard(str(tmp_path / "pb2"), image=img2) as pb:
        r = run_ppadmin("restore", tmp_path / "board.pp", pb.tty)
        assert r.returncode == 0 and "5 messages restored" in r.stdout, r.stdout + r.stderr
    assert contents(img2) == want
    # and a board's archive onto an image file
    r = run_ppadmin("restore", tmp_path / "board.pp", tmp_path / "three.img")
    assert r.returncode == 0, r.stdout + r.stderr
    assert contents(str(tmp_path / "three.img")) == want


def test_a_port_where_no_board_answers_is_one_line(tmp_path):
    """A serial port with nothing answering (a pty whose other end is silent, as a board that
    is not running MicroPython) or one that cannot be opened used to end in mpremote's traceback
    (and a stray b'' on stdout) after 30 s: one line, exit 3, nothing written."""
    import pty

    master, slave = pty.openpty()
    try:
        for port in (os.ttyname(slave), "/dev/null"):
            out = tmp_path / "out"
            r = run_ppadmin("export", port, "--maildir", out)
            assert r.returncode == 3, r.stdout + r.stderr
            assert r.stdout == "" and "Traceback" not in r.stderr, r.stdout + r.stderr
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and "no MicroPython board answers there" in lines[0], r.stderr
            assert not out.exists()
    finally:
        os.close(master)
        os.close(slave)
