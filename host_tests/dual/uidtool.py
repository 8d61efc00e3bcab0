"""Test helper: read back the full keys of a UIDL state (uidstate.py keeps only 8-byte record
keys in RAM; the full UIDs are on flash). Test-only, so it does not ship in the firmware."""

import struct

from pocketpost import uidcompact
from pocketpost.uidcompact import records
from pocketpost.uidstate import hash_key, table_key

_REC = 11  # uidstate's record: key, first_seen in days (2 bytes), flags
_KEY = 8


def entries(st):
    """[(full key, first_seen, flag)] of every entry of a loaded UidState, read back from its
    file and its `added` keys, in file order."""
    out = []
    got = {}

    def take(key):
        e = st.get(key)
        if e is not None and key not in got:
            got[key] = None
            out.append((key, e[0], e[1]))

    try:
        f = open(st.path, "rb")
    except OSError:
        f = None
    if f is not None:
        try:
            for body in records(st, f):
                w = bytes(body).split(b" ")
                if w[0] == b"S" and len(w) == 4:
                    take(w[3])
                elif w[0] == b"H" and len(w) == 4:
                    take(hash_key(w[3].decode()))
        finally:
            f.close()
    for key in st.added:
        take(key)
    return out


# Test-only UidState operations (the client never calls them; kept out of the firmware's heap).
def table_records(st):
    """Iterate (record key bytes, first_seen, flag, is_synthetic) in key order."""
    for i in range(st.n):
        o = i * _REC
        b = st.buf[o + _KEY + 2]
        d = struct.unpack_from(">H", st.buf, o + _KEY)[0]  # days (uidstate's theory)
        yield (bytes(st.buf[o:o + _KEY]), 1577836800 + (d - 1) * 86400 if d else 0,
               "h" if b & 0x01 else "f", bool(b & 0x02))


def full(st):
    return st.n >= st.max_entries


def forget(st, uid):
    """Drop uid's entry (an X record in the journal when it is on file)."""
    uid = bytes(uid)
    k = table_key(uid)
    found, i = st._find(k)
    if found:
        uidcompact._remove(st, i)
        st.dirty = True
        if uid in st.added:
            del st.added[uid]  # never on file
        else:
            st._edit(0x58, k, 0, 0)  # X
