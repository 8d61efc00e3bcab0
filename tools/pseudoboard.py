#!/usr/bin/env python3
"""A pseudo-board on the host: the unix micropython REPL behind a pty (socat), with a littlefs
image file mounted at /flash, so mpremote and tools/deploy.py work against it as against an ESP32.

    python tools/pseudoboard.py [--dir run/pseudoboard] [--boot]      # runs until Ctrl-C
    mpremote connect run/pseudoboard/tty resume fs ls :               # always `resume`

The image (default 2 MiB of 4 KiB blocks, the vfs partition of a 4 MiB ESP32) is created and
formatted on first use and persists in --dir. With --boot the pseudo-board behaves like a reset
board: it runs /flash/boot.py and /flash/main.py, and mpremote's Ctrl-C interrupts main.py.

`machine.reset()` (and `mpremote reset`, which calls it) ends the process and this tool boots the
image again as a reset board does (boot.py, main.py), on the same tty: `mpremote ... + reset`
works as docs/BOARD.md shows it for a board.

Differences from a board, all from the unix port: a soft reset (Ctrl-D, `mpremote soft-reset`, or
mpremote connecting without `resume`) ends the micropython process and with it socat (and the
tool); there is no network/WDT/ntptime
module; the heap is the unix port's (-X heapsize, 64-bit: 32-byte GC blocks vs 16 on ESP32);
no ROMFS partition unless --romfs-kib N gives it one (tools/hostrom.py; kept in the heap).
The file-backed block device is tools/hostflash.py (micropython side); CPython reads the same
image with littlefs-python (see `read_image`).
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostimage  # noqa: E402  (check, lock and create images from CPython)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")

BLOCK_SIZE = 4096  # ESP32 flash erase sector
BLOCK_COUNT = 512  # 2 MiB: the vfs partition of the generic 4 MiB ESP32 image
READY = "ready"  # written next to the image once /flash is mounted
RESET = "reset"  # written there by machine.reset() (`mpremote reset`) just before the process ends
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and main()'s KeyboardInterrupt on kill/timeout
STOP_WAIT_S = 5  # how long stop() waits for the micropython process to let go of the image
HEAPSIZE = "256k"  # a small heap, nearer a board than the unix default (~8 MiB)

# Runs inside micropython (unix port). Kept free of CPython-only syntax.
BOOT_SCRIPT = r'''
import os, sys
sys.path[:] = [TOOLS]
import hostflash  # the file-backed littlefs block device (tools/hostflash.py)
# formats a blank image it made, as the ESP32's first boot does. With BOOT, mounted as the ESP32
# firmware mounts it (VfsLfs2's defaults) and handed to boot.py as the port's `flashbdev` module
# does, so boot.py's remount (pocketpost.flashfs) runs as on a board; without, mounted as a board
# runs once boot.py has remounted it.
_bdev = hostflash.mount(IMAGE, "/flash", MKFS, not BOOT)
import machine as _machine  # the unix port's: no reset(). The stand-in adds one, as a board has:
class machine:  # the process ends leaving RESET_PATH, and pseudoboard.py boots the image again
    pass
for _k in dir(_machine):
    if not _k.startswith("__"):
        setattr(machine, _k, getattr(_machine, _k))
def _reset():
    open(RESET_PATH, "w").close()
    sys.exit(0)
machine.reset = staticmethod(_reset)
sys.modules["machine"] = machine
del _k, _machine, _reset
if BOOT:
    class flashbdev:  # stands in for the ESP32 port's frozen flashbdev module
        bdev = _bdev
        MOUNT_POINT = "/flash"
    sys.modules["flashbdev"] = flashbdev
if ROMFS_SIZE:
    import hostrom  # a ROMFS partition (tools/hostrom.py), mounted at /rom if it holds an image
    hostrom.install(ROMFS, ROMFS_SIZE)
os.chdir("/flash")
sys.path[:] = ["", "/rom", "/flash/lib", ".frozen"] if ROMFS_SIZE else ["", "/flash/lib", ".frozen"]
open(READY_PATH, "w").close()
print("pseudo-board: /flash mounted from", IMAGE)
if BOOT:
    for _script in ("boot.py", "main.py"):
        try:
            os.stat(_script)
        except OSError:
            continue
        exec(open(_script).read(), {"__name__": "__main__"})
'''


def tool(name):
    p = os.path.join(VENV_BIN, name)
    if os.path.exists(p):
        return p
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else name


def read_image(path, block_count=BLOCK_COUNT, block_size=BLOCK_SIZE):
    """{path: bytes} of every file in the image, read from CPython with littlefs-python.

    A power cut in the middle of a rename across directories leaves a pending move, and until
    littlefs resolves it (fs_mkconsistent, which a board's littlefs runs before its first write
    after mounting) a listing can hide a *neighbour* of the moved file in the source directory
    (seen: littlefs 2.x read-side, cf. littlefs-project/littlefs#937; the data is intact). So it
    is resolved here first, as the board would, on this copy of the image (the file is not
    changed)."""
    from littlefs import LittleFS

    with open(path, "rb") as f:
        data = f.read()
    fs = LittleFS(block_size=block_size, block_count=block_count, mount=False)
    fs.context.buffer = bytearray(data)
    fs.mount()
    try:
        fs.fs_mkconsistent()
    except Exception:  # no room for the fix-up (a full image): read it as it is
        pass
    out = {}
    for top, _dirs, files in fs.walk("/"):
        for name in files:
            p = top.rstrip("/") + "/" + name
            with fs.open(p, "rb") as fh:
                out[p] = fh.read()
    return out


class PseudoBoard:
    """socat + micropython -i <boot script>. start() returns once /flash is mounted."""

    def __init__(self, directory, image=None, boot=False, heapsize=HEAPSIZE, block_count=BLOCK_COUNT, romfs_kib=0):
        self.dir = os.path.abspath(directory)
        self.image = os.path.abspath(image or os.path.join(self.dir, "flash.img"))
        self.boot = boot
        # --romfs-kib: a ROMFS partition (DIR/romfs.img), held in the heap, which grows by its size
        self.romfs_kib = romfs_kib
        self.romfs = os.path.join(self.dir, "romfs.img")
        self.heapsize = "%dk" % (int(heapsize.rstrip("kK")) + romfs_kib) if romfs_kib else heapsize
        self.block_count = block_count
        self.tty = os.path.join(self.dir, "tty")
        self.log = os.path.join(self.dir, "board.log")
        self.proc = None
        self.lock = None
        self.mkfs = False

    def _write_boot(self):
        path = os.path.join(self.dir, "pseudoboot.py")
        head = ("IMAGE = %r\nTOOLS = %r\nREADY_PATH = %r\nRESET_PATH = %r\nBOOT = %r\nMKFS = %r\nROMFS = %r\n"
                "ROMFS_SIZE = %d\n") % (
            self.image, os.path.join(ROOT, "tools"), os.path.join(self.dir, READY), os.path.join(self.dir, RESET),
            self.boot, self.mkfs, self.romfs, self.romfs_kib * 1024)
        with open(path, "w") as f:
            f.write(head + BOOT_SCRIPT)
        return path

    def start(self, timeout=10):
        if not shutil.which("socat"):
            raise RuntimeError("socat not found (apt-get install socat)")
        os.makedirs(self.dir, exist_ok=True)
        if not os.path.exists(self.image):
            hostimage.create(self.image, self.block_count * BLOCK_SIZE).release()
        # One owner: held while the board runs (socat and micropython inherit it). A blank image
        # (made here, never written) is formatted at first mount; anything else must be littlefs.
        self.lock = hostimage.ImageLock(self.image)
        try:  # any way out but up (a refused image, a Ctrl-C or SIGTERM) stops what was started
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout):
        self.mkfs = hostimage.is_blank(self.image)
        if not self.mkfs:
            hostimage.check(self.image)
        for stale in (self.tty, os.path.join(self.dir, READY), os.path.join(self.dir, RESET)):
            if os.path.lexists(stale):
                os.unlink(stale)
        boot = self._write_boot()
        mp = tool("micropython")
        for arg in (mp, boot):
            if any(c in arg for c in " ,!'\":"):
                raise RuntimeError("socat EXEC cannot take this path: %r" % arg)
        exec_cmd = "%s -X heapsize=%s -i %s" % (mp, self.heapsize, boot)
        env = dict(os.environ)
        env["MICROPYPATH"] = ".frozen"  # only what is on the image: nothing from the checkout
        with open(self.log, "ab") as logf:
            self._spawn(["socat", "PTY,link=%s,raw,echo=0" % self.tty,
                         "EXEC:%s,pty,raw,echo=0,isig=1,stderr,setsid,ctty" % exec_cmd],
                        stdout=logf, stderr=logf, cwd=self.dir, env=env, start_new_session=True,
                        pass_fds=(self.lock.fd,))
        ready = os.path.join(self.dir, READY)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(ready) and os.path.exists(self.tty):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("pseudo-board did not come up; see %s" % self.log)

    def _spawn(self, cmd, **popen_args):
        """self.proc = Popen(cmd), SIGINT and SIGTERM held off until it is set: one whose handler
        raised inside Popen after the fork left the child running and nobody's (Popen does not
        stop it), a socat and micropython found after a suite run. Held by handlers that note
        them, not by a signal mask: another thread (pytest-xdist's) takes a signal its mask does
        not block, and the main thread's handler still runs at once. One noted is raised again
        once self.proc is set, for start() to stop it. (Outside the main thread, where no handler
        runs, there is nothing to hold.)"""
        came = []
        held = {}
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                held[sig] = signal.signal(sig, lambda sig, _frame: came.append(sig))
        try:
            self.proc = subprocess.Popen(cmd, **popen_args)
        finally:
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # (none lost while the handlers go back)
            for sig, handler in held.items():
                signal.signal(sig, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if came:
                signal.raise_signal(came[0])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def was_reset(self):
        """True once the board has ended by machine.reset() (`mpremote reset`), not a soft reset."""
        return os.path.exists(os.path.join(self.dir, RESET))

    def wait(self, timeout=None):
        return self.proc.wait(timeout)

    def stop(self):
        """socat passes SIGTERM on to micropython; its pty closing ends it too."""
        if self.proc is None:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self.lock.release()
        self.lock = None
        # socat has exited, but micropython (its child, which inherited the image lock) may still
        # be on its way out: return only once the image is free for the next owner (bounded).
        deadline = time.monotonic() + STOP_WAIT_S
        while True:
            try:
                hostimage.ImageLock(self.image).release()
                break
            except hostimage.ImageError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        self.lock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.path.join(ROOT, "run", "pseudoboard"))
    ap.add_argument("--image", help="littlefs image file (default DIR/flash.img)")
    ap.add_argument("--boot", action="store_true", help="run /flash/boot.py and main.py like a reset board")
    ap.add_argument("--fresh", action="store_true", help="start from an empty image")
    ap.add_argument("--heapsize", default=HEAPSIZE)
    ap.add_argument("--romfs-kib", type=int, default=0,
                    help="give the board a ROMFS partition of this size (DIR/romfs.img; tools/hostrom.py)")
    a = ap.parse_args(argv)
    pb = PseudoBoard(a.dir, a.image, a.boot, a.heapsize, romfs_kib=a.romfs_kib)
    try:
        if a.fresh and os.path.exists(pb.image):
            with hostimage.ImageLock(pb.image):  # not while another board or tool has it
                os.unlink(pb.image)
    except hostimage.ImageError as e:
        sys.exit("pseudoboard: %s" % e)
    def on_term(_sig, _frame):  # `kill`/`timeout` must not leave socat and micropython behind
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Started in the background by a non-interactive shell (`tools/pseudoboard.py &`, a script),
    # it inherits SIGINT ignored: Ctrl-C after `fg` or `kill -INT` then did nothing (run_host.py's
    # reason too)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:  # start inside: a Ctrl-C while start() polls for the board left socat and micropython running
        try:
            pb.start()
        except hostimage.ImageError as e:
            sys.exit("pseudoboard: %s" % e)
        print("pseudo-board up: %s (image %s)" % (pb.tty, pb.image))
        print("  mpremote connect %s resume fs ls :" % pb.tty)
        print("  make deploy BOARD=host PORT=%s" % pb.tty)
        print("Ctrl-C to stop; a soft reset ends it too; machine.reset() (mpremote reset) boots it again.")
        while True:
            while pb.alive():
                time.sleep(0.2)
            if not pb.was_reset():
                print("pseudo-board ended (soft reset or exit)")
                break
            # machine.reset() (`mpremote reset`): as a board, it boots: boot.py, then main.py
            pb.stop()
            pb = PseudoBoard(a.dir, a.image, True, a.heapsize, romfs_kib=a.romfs_kib)
            pb.start()
            print("pseudo-board reset: booting boot.py and main.py from the image")
    except KeyboardInterrupt:
        pass
    finally:
        pb.stop()


if __name__ == "__main__":
    main()
