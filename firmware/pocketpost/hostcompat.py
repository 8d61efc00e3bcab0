"""CPython's side of compat.py: the shims only CPython runs (MicroPython never loads this module).

compat.py imports these under CPython, in place of its MicroPython versions. They live apart so
that compat's .mpy holds none of their names (os.scandir, st_size, O_RDONLY, ...): every name a
loaded module holds is interned when it loads and never freed, in every MicroPython process.
"""

import os
import time


def const(x):  # MicroPython's micropython.const folds at compile time; here it is the value
    return x


def ticks_ms():  # MicroPython's time.ticks_ms (wrap-safe with ticks_diff); CPython: monotonic
    return int(time.monotonic() * 1000)  # type: ignore[attr-defined]  # (the ESP32 stubs lack it)


def ticks_diff(a, b):
    return a - b


def ticks_add(a, b):
    return a + b


def sync_file(f):
    """compat.sync_file: flush, then fsync (a POSIX file is durable only then)."""
    f.flush()
    try:
        os.fsync(f.fileno())
    except (OSError, AttributeError, ValueError):
        pass


def sync_dir(path):
    """compat.sync_dir: a rename is durable on POSIX only once its directory is fsynced."""
    try:
        fd = os.open(path, os.O_RDONLY)  # type: ignore[attr-defined]  # (the ESP32 stubs lack it)
    except (OSError, AttributeError):
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def listdir_stat(path):
    """compat.listdir_stat: (name, is_dir, size) tuples from os.scandir (CPython has no ilistdir)."""
    out = []
    for e in os.scandir(path):
        is_dir = e.is_dir()
        out.append((e.name, is_dir, 0 if is_dir else e.stat().st_size))
    return out


def iter_files(path):
    """compat.iter_files: (name, size) of each file, from os.scandir."""
    for e in os.scandir(path):
        if not e.is_dir():
            yield e.name, e.stat().st_size
