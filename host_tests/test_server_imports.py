"""A server-only board keeps no client code in its heap: loading the config, opening the store and
starting the POP3 server (under micropython, as main.py does) imports none of the client's
modules. Each one loaded from `.mpy` costs heap a board without PSRAM does not have (uidstate
alone ~11 KiB on the 64-bit host; docs/FIGURES.md "Heap")."""

import os
import subprocess

from helpers import FIRMWARE, MICROPYTHON, ROOT
from serverharness import Pop3Server

# transport is not here: its connection class is the servers' too (listener.ServerConn).
CLIENT_ONLY = ("client", "clientconf", "clientauth", "clientrecover", "clientstls", "uidload", "fetch", "pop3client",
               "uidstate", "headers", "oauth2")

SCRIPT = r"""
import sys, asyncio
from pocketpost import config, server
cfg = config.load(sys.argv[1])
st = config.open_store(cfg)

async def main():
    srv = await server.start(cfg, st)
    srv.close()

asyncio.run(main())
print("MODULES", " ".join(sorted(k for k in sys.modules if k.startswith("pocketpost."))))
"""


def test_server_imports_no_client_module(tmp_path):
    srv = Pop3Server(str(tmp_path), {"alice": [b"Subject: x\r\n\r\nx\r\n"]}, users={"alice": "pw"})
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    r = subprocess.run([MICROPYTHON, str(script), srv.config_path], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"))
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("MODULES")]
    assert r.returncode == 0 and line, r.stdout + r.stderr
    loaded = set(m.split(".", 1)[1] for m in line[0].split()[1:])
    assert "server" in loaded and "store" in loaded
    assert not loaded & set(CLIENT_ONLY), sorted(loaded & set(CLIENT_ONLY))
