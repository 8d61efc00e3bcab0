"""Run one `client.fetch_account_sync` under the real micropython binary, as a board would.

Two halves in one file:
- run as a script under MicroPython (`micropython host_tests/clientdriver.py SPEC.json`): build
  the account, open a Store, fetch, and print one machine-readable line
  `RESULT {"ok": stats, "messages": [...]}` or `RESULT {"exc": class, "msg": ..., ...}`;
- `run(spec)` (CPython, the tests): start that subprocess and decode its result line;
  `raise_like(res)` re-raises the error as the same class the in-process client would raise,
  so a test's `pytest.raises(...)` holds for both runtimes.

SPEC (JSON): {"account": {...}, "root": store root, "quota": int, "reserve": int,
              "now": int or null        (client.compat.now() returns this),
              "crash": [step, k] or null (crashpoints.py raises a BaseException there,
                                          standing for a power cut: no cleanup runs),
              "fail_pending_save": bool  (UidState.save raises OSError(28) while a pending
                                          entry is set: flash full)}
Only what the firmware itself offers is used on the MicroPython side (json, sys, time).
"""

import json
import sys

RESULT = "RESULT "


# --- MicroPython side ----------------------------------------------------------------------------
class _Crash(BaseException):
    pass


def _exc_info(e):
    r = {"exc": type(e).__name__, "msg": str(e)}
    v = getattr(e, "code", None)
    if isinstance(v, str):
        r["code"] = v
    if isinstance(e, OSError) and e.args and isinstance(e.args[0], int):
        r["errno"] = e.args[0]
    return r


def main(argv):
    with open(argv[1]) as f:
        spec = json.load(f)
    from pocketpost import client, store as storemod
    from pocketpost.store import Store

    if spec.get("now") is not None:
        t = spec["now"]
        client.compat.now = lambda: t  # the client reads compat.now() at call time
    crash = spec.get("crash")
    if crash or spec.get("fail_pending_save"):
        sys.path.insert(0, __file__.rsplit("/", 1)[0])
        import crashpoints
    if crash:
        crashpoints.install(crashpoints.counter(crash, _Crash))
    if spec.get("fail_pending_save"):
        crashpoints.fail_pending_saves()
    storemod.reboot()
    store = Store(spec["root"], quota=spec.get("quota", 0), reserve=spec.get("reserve", 0))
    messages = []

    def on_message(info):
        messages.append({"uid": info["uid"].decode() if isinstance(info["uid"], bytes) else info["uid"],
                         "size": info["size"], "headers_only": info["headers_only"],
                         "headers": info["headers"]})

    try:
        stats = client.fetch_account_sync(spec["account"], store, on_message)
        res = {"ok": stats}
    except _Crash as e:
        res = {"exc": "Crash", "msg": str(e)}
    except Exception as e:
        res = _exc_info(e)
    res["messages"] = messages
    res["implementation"] = sys.implementation.name  # the board's code path (transport.Conn) ran
    mb = spec["account"].get("mailbox")
    if mb and store.exists(mb):
        res["busy"] = store.box(mb).busy  # deliveries still open on the mailbox (should be 0)
    print(RESULT + json.dumps(res))


# --- CPython side --------------------------------------------------------------------------------
def run(spec, timeout=30):
    """Run the driver under micropython with `spec`; returns (result dict, elapsed s, output)."""
    import os
    import subprocess
    import tempfile
    import time

    from helpers import FIRMWARE, MICROPYTHON

    fd, path = tempfile.mkstemp(suffix=".json", prefix="clientdriver-")
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":.frozen"
    t = time.time()
    try:
        r = subprocess.run([MICROPYTHON, os.path.abspath(__file__), path], capture_output=True,
                           timeout=timeout, env=env, cwd=os.path.dirname(path))
    finally:
        os.unlink(path)
    elapsed = time.time() - t
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    for line in out.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):]), elapsed, out
    raise AssertionError("micropython driver gave no result (rc %d):\n%s" % (r.returncode, out))


def raise_like(res, crash_cls=None):
    """Re-raise the driver's error as the class the client raises in-process (same name)."""
    from pocketpost import client, clientget, clientstls, pop3, store as storemod

    name = res["exc"]
    msg = "[micropython] " + res["msg"]
    if name == "Crash" and crash_cls is not None:
        raise crash_cls(res["msg"])
    for mod in (client, clientget, clientstls, pop3, storemod):
        cls = getattr(mod, name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            if issubclass(cls, (client.ErrReply, pop3.ProtocolError)):
                raise cls(msg, res.get("code"))
            raise cls(msg)
    if name == "OSError":
        raise OSError(res.get("errno", 0), msg)
    raise AssertionError("micropython client raised %s: %s" % (name, res["msg"]))


if __name__ == "__main__":
    main(sys.argv)
