"""MicroPython side of `make run`: serve the image's /flash/config.json.

    micropython tools/hostflash.py IMAGE -m hostserve

(tools/run_host.py runs this.) Ctrl-C (KeyboardInterrupt) ends the server quietly, so
hostflash.py unmounts the image and micropython exits 0; a port that is taken ends it with one
line and exit status 3 (run_host.py checks and names the port before starting, so this is the
rare race where another program took it in between).
"""

import sys

import asyncio

from pocketpost import config, log, server

CONFIG = "/flash/config.json"
EXIT_PORT_IN_USE = 3
_EADDRINUSE = 98  # Linux; MicroPython's errno module may lack it


def main():
    cfg = config.load(CONFIG)
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
