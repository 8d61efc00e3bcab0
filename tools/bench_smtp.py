"""Benchmark the SMTP receiver under micropython (not a test: prints figures).

1. Receiving a 10 MiB message (plain SMTP on loopback, one recipient, CRLF lines of 80 octets)
   into a directory store: the server process's CPU time (from /proc) and the wall-clock time
   from DATA to the 250, as a ratio to the same runtime writing the same bytes in the same block
   size to a file in the same store directory (flushed), timed inside that micropython process.
2. The smallest -X heapsize (bisected to 1 KiB) at which `micropython -m pocketpost.smtpserver`
   (the POP3 server and the SMTP receiver together), loaded from .mpy (mpy-cross), receives a
   1 KiB and a 10 MiB message: the two must be equal (nothing grows with the message).

    .venv/bin/python tools/bench_smtp.py [--size-mib 10] [--skip-heap]
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
sys.path.insert(0, HERE)
from bench_server import build_mpy, cpu  # noqa: E402
from helpers import MICROPYTHON  # noqa: E402
from smtpharness import SmtpPop3Server, last_reply_line  # noqa: E402

LINE = b"x" * 78 + b"\r\n"

FILE_WRITE = r"""
import sys, time
path, size, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
line = b"x" * 78 + b"\r\n"
buf = bytearray((line * (block // len(line) + 1))[:block])
t0 = time.ticks_us()
f = open(path, "wb")
n = 0
while n < size:
    f.write(buf)
    n += block
f.flush()
f.close()
print(time.ticks_diff(time.ticks_us(), t0))
"""


def body(size):
    head = b"Subject: bench\r\n\r\n"
    n = (size - len(head)) // len(LINE)
    return head + LINE * n


def send(port, data):
    """One SMTP transaction; returns (seconds from DATA's 354 to the 250, final reply)."""
    s = socket.create_connection(("127.0.0.1", port), 120)
    f = s.makefile("rb")

    last_reply_line(f)
    for c in (b"EHLO bench.example", b"MAIL FROM:<b@bench.example>", b"RCPT TO:<alice@example.org>", b"DATA"):
        s.sendall(c + b"\r\n")
        r = last_reply_line(f)
    if not r.startswith(b"354"):  # e.g. 451 when the heap is too small for the DATA buffers
        s.close()
        return 0.0, r
    t0 = time.time()
    mv = memoryview(data)
    for i in range(0, len(data), 1 << 16):
        s.sendall(mv[i : i + (1 << 16)])
    s.sendall(b".\r\n")
    r = last_reply_line(f)
    dt = time.time() - t0
    s.sendall(b"QUIT\r\n")
    s.close()
    return dt, r


def throughput(size_mib, block=1024):
    base = tempfile.mkdtemp(prefix="pp-bsmtp-")
    size = size_mib << 20
    data = body(size)
    srv = SmtpPop3Server(base, messages={"alice": []}, server={"cert": "", "key": "", "pop3s_port": 0},
                         smtp={"max_message_size": 2 * size, "data_timeout": 60, "block_size": block})
    try:
        srv.start()
        send(srv.smtp_port, body(1024))  # warm-up: imports, first delivery
        c0 = cpu(srv.proc.pid)
        dt, r = send(srv.smtp_port, data)
        c1 = cpu(srv.proc.pid)
        assert r.startswith(b"250"), r
        srv.stop()
        stored = [m for _, m in srv.mailbox("alice")][-1]
        assert stored.endswith(data), "stored bytes differ"
        env = dict(os.environ)
        env["MICROPYPATH"] = ".frozen"
        script = os.path.join(base, "w.py")
        with open(script, "w") as f:
            f.write(FILE_WRITE)
        us = int(subprocess.run([MICROPYTHON, script, os.path.join(srv.store_root, "alice", "bench"), str(len(data)),
                                 str(block)], capture_output=True, check=True, env=env).stdout)
        base_s = us / 1e6
        print("receive %d MiB over SMTP (micropython, loopback, directory store, smtp.block_size %d): server CPU %.3f s,"
              " DATA->250 %.3f s" % (size_mib, block, c1 - c0, dt))
        print("  micropython writing the same bytes to a file in the store, %d B blocks: %.3f s" % (block, base_s))
        print("  ratio (receive / file write): CPU %.2f, wall %.2f" % ((c1 - c0) / base_s, dt / base_s))
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


def heap_trial(base, mpydir, heap, size):
    d = tempfile.mkdtemp(dir=base)
    srv = SmtpPop3Server(d, messages={"alice": []}, server={"cert": "", "key": "", "pop3s_port": 0},
                         smtp={"max_message_size": 2 * size + 4096, "data_timeout": 60}, heapsize=heap)
    try:
        try:
            srv.start(micropypath=mpydir)
        except RuntimeError:
            return False
        try:
            r = send(srv.smtp_port, body(size))[1]
        except (OSError, EOFError):
            return False
        return r.startswith(b"250") and srv.alive()
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def min_heap(size):
    base = tempfile.mkdtemp(prefix="pp-sheap-")
    try:
        mpydir = os.path.join(base, "mpy")
        build_mpy(mpydir)
        lo, hi = 8, 512  # KiB
        assert heap_trial(base, mpydir, "%dk" % hi, size), "fails even at %d KiB" % hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if heap_trial(base, mpydir, "%dk" % mid, size):
                hi = mid
            else:
                lo = mid
        return hi
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=10)
    ap.add_argument("--skip-heap", action="store_true")
    ap.add_argument("--block", type=int, default=1024, help="smtp.block_size (the config default is 1024)")
    a = ap.parse_args()
    throughput(a.size_mib, a.block)
    if not a.skip_heap:
        print("smallest -X heapsize, POP3 server + SMTP receiver in one process (.mpy in the heap, 64-bit unix port):")
        for size in (1024, a.size_mib << 20):
            print("  receiving a %d-octet message: %d KiB" % (size, min_heap(size)))


if __name__ == "__main__":
    main()
