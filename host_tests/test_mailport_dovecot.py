"""The move to Dovecot: `ppadmin export --dovecot` writes Maildir + dovecot-uidlist (POP3 UIDL and
order per message); a real Dovecot serving it gives the UIDLs the board gave, and fetchmail and
getmail6 that kept mail on the board (with their UIDL state) fetch nothing again from Dovecot."""

import os
import pathlib
import poplib
import shutil
import tempfile

import dovecot
from mailimage import deliver, make_image, run_ppadmin, serve_image
from serverharness import Pop3Server, msg
from test_server_clients import _fetchmail, _fetchmailrc, _getmail, _maildir_bodies, _saved

# A dot line, a body "From " line, 8-bit bytes: all survive the move byte for byte.
MSGS = [msg(1), msg(2, 40), msg(3, 1, b"From here on\r\n\xe9\xe8\r\n"), msg(4, 5)]
USERS = {"alice": "alice pass"}


def _pop(port, delete=()):
    """(UIDL lines, messages) of alice's mailbox; then the messages numbered in `delete` are
    deleted (DELE, QUIT)."""
    p = poplib.POP3("127.0.0.1", port, timeout=20)
    try:
        p.user("alice")
        p.pass_("alice pass")
        uidl = [ln.decode() for ln in p.uidl()[1]]
        msgs = [b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n" for i in range(len(uidl))]
        for i in delete:
            p.dele(i)
        return uidl, msgs
    finally:
        p.quit()


def test_dovecot_serves_the_board_uidls_and_clients_fetch_nothing_again(tmp_path, monkeypatch):
    img = str(tmp_path / "board.img")
    make_image(img, {"alice": [msg(0)] + MSGS}, tmpdir=str(tmp_path / "s"))
    (tmp_path / "srv").mkdir()
    srv = Pop3Server(str(tmp_path / "srv"))
    mdbase = pathlib.Path(tempfile.mkdtemp(prefix="pp-getmail-"))
    os.chmod(mdbase, 0o755)
    mda = tmp_path / "mda"
    mda.mkdir()
    dc = None
    try:
        # Delete the first message on the board so the UIDs no longer start at seq 1.
        from mailimage import delete

        delete(img, "alice", [0])
        serve_image(srv, img, USERS)
        board = _pop(srv.port)
        assert len(board[0]) == 4
        rc = _fetchmailrc(tmp_path, srv, True, str(mda))
        r = _fetchmail(rc, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(_saved(str(mda))) == 4
        md = _getmail(tmp_path, srv, False, "keep", mdbase)
        assert len(_maildir_bodies(md)) == 4
        srv.stop()

        out = tmp_path / "dovecot-export"
        r = run_ppadmin("export", img, "--dovecot", out)
        assert r.returncode == 0, r.stderr
        uidlist = (out / "alice" / "dovecot-uidlist").read_text().splitlines()
        assert uidlist[0].startswith("3 V") and " N5 " in uidlist[0]
        assert [ln.split(" ")[1] for ln in uidlist[1:]] == ["P" + u.split(" ")[1] for u in board[0]]

        # Dovecot on the board's port (a real move keeps host and port: getmail's state file
        # is named after them), serving the exported Maildir as alice's mailbox.
        ports = [srv.port]
        real_free_port = dovecot.free_port
        monkeypatch.setattr(dovecot, "free_port", lambda: ports.pop(0) if ports else real_free_port())
        dc = dovecot.Dovecot(USERS).start()
        assert dc.port == srv.port
        home_md = dc.maildir("alice")
        shutil.rmtree(home_md)
        shutil.copytree(out / "alice", home_md)
        dc._chown(home_md)
        assert _pop(dc.port) == board  # same UIDLs, same order, same bytes

        r = _fetchmail(rc, tmp_path)
        assert r.returncode == 1, r.stdout + r.stderr  # 1: no new mail
        assert len(_saved(str(mda))) == 4
        md = _getmail(tmp_path, srv, False, "keep", mdbase)
        assert len(_maildir_bodies(md)) == 4

        # Control: new mail in Dovecot is fetched (the clients really talk to it), once, and the
        # migrated UIDLs survive Dovecot rewriting its uidlist.
        dc.seed("alice", [msg(5)], clear=False)
        r = _fetchmail(rc, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(_saved(str(mda))) == 5
        md = _getmail(tmp_path, srv, False, "keep", mdbase)
        assert len(_maildir_bodies(md)) == 5
        uidl, _ = _pop(dc.port)
        assert uidl[:4] == board[0] and len(uidl) == 5
    finally:
        srv.stop()
        if dc is not None:
            dc.stop()
        shutil.rmtree(mdbase, ignore_errors=True)


def test_dovecot_maildir_imports_onto_the_board_and_is_served_byte_exact(tmp_path):
    # A Maildir Dovecot has served (dovecot-uidlist, index files, flags in the names) goes onto
    # the board and comes out of the board's POP3 server with the bytes Dovecot served.
    dc = dovecot.Dovecot(USERS).start()
    srv = None
    try:
        dc.seed("alice", [m.replace(b"\r\n", b"\n") for m in MSGS])
        _, served = _pop(dc.port)  # Dovecot moves new/ to cur/ and writes its index files
        md = pathlib.Path(dc.maildir("alice"))
        assert (md / "dovecot-uidlist").exists() and list((md / "cur").iterdir())
        img = str(tmp_path / "board.img")
        make_image(img, {"alice": []}, tmpdir=str(tmp_path / "s"))
        r = run_ppadmin("import", img, "alice", md, "--create-mailbox")  # alice's user comes with serve_image
        assert "import alice: 4 added, 0 skipped" in r.stdout, r.stdout + r.stderr
        (tmp_path / "srv").mkdir()
        srv = Pop3Server(str(tmp_path / "srv"))
        serve_image(srv, img, USERS)
        _, board = _pop(srv.port)
        assert board == served == MSGS
    finally:
        if srv is not None:
            srv.stop()
        dc.stop()


def test_export_into_a_dovecot_mailbox_keeps_its_uidls_and_adds_the_boards(tmp_path):
    # The move into a Dovecot that already holds the user's mail (or that has served an earlier
    # export: Dovecot's POP3 renames a retrieved message to ":2,S"). Dovecot's UIDs, and with
    # them the UIDLs its POP3 clients know, live in dovecot-uidlist: the export adds the board's
    # messages to it. It used to write a new one over it (a new UIDVALIDITY: every message Dovecot
    # had was downloaded again by clients that keep mail), and a rerun wrote a second copy of every
    # message Dovecot had renamed, and of every message deleted there since.
    img = str(tmp_path / "board.img")
    make_image(img, {"alice": MSGS}, tmpdir=str(tmp_path / "s"))
    (tmp_path / "srv").mkdir()
    srv = Pop3Server(str(tmp_path / "srv"))
    own = [msg(20), msg(21, 3)]

    def prepare(dc):  # alice's mailbox in Dovecot, with mail of its own, where the export goes
        box = os.path.join(dc.dir, "srv", "alice")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(box, sub))
        for i, m in enumerate(own):
            with open(os.path.join(box, "new", "1700000000.M%dP1.dovecot" % i), "wb") as f:
                f.write(m)
        dc._chown(os.path.join(dc.dir, "srv"))

    dc = dovecot.Dovecot(USERS, extra="mail_location = maildir:{d}/srv/%u\n", prepare=prepare)
    try:
        serve_image(srv, img, USERS)
        board = _pop(srv.port)
        srv.stop()
        dc.start()
        before = _pop(dc.port)  # Dovecot's UIDLs; the messages are retrieved: renamed ":2,S"
        assert before[1] == own and len(before[0]) == 2
        top = os.path.join(dc.dir, "srv")
        n = len(before[0])
        for rerun in (False, True):  # the move, then a rerun of it (mail that reached the board meanwhile)
            r = run_ppadmin("export", img, "--dovecot", top)
            assert r.returncode == 0, r.stdout + r.stderr
            dc._chown(top)
            uidl, msgs = _pop(dc.port, delete=[] if rerun else [n + 1])
            assert [u.split(" ")[1] for u in uidl[:n]] == [u.split(" ")[1] for u in before[0]]
            # a board message fetched and deleted in Dovecot after the move is not brought back
            want = board[0][1:] if rerun else board[0]
            assert [u.split(" ")[1] for u in uidl[n:]] == [u.split(" ")[1] for u in want]
            assert msgs == own + (board[1][1:] if rerun else board[1])
            if not rerun:  # mail reaches the board after the move's export: it gets the board's UIDL
                deliver(img, {"alice": [b"Subject: late\r\n\r\narrived after the export\r\n"]},
                        tmpdir=str(tmp_path / "late"))
                serve_image(srv, img, USERS)
                board = _pop(srv.port)
                srv.stop()
                assert len(board[0]) == 5
        assert ("exported alice: 5 messages (3 of them already there, left as they were; 1 deleted there since an "
                "earlier export, not written again)") in r.stdout, r.stdout
    finally:
        srv.stop()
        dc.stop()
