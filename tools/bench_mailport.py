#!/usr/bin/env python3
"""Figures for export/import/backup/restore on a host flash image (not pass/fail).

    .venv/bin/python tools/bench_mailport.py [--big-mib 50]

1. A 10 MiB mailbox (160 messages of 64 KiB, CRLF text) on a 32 MiB image: wall time and MiB/s
   of export --maildir, export --mbox, import from that Maildir into an empty mailbox, backup,
   restore onto a new image.
   With --usb, export and import of that mailbox over the pty pseudo-board too.
2. A mailbox of one message, 1 KiB and --big-mib MiB: export it and import it with the smallest
   micropython -X heapsize passing 5 of 5 tries (1 KiB bisection), code loaded from .mpy (as on a
   board; the image's config is loaded too), and the peak RSS of this (host) process, which
   does the CPython side of both in-process.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "host_tests"))
import mailport  # noqa: E402
from benchlib import min_heap  # noqa: E402
from mailimage import make_image  # noqa: E402

TRIES = 5  # a heap passes when every one of this many tries passes (benchlib.min_heap)


def _timed(fn):
    t = time.monotonic()
    r = fn()
    return time.monotonic() - t, r


def mailbox_figures(d):
    body = b"".join(b"line %05d of a message body, ordinary text here.....\r\n" % i for i in range(1170))
    msgs = [b"Subject: m%d\r\n\r\n" % i + body for i in range(160)]
    mib = sum(len(m) for m in msgs) / 1048576
    img = os.path.join(d, "a.img")
    rows = []
    t, _ = _timed(lambda: make_image(img, {"alice": msgs}, size=32 * 1024 * 1024, tmpdir=os.path.join(d, "src")))
    rows.append(("(deliver_file loop)", t))  # the store's own delivery on the image, for comparison
    t, _ = _timed(lambda: mailport.export(img, ["alice"], mailport.MaildirWriter(os.path.join(d, "md"))))
    rows.append(("export --maildir", t))
    t, _ = _timed(lambda: mailport.export(img, ["alice"], mailport.MboxWriter(os.path.join(d, "a.mbox"), True)))
    rows.append(("export --mbox", t))
    t, r = _timed(lambda: mailport.import_messages(img, "bob", os.path.join(d, "md", "alice"), report=lambda s: None,
                                                   create_mailbox=True))
    assert r["added"] == 160, r
    rows.append(("import (Maildir)", t))
    t, _ = _timed(lambda: mailport.backup(img, os.path.join(d, "b.pp")))
    rows.append(("backup (2 mailboxes)", t))
    t, r = _timed(lambda: mailport.restore(os.path.join(d, "b.pp"), os.path.join(d, "r.img"), report=lambda s: None,
                                           size=48 * 1024 * 1024))
    assert r["restored"] == 320, r
    rows.append(("restore (2 mailboxes)", t))
    print("10 MiB mailbox (%.1f MiB, 160 messages) on a host image:" % mib)
    for name, t in rows:
        m = mib * (2 if "2 mailboxes" in name else 1)
        print("  %-22s %6.2f s  %6.1f MiB/s" % (name, t, m / t))


def usb_figures(d):
    """The same 10 MiB mailbox exported from and imported onto the pty pseudo-board (mpremote's
    raw REPL, base64 lines, an ack per host line), code from .mpy in /flash/lib, 256 KiB heap."""
    import pseudoboard
    import ppadmin
    from bench_server import build_mpy

    body = b"".join(b"line %05d of a message body, ordinary text here.....\r\n" % i for i in range(1170))
    msgs = [b"Subject: m%d\r\n\r\n" % i + body for i in range(160)]
    mib = sum(len(m) for m in msgs) / 1048576
    img = os.path.join(d, "usb.img")
    cfg = {"store": {"root": "/flash/mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": []}
    make_image(img, {"alice": msgs}, size=32 * 1024 * 1024, cfg=cfg, tmpdir=os.path.join(d, "usrc"))
    mpy = os.path.join(d, "usb-mpy")
    build_mpy(mpy)
    ppadmin.on_image(img, "import os\nfor p in ('/flash/lib', '/flash/lib/pocketpost'):\n    os.mkdir(p)\n"
                     "src = os.getenv('PP_MPY')\nfor n in os.listdir(src):\n"
                     "    a = open(src + '/' + n, 'rb'); b = open('/flash/lib/pocketpost/' + n, 'wb'); b.write(a.read()); a.close(); b.close()\n",
                     {"PP_MPY": os.path.join(mpy, "pocketpost")})
    with pseudoboard.PseudoBoard(os.path.join(d, "pb"), image=img) as pb:
        t_exp, _ = _timed(lambda: mailport.export(pb.tty, ["alice"], mailport.MaildirWriter(os.path.join(d, "usbmd"))))
        t_imp, r = _timed(lambda: mailport.import_messages(pb.tty, "bob", os.path.join(d, "usbmd", "alice"), report=lambda s: None,
                                                           create_mailbox=True))
        assert r["added"] == 160, r
    print("10 MiB mailbox over the pseudo-board link (pty, mpremote raw REPL, base64):")
    print("  %-22s %6.2f s  %6.2f MiB/s" % ("export --maildir", t_exp, mib / t_exp))
    print("  %-22s %6.2f s  %6.2f MiB/s" % ("import (Maildir)", t_imp, mib / t_imp))


def big_figures(d, mib):
    """Export and import of a mailbox of one message, 1 KiB and `mib` MiB: the smallest -X heapsize
    passing 5 of 5 (benchlib.min_heap, 1 KiB steps; the large one searched within 8k of the small
    one's figure: each of its tries moves the whole message)."""
    from bench_server import build_mpy

    build_mpy(os.path.join(d, "mpy"))
    cfg = {"store": {"root": "/flash/mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": []}
    blank = os.path.join(d, "blank.img")
    make_image(blank, {}, size=(mib * 2 + 8) * 1024 * 1024, cfg=cfg, tmpdir=os.path.join(d, "s"))
    line = b"x" * 76 + b"\r\n"
    emls = {}
    for label, n in (("1 KiB", 0), ("%d MiB" % mib, mib)):
        emls[label] = os.path.join(d, "m%d.eml" % n)
        with open(emls[label], "wb") as f:
            f.write(b"Subject: m\r\n\r\n")
            for _ in range(n * 1048576 // len(line)) if n else ():
                f.write(line)
            if not n:
                f.write(b"x" * 1000 + b"\r\n")
    imgs = {}
    for label in emls:  # (the sources' code: only the tries below are measured)
        imgs[label] = os.path.join(d, label.replace(" ", "") + ".img")
        shutil.copy(blank, imgs[label])
        assert mailport.import_messages(imgs[label], "alice", emls[label], report=lambda s: None,
                                        create_mailbox=True)["added"] == 1
    mailport.CODE_PATH[0] = os.path.join(d, "mpy")

    def export_ok(label, k):
        out = os.path.join(d, "out")
        try:
            return sum(mailport.export(imgs[label], [], mailport.MaildirWriter(out), heapsize="%dk" % k).values()) == 1
        except mailport.PortError:
            return False
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def import_ok(label, k):
        img = os.path.join(d, "imp.img")
        shutil.copy(blank, img)
        try:
            return mailport.import_messages(img, "bob", emls[label], report=lambda s: None, create_mailbox=True,
                                            heapsize="%dk" % k)["added"] == 1
        except mailport.PortError:
            return False

    print("one message (smallest -X heapsize passing %d/%d, code from .mpy):" % (TRIES, TRIES))
    for what, ok in (("export --maildir", export_ok), ("import", import_ok)):
        small, big = list(emls)
        k, _ = min_heap(lambda h: ok(small, h), 16, 256, confirm=TRIES)
        kb, _ = min_heap(lambda h: ok(big, h), k - 8, k + 8, confirm=TRIES) if k else (None, 0)
        print("  %-17s %s: %s   %s: %s" % (what, small, "%dk" % k if k else "over 256k", big,
                                          "%dk" % kb if kb else "not within 8k of it"))
    print("  peak RSS of the host process (CPython side of both): %.1f MiB"
          % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-mib", type=int, default=50)
    ap.add_argument("--skip-mailbox", action="store_true")
    ap.add_argument("--usb", action="store_true", help="also over the pty pseudo-board (needs socat)")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="pp-bench-mailport-")
    try:
        if not a.skip_mailbox:
            mailbox_figures(d)
        if a.usb:
            usb_figures(d)
        big_figures(d, a.big_mib)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
