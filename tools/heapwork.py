# The single-process workload of tools/bench_heap.py (runs under micropython, loaded as .mpy).
#
#     micropython -X heapsize=N -m heapwork CONFIG GO_FILE [fetch] [smtp]
#
# One asyncio loop holds every service, as the board's Runner (pocketpost/board.py) runs them:
# the POP3 server (POP3 + POP3S) on the config's store and, with "fetch", the fetcher pulling the
# config's first account into the same store; with "smtp" the SMTP receiver too (when
# pocketpost.smtpserver exists). The fetch starts once GO_FILE exists (the benchmark creates it
# when its POP3 sessions are in the middle of their RETRs) and prints "FETCHED <bytes>" when done.
# The process serves until killed.
import sys

import asyncio

from pocketpost import heapmark

heapmark.compact_gc()  # as board.main does before it loads the services

# The server is imported before the config is loaded, unlike board.main (load_config, open_store,
# then Runner.serve imports pocketpost.server): the board's order measured 3-4 KiB more for
# a (main and w3-serverheap alike, docs/FIGURES.md "Server heap"); kept so that figures stay
# comparable with the earlier ones. With "board": board.main's order (config, store, then with
# "fetch" the client as board.Runner.settle_fetches imports it at boot, then the services).
from pocketpost import log  # noqa: E402

BOARD = "board" in sys.argv
if not BOARD:
    from pocketpost import server  # noqa: E402

try:  # the store's session side (lock, Mailbox), loaded with the server as board.Runner.serve does
    from pocketpost import storesession  # noqa: E402,F401
except ImportError:  # a tree from before it
    pass


def _load(path):
    # As board.py loads: config.py imported in a function, so no global keeps it once dropped.
    from pocketpost import config

    c = config.load(path)
    st = config.open_store(c)
    if hasattr(heapmark, "forget"):  # as board.open_store does (an older tree: kept)
        heapmark.forget()  # config.py's heap free before the services load
    return c, st


cfg, store = _load(sys.argv[1])
go = sys.argv[2]
flags = sys.argv[3:]
log.set_level(cfg["log"]["level"])
if BOARD and "fetch" in flags:
    from pocketpost import client as _client

    _client.settle(cfg["accounts"][0], store)
    _client = None


def _exists(p):
    import os

    try:
        os.stat(p)
        return True
    except OSError:
        return False


async def _fetch():
    from pocketpost import client

    n = 0
    while not _exists(go):
        n += 1
        if n > 6000:  # 60 s: the benchmark never said go
            print("NOGO")
            return
        await asyncio.sleep(0.01)
    st = await client.fetch_account(cfg["accounts"][0], store)
    print("FETCHED", st["bytes"])
    # The interned names (never freed) once everything has run: their pools double (14 KB at
    # ~1,260 names on the 64-bit host), so c's figure jumps when a change crosses that count.
    import micropython

    micropython.qstr_info()


async def main():
    if "prof" in flags:  # tools/heapprof.py: the live heap at each new peak (a measurement aid)
        __import__("heapprof").start()
    if BOARD:
        from pocketpost import server as srvmod
    else:
        srvmod = server
    srv = await srvmod.start(cfg, store)
    if "smtp" in flags:  # one login throttle for both, as board.Runner.serve_smtp does
        from pocketpost import smtpserver  # type: ignore

        await smtpserver.start(cfg, store, getattr(srv, "svc", None))
    print("READY")
    if "fetch" in flags:
        await _fetch()
    while True:
        await asyncio.sleep(3600)


asyncio.run(main())
