"""compat helpers whose MicroPython behaviour a host filesystem does not show (CPython, faked)."""

import os
import sys

from helpers import FIRMWARE

sys.path.insert(0, FIRMWARE)
from pocketpost import compat, smtpenv, store  # noqa: E402

# os.statvfs("/flash") as MicroPython 1.29 returned it on a nearly full 96-block littlefs image
# (test_smtp_postfix's flash, one 320 KiB message): littlefs counted 99 blocks in use, and
# block_count - used wrapped to an unsigned 4294967293 free blocks.
WRAPPED = (4096, 4096, 96, 4294967293, 4294967293, 0, 0, 0, 0, 255)


def test_free_bytes_treats_a_wrapped_littlefs_count_as_full(monkeypatch, tmp_path):
    monkeypatch.setattr(compat.os, "statvfs", lambda path: WRAPPED)
    assert compat.free_bytes("/flash") == (0, 4096)
    st = store.Store(str(tmp_path / "mail"), quota=0, reserve=0)
    assert smtpenv.room(st) == 0  # SMTP's SIZE check at MAIL FROM refuses (452 4.3.1)
    monkeypatch.setattr(compat.os, "statvfs", lambda path: (4096, 4096, 96, 20, 20, 0, 0, 0, 0, 255))
    assert compat.free_bytes("/flash") == (20 * 4096, 4096)


def test_free_bytes_on_this_host():
    free, bsize = compat.free_bytes(os.getcwd())
    assert bsize > 0 and free >= 0
