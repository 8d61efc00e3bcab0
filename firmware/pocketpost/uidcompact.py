"""The UIDL state's file reading and rewriting, and its rare table pass (the format and the rules
are in uidstate.py): the checked records of a state file (for uidload.load and the compaction),
the compaction (UidState.compact: a snapshot written through a temp file and an atomic rename),
and UidState.retain (after QUIT). Cold code: loaded for the load, a compaction (the first save
of a new state, then once per journal's worth of saves) or the session's end and, on
MicroPython, dropped after it (its heap is not held while the mailbox is listed or a message
streams in; its qstrs stay)."""

import binascii
import struct

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.uidstate import HEADER, StateError, _seal, hash_key, table_key
from pocketpost.wire import LineReader

# uidstate's record layout and flags (its const() names are not module attributes on
# MicroPython): keep equal (host_tests/test_fetch_heap.py checks).
_MAX_STATE_LINE = const(220)  # uidstate's (a private copy)
_REC = const(13)
_KEY = const(8)
_F_HEADERS = const(0x01)
_F_SYNTH = const(0x02)
_F_SEEN = const(0x04)
_F_DELETED = const(0x08)
_F_SAVED = const(0x10)
_READ_BUF = const(512)


def _check(ln):
    """The body of a sealed line, or None if its checksum fails (a torn write)."""
    if len(ln) < 10 or ln[-9] != 0x20:
        return None
    body = ln[:-9]
    if b"%08x" % (binascii.crc32(body) & 0xFFFFFFFF) != ln[-8:]:
        return None
    return body


def _lines(st, f, v1):
    """Yield each record line's body after the header: bytes, or None for a line whose
    checksum fails (a partial last line counts as one). Sets v1[0] from the header."""
    r = LineReader(_MAX_STATE_LINE, _READ_BUF)
    first = True
    while True:
        n = f.readinto(r.space())
        if n:
            r.commit(n)
        while True:
            ln = r.next_line()
            if ln is None:
                break
            if first:
                if ln == HEADER:
                    v1[0] = False
                elif ln == b"pocketpost-uidl 1":  # v1: no checksums, no journal (loaded, then compacted to v2)
                    v1[0] = True
                else:
                    raise StateError("not a uidl state file: " + st.path)
                first = False
                continue
            if isinstance(ln, int):
                yield None
            elif v1[0]:
                yield ln
            else:
                yield _check(ln)
        if not n:
            break
    if first:
        raise StateError("not a uidl state file: " + st.path)
    if r.pending():
        yield None


def records(st, f):
    """The good records of st's file f; stops at a torn last record (sets st._torn) and
    refuses a bad record with good ones after it (not a torn write: damage). Sets st._v1."""
    v1 = [False]
    bad = 0
    st._torn = False
    for body in _lines(st, f, v1):
        if bad:
            raise StateError("corrupt state record %d lines before the end of %s: move it aside "
                             "(the account's mail is then fetched again)" % (bad, st.path))
        if body is None:
            bad = 1
            continue
        yield body
    st._v1 = v1[0]
    st._torn = bad != 0


def compact(st):
    """UidState.compact: the full keys come from the old file (streamed) and from `added`."""
    compat.makedirs(st.dir)
    tmp = st.path + ".tmp"
    f = open(tmp, "wb")
    written = 0
    size = 0
    try:
        f.write(HEADER + b"\n")
        try:
            old = open(st.path, "rb")
        except OSError:
            old = None
        if old is not None:
            try:
                for body in records(st, old):
                    c = body[:1]
                    if c != b"S" and c != b"H":
                        continue
                    w = bytes(body).split(b" ")
                    if len(w) != 4 or not w[3]:
                        raise StateError("corrupt state record in " + st.path)
                    key = w[3] if c == b"S" else hash_key(w[3].decode())
                    n = _write_entry(st, f, key)
                    if n:
                        written += 1
                        size += n
            finally:
                old.close()
        for key in st.added:
            n = _write_entry(st, f, key)
            if n:
                written += 1
                size += n
        if st.pending is not None:
            ln = st._pending_line()
            f.write(ln)
            size += len(ln)
        ln = _seal(b"J")
        f.write(ln)
        size += len(ln)
        compat.sync_file(f)
    finally:
        f.close()
        buf = st.buf
        for i in range(st.n):
            o = i * _REC + _KEY + 4
            buf[o] &= ~_F_SAVED & 0xFF
    if written != st.n:
        raise StateError("state save lost track of %d entries: %s kept" % (st.n - written, st.path))
    compat.rename(tmp, st.path)
    compat.sync_dir(st.dir)
    st._snap = size
    st._jbytes = 0
    st._compact = False
    st._saved()


def _write_entry(st, f, key):
    """Write key's line if it has a record not written yet in this compaction; returns
    the bytes written (0: none)."""
    i = st._index(key)
    if i < 0:
        return 0
    o = i * _REC + _KEY + 4
    if st.buf[o] & _F_SAVED:
        return 0
    ln = st._entry_line(key)
    st.buf[o] |= _F_SAVED
    f.write(ln)
    return len(ln)


def clear_deleted(st, key):
    """Undo st.mark(key, deleted=True): the server refused that DELE (rare: loaded for it)."""
    i = st._index(key)
    if i >= 0:
        o = i * _REC + _KEY + 4
        st.buf[o] &= ~_F_DELETED & 0xFF


def retain(st, fn):
    """Keep or drop every record: fn(first_seen, flag, synthetic, seen, deleted) returns None to
    drop it, else its (possibly new) first_seen. One pass over the table, in place (the client:
    st._cold("retain", fn), after QUIT)."""
    buf = st.buf
    mv = memoryview(buf)
    fresh = None
    if st.added:  # record key -> full key of the entries added since the last save (normally one)
        fresh = {}
        for key in st.added:
            fresh[table_key(key)] = key
    w = 0
    for i in range(st.n):
        o = i * _REC
        b = buf[o + _KEY + 4]
        fs = struct.unpack_from(">I", buf, o + _KEY)[0]
        r = fn(fs, "h" if b & _F_HEADERS else "f", bool(b & _F_SYNTH), bool(b & _F_SEEN),
               bool(b & _F_DELETED))
        if r is None or r != fs:
            st.dirty = True
            k = bytes(buf[o:o + _KEY])
            if fresh is not None and k in fresh:
                if r is None:  # never on file: just forget its full key
                    del st.added[fresh[k]]
            elif r is None:
                st._edit(0x58, k, 0, 0)  # X
            else:
                st._edit(0x54, k, r, b)  # T
            if r is None:
                continue
            struct.pack_into(">I", buf, o + _KEY, r)
        if w != i:
            mv[w * _REC:(w + 1) * _REC] = mv[o:o + _REC]
        w += 1
    st.n = w
