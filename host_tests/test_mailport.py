"""ppadmin export / import / backup / restore on a flash image (tools/mailport.py + the board side
firmware/pocketpost/mailport.py under micropython). Message bytes are compared exactly with what
the store holds; exports are read back with Python's `mailbox` module; UIDLs after a restore
are read from the real server with poplib."""

import mailbox
import os
import poplib
import re
import time

import pytest
from mailimage import contents, delete, deliver, make_image, run_ppadmin, serve_image, stored_form
from serverharness import Pop3Server

import mailport

MSGS = [
    b"From: a@example.org\r\nSubject: one\r\n\r\nhello\r\n.dot line\r\nFrom the start of a line\r\n>From quoted\r\n>>From twice\r\n",
    b"Subject: lf only\n\nbody\nFrom x\n\n",
    b"Subject: \xe9t\xe9 \xff\r\n\r\nno final newline",
    b"Subject: blank lines at the end\r\n\r\nbody\r\n\r\n\r\n",
    b"Subject: big\r\n\r\n" + b"".join(b"line %06d From nowhere .x\r\n" % i for i in range(12000)),  # ~360 KB
    b"From: no separator\r\nSubject: all header",
]


def _unquote_rd(data):
    return re.sub(rb"(?m)^>(>*From )", rb"\1", data)


@pytest.fixture
def image(tmp_path):
    p = str(tmp_path / "a.img")
    uids = make_image(p, {"alice": MSGS, "bob": MSGS[:2]}, tmpdir=str(tmp_path / "src"))
    return p, uids


def test_board_log_lines_ride_the_link_and_the_export_goes_on(image, tmp_path):
    # A mailbox whose index is gone (a kill between its creation and its first index write): the
    # board's store rebuilds it and logs a warning. Printed, that line broke the record stream
    # ("garbled"); it travels as a "#" record, the host shows it on stderr, the export completes.
    import ppadmin

    img, uids = image
    ppadmin.on_image(img, 'import os\nos.remove("/flash/mail/alice/index")\n')
    r = run_ppadmin("export", img, "--maildir", tmp_path / "md")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "exported alice: 6 messages" in r.stdout, r.stdout + r.stderr
    assert re.search(r"board: .* WARN store .*alice: index missing: rebuilt", r.stderr), r.stderr
    # import goes through the command loop (serve): a log line before a reply is skipped the same way
    ppadmin.on_image(img, 'import os\nos.remove("/flash/mail/bob/index")\n')
    (tmp_path / "new.eml").write_bytes(b"Subject: new\r\n\r\nx\r\n")
    r = run_ppadmin("import", img, "bob", tmp_path / "new.eml")
    assert "import bob: 1 added" in r.stdout, r.stdout + r.stderr
    assert re.search(r"board: .*bob: index missing: rebuilt", r.stderr), r.stderr
    assert len(contents(img)["bob"]) == 3


def _listing(img):
    import ppadmin

    return ppadmin.on_image(img, "import os\nprint(sorted(os.listdir('/flash/mail')))\n"
                                 "print(sorted(os.listdir('/flash/mail/.import')) if '.import' in os.listdir('/flash/mail')"
                                 " else [])\n")


def test_import_into_a_new_mailbox_no_user_reads_needs_create_mailbox(image, tmp_path):
    # A typo (`alcie`) made a mailbox nobody can fetch from, exit 0; `deliver` refuses the same.
    img, uids = image
    (tmp_path / "m.eml").write_bytes(b"Subject: typo\r\n\r\nx\r\n")
    before = _listing(img)
    r = run_ppadmin("import", img, "alcie", tmp_path / "m.eml")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == ["ppadmin import: no mailbox alcie on %s and no user reads it (users: "
                                             "none): add the user first, or pass --create-mailbox" % img], r.stderr
    assert "import alcie" not in r.stdout
    assert _listing(img) == before and "alcie" not in contents(img)  # nothing made, no journal either
    # an existing mailbox no user reads (bob, made by delivery) takes it as before
    r = run_ppadmin("import", img, "bob", tmp_path / "m.eml")
    assert r.returncode == 0 and "import bob: 1 added" in r.stdout, r.stdout + r.stderr
    # a new mailbox a user reads: the user was added first (its mailbox defaults to its name)
    r = run_ppadmin("adduser", img, "carol", "--password", "pw", "--iterations", "4096")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_ppadmin("import", img, "alcie", tmp_path / "m.eml")
    assert r.returncode == 2 and "(users: carol)" in r.stderr, r.stdout + r.stderr
    r = run_ppadmin("import", img, "carol", tmp_path / "m.eml")
    assert r.returncode == 0 and "import carol: 1 added" in r.stdout, r.stdout + r.stderr
    # and with --create-mailbox a new mailbox no user reads is made, as `deliver --create-mailbox`
    r = run_ppadmin("import", img, "alcie", tmp_path / "m.eml", "--create-mailbox")
    assert r.returncode == 0 and "import alcie: 1 added" in r.stdout, r.stdout + r.stderr
    assert [m for _, _, m in contents(img)["alcie"]] == [b"Subject: typo\r\n\r\nx\r\n"]


def test_export_maildir_and_mbox_read_back_exactly(image, tmp_path):
    img, uids = image
    want = [stored_form(m) for m in MSGS]
    r = run_ppadmin("export", img, "--maildir", tmp_path / "md")
    assert r.returncode == 0, r.stderr
    assert "exported alice: 6 messages" in r.stdout and "exported bob: 2 messages" in r.stdout
    md = mailbox.Maildir(str(tmp_path / "md" / "alice"), factory=None, create=False)
    keys = sorted(md.keys(), key=lambda k: int(k.split("Q")[1].split(".")[0]))
    assert [md.get_bytes(k) for k in keys] == want
    # the UID is in the file name, the arrival time is the name's prefix and the mtime
    assert ["%s.%s" % (k.split(".P")[1].split("Q")[0], k.split("Q")[1].split(".")[0]) for k in keys] == uids["alice"]
    assert [int(k.split(".")[0]) for k in keys] == [1700000000 + i for i in range(6)]
    assert len(os.listdir(tmp_path / "md" / "alice" / "tmp")) == 0

    r = run_ppadmin("export", img, "alice", "--mbox", tmp_path / "alice.mbox")
    assert r.returncode == 0, r.stderr
    mb = mailbox.mbox(str(tmp_path / "alice.mbox"), factory=None, create=False)
    got = [mb.get_bytes(k) for k in mb.keys()]
    assert len(got) == 6  # no split at a body line starting with "From "
    assert [_unquote_rd(g) for g in got] == want  # mboxrd: one ">" less gives the exact bytes
    assert got[1] == b"Subject: lf only\r\n\r\nbody\r\n>From x\r\n\r\n"
    # several mailboxes: one mbox file per mailbox in a folder
    r = run_ppadmin("export", img, "--mbox", tmp_path / "all")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "all")) == ["alice.mbox", "bob.mbox"]
    mb = mailbox.mbox(str(tmp_path / "all" / "bob.mbox"), factory=None, create=False)
    assert [_unquote_rd(mb.get_bytes(k)) for k in mb.keys()] == want[:2]


def test_export_maildir_again_leaves_what_a_reader_flagged_and_adds_no_copy(image, tmp_path):
    # A nightly `export --maildir` into the folder mutt reads: a message mutt has flagged (renamed
    # ":2,S") or Dovecot has moved must not come back as a second copy under the bare name.
    img, uids = image
    md = tmp_path / "md" / "alice"
    assert run_ppadmin("export", img, "--maildir", tmp_path / "md").returncode == 0
    names = sorted(os.listdir(md / "cur"))
    os.rename(md / "cur" / names[0], md / "cur" / (names[0] + "RS"))  # replied, seen
    os.rename(md / "cur" / names[1], md / "new" / names[1].split(":")[0])
    r = run_ppadmin("export", img, "--maildir", tmp_path / "md")
    assert r.returncode == 0, r.stderr
    assert len(os.listdir(md / "cur")) + len(os.listdir(md / "new")) == 6  # (mailbox.Maildir shows one of two)
    box = mailbox.Maildir(str(md), factory=None, create=False)
    assert sorted(box.get_bytes(k) for k in box.keys()) == sorted(stored_form(m) for m in MSGS)
    assert "exported alice: 6 messages (6 of them already there, left as they were)" in r.stdout
    assert box.get_message([k for k in box.keys() if names[0].startswith(k)][0]).get_flags() == "RS"
    # A message deleted from the board since is not taken out of the folder; new mail is added.
    deliver(img, {"alice": [b"Subject: new\r\n\r\nnew\r\n"]})
    r = run_ppadmin("export", img, "alice", "--maildir", tmp_path / "md")
    assert "exported alice: 7 messages (6 of them already there" in r.stdout, r.stdout + r.stderr
    assert len(os.listdir(md / "cur")) + len(os.listdir(md / "new")) == 7


def test_export_dovecot_through_a_link_writes_into_the_users_maildir(image, tmp_path):
    # docs/MIGRATE.md's route into `maildir:~/Maildir`: a folder of links named as the mailboxes.
    img, uids = image
    home = tmp_path / "home" / "alice" / "Maildir"
    for sub in ("cur", "new", "tmp"):
        os.makedirs(home / sub)
    (tmp_path / "move").mkdir()
    os.symlink(home, tmp_path / "move" / "alice")
    r = run_ppadmin("export", img, "alice", "--dovecot", tmp_path / "move")
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.islink(tmp_path / "move" / "alice") and len(os.listdir(home / "cur")) == 6
    assert [ln.split(" ")[1] for ln in (home / "dovecot-uidlist").read_text().splitlines()[1:]] == [
        "P" + u for u in uids["alice"]]
    assert (home / "pocketpost-exported").read_text().split() == sorted(uids["alice"])


def test_mbox_export_killed_midway_leaves_the_earlier_file_whole(tmp_path):
    """An mbox export wrote straight into FILE: one that failed or was killed midway left the
    earlier export truncated and cut short. FILE is now always the earlier export or the whole
    new one, and a rerun after the kill completes it."""
    import signal
    import subprocess
    import sys

    img = str(tmp_path / "big.img")
    body = b"".join(b"line %06d From here .dot\r\n" % i for i in range(40000))  # ~1 MB each
    make_image(img, {"alice": [b"Subject: %d\r\n\r\n" % i + body for i in range(12)]}, size=16 * 1024 * 1024,
               tmpdir=str(tmp_path / "s"))
    out = tmp_path / "alice.mbox"
    old = b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\nSubject: earlier\n\nkeep me\n\n" * 1000
    out.write_bytes(old)
    cmd = [sys.executable, os.path.join(os.path.dirname(mailport.__file__), "ppadmin.py"), "export", img, "alice",
           "--mbox", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        part = tmp_path / "alice.mbox.part"
        while time.monotonic() < deadline and p.poll() is None:  # kill once writing has begun
            if (part.exists() and part.stat().st_size > 0) or out.read_bytes()[:len(old)] != old:
                break
            time.sleep(0.001)
        finished = p.poll() == 0  # (a machine fast enough to finish first: then FILE is the new whole one)
        p.send_signal(signal.SIGKILL)
    finally:
        p.wait(timeout=30)
    if not finished:
        assert out.read_bytes() == old  # not truncated, not cut short
    r = run_ppadmin("export", img, "alice", "--mbox", out)
    assert r.returncode == 0, r.stderr
    assert len(mailbox.mbox(str(out))) == 12 and not (tmp_path / "alice.mbox.part").exists()


def test_mboxrd_quoter_any_chunking():
    data = b"From a\r\n>From b\r\nx From c\r\n>>>From d\r\nFro\r\nFrom\r\nFrom x"
    want = b">From a\r\n>>From b\r\nx From c\r\n>>>>From d\r\nFro\r\nFrom\r\n>From x"
    for size in (1, 2, 3, 5, 7, len(data)):
        out = []
        q = mailport.MboxrdQuoter(out.append)
        for i in range(0, len(data), size):
            q.feed(data[i : i + size])
        q.finish()
        assert b"".join(out) == want, size


def test_import_round_trip_idempotent(image, tmp_path):
    img, uids = image
    want = [stored_form(m) for m in MSGS]
    assert run_ppadmin("export", img, "alice", "--mbox", tmp_path / "a.mbox").returncode == 0
    assert run_ppadmin("export", img, "alice", "--maildir", tmp_path / "md").returncode == 0
    r = run_ppadmin("import", img, "carol", tmp_path / "a.mbox", "--create-mailbox")  # no user reads carol
    assert r.returncode == 0, r.stdout + r.stderr
    assert "import carol: 6 added, 0 skipped (already there), 0 refused" in r.stdout
    got = contents(img, ["carol"])["carol"]
    assert [m for _, _, m in got] == want
    assert [a for _, a, _ in got] == [1700000000 + i for i in range(6)]  # the From_ line's time
    # again, and from the Maildir export of the same mail: nothing is added twice
    for src in (tmp_path / "a.mbox", tmp_path / "md" / "alice"):
        r = run_ppadmin("import", img, "carol", src)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "import carol: 0 added, 6 skipped (already there), 0 refused" in r.stdout
    assert len(contents(img, ["carol"])["carol"]) == 6
    # .eml files: a folder of them, and one file
    eml = tmp_path / "eml"
    eml.mkdir()
    for i, m in enumerate(MSGS[:3]):
        (eml / ("%d.eml" % i)).write_bytes(m)
    (eml / "new.eml").write_bytes(b"Subject: new\r\n\r\nnew one\r\n")
    (eml / "ignored.txt").write_bytes(b"Subject: not an eml\r\n\r\n")
    r = run_ppadmin("import", img, "carol", eml)
    assert "import carol: 1 added, 3 skipped" in r.stdout, r.stdout + r.stderr
    got = contents(img, ["carol"])["carol"]
    assert got[-1][2] == b"Subject: new\r\n\r\nnew one\r\n"


def test_import_malformed_input_one_line_each(image, tmp_path):
    img, _ = image
    mbox = tmp_path / "bad.mbox"
    mbox.write_bytes(
        b"From someone@example.org Mon Jan  1 10:00:00 2024\n"
        b"Subject: unescaped\n\nFrom what I heard, this stays in the body.\nFrom me\n\n"
        b"From other@example.org Tue Jan  2 11:00:00 2024\r\n"
        b"Subject: mixed\r\nX-Bad: \xc3\x28 not utf-8\n\r\nline crlf\r\nline lf\n\n"
        b"From - Wed Jan  3 12:00:00 2024\n"
        b"No-Separator: just one header line\n\n"
        b"From x@y Thu Jan  4 13:00:00 2024\n\n"
    )
    r = run_ppadmin("import", img, "dave", mbox, "--create-mailbox")
    lines = r.stdout.splitlines()
    assert "import dave: 3 added, 0 skipped (already there), 1 refused" in r.stdout, r.stdout + r.stderr
    assert any("message 1" in ln and "unescaped 'From ' line inside the body (kept) (2 lines)" in ln for ln in lines), lines
    assert any("message 2" in ln and "not UTF-8" in ln for ln in lines), lines
    assert any("message 2" in ln and "mixed CRLF and LF" in ln for ln in lines), lines
    assert any("message 3" in ln and "no empty line between header and body" in ln for ln in lines), lines
    assert any("message 4" in ln and "refused: empty message" in ln for ln in lines), lines
    got = [m for _, _, m in contents(img, ["dave"])["dave"]]
    assert got == [
        b"Subject: unescaped\r\n\r\nFrom what I heard, this stays in the body.\r\nFrom me\r\n",
        b"Subject: mixed\r\nX-Bad: \xc3\x28 not utf-8\r\n\r\nline crlf\r\nline lf\r\n",
        b"No-Separator: just one header line\r\n",
    ]
    empty = tmp_path / "empty.mbox"
    empty.write_bytes(b"")
    r = run_ppadmin("import", img, "dave", empty, "--create-mailbox")
    assert "empty file, no messages" in r.stdout and "0 added, 0 skipped" in r.stdout
    # a Maildir with odd names, flags, a dot file, a subfolder and a file in tmp/
    md = tmp_path / "odd"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    (md / "new" / "no info at all").write_bytes(b"Subject: a\r\n\r\na\r\n")
    (md / "cur" / "1600000000.x:2,FRST").write_bytes(b"Subject: b\r\n\r\nb\r\n")
    (md / "cur" / "\u00e9\u00e8 weird;name:2,").write_bytes(b"Subject: c\r\n\r\nc\r\n")
    (md / "cur" / ".hidden").write_bytes(b"Subject: hidden\r\n\r\n")
    (md / "cur" / "subdir").mkdir()
    (md / "tmp" / "1.half").write_bytes(b"Subject: half written\r\n")
    r = run_ppadmin("import", img, "erin", md, "--create-mailbox")
    assert "import erin: 3 added, 0 skipped" in r.stdout, r.stdout + r.stderr
    assert "cur/subdir: not a regular file, skipped" in r.stdout
    got = sorted(m for _, _, m in contents(img, ["erin"])["erin"])
    assert got == [b"Subject: a\r\n\r\na\r\n", b"Subject: b\r\n\r\nb\r\n", b"Subject: c\r\n\r\nc\r\n"]


def test_import_refuses_a_source_that_is_no_mail(image, tmp_path):
    """The image itself, another flash image (arguments in the wrong order) or a missing path as
    SOURCE: one line naming it and the order, exit 3, the image untouched. An image was taken for
    one huge .eml (stored when it fitted: a small image went in as a message); a missing path was
    a bare "[Errno 2] ..." line."""
    img, _ = image
    other = str(tmp_path / "other.img")
    make_image(other, {"carol": [b"Subject: x\r\n\r\ny\r\n"]}, size=128 * 1024, tmpdir=str(tmp_path / "o"))
    before = contents(img)
    for src, what in ((img, "is the image itself, not mail"), (other, "is a flash image, not mail"),
                      (str(tmp_path / "nope.mbox"), "no such file or folder")):
        r = run_ppadmin("import", img, "alice", src)
        assert r.returncode == 3 and r.stdout == "", r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and what in lines[0] and "order: import IMAGE MAILBOX SOURCE" in lines[0], r.stderr
    assert contents(img) == before


def test_import_stops_cleanly_when_the_image_is_full(tmp_path):
    img = str(tmp_path / "small.img")
    make_image(img, {"alice": [b"Subject: first\r\n\r\nx\r\n"]}, size=160 * 1024, tmpdir=str(tmp_path / "s"))
    big = [b"Subject: big %d\r\n\r\n" % i + b"y" * 10000 + b"\r\n" for i in range(12)]
    eml = tmp_path / "eml"
    eml.mkdir()
    for i, m in enumerate(big):
        (eml / ("%02d.eml" % i)).write_bytes(m)
    r = run_ppadmin("import", img, "alice", eml)
    assert r.returncode == 2, r.stdout + r.stderr
    m = re.search(r"no room \(.*\): (\d+) messages went in; this one needs (\d+) bytes, (\d+) are free \((\d+) bytes missing\)", r.stdout)
    assert m, r.stdout
    n = int(m.group(1))
    assert 0 < n < 12 and int(m.group(4)) > 0
    got = [x for _, _, x in contents(img, ["alice"])["alice"]]
    assert got[1:] == big[:n]  # what went in is intact, in order; nothing half-written


def _uidl(port, user, pw):
    p = poplib.POP3("127.0.0.1", port, timeout=10)
    try:
        p.user(user)
        p.pass_(pw)
        resp, lines, _ = p.uidl()
        out = [ln.decode() for ln in lines]
        msgs = []
        for i in range(len(lines)):
            msgs.append(b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n")
        return out, msgs
    finally:
        p.quit()


USERS = {"alice": "alice pass", "bob": "bobpw"}


def test_backup_restore_keeps_uidls_served_by_the_real_server(tmp_path):
    img = str(tmp_path / "old.img")
    many = [b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(140)]
    make_image(img, {"alice": many, "bob": MSGS[:2]}, tmpdir=str(tmp_path / "s"))
    # leave a gap of whole buckets (128 seqs each) before the survivors, and one inside
    delete(img, "alice", list(range(0, 131)) + [135])
    (tmp_path / "srv").mkdir()
    srv = Pop3Server(str(tmp_path / "srv"))
    serve_image(srv, img, USERS)
    try:
        before = {u: _uidl(srv.port, u, pw) for u, pw in USERS.items()}
    finally:
        srv.stop()
    assert len(before["alice"][0]) == 8
    r = run_ppadmin("backup", img, tmp_path / "b.pp")
    assert r.returncode == 0, r.stderr
    new = str(tmp_path / "new.img")
    r = run_ppadmin("restore", tmp_path / "b.pp", new)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "10 messages restored, 0 already there" in r.stdout
    serve_image(srv, new, USERS)
    try:
        after = {u: _uidl(srv.port, u, pw) for u, pw in USERS.items()}
    finally:
        srv.stop()
    assert after == before  # same UIDLs, same order, same bytes
    old_files = contents(img)  # UIDs and arrival times of every message
    assert {b: [(u, a) for u, a, _ in v] for b, v in contents(new).items()} == {b: [(u, a) for u, a, _ in v] for b, v in old_files.items()}
    # a rerun restores nothing twice; a new delivery gets a UID no old message had
    r = run_ppadmin("restore", tmp_path / "b.pp", new)
    assert "0 messages restored, 10 already there" in r.stdout, r.stdout
    uid = deliver(new, {"alice": [b"Subject: after\r\n\r\nx\r\n"]})["alice"][0]
    all_uids = [u for u, _, _ in contents(new)["alice"]]
    assert all_uids[-1] == uid and uid not in all_uids[:-1] and len(all_uids) == 9


def test_restore_size_as_create_takes_it_and_a_full_image_is_no_damage(image, tmp_path):
    """restore --size took only a byte count (`--size 4M`, as `create --size` takes it, was a usage
    error); a restore that ran out of room then said the archive's end record was missing (damage,
    exit 1) although the archive was whole: it stops with exit 2, as import does."""
    img, _ = image
    assert run_ppadmin("backup", img, tmp_path / "b.pp").returncode == 0
    new = str(tmp_path / "n.img")
    r = run_ppadmin("restore", tmp_path / "b.pp", new, "--size", "3M")
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.path.getsize(new) == 3 * 1024 * 1024
    r = run_ppadmin("restore", tmp_path / "b.pp", new, "--size", "4M")  # an existing image keeps its size
    assert r.returncode == 2 and "--size is for a new image" in r.stderr, r.stdout + r.stderr
    assert os.path.getsize(new) == 3 * 1024 * 1024
    r = run_ppadmin("restore", tmp_path / "b.pp", str(tmp_path / "x.img"), "--size", "100")
    assert r.returncode == 2 and "bad size" in r.stderr and not os.path.exists(tmp_path / "x.img"), r.stderr
    small = str(tmp_path / "small.img")
    r = run_ppadmin("restore", tmp_path / "b.pp", small, "--size", "128K")  # the big message cannot fit
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no room on" in r.stdout and "restore stopped" in r.stdout and "damaged:" not in r.stdout, r.stdout
    assert "0 damaged" in r.stdout, r.stdout


def test_backup_carries_config_and_files(image, tmp_path):
    img, _ = image
    assert run_ppadmin("backup", img, tmp_path / "b.pp").returncode == 0
    new = str(tmp_path / "n.img")
    r = run_ppadmin("restore", tmp_path / "b.pp", new)
    assert r.returncode == 0 and "1 files" in r.stdout, r.stdout + r.stderr
    import ppadmin

    assert ppadmin.on_image(new, "print(open('/flash/config.json').read())") == ppadmin.on_image(img, "print(open('/flash/config.json').read())")


def test_damaged_archive_restores_every_intact_message(image, tmp_path):
    img, uids = image
    assert run_ppadmin("backup", img, tmp_path / "b.pp").returncode == 0
    data = bytearray((tmp_path / "b.pp").read_bytes())
    # 1: a flipped byte inside the data of alice's 2nd message
    i = data.index(b"Subject: lf only", 0)
    data[i + 3] ^= 0x20
    # 2: the record header of alice's 4th message garbled
    j = data.index(b'"uid": "%s"' % uids["alice"][3].encode())
    k = data.rindex(b"@pp ", 0, j)
    data[k + 1] = ord("q")
    bad = tmp_path / "bad.pp"
    bad.write_bytes(bytes(data))
    r = run_ppadmin("restore", bad, tmp_path / "r.img", "--salvage")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "damaged: message alice %s (checksum fails)" % uids["alice"][1] in r.stdout
    assert "damaged: message alice %s: its record is unreadable" % uids["alice"][3] in r.stdout
    got = contents(str(tmp_path / "r.img"))
    want = contents(img)
    assert got["alice"] == [m for k, m in enumerate(want["alice"]) if k not in (1, 3)]
    assert got["bob"] == want["bob"]
    # cut short: everything before the cut is restored and the missing end is reported
    cut = tmp_path / "cut.pp"
    cut.write_bytes(bytes(data[: data.index(b'"mailbox": "bob"')]))
    r = run_ppadmin("restore", cut, tmp_path / "c.img", "--salvage")
    assert "end record is missing" in r.stdout
    assert contents(str(tmp_path / "c.img"))["alice"] == got["alice"]


def test_cut_or_damaged_archive_is_refused_before_the_target_is_touched(image, tmp_path):
    """A restore from a cut or damaged archive went ahead: a new image was made and formatted and
    left empty or half full (exit 1), and onto an existing image it replaced the config (its users
    gone) before the cut was found. The whole archive is read first: one line naming the fault,
    exit 3 as for a file that is no archive, the image byte for byte as it was, no new image made,
    and over USB nothing sent to the board (here a pty nobody answers on: no 'no board answered')."""
    img, uids = image
    assert run_ppadmin("backup", img, tmp_path / "b.pp").returncode == 0
    data = (tmp_path / "b.pp").read_bytes()
    from pocketpost import config as config_mod

    cfg = {"store": {"root": "/flash/mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": []}
    config_mod.add_user(cfg, "carol", "carol pw")
    target = str(tmp_path / "t.img")  # the user's image: other mail, another user
    make_image(target, {"carol": [b"Subject: mine\r\n\r\nkeep me\r\n"]}, cfg=cfg, tmpdir=str(tmp_path / "s"))
    before = open(target, "rb").read()
    starts = [m.start() for m in re.finditer(rb"\n@pp ", data)]
    big = data.index(b"line 000100 From")
    cuts = {"in the info record": 60, "in the config.json record": data.index(b'"path": "config.json"') + 40,
            "at a record boundary": starts[5] + 1, "inside the big message": big,
            "inside the end record's header": starts[-1] + 10, "one byte short": len(data) - 1}
    flip = bytearray(data)
    flip[big] ^= 0x01
    cases = [(label, data[:n], "cut short at byte %d" % n) for label, n in cuts.items()]
    cases.append(("a flipped byte", bytes(flip), "checksum mismatch in message alice %s" % uids["alice"][4]))
    cases.append(("bytes after the end", data + b"x", "1 bytes after the end record, from byte %d" % len(data)))
    import pty

    master, slave = pty.openpty()
    try:
        for label, body, why in cases:
            bad = tmp_path / "bad.pp"
            bad.write_bytes(body)
            for dest in (target, str(tmp_path / "new.img"), os.ttyname(slave)):
                r = run_ppadmin("restore", bad, dest)
                assert r.returncode == 3, (label, dest, r.stdout, r.stderr)
                lines = r.stderr.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("ppadmin restore: %s: damaged archive, nothing restored"
                                                               % bad), (label, dest, r.stderr)
                assert why in lines[0], (label, why, lines[0])
                assert r.stdout == "", (label, r.stdout)
            assert open(target, "rb").read() == before, label
            assert not os.path.exists(tmp_path / "new.img") and not os.path.exists(str(tmp_path / "new.img") + ".part")
        os.set_blocking(master, False)
        try:
            sent = os.read(master, 100)
        except BlockingIOError:
            sent = b""
        assert sent == b"", sent  # not even a Ctrl-C reached the "board"
    finally:
        os.close(master)
        os.close(slave)
    # the whole archive restores, and --salvage still takes what is intact of a cut one
    assert run_ppadmin("restore", tmp_path / "b.pp", target).returncode == 0
    assert contents(target)["alice"] == contents(img)["alice"]
    (tmp_path / "cut.pp").write_bytes(data[:big])
    r = run_ppadmin("restore", tmp_path / "cut.pp", str(tmp_path / "s.img"), "--salvage")
    assert r.returncode == 1 and "end record is missing" in r.stdout, r.stdout + r.stderr
    assert len(contents(str(tmp_path / "s.img"))["alice"]) == 4


def _killed_then_rerun(args, reset, count, check, seed, mid, trials=4, kills=2, narrow=6):
    """`trials` times: reset(), run ppadmin with args `kills` times, each killed (SIGKILL to its
    process group: the host tool and micropython) at a random moment within the time a whole
    run takes, then once to the end, and check(). If no kill left a count for which mid(count)
    holds (cut in the middle of the work: on a loaded machine random moments can all fall before
    or after it), up to `narrow` more trials of one kill each bisect the delay between the
    latest kill that came too early and the earliest that came too late. Returns (delays,
    count() after each kill)."""
    import random
    import signal
    import subprocess
    import sys
    import time

    argv = [sys.executable, os.path.join(os.path.dirname(mailport.__file__), "ppadmin.py")] + [str(a) for a in args]
    reset()
    t = time.monotonic()
    subprocess.run(argv, capture_output=True, timeout=120)
    whole = time.monotonic() - t  # how long one uninterrupted run takes on this machine now
    check("uninterrupted")
    rnd = random.Random(seed)
    delays = []
    seen = []

    def kill_at(d):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        delays.append(round(d, 3))
        try:
            p.wait(d)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        # the whole group gone (micropython holds the image's lock until it has exited)
        for _ in range(200):
            try:
                os.killpg(p.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        n = count()
        seen.append(n)
        return n

    def finish(trial):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (delays, r.stdout, r.stderr)
        check((trial, delays, seen))

    early, late = 0.02, whole  # bounds of the bisection: a kill at `early` cut nothing yet
    for trial in range(trials):
        reset()
        for k in range(kills):
            d = rnd.uniform(0.02, whole)
            n = kill_at(d)
            if mid(n) or k:  # a later kill resumes earlier work: its delay bounds nothing
                continue
            if n <= 0:
                early = max(early, d)
            else:
                late = min(late, d)
        finish(trial)
    for trial in range(narrow):
        if any(mid(n) for n in seen):
            break
        reset()
        d = (early + late) / 2
        n = kill_at(d)
        if not mid(n):
            if n <= 0:
                early = d
            else:
                late = d
        finish(("narrow", trial))
    return delays, seen


KILL_MSGS = [b"Subject: k%d\r\n\r\n" % i + b"x" * (i * 997 % 20000) + b"\r\n" for i in range(40)]


def test_import_killed_at_random_points_then_rerun_exactly_once(tmp_path):
    import shutil

    pristine = str(tmp_path / "pristine.img")
    make_image(pristine, {"alice": [b"Subject: first\r\n\r\nx\r\n"]}, size=4 * 1024 * 1024, tmpdir=str(tmp_path / "s"))
    img = str(tmp_path / "k.img")
    src = tmp_path / "src.mbox"
    with open(src, "wb") as f:
        for m in KILL_MSGS:
            f.write(b"From x@y Mon Jan  1 10:00:00 2024\n" + m + b"\n")

    def check(label):
        got = [m for _, _, m in contents(img, ["bob"])["bob"]]
        assert sorted(got) == sorted(KILL_MSGS), label  # each exactly once
        assert got == KILL_MSGS, label  # and in source order

    delays, counts = _killed_then_rerun(["import", img, "bob", src, "--create-mailbox"], lambda: shutil.copyfile(pristine, img),
                                        lambda: len(contents(img, ["bob"]).get("bob", [])), check, 14,
                                        lambda n: 0 < n < len(KILL_MSGS))
    assert any(0 < n < len(KILL_MSGS) for n in counts), (delays, counts)  # some kill cut an import short


def test_import_journal_entry_without_its_message_is_cancelled(tmp_path):
    # The window a kill can hit between "+key" in the journal and the commit: the next run
    # must import that message (its UID never appeared), not skip it.
    import hashlib
    import ppadmin

    img = str(tmp_path / "j.img")
    make_image(img, {"alice": [b"Subject: first\r\n\r\nx\r\n"]}, tmpdir=str(tmp_path / "s"))
    m = b"Subject: lost\r\n\r\nbody\r\n"
    (tmp_path / "m.eml").write_bytes(m)
    key = hashlib.sha1(m).hexdigest()
    ppadmin.on_image(img, "import os\ntry:\n os.mkdir('/flash/mail/.import')\nexcept OSError:\n pass\n"
                     "f = open('/flash/mail/.import/alice', 'ab'); f.write(b'+%s 0badc0de.7\\n'); f.close()\n" % key)
    r = run_ppadmin("import", img, "alice", tmp_path / "m.eml")
    assert "1 added, 0 skipped" in r.stdout, r.stdout + r.stderr
    r = run_ppadmin("import", img, "alice", tmp_path / "m.eml")
    assert "0 added, 1 skipped" in r.stdout, r.stdout + r.stderr


def test_restore_killed_at_random_points_then_rerun_exactly_once(tmp_path):
    img = str(tmp_path / "old.img")
    make_image(img, {"alice": KILL_MSGS, "bob": KILL_MSGS[:5]}, size=4 * 1024 * 1024, tmpdir=str(tmp_path / "s"))
    assert run_ppadmin("backup", img, tmp_path / "b.pp").returncode == 0
    want = contents(img)
    new = tmp_path / "new.img"

    def reset():
        for p in (new, str(new) + ".part"):
            if os.path.exists(p):
                os.remove(p)

    def count():
        try:  # killed before the image was made, or before its config was written: -1
            return sum(len(v) for v in contents(str(new)).values()) if os.path.exists(new) else -1
        except mailport.PortError:
            return -1

    def check(label):
        assert contents(str(new)) == want, label

    delays, counts = _killed_then_rerun(["restore", tmp_path / "b.pp", new], reset, count, check, 7,
                                        lambda n: 0 < n < len(KILL_MSGS) + 5)
    assert any(0 < n < len(KILL_MSGS) + 5 for n in counts), (delays, counts)


def test_thunderbird_style_mbox_imports_and_is_served_byte_exact(tmp_path):
    # Thunderbird's local folders: "From - <date>" separators, X-Mozilla-* headers, LF line ends,
    # body "From " lines escaped as ">From " (mboxo), a CRLF message from a POP3 download.
    tb = (b"From - Mon Jan 01 09:30:00 2024\n"
          b"X-Mozilla-Status: 0001\nX-Mozilla-Status2: 00000000\n"
          b"From: a@example.org\nSubject: tb one\n\nHello\n>From the desk of A.\n.dot\n\n"
          b"From - Tue Jan 02 10:00:00 2024\r\n"
          b"X-Mozilla-Status: 0000\r\nFrom: b@example.org\r\nSubject: tb two\r\n\r\nCRLF body\r\n\r\n")
    src = tmp_path / "Inbox"
    src.write_bytes(tb)
    img = str(tmp_path / "tb.img")
    make_image(img, {"alice": [b"Subject: first\r\n\r\nx\r\n"]}, tmpdir=str(tmp_path / "s"))
    r = run_ppadmin("import", img, "alice", src, "--mbox-quoting", "o")
    assert "import alice: 2 added, 0 skipped" in r.stdout, r.stdout + r.stderr
    want = [b"Subject: first\r\n\r\nx\r\n",
            b"X-Mozilla-Status: 0001\r\nX-Mozilla-Status2: 00000000\r\nFrom: a@example.org\r\nSubject: tb one\r\n"
            b"\r\nHello\r\nFrom the desk of A.\r\n.dot\r\n",
            b"X-Mozilla-Status: 0000\r\nFrom: b@example.org\r\nSubject: tb two\r\n\r\nCRLF body\r\n"]
    (tmp_path / "srv").mkdir()
    srv = Pop3Server(str(tmp_path / "srv"))
    serve_image(srv, img, USERS)
    try:
        uidl, msgs = _uidl(srv.port, "alice", USERS["alice"])
    finally:
        srv.stop()
    assert msgs == want
    arrivals = [a for _, a, _ in contents(img, ["alice"])["alice"]]
    assert arrivals[1:] == [1704101400, 1704189600]  # the From_ lines' times (UTC)
