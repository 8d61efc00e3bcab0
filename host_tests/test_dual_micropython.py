"""Runs the dual-runtime suite (host_tests/dual) under the real micropython binary.

pytest runs the same modules under CPython directly; this test makes MicroPython run them too,
so a construct MicroPython lacks fails here rather than on a board.
"""

from helpers import run_micropython


def test_dual_suite_under_micropython():
    r = run_micropython(["host_tests/dual/run.py"], timeout=600)
    out = r.stdout.decode(errors="replace")
    print(out)
    print(r.stderr.decode(errors="replace"))
    assert r.returncode == 0, out[-4000:]
    last = [l for l in out.splitlines() if l.startswith("micropython:")][-1]
    assert " 0 failed" in last and not last.startswith("micropython: 0 passed")
