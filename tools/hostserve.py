"""MicroPython side of `make run`: serve the image's /flash/config.json (POP3, and SMTP when the
config names smtp.domains).

    micropython tools/hostflash.py IMAGE -m hostserve

(tools/run_host.py runs this.) Ctrl-C (KeyboardInterrupt) ends the server quietly, so
hostflash.py unmounts the image and micropython exits 0; a port that is taken ends it with one
line and exit status 3 (run_host.py checks and names the port before starting, so this is the
rare race where another program took it in between).
"""

import os
import sys

import asyncio

from pocketpost import config, log, servermain

CONFIG = "/flash/config.json"
EXIT_PORT_IN_USE = 3
_EADDRINUSE = 98  # Linux; MicroPython's errno module may lack it


def main():
    os.chdir("/flash")  # config.json's folder, as a board runs in its flash root: relative paths stay in the image
    cfg = config.load(CONFIG)
    log.set_level(cfg["log"]["level"])
    try:
        asyncio.run(servermain.pop3(cfg, None, True))  # the POP3 server, and the SMTP receiver if it has domains
    except KeyboardInterrupt:
        return
    except OSError as e:
        if e.args and e.args[0] == _EADDRINUSE:
            print("pocketpost: one of ports %d, %d, %d, %d is already in use" % (
                cfg["server"]["port"], cfg["server"]["pop3s_port"], cfg["smtp"]["port"], cfg["smtp"]["smtps_port"]))
            sys.exit(EXIT_PORT_IN_USE)
        raise
