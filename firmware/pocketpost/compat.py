"""The only module that knows CPython from MicroPython.

Every other firmware module imports what differs between the two runtimes from here, so a
port difference is fixed in one place. Each shim says why it exists and catches the exception
that really occurs when the feature is missing. The functions here are MicroPython's; CPython's
own versions, where they differ, are in hostcompat.py, imported in their place under CPython only
(so this module's .mpy interns none of their names on a board).
"""

import os
import sys
import time

IS_MICROPYTHON = sys.implementation.name == "micropython"

try:  # MicroPython: const() folds at compile time; `_NAME = const(n)` costs no RAM.
    from micropython import const
except ImportError:  # CPython has no micropython module.
    from pocketpost.hostcompat import const  # type: ignore[assignment]  # CPython-only branch


# errno numbers we test for. MicroPython's errno lacks ENOSPC; these four are the same in Linux's
# and newlib's (ESP-IDF's) numbering.
ENOENT = const(2)
EEXIST = const(17)
ENOSPC = const(28)
EAGAIN = const(11)
# A blocking socket timeout is EAGAIN on unix but ETIMEDOUT on ESP32: both mean "timed out".
# ETIMEDOUT is not one number (Linux 110, newlib 116): the runtime's own errno says which.
TIMEOUT_ERRNOS = (EAGAIN, __import__("errno").ETIMEDOUT)

try:  # MicroPython has ticks_ms/ticks_diff (wrap-safe); CPython has monotonic.
    ticks_ms = time.ticks_ms  # type: ignore[attr-defined]
    ticks_diff = time.ticks_diff  # type: ignore[attr-defined]
    ticks_add = time.ticks_add  # type: ignore[attr-defined]
except AttributeError:  # CPython-only branch
    from pocketpost.hostcompat import ticks_add, ticks_diff, ticks_ms


# The board's watchdog period (board.py's default; config.py's PBKDF2 ceiling for a config without
# a "watchdog" section): here because both use it and board.py pulls in asyncio. Longest stall the
# event loop may legitimately have: one PBKDF2 login (~0.3-1 s on ESP32), an NTP query (1 s
# timeout), a flash erase (~0.1 s), a TLS handshake (~1-2 s, blocking in mbedTLS). 30 s leaves a
# wide margin and still catches a wedged loop.
WDT_TIMEOUT_MS = const(30000)


class ConfigError(Exception):
    """A mistake in the configuration, one line naming what to fix: config.py's checks of the
    file and client.py's of each account raise this one class (config.ConfigError and
    client.ConfigError are this), so a caller catches every config mistake in one place. It
    lives here so the client needs no config module in its heap (fetch.py drops config)."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg


def errno_of(exc):
    """The errno of an OSError: MicroPython puts it only in args[0]."""
    e = getattr(exc, "errno", None)
    if e is None and exc.args and isinstance(exc.args[0], int):
        e = exc.args[0]
    return e


# --- filesystem: MicroPython has no os.path, makedirs, replace or fsync ----------------------
# (Paths use "/" on every port: written as a literal, not a module name, which would be one more
# interned name in every process.)


def join(*parts):
    out = ""
    for p in parts:
        if not p:
            continue
        if p.startswith("/") or not out:
            out = p
        elif out.endswith("/"):
            out += p
        else:
            out += "/" + p
    return out


def stat_or_none(path):
    try:
        return os.stat(path)
    except OSError:
        return None


def exists(path):
    return stat_or_none(path) is not None


def isdir(path):
    st = stat_or_none(path)
    return st is not None and (st[0] & 0o170000) == 0o040000


def makedirs(path):
    """mkdir -p: creates each missing component; an existing directory is fine."""
    cur = ""
    for part in path.split("/"):
        if not part:
            if not cur:
                cur = "/"
            continue
        cur = join(cur, part) if cur else part
        if not isdir(cur):
            try:
                os.mkdir(cur)
            except OSError as e:
                if errno_of(e) != EEXIST:
                    raise


def listdir(path):
    return os.listdir(path)


def rename(src, dst):
    """Atomic rename over an existing file (POSIX rename(2); littlefs rename is atomic too).
    CPython on Windows would need os.replace; we only claim POSIX hosts."""
    os.rename(src, dst)


def sync_file(f):
    """Make a written file durable. On littlefs flush() commits the file; CPython needs fsync
    (hostcompat.sync_file). os.fsync exists on CPython only; os.sync exists on ESP32 but not on
    unix MicroPython."""
    f.flush()


def sync_dir(path):
    """A rename is durable on POSIX only once its directory is fsynced (CPython:
    hostcompat.sync_dir; MicroPython's unix port has no fsync at all). littlefs needs nothing."""


def free_bytes(path):
    """Free space on the filesystem holding path, and its block size. littlefs counts blocks in
    use best effort, never below the real use but sometimes above (shared copy-on-write blocks),
    and near full above the flash size; MicroPython's statvfs then reports block_count - used
    wrapped to a huge unsigned "free" (seen: 4294967293 free of 96 blocks). More free blocks than
    blocks is read as none: the store's reserve for deletions must not be given away on a guess."""
    st = os.statvfs(path)
    bfree = st[4]
    if bfree > st[2]:
        bfree = 0
    return st[0] * bfree, st[0]


def urandom(n):
    return os.urandom(n)


def now():
    """Seconds since the Unix epoch. MicroPython on a board may use the 2000 epoch; we always
    store Unix time so a store moved between host and board keeps its dates."""
    t = int(time.time())
    if IS_MICROPYTHON and time.gmtime(0)[0] == 2000:
        t += 946684800
    return t


def listdir_stat(path):
    """List a directory as (name, is_dir, size) tuples without a stat per entry where possible.
    Why: the store lists bucket directories and wants sizes; MicroPython's VfsLfs2 ilistdir gives
    (name, type, inode, size) for free, VfsPosix gives no size, CPython has no ilistdir."""
    out = []
    for e in os.ilistdir(path):  # type: ignore[attr-defined]  # (CPython: hostcompat.listdir_stat)
        is_dir = e[1] == 0x4000
        size = e[3] if len(e) > 3 else -1
        if size < 0 and not is_dir:
            size = os.stat(join(path, e[0]))[6]
        out.append((e[0], is_dir, size))
    return out



def iter_files(path):
    """Yield (name, size) for each file of a directory (subdirectories left out), as the listing
    goes: no list of the directory and no stat per entry where the port gives sizes (VfsLfs2's
    ilistdir). Why: the store checks every bucket against the index at boot in fixed RAM."""
    for e in os.ilistdir(path):  # type: ignore[attr-defined]  # (CPython: hostcompat.iter_files)
        if e[1] != 0x4000:
            size = e[3] if len(e) > 3 else -1
            yield e[0], size if size >= 0 else os.stat(join(path, e[0]))[6]


def forget(names):
    """Drop pocketpost modules (short names) from sys.modules and the package, so their code is
    collected once nothing else refers to them (a module's functions keep its globals alive; its
    qstrs stay interned); the next import loads them again. MicroPython only: on CPython a second
    copy of a module would give its classes a second identity, and its heap is not the point."""
    if not IS_MICROPYTHON:
        return
    import pocketpost

    for n in names:
        sys.modules.pop("pocketpost." + n, None)
        try:
            delattr(pocketpost, n)
        except (AttributeError, KeyError):  # not loaded (MicroPython raises KeyError)
            pass


def release_cold(held, names):
    """One user fewer of cold modules: held is their count of users (a one-item list, raised by
    each user as it starts); the last one out forgets names. A count that would go below 0 (a
    release too many) stays at 0."""
    held[0] -= 1
    if held[0] <= 0:
        held[0] = 0
        forget(names)


if not IS_MICROPYTHON:  # CPython's own versions of the above (hostcompat.py's docstring says why apart)
    from pocketpost.hostcompat import iter_files, listdir_stat, sync_dir, sync_file  # noqa: F811
