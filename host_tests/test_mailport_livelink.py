"""Export and import over USB while the board keeps serving (`ppadmin ... --live`): the
pseudo-board booted like a reset board (main.py from the image, "services": {"usb_link": true}),
so its stdin, the pty that stands for the USB serial, is read by board.Runner.usb_link while
POP3 sessions go on. No Ctrl-C reaches main.py and no restart happens: a POP3 session that was
logged in before the export is still served during it and after it."""

import contextlib
import os
import poplib
import sys
import threading
import time

from helpers import FIRMWARE, ROOT, free_port
from mailimage import contents, make_image, run_ppadmin, stored_form

sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, FIRMWARE)
import mailport  # noqa: E402
import ppadmin  # noqa: E402
import pseudoboard  # noqa: E402
from helpers import build_mpy  # noqa: E402
from pocketpost import config as ppconfig  # noqa: E402

from test_mailport_live import BOOT_FILES, HEAP, wait_port  # noqa: E402
from test_mailport_usb import COPY, MSGS  # noqa: E402

# alice: enough that the export is many blocks (a pty holds ~64 KiB: the board cannot have
# written it all before the host pauses); bob: the mailbox a POP3 session reads meanwhile.
BIG = [b"Subject: m%d\r\n\r\n" % i + b"".join(b"%d line %05d\r\n" % (i, j) for j in range(5000)) for i in range(6)]


def _image(tmp_path, pop_port, usb_link=True):
    cfg = {"store": {"root": "/flash/mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": [],
           "server": {"host": "127.0.0.1", "port": pop_port, "pop3s_port": 0},
           "services": {"usb_link": usb_link}, "log": {"level": "warning"}}
    for name in ("alice", "bob"):
        ppconfig.add_user(cfg, name, "secret", 200)
    img = str(tmp_path / "flash.img")
    make_image(img, {"alice": BIG, "bob": MSGS}, cfg=cfg, tmpdir=str(tmp_path / "s"))
    build_mpy(str(tmp_path / "mpy"))
    ppadmin.on_image(img, COPY, {"PP_MPY": str(tmp_path / "mpy" / "pocketpost")})
    ppadmin.on_image(img, BOOT_FILES, {"PP_FW": FIRMWARE})
    return img


def _login(port, user):
    c = poplib.POP3("127.0.0.1", port, timeout=10)
    c.user(user)
    c.pass_("secret")
    return c


def _maildir(top, box):
    d = top / box / "cur"
    names = sorted(os.listdir(d), key=lambda k: int(k.split("Q")[1].split(".")[0]))
    return [(d / k).read_bytes() for k in names]


def test_live_export_and_import_while_pop3_is_served(tmp_path):
    pop_port = free_port()
    img = _image(tmp_path, pop_port)
    with pseudoboard.PseudoBoard(str(tmp_path / "pb"), image=img, boot=True, heapsize=HEAP) as pb:
        wait_port(pop_port, pb.alive)
        c = _login(pop_port, "bob")
        assert c.stat()[0] == 3

        # 1. In-process, deterministic: the host stops reading after alice's 2nd message and
        # has the POP3 session served (a NOOP and a whole RETR) before it reads on.
        served = []

        class Pausing(mailport.MaildirWriter):
            def message(self, uid, arrival, size, copy):
                super().message(uid, arrival, size, copy)
                if len(served) == 0 and len(os.listdir(tmp_path / "md1" / "alice" / "cur")) == 2:
                    served.append(c.noop())
                    served.append(b"\r\n".join(c.retr(3)[1]))

        mailport.LIVE[0] = True
        try:
            counts = mailport.export(pb.tty, ["alice"], Pausing(str(tmp_path / "md1")))
        finally:
            mailport.LIVE[0] = False
        assert counts == {"alice": 6}
        assert served and served[0].startswith(b"+OK"), served
        assert served[1] + b"\r\n" == stored_form(MSGS[2])
        assert _maildir(tmp_path / "md1", "alice") == [stored_form(m) for m in BIG]

        # 2. ppadmin export --live of alice then bob while another thread keeps the POP3 session
        # reading bob's mail: the export cannot end before that session QUITs (it holds bob's
        # mailbox), so every RETR after alice's messages arrived is served mid-export; bob's
        # mailbox is waited for (bounded by mailport.LIVE_LOCK_WAIT_MS), not reported in use.
        log = []
        alice_dir = tmp_path / "md2" / "alice" / "cur"

        def reader():
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    seen = len(os.listdir(alice_dir)) if alice_dir.exists() else 0
                    for i in (1, 2, 3):
                        log.append((seen, b"\r\n".join(c.retr(i)[1]) + b"\r\n" == stored_form(MSGS[i - 1])))
                    if seen == len(BIG):
                        break
                log.append((-1, c.noop().startswith(b"+OK")))
                c.quit()
            except Exception as e:  # reported through the assertion below
                log.append((-2, repr(e)))

        th = threading.Thread(target=reader)
        th.start()
        r = run_ppadmin("export", pb.tty, "alice", "bob", "--live", "--maildir", tmp_path / "md2", "--progress",
                        timeout=60)
        th.join(30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "exported alice: 6 messages" in r.stdout and "exported bob: 3 messages" in r.stdout, r.stdout
        assert "in use" not in r.stderr and "restart" not in r.stderr, r.stderr
        assert "export: 9/9 messages" in r.stderr, r.stderr
        assert all(ok is True for _, ok in log), log
        assert [seen for seen, _ in log[-4:]] == [len(BIG)] * 3 + [-1], log  # served with alice exported
        assert _maildir(tmp_path / "md2", "alice") == [stored_form(m) for m in BIG]
        assert _maildir(tmp_path / "md2", "bob") == [stored_form(m) for m in MSGS]

        # 3. no restart: a session logged in before an import is still served after it, and
        # the imported message is served to the next session
        c = _login(pop_port, "bob")
        src = tmp_path / "in.mbox"
        src.write_bytes(b"From x@y Mon Jan  1 10:00:00 2024\nSubject: imported live\n\nhello\n")
        r = run_ppadmin("import", pb.tty, "alice", src, "--live", "--progress", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "import alice: 1 added, 0 skipped" in r.stdout, r.stdout + r.stderr
        assert "restart" not in r.stderr, r.stderr
        assert c.noop().startswith(b"+OK")
        c.quit()
        a = _login(pop_port, "alice")
        assert a.stat()[0] == 7
        assert b"\r\n".join(a.retr(7)[1]) == b"Subject: imported live\r\n\r\nhello"
        a.quit()
        # the same import again adds nothing (the journal, over the live link too)
        r = run_ppadmin("import", pb.tty, "alice", src, "--live", timeout=60)
        assert "import alice: 0 added, 1 skipped" in r.stdout, r.stdout + r.stderr

        # 4. backup --live, restored onto an image file: the same UIDs, arrival times and bytes
        mailport.LIVE[0] = True
        try:
            want = contents(pb.tty)
        finally:
            mailport.LIVE[0] = False
        assert [m for _, _, m in want["alice"]] == [stored_form(m) for m in BIG] + [b"Subject: imported live\r\n\r\nhello\r\n"]
        r = run_ppadmin("backup", pb.tty, tmp_path / "board.pp", "--live", timeout=60)
        assert r.returncode == 0 and "2 mailboxes, 10 messages" in r.stdout, r.stdout + r.stderr
        assert pb.alive()
    r = run_ppadmin("restore", tmp_path / "board.pp", tmp_path / "copy.img")
    assert r.returncode == 0, r.stdout + r.stderr
    assert contents(str(tmp_path / "copy.img")) == want


def test_live_refused_when_the_board_has_no_usb_link(tmp_path):
    pop_port = free_port()
    img = _image(tmp_path, pop_port, usb_link=False)
    with pseudoboard.PseudoBoard(str(tmp_path / "pb"), image=img, boot=True, heapsize=HEAP) as pb:
        wait_port(pop_port, pb.alive)
        r = run_ppadmin("export", pb.tty, "bob", "--live", "--maildir", tmp_path / "md", timeout=60)
        assert r.returncode != 0 and "no answer from the board's live link" in r.stderr, r.stdout + r.stderr
        c = _login(pop_port, "bob")  # still serving: nothing interrupted it
        assert c.stat()[0] == 3
        c.quit()


def test_a_partial_line_on_the_serial_port_does_not_stop_the_board(tmp_path):
    """The usb_link service read the serial port with readline(): a blocking stream, so a partial
    line (a terminal's keystroke, a modem prober's "AT\\r" with no line feed) held the event loop
    until a line end came: POP3 and SMTP stopped answering (a board's watchdog then reset it).
    Now the POP3 server answers while the partial line sits there, and a --live export after it
    (the start line comes after that garbage) still works."""
    pop_port = free_port()
    img = _image(tmp_path, pop_port)
    with pseudoboard.PseudoBoard(str(tmp_path / "pb"), image=img, boot=True, heapsize=HEAP) as pb:
        wait_port(pop_port, pb.alive)
        fd = os.open(pb.tty, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"AT\r")
            time.sleep(0.5)
            c = poplib.POP3("127.0.0.1", pop_port, timeout=5)  # the greeting, the login: the loop runs
            c.user("bob")
            c.pass_("secret")
            assert c.stat()[0] == 3
            c.quit()
        finally:
            os.close(fd)
        r = run_ppadmin("export", pb.tty, "bob", "--live", "--maildir", tmp_path / "md", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _maildir(tmp_path / "md", "bob") == [stored_form(m) for m in MSGS]


def _until(fd, marker, timeout, times=1, got=b""):
    """What the board wrote on the port (after `got`, read before) until `marker` is in it
    `times` times (bounded: AssertionError after timeout)."""
    import select

    deadline = time.monotonic() + timeout
    while got.count(marker) < times:
        left = deadline - time.monotonic()
        assert left > 0, (marker, got[-2000:])
        if select.select([fd], [], [], left)[0]:
            got += os.read(fd, 65536)
    return got


def _served(pop_port):
    c = poplib.POP3("127.0.0.1", pop_port, timeout=5)  # the greeting, the login: the loop runs
    c.user("bob")
    c.pass_("secret")
    assert c.stat()[0] == 3
    c.quit()


def test_a_host_that_stops_mid_line_does_not_stop_the_board(tmp_path):
    """The live session read the host's lines with readexactly()/readline() on the blocking serial
    stream: a host that died mid-line (or a stray partial line) held the event loop, POP3 and SMTP
    stopped answering and the 30 s idle cut-off (LIVE_IDLE_MS) could never fire (a board's
    watchdog then reset it). Now, for an export (the host's ack "~" cut before its line feed)
    and an import (a line announced 0x801 octets long, four sent), the POP3 server answers while
    the host is silent, the session ends at the cut-off with a log line, and the next one works.
    (The two cases run at once, each on a board of its own: the cut-off is waited out once.)"""
    got = {}
    threads = []
    for k, (cmd, cut) in enumerate([(b"export alice", b"~"), (b"serve", b"0801QUJD")]):
        def one(k=k, cmd=cmd, cut=cut):
            try:
                _cut_mid_line(tmp_path / ("board%d" % k), cmd, cut)
                got[k] = None
            except BaseException as e:  # noqa: BLE001 - raised again below, in the test's thread
                got[k] = e
        threads.append(threading.Thread(target=one))
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(got) == [0, 1], got  # both cases ran to their end
    for e in got.values():
        if e is not None:
            raise e


_SETUP = threading.Lock()


def _cut_mid_line(tmp_path, cmd, cut):
    """One case of the test above, on a board of its own: the host's start line for `cmd`, then
    `cut` and silence; POP3 is served meanwhile, the session ends at LIVE_IDLE_MS with its log
    line, POP3 is still served; then a whole --live export works."""
    from pocketpost import mailport as board_mailport

    tmp_path.mkdir()
    idle = board_mailport.LIVE_IDLE_MS / 1000
    pop_port = free_port()
    # One case's image and board made at a time: a process the other thread forks inherits, until
    # its exec, the open image this thread has just unlocked, and the next lock of it then failed
    # ("flash.img is in use by another process": seen twice under a loaded machine)
    with contextlib.ExitStack() as stack:
        with _SETUP:
            img = _image(tmp_path, pop_port)
            pb = stack.enter_context(pseudoboard.PseudoBoard(str(tmp_path / "pb"), image=img, boot=True, heapsize=HEAP))
        wait_port(pop_port, pb.alive)
        fd = os.open(pb.tty, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"pocketpost-live 1 " + cmd + b"\n")
            seen = _until(fd, b"@pocketpost-live ok\n", 10)
            if cmd.startswith(b"export"):  # the window of lines out, then the board waits for an ack
                _until(fd, b"\n@", 20, 5, seen)
            os.write(fd, cut)
            t0 = time.monotonic()
            time.sleep(0.5)
            _served(pop_port)
            out = _until(fd, b"usb link: " + cmd + b" failed: ", idle + 15)
            waited = time.monotonic() - t0
            assert idle - 1 <= waited <= idle + 15, waited
            assert b"the host sent nothing for %d s" % idle in out, out[-500:]
            _served(pop_port)
        finally:
            os.close(fd)
        r = run_ppadmin("export", pb.tty, "bob", "--live", "--maildir", tmp_path / "md", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _maildir(tmp_path / "md", "bob") == [stored_form(m) for m in MSGS]
