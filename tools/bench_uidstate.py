"""Flash written per fetched message by the UIDL state (uidstate.py) at 2,000 entries (not a test).

    .venv/bin/python tools/bench_uidstate.py [--before REV]

Runs itself under the real micropython binary on a littlefs image in RAM the size of an ESP32's
vfs partition (2 MiB of 4 KiB blocks; host_tests/dual/flashdev.py counts what reaches the flash).
The state is first filled to 1,990 entries (not counted), then the client's save pattern runs for
SESSIONS sessions of 10 fetched messages each: per message the pending entry is saved, the
message "committed", the stored entry saved; at the end of each session 10 old entries are
dropped (their DELE committed, as with policy delete) and the state saved, so the table stays
at 1,990-2,000 entries. Reported per fetched message:
  file bytes   - bytes passed to write() on the state's files (temp file and appends),
  flash bytes  - bytes programmed on the flash plus 4 KiB per block erase (littlefs copies,
                 metadata and block erases included),
  ms           - wall time of the measured part (indicative; the machine is shared).
--before REV also runs the same workload with firmware/pocketpost/uidstate.py as of git REV
(the rest of the firmware from this checkout), for a before/after figure in one run.

Figures (2026-12-01, this machine, `--before 069000e`; per fetched message at 1,990-2,000 entries):
  70-octet UIDs  before: file 360,439 B, flash 726,972 B (2,828 programs, 89.2 erases), 37 ms
                 after:  file     865 B, flash  14,930 B (   43 programs,  2.3 erases), 0.5 ms
  20-octet UIDs  before: file 150,939 B, flash 306,953 B (1,188 programs, 37.9 erases), 32 ms
                 after:  file     556 B, flash  14,316 B (   41 programs,  2.3 erases), 0.5 ms
After, the flash figure is mostly littlefs, not the journal: each flushed append rewrites the
file's last block (a copy of its used part plus one 4 KiB erase), and the client must flush twice
per message (pending, then stored); keeping the file open between saves measured the same.
"""

import os
import sys

IS_MP = sys.implementation.name == "micropython"
# Sessions measured: the old whole-file save costs the same for every message, so a few do; the
# journal's cost is amortised over compactions (one per ~300 messages at 2,000 entries), so 100.
SESSIONS_BEFORE = 5
SESSIONS = 100
PER_SESSION = 10
FILL = 1990


def _uid(i, width):
    u = b"%d." % i
    return u + b"x" * (width - len(u))


def _mp_main(label, width):
    import time

    sessions = SESSIONS_BEFORE if label.startswith("before") else SESSIONS
    import vfs
    from flashdev import FlashDev
    from pocketpost import clientend, compat, uidstate
    from pocketpost.uidstate import UidState

    dev = FlashDev(blocks=512)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), "/b")
    d = "/b/state"
    counted = [0]
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            counted[0] += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def counting_open(path, mode="r"):
        f = real_open(path, mode)
        return Counting(f) if ("w" in mode or "a" in mode) else f

    st = UidState(d, "acct", 2000)
    st.load()
    for i in range(FILL):
        st.add(_uid(i, width), 1700000000 + i)
    st.save()
    st = UidState(d, "acct", 2000).load()
    uidstate.open = counting_open
    p0, e0, b0 = dev.counts()
    t0 = time.ticks_ms()
    nxt = FILL
    old = 0
    sha = "a9993e364706816aba3e25717850c26c9cd0d89d"
    for s in range(sessions):
        for m in range(PER_SESSION):
            uid = _uid(nxt, width)
            st.set_pending(4000, sha, "1700000000.%d" % nxt, 1700000000, "f", uid)
            st.save()
            st.add(uid, 1700000000, "f")
            st.clear_pending()
            st.save()
            nxt += 1
        for m in range(PER_SESSION):
            st.mark(_uid(old, width), deleted=True)
            old += 1
        keep = lambda fs, flag, synth, seen, dele: None if dele else fs  # noqa: E731
        if hasattr(st, "retain"):  # a --before revision's uidstate.py
            st.retain(keep)
        elif not hasattr(clientend, "retain"):  # a --before revision's uidcompact.py
            st._cold("retain", keep)
        else:
            clientend.retain(st, keep)  # as the client does (clientend.finish)
        if st.dirty:
            st.save()
    dt = time.ticks_diff(time.ticks_ms(), t0)
    p1, e1, b1 = dev.counts()
    n = sessions * PER_SESSION
    flash = (b1 - b0) + (e1 - e0) * dev.bs
    size = os.stat(d + "/acct.uidl")[6]
    print("RESULT %s uid=%d: %d entries, state file %d bytes; per fetched message: file bytes %d, "
          "flash bytes %d (%d programs, %.1f erases), %.2f ms (%d messages)"
          % (label, width, len(st), size, counted[0] // n, flash // n, (p1 - p0) // n, (e1 - e0) / n, dt / n, n))
    del uidstate.open


def main():
    import shutil
    import subprocess
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "host_tests"))
    from helpers import MICROPYTHON

    trees = [("after", os.path.join(root, "firmware"))]
    tmp = None
    if "--before" in sys.argv:
        rev = sys.argv[sys.argv.index("--before") + 1]
        tmp = tempfile.mkdtemp(prefix="pp-bench-uid-")
        shutil.copytree(os.path.join(root, "firmware", "pocketpost"), os.path.join(tmp, "pocketpost"))
        old = subprocess.run(["git", "-C", root, "show", rev + ":firmware/pocketpost/uidstate.py"],
                             check=True, capture_output=True).stdout
        with open(os.path.join(tmp, "pocketpost", "uidstate.py"), "wb") as f:
            f.write(old)
        trees.insert(0, ("before " + rev, tmp))
    try:
        for label, fw in trees:
            for width in (70, 20):
                env = dict(os.environ)
                env["MICROPYPATH"] = fw + ":" + os.path.join(root, "host_tests", "dual") + ":.frozen"  # clientend imports client: asyncio
                r = subprocess.run([MICROPYTHON, "-X", "heapsize=16M", os.path.abspath(__file__), label, str(width)],
                                   env=env, capture_output=True, timeout=1800)
                out = r.stdout.decode(errors="replace")
                res = [l for l in out.splitlines() if l.startswith("RESULT")]
                print(res[0][7:] if res and r.returncode == 0 else "FAILED: " + out[-2000:] + r.stderr.decode()[-2000:])
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if IS_MP:
        _mp_main(sys.argv[1], int(sys.argv[2]))
    else:
        main()
