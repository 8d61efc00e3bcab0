#!/usr/bin/env python3
"""`make bench`: every benchmark, one after the other (each prints its own figures)."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = ("bench_core.py", "bench_store.py", "bench_server.py", "bench_client.py", "bench_heap.py", "bench_scale32.py")


def main():
    failed = []
    for b in BENCHES:
        print("=" * 20, b, "=" * 20, flush=True)
        if subprocess.call([sys.executable, os.path.join(HERE, b)]) != 0:
            failed.append(b)
    if failed:
        print("failed:", " ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
