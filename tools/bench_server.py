"""Benchmark the POP3 server under micropython (not a test: prints figures).

1. RETR throughput of a 10 MiB message, as a ratio to the limit: a micropython loop copying the
   same stored file to a socket with the same block size (blocking socket, no protocol), in the
   same run. Reported as wall-clock MiB/s and micropython CPU seconds (loopback wall-clock tops out
   near the client's speed, so CPU time per transfer is the fairer comparison).
2. The smallest -X heapsize at which the server, loaded from .mpy (mpy-cross), serves 1 and 2
   concurrent sessions each retrieving a 1 MiB message (plain POP3; bisected to 1 KiB), and the
   floor (listening, no session). Twice: with the .mpy files loaded into the heap (what
   `make deploy` gives), and from a ROMFS image (`mpremote romfs build`) mounted with
   vfs.VfsRom, whose bytecode runs in place. On a board the ROMFS partition (or frozen
   firmware, manifest.py) lives in flash; here the image is a bytearray in the heap, so its exact
   size is subtracted: that figure is the heap the server needs beyond its code.

    .venv/bin/python tools/bench_server.py [--block 1024] [--size-mib 10] [--skip-heap]
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


def build_mpy(dest):
    src = os.path.join(ROOT, "firmware", "pocketpost")
    os.makedirs(os.path.join(dest, "pocketpost"))
    for n in os.listdir(src):
        if n.endswith(".py"):
            out = os.path.join(dest, "pocketpost", n[:-3] + ".mpy")
            subprocess.run([tool("mpy-cross"), "-o", out, os.path.join(src, n)], check=True)


# Modules the server needs (the ROMFS image holds only these, as frozen firmware would).
SERVER_MODULES = ("compat", "log", "wire", "pop3", "tls", "auth", "config", "store", "pop3server", "server")

ROMFS_LAUNCHER = r"""
import sys, os, vfs
img_path, cfg = sys.argv[1], sys.argv[2]
img = bytearray(os.stat(img_path)[6])
f = open(img_path, "rb")
f.readinto(img)
f.close()
vfs.mount(vfs.VfsRom(img), "/rom")
sys.path.insert(0, "/rom")
from pocketpost import server
server.main(cfg)
"""


def build_romfs(dest):
    """A ROMFS image of the server modules; returns (image path, size)."""
    src = os.path.join(dest, "src", "pocketpost")
    os.makedirs(src)
    for m in SERVER_MODULES:
        shutil.copy(os.path.join(ROOT, "firmware", "pocketpost", m + ".py"), src)
    shutil.copy(os.path.join(ROOT, "firmware", "pocketpost", "__init__.py"), src) if os.path.exists(
        os.path.join(ROOT, "firmware", "pocketpost", "__init__.py")) else None
    img = os.path.join(dest, "server.romfs")
    subprocess.run([tool("mpremote"), "romfs", "--output", img, "build", os.path.join(dest, "src")],
                   check=True, capture_output=True)
    launcher = os.path.join(dest, "launch_romfs.py")
    with open(launcher, "w") as f:
        f.write(ROMFS_LAUNCHER)
    return img, launcher, os.path.getsize(img)


def heap_trial(base, mpydir, heap, sessions, romfs=None):
    d = tempfile.mkdtemp(dir=base)
    one_mib = msg(1, 0) + (b"y" * 1022 + b"\r\n") * 1024
    users = {"u%d" % i: "pw" for i in range(sessions)}
    srv = Pop3Server(d, {"u%d" % i: [one_mib] for i in range(sessions)}, users=users,
                     server={"cert": "", "key": "", "pop3s_port": 0, "max_sessions": 4}, heapsize=heap)
    env_path = os.environ.get("MICROPYPATH")
    ok = False
    try:
        os.environ["MICROPYPATH"] = mpydir  # harness sets FIRMWARE; override through args instead
        try:
            if romfs:
                srv.start(args=[romfs[1], romfs[0], srv.config_path], micropypath=".frozen")
            else:
                srv.start(micropypath=mpydir)
        except RuntimeError:
            return False
        if sessions == 0:  # the floor: listening, answering a greeting
            time.sleep(0.3)
            try:
                s = socket.create_connection(("127.0.0.1", srv.port), 10)
                ok = s.recv(100).startswith(b"+OK") and srv.alive()
                s.close()
            except OSError:
                ok = False
            return ok
        res = [None] * sessions

        def run(i):
            try:
                res[i] = pop_retr(srv.port, b"u%d" % i, b"pw")[0]
            except Exception as e:  # noqa: BLE001 - any failure means "not enough heap"
                res[i] = e

        ts = [threading.Thread(target=run, args=(i,)) for i in range(sessions)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        ok = all(isinstance(r, int) and r >= len(one_mib) for r in res) and srv.alive()
    finally:
        srv.stop()
        if env_path is None:
            os.environ.pop("MICROPYPATH", None)
        else:
            os.environ["MICROPYPATH"] = env_path
        shutil.rmtree(d, ignore_errors=True)
    return ok


def min_heap(sessions, romfs=False):
    base = tempfile.mkdtemp(prefix="pp-heap-")
    try:
        mpydir = os.path.join(base, "mpy")
        build_mpy(mpydir)
        image = build_romfs(os.path.join(base, "rom")) if romfs else None
        lo, hi = 4, 256  # KiB
        assert heap_trial(base, mpydir, "%dk" % hi, sessions, image), "fails even at %d KiB" % hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if heap_trial(base, mpydir, "%dk" % mid, sessions, image):
                hi = mid
            else:
                lo = mid
        return hi
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--size-mib", type=int, default=10)
    ap.add_argument("--skip-heap", action="store_true")
    a = ap.parse_args()
    throughput(a.size_mib, a.block, False)
    throughput(a.size_mib, a.block, True)
    if not a.skip_heap:
        print("smallest -X heapsize (64-bit unix port: GC blocks 32 B, twice the ESP32's), plain POP3, 1 MiB RETR per session:")
        for n in (0, 1, 2):
            print("  .mpy in heap, %d session(s): %d KiB" % (n, min_heap(n)))
        tmp = tempfile.mkdtemp(prefix="pp-rom-")
        try:
            img_size = build_romfs(tmp)[2]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for n in (0, 1, 2):
            h = min_heap(n, romfs=True)
            print("  ROMFS image (%d B, in flash on a board), %d session(s): %d KiB total, %.1f KiB beyond the image"
                  % (img_size, n, h, h - img_size / 1024))


if __name__ == "__main__":
    main()
