"""neomutt (-f) reads every message of an exported mbox and Maildir. neomutt has no batch mode:
it runs under `script` (a pty) with pushed keys that pipe every message (raw, not decoded) to
`cat`. What comes back is each message's header and body byte for byte, except that neomutt
writes the empty line between them as a bare LF, and (mbox) it keeps the From_ line and the
mboxrd ">" quoting (it reads mboxo): the test undoes exactly those things."""

import mailbox
import os
import re
import shutil
import subprocess

import pytest
from mailimage import make_image, run_ppadmin, stored_form

from test_mailport import MSGS, _unquote_rd

SEP = b"\n=====PPSEP=====\n"
MUTTRC = """set pipe_decode=no
set pipe_split=no
set pipe_sep="\\n=====PPSEP=====\\n"
set wait_key=no
set sort=unsorted
set mbox_type=mbox
"""

pytestmark = pytest.mark.skipif(not shutil.which("neomutt") or not shutil.which("script"),
                                reason="neomutt or script (util-linux) not installed")


def _neomutt_pipe_all(tmp_path, folder):
    rc = tmp_path / "muttrc"
    # folder/spool/record set: nothing under $HOME is looked for (a "create ~/Mail?" prompt
    # would eat the pushed keys)
    rc.write_text(MUTTRC + 'set folder="%s"\nset spoolfile="%s"\nset record=""\nset postponed="%s/postponed"\n'
                  % (tmp_path, folder, tmp_path))
    out = tmp_path / ("piped-%s" % os.path.basename(folder))
    keys = "<tag-pattern>~A<enter><tag-prefix><pipe-message>cat >> %s<enter><exit>" % out
    cmd = "neomutt -n -F %s -R -f %s -e 'push \"%s\"'" % (rc, folder, keys)
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=60,
                       env=dict(os.environ, TERM="xterm", HOME=str(tmp_path)), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-2000:]
    pieces = out.read_bytes().split(SEP)
    assert pieces[-1] == b""
    return pieces[:-1]


def _undo(piece, mbox):
    if mbox:
        assert piece.startswith(b"From MAILER-DAEMON "), piece[:80]
        piece = _unquote_rd(piece.split(b"\n", 1)[1])
    return piece.replace(b"\r\n\n", b"\r\n\r\n", 1)


def test_neomutt_reads_every_exported_message(tmp_path):
    msgs = MSGS[:5]  # (MSGS[5] has no empty line between header and body for neomutt to rewrite)
    img = str(tmp_path / "a.img")
    make_image(img, {"alice": msgs}, tmpdir=str(tmp_path / "s"))
    want = sorted(stored_form(m) for m in msgs)
    assert run_ppadmin("export", img, "alice", "--mbox", tmp_path / "alice.mbox").returncode == 0
    assert run_ppadmin("export", img, "--maildir", tmp_path / "md").returncode == 0
    got = [_undo(p, True) for p in _neomutt_pipe_all(tmp_path, str(tmp_path / "alice.mbox"))]
    assert sorted(got) == want
    got = [_undo(p, False) for p in _neomutt_pipe_all(tmp_path, str(tmp_path / "md" / "alice"))]
    assert sorted(got) == want
