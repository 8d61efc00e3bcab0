"""Benchmark the POP3 server under micropython (not a test: prints figures).

1. RETR throughput of a 10 MiB message, as a ratio to the limit: a micropython loop copying the
   same stored file to a socket with the same block size (blocking socket, no protocol), in the
   same run. Reported as wall-clock MiB/s and micropython CPU seconds (loopback wall-clock tops out
   near the client's speed, so CPU time per transfer is the fairer comparison).
The heap figures are tools/bench_heap.py's.

    .venv/bin/python tools/bench_server.py [--block 1024] [--size-mib 10]
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
from serverharness import Pop3Server, msg  # noqa: E402
from helpers import MICROPYTHON, free_port, tool  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")

COPY_LOOP = r"""
import socket, sys
path, port, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
s.listen(1)
print("ready")
c, _ = s.accept()
buf = bytearray(block)
mv = memoryview(buf)
f = open(path, "rb")
while True:
    n = f.readinto(buf)
    if not n:
        break
    c.write(mv[:n])
f.close()
c.close()
"""


def cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def recv_all(sock, until=None, expect=None):
    chunks = []
    got = 0
    while True:
        d = sock.recv(1 << 20)
        if not d:
            break
        chunks.append(d)
        got += len(d)
        if until is not None and got >= 5 and b"".join(chunks[-2:]).endswith(until):
            break
        if expect is not None and got >= expect:
            break
    return b"".join(chunks)


def pop_retr(port, user, pw, n=1):
    s = socket.create_connection(("127.0.0.1", port), 60)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"USER %s\r\nPASS %s\r\n" % (user, pw))
    f.readline()
    r = f.readline()
    assert r.startswith(b"+OK"), r
    t = time.time()
    s.sendall(b"RETR %d\r\n" % n)
    # bulk reads (as the limit's client does): the reply ends with CRLF.CRLF
    size = 0
    tail = b""
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        size += len(d)
        tail = (tail + d)[-5:]
        if tail == b"\r\n.\r\n":
            break
    dt = time.time() - t
    s.sendall(b"QUIT\r\n")
    s.recv(100)  # the +OK: the lock is released once QUIT is answered
    s.close()
    return size, dt


def throughput(size_mib, block, dotted):
    """dotted: the message has lines starting with '.', so RETR runs the dot-stuffing codec;
    otherwise the store knows it needs none and RETR sends the file unchanged."""
    base = tempfile.mkdtemp(prefix="pp-bench-")
    try:
        line = b"x" * 78 + b"\r\n"
        head = msg(1, 0) if dotted else b"From: a@example.org\r\nSubject: plain\r\n\r\n"
        big = head + line * (size_mib * 1024 * 1024 // len(line))
        srv = Pop3Server(base, {"alice": [big]}, server={"block_size": block, "idle_timeout": 600}, users={"alice": "pw"})
        srv.start()
        try:
            time.sleep(0.2)
            best = None
            for _ in range(3):
                c0 = cpu(srv.proc.pid)
                size, dt = pop_retr(srv.port, b"alice", b"pw")
                c1 = cpu(srv.proc.pid)
                r = (dt, c1 - c0)
                best = r if best is None or r[0] < best[0] else best
            assert size >= len(big), (size, len(big))
        finally:
            srv.stop()
        path = None
        for top, _d, files in os.walk(os.path.join(base, "mail", "alice")):
            for n in files:
                if top.rsplit("/", 1)[-1].startswith("b"):
                    path = os.path.join(top, n)
        lim = None
        for _ in range(3):
            port = free_port()
            p = subprocess.Popen([MICROPYTHON, "-c", COPY_LOOP, path, str(port), str(block)], stdout=subprocess.PIPE)
            p.stdout.readline()
            c = socket.create_connection(("127.0.0.1", port), 30)
            t = time.time()
            c0 = cpu(p.pid)
            n = len(recv_all(c))
            c1 = cpu(p.pid)
            dt = time.time() - t
            c.close()
            p.wait(10)
            assert n == len(big)
            r = (dt, c1 - c0)
            lim = r if lim is None or r[0] < lim[0] else lim
        mib = len(big) / 1048576
        print("RETR %.1f MiB, block %d, %s:" % (mib, block, "with dot lines (stuffing codec)" if dotted else "no dot lines (file sent unchanged)"))
        print("  server : %6.1f MiB/s wall, %.3f s CPU" % (mib / best[0], best[1]))
        print("  limit  : %6.1f MiB/s wall, %.3f s CPU (micropython file->socket copy loop)" % (mib / lim[0], lim[1]))
        print("  ratio  : %.2f of the limit (wall)   CPU ratio limit/server %.2f" % (lim[0] / best[0], (lim[1] / best[1]) if best[1] else float("nan")))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--size-mib", type=int, default=10)
    a = ap.parse_args()
    throughput(a.size_mib, a.block, False)
    throughput(a.size_mib, a.block, True)
    # The heap figures (listening, sessions, everything at once, ROMFS) are tools/bench_heap.py's.

if __name__ == "__main__":
    main()
