"""board.py's heap while the services run (issue 12: board.main's gap over the bare workload,
bench_heap --runner c). Everything in board.py is in the heap for the board's whole life; what
only the start-up needs is boardstart.py (dropped once the services run), what only the end
needs (Ctrl-C shutdown, the endings' messages) is boardend.py (loaded once the loop stopped)."""

import os
import re
import subprocess
import sys

import pytest

from helpers import MICROPYTHON, build_mpy

# board.mpy's heap on the 64-bit unix port, its interned names' pools and text left out (they
# depend on how many names came before): 11,388 B when boardend.py was split off (12,878 before;
# docs/FIGURES.md "Heap"). A margin of ~500 B: a new function in board.py is ~100-500 B.
_BOARD_HEAP_MAX = 11900

PROBE = r"""
import gc, sys, micropython
import asyncio
from pocketpost import compat, log
gc.collect()
a0 = gc.mem_alloc()
micropython.qstr_info()
from pocketpost import board
gc.collect()
a1 = gc.mem_alloc()
micropython.qstr_info()
print("HEAP", a1 - a0)
print("LOADED", " ".join(sorted(m for m in sys.modules if m.startswith("pocketpost."))))
"""


def test_board_module_heap_stays_within_its_budget(tmp_path):
    mpy = build_mpy(str(tmp_path / "mpy"))
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    r = subprocess.run([MICROPYTHON, str(probe)], capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                       env=dict(os.environ, MICROPYPATH=mpy + ":.frozen"))
    assert r.returncode == 0, r.stdout + r.stderr
    pools = [int(n) for n in re.findall(r"n_total_bytes=(\d+)", r.stdout)]
    heap = int(re.search(r"^HEAP (\d+)$", r.stdout, re.M).group(1))
    code = heap - (pools[1] - pools[0])
    loaded = re.search(r"^LOADED (.*)$", r.stdout, re.M).group(1).split()
    # The start-up's and the end's modules are not board.py's imports.
    assert "pocketpost.boardstart" not in loaded and "pocketpost.boardend" not in loaded, loaded
    assert code <= _BOARD_HEAP_MAX, "board.py holds %d B of heap (budget %d): %s" % (code, _BOARD_HEAP_MAX, r.stdout)


class _NoHeapFor:
    """A meta-path finder: importing `name` raises MemoryError, as a full heap does."""

    def __init__(self, name):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            raise MemoryError("no heap for " + fullname)
        return None


def test_ctrl_c_with_no_heap_for_boardend_still_forgets_the_store_state(tmp_path):
    # Ctrl-C may land at the heap's peak, where boardend.py (the shutdown) cannot be loaded: the
    # store's RAM state (its mailbox locks) is forgotten all the same, as a reset would, and the
    # KeyboardInterrupt still reaches the REPL.
    from pocketpost import board, storecore
    from pocketpost.store import Store

    root = str(tmp_path / "mail")
    storecore.reboot()
    st = Store(root, quota=0)
    st.create("alice")
    cfgp = tmp_path / "config.json"
    cfgp.write_text('{"store": {"root": "%s"}, "services": {"server": false}}' % root)
    base = board.Runner

    class Run(base):
        async def run(self, secrets_path=None):
            st.lock("alice")  # a session's lock, held when Ctrl-C lands
            raise KeyboardInterrupt

    finder = _NoHeapFor("pocketpost.boardend")
    saved = sys.modules.pop("pocketpost.boardend", None)
    sys.meta_path.insert(0, finder)
    board.Runner = Run
    try:
        with pytest.raises(KeyboardInterrupt):
            board.main(str(cfgp), board.Hardware())
        assert not storecore._LOCKS, storecore._LOCKS
        st2 = Store(root, quota=0)
        st2.lock("alice").release()  # not MailboxLocked
    finally:
        board.Runner = base
        sys.meta_path.remove(finder)
        if saved is not None:
            sys.modules["pocketpost.boardend"] = saved
        storecore.reboot()
