"""Flash written per fetched message by the UIDL state (uidstate.py) at 2,000 entries (not a test).

    .venv/bin/python tools/bench_uidstate.py [--before REV] [--two-saves] [--lfs-defaults] [--ring N]

Runs itself under the real micropython binary on a littlefs image in RAM the size of an ESP32's
vfs partition (2 MiB of 4 KiB blocks; host_tests/dual/flashdev.py counts what reaches the flash).
The state is first filled to 1,990 entries (not counted), then the client's save pattern runs for
SESSIONS sessions of 10 fetched messages each: per message the pending entry is saved, the
message "committed", the stored entry recorded; at the end of each session 10 old entries are
dropped (their DELE committed, as with policy delete) and the state saved, so the table stays
at 1,990-2,000 entries. Reported per fetched message:
  file bytes   - bytes passed to write() on the state's files (temp file and appends),
  flash bytes  - bytes programmed on the flash plus 4 KiB per block erase (littlefs copies,
                 metadata and block erases included),
  ms           - wall time of the measured part (indicative; the machine is shared).
By default it measures what a board does: one save per message, as the client does
(clientget.download: the stored entry's `S` rides with the next message's `P`, the last one's
with the session's end), on a flash mounted with pocketpost.flashfs's geometry (boot.py's
remount: 256 B caches, so an inline limit of 256 B). --two-saves saves twice per message (P, then
S: the pattern the first figures were taken with; until w18 the default); --lfs-defaults mounts
with VfsLfs2's defaults (128 B caches: safe mode, hostflash without lfs_params) instead. (--once
and --board, the old names of today's default, are still accepted and change nothing.)
--ring N measures a prototype of the write pattern of the layout proposed in
docs/UIDSTATE-FLASH.md (not the firmware's): each per-message save rewrites one of N
small slot files whole (its new records: the last message's S, this one's P: inline in the
directory's metadata, one metadata commit), and every N+1-th save, or a session end with drops,
is the journal append of today's save (UidState.save) with everything since the last one.
--before REV also runs the same workload with firmware/pocketpost/uidstate.py as of git REV
(the rest of the firmware from this checkout), for a before/after figure in one run.

Figures (2026-12-01, this machine, `--before 069000e`; per fetched message at 1,990-2,000 entries):
  70-octet UIDs  before: file 360,439 B, flash 726,972 B (2,828 programs, 89.2 erases), 37 ms
                 after:  file     865 B, flash  14,930 B (   43 programs,  2.3 erases), 0.5 ms
  20-octet UIDs  before: file 150,939 B, flash 306,953 B (1,188 programs, 37.9 erases), 32 ms
                 after:  file     556 B, flash  14,316 B (   41 programs,  2.3 erases), 0.5 ms
After, the flash figure is mostly littlefs, not the journal: each flushed append rewrites the
file's last block (a copy of its used part plus one 4 KiB erase), and the client then flushed
twice per message (pending, then stored); keeping the file open between saves measured the same.
Those were the two-save pattern on VfsLfs2's defaults (today: --two-saves --lfs-defaults). The
client saves once per message, on the board's geometry: today's default; figures of each pattern
and of --ring in docs/UIDSTATE-FLASH.md.
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
_INLINE = 256  # littlefs's inline limit under flashfs's geometry (4 x 64 B cache)


def _uid(i, width):
    u = b"%d." % i
    return u + b"x" * (width - len(u))


def _mp_main(label, width, opts):
    import time

    sessions = SESSIONS_BEFORE if label.startswith("before") else SESSIONS
    import vfs
    from flashdev import FlashDev
    from pocketpost import clientend, compat, uidstate
    from pocketpost.uidstate import UidState

    once = "two-saves" not in opts
    ring = 0
    for o in opts:
        if o.startswith("ring"):
            ring = int(o[4:])
    dev = FlashDev(blocks=512)
    vfs.VfsLfs2.mkfs(dev)
    if "lfs-defaults" not in opts:
        from pocketpost import flashfs

        vfs.mount(vfs.VfsLfs2(dev, **flashfs.params()), "/b")
    else:
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
    slot = [0]
    inslot = {}

    def ring_save(end=False):
        # the prototype's save: a slot rewritten whole while one is free (the records since the
        # last save: the entry added, the pending line), else today's journal append (a fold)
        if slot[0] >= ring or (end and st._ne):
            st.save()
            slot[0] = 0
            inslot.clear()
            return
        ents = b""
        for key in st.added:
            if key not in inslot:  # on file in an earlier slot since the last fold
                ents += st._entry_line(key)
                inslot[key] = None
        pend = st._pending_line()
        # a slot's header (Q nonce base seq crc) is ~32 B; one over littlefs's inline limit
        # (_INLINE) would take a block (an erase): then two slots, the entries' first
        parts = [ents, pend] if ents and 32 + len(ents) + len(pend) > _INLINE else [ents + pend]
        for body in parts:
            if slot[0] >= ring:
                st.save()  # (the fold: the entries in the slots and this one's pending line)
                slot[0] = 0
                inslot.clear()
                break
            f = counting_open(d + "/acct.u%d" % slot[0], "wb")
            f.write(b"Q 1700000000 123456 %d 00000000\n" % slot[0])
            f.write(body)
            f.flush()
            f.close()
            slot[0] += 1
        st._pend = False  # (the journal's next fold still carries every entry added since)
        st.dirty = False

    for s in range(sessions):
        for m in range(PER_SESSION):
            uid = _uid(nxt, width)
            st.set_pending(4000, sha, "1700000000.%d" % nxt, 1700000000, "f", uid)
            if ring:
                ring_save()
            else:
                st.save()
            st.add(uid, 1700000000, "f")
            st.clear_pending()
            if not once and not ring:
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
        if ring:
            ring_save(True)
        elif st.dirty:
            st.save()
    dt = time.ticks_diff(time.ticks_ms(), t0)
    p1, e1, b1 = dev.counts()
    n = sessions * PER_SESSION
    flash = (b1 - b0) + (e1 - e0) * dev.bs
    size = os.stat(d + "/acct.uidl")[6]
    label += "".join(" " + o for o in opts)
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

    opts = [o for o in ("--two-saves", "--lfs-defaults") if o in sys.argv]
    if "--ring" in sys.argv:
        opts.append("--ring" + sys.argv[sys.argv.index("--ring") + 1])
    opts = [o[2:] for o in opts]
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
                r = subprocess.run([MICROPYTHON, "-X", "heapsize=16M", os.path.abspath(__file__), label, str(width)] + opts,
                                   env=env, capture_output=True, timeout=1800)
                out = r.stdout.decode(errors="replace")
                res = [l for l in out.splitlines() if l.startswith("RESULT")]
                print(res[0][7:] if res and r.returncode == 0 else "FAILED: " + out[-2000:] + r.stderr.decode()[-2000:])
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if IS_MP:
        _mp_main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
    else:
        main()
