"""The interned-name probe shared by test_pop3_names.py and test_smtp_names.py: a server run
from .mpy (as tools/bench_heap.py and tools/bench_smtp.py run it) with a task that prints
micropython.qstr_info each time the test creates the file argv[2] + a number. (Names the probe
adds, about 4 a board does not have: its file's and its arguments', _names.)"""

import re
import time

# `imports` and `forever` name the service the probe runs, e.g. "server, servermain" and
# "servermain.pop3(cfg, path, True)" (the call, of the probe's cfg and config path, it runs).
PROBE = """
import sys, asyncio, micropython, os
from pocketpost import %s

async def _names(cfg, path):
    asyncio.create_task(%s)
    n = 0
    while True:
        await asyncio.sleep(0.02)
        try:
            os.stat(sys.argv[2] + str(n))
        except OSError:
            continue
        print("NAMES", n)
        micropython.qstr_info(*sys.argv[3:4] and (1,))
        print("END", n)
        n += 1

server.main(sys.argv[1], _names)
"""


def names_after(tmp_path, srv, imports, forever, sessions, listing=False):
    """Start `srv` (a harness server, not started) on the probe, code from .mpy; after each of
    `sessions` (callables given srv) return the interned names: a list of (count, [names] when
    `listing`); the first entry is before any session."""
    from helpers import build_mpy

    mpy = build_mpy(str(tmp_path / "mpy"))
    probe = tmp_path / "namesprobe.py"
    probe.write_text(PROBE % (imports, forever))
    go = str(tmp_path / "go")
    out = []
    try:
        srv.start(args=[str(probe), srv.config_path, go] + (["1"] if listing else []), micropypath=mpy)
        for i, fn in enumerate([lambda s: None] + list(sessions)):
            fn(srv)
            time.sleep(0.2)  # the session's handler has run its finally (cold code dropped)
            open(go + str(i), "w").close()
            deadline = time.time() + 20
            while time.time() < deadline:
                m = re.search(r"NAMES %d\n(.*?)END %d\n" % (i, i), srv.log(), re.S)
                if m:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("no names listed: " + srv.log()[-3000:])
            text = m.group(1)
            out.append((int(re.search(r"n_qstr=(\d+)", text).group(1)), re.findall(r"^Q\((.*)\)$", text, re.M)))
    finally:
        srv.stop()
    return out
