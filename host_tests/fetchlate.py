"""The fetch CLI, for the lock takeover race (test_review_w17_left.py), as a run preempted at the
worst moment on a loaded machine:
    micropython host_tests/fetchlate.py config.json LOCKDIR MARK
runs pocketpost.fetch.main; its first look at the process of the pid found in the fetch lock
LOCKDIR (/proc/PID/cmdline: is a fetch still running there?) makes the file MARK (the test then
starts the other runs) and is held back until LOCKDIR holds another pid (another run has taken
the killed run's lock over), at most 10 s."""

import sys
import time

from pocketpost import fetch, fetchload


def main(argv):
    lock, mark = argv[2], argv[3]
    real = open
    late = [True]

    def slow_open(p, *args):
        if late[0] and p[:6] == "/proc/" and p.endswith("/cmdline") and p != "/proc/self/cmdline":
            late[0] = False
            dead = p[6:-8]
            with real(mark, "w") as f:
                f.write(dead)
            t0 = time.time()
            while time.time() - t0 < 10:
                try:
                    with real(lock + "/pid") as f:
                        now = f.read().strip()
                except OSError:
                    now = ""
                if now and now != dead:
                    break
                time.sleep(0.01)
        return real(p, *args)

    fetchload.open = slow_open  # (a module global: found before the builtin)
    return fetch.main(argv[1])


sys.exit(main(sys.argv))
