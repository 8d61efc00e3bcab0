"""UIDL state file (uidstate.py) for both runtimes: record types, synthetic keys, round trips."""

from flashdev import fresh_root
from pocketpost import compat
from pocketpost.uidstate import UidState, hash_key, is_hash_key

SHA = "a9993e364706816aba3e25717850c26c9cd0d89d"


def _with_dir(fn):
    root, cleanup = fresh_root()
    try:
        fn(compat.join(root, "state"))
    finally:
        cleanup()


def test_hash_keys_never_equal_real_uids():
    k = hash_key(SHA)
    assert is_hash_key(k) and not is_hash_key(b"#" + SHA.encode()) and not is_hash_key(b"u1")
    # a real UID is 0x21-0x7E only: no server can send a UID equal to a synthetic key
    assert k[0] < 0x21


def test_round_trip_keeps_real_and_synthetic_apart():
    def body(d):
        st = UidState(d, "acct")
        st.add(b"#" + SHA.encode(), 1700000000, "f")  # a real UID that starts with '#'
        st.add(hash_key(SHA), 1700000001, "f")
        st.add(b"u2", 0, "h")
        st.set_pending(21, SHA, "5f3a9c21.42", 1700000002, "f", b"u3")
        st.save()
        st2 = UidState(d, "acct").load()
        assert st2.get(b"#" + SHA.encode()) == [1700000000, "f"]
        assert st2.get(hash_key(SHA)) == [1700000001, "f"]
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
        st = UidState(d, "big", 2000)
        for i in range(1990):
            st.add(_uid70(i), 1700000000 + i, "h" if i % 7 == 0 else "f")
            if i % 250 == 249:
                st.save()  # the client saves after every add: the full UIDs go to flash
        syn = [hash_key("%040x" % i) for i in range(10)]
        for i, k in enumerate(syn):
            st.add(k, i, "f")
        st.save()
        assert len(st) == 2000 and st.full()
        assert st.get(_uid70(5)) == [1700000005, "f"] and st.get(_uid70(7)) == [1700000007, "h"]
        assert _uid70(2000) not in st and st.get(_uid70(2000)) is None
        assert syn[3] in st and st.get(syn[3]) == [3, "f"]
        keys = [r[0] for r in st.records()]
        assert len(keys) == 2000 and keys == sorted(keys) and len(set(keys)) == 2000
        assert sum(1 for r in st.records() if r[3]) == 10
        for i in range(0, 1990, 3):
            st.forget(_uid70(i))
        st.add(_uid70(1), 5, "f")  # update in place
        st.add(_uid70(3000), 1800000000, "f")  # a new one after a save
        n = len(st)
        st.save()
        st2 = UidState(d, "big", 2000).load()
        assert len(st2) == n == 2000 - 664 + 1
        assert list(st2.records()) == list(st.records())
        assert st2.get(_uid70(1)) == [5, "f"] and st2.get(_uid70(3000)) == [1800000000, "f"]
        assert _uid70(0) not in st2 and _uid70(2) in st2
        # session marks: seen / deleted, then one retain pass
        assert st2.mark(_uid70(2), seen=True) == 0 and st2.was_seen(st2.mark(_uid70(2), seen=True))
        assert st2.mark(_uid70(0), seen=True) == -1
        st2.mark(_uid70(4), seen=True, deleted=True)
        st2.retain(lambda fs, flag, synth, seen, dele: None if dele or not (seen or synth) else fs)
        assert len(st2) == 11 and _uid70(2) in st2 and _uid70(4) not in st2
        st2.save()
        st3 = UidState(d, "big", 2000).load()
        assert list(st3.records()) == list(st2.records()) and st3.get(_uid70(2)) == [1700000002, "f"]

    _with_dir(body)
