"""The littlefs syncs (and so metadata commits) the fetch CLI costs per stored message, counted.

The fetch CLI runs under micropython into a littlefs image mounted by tools/hostflash.py (its
CountingBlockDev counts the device syncs littlefs asks for: on the host each one is an fsync of
the image, on a board a commit's programs follow it), against a private Dovecot. The difference
between a fetch of 6 and of 3 messages gives the steady-state cost of one message, and a trace
of which file operation each sync came from gives it per phase. clientget.py's docstring says
what each of them is for: this test keeps that account true, and fails when a change adds a
sync to the fetch of a message (or removes one without saying so there).
"""

import json
import os
import subprocess

import pytest
from dovecot import Dovecot
from helpers import FIRMWARE, MICROPYTHON, ROOT

PASSWORD = "sync count"
MESSAGE = b"From: a@example.org\r\nSubject: %d\r\n\r\n" + b"a body line of a message of some 16 KiB.\r\n" * 400
# Per stored message once the state's slot files exist (each rewritten whole, inline: no barrier):
# the phases of clientget.py's docstring, by the file operation that synced. (Until stop 31 the
# pending entry was appended to the state file itself: 2, the barrier and the commit.)
PHASES = {"create": 1, "pending": 1, "close": 2, "rename": 1}

DRIVER = r"""
import sys
sys.path.append(%r)
import hostflash

LOG = []  # one label per device sync: the file operation under way (or done last)
cur = ["start"]
_ioctl = hostflash.CountingBlockDev.ioctl


def _counted(self, op, arg):
    if op == 3:
        LOG.append(cur[0])
    return _ioctl(self, op, arg)


hostflash.CountingBlockDev.ioctl = _counted  # (before the mount: littlefs keeps the methods it finds)
bdev = hostflash.mount(%r, "/flash", %r, count=True, durable=False)
LOG[:] = []
sys.path.append(%r)
import fileprobe


def _label(op, path, got):  # the file operation under way
    cur[0] = op + " " + path


fileprobe.install(lambda path, mode: "w" in mode or "a" in mode, _label)  # (written files: their flush and close)
from pocketpost import compat

_rename = compat.rename


def _renamed(a, b):
    cur[0] = "rename " + a
    _rename(a, b)


compat.rename = _renamed
from pocketpost import fetch

rc = fetch.main(%r, None, "warning")
hostflash.umount(bdev)
print("RC", rc, "SYNCS", bdev.counts[5])
for x in LOG:
    print("SYNC", x)
"""


@pytest.fixture(scope="module")
def dc():
    d = Dovecot(users={"alice": PASSWORD})
    d.start()
    try:
        yield d
    finally:
        d.stop()


def _fetch(dc, tmp, n):
    """Fetch n new messages into a 4 MiB image where a fetch of n others ran before (the state's
    slot files exist, as on a board after its first fetches: each is rewritten, not created)
    -> (device syncs, the label of each)."""
    dc.seed("alice", [MESSAGE % i for i in range(n)])
    work = tmp / ("n%d" % n)
    work.mkdir()
    image = str(work / "flash.img")
    with open(image, "wb") as f:
        f.write(b"\xff" * (4 << 20))
    acct = {"name": "acct", "host": "127.0.0.1", "port": dc.port, "tls": "none", "allow_plaintext": True,
            "user": "alice", "password": PASSWORD, "auth": "user", "mailbox": "alice",
            "state_dir": "/flash/state", "policy": "keep"}
    cfg = work / "config.json"
    cfg.write_text(json.dumps({"store": {"root": "/flash/mail", "quota": 0}, "accounts": [acct],
                               "log": {"level": "warning"}}))
    _run(work, image, cfg, True)
    dc.seed("alice", [MESSAGE % (100 + i) for i in range(n)], clear=False)
    return _run(work, image, cfg, False)


def _run(work, image, cfg, mkfs):
    drv = DRIVER % (os.path.join(ROOT, "tools"), image, mkfs, os.path.join(ROOT, "host_tests"), str(cfg))
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen")
    r = subprocess.run([MICROPYTHON, "-c", drv], capture_output=True, timeout=300, env=env, cwd=str(work))
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0 and "RC 0 " in out, out[-3000:] + r.stderr.decode(errors="replace")[-3000:]
    syncs = int(out.split("SYNCS ")[1].split()[0])
    labels = [ln[5:] for ln in out.splitlines() if ln.startswith("SYNC ")]
    assert len(labels) == syncs, out[-3000:]
    return syncs, labels


def _phase(label):
    """The phase of a fetched message a sync belongs to, or None (the session's own syncs)."""
    op, _, path = label.partition(" ")
    name = path.rsplit("/", 1)[-1]
    if name[-1:].isdigit() and name.rstrip("0123456789").endswith(".uidl") and op in ("open", "flush", "close"):
        # (a slot file of the state: uidstate.py)
        return "pending"
    if (name.startswith("t") or ".t" in name) and "/b" in path:  # a delivery's temp file in its bucket
        return {"open": "create", "flush": "close", "close": "close", "rename": "rename"}.get(op)
    return None


def test_syncs_per_fetched_message(dc, tmp_path):
    few, _ = _fetch(dc, tmp_path, 3)
    more, labels = _fetch(dc, tmp_path, 6)
    assert (more - few) % 3 == 0 and (more - few) // 3 == sum(PHASES.values()), (few, more, labels)
    # Per phase: the syncs of messages 3 to 6 (each message's own: from its temp file's creation
    # to the next one's), as clientget.py's docstring counts them.
    starts = [i for i, x in enumerate(labels) if _phase(x) == "create"]
    assert len(starts) == 6, labels
    for a, b in zip(starts[2:], starts[3:] + [None]):
        if b is None:  # the last message: up to its rename (then the session's end)
            b = a + [_phase(x) for x in labels[a:]].index("rename") + 1
        got = {}
        for x in labels[a:b]:
            p = _phase(x)
            if p is not None:
                got[p] = got.get(p, 0) + 1
        assert got == PHASES, (got, labels[a:b])
