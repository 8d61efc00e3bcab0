"""Runs the dual-runtime suite (host_tests/dual) under the real micropython binary, one pytest
test per module, so the test command's output names each module that ran under MicroPython.

pytest runs the same modules under CPython directly; this makes MicroPython run them too, so a
construct MicroPython lacks fails here rather than on a board.
"""

import os

import pytest

from helpers import ROOT, run_micropython

DUAL = os.path.join(ROOT, "host_tests", "dual")
MODULES = sorted(n[:-3] for n in os.listdir(DUAL) if n.startswith("test_") and n.endswith(".py"))


def test_every_dual_module_is_collected():
    assert {"test_wire", "test_pop3", "test_store", "test_pop3server"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_under_micropython(module):
    r = run_micropython(["host_tests/dual/run.py", module], timeout=600)
    out = r.stdout.decode(errors="replace")
    print(out)
    print(r.stderr.decode(errors="replace")[-4000:])
    assert r.returncode == 0, out[-4000:]
    last = [l for l in out.splitlines() if l.startswith("micropython:")][-1]
    assert " 0 failed" in last and not last.startswith("micropython: 0 passed"), last
