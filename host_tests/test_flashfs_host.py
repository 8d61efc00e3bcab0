"""The host's littlefs geometry is the board's: tools/hostflash.py (every host image: run_host,
the pseudo-board, the benchmarks) and tools/heapflash.py (bench_heap's --store lfs) mount with
the values of firmware/pocketpost/flashfs.py, which they do not import (the pseudo-board must not
load pocketpost from the checkout; bench_heap's trials must not intern flashfs's names)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _values(path, pattern):
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    return {k: int(v) for k, v in re.findall(pattern, text, re.M)}


def test_hostflash_mounts_with_the_boards_geometry():
    board = _values("firmware/pocketpost/flashfs.py", r"^(READ_SIZE|PROG_SIZE|LOOKAHEAD|MTIME) = const\((\d+)\)")
    assert sorted(board) == ["LOOKAHEAD", "MTIME", "PROG_SIZE", "READ_SIZE"]
    for tool in ("tools/hostflash.py", "tools/heapflash.py"):
        assert _values(tool, r"^(READ_SIZE|PROG_SIZE|LOOKAHEAD|MTIME) = (\d+)") == board, tool
