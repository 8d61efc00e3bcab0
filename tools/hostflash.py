"""MicroPython side: mount a littlefs image file at /flash, as on a board, then run something.

    micropython tools/hostflash.py IMAGE [--mkfs] -m MODULE [ARGS...]   # MODULE.main(*ARGS)
    micropython tools/hostflash.py IMAGE [--mkfs] -f SCRIPT.py           # exec a host file
    micropython tools/hostflash.py IMAGE [--mkfs] -c CODE                # exec CODE (short only:
                         the pip micropython wrapper has crashed on long multi-line -c arguments)

(MICROPYPATH must hold firmware/.) The image is a plain file of BLOCK_SIZE blocks. Nothing here
formats a file unless told: --mkfs formats only an image that is blank (every byte 0xff, as
tools/hostimage.py's create() makes it), and an image that does not mount is refused, never
formatted. The host tools check the superblock and lock the image (tools/hostimage.py) first.
Host paths stay reachable outside /flash, so CODE can copy host files into the image.

From other micropython code: `from hostflash import FileBlockDev, mount` and
`mount(image_path, "/flash")` -> the block device. CPython reads the same image with
littlefs-python (block_size=BLOCK_SIZE, block_count=file size // BLOCK_SIZE).
Never mount one image from two processes at once.
"""

import os
import sys

import vfs

BLOCK_SIZE = 4096  # ESP32 flash erase sector
# littlefs geometry, as a board runs its flash once boot.py has remounted it: the values of
# firmware/pocketpost/flashfs.py (not imported: the pseudo-board must not load pocketpost from
# the checkout; host_tests/test_flashfs_host.py checks they agree). An image is formatted with
# VfsLfs2's defaults (32, 32, 32), as the ESP32 firmware's first boot formats it.
# POCKETPOST_LFS_SIZES="READ,PROG[,LOOKAHEAD]" overrides the mount's sizes for benchmarks
# (tools/bench_client.py --lfs-sizes); nothing else sets it.
READ_SIZE = 64
PROG_SIZE = 32
LOOKAHEAD = 64


def lfs_params():
    """{readsize, progsize, lookahead} for mounting with VfsLfs2: the values above, or the
    POCKETPOST_LFS_SIZES override."""
    r, p, la = READ_SIZE, PROG_SIZE, LOOKAHEAD
    env = os.getenv("POCKETPOST_LFS_SIZES")
    if env:
        v = [int(x) for x in env.split(",")]
        r, p = v[0], v[1]
        if len(v) > 2:
            la = v[2]
    return {"readsize": r, "progsize": p, "lookahead": la}


ERASE_CHUNK = 1024  # an erase writes this many 0xff bytes at a time, from one buffer made once


class FileBlockDev:
    """littlefs block device on a file, extended interface (offsets, erase) like ESP32 flash.

    Every call goes straight to the file (a power cut, i.e. a killed process, leaves the image as
    the flash would be). Host costs a board does not have are kept out of the figures measured
    through it: an erase writes from one 1 KiB buffer of 0xff made once (it used to allocate a
    4 KiB pattern per erase, which set off collections under a small GC threshold), and a call
    at the file position the previous one left skips its seek (littlefs programs in sequence).
    What remains is the Python method call and one or two system calls per littlefs call."""

    def __init__(self, path, block_size=BLOCK_SIZE):
        self.f = open(path, "r+b")
        self.bs = block_size
        self.count = self.f.seek(0, 2) // block_size
        self.pos = -1  # the file position after the last call; -1: unknown, seek
        self.ff = b"\xff" * min(ERASE_CHUNK, block_size)
        # Set after umount: GC finalisers of abandoned littlefs files may still call in at exit,
        # and an exception there is a fatal "uncaught NLR".
        self.detached = False

    def readblocks(self, n, buf, off=0):
        if self.detached:
            return
        a = n * self.bs + off
        if a != self.pos:
            self.f.seek(a)
        self.pos = -1  # unknown until the call returns (it may raise)
        self.pos = a + (self.f.readinto(buf) or 0)

    def writeblocks(self, n, buf, off=None):
        if self.detached:
            return
        a = n * self.bs + (off or 0)
        if a != self.pos:
            self.f.seek(a)
        self.pos = -1
        self.pos = a + self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return self.bs
        if self.detached:
            return 0
        if op == 6:  # erase: NOR flash erases to 0xff
            a = arg * self.bs
            if a != self.pos:
                self.f.seek(a)
            ff = self.ff
            self.pos = -1
            for _ in range(self.bs // len(ff)):
                self.f.write(ff)
            self.pos = a + self.bs
            return 0
        if op == 3:  # sync
            self.f.flush()
        return 0


class MountError(Exception):
    pass


def is_blank(bdev):
    """True if every block reads 0xff: an erased image no one has written yet."""
    buf = bytearray(bdev.bs)
    blank = b"\xff" * bdev.bs
    for n in range(bdev.count):
        bdev.readblocks(n, buf)
        if buf != blank:
            return False
    return True


def mount(image, mountpoint="/flash", mkfs=False, tuned=True):
    """Mount IMAGE at MOUNTPOINT -> the block device. mkfs=True formats it first, and only if it
    is blank; an image that does not mount raises MountError and is left as it was. tuned=False
    mounts with VfsLfs2's defaults, as the ESP32 firmware does before boot.py remounts it."""
    bdev = FileBlockDev(image)
    if mkfs:
        if not is_blank(bdev):
            bdev.f.close()
            raise MountError("%s: --mkfs formats only a blank (erased) image; this one has data" % image)
        vfs.VfsLfs2.mkfs(bdev)  # the defaults, as the ESP32 firmware's inisetup.py formats
    try:
        fs = vfs.VfsLfs2(bdev, **lfs_params()) if tuned else vfs.VfsLfs2(bdev)
    except OSError as e:
        bdev.f.close()
        raise MountError("%s: not a littlefs image of %d-byte blocks (%s); left unchanged" % (image, bdev.bs, e))
    vfs.mount(fs, mountpoint)
    return bdev


def umount(bdev, mountpoint="/flash"):
    try:
        vfs.umount(mountpoint)
    finally:
        bdev.f.flush()
        bdev.detached = True


def _main(argv):
    if len(argv) < 3:
        print(__doc__)
        sys.exit(2)
    image = argv[0]
    rest = argv[1:]
    mkfs = False
    if rest[0] == "--mkfs":
        mkfs = True
        rest = rest[1:]
    try:
        bdev = mount(image, "/flash", mkfs)
    except (MountError, OSError) as e:
        sys.stderr.write("hostflash: %s\n" % e)
        sys.exit(2)
    try:
        if rest[0] == "-c":
            exec(rest[1], {"__name__": "__hostflash__"})
        elif rest[0] == "-f":
            f = open(rest[1])
            code = f.read()
            f.close()
            exec(code, {"__name__": "__hostflash__"})
        elif rest[0] == "-m":
            mod = __import__(rest[1])
            for part in rest[1].split(".")[1:]:
                mod = getattr(mod, part)
            sys.argv[:] = [rest[1]] + rest[2:]
            mod.main(*rest[2:])
        else:
            print("hostflash: need -c CODE, -f SCRIPT or -m MODULE")
            sys.exit(2)
    finally:
        umount(bdev)


if __name__ == "__main__":
    _main(sys.argv[1:])
