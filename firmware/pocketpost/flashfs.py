"""littlefs geometry for the board's flash: boot.py remounts the filesystem with larger caches.

The ESP32 firmware's _boot.py mounts the vfs partition with VfsLfs2's defaults (readsize and
progsize 32, so caches of 4 x 32 = 128 B): every 128 B of mail is one flash program, followed by
a read-back that littlefs validates it with, each through a Python-level block-device call and
one SPI flash operation. With 256 the caches are 1 KiB: a quarter of the programs and reads per
stored byte (tools/bench_store.py, tools/bench_client.py --lfs-sizes; figures in docs/FIGURES.md).

littlefs keeps no read/prog size in its superblock: an image written with one geometry mounts
and stays intact under another (host_tests/dual/test_flashfs.py). A metadata block whose last
commit does not end on the new program size is compacted on its next commit, once.

remount() builds the new mount before it touches the old one, so a failure (not littlefs, a
port without VfsLfs2, no memory) leaves the filesystem as the firmware mounted it.
"""

from pocketpost.compat import const

# 256: the SPI flash page, so a program is whole pages; 4 x 256 = 1 KiB per cache (read cache,
# program cache, and one per open file: +0.9 KiB each over the default 128 B).
READ_SIZE = const(256)
PROG_SIZE = const(256)
# 64 B = a bitmap of 512 blocks: the whole 2 MiB vfs partition of a 4 MiB ESP32 in one window, so
# allocation rescans the filesystem once per 512 blocks written instead of once per 256.
LOOKAHEAD = const(64)

tuned = None  # (mount point, READ_SIZE, PROG_SIZE) once remount() has run; admin/tests read it


def params():
    """The keyword arguments for vfs.VfsLfs2 and VfsLfs2.mkfs."""
    return {"readsize": READ_SIZE, "progsize": PROG_SIZE, "lookahead": LOOKAHEAD}


def remount(bdev, at="/"):
    """Mount bdev's littlefs at `at` with this module's geometry in place of the current mount.
    True if done; False (nothing changed) if bdev does not hold a littlefs that mounts."""
    global tuned
    import os

    import vfs

    try:
        fs = vfs.VfsLfs2(bdev, **params())  # reads only: the current mount is untouched
    except (OSError, AttributeError):  # FAT or blank partition; a port without VfsLfs2
        return False
    cwd = os.getcwd()
    vfs.umount(at)
    try:
        vfs.mount(fs, at)
    except Exception:  # never leave the board without its filesystem
        vfs.mount(bdev, at)  # what the firmware's _boot.py does: defaults, autodetected
        raise
    try:
        os.chdir(cwd)
    except OSError:
        pass
    tuned = (at, READ_SIZE, PROG_SIZE)
    return True


def tune_board():
    """boot.py: remount the firmware's flash (the `flashbdev` module of the ESP32 port) with this
    geometry. False where there is none (other ports, the unix port without a pseudo-board)."""
    try:
        import flashbdev
    except ImportError:
        return False
    bdev = getattr(flashbdev, "bdev", None)
    if bdev is None:  # flash too small for a filesystem
        return False
    # The host pseudo-board (tools/pseudoboard.py) mounts its image at /flash, not /.
    return remount(bdev, getattr(flashbdev, "MOUNT_POINT", "/"))
