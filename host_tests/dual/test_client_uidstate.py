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
