"""Run the dual-runtime test modules under MicroPython (pytest runs the same files under CPython).

Usage: micropython host_tests/dual/run.py [test_module ...]
Each module in this folder named test_*.py holds plain `def test_*()` functions using bare
`assert` (fine in tests) and nothing pytest-specific. Prints one line per test and a closing
'N passed, N failed' line; exits 1 if anything failed.
"""

import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
ROOT = HERE + "/../.."
sys.path.insert(0, ROOT + "/firmware")
sys.path.insert(0, HERE)


def main(argv):
    names = argv or sorted(n[:-3] for n in os.listdir(HERE) if n.startswith("test_") and n.endswith(".py"))
    passed = failed = 0
    for name in names:
        mod = __import__(name)
        tests = sorted(k for k in dir(mod) if k.startswith("test_"))
        for t in tests:
            fn = getattr(mod, t)
            try:
                fn()
            except Exception as e:  # report and go on: one failure must not hide the rest
                failed += 1
                print("FAIL", name + "." + t, repr(e))
                sys.print_exception(e)
            else:
                passed += 1
                print("ok  ", name + "." + t)
    print("micropython: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
