#!/usr/bin/env python3
"""Where the fetch CLI's heap goes (a measurement aid, not a test): workload d of tools/bench_heap.py
(`micropython -m pocketpost.fetch config.json`, code from `.mpy`, plain text from a pocketpost
server on loopback, one message into a directory store) run through a small in-process probe.
What bench_heap gives as one number (the smallest heap passing 5 of 5) is taken apart here:

  live    the live heap (gc.collect(); gc.mem_alloc()) at the download's first body chunk, the
          names then interned, and the heap of the download's objects by name
          (`--map`: with the heap's block map at that moment, each allocation of at least
          --min bytes listed with the objects found in it, and the free runs)
  phases  the largest live heap seen in each phase (a task collects every 1 ms and notes the
          cold module loaded: clientconf, clientauth, clientplan, clientget, clientend): which
          phase sets the smallest heap (the sampling task's own heap is in each figure)
  fail    at --heap KiB, --tries runs, each failing run's traceback and failing allocation:
          what does not fit first

The probe (micropython side, one small module per mode) wraps names only (builtins.__import__,
asyncio.run, clientget's download and _StoreSink.__call__ once loaded); its own heap and names
(~0.3-2 KB, mode by mode) are in the figures: compare runs of one mode, tree against tree.

Run: .venv/bin/python tools/bench_client_peak.py [live|phases|fail] [--heap KIB] [--tries N]
         [--size 1k|1m|10m] [--map] [--min BYTES]
"""

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_heap  # noqa: E402
from benchlib import build_mpy  # noqa: E402
from helpers import MICROPYTHON  # noqa: E402

# The micropython side, one small module per mode (`micropython -m peakprobe CONFIG`, compiled to
# .mpy with the tree): few names of its own, as every name it interns is heap (a fetch is within
# ~12 names of the 621st, which makes a 7 KB pool: tools/bench_heap.py, test_fetch_heap.py).
_MAIN = """
from pocketpost import fetch
sys.exit(fetch.main(sys.argv[1]))
"""
_FIRST = """
import sys, gc, builtins
I = builtins.__import__
A = []
def F(args):
    gc.collect()
    print("LIVE", gc.mem_alloc(), gc.mem_free(), " ".join(sorted(k[11:] for k in sys.modules if k.startswith("pocketpost."))))
    import micropython
    micropython.qstr_info()
    %s
def H(n, *a):
    m = I(n, *a)
    if n == "pocketpost.clientget" and not A:
        g = sys.modules[n]
        S = g._StoreSink
        C = S.__call__
        D = g.download
        def c(self, chunk):
            if len(A) < 5:
                A.append(self)
                F(A)
            return C(self, chunk)
        def d(*a):
            A[:] = a[:3]
            return D(*a)
        S.__call__ = c
        g.download = d
        A.append(0)
    return m
builtins.__import__ = H
"""
_MAP = """
    import uctypes
    seen = {}
    def L(k, o, depth):
        print("OBJ", k, type(o).__name__, "%x" % id(o))
        try:
            print("BUF", k, "%x" % uctypes.addressof(o), len(o))
        except Exception:
            pass
        if depth < 3 and id(o) not in seen:
            seen[id(o)] = 1
            try:
                d = o.__dict__
            except Exception:
                return
            for x in d:
                v = d[x]
                if not (v is None or isinstance(v, (int, bool, float))):
                    L(k + "." + x, v, depth + 1)
    for k, o in zip(("c", "st", "store", "sink"), args):
        L(k, o, 0)
    micropython.mem_info(1)
"""
PROBES = {
    "live": _FIRST % "pass" + _MAIN,
    "map": _FIRST % _MAP + _MAIN,
    "phases": """
import sys, gc, asyncio
P = {}
async def T():
    while True:
        gc.collect()
        a = gc.mem_alloc()
        p = "start"
        for n in ("clientget", "clientend", "clientplan", "clientauth", "clientconf"):
            if "pocketpost." + n in sys.modules:
                p = n
                break
        if a > P.get(p, 0):
            P[p] = a
        await asyncio.sleep_ms(1)
R = asyncio.run
def W(coro):
    async def w():
        t = asyncio.create_task(T())
        try:
            return await coro
        finally:
            t.cancel()
    return R(w())
asyncio.run = W
from pocketpost import fetch
r = fetch.main(sys.argv[1])
print("PHASES", " ".join("%s=%d" % kv for kv in sorted(P.items(), key=lambda kv: kv[1])))
sys.exit(r)
""",
    "fail": """
import sys
from pocketpost import fetch
def p(*a):
    if a and isinstance(a[0], str) and "FAILED" in a[0]:
        sys.print_exception(sys.exc_info()[1])
    print(*a)
fetch.print = p
sys.exit(fetch.main(sys.argv[1]))
""",
}


def run_probe(env, mpy, mode, kib, box, extra=()):
    """(exit status, output) of one run of the probe at kib KiB, fetching mailbox box upstream."""
    from pocketpost.store import Store

    d = tempfile.mkdtemp(dir=env.base)
    try:
        root = os.path.join(d, "mail")
        Store(root, quota=0, reserve=0).create("fetched")
        cfg = {"store": {"root": root, "quota": 0, "reserve": 0}, "log": {"level": "info"},
               "accounts": [env.account(d, box)]}
        path = os.path.join(d, "config.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([MICROPYTHON, "-X", "heapsize=%dk" % kib, "-m", "peakprobe", path] + list(extra),
                           capture_output=True, timeout=120, cwd=d, env=dict(os.environ, MICROPYPATH=mpy + ":.frozen"))
        return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def read_map(out, min_bytes):
    """The heap map (micropython.mem_info(1)) in `out`, with the probe's OBJ / BUF addresses: the
    allocations of at least min_bytes (or holding a labelled object), the block types, free runs."""
    lines = out.splitlines()
    i = [k for k, ln in enumerate(lines) if ln.startswith("GC memory layout")][-1]
    base = int(lines[i].split("from ")[1].rstrip(";:"), 16)
    cells = []
    for ln in lines[i + 1:]:
        m = re.match(r"^([0-9a-f]{8}): (.*)$", ln)
        if m:
            cells.extend("." * (int(m.group(1), 16) // 32 - len(cells)))
            cells.extend(m.group(2))
        elif "lines all free" in ln:
            cells.extend("." * 64 * int(re.search(r"\((\d+) lines", ln).group(1)))
        elif ln.startswith(("fetch ", "LIVE")):
            break
    labels = collections.defaultdict(list)
    for ln in lines[:i]:
        p = ln.split()
        if p and p[0] in ("OBJ", "BUF"):
            labels[(int(p[3] if p[0] == "OBJ" else p[2], 16) - base) // 32].append(p[1] + ("" if p[0] == "OBJ" else "[buf]"))
    allocs = []
    j = 0
    while j < len(cells):
        if cells[j] in ".=":
            j += 1
            continue
        k = j + 1
        while k < len(cells) and cells[k] == "=":
            k += 1
        allocs.append((j, cells[j], (k - j) * 32))
        j = k
    by = collections.Counter()
    for _, c, n in allocs:
        by[c] += n
    print("blocks by type (mem_info letters: h untyped: bytecode, buffers, dict tables, names; B function,"
          " S str, T tuple, D dict, L list, M module, A bytearray):", dict(by.most_common()))
    for j, c, n in allocs:
        lb = [x for b in range(j, j + n // 32) for x in labels.get(b, [])]
        if n >= min_bytes or lb:
            print("  %6d B %s at block %5d  %s" % (n, c, j, " ".join(lb)))
    free = sorted((len(m.group(0)) * 32 for m in re.finditer(r"\.+", "".join(cells[:max(j for j, _, _ in allocs) + 1]))),
                  reverse=True)
    print("free runs below the top allocation: %d B in %d, largest %s" % (sum(free), len(free), free[:8]))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="live", choices=("live", "phases", "fail"))
    ap.add_argument("--heap", type=int, default=0, help="KiB (default: 200 for live/phases, 95 for fail)")
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--size", default="1k", choices=("1k", "1m", "10m"))
    ap.add_argument("--map", action="store_true", help="live: the heap map at the first chunk, labelled")
    ap.add_argument("--min", type=int, default=512, help="--map: list allocations of at least this many bytes")
    a = ap.parse_args(argv)
    kib = a.heap or (95 if a.mode == "fail" else 200)
    base = tempfile.mkdtemp(prefix="pp-peak-")
    env = bench_heap.Env.__new__(bench_heap.Env)  # its upstream server and accounts only
    env.base, env.up, env.msgs, env.smtp = base, None, {}, False
    try:
        probe = os.path.join(base, "peakprobe.py")
        with open(probe, "w") as f:
            f.write(PROBES["map" if a.map and a.mode == "live" else a.mode])
        mpy = build_mpy(os.path.join(base, "mpy"), extra=(probe,))
        box = "m" + a.size
        for _ in range(1 if a.mode != "fail" else a.tries):
            rc, out = run_probe(env, mpy, a.mode, kib, box)
            if a.mode == "fail":
                if rc == 0:
                    print("passed at %d KiB" % kib)
                else:
                    tb = [ln for ln in out.splitlines() if ln.startswith(("  File", "MemoryError", "Traceback"))
                          and "asyncio" not in ln and "fetch_account_sync" not in ln]
                    print("\n".join(tb) or out[-600:])
                continue
            for ln in out.splitlines():
                if ln.startswith(("LIVE", "PHASES", "qstr pool")):
                    print(ln)
            if a.map and a.mode == "live":
                read_map(out, a.min)
            if rc != 0:
                print("exit %d:" % rc, out[-600:])
    finally:
        env.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
