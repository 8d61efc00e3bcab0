"""The fetch CLI frees the config checks once the config is loaded (their code is ~15 KB of heap
on the 64-bit unix port, docs/FIGURES.md): under micropython, after `fetch.main`, pocketpost.config
and pocketpost.auth are gone from sys.modules and from the package, and a fetch still loads its
client. (Heap figures themselves are benchmarks: tools/bench_client.py, tools/bench_client_size.py.)"""

import json

from helpers import run_micropython

PROBE = """
import sys
from pocketpost import fetch
print("before", "pocketpost.config" in sys.modules, "pocketpost.client" in sys.modules)
rc = fetch.main(%r)
import pocketpost
print("after", rc, "pocketpost.config" in sys.modules, "pocketpost.auth" in sys.modules,
      hasattr(pocketpost, "config"), "pocketpost.client" in sys.modules)
import gc
from pocketpost import heapmark
print("threshold", gc.threshold() == heapmark.GC_THRESHOLD)
"""


def test_fetch_cli_drops_the_config_checks(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"store": {"root": str(tmp_path / "store"), "quota": 0}, "accounts": []}))
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE % str(cfg))
    r = run_micropython([str(probe)], timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "before False False" in out, out
    assert "after 0 False False False True" in out, out
    assert "threshold True" in out, out  # fetch.main turned on heapmark.compact_gc
