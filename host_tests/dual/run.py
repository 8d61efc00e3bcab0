"""Run the dual-runtime test modules under MicroPython (pytest runs the same files under CPython).

Usage: micropython host_tests/dual/run.py [test_module ...]
Each module in this folder named test_*.py holds plain `def test_*()` functions using bare
`assert` (fine in tests) and nothing pytest-specific; a test that cannot run on this runtime
calls dualtest.skip(reason). Prints one line per test (`ok   m.t`, `FAIL m.t ...` followed by
its traceback, `SKIP m.t: reason`) and a closing 'micropython: N passed, N failed, N skipped'
line; exits 1 if anything failed. host_tests/test_dual_micropython.py turns each line into
one pytest outcome.
"""

import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
ROOT = HERE + "/../.."
sys.path.insert(0, ROOT + "/firmware")
sys.path.insert(0, HERE)

from dualtest import Skip  # noqa: E402


def main(argv):
    names = argv or sorted(n[:-3] for n in os.listdir(HERE) if n.startswith("test_") and n.endswith(".py"))
    passed = failed = skipped = 0
    for name in names:
        mod = __import__(name)
        tests = sorted(k for k in dir(mod) if k.startswith("test_"))
        for t in tests:
            fn = getattr(mod, t)
            try:
                fn()
            except Skip as e:
                skipped += 1
                print("SKIP", name + "." + t + ":", e.args[0] if e.args else "")
            except Exception as e:  # report and go on: one failure must not hide the rest
                failed += 1
                print("FAIL", name + "." + t, repr(e))
                sys.print_exception(e)
            else:
                passed += 1
                print("ok  ", name + "." + t)
    print("micropython: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
