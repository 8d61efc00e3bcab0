"""Test helper: read back the full keys of a UIDL state (uidstate.py keeps only 8-byte record
keys in RAM; the full UIDs are on flash). Test-only, so it does not ship in the firmware."""

import struct

from pocketpost.uidcompact import records
from pocketpost.uidstate import hash_key

_REC = 13
_KEY = 8


def entries(st):
    """[(full key, first_seen, flag)] of every entry of a loaded UidState, read back from its
    file and its `added` keys, in file order."""
    out = []
    got = {}

    def take(key):
        i = st._index(key)
        if i >= 0 and key not in got:
            got[key] = None
            o = i * _REC
            out.append((key, struct.unpack_from(">I", st.buf, o + _KEY)[0],
                        "h" if st.buf[o + _KEY + 4] & 0x01 else "f"))

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
