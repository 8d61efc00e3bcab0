"""MicroPython side: a ROMFS partition for the pseudo-board (tools/pseudoboard.py --romfs-kib N).

The unix port has vfs.VfsRom but no ROM partition (no vfs.rom_ioctl). install() gives the
pseudo-board one: a bytearray of the partition's size, kept in a file next to the flash image,
and a `vfs` module (put in sys.modules, so `import vfs` finds it, mpremote's included) that is
the real one plus rom_ioctl with the calls `mpremote romfs query/deploy` makes:

    1            number of partitions (1)
    2, id        the partition (a bytearray: mpremote reads len() and a memoryview of it), or -19
    3, id, ...   prepare to write: erase (0xff) the range; returns the smallest write (4)
    4, id, off, buf   write buf at off
    5, id        writing done: the partition goes to its file
    6, id        erase block size (4096, an ESP32 flash sector)

and mounts the partition at /rom when it holds a ROMFS image, as a ROMFS board does at start-up.
The partition lives in the heap here (flash on a board): the pseudo-board's heap grows by its size.
"""

import sys

import vfs

ENODEV = 19
SECTOR = 4096  # ESP32 flash erase sector
MIN_WRITE = 4
HEADER = b"\xd2\xcd\x31"  # a ROMFS image starts so


def _erase(buf, start, end):
    mv = memoryview(buf)
    blank = b"\xff" * SECTOR
    while start < end:
        n = min(SECTOR, end - start)
        mv[start:start + n] = blank[:n]
        start += n


class _Rom:
    def __init__(self, path, size):
        self.path = path
        self.part = bytearray(size)
        try:
            f = open(path, "rb")
            f.readinto(self.part)
            f.close()
        except OSError:
            _erase(self.part, 0, size)

    def ioctl(self, op, *args):
        if op == 1:
            return 1
        if args and args[0] != 0:
            return -ENODEV
        if op == 2:
            return self.part
        if op == 3:
            off, n = (args[1], args[2]) if len(args) > 2 else (0, args[1])
            _erase(self.part, off, min(off + n, len(self.part)))
            return MIN_WRITE
        if op == 4:
            off, buf = args[1], args[2]
            self.part[off:off + len(buf)] = buf
            return 0
        if op == 5:
            f = open(self.path, "wb")
            f.write(self.part)
            f.close()
            return 0
        if op == 6:
            return SECTOR
        return -22  # EINVAL


class _Vfs:
    pass


def install(path, size):
    """`import vfs` answers rom_ioctl over a `size`-byte partition kept in the file `path`;
    /rom is mounted if the partition holds a ROMFS image. Returns True if it was mounted."""
    rom = _Rom(path, size)
    fake = _Vfs()
    for name in dir(vfs):
        if not name.startswith("__"):
            setattr(fake, name, getattr(vfs, name))
    fake.rom_ioctl = rom.ioctl
    sys.modules["vfs"] = fake
    if rom.part[:3] != HEADER:
        return False
    vfs.mount(vfs.VfsRom(rom.part), "/rom")
    return True
