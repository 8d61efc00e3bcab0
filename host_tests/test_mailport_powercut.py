"""Power cuts during an import and a restore (the board side, pocketpost.mailport), under the real
micropython binary on littlefs over a simulated flash (host_tests/dual/flashdev.py) that cuts
the power at the N-th program/erase operation, in three modes (raise, drop, torn).

Run by pytest (test_import_and_restore_power_cuts runs this file under micropython), or directly:
    MICROPYPATH=firmware:host_tests/dual .venv/bin/micropython -X heapsize=16M host_tests/test_mailport_powercut.py
For each cut point: the import (or restore) runs, driven as the host tool drives it (journal or
UID listing first, then only the messages not there), until the power goes; the flash as it was
then is remounted and the same import (restore) is run again to the end. Every message must
then be there exactly once, in source order, byte for byte (restore: under its UID), and the
import journal must list each message once.
"""

import sys

from portcmd import msg_cmd, serve, sha1hex

IS_MP = sys.implementation.name == "micropython"
MOUNT = "/pcut"
ROOT = MOUNT + "/mail"


def _msgs():
    out = []
    for i in range(5):
        body = b"".join(b"line %d of message %d .......................................\r\n" % (k, i)
                        for k in range(1 + (i % 3) * 90))  # 1, 2 and 3 blocks of 4 KiB
        out.append(b"Subject: %d\r\n\r\n" % i + body)
    return out


MSGS = _msgs()
UIDS = ["0badc0de.%d" % s for s in (3, 130, 131, 400, 401)]  # gaps of whole buckets


def _listing(reply):
    head, _, rest = reply.partition(b"\n")
    assert head.startswith(b"K "), reply
    return rest[: int(head[2:])]


def run_import(restore):
    """One run of the host tool's logic: what is there already, then the rest, one by one."""
    from pocketpost.store import Store

    st = Store(ROOT, quota=0, reserve=0)
    if restore:
        have = set(ln.split(b" ")[0].decode() for ln in _listing(serve(st, b"U box\n")).split(b"\n") if ln)
    else:
        have = set()
        for ln in _listing(serve(st, b"J box\n")).split(b"\n"):
            if ln[:1] == b"+":
                have.add(ln[1:].split(b" ")[0].decode())
            elif ln[:1] == b"-":
                have.discard(ln[1:].decode())
    for m, uid in zip(MSGS, UIDS):
        key = uid if restore else sha1hex(m)
        if key in have:
            continue
        r = serve(st, msg_cmd("box", 1000, m, uid if restore else "-"))
        assert r.startswith(b"A "), r


def check(restore, label):
    from pocketpost.store import Store

    st = Store(ROOT, quota=0, reserve=0)
    mb = st.lock("box")
    got = []
    for i in range(mb.count):
        f = mb.open(i)
        got.append((mb.uid(i), f.read()))
        f.close()
    mb.release()
    assert [m for _, m in got] == MSGS, (label, "messages", len(got))
    if restore:
        assert [u for u, _ in got] == UIDS, (label, "uids")
    else:
        keys = {}
        for ln in _listing(serve(st, b"J box\n")).split(b"\n"):
            if ln[:1] == b"+":
                k = ln[1:].split(b" ")[0]
                keys[k] = keys.get(k, 0) + 1
            elif ln[:1] == b"-":
                keys[ln[1:]] -= 1
        assert sorted(k for k, n in keys.items() if n) == sorted(sha1hex(m).encode() for m in MSGS), (label, "journal")
        assert max(keys.values()) == 1, (label, "journal twice")


def run_one(base, cut_at, mode, restore):
    from flashdev import FlashDev, cut_power, mount_fresh, umount
    from pocketpost import store as store_mod

    store_mod.reboot()
    dev = cut_power(base, cut_at, mode, MOUNT, lambda dev: run_import(restore), also=(AssertionError,))
    ops = dev.ops
    store_mod.reboot()  # the reboot: RAM state (locks, caches) is gone
    mount_fresh(dev=FlashDev(data=dev.image()), at=MOUNT)
    try:
        run_import(restore)  # the rerun, to the end
        check(restore, (mode, cut_at, "restore" if restore else "import"))
    finally:
        umount(MOUNT)
        store_mod.reboot()
    return ops


def main():
    import time

    from flashdev import blank_image, cut_at_every_op

    base = blank_image(48)
    t0 = time.ticks_ms()
    covered = 0
    for restore in (False, True):
        total = run_one(base, 0, "raise", restore)
        covered += cut_at_every_op(total, lambda n, mode: run_one(base, n, mode, restore))
        print("%s: %d program/erase ops, cut at every one in 3 modes" % ("restore" if restore else "import", total))
    print("MAILPORT POWERCUT OK: %d cut points in %d ms" % (covered, time.ticks_diff(time.ticks_ms(), t0)))


if IS_MP and __name__ == "__main__":
    from flashdev import shard_report

    main()
    shard_report()


def test_import_and_restore_power_cuts():
    from helpers import run_sweep

    run_sweep("host_tests/test_mailport_powercut.py", "MAILPORT POWERCUT OK", timeout=1200)
