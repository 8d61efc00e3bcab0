"""littlefs geometry for the board's flash: boot.py remounts the filesystem with larger caches.

The ESP32 firmware (its frozen _boot.py and inisetup.py) formats and mounts the vfs partition with
VfsLfs2's defaults: readsize and progsize 32, so caches of 4 x 32 = 128 B, and every 128 B of mail
is one flash program plus a read-back that littlefs validates it with, each a Python-level block
device call and an SPI flash operation. VfsLfs2 sizes its caches from the larger of the two sizes,
while littlefs pads each metadata commit only to the program size: a large read size with the
default program size gives large caches (fewer calls) without more padding (more compactions,
so more erases). Measured (tools/bench_store.py, tools/bench_client.py --lfs-sizes; figures and
method in docs/FIGURES.md "littlefs geometry").

littlefs keeps no read or program size in its superblock, and the program size here is the
default: commits land where the defaults would put them, only the read granularity and the cache
size change. Images written under either mount intact under the other, both ways, including the
larger sizes measured (host_tests/dual/test_flashfs.py), so boards formatted with the defaults
keep their mail and no reformat is needed.

The remount also leaves out VfsLfs2's modification times (MTIME): a 12-byte attribute in every
file's metadata, written at each close and copied at every compaction of its directory, read by
nothing here. With deliveries writing their temp file into the message's bucket (store.py), the
bucket directories take three metadata commits per message instead of one; without the
attribute, their compactions cost no more erases than before (tools/bench_store.py, three
buckets of 4 KiB deliveries: 1.174 erases and 20.24 programs per delivery, from 1.174 and 20.89;
with the attribute kept 1.190 and 20.33). Files written before keep theirs.

remount() builds the new mount before it touches the old one: if that fails (not littlefs, a port
without VfsLfs2, no memory) the filesystem stays as the firmware mounted it.

A power cut in the middle of a rename across directories (a scan's bucket -> damaged/; a delivery's
temp file, written in the bucket it expected, when another delivery took that seq and its own is
the next bucket's; before deliveries wrote into their bucket, every delivery's tmp/ -> bucket)
leaves littlefs a pending move, finished at the next write. Until then
littlefs's directory listing can hide a *neighbour* of the moved entry in the source directory
(seen under MicroPython 1.29's VfsLfs2: host_tests/dual/test_flashfs.py replays such a cut; cf.
littlefs-project/littlefs#937; the file itself is intact). The store lists its mailboxes and
buckets and recovers before it writes anything, so a message could look missing at start.
remount() therefore asks littlefs to mkdir a name longer than any it allows (settle()): littlefs
makes the filesystem consistent first (its fix-up before any mkdir: finish a pending move, drop
orphans), then refuses the name. Flash cost: nothing when there is nothing to finish (no program,
no erase: measured), one metadata commit when there is (a program of PROG_SIZE, rarely a
compaction). Through the path, not the littlefs object: safe mode (boot.py: the firmware's own
mount, left as it is) and remount's fall-back to the firmware's mount run it too.
"""

from pocketpost.compat import const

# Cache = 4 x max(READ_SIZE, PROG_SIZE) = 256 B (read cache, program cache, one per open file):
# half the flash calls per byte of the default 128 B for +128 B per cache (+2 KiB on the fetch
# CLI's smallest heap); 512 B caches took 0.09 s less CPU per 10 MiB fetched for 5 KiB more heap,
# which the board does not have to spare.
READ_SIZE = const(64)
# The default: littlefs pads each metadata commit to this, so a larger one means more compactions
# (erases per delivered 4 KiB message: 1.25 at 32, 1.39 at 128, 1.55 at 256; 1.25 with any read
# size at 32).
PROG_SIZE = const(32)
# 64 B = a bitmap of 512 blocks: the whole 2 MiB vfs partition of a 4 MiB ESP32 in one window, so
# the allocator rescans the filesystem once per 512 blocks written instead of once per 256.
LOOKAHEAD = const(64)
# 0: no modification time kept (VfsLfs2's mtime, on by default): it is a 12-byte user attribute
# in every file's metadata, written at each close and copied at each compaction of its directory
# (a bucket of 128 messages holds 1.5 KB of them), and nothing reads it (a message's arrival is
# in its name). os.stat() then gives 0 for a file written since.
MTIME = const(0)
# littlefs's longest name (LFS_NAME_MAX; VfsLfs2 keeps littlefs's default): settle()'s mkdir of a
# name one longer is refused after the fix-up, so it can never create anything.
_NAME_MAX = const(255)

# (mount point, READ_SIZE, PROG_SIZE) once remount() has run. main.py keeps it in board.tuned
# (admin.status() shows it) and drops this module from the heap before the services load.
tuned = None


def params():
    """The keyword arguments for vfs.VfsLfs2 (and VfsLfs2.mkfs)."""
    return {"readsize": READ_SIZE, "progsize": PROG_SIZE, "lookahead": LOOKAHEAD, "mtime": MTIME != 0}


def remount(bdev, at="/"):
    """Mount bdev's littlefs at `at` with this module's geometry in place of the current mount.
    True if done; False (nothing changed) if bdev does not hold a littlefs that mounts."""
    global tuned
    import os

    try:
        from vfs import mount, umount
    except ImportError:  # MicroPython 1.22: the VFS calls are in os
        from os import mount, umount  # type: ignore[attr-defined,no-redef]
    try:
        try:
            from vfs import VfsLfs2
        except ImportError:
            from os import VfsLfs2  # type: ignore[attr-defined,no-redef]
        # littlefs's mount only reads: the current mount is untouched until umount below
        fs = VfsLfs2(bdev, **params())  # type: ignore[abstract]  # the esp32 stubs call it abstract
    except (OSError, ImportError):  # FAT or blank partition; a port without VfsLfs2
        return False
    cwd = os.getcwd()
    umount(at)
    try:
        mount(fs, at)
    except Exception:  # never leave the board without its filesystem
        mount(bdev, at)  # as the firmware's _boot.py mounts it (defaults, autodetected)
        settle(at)
        raise
    settle(at)
    try:
        os.chdir(cwd)
    except OSError:
        pass
    tuned = (at, READ_SIZE, PROG_SIZE)
    return True


def settle(at="/"):
    """littlefs's fix-up on the filesystem mounted at `at` (see the module doc): a mkdir that can
    only fail (ENAMETOOLONG; the VFS refuses one of the mount point itself), after the fix-up.
    Any error is ignored: not littlefs, or a fix-up that failed (flash full) is retried at a write."""
    import os

    try:
        os.mkdir(at.rstrip("/") + "/" + "-" * (_NAME_MAX + 1))
    except OSError:
        pass


def tune_board(safe=False):
    """boot.py: remount the firmware's flash (`flashbdev.bdev` of the ESP32 port) with this
    geometry; in safe mode (`safe`) leave its mount as it is and only settle() it. False where
    there is none (other ports; the unix port outside the pseudo-board), and in safe mode."""
    try:
        import flashbdev  # type: ignore[import-not-found]  # the ESP32 port's frozen module
    except ImportError:
        return False
    bdev = getattr(flashbdev, "bdev", None)
    if bdev is None:  # flash too small for a filesystem
        return False
    # tools/pseudoboard.py's stand-in mounts its image at /flash, not at /
    at = getattr(flashbdev, "MOUNT_POINT", "/")
    if safe:
        settle(at)
        return False
    return remount(bdev, at)
