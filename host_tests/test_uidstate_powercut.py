"""Power-cut sweep for the UIDL state journal on littlefs (VfsLfs2 on a simulated flash), under
the real micropython binary: the dual test (test_client_uidstate) cuts at every file-level write;
this one cuts at every program/erase operation of the flash, in the three modes of
host_tests/dual/flashdev.py (raise, drop, torn), the client's workload (pending saved, store
commit, entry saved, restamp, drops, compactions) running on the same flash as its "store" (a
marker file per committed message, written to a temp name and renamed, as the store delivers).
After each cut: remount the image as it was when power died, reload, reconcile, and check that
the state and the store agree (test_client_uidstate._pc_check).

Run by pytest (test_state_power_cuts runs this file under micropython), or directly:
    MICROPYPATH=firmware:host_tests/dual .venv/bin/micropython -X heapsize=16M host_tests/test_uidstate_powercut.py
"""

import sys

IS_MP = sys.implementation.name == "micropython"
MOUNT = "/ucut"


def run_one(base, cut_at, mode):
    import os

    from flashdev import FlashDev, PowerCut, mount_fresh, umount, unplug
    from pocketpost import compat, uidcompact, uidstate
    from test_client_uidstate import _pc_check, _pc_workload

    dev = FlashDev(data=base)
    dev.mode = mode
    mount_fresh(dev=dev, at=MOUNT)
    d = MOUNT + "/state"
    store = MOUNT + "/store"
    os.mkdir(store)
    start = dev.ops
    dev.cut_at = start + cut_at if cut_at else 0
    acked = {"add": [], "drop": [], "maybe": [], "stamp": False}

    def commit(local):
        f = open(store + "/tmp", "wb")
        f.write(local.encode())
        f.close()
        compat.rename(store + "/tmp", store + "/" + local)

    try:
        _pc_workload(d, commit, acked, lambda: not dev.dead)
    except Exception as e:  # noqa: BLE001 - only allowed once the power is gone
        if not dev.dead or not isinstance(e, (PowerCut, OSError, uidstate.StateError)):
            raise
    unplug(dev, MOUNT)
    ops = dev.ops - start
    dev2 = FlashDev(data=dev.image())
    mount_fresh(dev=dev2, at=MOUNT)
    try:
        uidcompact.remove_tmp(d, "pc")

        def in_store(local):
            return compat.exists(store + "/" + local)

        _pc_check(d, in_store, acked, (mode, cut_at))
    finally:
        umount(MOUNT)
    return ops


def main():
    import time

    from flashdev import blank_image, cut_at_every_op

    base = blank_image(32)
    t0 = time.ticks_ms()
    total = run_one(base, 0, "raise")
    covered = cut_at_every_op(total, lambda n, mode: run_one(base, n, mode))
    print("STATE POWERCUT OK: %d cut points (every op of %d) in %d ms"
          % (covered, total, time.ticks_diff(time.ticks_ms(), t0)))


if IS_MP and __name__ == "__main__":
    from flashdev import shard_report

    main()
    shard_report()


def test_state_power_cuts():
    from helpers import run_sweep

    run_sweep("host_tests/test_uidstate_powercut.py", "STATE POWERCUT OK", timeout=900)
