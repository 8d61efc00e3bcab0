"""The merge of the messages above the index (both runtimes): storemerge.merge.

A delivery merges once _MERGE_AFTER (64) messages are unindexed and nobody holds the mailbox;
a lock merges whatever is there. The files are found a window of 16 seqs at a time, each window
one listing of the newest buckets into fixed slots, and appended in one append to the index:
  - a backlog of any size (a session held the mailbox while mail came in) is indexed in seq
    order, across windows and across a gap of skipped seqs wider than a window;
  - a second file of a seq above the index is not indexed beside the first (two records of one
    UID): the mailbox is marked for recovery, whose scan gives it a fresh seq at the next lock;
  - a merge that fails once the index is open (its records may be on flash: a close commits
    them) makes the mailbox load from flash again, so the next merge appends nothing twice.
"""

import os

from flashdev import fresh_root
from pocketpost import compat
from pocketpost import store as store_mod
from pocketpost.storecore import BUCKET
from pocketpost.store import Store
from test_store_dupseq import _listing, _seq


def _deliver(st, i):
    d = st.begin("x", 1000 + i)
    d.write(b"message %d\r\n" % i)
    return d.commit()


def _with(fn, blocks=96):
    root, cleanup = fresh_root(blocks)
    store_mod.reboot()
    try:
        fn(root, Store(root))
    finally:
        store_mod.reboot()
        cleanup()


def _sound(root, n):
    """After a restart: the check finds nothing to repair, and n messages are listed."""
    store_mod.reboot()
    st = Store(root)
    rep = st.check()
    assert rep["problems"] == 0, rep
    assert st.lock("x").count == n


def test_a_backlog_past_the_merge_window_is_indexed_in_seq_order():
    def body(root, st):
        mb = st.lock("x")  # a session holds the mailbox: no delivery merges
        uids = [_deliver(st, i) for i in range(60)]  # seqs 1-60
        st.box("x").next_seq += 100  # 100 seqs skipped (a gap wider than a window): 161 next
        uids += [_deliver(st, i) for i in range(60, 150)]  # 161-250, in b1 (128-255)
        assert _seq(uids[60]) == 161 and _seq(uids[-1]) // BUCKET == 1
        mb.release()
        got, order = _listing(st)  # the lock merges the 150: windows of 16 from 1, from 161
        assert order == uids, order
        assert [got[u] for u in uids] == [b"message %d\r\n" % i for i in range(150)]
        box = st.box("x")
        assert box.idx_count == 150 and box.last_seq == 250 and box.unindexed == 0
        _sound(root, 150)

    _with(body)


def test_a_second_file_of_a_seq_above_the_index_goes_to_recovery_not_into_the_index():
    def body(root, st):
        mb = st.lock("x")
        uids = [_deliver(st, i) for i in range(3)]  # unindexed: the session holds the mailbox
        mb.release()
        b0 = root + "/x/b0"
        name = [n for n in compat.listdir(b0) if n.startswith(uids[1] + ".")][0]
        other = "%s.%d.p" % (uids[1], 999)  # seq 2 again, another arrival
        f = open(b0 + "/" + other, "wb")
        f.write(b"the other seq 2\r\n")
        f.close()
        mb = st.lock("x")  # merges: seq 2 indexed once (the first of its two files listed)
        assert mb.count == 3 and [mb.uid(i) for i in range(3)] == uids
        assert st.box("x").suspect  # the next lock runs recovery
        mb.release()
        got, order = _listing(st)  # recovery: the other file renumbered above the three
        assert order[:3] == uids and len(order) == 4 and _seq(order[3]) > 3, order
        assert sorted(got.values()) == sorted([b"message 0\r\n", b"message 1\r\n", b"message 2\r\n",
                                               b"the other seq 2\r\n"]), (got, name)
        _sound(root, 4)

    _with(body)


def test_a_merge_failing_once_the_index_is_open_appends_nothing_twice():
    def body(root, st):
        real = compat.sync_file
        calls = []

        def failing(f):  # the merge's sync of the index (after the seal's of the 64th delivery)
            calls.append(1)
            if len(calls) == 2:
                raise OSError(5)
            real(f)

        uids = [_deliver(st, i) for i in range(63)]
        compat.sync_file = failing
        try:
            uids.append(_deliver(st, 63))  # the due merge fails (a delivery never fails for it)
        finally:
            compat.sync_file = real
        assert len(calls) == 2
        uids.append(_deliver(st, 64))  # loads the mailbox from flash: the index as the close left it
        uids += [_deliver(st, i) for i in range(65, 130)]  # the next due merge
        assert st.box("x").idx_count == 128
        got, order = _listing(st)
        assert order == uids, order
        _sound(root, 130)

    _with(body)
