#!/usr/bin/env python3
"""`make bench`: every benchmark, one after the other (each prints its own figures)."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHES = (
    ("bench_core.py",),
    ("bench_store.py",),
    ("bench_server.py",),
    ("bench_server.py", "--store", "lfs"),  # the same on a littlefs image
    ("bench_client.py",),
    ("bench_auth.py",),
    ("bench_smtp.py",),
    ("bench_smtp_burst.py",),  # 20 senders at once / 10 / 30 ms apart at the ESP32 template's SMTP limits
    ("bench_heap.py",),
    # everything at once through board.main (what a board running everything holds; ~15 s)
    ("bench_heap.py", "--runner", "--only", "c"),
    # the .mpy bytes and everything at once with the code compiled as `deploy --no-lines` (~30 s)
    ("bench_heap.py", "--no-lines", "--only", "code,c"),
    # c with the store on littlefs as on a board, and its control (lfs - dev: littlefs's own cost; ~35 s)
    ("bench_heap.py", "--only", "c", "--store", "dev,lfs"),
    ("bench_client_size.py",),  # heap kept after import pocketpost.fetch, the fetch path's .mpy
    ("bench_server_size.py",),  # live heap per server start-up step
    ("bench_uidstate.py",),  # flash bytes per fetched message by the UIDL state, 2,000 entries
    ("bench_scram.py",),
    ("bench_mailport.py",),
    ("bench_scale32.py",),  # needs node/npm; says so and passes without them
)


def main():
    failed = []
    for b in BENCHES:
        print("=" * 20, " ".join(b), "=" * 20, flush=True)
        if subprocess.call([sys.executable, os.path.join(HERE, b[0])] + list(b[1:])) != 0:
            failed.append(" ".join(b))
    if failed:
        print("failed:", ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
