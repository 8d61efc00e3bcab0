"""Power-cut suite for the store, under the real micropython binary on littlefs (VfsLfs2).

Run by pytest (test_power_cuts below runs this same file under micropython), or directly:
    MICROPYPATH=firmware:host_tests/dual .venv/bin/micropython -X heapsize=16M host_tests/test_store_powercut.py
A workload of deliveries (small and multi-block), index appends (merges at lock), deletion
commits (one deletes the highest UID) and an index rebuild runs on a simulated flash that cuts
the power at the N-th program/erase operation, in three modes (raise, drop, torn). For each N:
remount the image as it was when power died, open the store and check that no acknowledged
message is lost or changed, none is duplicated or partial, UIDs are unique and unchanged, the
index agrees with the files, and the store still takes mail.
The short workload is cut at every op. A long one (135 deliveries crossing a bucket boundary:
the first 70 while a session holds the mailbox, then a lock merging them in two windows, the
next 65 reaching the delivery-time merge; then deleting 120) is cut at every LONG_STRIDE-th op
plus every LONG_MARK_STRIDE-th op of its lock/commit/rebuild steps; POCKETPOST_FULL=1 cuts it at
every op too.
"""

import os
import sys

from feed import reader

IS_MP = sys.implementation.name == "micropython"
MOUNT = "/pcut"
ROOT = MOUNT + "/mail"
BOX = "box"
# Default slice of the long workload (each run costs ~0.45 s; POCKETPOST_FULL=1: every op, ~25 min).
LONG_STRIDE = 97
LONG_MARK_STRIDE = 10
DUE_STRIDE = 3  # of the delivery-time merge's ops (each run delivers 64 messages first; FULL: every op)
PLACE_FILL = 126  # messages before the placement cases (placement_base): two seqs short of a bucket (128)


def _msg(i, size):
    # Lone LFs on purpose: the stored copy must be the CRLF form. Odd messages have dot lines:
    # their files are stuffed (dot count in the name, LIST size from the running totals).
    line = (b"." if i % 2 else b"") + b"message %d line of text 0123456789 abcdefghijklmnopqrstuvwxyz\n" % i
    out = b"Subject: %d\n\n" % i
    while len(out) < size:
        out += line
    return out


def _crlf(b):
    return b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Model:
    """What the test knows was acknowledged, and what was in flight when the power went."""

    def __init__(self):
        self.present = {}  # uid -> stored bytes (acknowledged, not deleted)
        self.deleted = set()
        self.issued = set()  # every uid ever acknowledged
        self.maybe_msg = None  # bytes of a delivery in flight
        self.maybe_del = set()  # uids of a deletion commit in flight


def workload(dev, model, marks=None, long=False):
    """The steps; stops at the first step during which the power was cut. The long form first
    fills the mailbox past a bucket boundary, a lock's merge of two windows and the delivery-time
    merge threshold, then deletes most of it (bucket directories are removed). marks: the op
    ranges of the lock/commit/rebuild steps and of a delivery that merged."""
    from pocketpost import store as store_mod
    from pocketpost.store import Store

    st = [Store(ROOT)]
    ops = lambda: dev.ops

    def deliver(i, size):
        a = ops()
        data = _msg(i, size)
        model.maybe_msg = _crlf(data)
        d = st[0].begin(BOX, 1000 + i)
        for k in range(0, len(data), 700):
            d.write(data[k : k + 700])
        uid = d.commit()
        if dev.dead:
            return False
        if marks is not None and not st[0].box(BOX).unindexed:  # this delivery merged: marked too
            marks.append((a, ops()))
        model.present[uid] = _crlf(data)
        model.issued.add(uid)
        model.maybe_msg = None
        return True

    def delete(positions):
        a = ops()
        mb = st[0].lock(BOX)
        uids = [mb.uid(i) for i in range(mb.count)]
        gone = [uids[p if p >= 0 else len(uids) + p] for p in positions]
        model.maybe_del = set(gone)
        mb.commit([uids.index(u) for u in gone])
        if marks is not None:
            marks.append((a, ops()))
        if dev.dead:
            return False
        for u in gone:
            del model.present[u]
            model.deleted.add(u)
        model.maybe_del = set()
        return True

    def lock_release():
        a = ops()
        st[0].lock(BOX).release()
        if marks is not None:
            marks.append((a, ops()))
        return not dev.dead

    def rebuild():
        a = ops()
        os.remove(ROOT + "/" + BOX + "/index")
        if dev.dead:
            return False
        store_mod.reboot()
        st[0] = Store(ROOT)
        st[0].lock(BOX).release()
        if marks is not None:
            marks.append((a, ops()))
        return not dev.dead

    held = []

    def hold():  # a session holds the mailbox: no delivery merges
        held.append(st[0].lock(BOX))
        return not dev.dead

    def let_go():
        held.pop().release()
        return True

    steps = []
    if long:
        steps.append(hold)
        for i in range(135):
            steps.append(lambda i=i: deliver(100 + i, 20 + i % 7))
            if i == 69:  # 70 unindexed: the lock merges them in two windows of 64, one append
                steps += [let_go, lock_release]
        steps.append(lambda: delete(list(range(0, 120))))
    steps += [
        lambda: deliver(1, 300),
        lambda: deliver(2, 40),
        lambda: deliver(3, 10000),  # multi-block
        lambda: lock_release(),  # merge: index append
        lambda: deliver(4, 200),
        lambda: delete([1]),
        lambda: deliver(5, 5000),
        lambda: deliver(6, 100),
        lambda: delete([0, -1]),  # includes the highest uid
        lambda: deliver(7, 4096),
        lambda: rebuild(),
        lambda: deliver(8, 50),
        lambda: delete([-2]),
        lambda: deliver(9, 60),
    ]
    for s in steps:
        if not s():
            return


def check(model, n_label):
    """Remounted image: open the store and compare with the model."""
    from pocketpost import store as store_mod
    from pocketpost.store import Store
    from storeread import temp_files

    store_mod.reboot()
    st = Store(ROOT)
    mb = st.lock(BOX)
    got = {}
    total = 0
    for i in range(mb.count):
        u = mb.uid(i)
        f = mb.open(i)
        data = f.read()
        f.close()
        assert u not in got, (n_label, "duplicate uid", u)
        assert mb.size(i) == len(data), (n_label, "size", u)
        got[u] = data
        total += len(data)
    assert mb.total_size == total, (n_label, "total")
    for u in model.present:
        if u in model.maybe_del and u not in got:
            continue
        assert u in got, (n_label, "lost", u)
        assert got[u] == model.present[u], (n_label, "changed", u)
    extra = 0
    for u in got:
        assert u not in model.deleted, (n_label, "resurrected", u)
        if u not in model.present:
            assert u not in model.issued, (n_label, "reissued uid", u)
            assert model.maybe_msg is not None and got[u] == model.maybe_msg, (n_label, "partial/unknown", u)
            extra += 1
    assert extra <= 1, (n_label, "duplicated delivery")
    # The index agrees with the files, and nothing is left over.
    box = mb._box
    files = set()
    for name, is_dir, _ in _listdir(box.path):
        if is_dir and name[0] == "b":
            for fn, d2, _ in _listdir(box.path + "/" + name):
                files.add(name + "/" + fn)
        elif not is_dir:
            assert name == "index", (n_label, "leftover", name)
    assert temp_files(box.path) == [], (n_label, "temp file left")
    recs = set()
    from pocketpost import storeindex

    for r in storeindex.iter_index(box):
        p = box.msg_path(*r)
        recs.add(p[len(box.path) + 1 :])
    assert recs == files, (n_label, "index/files", recs, files)
    mb.release()
    # Still takes mail, under a new uid.
    uid = st.deliver_stream(BOX, reader(b"after the cut\n"))
    assert uid not in got and uid not in model.issued and uid not in model.deleted, (n_label, "uid reuse")
    mb = st.lock(BOX)
    assert mb.count == len(got) + 1 and mb.uid(mb.count - 1) == uid
    f = mb.open(mb.count - 1)
    assert f.read() == b"after the cut\r\n"
    f.close()
    mb.release()


def _listdir(path):
    from pocketpost import compat

    return compat.listdir_stat(path)


def run_one(base, cut_at, mode, marks=None, long=False):
    from flashdev import FlashDev, cut_power, mount_fresh, umount

    model = Model()
    dev = cut_power(base, cut_at, mode, MOUNT, lambda dev: workload(dev, model, marks, long))
    image = dev.image()
    ops = dev.ops
    dev2 = FlashDev(data=image)
    mount_fresh(dev=dev2, at=MOUNT)
    try:
        check(model, (mode, cut_at))
    finally:
        umount(MOUNT)
    return ops


def sweep(base, long, stride, mark_stride):
    """Cut at every stride-th op, and at every mark_stride-th op of the lock/commit/rebuild steps
    and of a delivery that merged."""
    from flashdev import MODES, mine

    marks = []
    total = run_one(base, 0, "raise", marks, long)
    s = set(range(1, total + 1, stride))
    for a, b in marks:
        for n in range(a + 1, b + 1, mark_stride):
            s.add(n)
    points = sorted(s)
    print("%s workload: %d program/erase ops, %d of them in lock/commit/rebuild steps; cutting at %d"
          % ("long" if long else "short", total, sum(b - a for a, b in marks), len(points)))
    covered = 0
    for mode in MODES:
        ran = 0
        for n in points:
            if mine():  # this process's share (helpers.run_sweep)
                run_one(base, n, mode, None, long)
                ran += 1
        print("  mode %s: %d cut points ok" % (mode, ran))
        covered += ran
    return covered


def placement_base():
    """An image whose mailbox is PLACE_FILL messages from the end of its first bucket, and the
    model of it (uid -> stored bytes)."""
    from flashdev import FlashDev, blank_image, mount_fresh, umount
    from pocketpost import store as store_mod
    from pocketpost.store import Store

    dev = FlashDev(data=blank_image(64))
    mount_fresh(dev=dev, at=MOUNT)
    try:
        store_mod.reboot()
        st = Store(ROOT)
        present = {}
        for i in range(PLACE_FILL):
            data = _msg(i, 30 + i % 5)
            present[st.deliver_stream(BOX, reader(data), 1000 + i)] = _crlf(data)
        st.lock(BOX).release()
        store_mod.reboot()
    finally:
        umount(MOUNT)
    return dev.image(), present


def placement_workload(dev, model, case):
    """Deliveries where store.Delivery puts its temp file in the bucket its message is expected
    to land in (storemerge/storescan remove one a cut leaves, at the first load):
      "fill":      two deliveries: the bucket's last seq, then the first of a new bucket (begin
                   makes b1 and writes the temp file there), then one more;
      "overtaken": A and B begin expecting the same seq (temp files side by side in b0); B
                   commits it, so A's seq is the next bucket's first: seal makes b1 and A's
                   rename crosses directories (two littlefs commits);
      "oldtmp":    a store of an older version: an orphan temp file in <mailbox>/tmp/, which
                   Store() removes with tmp/; then a delivery."""
    from pocketpost.store import Store

    if case == "oldtmp":
        os.mkdir(ROOT + "/" + BOX + "/tmp")
        f = open(ROOT + "/" + BOX + "/tmp/t4.321", "wb")
        f.write(b"half a message from an older version\r\n" * 40)
        f.close()
    st = Store(ROOT)

    def commit(d, data):
        model.maybe_msg = data
        uid = d.commit()
        if dev.dead:
            return False
        model.present[uid] = data
        model.issued.add(uid)
        model.maybe_msg = None
        return True

    def start(i, size):
        data = _msg(i, size)
        d = st.begin(BOX, 2000 + i)
        for k in range(0, len(data), 700):
            d.write(data[k : k + 700])
        return d, _crlf(data)

    if case == "overtaken":
        a = start(1, 3000)  # multi-block
        b = start(2, 60)
        if commit(*b):
            commit(*a)
        return
    for i in range(3 if case == "fill" else 1):
        if not commit(*start(10 + i, 40 if i != 1 else 5000)):
            return


def _model_of(present):
    """A model whose acknowledged messages are `present` (uid -> stored bytes)."""
    m = Model()
    m.present = dict(present)
    m.issued = set(present)
    return m


def _cut_and_check(image, present, n, mode, work, label):
    """work(dev, model) on `image` with the power cut at op n in `mode`, then check() after the
    reboot (the model starts from `present`)."""
    from flashdev import FlashDev, cut_power, mount_fresh, umount

    model = _model_of(present)
    dev = cut_power(image, n, mode, MOUNT, lambda dev: work(dev, model))
    dev2 = FlashDev(data=dev.image())
    mount_fresh(dev=dev2, at=MOUNT)
    try:
        check(model, label)
    finally:
        umount(MOUNT)


def placement_sweep():
    """A cut at every program/erase op of each placement_workload case, in every mode; the check
    after each is check()'s (nothing lost, changed or partial, no temp file left after the first
    lock, the index matching the files, the store still taking mail)."""
    from flashdev import cut_at_every_op, cut_power

    image, present = placement_base()
    covered = 0
    for case in ("fill", "overtaken", "oldtmp"):
        def work(dev, model):
            placement_workload(dev, model, case)

        total = cut_power(image, 0, "raise", MOUNT, lambda dev: work(dev, _model_of(present))).ops
        covered += cut_at_every_op(total, lambda n, mode: _cut_and_check(image, present, n, mode, work,
                                                                         (case, mode, n)))
        print("placement %s: %d program/erase ops, cut at every one x 3 modes ok" % (case, total))
    return covered


def merge_base():
    """placement_base's image and model, with 70 more messages delivered while a session held the
    mailbox: none merged (a restart then finds them unindexed)."""
    from flashdev import FlashDev, mount_fresh, umount
    from pocketpost import store as store_mod
    from pocketpost.store import Store

    image, present = placement_base()
    dev = FlashDev(data=image)
    mount_fresh(dev=dev, at=MOUNT)
    try:
        store_mod.reboot()
        st = Store(ROOT)
        held = st.lock(BOX)
        for i in range(70):
            data = _msg(i, 30 + i % 5)
            present[st.deliver_stream(BOX, reader(data), 3000 + i)] = _crlf(data)
        held.release()
        store_mod.reboot()
    finally:
        umount(MOUNT)
    return dev.image(), present


def merge_due(dev, model, marks=None):
    """64 deliveries into placement_base's mailbox, the last of which merges them (the
    delivery-time merge); marks: the op range of that last delivery."""
    from pocketpost.store import Store

    st = Store(ROOT)
    for i in range(64):
        a = dev.ops
        data = _msg(i, 30 + i % 5)
        model.maybe_msg = _crlf(data)
        uid = st.deliver_stream(BOX, reader(data), 3000 + i)
        if dev.dead:
            return
        model.present[uid] = _crlf(data)
        model.issued.add(uid)
        model.maybe_msg = None
    if marks is not None:
        marks.append((a, dev.ops))


def merge_sweep(stride):
    """The merge of the files above the index, cut: at every op of the first lock of merge_base's
    image (70 unindexed: five windows of 16 seqs, one append), and at every stride-th op of
    merge_due's last delivery, in every mode (check()'s check after each)."""
    from flashdev import MODES, cut_at_every_op, cut_power, mine
    from pocketpost.store import Store

    image, present = merge_base()

    def lock(dev, model):
        Store(ROOT).lock(BOX).release()

    total = cut_power(image, 0, "raise", MOUNT, lambda dev: lock(dev, None)).ops
    covered = cut_at_every_op(total, lambda n, mode: _cut_and_check(image, present, n, mode, lock,
                                                                    ("merge lock", mode, n)))
    print("merge at a lock: %d program/erase ops, cut at every one x 3 modes ok" % total)
    image, present = placement_base()
    marks = []
    cut_power(image, 0, "raise", MOUNT, lambda dev: merge_due(dev, _model_of(present), marks))
    a, b = marks[0]
    for mode in MODES:
        for n in range(a + 1, b + 1, stride):
            if mine():
                _cut_and_check(image, present, n, mode, merge_due, ("merge due", mode, n))
                covered += 1
    print("merge at a delivery: %d program/erase ops, cut at every %d x 3 modes ok" % (b - a, stride))
    return covered


def main():
    import time

    from flashdev import blank_image

    full = os.getenv("POCKETPOST_FULL") == "1"
    base = blank_image(48)
    t0 = time.ticks_ms()
    # The short workload is cheap: every op, always. The long one: sliced unless FULL.
    covered = sweep(base, False, 1, 1)
    covered += placement_sweep()
    covered += merge_sweep(1 if full else DUE_STRIDE)
    covered += sweep(base, True, 1 if full else LONG_STRIDE, 1 if full else LONG_MARK_STRIDE)
    print("POWERCUT OK: %d cut points covered (%s) in %d ms"
          % (covered, "full sweep" if full else "short: every op; long: sliced", time.ticks_diff(time.ticks_ms(), t0)))


if IS_MP and __name__ == "__main__":
    from flashdev import shard_report

    main()
    shard_report()


def test_power_cuts():
    from helpers import run_sweep

    run_sweep("host_tests/test_store_powercut.py", "POWERCUT OK", timeout=3600)
