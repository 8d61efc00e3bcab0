"""Helpers for the pytest-only tests: find the toolchain, pick free ports, run micropython."""

import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
VENV_BIN = os.path.dirname(sys.executable)


def tool(name):
    """A tool from the project venv (next to this python), else from PATH."""
    p = os.path.join(VENV_BIN, name)
    return p if os.path.exists(p) else name


MICROPYTHON = tool("micropython")


def free_port(host="127.0.0.1"):
    """A free TCP port on loopback. MicroPython sockets lack getsockname, so CPython picks it."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run_micropython(args, timeout=300, heapsize=None, **kw):
    cmd = [MICROPYTHON]
    if heapsize:
        cmd += ["-X", "heapsize=%s" % heapsize]
    cmd += list(args)
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":" + os.path.join(ROOT, "host_tests", "dual") + ":.frozen"
    return subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=kw.pop("cwd", ROOT), env=env, **kw)


def run_sweep(script, ok_marker, timeout):
    """Run a sweep suite (a host_tests file whose main() runs under micropython on a simulated
    flash: power cuts, faults, damage) in a 16 MB heap; print its report; it must exit 0 and
    print its OK marker (a sweep that stopped early prints no marker)."""
    r = run_micropython([script], timeout=timeout, heapsize="16M")
    out = r.stdout.decode(errors="replace")
    print(out)
    assert r.returncode == 0, out[-4000:] + r.stderr.decode(errors="replace")[-4000:]
    assert ok_marker in out
