# The stage probe of tools/bench_server_size.py (runs under micropython, loaded as .mpy):
# live heap (gc.collect(); gc.mem_alloc()) after each start-up step of the services, as
# tools/heapwork.py and board.main start them, then on request while peers are connected.
#
#     micropython -m heapstages CONFIG PROBE_DIR [smtp]
#
# Prints "STAGE name bytes" per step and "READY"; then, each time PROBE_DIR/N appears, prints
# "PROBE N bytes" (the driver connects sessions in between) and removes the file.
import gc
import os
import sys

import asyncio

_base = [0]


def stage(name):
    gc.collect()
    print("STAGE", name, gc.mem_alloc() - _base[0])


gc.collect()
_base[0] = gc.mem_alloc()
from pocketpost import heapmark  # noqa: E402

heapmark.compact_gc()
stage("heapmark")
from pocketpost import config, log  # noqa: E402

stage("import-config")
cfg = config.load(sys.argv[1])
log.set_level(cfg["log"]["level"])
stage("config.load")
store = config.open_store(cfg)
config = None
stage("open_store")
if hasattr(heapmark, "forget"):  # as boardstart.open_store does (a tree without it: a no-op stage)
    heapmark.forget()
stage("forget-config")
pdir = sys.argv[2]
flags = sys.argv[3:]


async def main():
    from pocketpost import server

    try:  # the store's session side, loaded with the server as board.Runner.serve does
        from pocketpost import storesession  # noqa: F401
    except ImportError:  # a tree from before it
        pass
    stage("import-server")
    srv = await server.start(cfg, store)
    stage("server.start")
    if "smtp" in flags:
        from pocketpost import smtpserver  # type: ignore

        stage("import-smtpserver")
        await smtpserver.start(cfg, store, getattr(srv, "svc", None))
        stage("smtpserver.start")
    print("MODS", " ".join(sorted(k[11:] for k in sys.modules if k.startswith("pocketpost."))))
    print("READY")
    n = 0
    while True:
        p = pdir + "/" + str(n)
        try:
            os.stat(p)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        await asyncio.sleep(0.05)  # let the sessions settle
        gc.collect()
        print("PROBE", n, gc.mem_alloc() - _base[0])
        os.remove(p)
        n += 1


asyncio.run(main())
