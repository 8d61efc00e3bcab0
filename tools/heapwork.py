# The single-process workload of tools/bench_heap.py (runs under micropython, loaded as .mpy).
#
#     micropython -X heapsize=N -m heapwork CONFIG GO_FILE [fetch] [smtp] [board | runner]
#
# One asyncio loop holds every service, as the board's Runner (pocketpost/board.py) runs them:
# the POP3 server (POP3 + POP3S) on the config's store and, with "fetch", the fetcher pulling the
# config's first account into the same store; with "smtp" the SMTP receiver too (when
# pocketpost.smtpserver exists). The fetch starts once GO_FILE exists (the benchmark creates it
# when its POP3 sessions are in the middle of their RETRs) and prints "FETCHED <bytes>" when done.
# The process serves until killed. With "runner", a service's failure or a fatal error ends it
# (exit status 3, after "RESET"): board.main's reset, stood in for. With the store on littlefs
# (bench_heap --store lfs) tools/heapflash.py runs first and imports this module: nothing here
# knows of it (any code or name here is in every trial's heap: a few names moved e by 2 KiB).
import sys

RUNNER = "runner" in sys.argv
if RUNNER:  # firmware/boot.py's work, as a board does it before main.py (safe mode off here)
    from pocketpost import safemode

    safemode.check(safemode.board_pin())
    from pocketpost import flashfs

    flashfs.tune_board()

import asyncio

from pocketpost import heapmark

if not RUNNER:
    heapmark.compact_gc()  # as board.main does before it loads the services

# The server is imported before the config is loaded, unlike board.main (load_config, open_store,
# then Runner.serve imports pocketpost.server): the board's order measured 3-4 KiB more for
# a (main and w3-serverheap alike, docs/FIGURES.md "Server heap"); kept so that figures stay
# comparable with the earlier ones. With "board": board.main's order (config, store, then with
# "fetch" the client as boardstart.start imports it at boot (to settle the fetch state), then the services).
from pocketpost import log  # noqa: E402

BOARD = "board" in sys.argv
if not BOARD and not RUNNER:
    from pocketpost import server  # noqa: E402

if not RUNNER:
    try:  # the store's session side (lock, Mailbox), loaded with the server as board.Runner.serve does
        from pocketpost import storesession  # noqa: E402,F401
    except ImportError:  # a tree from before it
        pass


def _load(path):
    # As board.py loads: config.py imported in a function, so no global keeps it once dropped.
    from pocketpost import config

    c = config.load(path)
    st = config.open_store(c)
    if hasattr(heapmark, "forget"):  # as boardstart.open_store does (an older tree: kept)
        heapmark.forget()  # config.py's heap free before the services load
    return c, st


def _exists(p):
    import os

    try:
        os.stat(p)
        return True
    except OSError:
        return False


def _up():
    """READY; with "prof", the live heap once every service listens (a collection the plain
    benchmark does not make, so only then)."""
    if "prof" in sys.argv:
        import gc

        gc.collect()
        print("READY live", gc.mem_alloc())
    else:
        print("READY")


async def _go(go):
    """True once the benchmark creates GO_FILE (its sessions are mid-RETR); False (after printing
    NOGO) if it never does within 60 s."""
    n = 0
    while not _exists(go):
        n += 1
        if n > 6000:  # 60 s: the benchmark never said go
            print("NOGO")
            return False
        await asyncio.sleep(0.01)
    return True


if RUNNER:  # the board's hardware, stood in for by this module's own functions (see _runner)
    _on = False

    def active(v):  # network.WLAN(STA_IF): associates at once
        global _on
        _on = v

    def isconnected():
        return _on

    def status():
        return 1010

    def ifconfig():
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def nop(*a, **kw):  # WLAN.config / disconnect / connect, ntptime.settime (the host's clock is
        pass  # set), machine.WDT.feed

    config = disconnect = connect = settime = feed = nop


def _runner(path, go, flags):
    """With "runner": the board's own code does the work. main.py's board.main(CONFIG, hw), with
    a stand-in Hardware (Wi-Fi that connects, NTP that succeeds, a watchdog) so that every part
    of board.py a board runs is loaded and run (Wi-Fi, clock and watchdog keepers, the
    supervisor, store check, the fetch schedule's settle and fetch_loop). The one change: the
    account's first fetch waits for GO_FILE (the benchmark's signal), then prints FETCHED.

    A board holds C objects for the WLAN, the WDT and the ntptime module's few functions, so the
    stand-ins cost as little heap as this can make them: no class, this module itself is the WLAN,
    the ntptime module and the WDT (its functions above, made only with "runner"), and the
    harness's hooks are set up by the watchdog's stand-in factory, which boardstart.start calls
    first, inside the loop (a Runner subclass with wrapping coroutines held ~1.7 KB more)."""
    from pocketpost import board

    stand = sys.modules[__name__]  # ("__main__" as `micropython -m heapwork`, "heapwork" from ROMFS)

    def reset():  # machine.reset: the process ends, as a board's reset ends everything
        print("RESET")
        raise SystemExit(3)

    def make_wdt(ms):
        r = board.current
        # A service's first failure resets (the board's default waits for the 8th, after about 2
        # minutes of back-off): the trial fails then, as the plain workload's does.
        r.supervisor.reset_after = 1
        if "prof" in flags:  # tools/heapprof.py, as in main() below
            __import__("heapprof").start()
        asyncio.create_task(_ready(r))
        loop = r.fetch_loop

        async def fetch_loop(client, acct, interval_s):  # (an instance attribute: the Runner's own
            if await _go(go):  # fetch_schedule calls it)
                asyncio.create_task(_fetched(r))
                await loop(client, acct, interval_s)

        r.fetch_loop = fetch_loop
        return stand

    async def _fetched(r):
        while not r.fetches:
            await asyncio.sleep(0.01)
        for st in r.fetches.values():
            print("FETCHED", st.get("bytes", st))
        import micropython

        micropython.qstr_info(*(1,) if "all_qstr_names" in flags else ())  # as _fetch below

    async def _ready(r):
        while r.server is None or ("smtp" in flags and r.smtp is None):
            await asyncio.sleep(0.01)
        _up()

    import json

    with open(path) as f:
        cfg = json.load(f)
    sv = cfg.setdefault("services", {})
    sv["fetch_interval_s"] = 86400 if "fetch" in flags else 0  # one fetch in the benchmark's time
    cfg_path = go + ".config.json"  # the board reads its own config.json
    sec_path = go + ".secrets.json"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    with open(sec_path, "w") as f:
        json.dump({"ssid": "bench", "password": "pw", "hostname": "pocketpost"}, f)
    cfg = sv = None
    hw = board.Hardware(wlan=stand, ntptime=stand, make_wdt=make_wdt, reset=reset)
    # main.py's step before board.main: boot.py's modules leave the heap, flashfs.tuned is kept
    from pocketpost.compat import forget

    board.tuned = flashfs.tuned
    g = globals()
    for n in ("safemode", "flashfs"):
        g.pop(n, None)
    forget(("safemode", "flashfs"))
    board.main(cfg_path, hw, sec_path, 0)  # a fatal error resets at once


if RUNNER:
    _runner(sys.argv[1], sys.argv[2], sys.argv[3:])
    raise SystemExit

if hasattr(heapmark, "reserve"):  # as server.main and board.main do (the TLS context) before the config loads
    heapmark.reserve()
cfg, store = _load(sys.argv[1])
go = sys.argv[2]
flags = sys.argv[3:]
log.set_level(cfg["log"]["level"])
if BOARD and "fetch" in flags:
    from pocketpost import client as _client

    _client.settle(cfg["accounts"][0], store)
    _client = None


async def _fetch():
    from pocketpost import client

    if not await _go(go):
        return
    st = await client.fetch_account(cfg["accounts"][0], store)
    print("FETCHED", st["bytes"])
    # The interned names (never freed) once everything has run: their pools double (14 KB at
    # ~1,260 names on the 64-bit host), so c's figure jumps when a change crosses that count.
    import micropython

    micropython.qstr_info(*(1,) if "all_qstr_names" in flags else ())  # with it, each name (a long flag: not interned)


async def main():
    if "prof" in flags:  # tools/heapprof.py: the live heap at each new peak (a measurement aid)
        __import__("heapprof").start()
    if BOARD:
        from pocketpost import server as srvmod
    else:
        srvmod = server
    srv = await srvmod.start(cfg, store)
    # A board's lwIP buffers ~6 KB of a connection's sends; Linux's loopback took each 1 MiB RETR
    # whole (up to 4 MiB), so b's and c's sessions had finished before their clients' hold. The
    # listening sockets' send buffer (accepted ones inherit it; the kernel doubles it to 8 KiB)
    # keeps them in progress as on a board: their files and RETR blocks held at the peak.
    for ls in srv._listeners:
        ls[1].setsockopt(1, 7, 4096)  # SOL_SOCKET, SO_SNDBUF (Linux's numbers: no names interned)
    if "smtp" in flags:  # one login throttle for both, as board.Runner.serve_smtp does
        from pocketpost import smtpserver  # type: ignore

        await smtpserver.start(cfg, store, getattr(srv, "svc", None))
    _up()
    if "all_qstr_names" in flags:  # the names interned once listening (workload a's), as a count
        import micropython

        micropython.qstr_info()
    if "fetch" in flags:
        await _fetch()
    while True:
        await asyncio.sleep(3600)


asyncio.run(main())
