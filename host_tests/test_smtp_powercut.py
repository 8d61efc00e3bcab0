"""Power cuts during SMTP DATA and around the 250, under the real micropython binary on littlefs.

The sans-I/O SMTP session (smtp.Session through smtp.pump, as the shell drives it) receives
three messages on a simulated flash (host_tests/dual/flashdev.py) that cuts the power at the N-th
program/erase operation, for every N, in the three modes (raise, drop, torn). Message 1 goes to
three mailboxes, message 2 (multi-block) to two, message 3 to one. After each cut the image is
remounted, the store opened (recovery rolls a committed group forward) and checked:
  - every message is in all of its mailboxes or in none (never in some: the group commit);
  - a message whose 250 went out before the power died is in every one, exactly once;
  - no copy is partial or changed; no temp file is left, no intent record is left;
  - the store still takes mail through a new session.
Run by pytest (test_power_cuts below), or directly:
    MICROPYPATH=firmware:host_tests/dual .venv/bin/micropython -X heapsize=16M host_tests/test_smtp_powercut.py
"""

import os
import sys

from smtptrace import body_of

IS_MP = sys.implementation.name == "micropython"
MOUNT = "/scut"
ROOT = MOUNT + "/mail"
BOXES = ["boxa", "boxb", "boxc"]


def _body(i, size):
    line = b"message %d line of text 0123456789 abcdefghijklmnopqrstuvwxyz\r\n" % i
    out = b"Subject: m%d\r\n\r\n" % i
    while len(out) < size:
        out += line
    return out + b".dot line\r\n"


MESSAGES = [(1, _body(1, 600), ["a", "b", "c"]), (2, _body(2, 9000), ["b", "c"]), (3, _body(3, 100), ["a"])]


def _service():
    from pocketpost import config, smtpstart
    from pocketpost.store import Store

    cfg = config.check({"smtp": {"domains": ["example.org"], "aliases": {"a": "boxa", "b": "boxb", "c": "boxc"},
                                 "block_size": 512}})
    st = Store(ROOT, quota=0, reserve=0)
    return smtpstart.service(cfg["smtp"], {}, st, None, hostname="mx.test")


def _send(svc, lines_cls, data):
    """Feed data to a new session in 700-byte pieces; returns every reply."""
    from pocketpost import smtp, smtpstart

    s = smtpstart.session(svc, "127.0.0.1")[0]
    r = lines_cls(1000, 1000 + 512)
    out = []
    mv = memoryview(data)
    for i in range(0, len(data), 700):
        pos, stop = i, min(i + 700, len(data))
        while pos < stop:
            pos += r.feed(mv[pos:stop])
            while True:
                got = smtp.pump(s, r)
                out.extend(got)
                if not got:
                    break
    s.close()
    return out


def _script(num, body, rcpts):
    out = b"EHLO c.test\r\nMAIL FROM:<s@sender.test>\r\n"
    for r in rcpts:
        out += b"RCPT TO:<%s@example.org>\r\n" % r.encode()
    return out + b"DATA\r\n" + body.replace(b"\r\n.", b"\r\n..") + b".\r\nQUIT\r\n"


def workload(dev, acked):
    from pocketpost.wire import LineReader

    svc = _service()
    for num, body, rcpts in MESSAGES:
        replies = _send(svc, LineReader, _script(num, body, rcpts))
        if dev.dead:
            return
        assert replies[-2].startswith(b"250 2.0.0 stored"), replies
        acked.append(num)


def check(acked, label):
    import storeread
    from pocketpost import compat
    from pocketpost import store as store_mod
    from pocketpost.store import Store

    store_mod.reboot()
    st = Store(ROOT, quota=0, reserve=0)  # recovery
    copies = {}  # num -> set of boxes
    for box in BOXES:
        if not st.exists(box):
            continue
        mb = st.lock(box)
        for i in range(mb.count):
            f = mb.open(i)
            data = f.read()
            f.close()
            body = body_of(data)
            num = int(body[len(b"Subject: m") : body.index(b"\r\n")])
            assert body == MESSAGES[num - 1][1], (label, "partial or changed", box, num)
            s = copies.setdefault(num, set())
            assert box not in s, (label, "duplicate", box, num)
            s.add(box)
        mb.release()
        assert storeread.temp_files(ROOT + "/" + box) == [], (label, "temp file left", box)
    assert not compat.exists(ROOT + "/group") and not compat.exists(ROOT + "/group.new"), (label, "intent left")
    for num, body, rcpts in MESSAGES:
        want = set("box" + r for r in rcpts)
        got = copies.get(num, set())
        assert got in (set(), want), (label, "some copies only", num, got)
        if num in acked:
            assert got == want, (label, "acknowledged but lost", num, got)
    # still takes mail
    from pocketpost.wire import LineReader

    svc = _service()
    replies = _send(svc, LineReader, _script(9, _body(9, 50), ["a", "c"]))
    assert replies[-2].startswith(b"250 "), (label, replies)


def run_one(base, cut_at, mode):
    from flashdev import FlashDev, cut_power, mount_fresh, umount

    acked = []
    dev = cut_power(base, cut_at, mode, MOUNT, lambda dev: workload(dev, acked))
    ops = dev.ops
    dev2 = FlashDev(data=dev.image())
    mount_fresh(dev=dev2, at=MOUNT)
    try:
        check(acked, (mode, cut_at))
    finally:
        umount(MOUNT)
    return ops, len(acked)


def main():
    import time

    from flashdev import blank_image, cut_at_every_op
    from pocketpost import log

    log.set_sink(lambda line: None)
    base = blank_image(64)
    t0 = time.ticks_ms()
    total, n = run_one(base, 0, "raise")
    assert n == len(MESSAGES)
    covered = cut_at_every_op(total, lambda cut, mode: run_one(base, cut, mode))
    print("SMTP POWERCUT OK: %d program/erase ops in the workload, %d cut points (every op, 3 modes) in %d ms"
          % (total, covered, time.ticks_diff(time.ticks_ms(), t0)))


if IS_MP and __name__ == "__main__":
    from flashdev import shard_report

    main()
    shard_report()


def test_power_cuts():
    from helpers import run_sweep

    run_sweep("host_tests/test_smtp_powercut.py", "SMTP POWERCUT OK", timeout=900)
