"""pocketpost.flashfs: the littlefs geometry boot.py remounts the flash with (MicroPython only:
VfsLfs2 on host_tests/dual/flashdev.py's simulated flash; CPython has no VfsLfs2).

Boards in the field were formatted and written with VfsLfs2's defaults (read/prog size 32); the
geometry must read all of it, write more, and leave an image the defaults still read: littlefs
keeps no read or program size in its superblock, and these tests check that it needs none.
"""

import sys

from dualtest import skip
from flashdev import FlashDev

IS_MP = sys.implementation.name == "micropython"
DEFAULTS = {}  # VfsLfs2's own: readsize 32, progsize 32, lookahead 32


class NorDev(FlashDev):
    """FlashDev that counts programs over bytes already programmed to another value: NOR flash
    can only clear bits, so such a program would corrupt a real chip (FlashDev overwrites)."""

    def __init__(self, *a, **k):
        FlashDev.__init__(self, *a, **k)
        self.overwrites = 0

    def writeblocks(self, block, buf, off=None):
        a = block * self.bs + (off or 0)
        d = self.data
        for i in range(len(buf)):
            if d[a + i] != 0xFF and d[a + i] != buf[i]:
                self.overwrites += 1
                break
        return FlashDev.writeblocks(self, block, buf, off)


def _content(i):
    return (b"file %d " % i) * (i * 97 % 1200 + 1)  # 7 B to 12 KB: inline, one block, several


def _write(at, lo, hi):
    import os

    for i in range(lo, hi):
        d = at + "/d%d" % (i % 3)
        try:
            os.mkdir(d)
        except OSError:
            pass
        f = open(d + "/f%d" % i, "wb")
        f.write(_content(i))
        f.close()
    f = open(at + "/log", "ab")  # an append to an existing file, as the store's index grows
    f.write(b"%d-%d\n" % (lo, hi))
    f.close()
    d = at + "/d%d/" % (lo % 3)
    os.rename(d + "f%d" % lo, d + "r%d" % lo)  # the store commits by rename


def _check(at, n, step=20):
    """Files 0..n-1 as _write(at, 0, step), _write(at, step, 2 * step), ... left them."""
    log = b""
    for i in range(n):
        name = ("r%d" if i % step == 0 else "f%d") % i
        f = open(at + "/d%d/%s" % (i % 3, name), "rb")
        b = f.read()
        f.close()
        assert b == _content(i), (at, i, len(b))
    for lo in range(0, n, step):
        log += b"%d-%d\n" % (lo, lo + step)
    f = open(at + "/log", "rb")
    assert f.read() == log
    f.close()


def _mount(dev, at, geo):
    import vfs

    vfs.mount(vfs.VfsLfs2(dev, **geo), at)


def _umount(at):
    import vfs

    vfs.umount(at)


def test_an_image_of_the_defaults_is_read_and_written_under_the_geometry_and_back():
    """Formatted and written with the defaults (a board in the field), mounted with flashfs's
    geometry: everything reads back, more is written; the defaults read all of it and write more;
    the geometry again reads all. The other way round too, and with a larger program size (where
    littlefs's commit alignment differs). No program ever lands on programmed bytes."""
    if not IS_MP:
        skip("MicroPython only: VfsLfs2")
    import gc

    import vfs

    from pocketpost import flashfs

    big = {"readsize": 256, "progsize": 256}  # a program size that is not the default's either
    for first, second in ((DEFAULTS, flashfs.params()), (flashfs.params(), DEFAULTS), (DEFAULTS, big)):
        dev = NorDev(blocks=160)
        vfs.VfsLfs2.mkfs(dev, **first)
        at = "/fsgeo"
        _mount(dev, at, first)
        _write(at, 0, 20)
        _umount(at)
        for k, geo in enumerate((second, first, second)):
            _mount(dev, at, geo)
            _check(at, 20 * (k + 1))
            _write(at, 20 * (k + 1), 20 * (k + 2))
            _check(at, 20 * (k + 2))
            _umount(at)
        assert dev.overwrites == 0, dev.overwrites
        dev = None
        gc.collect()  # the next 640 KB image must fit beside the rest of the dual run's heap


def test_remount_puts_the_geometry_in_place_of_the_defaults_and_keeps_the_files():
    """What boot.py does to "/": the mount of the defaults replaced by flashfs's, the files and
    the current directory kept; a 4 KiB file then costs programs of the larger cache (4 x READ_SIZE),
    not 32 of 128 B."""
    if not IS_MP:
        skip("MicroPython only: VfsLfs2")
    import os

    import vfs

    from pocketpost import flashfs

    dev = FlashDev(blocks=64)
    vfs.VfsLfs2.mkfs(dev)
    at = "/fsre"
    _mount(dev, at, DEFAULTS)
    _write(at, 0, 20)
    cwd = os.getcwd()
    os.chdir(at + "/d1")
    try:
        assert flashfs.remount(dev, at) is True
        assert os.getcwd() == at + "/d1"
        assert flashfs.tuned == (at, flashfs.READ_SIZE, flashfs.PROG_SIZE)
    finally:
        os.chdir(cwd)
    _check(at, 20)
    p0 = dev.progs
    f = open(at + "/four", "wb")
    f.write(b"x" * 4096)
    f.close()
    progs = dev.progs - p0
    cache = 4 * max(flashfs.READ_SIZE, flashfs.PROG_SIZE)
    assert progs <= 4096 // cache + 4, progs  # the data in cache-sized programs, + metadata
    # no modification time kept (flashfs.MTIME): a file written under the geometry has none,
    # one written under the defaults keeps its own
    assert os.stat(at + "/four")[8] == 0 and os.stat(at + "/d1/f1")[8] != 0
    _umount(at)
    _mount(dev, at, DEFAULTS)  # and the defaults still read it all
    _check(at, 20)
    f = open(at + "/four", "rb")
    assert f.read() == b"x" * 4096
    f.close()
    _umount(at)


def test_remount_leaves_the_mount_alone_when_the_device_holds_no_littlefs():
    if not IS_MP:
        skip("MicroPython only: VfsLfs2")
    import vfs

    from pocketpost import flashfs

    dev = FlashDev(blocks=32)
    vfs.VfsLfs2.mkfs(dev)
    at = "/fsno"
    _mount(dev, at, DEFAULTS)
    _write(at, 0, 5)
    assert flashfs.remount(FlashDev(blocks=32), at) is False  # erased: not littlefs
    _check(at, 5, 5)  # still the same mount
    _umount(at)


def test_tune_board_remounts_the_ports_flashbdev_and_nothing_without_one():
    if not IS_MP:
        skip("MicroPython only: VfsLfs2")
    import vfs

    from pocketpost import flashfs

    sys.modules.pop("flashbdev", None)
    assert flashfs.tune_board() is False  # the unix port has no flashbdev module

    class flashbdev:  # the ESP32 port's frozen module, as the pseudo-board stands in for it
        bdev = FlashDev(blocks=32)
        MOUNT_POINT = "/fsboard"

    vfs.VfsLfs2.mkfs(flashbdev.bdev)
    _mount(flashbdev.bdev, flashbdev.MOUNT_POINT, DEFAULTS)
    sys.modules["flashbdev"] = flashbdev
    try:
        flashfs.tuned = None
        assert flashfs.tune_board() is True
        assert flashfs.tuned == ("/fsboard", flashfs.READ_SIZE, flashfs.PROG_SIZE)
    finally:
        del sys.modules["flashbdev"]
        _umount(flashbdev.MOUNT_POINT)


class _RecDev(FlashDev):
    """FlashDev that records every program and erase, in order, to replay a prefix of them."""

    def __init__(self, *a, **k):
        FlashDev.__init__(self, *a, **k)
        self.log = []

    def writeblocks(self, block, buf, off=None):
        self.log.append((block, off or 0, bytes(buf)))
        return FlashDev.writeblocks(self, block, buf, off)

    def ioctl(self, op, arg):
        if op == 6:
            self.log.append((arg, -1, None))
        return FlashDev.ioctl(self, op, arg)


def _replay(image, ops):
    """The flash after `ops` on top of `image`: a power cut right after the last of them."""
    data = bytearray(image)
    bs = 4096
    for block, off, buf in ops:
        a = block * bs + off
        if buf is None:
            data[a : a + bs] = b"\xff" * bs
        else:
            data[a : a + len(buf)] = buf
    return data


def _boot_safe(dev, at):
    """boot.py as a board in safe mode runs it (the flag file in the current directory), the port's
    flashbdev standing for dev mounted at `at`: the firmware's mount is left in place."""
    import os

    from pocketpost import log, safemode

    root = __file__.rsplit("/", 3)[0] if __file__.count("/") >= 3 else "."
    f = open(root + "/firmware/boot.py")
    src = f.read()
    f.close()

    class flashbdev:
        bdev = dev
        MOUNT_POINT = at

    cwd = os.getcwd()
    tmp = "/tmp/pp-safeboot-%d" % id(flashbdev)
    os.mkdir(tmp)
    open(tmp + "/" + safemode.SAFE_FLAG, "w").close()
    sys.modules["flashbdev"] = flashbdev
    log.set_sink(lambda line: None)
    try:
        os.chdir(tmp)
        exec(src, {"__name__": "boot"})
        assert safemode.safe is True
    finally:
        os.chdir(cwd)
        log.set_sink(None)
        safemode.safe = False
        del sys.modules["flashbdev"]
        os.remove(tmp + "/" + safemode.SAFE_FLAG)
        os.rmdir(tmp)


def _remount_refused(dev, at):
    """flashfs.remount when the mount with its geometry is refused (as by a port short of memory):
    its fall-back mounts dev again as the firmware does, and raises."""
    import vfs

    from pocketpost import flashfs

    class Vfs:  # what remount's `from vfs import ...` finds
        VfsLfs2 = vfs.VfsLfs2
        umount = vfs.umount

        @staticmethod
        def mount(fs, mp):
            if isinstance(fs, vfs.VfsLfs2):
                raise OSError(12)  # ENOMEM
            vfs.mount(fs, mp)

    old = sys.modules.get("vfs")
    sys.modules["vfs"] = Vfs
    try:
        flashfs.remount(dev, at)
        raise AssertionError("no fall-back")
    except OSError as e:
        assert e.args[0] == 12, e
    finally:
        if old is None:
            del sys.modules["vfs"]
        else:
            sys.modules["vfs"] = old


def test_remount_finishes_a_move_a_power_cut_left_so_no_neighbour_hides():
    """A store's mailbox of 5 messages, and one of them being set aside into damaged/ (a move
    across directories, as storescan does with a file of the wrong size) when the power is cut,
    after every program or erase of that rename in turn. littlefs's listing of a mailbox can then
    hide a *neighbour* of the moved file until its next write (seen here: the premise is asserted).
    The board's mount path (the firmware's mount with the defaults, then boot.py's remount) must
    show every other message, in the listing and to the store's check (which the board runs at
    start, repairing: without the fix-up it counts the hidden message missing), and the moved one
    in exactly one place; the remount's fix-up costs no flash operation when no move is pending.
    The host's tools mounting such an image (tools/hostflash.py: `make run`'s server, ppadmin on an
    image) list every other message too, and so do safe mode (boot.py with the flag file: the
    firmware's mount stays) and remount's fall-back to the firmware's mount."""
    if not IS_MP:
        skip("MicroPython only: VfsLfs2")
    import gc
    import os

    import vfs

    from pocketpost import flashfs
    from pocketpost import storecore as store_mod

    at = "/fsmove"
    root = at + "/mail"
    dev = _RecDev(blocks=32)
    vfs.VfsLfs2.mkfs(dev)
    _mount(dev, at, DEFAULTS)
    st = store_mod.Store(root)
    for i in range(5):
        d = st.begin("alice")
        d.write(b"Subject: %d\r\n\r\n" % i + b"body %d\r\n" % i * (i * 40 + 1))
        d.commit()
    mb = st.lock("alice")  # indexes them, as a board's mailbox is
    mb.release()
    bucket = root + "/alice/b0"
    names = sorted(os.listdir(bucket))
    assert len(names) == 5, names
    moved = names[1]
    os.mkdir(root + "/alice/damaged")
    base = dev.image()
    del dev.log[:]
    os.rename(bucket + "/" + moved, root + "/alice/damaged/" + moved)
    ops = dev.log
    _umount(at)
    dev = st = mb = None
    gc.collect()

    others = [n for n in names if n != moved]
    tools = __file__.rsplit("/", 3)[0] + "/tools" if __file__.count("/") >= 3 else "tools"
    if tools not in sys.path:
        sys.path.append(tools)
    import hostflash

    img = "/tmp/pp-fsmove-%d.img" % id(ops)  # (MicroPython's os has no getpid)
    hid = 0
    for k in range(len(ops) + 1):
        image = _replay(base, ops[:k])
        cut = FlashDev(data=image)
        _mount(cut, at, DEFAULTS)  # as the ESP32 firmware's _boot.py mounts it
        if [n for n in others if n not in os.listdir(bucket)]:
            hid += 1
        ops0 = cut.ops
        assert flashfs.remount(cut, at) is True  # boot.py
        fixup = cut.ops - ops0
        listed = os.listdir(bucket)
        assert [n for n in others if n not in listed] == [], (k, listed)
        assert (moved in listed) != (moved in os.listdir(root + "/alice/damaged")), (k, listed)
        if k == 0 or k == len(ops):  # nothing pending: the fix-up wrote nothing
            assert fixup == 0, (k, fixup)
        store_mod._BOXES.clear()  # RAM state of the previous image's mailbox
        # what the store check at board start (boardstart.start) looks at (it repairs: a message it counts missing loses its record)
        rep = store_mod.Store(root).check()["mailboxes"]["alice"]
        gone = 0 if moved in listed else 1  # only the file being set aside may be missing
        assert (rep["missing"], rep["messages"]) == (gone, 5 - gone), (k, rep)
        _umount(at)
        # safe mode (boot.py with the flag file: the firmware's mount is left as it is) and
        # remount's fall-back to the firmware's mount (the tuned one refused): no neighbour hides
        for way in (_boot_safe, _remount_refused):
            cut = FlashDev(data=image)
            _mount(cut, at, DEFAULTS)
            way(cut, at)
            listed = os.listdir(bucket)
            assert [n for n in others if n not in listed] == [], (way, k, listed)
            assert (moved in listed) != (moved in os.listdir(root + "/alice/damaged")), (way, k, listed)
            _umount(at)
        # the host's tools (make run's server, ppadmin on an image) mount it through
        # tools/hostflash.py as the board after boot.py: the same listing
        f = open(img, "wb")
        f.write(image)
        f.close()
        hdev = hostflash.mount(img, at)
        try:
            listed = os.listdir(bucket)
            assert [n for n in others if n not in listed] == [], ("hostflash", k, listed)
        finally:
            hostflash.umount(hdev, at)
            hdev.f.close()
        cut = rep = image = hdev = None
        gc.collect()
    os.remove(img)
    # the premise: without the fix-up this littlefs hides a neighbour at one of these cuts (if a
    # littlefs update stops doing so, the fix-up is moot and this line says so)
    assert hid >= 1, "no cut hid a neighbour of the moved file: %d cuts" % (len(ops) + 1)
