"""Review w20: export / backup / restore / the move to Dovecot used as a user would (docs/MIGRATE.md),
with the real server (poplib), the real Dovecot and Python's mailbox module as readers.

- restore onto a board that already had mail numbered above the backup's messages refused those
  messages (lost to the restore, exit 1); they now go in with new UIDLs, once, even on a rerun;
- restore to a serial port that is not there (the board unplugged) made a 2 MiB image file in /dev;
- mbox export wrote `From MAILER-DAEMON` for every message: the From_ line now carries the envelope
  sender the message's Return-Path keeps;
- the mboxrd quoter let a line of 64+ '>' before "From " through unquoted when a chunk boundary
  fell inside it (the reader then took a '>' off a line that never had one added);
- `--mbox DIR/` with one mailbox named failed ("Is a directory"), all mailboxes into an existing
  file failed with "[Errno 17] File exists";
- what Dovecot's mbox really does with the quoting (the docs said it removes it: it does not), and
  `--mbox-quoting o` for such readers.
"""

import mailbox
import os
import poplib
import re

import dovecot
import pytest
from mailimage import contents, deliver, make_image, run_ppadmin, serve_image, stored_form
from serverharness import Pop3Server

import mailport

USERS = {"alice": "alice pass"}


def _pop(port):
    """[(uidl, bytes)] of alice's mailbox over POP3 (poplib), then QUIT."""
    p = poplib.POP3("127.0.0.1", port, timeout=20)
    try:
        p.user("alice")
        p.pass_("alice pass")
        out = []
        for ln in p.uidl()[1]:
            n, uid = ln.decode().split(" ")
            out.append((uid, b"\r\n".join(p.retr(int(n))[1]) + b"\r\n"))
        return out
    finally:
        p.quit()


def _served(tmp_path, img):
    d = tmp_path / ("srv%d" % len(list(tmp_path.glob("srv*"))))
    d.mkdir()
    srv = Pop3Server(str(d))
    serve_image(srv, img, USERS)
    try:
        return _pop(srv.port)
    finally:
        srv.stop()


OLD = [b"Subject: old %d\r\n\r\nkept on the server by a POP3 client\r\n" % i for i in range(5)]
NEW = [b"Subject: new %d\r\n\r\narrived at the new board before the restore\r\n" % i for i in range(3)]


def test_restore_onto_a_board_with_mail_above_restores_every_message_once(tmp_path):
    old = str(tmp_path / "old.img")
    make_image(old, {"alice": OLD}, tmpdir=str(tmp_path / "s1"))
    before = _served(tmp_path, old)
    assert run_ppadmin("backup", old, tmp_path / "b.pp").returncode == 0
    # The new board was deployed and took three messages before the owner restored the backup,
    # one of them the same as the backup's second (fetched from the same account, say).
    new = str(tmp_path / "new.img")
    make_image(new, {"alice": NEW[:2] + [OLD[1]]}, tmpdir=str(tmp_path / "s2"))
    r = run_ppadmin("restore", tmp_path / "b.pp", new)
    assert r.returncode == 0, r.stdout + r.stderr  # was 1: "refused: ... uid ... is not above the mailbox's last"
    assert "restore %s: 4 messages restored (2 of them under a new UIDL), 1 already there" % new in r.stdout, r.stdout
    assert len(re.findall(r"message alice \S+ restored as \S+: alice already holds mail numbered above it", r.stdout)) == 2
    after = _served(tmp_path, new)
    # every message once, byte for byte; the two whose UIDs fit keep their UIDLs; all UIDLs distinct
    assert sorted(m for _, m in after) == sorted(OLD + NEW[:2])
    assert len({u for u, _ in after}) == 7
    assert [u for u, _ in after][3:5] == [u for u, _ in before][3:5]
    assert [m for _, m in after] == NEW[:2] + [OLD[1]] + OLD[3:] + [OLD[0], OLD[2]]
    # a rerun adds nothing (the renumbered ones are found in the import journal)
    r = run_ppadmin("restore", tmp_path / "b.pp", new)
    assert r.returncode == 0 and "0 messages restored, 5 already there" in r.stdout, r.stdout + r.stderr
    assert "restored as" not in r.stdout
    # mail delivered after the restore gets a UIDL no message has
    uid = deliver(new, {"alice": [b"Subject: later\r\n\r\nx\r\n"]}, tmpdir=str(tmp_path / "s3"))["alice"][0]
    uids = [u for u, _, _ in contents(new)["alice"]]
    assert len(uids) == 8 and uids[-1] == uid and uid not in uids[:-1]


def test_restore_onto_a_fresh_image_still_keeps_every_uidl(tmp_path):
    # Control: nothing renumbered when the mailbox is new (the usual restore)
    old = str(tmp_path / "old.img")
    make_image(old, {"alice": OLD}, tmpdir=str(tmp_path / "s1"))
    assert run_ppadmin("backup", old, tmp_path / "b.pp").returncode == 0
    r = run_ppadmin("restore", tmp_path / "b.pp", tmp_path / "n.img")
    assert r.returncode == 0 and "5 messages restored, 0 already there" in r.stdout, r.stdout + r.stderr
    assert contents(str(tmp_path / "n.img")) == contents(old)


def test_restore_to_an_unplugged_board_makes_no_file_in_dev(tmp_path):
    port = "/dev/ttyUSB97"
    if os.path.exists(port):
        pytest.skip("%s exists here" % port)
    old = str(tmp_path / "old.img")
    make_image(old, {"alice": OLD[:1]}, tmpdir=str(tmp_path / "s1"))
    assert run_ppadmin("backup", old, tmp_path / "b.pp").returncode == 0
    try:
        r = run_ppadmin("restore", tmp_path / "b.pp", port)
        made = [p for p in (port, port + ".part") if os.path.exists(p)]
    finally:
        for p in (port, port + ".part"):
            if os.path.isfile(p):
                os.remove(p)
    assert not made, "restore made %s" % made
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.strip() == ("ppadmin restore: %s: no such serial port: is the board plugged in "
                                "(ls /dev/ttyUSB* /dev/ttyACM*)?" % port), r.stderr
    r = run_ppadmin("export", port, "--maildir", tmp_path / "md")
    assert r.returncode == 3 and "no such serial port: is the board plugged in" in r.stderr, r.stderr
    r = run_ppadmin("restore", tmp_path / "b.pp", tmp_path)  # a folder given for the image
    assert r.returncode == 3 and "a folder, not an image file" in r.stderr, r.stderr


ENVELOPE = [
    # what the board's SMTP receiver writes first (smtpenv.py: "Return-Path: <%s>\r\nReceived: ...")
    b"Return-Path: <printer@home.example>\r\nReceived: from scanner ([192.0.2.7])\r\n\tby pocketpost\r\n"
    b"Subject: scan\r\n\r\nFrom the scanner\r\n",
    b"Return-Path: <>\r\nSubject: bounce\r\n\r\nnull sender\r\n",
    b"Subject: fetched\r\nReturn-Path:\r\n <list-bounces@lists.example>\r\n\r\nfolded\r\n",
    b"Subject: none\r\n\r\nReturn-Path: <not@the.header>\r\n",
    b'Return-Path: <"a b"@quoted.example>\r\nSubject: spaces\r\n\r\nx\r\n',
]


def test_mbox_from_line_carries_the_envelope_sender(tmp_path):
    img = str(tmp_path / "a.img")
    make_image(img, {"alice": ENVELOPE}, tmpdir=str(tmp_path / "s"))
    r = run_ppadmin("export", img, "alice", "--mbox", tmp_path / "a.mbox")
    assert r.returncode == 0, r.stdout + r.stderr
    mb = mailbox.mbox(str(tmp_path / "a.mbox"), create=False)
    senders = [mb.get_message(k).get_from().split(" ")[0] for k in mb.keys()]
    assert senders == ["printer@home.example", "MAILER-DAEMON", "list-bounces@lists.example", "MAILER-DAEMON",
                       "MAILER-DAEMON"]
    # the From_ lines still parse as such: the mbox imports back, every message exactly, arrival kept
    new = str(tmp_path / "n.img")
    make_image(new, {"alice": []}, tmpdir=str(tmp_path / "s2"))
    r = run_ppadmin("import", new, "alice", tmp_path / "a.mbox", "--create-mailbox")
    assert "import alice: 5 added" in r.stdout, r.stdout + r.stderr
    assert [(a, m) for _, a, m in contents(new)["alice"]] == [(a, m) for _, a, m in contents(img)["alice"]]


def test_mboxrd_quoter_long_quote_runs_at_every_split():
    data = b"x\r\n" + b">" * 100 + b"From y\r\n" + b">" * 70 + b"Fro" + b"m z\r\n>From\r\nFrom"
    for quoting, pat in (("rd", rb"(?m)^(?=>*From )"), ("o", rb"(?m)^(?=From )")):
        want = re.sub(pat, b">", data)
        for size in range(1, len(data) + 1):
            out = []
            q = mailport.MboxrdQuoter(out.append, quoting)
            for i in range(0, len(data), size):
                q.feed(data[i : i + size])
            q.finish()
            assert b"".join(out) == want, (quoting, size)


def test_mbox_into_a_folder_and_all_mailboxes_onto_a_file(tmp_path):
    img = str(tmp_path / "a.img")
    make_image(img, {"alice": OLD[:2], "bob": OLD[2:3]}, tmpdir=str(tmp_path / "s"))
    (tmp_path / "out").mkdir()
    for target in ("out/", "out"):  # one mailbox into a folder: out/alice.mbox
        r = run_ppadmin("export", img, "alice", "--mbox", str(tmp_path / target))
        assert r.returncode == 0, r.stdout + r.stderr
        assert os.listdir(tmp_path / "out") == ["alice.mbox"]
    (tmp_path / "a.mbox").write_bytes(b"mine")
    r = run_ppadmin("export", img, "--mbox", tmp_path / "a.mbox")  # every mailbox, onto a file
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stderr.strip() == ("ppadmin export: %s is a file: several mailboxes go into a folder (--mbox DIR/, a "
                                "DIR/<mailbox>.mbox each); name one mailbox to write one file" % (tmp_path / "a.mbox"))
    assert (tmp_path / "a.mbox").read_bytes() == b"mine"


QUOTED = [
    b"Subject: q\r\n\r\nFrom the start\r\n>From quoted\r\n>>From twice\r\nplain\r\n",
    b"Subject: plain\r\n\r\nno From line at the start of a line\r\nno final newline",
]


def _dovecot_mbox(tmp_path, mbox):
    """[(uidl, bytes)] of Dovecot 2.3 serving `mbox` as alice's INBOX (mail_location mbox)."""
    import shutil

    def prepare(dc):
        home = os.path.join(dc.dir, "home", "alice")
        os.makedirs(os.path.join(home, "mail"))
        shutil.copy(mbox, os.path.join(home, "inbox.mbox"))
        dc._chown(home)

    dc = dovecot.Dovecot(USERS, extra="mail_location = mbox:~/mail:INBOX=~/inbox.mbox\n", prepare=prepare).start()
    try:
        return _pop(dc.port)
    finally:
        dc.stop()


def test_dovecot_mbox_reads_the_export_as_the_docs_say(tmp_path):
    img = str(tmp_path / "a.img")
    make_image(img, {"alice": QUOTED}, tmpdir=str(tmp_path / "s"))
    want = [stored_form(m) for m in QUOTED]
    for quoting in ("rd", "o"):
        out = tmp_path / ("a-%s.mbox" % quoting)
        r = run_ppadmin("export", img, "alice", "--mbox", out, "--mbox-quoting", quoting)
        assert r.returncode == 0, r.stdout + r.stderr
        got = [m for _, m in _dovecot_mbox(tmp_path, str(out))]
        assert got[1] == want[1]  # no From line: exact, no final newline added twice
        # Dovecot removes no '>' (docs/MIGRATE.md): mboxrd shows one more on every /^>*From / line,
        # mboxo only on the "From " line
        if quoting == "rd":
            assert got[0] == b"Subject: q\r\n\r\n>From the start\r\n>>From quoted\r\n>>>From twice\r\nplain\r\n"
        else:
            assert got[0] == b"Subject: q\r\n\r\n>From the start\r\n>From quoted\r\n>>From twice\r\nplain\r\n"


def test_mbox_from_line_whatever_the_link_chunking(tmp_path):
    # Over USB the message arrives in base64 lines of 1.5 KiB, from an image in 64 KiB reads: the
    # header is held back until it ends, then the From_ line, then the message, at any split.
    m = stored_form(ENVELOPE[2]) + b">From x\r\n" + b"y" * 300 + b"\r\nFrom z\r\n"
    want = None
    for size in range(1, len(m) + 1):
        p = tmp_path / ("m%d.mbox" % size)
        w = mailport.MboxWriter(str(p), True)
        w.mailbox("alice", 1, len(m))
        w.message("0000abcd.1", 1700000000, len(m),
                  lambda write: [write(m[i : i + size]) for i in range(0, len(m), size)])
        w.close()
        got = p.read_bytes()
        p.unlink()
        want = want or got
        assert got == want, size
    assert want == (b"From list-bounces@lists.example Tue Nov 14 22:13:20 2023\n"
                    + re.sub(rb"(?m)^(?=>*From )", b">", m) + b"\n")


@pytest.mark.skipif(not __import__("shutil").which("neomutt") or not __import__("shutil").which("script"),
                    reason="neomutt or script (util-linux) not installed")
def test_neomutt_reads_the_mbox_with_envelope_senders(tmp_path):
    from test_mailport_neomutt import _neomutt_pipe_all

    img = str(tmp_path / "a.img")
    make_image(img, {"alice": ENVELOPE}, tmpdir=str(tmp_path / "s"))
    assert run_ppadmin("export", img, "alice", "--mbox", tmp_path / "a.mbox").returncode == 0
    pieces = _neomutt_pipe_all(tmp_path, str(tmp_path / "a.mbox"))
    assert len(pieces) == 5  # every From_ line seen as one, none split a message
    froms = [p.split(b" ", 2)[1] for p in pieces]
    assert froms == [b"printer@home.example", b"MAILER-DAEMON", b"list-bounces@lists.example", b"MAILER-DAEMON",
                     b"MAILER-DAEMON"]
    for p, m in zip(pieces, ENVELOPE):  # neomutt writes the header's end as a bare LF (test_mailport_neomutt)
        body = p.split(b"\n", 1)[1].replace(b"\r\n\n", b"\r\n\r\n", 1)
        assert re.sub(rb"(?m)^>(>*From )", rb"\1", body) == stored_form(m)


# --- a host's own store (the fetch CLI's folder, README "Fetching mail"): export and import -------

DIR_DELIVER = r"""
import os
from pocketpost import config
st = config.open_store(config.load("config.json"))
for i, n in enumerate(sorted(os.listdir("eml"))):
    print(st.deliver_file("inbox", "eml/" + n, 1700000000 + i))
"""


def _micropython(cwd, code, **kw):
    import subprocess

    from helpers import FIRMWARE, ROOT

    return subprocess.run([os.path.join(ROOT, ".venv", "bin", "micropython"), "-c", code], cwd=str(cwd),
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"), **kw)


def test_a_host_directory_store_exports_and_imports(tmp_path):
    # A user of the fetch CLI on a host has mail in a folder store ("store": {"root": "mail"}), its
    # messages kept dot-stuffed on disk: export said "no such image file", so nothing but the
    # fetch CLI's own store code could read that mail.
    ds = tmp_path / "pp"
    (ds / "eml").mkdir(parents=True)
    (ds / "config.json").write_text('{"store": {"root": "mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": []}')
    msgs = [ENVELOPE[0], b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\n", QUOTED[1]]
    for i, m in enumerate(msgs):
        (ds / "eml" / ("%d.eml" % i)).write_bytes(m)
    r = _micropython(ds, DIR_DELIVER)
    assert r.returncode == 0, r.stderr
    uids = r.stdout.split()
    r = run_ppadmin("export", ds, "--maildir", tmp_path / "md")
    assert r.returncode == 0 and "exported inbox: 3 messages" in r.stdout, r.stdout + r.stderr
    md = mailbox.Maildir(str(tmp_path / "md" / "inbox"), factory=None, create=False)
    got = sorted((k.split(".P")[1].split(".pocketpost")[0], md.get_bytes(k)) for k in md.keys())
    assert got == sorted(("%s" % u.replace(".", "Q"), stored_form(m)) for u, m in zip(uids, msgs))
    r = run_ppadmin("export", ds / "config.json", "inbox", "--mbox", tmp_path / "i.mbox")  # the config's path
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "i.mbox").read_bytes().startswith(b"From printer@home.example ")
    # import into it (idempotent, as into an image), then the export has both
    (tmp_path / "new.eml").write_bytes(b"Subject: imported\r\n\r\ninto the folder store\r\n")
    for added in (1, 0):
        r = run_ppadmin("import", ds, "inbox", tmp_path / "new.eml")
        assert r.returncode == 0 and "import inbox: %d added" % added in r.stdout, r.stdout + r.stderr
    r = run_ppadmin("export", ds, "--maildir", tmp_path / "md")
    assert "exported inbox: 4 messages (3 of them already there" in r.stdout, r.stdout + r.stderr
    assert not (ds / "mail.fetch-lock").exists()
    # backup and restore stay for images and boards: said in one line
    r = run_ppadmin("backup", ds, tmp_path / "b.pp")
    assert r.returncode == 3 and "a store in a host folder: backup and restore are for an image or a board" in r.stderr


def test_a_directory_store_and_the_fetch_cli_take_turns(tmp_path):
    # One process at a time uses a store: the export takes the fetch CLI's lock (<root>.fetch-lock),
    # so the real fetch CLI started meanwhile refuses, and an export refuses while a fetch holds it.
    import subprocess
    import sys

    ds = tmp_path / "pp"
    ds.mkdir()
    (ds / "config.json").write_text('{"store": {"root": "mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": []}')
    (ds / "mail").mkdir()
    link = mailport.open_link(str(ds), "serve", dir_store=True)
    try:
        from helpers import FIRMWARE, ROOT

        r = subprocess.run([os.path.join(ROOT, ".venv", "bin", "micropython"), "-m", "pocketpost.fetch", "config.json"],
                           cwd=str(ds), capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"))
        assert r.returncode == 1 and "another fetch (pid %d) is using the store" % link.proc.pid in r.stdout, r.stdout
    finally:
        link.close()
    assert not (ds / "mail.fetch-lock").exists()
    # a fetch that runs (a process whose command line says fetch) holds it: the export refuses
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "pocketpost.fetch"])
    try:
        (ds / "mail.fetch-lock").mkdir()
        (ds / "mail.fetch-lock" / "pid").write_text(str(fake.pid))
        r = run_ppadmin("export", ds, "--maildir", tmp_path / "md")
        assert r.returncode == 3 and "the store is in use: %s is held by pid %d" % (ds / "mail.fetch-lock", fake.pid) \
            in r.stderr, r.stdout + r.stderr
    finally:
        fake.kill()
        fake.wait()
    # the lock of a fetch that was killed is taken over
    r = run_ppadmin("export", ds, "--maildir", tmp_path / "md")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (ds / "mail.fetch-lock").exists()


def test_over_usb_restore_onto_a_board_that_took_mail_and_mbox_export(tmp_path):
    # The same through the pseudo-board (mpremote raw REPL, base64 lines of 1.5 KiB): the journal
    # (J) and the renumbered messages go over the link; the mbox written from the board's link is
    # byte for byte the one written from its image.
    import pseudoboard
    from test_mailport_usb import _board_image

    old = str(tmp_path / "old.img")
    make_image(old, {"alice": [ENVELOPE[0]] + OLD[1:]}, tmpdir=str(tmp_path / "s1"))
    assert run_ppadmin("backup", old, tmp_path / "b.pp").returncode == 0
    img, _ = _board_image(tmp_path, "two", {"alice": NEW})
    with pseudoboard.PseudoBoard(str(tmp_path / "pb"), image=img) as pb:
        r = run_ppadmin("restore", tmp_path / "b.pp", pb.tty)
        assert r.returncode == 0 and "5 messages restored (3 of them under a new UIDL)" in r.stdout, r.stdout + r.stderr
        r = run_ppadmin("restore", tmp_path / "b.pp", pb.tty)
        assert r.returncode == 0 and "0 messages restored, 5 already there" in r.stdout, r.stdout + r.stderr
        r = run_ppadmin("export", pb.tty, "alice", "--mbox", tmp_path / "usb.mbox")
        assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(m for _, _, m in contents(img)["alice"]) == sorted(stored_form(m) for m in [ENVELOPE[0]] + OLD[1:] + NEW)
    assert run_ppadmin("export", img, "alice", "--mbox", tmp_path / "img.mbox").returncode == 0
    assert (tmp_path / "usb.mbox").read_bytes() == (tmp_path / "img.mbox").read_bytes()
    assert b"\nFrom printer@home.example " in (tmp_path / "usb.mbox").read_bytes()
