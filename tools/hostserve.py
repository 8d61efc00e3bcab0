"""MicroPython side of `make run`: serve the image's /flash/config.json, ports overridable.

    micropython tools/hostflash.py IMAGE -m hostserve [PORT POP3S_PORT]

(tools/run_host.py runs this.) PORT/POP3S_PORT replace the config's ports for this run only,
so choosing other ports never rewrites or rebuilds the image. Ctrl-C (KeyboardInterrupt) ends
the server quietly, so hostflash.py unmounts the image and micropython exits 0; a port that is
taken ends it with one line and exit status 3 (run_host.py names the port before starting).
"""

import sys

import asyncio

from pocketpost import config, log, server

CONFIG = "/flash/config.json"
EXIT_PORT_IN_USE = 3
_EADDRINUSE = 98  # Linux; MicroPython's errno module may lack it


def main(port=None, pop3s_port=None):
    cfg = config.load(CONFIG)
    if port:
        cfg["server"]["port"] = int(port)
    if pop3s_port:
        cfg["server"]["pop3s_port"] = int(pop3s_port)
    log.set_level(cfg["log"]["level"])
    try:
        asyncio.run(server._forever(cfg))
    except KeyboardInterrupt:
        return
    except OSError as e:
        if e.args and e.args[0] == _EADDRINUSE:
            print("pocketpost: port %d or %d is already in use" % (cfg["server"]["port"], cfg["server"]["pop3s_port"]))
            sys.exit(EXIT_PORT_IN_USE)
        raise
