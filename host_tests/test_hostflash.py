"""tools/hostflash.py's block device holds the block being written in RAM (the "open block"): a
killed micropython must still leave every file littlefs committed in the image, as a power cut
leaves a board's flash, and an unmount must leave all of it.

The workload (under micropython, the image mounted by hostflash as every host tool mounts it): a
few files of several blocks, then many small files in one directory (inline in metadata: their
commits fill metadata blocks, which compact into newly erased blocks, so the last commits land in
the open block and only the sync after each commit puts them in the file), a removal, a rename. The reader is CPython's littlefs-python on the image file.
"""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from helpers import MICROPYTHON, ROOT

TOOLS = os.path.join(ROOT, "tools")
sys.path.insert(0, TOOLS)
import pseudoboard  # noqa: E402

BLOCKS = 256  # 1 MiB image
SMALL = 120  # small files: enough commits for several metadata compactions
WAIT_S = 60  # bounded wait for the workload to report it is done


@pytest.fixture(params=["viper", "bytecode"])
def dev_env(request):
    """The environment of a micropython running the device: its readblocks / writeblocks as
    viper code (what the pinned micropython runs) or as the bytecode a MicroPython without the
    emitter keeps (POCKETPOST_HOSTFLASH_BYTECODE)."""
    env = dict(os.environ)
    env.pop("POCKETPOST_HOSTFLASH_BYTECODE", None)
    if request.param == "bytecode":
        env["POCKETPOST_HOSTFLASH_BYTECODE"] = "1"
    return env

WORKLOAD = r"""
import os, sys
os.mkdir("/flash/d")
for n, size in (("one", 3000), ("multi", 50000), ("gone", 9000), ("moved", 20000)):
    f = open("/flash/" + n, "wb")
    block = bytes((i * 7 + len(n)) & 0xFF for i in range(1000))
    for k in range(size // 1000):
        f.write(block)
    f.close()
for i in range(%d):
    f = open("/flash/d/s%%d" %% i, "wb")
    f.write(b"small %%d " %% i * 7)
    f.close()
os.remove("/flash/gone")
os.rename("/flash/moved", "/flash/d/moved")
f = open("/flash/d/last", "wb")
f.write(b"the last commit")
f.close()
print("written")
if sys.argv[-1] == "wait":
    sys.stdin.readline()  # until killed (or stdin closes)
"""


def expected():
    out = {"/d/s%d" % i: b"small %d " % i * 7 for i in range(SMALL)}
    for n, size, at in (("one", 3000, "/one"), ("multi", 50000, "/multi"), ("moved", 20000, "/d/moved")):
        block = bytes((i * 7 + len(n)) & 0xFF for i in range(1000))
        out[at] = block * (size // 1000)
    out["/d/last"] = b"the last commit"
    return out


def _image_and_script(tmp_path):
    img = str(tmp_path / "flash.img")
    with open(img, "wb") as f:
        f.write(b"\xff" * (BLOCKS * 4096))  # blank (erased), as tools/hostimage.py creates it
    script = tmp_path / "work.py"
    script.write_text(WORKLOAD % SMALL)
    return img, str(script)


def test_killed_process_leaves_every_committed_file(tmp_path, dev_env):
    img, script = _image_and_script(tmp_path)
    p = subprocess.Popen([MICROPYTHON, os.path.join(TOOLS, "hostflash.py"), img, "--mkfs", "-f", script, "wait"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dev_env)
    try:
        deadline = time.monotonic() + WAIT_S
        out = b""
        while b"written" not in out and time.monotonic() < deadline:
            if select.select([p.stdout], [], [], 1.0)[0]:
                chunk = p.stdout.read1(100)
                if not chunk:  # ended early
                    break
                out += chunk
        assert b"written" in out, out + (p.stderr.read() if p.poll() is not None else b"")
        p.send_signal(signal.SIGKILL)  # no unmount, no flush: a power cut after the last close
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
    assert pseudoboard.read_image(img, block_count=BLOCKS) == expected()


def test_unmount_leaves_everything(tmp_path, dev_env):
    img, script = _image_and_script(tmp_path)
    r = subprocess.run([MICROPYTHON, os.path.join(TOOLS, "hostflash.py"), img, "--mkfs", "-f", script],
                       capture_output=True, timeout=WAIT_S, env=dev_env)
    assert r.returncode == 0 and b"written" in r.stdout, r.stdout + r.stderr
    assert pseudoboard.read_image(img, block_count=BLOCKS) == expected()


ORDER = r"""
import sys
sys.path.insert(0, %r)
from hostflash import FileBlockDev
img = %r
d = FileBlockDev(img)
look = open(img, "rb")  # what a power cut now would leave


def block(n):
    look.seek(n * 4096)
    return look.read(4096)


before = block(1)
d.ioctl(6, 1)  # erase block 1: the open block
d.writeblocks(1, b"A" * 256, 0)
print("held", block(1) == before)  # nothing of it in the file yet
d.writeblocks(2, b"B" * 32, 64)  # a program elsewhere: block 1 goes first, in order
print("ordered", block(1) == b"A" * 256 + b"\xff" * 3840, block(2)[64:96] == b"B" * 32)
d.writeblocks(1, b"C" * 32, 256)
d.ioctl(3, 0)  # sync
print("synced", block(1) == b"A" * 256 + b"C" * 32 + b"\xff" * 3808)
buf = bytearray(32)
d.readblocks(1, buf, 256)
print("read", buf == b"C" * 32)
"""


def test_open_block_reaches_the_file_in_order(tmp_path, dev_env):
    """Before a program to another block, and at a sync, the open block goes to the file: the
    image is every operation up to some point, never a later one without an earlier one."""
    img = str(tmp_path / "flash.img")
    with open(img, "wb") as f:
        f.write(b"\x00" * (4 * 4096))  # not blank: an erase must show
    script = tmp_path / "order.py"
    script.write_text(ORDER % (TOOLS, img))
    r = subprocess.run([MICROPYTHON, str(script)], capture_output=True, timeout=WAIT_S, env=dev_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.decode().split("\n")[:4] == ["held True", "ordered True True", "synced True", "read True"]


STEPS = r"""
import os, sys
def put(path, data, times):
    f = open(path, "wb")
    for k in range(times):
        f.write(data)
    f.close()
    print("closed", path[6:])
os.mkdir("/flash/d")
print("closed /d")
for n, size in (("one", 3000), ("multi", 50000), ("gone", 9000), ("moved", 20000)):
    put("/flash/" + n, bytes((i * 7 + len(n)) & 0xFF for i in range(1000)), size // 1000)
for i in range(%d):
    put("/flash/d/s%%d" %% i, b"small %%d " %% i * 7, 1)
os.remove("/flash/gone")
print("removed /gone")
os.rename("/flash/moved", "/flash/d/moved")
print("renamed /moved")
put("/flash/d/last", b"the last commit", 1)
sys.stdin.readline()
"""


def test_killed_at_any_point_leaves_a_consistent_image(tmp_path, dev_env):
    """SIGKILL at spread-out moments of the workload (not only after it): the image always mounts,
    each file in it is empty (created, nothing committed yet) or whole, every file closed before
    the kill is there whole (unless removed or renamed after), and the rename is never half
    done: the image is a state littlefs passed through, as the docstring of FileBlockDev says."""
    full = expected()
    full["/gone"] = bytes((i * 7 + 4) & 0xFF for i in range(1000)) * 9
    full["/moved"] = full["/d/moved"]
    script = tmp_path / "steps.py"
    script.write_text(STEPS % SMALL)
    for k in range(12):
        img = str(tmp_path / ("flash%d.img" % k))
        with open(img, "wb") as f:
            f.write(b"\xff" * (BLOCKS * 4096))
        p = subprocess.Popen([MICROPYTHON, os.path.join(TOOLS, "hostflash.py"), img, "--mkfs", "-f", str(script)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dev_env)
        try:
            time.sleep(0.025 * (k + 1))  # the moment of the cut (not a synchronisation: any moment will do)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
            out = p.stdout.read().decode()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
            for s in (p.stdin, p.stdout, p.stderr):
                s.close()
        done = [ln.split(" ", 1)[1] for ln in out.splitlines() if " " in ln]
        try:
            files = pseudoboard.read_image(img, block_count=BLOCKS)
        except Exception as e:
            if "/d" in done:
                raise AssertionError("cut %d (after %s): the image does not mount: %s" % (k, done[-1:], e))
            continue  # cut before the first commit after the format
        for path, data in files.items():
            assert data == b"" or data == full[path], (k, path, len(data))
        for path in done:
            if path.startswith("/d/s") or path in ("/one", "/multi", "/d/last"):
                assert files.get(path) == full[path], (k, path, done[-1:])
        assert not ("/moved" in files and "/d/moved" in files), k
        if "/moved" in done and "renamed" not in out:
            assert "/moved" in files or "/d/moved" in files, k


LOCKED = r"""
import gc, micropython, os, sys
sys.path.insert(0, %r)
import hostflash
bdev = hostflash.mount(%r, "/flash", True)
def data(i):
    return bytes((k * 13 + i) & 0xFF for k in range(256)) * 20
for i in range(4):  # each close programs new blocks: erase, programs, read-backs, sync
    f = open("/flash/f%%d" %% i, "wb")
    f.write(data(i))
    micropython.heap_lock()  # as in gc.collect() running the finaliser of a file left open
    try:
        f.close()
    finally:
        micropython.heap_unlock()
def leave_open():  # the REPL habit: json.dump(cfg, open("config.json", "w"))
    open("/flash/left", "wb").write(data(9))
leave_open()
for _ in range(3):
    gc.collect()
hostflash.umount(bdev)
print("done")
"""


def test_files_closed_with_the_heap_locked_keep_their_data(tmp_path, dev_env):
    """littlefs calls the block device from a GC finaliser too (a file left open, closed inside
    gc.collect(), heap locked): the pseudo-board's device must allocate nothing there. It used to
    raise MemoryError into littlefs: the file's data was lost (the pseudo-board could crash)."""
    img = str(tmp_path / "flash.img")
    with open(img, "wb") as f:
        f.write(b"\xff" * (64 * 4096))
    script = tmp_path / "locked.py"
    script.write_text(LOCKED % (TOOLS, img))
    r = subprocess.run([MICROPYTHON, str(script)], capture_output=True, timeout=WAIT_S, env=dev_env)
    assert r.returncode == 0 and r.stdout == b"done\n" and b"MemoryError" not in r.stderr, r.stdout + r.stderr
    files = pseudoboard.read_image(img, block_count=64)
    for i in range(4):
        assert files["/f%d" % i] == bytes((k * 13 + i) & 0xFF for k in range(256)) * 20
    assert files.get("/left") == bytes((k * 13 + 9) & 0xFF for k in range(256)) * 20


CALLS = r"""
import micropython, sys
sys.path.insert(0, %r)
import hostflash
d = hostflash.FileBlockDev(%r)
rd = bytearray(256)
small = bytearray(64)
data = bytes(range(256))
d.ioctl(6, 1)  # erase block 1: the open block
d.writeblocks(1, data, 0)
d.ioctl(3, 0)  # sync: block 1 is in the file, still open
d.writeblocks(2, data, 256)  # another block: programmed to the file at once
def calls(k):
    while k:
        d.writeblocks(1, data, 256 + k * 256)  # programs into the open block
        d.readblocks(1, rd, 256 + k * 256)  # littlefs's read-back of what it programmed
        d.readblocks(1, small, 64)
        d.readblocks(2, rd, 256)  # a block in the file
        d.ioctl(4, 0)
        d.ioctl(5, 0)
        d.ioctl(3, 0)  # nothing pending: a sync that writes nothing
        k -= 1
def allocated(k):  # (a function: a new global would grow the module's dict)
    t = micropython.mem_total()
    calls(k)
    return micropython.mem_total() - t
allocated(2)  # warm: the file's first seeks and reads
print("allocated", allocated(12))
print("read", rd == data, small == data[64:128])
print("viper", hostflash.VIPER)
"""


def test_block_device_calls_allocate_nothing(tmp_path, dev_env):
    """littlefs calls readblocks, writeblocks and ioctl ~10,000 times per MiB it writes: those
    calls allocate nothing, not even their own frame (MicroPython puts a bytecode function's frame
    on the heap past ~11 words: arguments, locals, value stack, 3 words per `try`). A heap frame in
    readblocks (a `try` there), then the one in the method it moved to, cost a read-back ~6 us
    instead of ~0.3 us (the fetch into an image 0.69 -> 0.65 of poplib's speed)."""
    img = str(tmp_path / "flash.img")
    with open(img, "wb") as f:
        f.write(b"\xff" * (4 * 4096))
    script = tmp_path / "calls.py"
    script.write_text(CALLS % (TOOLS, img))
    r = subprocess.run([MICROPYTHON, str(script)], capture_output=True, timeout=WAIT_S, env=dev_env)
    assert r.returncode == 0, r.stdout + r.stderr
    viper = "POCKETPOST_HOSTFLASH_BYTECODE" not in dev_env
    assert r.stdout.decode().split("\n")[:3] == ["allocated 0", "read True True", "viper %s" % viper], r.stdout + r.stderr


def test_bench_client_help_is_no_revision():
    """tools/bench_client.py (the fetch benchmark through this device) took --help for a git
    revision and crashed with a tar error after starting Dovecot; now -h/--help print its
    docstring, and another unknown option is refused before anything starts."""
    bench = os.path.join(TOOLS, "bench_client.py")
    for opt in ("--help", "-h"):
        r = subprocess.run([sys.executable, bench, opt], capture_output=True, timeout=WAIT_S)
        assert r.returncode == 0 and r.stdout.startswith(b"Benchmark of the POP3 client"), r.stdout + r.stderr
        assert b"--lfs-nofsync" in r.stdout and b"tar" not in r.stderr
    r = subprocess.run([sys.executable, bench, "--round", "3"], capture_output=True, timeout=WAIT_S)
    assert r.returncode == 2 and b"unknown option --round" in r.stderr, r.stdout + r.stderr


def test_bench_client_starts_from_an_earlier_fetch(tmp_path):
    """tools/bench_client.py measures by default the fetch a user makes every time after the
    first (the store and the UIDL state exist: make_template's, the fetch of an empty mailbox),
    --first-run the fetch that makes them. Both fetch every message of the mailbox; from a
    template the fetch reports its CPU and, into littlefs, the image's syncs (each an fsync of
    the image, timed apart by the bench), and it makes fewer of them than the first run (no
    store or state to create)."""
    from dovecot import Dovecot

    import bench_client as bc

    d = Dovecot(users={"alice": bc.PW})
    d.start()
    try:
        mpy = bc.build_mpy(None, str(tmp_path / "tree"))
        run = str(tmp_path / "run")
        os.makedirs(run)
        d.seed("alice", [])
        tpl = {lfs: bc.make_template(d, run, mpy, lfs, str(tmp_path / ("tpl%d" % lfs))) for lfs in (False, True)}
        assert os.path.isdir(os.path.join(tpl[False], "store", "alice"))
        assert os.path.isfile(os.path.join(tpl[True], "flash.img"))
        d.seed("alice", [bc.message(2000), bc.message(3000)])
        for lfs in (False, True):
            syncs = []
            for t in (None, tpl[lfs]):
                assert bc.upy_timed(d, run, mpy, lfs, template=t) > 0
                assert bc.CPU.pop() > 0
                syncs.append(bc.FSYNC.pop()[0])
                if lfs:
                    files = pseudoboard.read_image(os.path.join(run, "flash.img"), block_count=bc.IMAGE_BYTES // 4096)
                    stored = [p for p in files if p.startswith("/mail/alice/b") and p.endswith(".p")]
                else:
                    stored = [n for _, _, fs in os.walk(os.path.join(run, "store", "alice")) for n in fs
                              if n.endswith(".p")]
                assert len(stored) == 2, stored
            if lfs:
                assert 0 < syncs[1] < syncs[0], syncs
            else:
                assert syncs == [-1, -1]
    finally:
        d.stop()
