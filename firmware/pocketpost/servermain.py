"""The host's command-line runs (`micropython -m pocketpost.server config.json`, `-m
pocketpost.smtpserver config.json`) and server.main: the config loaded, the store opened, the
services served until stopped.

Here, not in server.py and smtpserver.py: board.main and tools/heapwork.py start the services
themselves (server.start, smtpserver.start), and every function of a module stays in the heap as
long as the module does, so a board kept this code (and its usage strings) resident for nothing.
server.main and each module's __main__ load it; what it runs keeps it to the end.
"""

import asyncio

from pocketpost import heapmark, log


def open_store(cfg):
    """config.open_store, then config.py dropped (as boardstart.open_store does)."""
    from pocketpost import config as config_mod

    st = config_mod.open_store(cfg)
    heapmark.forget()  # config.py's last start-up use: its heap is free before the services load
    return st


async def pop3(cfg, config_path=None, smtp=False):
    """The POP3 server, with smtp the SMTP receiver too (one login service: one failed-login
    throttle for both), until cancelled."""
    from pocketpost import server

    store = open_store(cfg)
    pop = await server.start(cfg, store, config_path)  # config_path: where rehashed passwords are saved
    srv = None
    if smtp:
        from pocketpost import smtpserver

        srv = await smtpserver.start(cfg, store, pop.svc)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        if srv:
            srv.close()
        pop.close()


def main(config_path, fn=None, smtp=False):
    """Serve until stopped: `fn(cfg, config_path)`, or pop3 (with smtp, the SMTP receiver too)."""
    from pocketpost import config as config_mod

    heapmark.compact_gc()  # as board.main does: collect often, before large blocks are needed
    heapmark.reserve()  # the TLS context, made before the config scatters the heap
    cfg = config_mod.load(config_path)
    config_mod = None  # start() drops the module: no reference may keep it
    log.set_level(cfg["log"]["level"])
    asyncio.run(fn(cfg, config_path) if fn else pop3(cfg, config_path, smtp))


def run(argv, smtp=False):
    """server.py's __main__ (the POP3 server) or, smtp, smtpserver.py's (POP3 and SMTP):
    main(argv[1]), or without it the usage and exit status 2."""
    if len(argv) < 2:
        print("usage: micropython -m pocketpost.%s config.json" % ("smtpserver" if smtp else "server"))
        raise SystemExit(2)
    main(argv[1], None, smtp)
