# tools/bench_heap.py's workload with the store on littlefs (--store lfs; dev, its control):
#
#     micropython -X heapsize=N -m heapflash CONFIG GO_FILE [flags as heapwork's] lfs | dev
#
# lfs: the littlefs image GO_FILE.img mounted at /flash as on a board, through a block device that
# holds and allocates nothing; dev: that device made, nothing mounted. Then heapwork runs (imported:
# heapwork.py itself knows nothing of this, so the directory store's trials load nothing more).
# Prints "BDEV <bytes>": the live heap of the device and its stand-in module (this module's code is
# measured apart, by importing it: see the end), which a board does not hold and the benchmark
# subtracts.
import sys


class Flash:
    """The image file as a board's flash partition (4 KiB erase blocks) for VfsLfs2:
    every call a seek and a read or write, no block held in RAM and nothing allocated, as a
    board's C flash driver (esp32.Partition) keeps nothing in the GC heap. Not tools/hostflash.py's
    FileBlockDev: ~16 KiB of its own live heap (its open block in RAM), and with it mounted
    workload a needed 119 KiB instead of 88, the store still in a directory (this one: 91).
    Slower (a system call per littlefs read or program), which the heap figures do not see."""

    def __init__(self, path):
        self.f = open(path, "r+b")
        self.count = self.f.seek(0, 2) // 4096
        self.ff = b"\xff" * 256  # an erase writes 0xff from this, 16 times

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * 4096 + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=0):
        self.f.seek(n * 4096 + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.count
        if op == 5:  # block size
            return 4096
        if op == 6:
            self.erase(arg)
        return 0  # (sync: nothing held)

    def erase(self, n):
        f = self.f
        f.seek(n * 4096)
        i = 0
        while i < 4096:
            i += f.write(self.ff)


# pocketpost.flashfs's geometry (boot.py's remount), not imported: its ~25 names, interned for
# good, would be the lfs trials' alone (host_tests/test_flashfs_host.py checks they agree).
READ_SIZE = 64
PROG_SIZE = 32
LOOKAHEAD = 64
MTIME = 0


def mount(image, boot, mounted):
    """The littlefs image mounted at /flash as a board has its flash once boot.py has remounted
    it: with pocketpost.flashfs's geometry, littlefs's fix-up done. boot (heapwork's "runner",
    which runs boot.py's steps itself): mounted as the ESP32 firmware mounts its vfs partition
    (VfsLfs2's defaults) and handed on as the port's `flashbdev` module, so that flashfs.tune_board
    remounts it. mounted=False ("dev"): the device made, nothing mounted, the store left where it is.
    Prints "BDEV <bytes>": the live heap the device and the stand-in module added."""
    import gc

    import vfs

    gc.collect()
    before = gc.mem_alloc()
    dev = Flash(image)
    if boot and mounted:

        class flashbdev:  # (as the pseudo-board's stand-in, tools/pseudoboard.py)
            bdev = dev
            MOUNT_POINT = "/flash"

        sys.modules["flashbdev"] = flashbdev
    gc.collect()
    print("BDEV", gc.mem_alloc() - before)
    if not mounted:
        return
    if boot:
        vfs.mount(vfs.VfsLfs2(dev), "/flash")
        return
    fs = vfs.VfsLfs2(dev, readsize=READ_SIZE, progsize=PROG_SIZE, lookahead=LOOKAHEAD, mtime=MTIME != 0)
    try:  # littlefs's fix-up before anything lists (flashfs.settle; a pending move)
        fs.mkdir("/")
    except OSError:  # EEXIST, as always
        pass
    vfs.mount(fs, "/flash")


# Run (-m heapflash): the flash, then the workload. Imported (the benchmark's measure of this
# module's own heap, its code): nothing runs.
if __name__ == "__main__":
    mount(sys.argv[2] + ".img", "runner" in sys.argv, "lfs" in sys.argv)
    __import__("heapwork")
