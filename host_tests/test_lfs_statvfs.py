"""What MicroPython's statvfs reports on littlefs, pinned (a finding for the store's room check,
storecore.Store._room via compat.free_bytes; nothing here changes either).

MicroPython's VfsLfs2.statvfs counts the blocks lfs2_fs_traverse reports. That traversal passes
includeorphans=true, so every directory's metadata pair is reported twice: once walking the
metadata list and once as the directory entry in its parent. littlefs's own lfs_fs_size (what
littlefs-python's used_block_count calls) passes false. So MicroPython's "used" is the real use
plus 2 blocks per directory: a constant per directory, not per image size or per file. On a
96 KiB image with 5 directories that is 10 of 24 blocks; with 100 directories on 2 MiB, 200 of
512. If a MicroPython upgrade counts each block once, this test fails: a store correction that
adds 2 blocks per directory back would then overstate the free space."""

import os
import sys

import littlefs
from helpers import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
import ppadmin  # noqa: E402

BLOCKS = 24  # 96 KiB of 4 KiB blocks
DIRS = 5

MAKE = r"""
for i in range(int(os.getenv("PP_DIRS"))):
    os.mkdir("/flash/d%d" % i)
st = os.statvfs("/flash")
print(st[2] - st[3])
"""

FILL = r"""
n = 0
try:
    while True:
        f = open("/flash/fill%d" % n, "wb")
        try:
            f.write(b"y" * 4000)
        finally:
            f.close()
        n += 1
except OSError:
    pass
print(n)
"""


def test_micropython_statvfs_counts_each_directory_twice(tmp_path):
    for dirs in (0, DIRS):
        img = str(tmp_path / ("d%d.img" % dirs))
        with open(img, "wb") as f:
            f.write(b"\xff" * 4096 * BLOCKS)
        mp_used = int(ppadmin.on_image(img, MAKE, {"PP_DIRS": str(dirs)}, mkfs=True))
        with open(img, "rb") as f:
            fs = littlefs.LittleFS(context=littlefs.UserContext(buffer=bytearray(f.read())), block_size=4096,
                                   block_count=BLOCKS)
        lfs_used = fs.used_block_count
        fitted = int(ppadmin.on_image(img, FILL))
        assert mp_used - lfs_used == 2 * dirs, (dirs, mp_used, lfs_used)
        # littlefs's own count is the true one: exactly that many 4000-byte files still fit
        assert fitted == BLOCKS - lfs_used, (dirs, fitted, lfs_used, mp_used)
