"""tools/heapflash.py's block device (bench_heap --store lfs) allocates nothing in a call: the
heap figures subtract its live heap measured once (BDEV), which holds only if littlefs's calls
into it add none (a board's flash driver is C). Each call is made once, then again with the heap
locked (any allocation raises MemoryError), under micropython."""

import os
import subprocess

from helpers import MICROPYTHON, ROOT

PROBE = r"""
import micropython, heapflash


def locked(call):  # True if call() raised MemoryError with the heap locked: it allocated
    micropython.heap_lock()
    try:
        call()
    except MemoryError:
        micropython.heap_unlock()
        return True
    micropython.heap_unlock()
    return False


def main():
    d = heapflash.Flash(IMAGE)
    buf = bytearray(64)
    calls = (("read", lambda: d.readblocks(1, buf, 0)), ("read, no offset", lambda: d.readblocks(1, buf)),
             ("program", lambda: d.writeblocks(2, buf, 32)), ("erase", lambda: d.ioctl(6, 3)),
             ("block count", lambda: d.ioctl(4, 0)), ("block size", lambda: d.ioctl(5, 0)), ("sync", lambda: d.ioctl(3, 0)))
    for name, call in calls:
        call()
        print(name, "ALLOCATES" if locked(call) else "ok")


main()
"""


def test_the_bench_flash_device_allocates_nothing(tmp_path):
    image = str(tmp_path / "flash.img")
    with open(image, "wb") as f:
        f.write(b"\xff" * (16 * 4096))
    r = subprocess.run([MICROPYTHON, "-c", "IMAGE = %r\n" % image + PROBE], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MICROPYPATH=os.path.join(ROOT, "tools") + ":.frozen"))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.split("\n")[:-1]
    assert len(lines) == 7 and all(ln.endswith(" ok") for ln in lines), r.stdout
