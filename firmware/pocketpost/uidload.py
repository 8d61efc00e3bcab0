"""Reading a UIDL state file into a UidState (UidState.load; the format is in uidstate.py): the
replay of the snapshot and journal (its checked records: uidcompact.records). Cold code: loaded for the load at the start of a fetch and, on
MicroPython, dropped after it (its heap is not held while messages move; its qstrs stay)."""

import binascii
import os
import struct

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.uidcompact import records
from pocketpost.uidstate import StateError, _flag_bits, hash_key

# uidstate's record layout (its const() names are not module attributes on MicroPython): keep equal.
_REC = const(13)
_KEY = const(8)
_F_HEADERS = const(0x01)
_OLD_KEY = const(11)  # the record key before issue 10's heap work (88 bits)


def remove_tmp(state_dir, account):
    """Drop a temp file left by a crash inside a compaction (the real file is intact)."""
    try:
        os.remove(compat.join(state_dir, account + ".uidl.tmp"))
    except OSError:
        pass


def load(st):
    st.n = 0
    st.added = {}
    st.pending = None
    st._ne = 0
    st._pend = False
    st._compact = True
    st._snap = 0
    st._jbytes = 0
    try:
        f = open(st.path, "rb")
    except OSError:
        return st  # no state yet: the first save writes the file
    try:
        # Pass 1: the live entry count (S/H records less X records; see the replay rule) and
        # whether a pending record is left, so the table is made once at its final size.
        live = 0
        pend = False
        for body in records(st, f):
            c = body[:1]
            if c == b"S" or c == b"H":
                live += 1
            elif c == b"X":
                live -= 1
            elif c == b"P":
                pend = True
            elif c == b"C":
                pend = False
        need = live + (1 if pend else 0)
        if need * _REC > len(st.buf):
            st.buf = None
            st.buf = st._table(need)  # more on file than max_entries (it was lowered)
        f.seek(0)
        journal = False
        size = 0
        for body in records(st, f):
            if journal:
                st._jbytes += len(body) + 10
            else:
                size += len(body) + 10
            if _apply(st, body):
                journal = True
        st._snap = size
        # A v1 file, a torn last record or a file cut short of its J line: rewrite it whole
        # before appending anything.
        st._compact = st._v1 or st._torn or not journal
    finally:
        f.close()
    st.dirty = False
    return st

def _apply(st, body):
    """Replay one record; True for the J line."""
    w = bytes(body).split(b" ")
    c = w[0]
    try:
        if c == b"S" and len(w) == 4 and w[3]:
            st._put(w[3], int(w[1]), _flag_bits(w[2].decode()))
            return False
        if c == b"H" and len(w) == 4 and w[3]:
            st._put(hash_key(w[3].decode()), int(w[1]), _flag_bits(w[2].decode()))
            return False
        if c == b"P" and (len(w) == 7 and w[6] or len(w) == 6):
            sha = w[2].decode()
            uid = w[6] if len(w) == 7 else hash_key(sha)
            st.pending = (int(w[1]), sha, w[3].decode(), int(w[4]), w[5].decode(), uid)
            return False
        if c == b"C" and len(w) == 1:
            st.pending = None
            return False
        if c == b"J" and len(w) == 1:
            return True
        # The record key in hex: _KEY bytes, or 11 from a file written with 16-byte records
        # (its first _KEY bytes are the same SHA-1 prefix).
        if (c == b"X" and len(w) == 2 or c == b"T" and len(w) == 4) and len(w[1]) in (2 * _KEY, 2 * _OLD_KEY):
            k = binascii.unhexlify(w[1])[:_KEY]
            found, i = st._find(k)
            if found:
                if c == b"X":
                    st._remove(i)
                else:
                    o = i * _REC
                    struct.pack_into(">I", st.buf, o + _KEY, int(w[2]))
                    st.buf[o + _KEY + 4] = (st.buf[o + _KEY + 4] & ~_F_HEADERS) | _flag_bits(w[3].decode())
            return False
    except ValueError:
        pass
    raise StateError("corrupt state record in " + st.path)
