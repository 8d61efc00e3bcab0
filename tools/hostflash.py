"""MicroPython side: mount a littlefs image file at /flash, as on a board, then run something.

    micropython tools/hostflash.py IMAGE [--mkfs] -m MODULE [ARGS...]   # MODULE.main(*ARGS)
    micropython tools/hostflash.py IMAGE [--mkfs] -f SCRIPT.py           # exec a host file
    micropython tools/hostflash.py IMAGE [--mkfs] -f - < SCRIPT.py       # exec what stdin holds
    micropython tools/hostflash.py IMAGE [--mkfs] -c CODE                # exec CODE, < 256 bytes

-c CODE is for short programs only: every argument after hostflash.py becomes a sys.argv string,
and MicroPython's unix port interns each as a qstr at start-up (ports/unix/main.c set_sys_argv),
whose length is one byte: an argument of 256 bytes or more stops micropython before any Python
runs, with "FATAL: uncaught NLR" (exit 1) and nothing else. That is the interpreter's, so this
file cannot refuse it: give a longer program with -f FILE, or -f - from stdin (the program then
has stdin to itself only to EOF: it is read first). The host tools always use -f.

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

import io
import os
import sys

import micropython
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
MTIME = 0  # VfsLfs2's mtime (a file's modification time in its metadata): off, as flashfs.py mounts


def lfs_params():
    """{readsize, progsize, lookahead, mtime} for mounting with VfsLfs2: the values above, the
    sizes from the POCKETPOST_LFS_SIZES override if set."""
    r, p, la = READ_SIZE, PROG_SIZE, LOOKAHEAD
    env = os.getenv("POCKETPOST_LFS_SIZES")
    if env:
        v = [int(x) for x in env.split(",")]
        r, p = v[0], v[1]
        if len(v) > 2:
            la = v[2]
    return {"readsize": r, "progsize": p, "lookahead": la, "mtime": MTIME != 0}


ERASE_CHUNK = 1024  # an erase writes 0xff into the open block from one buffer this size, made once
# HEAP_LOCKED: littlefs also calls the block device from a GC finaliser (a file left open and
# collected is closed, its data programmed, inside gc.collect() with the heap locked), as a
# board's C flash driver serves it. So the calls below allocate nothing, on any path: an
# exception raised into littlefs there lost the file's data and could crash the pseudo-board.
# NO_HEAP_FRAME: nor do they allocate their own frames. MicroPython puts a bytecode function's
# frame on the heap (freed on return) when it outgrows ~11 machine words: arguments + locals +
# the deepest value stack + 3 words per `try`/`with`. readblocks, writeblocks and ioctl run
# ~9,000 times per MiB littlefs writes: no `try` in them, few locals (the erase has a method of
# its own), and the open block's bytes move through an io.BytesIO (seek, then readinto or write:
# no memoryview slice, the allocation that needed a `try` for the heap-locked case). A heap frame
# there, with the small objects allocated between calls, made each allocation search a
# fragmented heap: a read-back cost ~6 us instead of ~0.3 us (host_tests/test_hostflash.py
# counts what the calls allocate: nothing).


class FileBlockDev:
    """littlefs block device on a file, extended interface (offsets, erase) like ESP32 flash.

    The image is always what flash would hold after every operation up to some point, in order,
    and none after it: a killed process leaves it as a power cut at that point would have left a
    board's flash. The block erased last is held in RAM (the "open block", an io.BytesIO of one
    block: a seek and a readinto or write copy bytes at an offset without allocating): the erase
    and the programs into it reach the file together, in one write, when littlefs syncs (after
    each metadata commit: everything committed is in the file), erases another block, or
    programs one outside it; its reads come from RAM. Programs to other blocks go to the file at
    once, after the open block. littlefs erases a block before it programs it (file data block
    by block, metadata compactions), so the data of a message costs one system call per 4 KiB
    instead of a write per program, a seek and a read per validating read-back, and four writes
    per erase.
    Host costs a board does not have are kept out of the figures measured through it (a board's
    block device is C flash code: no method call in Python, no system call). What littlefs asks
    of the flash (programs, reads, erases: the board's costs) is unchanged; CountingBlockDev
    counts it.
    unix MicroPython has no pread/pwrite (no os-level calls, no ffi module in this build): a call
    that reaches the file seeks unless it lands where the previous one left off.
    durable=True (the default, every tool): each littlefs sync also fsyncs the image, so what
    littlefs committed survives a crash of the host too; durable=False leaves that to the
    kernel (a killed process still loses nothing committed; a board's sync is a no-op): for
    benchmarks that leave out host costs a board does not have (tools/bench_client.py)."""

    def __init__(self, path, block_size=BLOCK_SIZE, durable=True):
        self.f = open(path, "r+b")
        self.durable = durable
        self.bs = block_size
        self.count = self.f.seek(0, 2) // block_size
        self.pos = -1  # the file position after the last call; -1: unknown, seek
        self.ff = b"\xff" * min(ERASE_CHUNK, block_size)
        self.ob = -1  # the open block (erased, held in RAM), -1: none
        self.buf = bytearray(block_size)  # the open block's bytes on their way to the file
        self.ram = io.BytesIO(block_size)  # the open block (block_size bytes, never more: littlefs
        self.ram.write(self.buf)  # programs inside a block; a write past the end would grow it)
        self.dirty = False  # the open block has bytes (an erase, programs) not in the file yet
        # Set after umount: GC finalisers of abandoned littlefs files may still call in at exit,
        # and an exception there is a fatal "uncaught NLR".
        self.detached = False

    def _put(self, a, data):
        if a != self.pos:
            self.f.seek(a)
        self.pos = -1  # unknown until the call returns (it may raise)
        self.pos = a + self.f.write(data)

    def flush(self):
        """Write the open block to the file if a program or the erase is not there yet (it stays
        open, in RAM). The whole block, in one write: its bytes outside the programs since the
        last flush are in the file already, the same (a partial write would take a memoryview
        slice: an allocation, which fails with the heap locked, see HEAP_LOCKED)."""
        if self.dirty:
            self.ram.seek(0)
            self.ram.readinto(self.buf)
            # If the write raises, the block stays pending (the next flush writes it again) and
            # the operation that flushed fails before it is applied: the image stays a prefix.
            self._put(self.ob * self.bs, self.buf)
            self.dirty = False

    # readblocks, writeblocks and ioctl: these (bytecode) or, where MicroPython has the viper
    # emitter, _VIPER's (the same steps, ~700 fewer host instructions per call: no bytecode dispatch).
    def readblocks(self, n, buf, off):
        if n == self.ob:  # first: most calls are littlefs's read-backs of what it just programmed
            self.ram.seek(off)
            self.ram.readinto(buf)
            return
        self._read_file(n, buf, off)

    def _read_file(self, n, buf, off):
        if self.detached:
            return
        a = n * self.bs + off
        if a != self.pos:
            self.f.seek(a)
        self.pos = -1
        self.pos = a + (self.f.readinto(buf) or 0)

    def writeblocks(self, n, buf, off):
        if n == self.ob:  # after umount too: RAM only, the file is left alone
            self.ram.seek(off)
            self.ram.write(buf)
            self.dirty = True
            return
        self._write_file(n, buf, off)

    def _write_file(self, n, buf, off):
        if self.detached:
            return
        self.flush()
        self._put(n * self.bs + off, buf)

    def _erase(self, n):
        """NOR flash erases to 0xff; block n becomes the open block."""
        self.flush()
        self.ob = n
        ram = self.ram
        ram.seek(0)
        i = 0
        while i < self.bs:  # not range(): a range object is an allocation
            i += ram.write(self.ff)
        self.dirty = True

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return self.bs
        if self.detached:
            return 0
        if op == 6:  # erase
            self._erase(arg)
        elif op == 3:  # sync
            self.flush()
            if self.durable:
                self.f.flush()  # fsync on unix MicroPython
        return 0


# FileBlockDev.readblocks / writeblocks / ioctl as viper code (compiled at import from this text: a
# MicroPython without the emitter, or POCKETPOST_HOSTFLASH_BYTECODE set, keeps the bytecode
# ones; host_tests/test_hostflash.py runs both). Three arguments, always (viper has no defaults).
_VIPER = """
@micropython.viper
def readblocks(self, n: int, buf, off: int):
    if n == int(self.ob):
        r = self.ram
        r.seek(off)
        r.readinto(buf)
        return
    if self.detached:
        return
    n = n * int(self.bs) + off  # (as _read_file, inline: no second call)
    r = self.f
    if n != int(self.pos):
        r.seek(n)
    self.pos = -1
    off = int(r.readinto(buf) or 0)
    self.pos = n + off


@micropython.viper
def writeblocks(self, n: int, buf, off: int):
    if n == int(self.ob):
        r = self.ram
        r.seek(off)
        r.write(buf)
        self.dirty = True
        return
    self._write_file(n, buf, off)


@micropython.viper
def ioctl(self, op: int, arg: int):
    if op == 4:
        return self.count
    if op == 5:
        return self.bs
    if self.detached:
        return _OK
    if op == 6:  # (as _erase, inline)
        if self.dirty:
            self.flush()
        self.ob = arg
        r = self.ram
        r.seek(0)
        op = 0
        arg = int(self.bs)
        while op < arg:
            op += int(r.write(self.ff))
        self.dirty = True
    elif op == 3:
        if self.dirty:
            self.flush()
        if self.durable:
            self.f.flush()
    return _OK
"""
VIPER = False  # True once _VIPER's methods replaced the bytecode ones
if not os.getenv("POCKETPOST_HOSTFLASH_BYTECODE"):
    try:
        _g = {"micropython": micropython, "_OK": 0}  # (viper returns a native 0 as no object)
        exec(_VIPER, _g)
        FileBlockDev.readblocks = _g["readblocks"]
        FileBlockDev.writeblocks = _g["writeblocks"]
        FileBlockDev.ioctl = _g["ioctl"]
        VIPER = True
    except (SyntaxError, NotImplementedError):  # no viper emitter here: the bytecode stays
        pass
    _g = None


class CountingBlockDev(FileBlockDev):
    """FileBlockDev counting what littlefs asks of the flash (for benchmarks): `counts` is
    [reads, bytes read, programs, bytes programmed, erases, syncs]; zero it to start over."""

    def __init__(self, path, block_size=BLOCK_SIZE, durable=True):
        FileBlockDev.__init__(self, path, block_size, durable)
        self.counts = [0, 0, 0, 0, 0, 0]

    def readblocks(self, n, buf, off=0):
        c = self.counts
        c[0] += 1
        c[1] += len(buf)
        FileBlockDev.readblocks(self, n, buf, off)

    def writeblocks(self, n, buf, off=0):
        c = self.counts
        c[2] += 1
        c[3] += len(buf)
        FileBlockDev.writeblocks(self, n, buf, off)

    def ioctl(self, op, arg):
        if op == 6:
            self.counts[4] += 1
        elif op == 3:
            self.counts[5] += 1
        return FileBlockDev.ioctl(self, op, arg)


class MountError(Exception):
    pass


def is_blank(bdev):
    """True if every block reads 0xff: an erased image no one has written yet."""
    buf = bytearray(bdev.bs)
    blank = b"\xff" * bdev.bs
    for n in range(bdev.count):
        bdev.readblocks(n, buf, 0)
        if buf != blank:
            return False
    return True


def mount(image, mountpoint="/flash", mkfs=False, tuned=True, count=False, durable=True):
    """Mount IMAGE at MOUNTPOINT -> the block device. mkfs=True formats it first, and only if it
    is blank; an image that does not mount raises MountError and is left as it was. tuned=False
    mounts with VfsLfs2's defaults, as the ESP32 firmware does before boot.py remounts it.
    count=True: a CountingBlockDev (its counts start after the mount); durable: FileBlockDev's."""
    bdev = (CountingBlockDev if count else FileBlockDev)(image, BLOCK_SIZE, durable)
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
    if tuned:  # the board after boot.py (flashfs.remount): littlefs finishes a move a power cut
        try:  # left half done before anything lists, else a neighbour of it can hide (see there)
            fs.mkdir("/")
        except OSError:  # EEXIST, as always
            pass
    vfs.mount(fs, mountpoint)
    if count:
        bdev.counts[:] = [0] * 6
    return bdev


def umount(bdev, mountpoint="/flash"):
    try:
        vfs.umount(mountpoint)
    finally:
        try:
            bdev.flush()
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
            f = sys.stdin if rest[1] == "-" else open(rest[1])
            code = f.read()
            if f is not sys.stdin:
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
