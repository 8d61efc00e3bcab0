#!/usr/bin/env python3
"""Figures (not a test): heap and `.mpy` bytes of the fetch CLI's code, for this checkout or for a
git revision (compiled from `git archive REV firmware`), micropython unix port, code from `.mpy`,
`gc.mem_alloc()` after `gc.collect()`:

  kept after `import pocketpost.fetch`;
  resident during a plain-text fetch: after also importing what a fetch imports before its
      session (pocketpost.client and pocketpost.store), i.e. the modules that stay loaded while
      messages move (a tree whose fetch drops config.py/auth.py after the load has them unloaded);
  per module: the heap each one adds when the fetch path is imported one module at a time in
      dependency order (each delta includes the module's own dict, functions and bytecode);
  the `.mpy` bytes of the modules a fetch loads for a moment and drops (config checks, the
      client's account checks, login, crash recovery and the state file's load).

Run: .venv/bin/python tools/bench_client_size.py [REV ...]   (no REV: the working tree)
"""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import benchlib  # noqa: E402
from helpers import MICROPYTHON  # noqa: E402

PROBE = """import gc, sys
gc.collect()
a = gc.mem_alloc()
import pocketpost.fetch
gc.collect()
print("KEPT", gc.mem_alloc() - a)
import pocketpost.client, pocketpost.store, pocketpost.uidstate  # (uidstate: loaded by the fetch's start)
gc.collect()
print("RESIDENT", gc.mem_alloc() - a)
print("MODS", " ".join(sorted(k[11:] for k in sys.modules if k.startswith("pocketpost."))))
"""

# Dependency order of the fetch path (each module's imports come before it).
ORDER = ("compat", "log", "wire", "unstuffer", "pop3", "nativescan", "pop3client", "pop3listing", "transport", "tls",
         "headers", "uidstate", "uidcompact", "storecore", "store", "storeindex", "storemerge",
         "storescan", "storeopen", "storerare", "storewalk", "auth", "config", "client", "clientconf", "clientauth", "clientget", "clientfail", "clientstls", "clientrecover",
         "clientend", "clientplan", "fetch", "fetchload")
# Loaded for a moment and dropped by a fetch (MicroPython), where the tree has them: their .mpy
# bytes are listed apart from the resident modules'.
COLD = ("config", "auth", "clientconf", "clientauth", "clientget", "clientfail", "clientstls", "clientrecover", "clientend",
        "clientplan", "uidcompact", "fetchload", "storeindex", "storemerge", "storescan",
        "storeopen", "storerare", "storewalk", "nativescan", "pop3listing")
STEP = benchlib.IMPORT_STEPS


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
    benchlib.compile_pkg(fw, out)
    probe = os.path.join(tmp, "probe.py")
    with open(probe, "w") as f:
        f.write(PROBE)
    env = dict(os.environ, MICROPYPATH=os.path.join(tmp, "mpy") + ":.frozen")
    r = subprocess.run([MICROPYTHON, probe], capture_output=True, env=env, cwd=tmp, check=True)
    lines = r.stdout.decode().splitlines()
    kept = int(lines[0].split()[1])
    resident = int(lines[1].split()[1])
    mods = lines[2].split()[1:]
    sizes = {m: os.path.getsize(os.path.join(out, m + ".mpy")) for m in mods}
    cold = {m: os.path.getsize(os.path.join(out, m + ".mpy")) for m in COLD
            if m not in mods and os.path.exists(os.path.join(out, m + ".mpy"))}
    with open(probe, "w") as f:
        f.write(STEP % (ORDER,))
    r = subprocess.run([MICROPYTHON, probe], capture_output=True, env=env, cwd=tmp, check=True)
    steps = [ln.split()[1:] for ln in r.stdout.decode().splitlines() if ln.startswith("STEP")]
    return kept, resident, sizes, steps, cold


def main(revs):
    for rev in revs or [None]:
        with tempfile.TemporaryDirectory() as tmp:
            kept, resident, sizes, steps, cold = measure(rev, tmp)
        print("%s: heap kept after import pocketpost.fetch %d B; resident during a fetch %d B; .mpy of its %d "
              "resident modules %d B" % (rev or "working tree", kept, resident, len(sizes), sum(sizes.values())))
        print("   .mpy: " + ", ".join("%s %d" % kv for kv in sorted(sizes.items())))
        print("   .mpy loaded for a moment and dropped (%d B): " % sum(cold.values())
              + ", ".join("%s %d" % kv for kv in sorted(cold.items())))
        print("   heap per module (imported one by one): " + ", ".join("%s %s" % (m, b) for m, b in steps))


if __name__ == "__main__":
    main(sys.argv[1:])
