"""The host's littlefs geometry is the board's: tools/hostflash.py (every host image: run_host,
the pseudo-board, the benchmarks) mounts with the values of firmware/pocketpost/flashfs.py, which
it cannot import (the pseudo-board must not load pocketpost from the checkout)."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _values(path, pattern):
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    return {k: int(v) for k, v in re.findall(pattern, text, re.M)}


def test_hostflash_mounts_with_the_boards_geometry():
    board = _values("firmware/pocketpost/flashfs.py", r"^(READ_SIZE|PROG_SIZE|LOOKAHEAD|MTIME) = const\((\d+)\)")
    host = _values("tools/hostflash.py", r"^(READ_SIZE|PROG_SIZE|LOOKAHEAD|MTIME) = (\d+)")
    assert sorted(board) == ["LOOKAHEAD", "MTIME", "PROG_SIZE", "READ_SIZE"]
    assert host == board
