"""Store benchmark on littlefs under the real micropython binary (not a timed test).

    .venv/bin/python tools/bench_store.py          # runs itself under micropython

Prints, on a VfsLfs2 image in RAM (host_tests/dual/flashdev.py counts the operations), mounted with
tools/hostflash.py's littlefs sizes (POCKETPOST_LFS_SIZES="READ,PROG" overrides them):
  - open a mailbox + STAT, and LIST + UIDL over it, at 1,000 and 5,000 messages;
  - flash program/erase operations per delivered 4 KiB message beyond the payload (the payload
    baseline is the same bytes written to a plain file with open/write/close), and the cost of
    indexing those deliveries at the next lock; 15 deliveries into a mailbox of 100, so a
    compaction of the bucket's metadata more or less moves the figure by ~0.5 programs: also
    over three buckets (384 deliveries into an empty mailbox, indexed as delivery does it every
    _MERGE_AFTER), with littlefs's syncs (its metadata commits, plus a barrier before a file's
    close);
  - program/erase operations per deleted message (commit with the session's bitmask).
POCKETPOST_FULL=1 also runs the full power-cut sweep (host_tests/test_store_powercut.py).
"""

import os
import sys

IS_MP = sys.implementation.name == "micropython"
_MERGE_AFTER = 64  # storecore's (a private copy)
_WINDOW = 15  # deliveries of the first figure (below _MERGE_AFTER: the lock indexes them)
_LONG = 3 * 128  # deliveries of the long-run figure: three buckets (storecore.BUCKET messages each)


def _mp_main():
    import time

    import vfs
    from feed import reader
    from flashdev import FlashDev, deliver_run
    from pocketpost import store as store_mod
    from pocketpost.store import Store

    import hostflash  # the littlefs sizes every host mount uses (POCKETPOST_LFS_SIZES overrides)

    lfs = hostflash.lfs_params()
    cache = 4 * max(lfs["readsize"], lfs["progsize"])  # VfsLfs2's cache size: one program each
    print("littlefs readsize %d, progsize %d, lookahead %d (caches of %d B)"
          % (lfs["readsize"], lfs["progsize"], lfs["lookahead"], cache))

    def mount(blocks):
        dev = FlashDev(blocks=blocks)
        vfs.VfsLfs2.mkfs(dev)  # VfsLfs2's defaults, as the ESP32 firmware formats; mounted as boot.py does
        vfs.mount(vfs.VfsLfs2(dev, **lfs), "/bench")
        return dev

    def snap(dev):
        return dev.progs, dev.erases, dev.prog_bytes

    def diff(dev, a):
        b = snap(dev)
        return b[0] - a[0], b[1] - a[1], b[2] - a[2]

    def ms(t):
        return time.ticks_diff(time.ticks_us(), t) / 1000.0

    # --- ops per delivered 4 KiB message ----------------------------------------------------
    dev = mount(320)
    root = "/bench/mail"
    store_mod.reboot()
    st = Store(root, quota=0)
    msg = (b"x" * 62 + b"\r\n") * 64  # 4096 bytes, already CRLF
    for i in range(100):  # a mailbox with some mail in it
        st.deliver_stream("x", reader(msg))
    st.lock("x").release()
    a = snap(dev)
    for i in range(5):
        f = open("/bench/plain%d" % i, "wb")
        f.write(msg)
        f.close()
    base = diff(dev, a)
    N = _WINDOW
    dl = deliver_run(dev, st, N, msg)
    a = snap(dev)
    st.lock("x").release()  # indexes the 15 new messages (one append)
    mg = diff(dev, a)
    bp, be = base[0] / 5.0, base[1] / 5.0
    print("delivery of a 4 KiB message: %.1f programs, %.1f erases, %.0f bytes programmed"
          % (dl[0] / N, dl[1] / N, dl[2] / N))
    print("  plain file of the same 4 KiB (payload baseline): %.1f programs, %.1f erases" % (bp, be))
    print("  => beyond a plain file write: %.1f programs, %.1f erases per delivery"
          % (dl[0] / N - bp, dl[1] / N - be))
    print("  => beyond the raw payload (%d programs of %d B): %.1f programs per delivery"
          % (4096 // cache, cache, dl[0] / N - 4096 // cache))
    print("  indexing them at the next lock: %d programs, %d erases for %d messages (%.1f programs each)"
          % (mg[0], mg[1], N, mg[0] / float(N)))
    print("  => beyond the payload including indexing: %.1f programs, %.1f erases per delivery"
          % ((dl[0] + mg[0]) / float(N) - bp, (dl[1] + mg[1]) / float(N) - be))
    # --- ops per deleted message ------------------------------------------------------------
    for k in (1, 10, 50):
        mb = st.lock("x")
        n = mb.count
        a = snap(dev)
        mask = bytearray((n + 7) // 8)  # the session's bitmask, as pop3server keeps it
        for i in range(k):
            mask[i >> 3] |= 1 << (i & 7)
        mb.commit(mask)
        dd = diff(dev, a)
        print("deleting %d of %d messages: %d programs, %d erases (%.1f programs, %.1f erases per message)"
              % (k, n, dd[0], dd[1], dd[0] / float(k), dd[1] / float(k)))
    vfs.umount("/bench")
    del dev
    import gc

    gc.collect()

    # --- ops per delivered 4 KiB message over whole buckets ----------------------------------
    dev = mount(560)
    store_mod.reboot()
    st = Store(root, quota=0)
    st.create("x")
    s0 = dev.syncs
    b = deliver_run(dev, st, _LONG, msg)  # indexed every _MERGE_AFTER deliveries, as nobody holds the mailbox
    n = float(_LONG)
    print("three buckets (%d deliveries of 4 KiB into an empty mailbox, indexed every %d): per delivery"
          " %.2f programs, %.3f erases, %.0f bytes programmed, %.2f syncs;"
          % (_LONG, _MERGE_AFTER, b[0] / n, b[1] / n, b[2] / n, (dev.syncs - s0) / n))
    print("  => beyond the raw payload (%d programs, 1 erase): %.2f programs, %.3f erases per delivery"
          % (4096 // cache, b[0] / n - 4096 // cache, b[1] / n - 1))
    vfs.umount("/bench")
    del dev
    gc.collect()

    # --- open + STAT, LIST + UIDL at 1,000 and 5,000 messages ----------------------------------
    dev = mount(1024)
    store_mod.reboot()
    st = Store(root, quota=0)
    have = 0
    for n in (1000, 5000):
        t = time.ticks_us()
        while have < n:
            st.deliver_stream("x", reader(b"m%d\r\n" % have))
            have += 1
        fill = ms(t)
        st.lock("x").release()
        store_mod.reboot()
        r0 = dev.ops
        t = time.ticks_us()
        st = Store(root, quota=0)
        mb = st.lock("x")
        count, total = mb.count, mb.total_size
        t_open = ms(t)
        t = time.ticks_us()
        sizes = 0
        for i in range(count):
            sizes += mb.size(i)
        t_list = ms(t)
        t = time.ticks_us()
        for i in range(count):
            mb.uid(i)
        t_uidl = ms(t)
        mb.release()
        assert count == n and sizes == total
        t = time.ticks_us()
        st.lock("x").release()  # the mailbox is loaded: what every later session's lock costs
        t_lock = ms(t)
        check = getattr(st, "check", None)
        t_check = -1.0
        if check is not None:  # the board's boot check (cheap part, repairing): a full recovery
            store_mod.reboot()
            st = Store(root, quota=0)
            t = time.ticks_us()
            check(repair=True)
            t_check = ms(t)
        print("%d messages: open+STAT %.1f ms (first lock after boot), lock %.1f ms (later sessions), "
              "boot check %.1f ms, LIST %.1f ms, UIDL %.1f ms (fill took %.0f ms, %d ops at open)"
              % (n, t_open, t_lock, t_check, t_list, t_uidl, fill, dev.ops - r0))
    vfs.umount("/bench")


def _cpython_main():
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    mp = os.path.join(os.path.dirname(sys.executable), "micropython")
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(os.path.join(root, d) for d in ("firmware", "host_tests/dual", "tools"))
    r = subprocess.run([mp, "-X", "heapsize=64M", os.path.join(here, "bench_store.py")], cwd=root, env=env)
    if r.returncode:
        return r.returncode
    if os.environ.get("POCKETPOST_FULL") == "1":
        r = subprocess.run([mp, "-X", "heapsize=16M", "host_tests/test_store_powercut.py"], cwd=root, env=env)
    return r.returncode


if IS_MP:
    _mp_main()
elif __name__ == "__main__":
    sys.exit(_cpython_main())
