"""The fetch CLI with a crash point, for the SIGKILL tests (test_client_dovecot.py):
    micropython host_tests/crashfetch.py STEP[#k] config.json
runs pocketpost.fetch.main with crashpoints installed; at the k-th `STEP` (default 1) it prints
CRASHPOINT and sleeps until the test kills it (no finally block runs: a power cut)."""

import sys
import time

sys.path.insert(0, __file__.rsplit("/", 1)[0] if "/" in __file__ else ".")

import crashpoints  # noqa: E402


def main(argv):
    spec = argv[1]
    step, k = (spec.split("#") + ["1"])[:2]
    k = int(k)
    seen = {}

    def point(s):
        seen[s] = seen.get(s, 0) + 1
        if s == step and seen[s] == k:
            print("CRASHPOINT", s, k)
            time.sleep(3600)

    crashpoints.install(point)
    from pocketpost import fetch

    return fetch.main(argv[2])


sys.exit(main(sys.argv))
