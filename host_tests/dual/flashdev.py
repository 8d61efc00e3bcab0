"""A simulated flash block device for VfsLfs2, and a fresh store root for the dual tests.

FlashDev counts program and erase operations (and littlefs's syncs) and can cut the power after
the N-th operation, in three modes:
  'raise' - the N-th operation does not happen and raises PowerCut; so does every later one;
  'drop'  - the N-th and every later write or erase is silently ignored (reads still work), as if
            the chip had lost power while the CPU carried on;
  'torn'  - the N-th operation half happens (the first half of a program, or of an erase) and
            raises PowerCut; every later one raises too.
After a cut the test unplugs the device (unplug(); cut_power() runs a workload and does both),
takes `dev.image()` (the flash as it was when power died), builds a new device from it and
remounts: that is the reboot.

deliver_run() counts what deliveries into a store cost the flash.
fresh_root() gives the dual tests somewhere to put a store: a littlefs image in RAM mounted at a
fresh mount point under MicroPython, a new temp directory under CPython.
"""

import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


MODES = ("raise", "drop", "torn")  # how the power goes (above)


class PowerCut(Exception):
    pass


class FlashDev:
    def __init__(self, blocks=64, block_size=4096, data=None):
        self.bs = block_size
        self.n = blocks
        if data is not None:
            self.data = bytearray(data)
            self.n = len(data) // block_size
        else:  # erased flash is all ones; fill block by block (no second full-size temporary)
            self.data = bytearray(blocks * block_size)
            ones = b"\xff" * block_size
            for b in range(blocks):
                self.data[b * block_size : (b + 1) * block_size] = ones
        self.progs = 0  # program operations (writeblocks calls)
        self.prog_bytes = 0
        self.erases = 0
        self.ops = 0  # programs + erases
        self.syncs = 0  # littlefs's syncs (ioctl 3: after each metadata commit; no flash operation)
        self.cut_at = 0  # cut the power at this op (1-based); 0: never
        self.mode = "raise"
        self.dead = False
        self.detached = False  # set after a cut: GC finalisers of abandoned files do nothing

    def image(self):
        return bytes(self.data)

    def readblocks(self, block, buf, off=0):
        if self.detached:
            return  # finalisers of abandoned files run with the heap locked: no allocation
        a = block * self.bs + off
        buf[:] = self.data[a : a + len(buf)]

    def _begin_op(self):
        """True if the operation may go ahead; False if it is to be dropped. Raises on a cut."""
        if self.detached:
            return False  # no raise: finalisers run with the heap locked
        if self.dead:
            if self.mode == "drop":
                return False
            raise PowerCut("power is off")
        self.ops += 1
        if self.cut_at and self.ops == self.cut_at:
            self.dead = True
            if self.mode == "drop":
                return False
            if self.mode == "raise":
                raise PowerCut("power cut at op %d" % self.ops)
            return None  # torn: caller half-does it, then raises
        return True

    def writeblocks(self, block, buf, off=None):
        if off is None:  # simple interface: erase + program whole blocks
            for i in range(len(buf) // self.bs):
                self.ioctl(6, block + i)
            off = 0
        go = self._begin_op()
        if go is False:
            return 0
        a = block * self.bs + off
        n = len(buf)
        if go is None:
            h = n // 2
            for i in range(h):  # NOR flash programs by clearing bits
                self.data[a + i] &= buf[i]
            raise PowerCut("torn program at op %d" % self.ops)
        self.progs += 1
        self.prog_bytes += n
        self.data[a : a + n] = buf  # littlefs only programs erased areas
        return 0

    def ioctl(self, op, arg):
        if op == 3:
            self.syncs += 1
            return 0
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        if op == 6:
            go = self._begin_op()
            if go is False:
                return 0
            a = arg * self.bs
            if go is None:
                h = self.bs // 2
                self.data[a : a + h] = b"\xff" * h
                raise PowerCut("torn erase at op %d" % self.ops)
            self.erases += 1
            self.data[a : a + self.bs] = b"\xff" * self.bs
            return 0
        return 0

    def counts(self):
        return self.progs, self.erases, self.prog_bytes


_seq = [0]


def mount_fresh(blocks=64, block_size=4096, at=None, dev=None):
    """Format a FlashDev (or use `dev` as is), mount VfsLfs2 on it; returns (dev, mount point).
    As a board has its flash: formatted with VfsLfs2's defaults (the ESP32 firmware's first boot),
    mounted with pocketpost.flashfs's geometry (boot.py's remount)."""
    import vfs

    from pocketpost import flashfs

    if dev is None:
        dev = FlashDev(blocks, block_size)
        vfs.VfsLfs2.mkfs(dev)
    if at is None:
        _seq[0] += 1
        at = "/ppflash%d" % _seq[0]
    vfs.mount(vfs.VfsLfs2(dev, **flashfs.params()), at)
    return dev, at


def umount(at):
    import vfs

    try:
        vfs.umount(at)
    except OSError:
        pass
    import gc

    gc.collect()


def blank_image(blocks):
    """A freshly formatted littlefs of `blocks` blocks, as an image to start each run from."""
    import vfs

    dev = FlashDev(blocks=blocks)
    vfs.VfsLfs2.mkfs(dev)
    return dev.image()


# Sharding (helpers.run_sweep): a sweep's runs split between processes run side by side on the
# host's cores. With POCKETPOST_SHARD="i/n" a process takes the runs whose place in the sweep's
# order is i modulo n; every shard walks the same order (each run starts from the same image, so
# which runs a process skips changes nothing in the others), so the n shards together make every
# run exactly once. shard_report() prints the counts that run_sweep checks add up.
_shard = []  # [i, n, runs seen, runs taken] once read
_SHARD_MAX = 16


def _shard_state():
    if not _shard:
        import os

        spec = os.getenv("POCKETPOST_SHARD") or "0/1"
        i, n = [int(x) for x in spec.split("/")]
        if not (0 < n <= _SHARD_MAX and 0 <= i < n):
            raise ValueError("POCKETPOST_SHARD: %r" % spec)
        _shard.extend([i, n, 0, 0])
    return _shard


def mine():
    """True for the next run of the sweep if it is this process's (always when unsharded)."""
    sh = _shard_state()
    k = sh[2]
    sh[2] += 1
    if k % sh[1] == sh[0]:
        sh[3] += 1
        return True
    return False


def shard_report():
    sh = _shard_state()
    print("SHARD %d/%d: %d of %d runs" % (sh[0], sh[1], sh[3], sh[2]))


def cut_at_every_op(total, run):
    """run(n, mode) for each op n of a workload of `total` program/erase ops, in every mode
    (this shard's share of them: mine()); returns how many runs that was."""
    ran = 0
    for mode in MODES:
        for n in range(1, total + 1):
            if mine():
                run(n, mode)
                ran += 1
    return ran


def cut_power(base, cut_at, mode, at, work, also=()):
    """`work(dev)` run on a new device holding the image `base`, mounted at `at`, with the power
    cut at its `cut_at`-th flash operation (0: never) in `mode`. An exception from `work` is
    allowed only once the power is gone, and only of a kind a dead flash causes there (PowerCut,
    OSError, the store's StoreError and StoreFull, or one of the classes in `also`); any other is
    raised. Returns the device, unplugged: mount a FlashDev of its image to reboot."""
    dev = FlashDev(data=base)
    dev.cut_at = cut_at
    dev.mode = mode
    mount_fresh(dev=dev, at=at)
    try:
        work(dev)
    except Exception as e:  # noqa: BLE001 - only allowed once the power is gone
        if not dev.dead:
            raise
        if not isinstance(e, (PowerCut, OSError) + also) and type(e).__name__ not in ("StoreError", "StoreFull"):
            raise
    unplug(dev, at)
    return dev


def unplug(dev, at):
    """The power is gone: `dev` stops serving the GC finalisers of abandoned files (they run with
    the heap locked), the filesystem at `at` is dropped, and the garbage collected."""
    import gc

    dev.detached = True
    try:
        umount(at)
    except Exception:  # noqa: BLE001 - the dead device refuses the unmount's writes
        pass
    gc.collect()


def rebooted(dev):
    """A new device on the image an unplugged `dev` left, without a copy: an unplugged device never
    reads or writes its bytes again. (A copy put a third image beside `base` and the cut one in the
    heap: one 192 KiB block too many for micropython's default heap once a module's earlier tests
    left it fragmented.)"""
    if not dev.detached:
        raise ValueError("rebooted: the device is still plugged in")
    new = FlashDev(blocks=0, block_size=dev.bs)
    new.data, new.n = dev.data, dev.n
    return new


def cut_every_op(base, at, step, check, reset, limit):
    """The power cut at each flash operation of `step()` in turn, in every mode: `base` (an
    image) mounted at `at`, `step()` run until the cut; then the image as the cut left it,
    mounted again, and `check()` run on it (`reset()`, the store's reboot, before each run and
    after the check). Ends once `step()` runs to its end before the cut; returns how many ops
    that took (below `limit`). An exception from `step()` is allowed only once the power is gone."""
    import gc

    n = 1
    while True:
        for mode in MODES:
            dev = None
            gc.collect()

            def work(dev):
                reset()
                step()

            dev = cut_power(base, n, mode, at, work)
            mount_fresh(dev=rebooted(dev), at=at)
            reset()
            try:
                check()
            finally:
                reset()
                umount(at)
        if not dev.dead:  # step() ran to its end before op n: every op was cut
            return n
        n += 1
        assert n < limit


def deliver_run(dev, st, n, msg):
    """n deliveries of msg into mailbox "x" of the store st, each written in 512-byte pieces and
    committed, merged as delivery merges them (nobody holds the mailbox); returns the flash
    (programs, erases, bytes programmed) of dev over them. tools/bench_store.py's figures per
    delivered message and host_tests/test_store_flash.py's budget."""
    a = dev.counts()
    for i in range(n):
        d = st.begin("x")
        for k in range(0, len(msg), 512):
            d.write(msg[k : k + 512])
        d.commit()
    b = dev.counts()
    return b[0] - a[0], b[1] - a[1], b[2] - a[2]


def fresh_root(blocks=96):
    """A new empty directory for a store: littlefs in RAM under MicroPython, a temp dir under
    CPython. Returns (root, cleanup)."""
    if IS_MICROPYTHON:
        dev, at = mount_fresh(blocks)
        return at + "/mail", lambda: umount(at)
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="pp-store-")
    return d + "/mail", lambda: shutil.rmtree(d, ignore_errors=True)


def in_fresh_root(fn):
    """fn(root) run on a fresh_root(), cleaned up afterwards."""
    root, cleanup = fresh_root()
    try:
        fn(root)
    finally:
        cleanup()
