"""Run a schedule of `client.fetch_account_sync` calls for one OAuth account in ONE process (so the
access-token cache lives across them, as on a board), under micropython or CPython.

- as a script (`micropython host_tests/oauthdriver.py SPEC.json`): for each clock offset in
  spec["offsets"] (seconds added to the board clock, compat.now()), fetch once and print
  `RESULT {...}`; before every fetch but the first, wait for one line on stdin (the test changes
  the provider's state in between: expires a token, revokes a refresh token, seeds mail);
- `Schedule(spec)` (CPython, the tests) runs that subprocess step by step;
- `run_inprocess(spec, between)` does the same in the test process (CPython runtime).
SPEC: {"account": {...}, "root": store root, "offsets": [0, 3600, ...]}
"""

import json
import sys

RESULT = "RESULT "


def _one(client, store, account):
    messages = []

    def on_message(info):
        messages.append(info["size"])

    try:
        res = {"ok": client.fetch_account_sync(account, store, on_message)}
    except Exception as e:
        res = {"exc": type(e).__name__, "msg": str(e)}
    res["messages"] = messages
    res["implementation"] = sys.implementation.name
    return res


def main(argv):
    with open(argv[1]) as f:
        spec = json.load(f)
    from pocketpost import client, compat, store as storemod
    from pocketpost.store import Store

    real_now = compat.now
    offset = [0]
    compat.now = lambda: real_now() + offset[0]  # oauth2 and client read compat.now() at call time
    storemod.reboot()
    store = Store(spec["root"])
    for i, off in enumerate(spec["offsets"]):
        if i:
            sys.stdin.readline()
        offset[0] = off
        print(RESULT + json.dumps(_one(client, store, spec["account"])))


# --- CPython side --------------------------------------------------------------------------------
class Schedule:
    def __init__(self, spec, timeout=60):
        import os
        import subprocess
        import tempfile

        from helpers import FIRMWARE, MICROPYTHON

        fd, self.path = tempfile.mkstemp(suffix=".json", prefix="oauthdriver-")
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        env = dict(os.environ)
        env["MICROPYPATH"] = FIRMWARE + ":.frozen"
        self.timeout = timeout
        self.out = []
        self.proc = subprocess.Popen([MICROPYTHON, os.path.abspath(__file__), self.path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     cwd=os.path.dirname(self.path))

    def result(self):
        """The next fetch's result (bounded by the timeout: a hung fetch fails the test)."""
        import select
        import time

        deadline = time.time() + self.timeout
        fd = self.proc.stdout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("oauthdriver: no result in %ss:\n%s" % (self.timeout, "".join(self.out)))
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            line = fd.readline().decode(errors="replace")
            if not line:
                raise AssertionError("oauthdriver ended without a result:\n" + "".join(self.out))
            self.out.append(line)
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])

    def go(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def close(self):
        import os

        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)
        self.proc.stdout.close()
        os.unlink(self.path)


def run_inprocess(spec, between):
    """The same schedule in this (CPython) process; `between(i)` runs before fetch i > 0.
    Returns the list of results."""
    from pocketpost import client, compat, store as storemod
    from pocketpost.store import Store

    real_now = compat.now
    offset = [0]
    compat.now = lambda: real_now() + offset[0]
    out = []
    try:
        storemod.reboot()
        store = Store(spec["root"])
        for i, off in enumerate(spec["offsets"]):
            if i:
                between(i)
            offset[0] = off
            out.append(_one(client, store, spec["account"]))
    finally:
        compat.now = real_now
    return out


def run_micropython(spec, between):
    s = Schedule(spec)
    out = []
    try:
        for i in range(len(spec["offsets"])):
            if i:
                between(i)
                s.go()
            out.append(s.result())
    finally:
        s.close()
    return out


if __name__ == "__main__":
    main(sys.argv)
