"""w18-users: what users of the product hit (README / docs as the manual, real peers), each fixed
with a test that fails without the fix."""

import os
import re
import subprocess
import sys

from helpers import ROOT


def _bench_uidstate(*flags):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench_uidstate.py")] + list(flags),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return [(int(m.group(1)), int(m.group(2))) for m in
            re.finditer(r"uid=(\d+):.*flash bytes (\d+)", r.stdout)]


def test_bench_uidstate_defaults_to_the_clients_pattern():
    """tools/bench_uidstate.py without flags measures what a board does (one save per fetched
    message, the board's littlefs geometry: the old --once --board); the two-save pattern it used to
    default to is behind --two-saves (--lfs-defaults: VfsLfs2's geometry). Before, the default was
    the two-save pattern: 14,557 B per message instead of ~8 KB."""
    default = dict(_bench_uidstate())
    two = dict(_bench_uidstate("--two-saves", "--lfs-defaults"))
    assert set(default) == set(two) == {70, 20}
    for w in (70, 20):
        assert default[w] < two[w] * 0.7, (default, two)
