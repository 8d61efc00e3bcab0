"""A message file in a bucket directory its seq does not belong to (both runtimes).

A message of seq s lives in b<s // BUCKET>, and every reader derives that path from the seq. A
file found in another bucket (copied by hand, put back by a restore tool, a move cut short, a
bug) was ignored by the first load's comparison and by the recovery's walk, and merge()'s search
above the index indexed it where it sat: a record whose path does not exist (listed, never
readable), or, below the index's end, a message lost to every client. Now the recovery moves it
to its seq's bucket under its name (its UID kept; a seq taken there by another file: the walk's
duplicate handling gives it a fresh one; a file of that very name there already: it is a copy,
set aside to damaged/), logs it, and indexes it: at a server's start (recover_all), at a first
lock or delivery, and under Store.check(repair=True). A power cut at any flash operation of that
recovery (MicroPython: littlefs on a simulated flash) leaves every message listed once. More such
files in one bucket than a listing takes (128) are all moved in the same recovery (the bucket
listed again), so the first session lists every message. A copy goes to damaged/ under the next
free name (NAME.2 ...), as any file set aside, so the next boot finds the mailbox sound.
"""

import os

from cutrename import cut_each_rename
from dualtest import skip
from flashdev import IS_MICROPYTHON, fresh_root
from pocketpost import compat, log, storecore
from pocketpost import store as store_mod
from pocketpost.store import Store
from test_store_dupseq import _listing, _seq

_B = store_mod.BUCKET


def _deliver(st, data, arrival):
    d = st.begin("x", arrival)
    d.write(data)
    return d.commit()


def _name(uid, arrival):
    return "%s.%d.p" % (uid, arrival)  # as the store names a plain message file


def _put(root, k, name, body):
    d = root + "/x/b%d" % k
    if not compat.isdir(d):
        os.mkdir(d)
    f = open(d + "/" + name, "wb")
    f.write(body)
    f.close()


def _with(fn, blocks=96):
    root, cleanup = fresh_root(blocks)
    store_mod.reboot()
    lines = []
    log.set_sink(lines.append)
    try:
        st = Store(root)
        uids = [_deliver(st, b"message %d\r\n" % i, 500 + i) for i in range(3)]  # seqs 1..3 in b0
        st.lock("x").release()  # their records in the index (a lock merges them)
        fn(root, st, uids, lines)
    finally:
        log.set_sink(None)
        store_mod.reboot()
        cleanup()


def _start(root):
    """A restart, then the load a server's start runs (recover_all); a fetch's first delivery
    or a first lock runs the same (Store.box)."""
    store_mod.reboot()
    st = Store(root)
    assert storecore._cold("storemerge", "recover_all", st) == (1, 0)
    return st


def _once(st, want, uids, extra=None):
    """Every message listed once and readable with its own body: the three delivered under their
    UIDs, `extra` (a body) once under a UID above them unless it is one of theirs; then a new
    delivery goes above every listed seq. Returns the extra's UID."""
    got, order = _listing(st)
    assert len(order) == len(set(order)) == len(want), (order, got)
    for i, u in enumerate(uids):
        assert got[u] == b"message %d\r\n" % i, (u, got)
    new = [u for u in order if u not in uids]
    if extra is not None and extra not in [got[u] for u in uids]:
        assert len(new) == 1 and got[new[0]] == extra, (order, got)
    assert sorted(got.values()) == sorted(want), got
    u = _deliver(st, b"later\r\n", 900)
    assert _seq(u) > max(_seq(v) for v in order), (u, order)
    got, order = _listing(st)
    assert got[u] == b"later\r\n" and len(order) == len(want) + 1
    return new[0] if new else None


def _bodies(extra=None):
    return [b"message %d\r\n" % i for i in range(3)] + ([extra] if extra else [])


def _repaired_by_check(root, path):
    """After a restart, Store.check finds the damage, moves nothing (`path` stays) until asked to
    repair, and leaves no problem after repairing; then the next restart."""
    store_mod.reboot()
    st = Store(root)
    assert st.check()["problems"] >= 1
    assert compat.exists(path)  # without repair nothing moves
    st.check(repair=True)
    assert st.check()["problems"] == 0
    store_mod.reboot()


def test_moved_into_the_wrong_bucket_keeps_its_uid():
    # A move cut short (or a restore tool) left seq 2's file in b1: the index has its record,
    # its file is not where the record says.
    def body(root, st, uids, lines):
        name = _name(uids[1], 501)
        os.mkdir(root + "/x/b1")
        os.rename(root + "/x/b0/" + name, root + "/x/b1/" + name)
        st = _start(root)
        _once(st, _bodies(), uids)
        assert compat.exists(root + "/x/b0/" + name) and not compat.exists(root + "/x/b1/" + name)
        assert [ln for ln in lines if uids[1] in ln and "b1" in ln], lines

    _with(body)


def test_free_seq_in_the_wrong_bucket_is_listed_and_readable():
    # Seq 5 (bucket 0), nobody's yet, in b1: above the index, where merge() looked for it.
    def body(root, st, uids, lines):
        epoch = uids[0].split(".")[0]
        _put(root, 1, "%s.5.700.p" % epoch, b"the misplaced one\r\n")
        st = _start(root)
        got, order = _listing(st)
        assert order[-1] == epoch + ".5", order  # its UID kept: its seq was free
        _once(st, _bodies(b"the misplaced one\r\n"), uids, b"the misplaced one\r\n")

    _with(body)


def test_taken_seq_in_the_wrong_bucket_gets_a_fresh_one():
    # Seq 2 of another message (another arrival) in b1: seq 2 stays the indexed message's, the
    # misplaced file gets a new UID above every other, as a second file of a seq does.
    def body(root, st, uids, lines):
        epoch = uids[0].split(".")[0]
        _put(root, 1, "%s.2.400.p" % epoch, b"the misplaced one\r\n")
        st = _start(root)
        new = _once(st, _bodies(b"the misplaced one\r\n"), uids, b"the misplaced one\r\n")
        assert _seq(new) > 3, new
        assert [ln for ln in lines if "same seq" in ln and new in ln], lines

    _with(body)


def test_in_a_bucket_above_the_index():
    # b3, beyond a gap of buckets (b1, b2 absent): two files of bucket 0's seqs there, one of
    # seq 5 (free) and one of bucket 2's (seq 300, free): each to its own bucket, its UID kept.
    def body(root, st, uids, lines):
        epoch = uids[0].split(".")[0]
        _put(root, 3, "%s.5.700.p" % epoch, b"five\r\n")
        _put(root, 3, "%s.300.701.p" % epoch, b"three hundred\r\n")
        st = _start(root)
        got, order = _listing(st)
        assert order[3:] == [epoch + ".5", epoch + ".300"], order
        assert got[epoch + ".5"] == b"five\r\n" and got[epoch + ".300"] == b"three hundred\r\n"
        _once(st, _bodies(b"five\r\n") + [b"three hundred\r\n"], uids)

    _with(body)


def test_a_copy_of_an_indexed_file_is_set_aside_not_listed_twice():
    # The same name as a file in its right bucket: a second copy of one message (never listed
    # twice, never deleted: damaged/ keeps it).
    def body(root, st, uids, lines):
        name = _name(uids[1], 501)
        _put(root, 2, name, b"message 1\r\n")
        st = _start(root)
        _once(st, _bodies(), uids)
        assert compat.exists(root + "/x/b0/" + name)
        assert compat.exists(root + "/x/damaged/" + name) and not compat.exists(root + "/x/b2/" + name)

    _with(body)


def test_a_first_lock_finds_it_too():
    # Not only at a server's start: a first lock or delivery after boot (Store.box; a fetch's).
    def body(root, st, uids, lines):
        epoch = uids[0].split(".")[0]
        _put(root, 1, "%s.5.700.p" % epoch, b"the misplaced one\r\n")
        store_mod.reboot()
        _once(Store(root), _bodies(b"the misplaced one\r\n"), uids, b"the misplaced one\r\n")

    _with(body)


def test_check_reports_it_and_repairs_it():
    def body(root, st, uids, lines):
        epoch = uids[0].split(".")[0]
        name = "%s.2.400.p" % epoch
        _put(root, 1, name, b"the misplaced one\r\n")
        _repaired_by_check(root, root + "/x/b1/" + name)
        _once(Store(root), _bodies(b"the misplaced one\r\n"), uids, b"the misplaced one\r\n")

    _with(body)


def _mess(root, uids):
    """The three cases at once: seq 2's own file moved to b1 (its record in the index), another
    file of seq 2 in b2, a free seq (5) in b3. Returns the bodies to be listed once each."""
    epoch = uids[0].split(".")[0]
    name = _name(uids[1], 501)
    os.mkdir(root + "/x/b1")
    os.rename(root + "/x/b0/" + name, root + "/x/b1/" + name)
    _put(root, 2, "%s.2.400.p" % epoch, b"taken\r\n")
    _put(root, 3, "%s.5.700.p" % epoch, b"five\r\n")
    return _bodies(b"taken\r\n") + [b"five\r\n"]


def test_a_cut_rename_is_finished_by_the_next_recovery():
    _cut_every_rename(_mess, 3)  # at least the three moves cut


def _cut_every_rename(mess, moves):
    # compat.rename raising at its n-th call, before or after doing it (cutrename.py): the
    # process goes on, then a restart; every message is listed once, each time.
    # mess(root, uids): the damage, returning the bodies to list.

    def case(root, recover):
        st = Store(root)
        uids = [_deliver(st, b"message %d\r\n" % i, 500 + i) for i in range(3)]
        st.lock("x").release()
        want = mess(root, uids)
        store_mod.reboot()
        st = Store(root)
        recover(st)
        _once(st, want, uids)  # the same process goes on (a second recovery if suspect)
        store_mod.reboot()
        got, order = _listing(Store(root))
        assert sorted(got.values()) == sorted(want + [b"later\r\n"]), (after, got)
        assert len(order) == len(set(order)), order

    for after in (False, True):
        assert cut_each_rename(after, case) > moves


def test_power_cut_at_every_flash_op_of_the_moves():
    _power_cut_every_op(_mess)


def _power_cut_every_op(mess):
    """A store with mess(root, uids) done to it, its recovery cut at every flash op (MicroPython
    littlefs; raise, drop, torn), then a restart: every message listed once (_once)."""
    if not IS_MICROPYTHON:
        skip("MicroPython only: needs a littlefs image (vfs.VfsLfs2)")
    from flashdev import cut_every_op, mount_fresh, umount

    dev, at = mount_fresh(48)  # 192 KiB (each bucket directory takes two blocks): three images in the heap
    root = at + "/mail"
    store_mod.reboot()
    st = Store(root, reserve=0)
    uids = [_deliver(st, b"message %d\r\n" % i, 500 + i) for i in range(3)]
    st.lock("x").release()
    want = mess(root, uids)
    store_mod.reboot()
    umount(at)
    base = dev.image()
    dev = None  # (its image: the heap holds three at a time)
    n = cut_every_op(base, at, lambda: Store(root, reserve=0).lock("x").release(),
                     lambda: _once(Store(root, reserve=0), want, uids), store_mod.reboot, 300)
    assert n > 3


def _copies(root, uids, aside):
    """Seq 2's file has a copy of its name in b2 (misplaced) and `aside` copies in damaged/ (its
    name, then .2 ...; bodies "earlier <n>"). Returns the name."""
    name = _name(uids[1], 501)
    _put(root, 2, name, b"message 1\r\n")
    os.mkdir(root + "/x/damaged")
    for n in range(1, aside + 1):
        _put(root, 2, "keep", b"earlier %d\r\n" % n)
        os.rename(root + "/x/b2/keep", root + "/x/damaged/" + (name if n == 1 else "%s.%d" % (name, n)))
    return name


def _earlier(root, name, n):
    """damaged/ still holds the n copies set aside before, each as it was."""
    for i in range(1, n + 1):
        f = open(root + "/x/damaged/" + (name if i == 1 else "%s.%d" % (name, i)), "rb")
        assert f.read() == b"earlier %d\r\n" % i, (name, i)
        f.close()


def test_a_third_copy_is_set_aside_under_the_next_free_name():
    # Copies of its name in its bucket and in damaged/ already: it was left where it was, counted
    # "recovered", so the index was rewritten at every boot. Now it goes to damaged/ as
    # _set_aside names a file (NAME.2, never over the earlier one): the next boot finds the
    # mailbox sound.
    def body(root, st, uids, lines):
        name = _copies(root, uids, 1)
        st = _start(root)
        _once(st, _bodies(), uids)
        assert compat.exists(root + "/x/b0/" + name) and os.listdir(root + "/x/b2") == []
        assert sorted(os.listdir(root + "/x/damaged")) == [name, name + ".2"]
        _earlier(root, name, 1)
        del lines[:]
        _start(root)
        assert not [ln for ln in lines if "rewritten" in ln or "not at its path" in ln], lines

    _with(body)


def test_with_damaged_full_of_its_name_a_copy_is_left_where_it_is():
    # _ASIDE_COPIES (9) of its name in damaged/: nothing renamed over, nothing removed, listed once.
    def body(root, st, uids, lines):
        name = _copies(root, uids, 9)
        st = _start(root)
        _once(st, _bodies(), uids)
        assert compat.exists(root + "/x/b0/" + name) and compat.exists(root + "/x/b2/" + name)
        assert len(os.listdir(root + "/x/damaged")) == 9
        _earlier(root, name, 9)
        assert [ln for ln in lines if "left there" in ln], lines

    _with(body)


def test_a_file_a_session_could_not_read_and_not_set_aside_is_not_counted_as_moved():
    # damaged/ full of its name: the set-aside of a file a session reported unreadable fails (it
    # stays, at its path, indexed). recover() counted it moved all the same: "unreadable" 1 and
    # one "missing" message (another's file gone) hidden.
    def body(root, st, uids, lines):
        name = _name(uids[1], 501)
        os.mkdir(root + "/x/damaged")
        for n in range(1, 10):
            _put(root, 0, "keep", b"earlier %d\r\n" % n)
            os.rename(root + "/x/b0/keep", root + "/x/damaged/" + (name if n == 1 else "%s.%d" % (name, n)))
        mb = st.lock("x")
        mb.unreadable(1)
        mb.release()
        os.remove(root + "/x/b0/" + _name(uids[2], 502))
        rep = st.check(repair=True)["mailboxes"]["x"]
        assert (rep["missing"], rep["unreadable"]) == (1, 0), rep
        assert compat.exists(root + "/x/b0/" + name)
        _earlier(root, name, 9)
        got, order = _listing(st)
        assert order == uids[:2], order

    _with(body)


def test_more_files_of_other_buckets_than_a_listing_holds_all_listed_at_once():
    # A hand restore put b1's and b2's files into b0: more than a walk's listing takes (_DUPS,
    # 128). The files past it were counted, not moved, and the index rewritten without their
    # records: the first session listed fewer messages than there are (a client that prunes
    # the UIDs it no longer sees fetches them again later). Now the bucket is listed again
    # until every one is home: the first session lists and reads every message.
    n = 2 * _B + 6  # seqs 1..2*_B+6: b1's _B files and b2's 7 into b0, 135 in all

    def body(root, st, uids, lines):
        want = _many(st, uids, n)
        for k in (1, 2):
            for f in os.listdir(root + "/x/b%d" % k):
                os.rename(root + "/x/b%d/%s" % (k, f), root + "/x/b0/" + f)
        st = _start(root)
        got, order = _listing(st)
        assert got == want and len(order) == n, (len(order), n)
        del lines[:]
        got, order = _listing(_start(root))
        assert got == want and not [ln for ln in lines if "rewritten" in ln], lines

    _with(body, 160)


def _many(st, uids, n):
    """Deliver up to n messages in all (three are there); {uid: body} of all."""
    want = dict((u, b"message %d\r\n" % i) for i, u in enumerate(uids))
    for i in range(len(uids), n):
        want[_deliver(st, b"message %d\r\n" % i, 500 + i)] = b"message %d\r\n" % i
    st.lock("x").release()
    return want


def test_past_the_bound_of_listings_the_index_is_kept_and_the_next_lock_goes_on():
    # More such files than _REHOME_PASSES listings move (here one: the constant patched, so
    # CPython only): the rest are left for the next lock with the index as it is, never dropped
    # from it (the first session lists every message), and that lock moves them.
    if IS_MICROPYTHON:
        skip("CPython only: const() folds _REHOME_PASSES into the code under MicroPython")
    from pocketpost import storescan

    n = 2 * _B + 6

    def body(root, st, uids, lines):
        want = _many(st, uids, n)
        for k in (1, 2):
            for f in os.listdir(root + "/x/b%d" % k):
                os.rename(root + "/x/b%d/%s" % (k, f), root + "/x/b0/" + f)
        store_mod.reboot()
        st = Store(root)
        mb = st.lock("x")
        assert sorted(mb.uid(i) for i in range(mb.count)) == sorted(want)
        mb.release()
        got, order = _listing(st)  # the next lock: a recovery again (suspect)
        assert got == want, len(order)
        del lines[:]
        got, order = _listing(_start(root))
        assert got == want and not [ln for ln in lines if "rewritten" in ln], lines

    passes = storescan._REHOME_PASSES
    storescan._REHOME_PASSES = 1
    try:
        _with(body, 160)
    finally:
        storescan._REHOME_PASSES = passes


def test_a_bucket_unreadable_when_listed_again_is_left_for_the_next_lock():
    # The second listing of b0 (for the files past the first 128) fails: the lock does not
    # fail, the index is kept (every message listed), and the next lock moves the rest.
    n = 2 * _B + 6

    def body(root, st, uids, lines):
        want = _many(st, uids, n)
        for k in (1, 2):
            for f in os.listdir(root + "/x/b%d" % k):
                os.rename(root + "/x/b%d/%s" % (k, f), root + "/x/b0/" + f)
        real = compat.iter_files

        def failing(path):  # b0 once files have left it for b1: the listing again
            if path.endswith("/b0") and os.listdir(root + "/x/b1"):
                raise OSError(5)
            return real(path)

        store_mod.reboot()
        st = Store(root)
        compat.iter_files = failing
        try:
            mb = st.lock("x")
        finally:
            compat.iter_files = real
        assert sorted(mb.uid(i) for i in range(mb.count)) == sorted(want)
        mb.release()
        got, order = _listing(st)
        assert got == want, len(order)

    _with(body, 160)
