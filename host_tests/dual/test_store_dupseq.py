"""Two message files with the same seq in a bucket (both runtimes).

A store written before the fix of a UID-reuse bug may hold two files with the same seq (the
same UID) and different arrivals in one bucket. The scan kept one and ignored the other: never
indexed, never moved to damaged/, no log line: a message lost to every client. Now the file the
index names (else the older arrival) keeps the seq and the other is renamed to a fresh seq above
the mailbox's next one (a new UID: no client ever saw it), indexed and logged, at the boot
recovery (first lock after a restart) and under Store.check(repair=True), which also counts it.
A rename cut before or after it happens is finished by the next recovery: each message is there
once; so is a power cut at every flash operation of that recovery (MicroPython: littlefs on a
simulated flash, flashdev.py).
"""

import os

from cutrename import cut_each_rename
from dualtest import skip
from flashdev import IS_MICROPYTHON, fresh_root
from pocketpost import log
from pocketpost import store as store_mod
from pocketpost.store import Store


def _deliver(st, name, data, arrival):
    d = st.begin(name, arrival)
    d.write(data)
    return d.commit()


def _listing(st, name="x"):
    """{uid: body} of every message a client sees, and the UIDs in order."""
    mb = st.lock(name)
    try:
        out = {}
        uids = []
        for i in range(mb.count):
            f = mb.open(i)
            try:
                out[mb.uid(i)] = f.read()
            finally:
                f.close()
            uids.append(mb.uid(i))
        return out, uids
    finally:
        mb.release()


def _seq(uid):
    return int(uid.split(".")[1])


def _make(root, st, extra_arrival, drop_index=False, both=False):
    """Three messages (arrivals 500, 600, 700); then, as the old bug left it, a second file with
    the middle one's seq and arrival extra_arrival beside it (both: also one beside the first,
    the same arrival, body OTHER0). Returns the three UIDs and the extra file's body."""
    uids = [_deliver(st, "x", b"message %d\r\n" % i, 500 + 100 * i) for i in range(3)]
    mb = st.lock("x")
    recs = [mb._rec(i)[:4] for i in range(2)]
    d = mb._box.msg_path(*recs[0]).rsplit("/", 1)[0]
    mb.release()
    body = b"the other one\r\n"
    # The same arrival for both: renumbered to one seq they would have one name (one lost).
    for k, arrival, b in ((1, extra_arrival, body), (0, extra_arrival, OTHER0)):
        if k == 0 and not both:
            break
        f = open(d + "/%08x.%d.%d.p" % (recs[k][0], recs[k][1], arrival), "wb")
        f.write(b)
        f.close()
    if drop_index:
        os.remove(root + "/x/index")
    store_mod.reboot()
    return uids, body


def _with(fn):
    root, cleanup = fresh_root()
    store_mod.reboot()
    lines = []
    log.set_sink(lines.append)
    try:
        fn(root, Store(root), lines)
    finally:
        log.set_sink(None)
        store_mod.reboot()
        cleanup()


OTHER0 = b"the other zero\r\n"


def _all_there(st, uids, body, keeper_body, both=False):
    """Every message visible once: the three UIDs keep theirs, the extra one under a new UID
    above them (both: the two extra ones); a new delivery goes above that. Returns the new UID
    of the extra one beside the middle message."""
    got, order = _listing(st)
    for u in [u for u in order if got[u] == b"later\r\n"]:  # delivered by an earlier call
        assert order[-1] == u, order
        del got[u]
        order.remove(u)
    if both:
        new = [u for u in order if u not in uids and got[u] == OTHER0]
        assert len(got) == 5 and len(new) == 1, (order, got)
        del got[new[0]]
        order.remove(new[0])
    assert len(got) == 4, order
    for i, u in enumerate(uids):
        want = keeper_body if i == 1 else b"message %d\r\n" % i
        assert got[u] == want, (u, got[u])
    new = [u for u in order if u not in uids]
    assert len(new) == 1 and _seq(new[0]) > max(_seq(u) for u in uids), order
    assert got[new[0]] == (body if keeper_body != body else b"message 1\r\n")
    u = _deliver(st, "x", b"later\r\n", 900)
    assert _seq(u) > _seq(new[0])
    return new[0]


def test_index_named_file_keeps_its_seq_at_boot_recovery():
    # The extra file is the OLDER arrival, but the index names the other: clients may have
    # seen that one under this UID, so it keeps it.
    def body(root, st, lines):
        uids, extra = _make(root, st, 550)
        st = Store(root)
        new = _all_there(st, uids, extra, b"message 1\r\n")
        assert [ln for ln in lines if new in ln and "same seq" in ln], lines
        store_mod.reboot()  # and it stays so
        got, order = _listing(Store(root))
        assert got[new] == extra and got[uids[1]] == b"message 1\r\n" and len(got) == 5

    _with(body)


def test_index_named_file_keeps_its_seq_when_it_is_the_older():
    def body(root, st, lines):
        uids, extra = _make(root, st, 650)
        _all_there(Store(root), uids, extra, b"message 1\r\n")

    _with(body)


def test_without_index_the_older_arrival_keeps_the_seq():
    def body(root, st, lines):
        uids, extra = _make(root, st, 550, drop_index=True)
        st = Store(root)
        got, order = _listing(st)
        assert len(got) == 4, order
        assert got[uids[1]] == extra  # the older arrival (550 < 600)
        others = [u for u in order if u not in uids]
        assert len(others) == 1 and got[others[0]] == b"message 1\r\n"

    _with(body)


def test_check_reports_and_repairs_the_duplicate():
    def body(root, st, lines):
        uids, extra = _make(root, st, 550)
        st = Store(root)
        rep = st.check(repair=False)
        assert rep["problems"] >= 1 and rep["mailboxes"]["x"]["duplicates"] == 1, rep
        assert "1 duplicates" in store_mod.describe("x", rep["mailboxes"]["x"])
        rep = st.check(repair=True)
        assert rep["mailboxes"]["x"]["duplicates"] == 1, rep
        assert rep["mailboxes"]["x"]["messages"] == 4, rep
        rep = st.check(repair=True)
        assert rep["problems"] == 0, rep
        _all_there(st, uids, extra, b"message 1\r\n")

    _with(body)


def test_a_cut_rename_is_finished_by_the_next_recovery():
    def case(root, recover):
        uids, extra = _make(root, Store(root), 550, both=True)
        st = Store(root)
        recover(st)
        _all_there(st, uids, extra, b"message 1\r\n", True)  # the same process goes on
        store_mod.reboot()
        _all_there(Store(root), uids, extra, b"message 1\r\n", True)

    for after in (False, True):
        assert cut_each_rename(after, case) > 1  # at least the duplicate's rename was cut


def test_power_cut_at_every_flash_op_of_the_renumbering():
    if not IS_MICROPYTHON:
        skip("MicroPython only: needs a littlefs image (vfs.VfsLfs2)")
    from flashdev import cut_every_op, mount_fresh, umount

    dev, at = mount_fresh(32)  # 128 KiB: the heap holds three images at a time
    root = at + "/mail"
    store_mod.reboot()
    uids, extra = _make(root, Store(root, reserve=0), 550)
    umount(at)
    base = dev.image()
    dev = None  # (its image: the heap holds three at a time)
    n = cut_every_op(base, at, lambda: Store(root, reserve=0).lock("x").release(),
                     lambda: _all_there(Store(root, reserve=0), uids, extra, b"message 1\r\n"), store_mod.reboot, 200)
    assert n > 3


def test_the_rewrite_itself_indexes_the_renumbered_file():
    # Not left to a merge() after it: a rebuild (the deletion commit's fallback) has none, and
    # the header's floor must not let new mail take the renumbered file's seq.
    def body(root, st, lines):
        uids, extra = _make(root, st, 550)
        from pocketpost import storescan

        from pocketpost import storeindex

        box = store_mod._Box(root + "/x")
        assert storeindex.read_index_state(box)
        storescan.rebuild(box)
        assert storeindex.read_index_state(box)
        assert box.idx_count == 4 and box.last_seq == max(_seq(u) for u in uids) + 1, box.idx_count
        assert max(box.floor, box.last_seq + 1) > box.last_seq

    _with(body)


def test_renumbered_into_a_bucket_the_walk_lists_later():
    # 130 messages: the walk lists bucket 0 (the duplicate), renumbers it to seq 131, in
    # bucket 1, which it lists next: indexed once, not twice.
    def body(root, st, lines):
        n = store_mod.BUCKET + 2
        uids = [_deliver(st, "x", b"m%d\r\n" % i, 500 + i) for i in range(n)]
        mb = st.lock("x")
        e, s, a, szf = mb._rec(1)[:4]
        d = mb._box.msg_path(e, s, a, szf).rsplit("/", 1)[0]
        mb.release()
        f = open(d + "/%08x.%d.%d.p" % (e, s, 400), "wb")
        f.write(b"extra\r\n")
        f.close()
        store_mod.reboot()
        st = Store(root)
        rep = st.check(repair=True)
        assert rep["mailboxes"]["x"]["duplicates"] == 1 and rep["mailboxes"]["x"]["messages"] == n + 1, rep
        assert st.check()["problems"] == 0
        store_mod.reboot()
        got, order = _listing(Store(root))
        assert order[:n] == uids and len(order) == n + 1 and got[order[-1]] == b"extra\r\n", order[n - 2 :]
        assert got[uids[1]] == b"m1\r\n"  # the index named it (arrival 501), not the older 400

    _with(body)


def test_more_second_files_in_a_bucket_than_a_walk_holds_are_reported_and_nothing_moved():
    # Beyond storescan._DUPS (128, one per seq of a bucket) which file a record names is not
    # known for every seq: the index is left as it is (every UID keeps its message), the extra
    # files are reported (check's problems, an error log line), none is moved or renamed.
    def body(root, st, lines):
        n = store_mod.BUCKET - 1  # seqs 1..127: bucket 0
        uids = [_deliver(st, "x", b"m%d\r\n" % i, 500 + i) for i in range(n)]
        mb = st.lock("x")
        recs = [mb._rec(i)[:4] for i in range(n)]
        d = mb._box.msg_path(*recs[0]).rsplit("/", 1)[0]
        mb.release()
        for i in range(n):
            for a in (900, 901):  # 2 * 127 > 128
                f = open(d + "/%08x.%d.%d.p" % (recs[i][0], recs[i][1], a), "wb")
                f.write(b"x%d\r\n" % i)
                f.close()
        names = sorted(os.listdir(d))
        store_mod.reboot()
        st = Store(root)
        rep = st.check(repair=True)
        assert rep["mailboxes"]["x"]["duplicates"] == 2 * n and rep["problems"], rep["mailboxes"]
        got, order = _listing(st)
        assert order == uids and [got[u] for u in uids] == [b"m%d\r\n" % i for i in range(n)]
        assert sorted(os.listdir(d)) == names
        assert [ln for ln in lines if "index left as it is" in ln], lines[-3:]

    _with(body)
