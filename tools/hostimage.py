"""CPython side of a littlefs flash image: check it, lock it, create it (host tools only).

Two rules every host tool follows through this module (ppadmin, run_host, pseudoboard):

- A tool never formats, truncates or rewrites a file it was not explicitly told to create.
  `create()` makes a new file (it refuses an existing one) and is the only way to a formatted image;
  `check()` refuses any other file that is not a littlefs image of BLOCK_SIZE blocks whose
  superblock block count matches the file's size. It reads the superblock from CPython, before
  micropython opens the file at all.
- One owner at a time: `ImageLock` takes an exclusive flock on the image file itself. The tool holds
  it while it works and hands the descriptor to its micropython child (pass_fds), so the lock lives
  as long as either process and the kernel drops it however they end (exit, Ctrl-C, SIGKILL).
  A second tool gets ImageError naming the holder (pid and command line, from /proc/locks).

Every refusal is an ImageError whose text is one line naming the file and what was expected.
"""

import errno
import fcntl
import os
import stat
import struct

BLOCK_SIZE = 4096  # ESP32 flash erase sector; tools/hostflash.py mounts with the same
MIN_BLOCKS = 16  # littlefs needs a few blocks for its metadata pairs; below 64 KiB no store fits
MAX_BLOCKS = 1 << 20  # 4 GiB: far beyond any board, catches a size typed in the wrong unit
_MAGIC = b"littlefs"  # littlefs v2 SPEC.md: the superblock name sits at offset 8 of block 0 or 1
_SUPER = struct.Struct("<IIII")  # after the name tag: version, block_size, block_count, name_max


class ImageError(Exception):
    """A one-line refusal naming the file and what was expected."""


def parse_size(text):
    """'2M', '512K', '2MiB' or a byte count -> bytes (a multiple of BLOCK_SIZE, in range)."""
    t = text.strip().upper().replace("IB", "").replace("B", "")
    mult = 1
    if t[-1:] in ("K", "M", "G"):
        mult = {"K": 1024, "M": 1024 * 1024, "G": 1024 * 1024 * 1024}[t[-1]]
        t = t[:-1]
    if not t.isdigit():
        raise ImageError("bad size %r: give bytes or a number with K or M, e.g. 2M" % text)
    size = int(t) * mult
    if size % BLOCK_SIZE or not MIN_BLOCKS <= size // BLOCK_SIZE <= MAX_BLOCKS:
        raise ImageError("bad size %r: a multiple of %d bytes from %d KiB to %d GiB"
                         % (text, BLOCK_SIZE, MIN_BLOCKS * BLOCK_SIZE // 1024, MAX_BLOCKS * BLOCK_SIZE >> 30))
    return size


def superblock(path):
    """(block_size, block_count) from the image's littlefs superblock; ImageError if there is none."""
    expected = "expected a littlefs flash image of %d-byte blocks (tools/ppadmin.py create NEW.img makes one)" % BLOCK_SIZE
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError("%s: no such file; %s" % (path, expected)) from None
    except OSError as e:
        raise ImageError("%s: %s" % (path, e.strerror)) from None
    if stat.S_ISCHR(st.st_mode):  # a board's USB serial port (or the pseudo-board's pty)
        raise ImageError("%s is a serial port (a board), not an image file: on a board use the REPL, e.g. "
                         ".venv/bin/mpremote connect %s exec \"from pocketpost import admin; admin.mailboxes()\" "
                         "(admin.add_user, admin.deliver, admin.check: docs/BOARD.md); export, import, backup "
                         "and restore take the port" % (path, path))
    if not os.path.isfile(path):
        raise ImageError("%s: not a regular file; %s" % (path, expected))
    size = st.st_size
    if size < 2 * BLOCK_SIZE or size % BLOCK_SIZE:
        raise ImageError("%s: %d bytes, not a whole number of %d-byte blocks; %s" % (path, size, BLOCK_SIZE, expected))
    best = None
    try:
        with open(path, "rb") as f:
            for blk in (0, 1):
                f.seek(blk * BLOCK_SIZE)
                head = f.read(20 + _SUPER.size)
                if len(head) < 20 + _SUPER.size or head[8:16] != _MAGIC:
                    continue
                rev = struct.unpack("<I", head[:4])[0]
                if best is None or ((rev - best[0]) & 0xFFFFFFFF) < 0x80000000:  # the newer of the pair
                    best = (rev,) + _SUPER.unpack(head[20:])
    except OSError as e:
        raise ImageError("%s: cannot read: %s" % (path, e.strerror)) from None
    if best is None:
        raise ImageError("%s: no littlefs superblock; %s" % (path, expected))
    _rev, version, bsize, bcount, _name_max = best
    if version >> 16 != 2:
        raise ImageError("%s: littlefs version %d.%d; expected 2.x" % (path, version >> 16, version & 0xFFFF))
    if bsize != BLOCK_SIZE or bcount != size // BLOCK_SIZE:
        raise ImageError("%s: littlefs of %d blocks of %d bytes in a file of %d bytes; expected %d blocks of %d bytes"
                         % (path, bcount, bsize, size, size // BLOCK_SIZE, BLOCK_SIZE))
    return bsize, bcount


def check(path):
    """ImageError unless PATH is a littlefs image of the expected geometry (read only)."""
    return superblock(path)


def is_blank(path):
    """True if every byte of PATH is 0xff: an erased flash image that no one has written yet."""
    blank = b"\xff" * 65536
    with open(path, "rb") as f:
        while True:
            b = f.read(65536)
            if not b:
                return True
            if b != blank[: len(b)]:
                return False


def _proc_holders(path):
    """'pid N (command line)' of who holds PATH's lock, or None if /proc cannot tell.

    /proc/locks names the process that took the flock, which may have ended or closed its copy
    while a child it started still holds it (run_host hands it to micropython): so prefer a
    process that has the file open now."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    lockpid = None
    want = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in lines:
        parts = line.split()
        if "FLOCK" not in parts or "->" in parts:
            continue
        i = parts.index("FLOCK")
        try:
            pid, dev = parts[i + 3], parts[i + 4]
        except IndexError:
            continue
        if dev.lower() == want or dev.split(":")[-1] == str(st.st_ino) and _same_dev(dev, st):
            lockpid = pid
            break
    openers = _openers(path)
    if lockpid in openers or (lockpid is not None and not openers):
        return "pid %s (%s)" % (lockpid, _cmdline(lockpid))
    if openers:
        return " and ".join("pid %s (%s)" % (p, _cmdline(p)) for p in openers[:2])
    return None


def _openers(path):
    """Pids (str, ascending) of other processes with PATH open, as far as /proc shows us."""
    real = os.path.realpath(path)
    me = str(os.getpid())
    out = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit() and p != me]
    except OSError:
        return out
    for pid in sorted(pids, key=int):
        fdd = "/proc/%s/fd" % pid
        try:
            for fd in os.listdir(fdd):
                if os.readlink(os.path.join(fdd, fd)) == real:
                    out.append(pid)
                    break
        except OSError:
            continue
    return out


def _same_dev(dev, st):
    try:
        ma, mi = dev.split(":")[:2]
        return int(ma, 16) == os.major(st.st_dev) and int(mi, 16) == os.minor(st.st_dev)
    except ValueError:
        return False


def _cmdline(pid):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return "ended; a child it started still has the image"
    args = [a.decode("utf-8", "replace") for a in args if a]
    if args:
        args[0] = os.path.basename(args[0])
    text = " ".join(os.path.basename(a.rstrip("/")) if "/" in a else a for a in args)  # paths: short
    return text if len(text) <= 120 else text[:117] + "..."


class ImageLock:
    """An exclusive flock on an image file, held by this process and any child given `fd`.

        with ImageLock(path) as lk:
            subprocess.run([...], pass_fds=(lk.fd,))
    """

    def __init__(self, path, fd=None):
        self.path = path
        self.fd = None
        if fd is not None:  # create(): a file we just made, locked before anyone can see it filled
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.fd = fd
            return
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ImageError("%s: no such file (expected a littlefs flash image; tools/ppadmin.py create %s makes one)"
                             % (path, path)) from None
        except OSError as e:
            raise ImageError("%s: %s" % (path, e.strerror)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = _proc_holders(path) or "another process"
                raise ImageError("%s is in use by %s: one process owns an image at a time; stop it first"
                                 % (path, who)) from None
            raise ImageError("%s: cannot lock: %s" % (path, e.strerror)) from None
        self.fd = fd

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing our descriptor drops the lock unless a child still holds it
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def create(path, size):
    """A new blank (erased, 0xff) image file of SIZE bytes, locked from the moment it exists;
    refuses a PATH that exists. Returns its ImageLock (the caller formats it: hostflash.py --mkfs)."""
    if size % BLOCK_SIZE or size // BLOCK_SIZE < MIN_BLOCKS:
        raise ImageError("%s: size %d is not a multiple of %d bytes of at least %d blocks" % (path, size, BLOCK_SIZE, MIN_BLOCKS))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileExistsError:
        raise ImageError("%s already exists: create makes a new image only (remove the file first if you mean it)"
                         % path) from None
    except OSError as e:
        raise ImageError("%s: cannot create: %s" % (path, e.strerror)) from None
    lock = ImageLock(path, fd)
    try:
        blank = b"\xff" * BLOCK_SIZE
        for _ in range(size // BLOCK_SIZE):
            os.write(fd, blank)
    except OSError as e:
        lock.release()
        os.unlink(path)
        raise ImageError("%s: cannot write: %s" % (path, e.strerror)) from None
    return lock
