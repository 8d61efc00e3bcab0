#!/usr/bin/env python3
"""Benchmark of the shared core (issue 2): dot-stuffing and un-stuffing throughput, and heap.

For chunk sizes 512 B .. 16 KiB, streams a 10 MiB mail-like body through DotStuffer and
DotUnstuffer under micropython and under CPython, and prints each as a ratio to the same
runtime's plain copy of the same bytes in the same run (1.0 = as fast as a copy). Then the heap:
micropython.mem_peak() (with frequent GC, so it is live data) and the smallest -X heapsize that
still completes, for a 1 KiB and a 10 MiB body. Not a test: it prints figures.
usage: .venv/bin/python tools/bench_core.py [--quick]
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
INNER = os.path.join(HERE, "bench_core_inner.py")
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
if not os.path.exists(MICROPYTHON):
    MICROPYTHON = "micropython"
TOTAL = 10 * 1024 * 1024
CHUNKS = (512, 1024, 4096, 16384)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def speed(runtime, chunk):
    rc, out, err = run(runtime + [INNER, "speed", str(TOTAL), str(chunk)])
    if rc:
        raise SystemExit(err)
    return [float(x) for x in out.split()]


def min_heap(total, chunk):
    """Bisect the smallest -X heapsize (bytes) at which the heap run completes."""
    lo, hi = 1024, 1 << 20
    rc, _, _ = run([MICROPYTHON, "-X", "heapsize=%d" % hi, INNER, "heap", str(total), str(chunk)])
    if rc:
        return None
    while hi - lo > 256:
        mid = (lo + hi) // 2
        rc, _, _ = run([MICROPYTHON, "-X", "heapsize=%d" % mid, INNER, "heap", str(total), str(chunk)])
        if rc:
            lo = mid
        else:
            hi = mid
    return hi


def peak(total, chunk):
    rc, out, err = run([MICROPYTHON, INNER, "heap", str(total), str(chunk)])
    return int(out.split()[-1]) if rc == 0 else None


def main():
    quick = "--quick" in sys.argv
    chunks = (4096,) if quick else CHUNKS
    print("dot-stuffing codec, %d MiB body; ratio = copy time / codec time (1.0 = memcpy speed)" % (TOTAL >> 20))
    print("%-12s %6s %10s %10s %10s %8s %8s" % ("runtime", "chunk", "copy s", "stuff s", "unstuff s", "stuff", "unstuff"))
    for name, rt in (("micropython", [MICROPYTHON]), ("cpython", [sys.executable])):
        for c in chunks:
            cp, st, un = speed(rt, c)
            print("%-12s %6d %10.4f %10.4f %10.4f %8.3f %8.3f" % (name, c, cp, st, un, cp / st, cp / un))
    print()
    print("heap under micropython (64-bit unix port: GC blocks are 32 B, twice the ESP32's)")
    chunk = 512
    figures = {}
    for label, total in (("1 KiB", 1024), ("10 MiB", TOTAL)):
        figures[label] = (peak(total, chunk), min_heap(total, chunk))
        print("  body %-7s chunk %d: mem_peak %s B, smallest -X heapsize %s B" % (label, chunk, figures[label][0], figures[label][1]))
    a, b = figures["1 KiB"], figures["10 MiB"]
    if None not in a + b:
        print("  10 MiB - 1 KiB: mem_peak %+d B, heapsize %+d B (aim: within 1024 B)" % (b[0] - a[0], b[1] - a[1]))


if __name__ == "__main__":
    main()
