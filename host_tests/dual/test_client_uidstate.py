"""UIDL state file (uidstate.py) for both runtimes: record types, synthetic keys, round trips."""

import uidtool
from flashdev import fresh_root, in_fresh_root
from pocketpost import clientend, compat, uidcompact, uidstate
from pocketpost.uidstate import StateError, UidState, hash_key, is_hash_key

SHA = "a9993e364706816aba3e25717850c26c9cd0d89d"
_DAY = 86400


def day(t):
    """first_seen as the table keeps it (uidstate's theory): rounded up to a day boundary counted
    from 2020-01-01 UTC; before that 0 (the clock was not set)."""
    return 0 if t < 1577836800 else 1577836800 + (t - 1577836800 + _DAY - 1) // _DAY * _DAY


def _with_dir(fn):
    in_fresh_root(lambda root: fn(compat.join(root, "state")))


def test_hash_keys_never_equal_real_uids():
    k = hash_key(SHA)
    assert is_hash_key(k) and not is_hash_key(b"#" + SHA.encode()) and not is_hash_key(b"u1")
    # a real UID is 0x21-0x7E only: no server can send a UID equal to a synthetic key
    assert k[0] < 0x21


def test_round_trip_keeps_real_and_synthetic_apart():
    def body(d):
        st = UidState(d, "acct").load()
        st.add(b"#" + SHA.encode(), 1700000000, "f")  # a real UID that starts with '#'
        st.add(hash_key(SHA), 1700000001, "f")
        st.add(b"u2", 0, "h")
        st.set_pending(21, SHA, "5f3a9c21.42", 1700000002, "f", b"u3")
        st.save()
        st2 = UidState(d, "acct").load()
        assert st2.get(b"#" + SHA.encode()) == [day(1700000000), "f"]
        assert st2.get(hash_key(SHA)) == [day(1700000001), "f"]
        assert st2.get(b"u2") == [0, "h"] and len(st2) == 3
        assert st2.pending == (21, SHA, "5f3a9c21.42", 1700000002, "f", b"u3")
        st2.set_pending(21, SHA, "5f3a9c21.43", 5, "f", hash_key(SHA))
        st2.save()
        st3 = UidState(d, "acct").load()
        assert st3.pending == (21, SHA, "5f3a9c21.43", 5, "f", hash_key(SHA))

    _with_dir(body)


def _uid70(i):
    u = b"%d" % i
    return u + b"x" * (70 - len(u))  # a 70-octet UID (RFC 1939 maximum)


def test_table_2000_entries_round_trip():
    """The fixed-record table: add / lookup / update / remove / iterate / persist at 2000 entries,
    70-octet UIDs and synthetic keys mixed, and the per-session marks."""
    def body(d):
        st = UidState(d, "big", 2000).load()
        for i in range(1990):
            st.add(_uid70(i), 1700000000 + i * _DAY, "h" if i % 7 == 0 else "f")
            if i % 250 == 249:
                st.save()  # the client saves after every add: the full UIDs go to flash
        syn = [hash_key("%040x" % i) for i in range(10)]
        for i, k in enumerate(syn):
            st.add(k, i, "f")
        st.save()
        assert len(st) == 2000 and uidtool.full(st)
        assert st.get(_uid70(5)) == [day(1700000000 + 5 * _DAY), "f"] and st.get(_uid70(7)) == [day(1700000000 + 7 * _DAY), "h"]
        assert _uid70(2000) not in st and st.get(_uid70(2000)) is None
        assert syn[3] in st and st.get(syn[3]) == [0, "f"]
        keys = [r[0] for r in uidtool.table_records(st)]
        assert len(keys) == 2000 and keys == sorted(keys) and len(set(keys)) == 2000
        assert sum(1 for r in uidtool.table_records(st) if r[3]) == 10
        for i in range(0, 1990, 3):
            uidtool.forget(st, _uid70(i))
        st.add(_uid70(1), 5, "f")  # update in place
        st.add(_uid70(3000), 1800000000, "f")  # a new one after a save
        n = len(st)
        st.save()
        st2 = UidState(d, "big", 2000).load()
        assert len(st2) == n == 2000 - 664 + 1
        assert list(uidtool.table_records(st2)) == list(uidtool.table_records(st))
        assert st2.get(_uid70(1)) == [0, "f"] and st2.get(_uid70(3000)) == [day(1800000000), "f"]
        assert _uid70(0) not in st2 and _uid70(2) in st2
        # session marks: seen / deleted, then one retain pass
        assert st2.mark(_uid70(2), seen=True) == 0 and st2.mark(_uid70(2), seen=True) & 0x04  # _F_SEEN
        assert st2.mark(_uid70(0), seen=True) == -1
        st2.mark(_uid70(4), seen=True, deleted=True)
        clientend.retain(st2, lambda fs, flag, synth, seen, dele: None if dele or not (seen or synth) else fs)
        assert len(st2) == 11 and _uid70(2) in st2 and _uid70(4) not in st2
        st2.save()
        st3 = UidState(d, "big", 2000).load()
        assert list(uidtool.table_records(st3)) == list(uidtool.table_records(st2)) and st3.get(_uid70(2)) == [day(1700000000 + 2 * _DAY), "f"]

    _with_dir(body)


# --- journal, torn tail, compaction, power cuts, preallocation -----------------------------------


def _read(path):
    f = open(path, "rb")
    try:
        return f.read()
    finally:
        f.close()


def _write(path, data):
    f = open(path, "wb")
    try:
        f.write(data)
    finally:
        f.close()


def _snapshot(st):
    """What a state holds, comparable across objects: sorted records and the pending entry."""
    return sorted(uidtool.table_records(st)), st.pending


def test_journal_appends_and_replays():
    """Each save after the first appends its changes (the bytes already on file stay as they
    are) and a fresh load replays them to the same table: adds, a restamp, a drop by retain,
    a forget, pending set and cleared."""
    def body(d):
        st = UidState(d, "j", 50)
        st.load()
        st.add(b"a", 1700000000)
        st.add(b"b", 1700000001, "h")
        st.save()  # no file yet: a compaction writes the snapshot
        base = _read(st.path)
        assert base.startswith(uidcompact.HEADER + b"\n") and base.endswith(b"\n")
        st.set_pending(10, SHA, "l1", 1700000002, "f", b"c")
        st.save()
        grown = _read(st.path)
        assert grown.startswith(base) and grown[len(base):].startswith(b"P 10 ")
        st.add(b"c", 1700000002)
        st.clear_pending()
        st.save()
        st.add(b"a", 1700000000 + 99 * _DAY)  # restamp of an entry on file: a T record
        uidtool.forget(st, b"b")  # an X record
        st.add(hash_key(SHA), 1700000003)
        st.mark(b"c", seen=True)
        st.mark(b"a", seen=True)
        clientend.retain(st, lambda fs, flag, synth, seen, dele: fs if seen or synth else None)
        st.save()
        data = _read(st.path)
        assert data.startswith(grown) and b"\nT " in data and b"\nX " in data and b"\nC " in data
        st2 = UidState(d, "j", 50).load()
        assert _snapshot(st2) == _snapshot(st) and len(st2) == 3
        assert st2.get(b"a") == [day(1700000000 + 99 * _DAY), "f"] and b"b" not in st2 and st2.pending is None
        assert sorted(k for k, _, _ in uidtool.entries(st2)) == sorted([b"a", b"c", hash_key(SHA)])
        # another session appends to the replayed file (no compaction needed)
        st2.add(b"d", 5)
        st2.save()
        assert _read(st.path).startswith(data)
        assert UidState(d, "j", 50).load().get(b"d") == [0, "f"]

    _with_dir(body)


def test_torn_tail_ignored_then_compacted():
    """A last record cut short, or with a damaged byte, is ignored (its checksum fails); the
    records before it hold; the next save rewrites the file without it. A damaged record with
    good ones after it is not a torn write: load refuses it."""
    def body(d):
        st = UidState(d, "t", 20).load()
        st.add(b"a", 1)
        st.save()
        st.set_pending(10, SHA, "l1", 2, "f", b"b")
        st.save()
        good = _read(st.path)
        st.add(b"b", 2)
        st.clear_pending()
        st.save()
        full = _read(st.path)
        tail = full[len(good):]
        assert tail.count(b"\n") == 2  # S b, C
        for cut in (len(good) + 3, len(good) + len(tail) // 2, len(full) - 1):
            _write(st.path, full[:cut])
            st2 = UidState(d, "t", 20).load()
            if cut < len(good) + tail.index(b"\n") + 1:
                assert b"b" not in st2 and st2.pending[5] == b"b"  # S torn: P left, reconciled later
            else:
                assert b"b" in st2 and st2.pending is not None  # C torn
            assert b"a" in st2
            st2.add(b"z", 9)
            st2.save()  # compacts: the torn bytes are gone
            data = _read(st.path)
            assert not data.startswith(full[:cut]) and data.endswith(b"\n")
            st3 = UidState(d, "t", 20).load()
            assert _snapshot(st3) == _snapshot(st2)
        flipped = bytearray(full)
        flipped[-4] ^= 0x01  # a bit flip in the last record's checksum
        _write(st.path, flipped)
        assert UidState(d, "t", 20).load().pending is not None  # C ignored
        flipped = bytearray(full)
        flipped[len(good) + 2] ^= 0x01  # damage in the S record, the C after it is good
        _write(st.path, flipped)
        try:
            UidState(d, "t", 20).load()
            raise AssertionError("damage before good records must be refused")
        except StateError as e:
            assert "corrupt" in str(e)

    _with_dir(body)


def test_compaction_bounds_the_file():
    """With the journal bound lowered, many saves keep the file small: compactions happen, the
    journal never passes its bound, and every reload equals the live table. A retain() dropping
    more entries than the edit buffer holds compacts instead of journaling each drop."""
    def body(d):
        st = UidState(d, "c", 200).load()
        st.journal_min = 300
        sizes = []
        for i in range(60):
            uid = _uid70(i)
            st.set_pending(100 + i, SHA, "l%d" % i, 1700000000 + i, "f", uid)
            st.save()
            st.add(uid, 1700000000 + i)
            st.clear_pending()
            st.save()
            sizes.append(len(_read(st.path)))
            if i % 10 == 9:
                st2 = UidState(d, "c", 200).load()
                assert _snapshot(st2) == _snapshot(st)
        snap = 60 * 95
        assert max(sizes) < snap + 300 + snap // 2 + 400, max(sizes)
        shrinks = sum(1 for a, b in zip(sizes, sizes[1:]) if b < a)
        assert shrinks >= 3, sizes  # compactions happened
        for i in range(70):  # more drops than one save can journal
            uidtool.forget(st, _uid70(i))
            if i >= 59:
                break
        before = len(_read(st.path))
        st.save()
        data = _read(st.path)
        assert len(data) < before and b"\nX " not in data and len(st) == 0
        assert _snapshot(UidState(d, "c", 200).load()) == _snapshot(st)

    _with_dir(body)


def test_v1_file_loads_and_is_rewritten():
    def body(d):
        compat.makedirs(d)
        path = compat.join(d, "old.uidl")
        _write(path, b"pocketpost-uidl 1\nS 1700000000 f u1\nH 5 h " + SHA.encode()
               + b"\nP 7 " + SHA.encode() + b" l9 6 f u2\n")
        st = UidState(d, "old", 10).load()
        assert st.get(b"u1") == [day(1700000000), "f"] and st.get(hash_key(SHA)) == [0, "h"]
        assert st.pending == (7, SHA, "l9", 6, "f", b"u2")
        st.add(b"u3", 8)
        st.save()
        data = _read(path)
        assert data.startswith(uidcompact.HEADER + b"\n")
        assert _snapshot(UidState(d, "old", 10).load()) == _snapshot(st)

    _with_dir(body)


def test_file_with_old_11_byte_journal_keys_loads():
    """A state written before the record key went from 11 bytes to 8 (16-byte records then):
    its X / T journal records name entries by 22 hex digits; their first 8 bytes are the key."""
    import binascii
    import hashlib

    def old_key(uid):
        return binascii.hexlify(hashlib.sha1(uid).digest()[:11])

    def body(d):
        compat.makedirs(d)
        path = compat.join(d, "old2.uidl")
        seal = uidstate._seal
        _write(path, uidcompact.HEADER + b"\n" + seal(b"S 1700000000 f u1") + seal(b"S 5 f u2")
               + seal(b"S 6 f u3") + seal(b"J") + seal(b"X " + old_key(b"u1"))
               + seal(b"T " + old_key(b"u2") + b" 1700000077 h"))
        st = UidState(d, "old2", 10).load()
        assert b"u1" not in st and len(st) == 2
        assert st.get(b"u2") == [day(1700000077), "h"] and st.get(b"u3") == [0, "f"]
        uidtool.forget(st, b"u3")  # journaled with the new 8-byte key, replayed the same
        st.save()
        st2 = UidState(d, "old2", 10).load()
        assert _snapshot(st2) == _snapshot(st) and len(st2) == 1

    _with_dir(body)


def test_table_preallocated_for_max_entries():
    """load() without a count makes the table one block for max_entries (tests, tools): adding
    never reallocates it, an add beyond it fails (the client leaves room), a file with more
    entries than a lowered max_entries still loads, and a table the heap cannot hold fails at the
    load naming the account and the entries (the constructor makes none: uidstate's RAM)."""
    def body(d):
        st = UidState(d, "p", 100)
        assert st.buf is None
        st.load()
        table = st.buf
        assert len(table) == 100 * 11  # 11-byte records (first_seen in days: 13 until stop 28)
        for i in range(100):
            st.add(b"u%d" % i, i)
        assert st.buf is table and uidtool.full(st)
        try:
            st.add(b"one-more", 1)
            raise AssertionError("an add beyond max_entries must fail")
        except StateError as e:
            assert "full" in str(e)
        st.save()
        st2 = UidState(d, "p", 40).load()  # limit lowered since: all 100 still load
        assert len(st2) == 100 and len(st2.buf) == 100 * 11
        for count in (None, 1 << 40):
            try:
                UidState(d, "p", 1 << 40).load(count)
                raise AssertionError("a table the heap cannot hold must fail when the state is loaded")
            except StateError as e:
                assert "account p: no heap for its UID table" in str(e) and "100 on file" in str(e), str(e)
                assert ("messages on the server" in str(e)) == (count is not None), str(e)

    _with_dir(body)


def test_table_made_for_the_entries_on_file_and_the_count():
    """load(count) (stop 29, issue 10's heap): the table holds the live entries on file, a
    pending one and room for count more, at most max_entries, never fewer than the replay holds
    at once; load(-1), a session's start, guesses as many again as on file + 16; load(0) is what
    is on file. Made before the file's records are replayed, once per load."""
    def body(d):
        st = UidState(d, "s", 500).load(0)
        assert len(st.buf) == 0 and len(st) == 0  # no file: nothing on file, no room asked
        assert len(UidState(d, "s", 500).load(1).buf) == 11
        assert len(UidState(d, "s", 500).load(-1).buf) == 16 * 11
        st = UidState(d, "s", 500).load(30)
        for i in range(20):
            st.add(b"u%d" % i, 1700000000)
        st.set_pending(21, SHA, "5f3a9c21.42", 1700000002, "f", b"u20")
        st.save()
        for count, want in ((0, 21), (30, 51), (-1, 21 + 21 + 16), (1000, 500), (None, 500)):
            st = UidState(d, "s", 500).load(count)
            assert len(st.buf) == want * 11 and len(st) == 20 and st.pending is not None, (count, len(st.buf))
        assert len(UidState(d, "s", 10).load(30).buf) == 21 * 11  # max_entries lowered: what is on file
        # An X journaled after an S: the replay holds one more than the file's live entries at once
        st = UidState(d, "s", 500).load(0)
        st.clear_pending()
        st.add(b"new", 1700000000)
        st.save()
        uidtool.forget(st, b"u0")
        st.save()
        st = UidState(d, "s", 500).load(0)
        assert len(st) == 20 and len(st.buf) == 21 * 11 and b"new" in st and b"u0" not in st

    _with_dir(body)


def test_first_seen_kept_in_days_rounded_up():
    """The table keeps first_seen in 2 bytes of days (11-byte records): rounded up to the next
    day boundary from 2020-01-01 UTC (an age never overstated: keep_days never deletes early),
    0 for a clock before 2020 (not set), the year 2199 at most; a save and load keep the value
    (the file holds it as Unix time), a restamp by retain (after QUIT) too."""
    def body(d):
        st = UidState(d, "days", 10).load()
        assert len(st.buf) == 10 * 11
        t = 1577836800 + 1000 * _DAY
        for uid, fs, want in ((b"edge", t, t), (b"after", t + 1, t + _DAY), (b"before", t - 1, t),
                              (b"unset", 1577836799, 0), (b"zero", 0, 0), (b"epoch", 1577836800, 1577836800),
                              (b"far", 1 << 40, 1577836800 + 65534 * _DAY)):
            st.add(uid, fs)
            assert st.get(uid) == [want, "f"], (uid, st.get(uid), want)
        st.save()
        st2 = UidState(d, "days", 10).load()
        assert list(uidtool.table_records(st2)) == list(uidtool.table_records(st))
        assert st2.get(b"after") == [t + _DAY, "f"] and st2.get(b"unset") == [0, "f"]
        st2.mark(b"unset", seen=True)
        clientend.retain(st2, lambda fs, flag, synth, seen, dele: (t + 5 if fs == 0 else fs) if seen else None)
        assert st2.get(b"unset") == [t + _DAY, "f"] and len(st2) == 1
        st2.save()
        assert UidState(d, "days", 10).load().get(b"unset") == [t + _DAY, "f"]

    _with_dir(body)


def test_flash_need_covers_journal_and_compaction():
    need = uidstate.flash_need(2000)
    snap = uidstate.max_snapshot(2000)
    assert snap >= 2000 * 95 and need >= snap + 4096 + snap // 2  # (4096: uidstate._JOURNAL_MIN)
    assert uidstate.flash_need(10) < need


# --- slot files ---------------------------------------------------------------------------------
def _slotted(d, n, first=0):
    """A state with n pending entries saved into slot files (local UIDs aa.<first + i>), each
    message then added as the client does after its commit, no journal write since."""
    st = UidState(d, "s").load()
    st.save()  # (a new file: compacted)
    for i in range(first, first + n):
        st.set_pending(10, SHA, "aa.%d" % i, 1700000000, "f", b"m%d" % i)
        st.save(1)
        st.add(b"m%d" % i, 1700000000)
        st.clear_pending()
    return st


def _found(d):
    from pocketpost import clientrecover

    st = UidState(d, "s").load()
    return [p[5] for p in clientrecover.pendings(st)] if st._count else []


def test_slot_files_stand_for_a_batch_until_its_journal_write():
    """Each pending entry goes to a slot file of its own (uidstate's pending paragraph); a cut
    before the batch's journal write leaves them current, in order; that write (its C record
    last) makes them out of date, and so does a compaction (slot 0 emptied)."""

    def body(d):
        st = _slotted(d, 3)
        # (all 8 made, empty, by the new state's first compaction: each write a rewrite)
        assert len([n for n, _, _ in compat.listdir_stat(d) if n[:6] == "s.uidl" and n[6:].isdigit()]) == 8
        assert _found(d) == [b"m0", b"m1", b"m2"]
        st.save()  # the batch's S records and a C
        assert _found(d) == [] and len(UidState(d, "s").load()) == 3
        st = _slotted(d, 2, 10)
        assert _found(d) == [b"m10", b"m11"]  # (slot 2, of the batch before, is not taken)
        st.compact()
        assert _found(d) == [] and len(UidState(d, "s").load()) == 5

    _with_dir(body)


def test_a_journal_write_cut_at_a_line_end_leaves_the_slots_current():
    """A journal write that lands some whole records but not its last, the C (a host file system
    cut at a line end): the slots are still current (their entries are reconciled; some of
    them may be on file already), not taken for out of date."""

    def body(d):
        st = _slotted(d, 3)
        lines = st._batch()
        assert lines[-1].startswith(b"C ")
        with open(st.path, "ab") as f:
            f.write(b"".join(lines[:2]))  # m0 and m1's S records, not m2's, not the C
        assert _found(d) == [b"m0", b"m1", b"m2"]

    _with_dir(body)


def test_a_slot_of_an_older_batch_is_not_taken_after_a_current_one():
    """Slot 1 naming the same journal length as slot 0 but a lower seq (left by an older batch
    against a journal of that very length): the current slots end at slot 0."""

    def body(d):
        st = _slotted(d, 2, 5)
        with open(st.path + "1", "rb") as f:
            one = f.read()
        with open(st.path + "1", "wb") as f:
            f.write(one.split(b"\n")[0] + b"\n" + uidstate._seal(b"P 10 %s aa.4 1700000000 f m4" % SHA.encode()))
        assert _found(d) == [b"m5"]

    _with_dir(body)


# --- power cuts -------------------------------------------------------------------------------
# The client's protocol against one state: pending entry saved into its slot file, store commit,
# entry added, and the entries written to the journal after every third message (the client: after
# each batch); plus a restamp, drops by retain and a forget (journal writes mid-batch, as a
# compaction between two downloads is), with the journal bound lowered so compactions happen.
# A cut at every write: after it the state is reloaded, the pending entry and the current slot
# files reconciled against the store as clientrecover.reconcile does, and then: a message is in
# the state iff it is in the store (never lost, never fetched twice), acknowledged changes hold,
# and the state still saves.

_PC_MESSAGES = 9


class _Cut(Exception):
    pass


def _pc_workload(d, commit, acked, alive=None):
    """Acknowledges a step (in `acked`) only once it returned with the power still on."""
    if alive is None:
        alive = lambda: True
    st = UidState(d, "pc", 30).load()
    st.journal_min = 200
    for i in range(_PC_MESSAGES):
        uid = b"m%d" % i
        st.set_pending(10 + i, SHA, "aa.%d" % i, 1700000000 + i, "f", uid)
        st.save(1)
        commit("aa.%d" % i)
        st.add(uid, 1700000000 + i)
        st.clear_pending()
        if not alive():
            return
        acked["add"].append(uid)  # (its slot file stands for it)
        if i % 3 == 2:
            st.save()
            if not alive():
                return
        if i == 3:
            st.add(b"m0", 1800000000)  # restamp
            st.save()
            if not alive():
                return
            acked["stamp"] = True
        if i == 5:
            st.mark(b"m1", deleted=True)
            st.mark(b"m2", deleted=True)
            clientend.retain(st, lambda fs, flag, synth, seen, dele: None if dele else fs)
            acked["maybe"] = [b"m1", b"m2"]
            st.save()
            if not alive():
                return
            acked["drop"] += [b"m1", b"m2"]
        if i == 7:
            uidtool.forget(st, b"m4")
            acked["maybe"] = [b"m4"]
            st.save()
            if not alive():
                return
            acked["drop"].append(b"m4")


def _pc_check(d, in_store, acked, label):
    st = UidState(d, "pc", 30).load()
    from pocketpost import clientrecover

    for size, digest, local, first_seen, flag, uid in clientrecover.pendings(st):
        if in_store(local):
            st.add(uid, first_seen, flag)
    st.clear_pending()
    st._pend = st.dirty = True  # (the journal write that makes the slot files out of date)
    st.save()
    for i in range(_PC_MESSAGES):
        uid = b"m%d" % i
        if uid in acked["drop"]:
            assert uid not in st, (label, "dropped entry back", uid)
            continue
        if uid in acked["add"] and uid not in acked["maybe"]:
            assert uid in st, (label, "acknowledged entry lost", uid)
        if uid in (b"m1", b"m2", b"m4"):
            continue  # a drop in flight may or may not have happened
        assert (uid in st) == in_store("aa.%d" % i), (label, "state and store disagree", uid)
    if acked["stamp"]:
        assert st.get(b"m0") == [day(1800000000), "f"], (label, "restamp lost")
    st.add(b"after", 1)
    st.save()
    st2 = UidState(d, "pc", 30).load()
    assert b"after" in st2 and _snapshot(st2) == _snapshot(st), (label, "state does not save")


class _CutFile:
    """A file whose writes go straight to disk and can be cut (first half written, or none)."""

    def __init__(self, f, sim):
        self.f = f
        self.sim = sim

    def write(self, data):
        if self.sim.op():
            if self.sim.mode == "torn":
                self.f.write(bytes(data[:len(data) // 2]))
                self.f.flush()
            raise _Cut()
        n = self.f.write(data)
        self.f.flush()
        return n

    def __getattr__(self, name):
        return getattr(self.f, name)


class _FileSim:
    def __init__(self, cut_at, mode):
        self.cut_at = cut_at
        self.mode = mode
        self.ops = 0
        self.dead = False

    def op(self):
        if self.dead:
            return True
        self.ops += 1
        if self.ops == self.cut_at:
            self.dead = True
            return True
        return False


def test_power_cut_at_every_file_write():
    """Cut at every write (a state append or compaction write, a rename, a store commit), each
    one torn in half or lost whole, on the host filesystem under both runtimes."""
    import builtins

    real_open = builtins.open
    real_rename = compat.rename

    def run(d, cut_at, mode):
        sim = _FileSim(cut_at, mode)
        store = {}
        acked = {"add": [], "drop": [], "maybe": [], "stamp": False}

        def fake_open(path, m="r"):
            f = real_open(path, m)
            return _CutFile(f, sim) if ("w" in m or "a" in m) else f

        def fake_rename(a, b):
            if sim.op():
                raise _Cut()
            real_rename(a, b)

        def commit(local):
            if sim.op():
                raise _Cut()
            store[local] = True

        # builtins.open: the compaction (uidcompact.py, reloaded per use on MicroPython) writes too
        builtins.open = fake_open
        compat.rename = fake_rename
        try:
            _pc_workload(d, commit, acked)
        except _Cut:
            pass
        finally:
            builtins.open = real_open
            compat.rename = real_rename
        uidcompact.remove_tmp(d, "pc")
        _pc_check(d, lambda local: local in store, acked, (mode, cut_at))
        return sim.ops

    root, cleanup = fresh_root()
    d = compat.join(root, "s")
    try:
        total = run(d, 0, "raise")
        assert total > 30
        for mode in ("raise", "torn"):
            for n in range(1, total + 1):
                _empty(d)
                run(d, n, mode)
    finally:
        cleanup()


def _empty(d):
    import os

    for name, _, _ in compat.listdir_stat(d):
        os.remove(compat.join(d, name))


def test_store_reserve_includes_each_accounts_state_need():
    from pocketpost import config

    root, cleanup = fresh_root()
    try:
        base = config.open_store({"store": {"root": root, "reserve": 1000}})
        assert base.reserve == 1000
        two = config.open_store({"store": {"root": root, "reserve": 1000},
                                 "accounts": [{"name": "a"}, {"name": "b", "max_entries": 50}]})
        # (500: uidstate._DEFAULT_MAX_ENTRIES, an account's default)
        assert two.reserve == 1000 + uidstate.flash_need(500) + uidstate.flash_need(50)
    finally:
        cleanup()


def test_due_counts_the_edits_waiting_for_the_next_save():
    """The client compacts before a delivery when due() says the next save would, so a
    compaction never runs inside the save between a message's pending entry and its commit,
    on top of the delivery's heap. Drops and first_seen changes journaled since the last save
    (clientplan's restamping of entries first seen while the clock was unset: a T record each)
    go out with that save: due() must count them too."""
    def body(d):
        st = UidState(d, "e", 200).load()
        for i in range(40):
            st.add(b"old%d" % i, 0, "f")  # first seen while the clock was unset
        st.save()
        st = UidState(d, "e", 200).load()
        st.journal_min = 600
        inside = []
        real = st.compact
        st.compact = lambda: (inside.append(1), real())
        for i in range(40):
            if i % 10 == 0:  # a session's first pass: the clock is set now, restamp 10 entries
                for j in range(i, i + 10):
                    st.add(b"old%d" % j, 1700000000, "f")
            inside.clear()
            if st.due():
                real()  # client.fetch_account: st.compact() before the delivery
            uid = _uid70(i)
            st.set_pending(100 + i, SHA, "l%d" % i, 1700000000 + i, "f", uid)
            st.save()  # clientget.download: the save before the commit
            assert not inside, "a compaction inside the pending save at message %d" % i
            st.add(uid, 1700000000 + i)
            st.clear_pending()
        st.save()
        assert _snapshot(UidState(d, "e", 200).load()) == _snapshot(st)
    _with_dir(body)


def test_session_start_counts_the_records_before_the_table_is_made():
    """clientconf._state(a, -1), a fetch's start, counts the file's records by their first bytes
    (no code loaded before the table: uidstate's RAM paragraph) and makes the table for the
    entries on file and as many again + 16, never fewer than the replay holds at once: the same
    sizes as uidcompact's first pass; a pending entry counts while no C line follows its P."""
    from pocketpost import clientconf

    def body(d):
        a = {"state_dir": d, "name": "c", "max_entries": 500}
        st = UidState(d, "c", 500).load()
        for i in range(20):
            st.add(b"u%d" % i, 1700000000)
        st.save()  # (a new file: the snapshot)
        st.add(b"u20", 1700000000)
        st.set_pending(21, SHA, "5f3a9c21.42", 1700000002, "f", b"u21")
        st.save()  # journal: S u20, P
        assert len(clientconf._state(a, -1).buf) == (2 * 22 + 16) * 11 == len(UidState(d, "c", 500).load(-1).buf)
        st.clear_pending()
        uidtool.forget(st, b"u0")
        st.save()  # journal: X u0, C: 20 on file, the replay holds 21 at once
        st = clientconf._state(a, -1)
        assert len(st) == 20 and st.pending is None and len(st.buf) == (2 * 20 + 16) * 11
        a["max_entries"] = 10  # lowered since: the replay's most
        assert len(clientconf._state(a, -1).buf) == 21 * 11
        assert len(clientconf._state({"state_dir": d, "name": "none", "max_entries": 500}, -1).buf) == 16 * 11

    _with_dir(body)
