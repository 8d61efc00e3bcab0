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
# littlefs geometry, as the ESP32 firmware mounts "/" (MicroPython's VfsLfs2 defaults: caches of
# 4 x 32 = 128 B, so one program per 128 B of data). POCKETPOST_LFS_SIZES="READ,PROG[,LOOKAHEAD]"
# overrides them for benchmarks (tools/bench_client.py --lfs-sizes); nothing else sets it.
READ_SIZE = 32
PROG_SIZE = 32
LOOKAHEAD = 32


def lfs_params():
    """{readsize, progsize, lookahead} for VfsLfs2 and its mkfs: the defaults above, or the
    POCKETPOST_LFS_SIZES override."""
    r, p, la = READ_SIZE, PROG_SIZE, LOOKAHEAD
    env = os.getenv("POCKETPOST_LFS_SIZES")
    if env:
        v = [int(x) for x in env.split(",")]
        r, p = v[0], v[1]
        if len(v) > 2:
            la = v[2]
    return {"readsize": r, "progsize": p, "lookahead": la}


class FileBlockDev:
    """littlefs block device on a file, extended interface (offsets, erase) like ESP32 flash."""

    def __init__(self, path, block_size=BLOCK_SIZE):
        self.f = open(path, "r+b")
        self.bs = block_size
        self.count = self.f.seek(0, 2) // block_size
        # Set after umount: GC finalisers of abandoned littlefs files may still call in at exit,
        # and an exception there is a fatal "uncaught NLR".
        self.detached = False

    def readblocks(self, n, buf, off=0):
        if self.detached:
            return
        self.f.seek(n * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=None):
        if self.detached:
            return
        self.f.seek(n * self.bs + (off or 0))
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return self.bs
        if self.detached:
            return 0
        if op == 6:  # erase: NOR flash erases to 0xff
            self.f.seek(arg * self.bs)
            self.f.write(b"\xff" * self.bs)
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


def mount(image, mountpoint="/flash", mkfs=False):
    """Mount IMAGE at MOUNTPOINT -> the block device. mkfs=True formats it first, and only if it
    is blank; an image that does not mount raises MountError and is left as it was."""
    bdev = FileBlockDev(image)
    if mkfs:
        if not is_blank(bdev):
            bdev.f.close()
            raise MountError("%s: --mkfs formats only a blank (erased) image; this one has data" % image)
        vfs.VfsLfs2.mkfs(bdev, **lfs_params())
    try:
        fs = vfs.VfsLfs2(bdev, **lfs_params())
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
