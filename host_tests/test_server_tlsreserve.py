"""The POP3 server's TLS context is made before the config loads (heapmark.reserve, called by
server.main, board.main and tools/heapwork.py) and taken by the server's start-up
(serverstart.build), which loads the certificate into it: made there, after the config's load had
scattered the heap, its one 3,048 B block (64-bit unix port) found no hole below the heap's top
(bench_heap a). A missing certificate or a bad key is still the start-up's error, as before; a
server without TLS, or a board without the POP3 server (boardstart.start), drops the reservation."""

import os
import subprocess

from helpers import FIRMWARE, MICROPYTHON, ROOT
from serverharness import Pop3Server

SCRIPT = r"""
import sys
from pocketpost import heapmark
heapmark.reserve()
res = heapmark.tls[0]
print("RESERVED", res is not None)
from pocketpost import config, server
cfg = config.load(sys.argv[1])
st = config.open_store(cfg)
mode = sys.argv[2]
sv = cfg["server"]
if mode == "nocert":
    sv["cert"] = sv["key"] = ""
elif mode == "nofile":
    sv["cert"] = sv["cert"] + ".missing"
elif mode == "badkey":
    sv["key"] = sv["cert"]
try:
    srv = server.Server(cfg, st)
    print("CTX", srv.ctx is res, srv.ctx is None)
except Exception as e:
    print("ERR", type(e).__name__)
print("LEFT", heapmark.tls[0] is not None)
res = None
"""


def _run(tmp_path, mode):
    tmp_path.mkdir(exist_ok=True)
    srv = Pop3Server(str(tmp_path), {"alice": [b"Subject: x\r\n\r\nx\r\n"]}, users={"alice": "pw"})
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    r = subprocess.run([MICROPYTHON, str(script), srv.config_path, mode], capture_output=True, text=True,
                       timeout=60, cwd=ROOT, env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.split("\n")


def test_the_server_takes_the_reserved_context(tmp_path):
    out = _run(tmp_path, "tls")
    assert out[:3] == ["RESERVED True", "CTX True False", "LEFT False"], out


def test_without_tls_the_reservation_is_dropped(tmp_path):
    out = _run(tmp_path, "nocert")
    assert out[:3] == ["RESERVED True", "CTX False True", "LEFT False"], out


def test_a_missing_certificate_or_bad_key_is_still_the_start_ups_error(tmp_path):
    # As before the reservation: tls.server_context's reads and load_cert_chain raise (OSError for
    # a missing file, ValueError for a key mbedTLS refuses) out of Server(), which board.main's
    # supervisor and server.main report; the reservation is gone either way.
    assert _run(tmp_path / "a", "nofile")[:3] == ["RESERVED True", "ERR OSError", "LEFT False"]
    assert _run(tmp_path / "b", "badkey")[:3] == ["RESERVED True", "ERR ValueError", "LEFT False"]


def test_cpython_reserves_a_server_context():
    import ssl

    from pocketpost import heapmark

    heapmark.reserve()
    c, heapmark.tls[0] = heapmark.tls[0], None
    assert isinstance(c, ssl.SSLContext)
