"""The UIDL state's file reading and rewriting, and its rare table edit (the format and the rules
are in uidstate.py): the checked records of a state file (records), the load (UidState.load: the
replay of the snapshot and journal into the table; remove_tmp, the temp file a crash inside a
compaction left), the compaction (UidState.compact: a snapshot written through a temp file and
an atomic rename), and clear_deleted (a refused DELE). (The pass after QUIT that keeps or drops
each record, retain, is clientend.py's: the session's end then needs none of this module unless
its save compacts.) Cold code: loaded for the load, a compaction (a new, old-format or repaired
file: at the session's start, clientconf.start; then once per journal's worth of saves) or a
refused DELE and, on MicroPython, dropped after it (its heap is not held while the mailbox is
listed or a message streams in; its qstrs stay). The load was uidload.py, which loaded this
module for its records anyway: one module costs a fetch three interned names fewer."""

import binascii
import os

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.uidstate import StateError, _flag_bits, _seal, hash_key
from pocketpost.wire import LineReader

# uidstate's record layout and flags (its const() names are not module attributes on
# MicroPython): keep equal (host_tests/test_fetch_heap.py checks).
_MAX_STATE_LINE = const(220)  # uidstate's (a private copy)
_REC = const(11)
_KEY = const(8)
_FL = const(10)
_F_HEADERS = const(0x01)
_F_DELETED = const(0x08)
_F_SAVED = const(0x10)
_READ_BUF = const(512)
# A session's start guesses the server holds what is on file + this many (uidstate's RAM paragraph;
# clientconf has a copy).
_NEW_MAIL = const(16)
_OLD_KEY = const(11)  # the record key before issue 10's heap work (88 bits)
_SLOTS = const(8)  # uidstate's (a private copy)
HEADER = b"pocketpost-uidl 2"  # a state file's first line (uidstate's format)


def _check(line):
    """The body of a sealed line, or None if its checksum fails (a torn write)."""
    if len(line) < 10 or line[-9] != 0x20:
        return None
    body = line[:-9]
    if b"%08x" % (binascii.crc32(body) & 0xFFFFFFFF) != line[-8:]:
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


def _table(st, count, entries=0, server=None):
    """UidState's refusals, their texts here (cold): the table full (count None), or no heap for
    a table of count records (entries: those on file; server: the messages on the server, None
    or 0 when the table was asked for max_entries or for what is on file only)."""
    if count is None:
        raise StateError("%s: UID table full (%d entries)" % (st.path, st.n))
    name = st.path.rsplit("/", 1)[-1][:-5]  # (<state_dir>/<account>.uidl)
    raise StateError("account %s: no heap for its UID table: %d entries (%d on file%s, max_entries %d) need %d bytes "
                     "in one block: nothing fetched, nothing lost; free heap, or lower max_entries (%s)"
                     % (name, count, entries, "" if not (server and server > 0) else ", %d messages on the server" % server,
                        st.max_entries, count * _REC, st.path))


def remove_tmp(state_dir, account):
    """Drop a temp file left by a crash inside a compaction (the real file is intact)."""
    try:
        os.remove(compat.join(state_dir, account + ".uidl.tmp"))
    except OSError:
        pass


def size(st, count):
    """UidState.load's first pass: the records its table is made for (uidstate's RAM paragraph):
    the live entries on file (S/H records less X records; see the replay rule) and a pending one,
    plus count (-1: a session's start, count guessed), at most max_entries, never fewer than on
    file; st.n set to those on file (for the refusal's text). A state loaded before, its table
    still there (client.fetch_account after STAT, count >= 0), is sized with no pass: its entries
    are those on file, and that table, which held every entry this process saved, holds the most
    the replay holds at once (the file is then read once, by the load)."""
    if st.buf is not None and count is not None and count >= 0:
        return max(len(st.buf) // _REC, min(st.max_entries, st.n + count))
    live = 0
    most = 0  # the most entries the replay holds at once (an X journaled after an S: not fewer)
    pend = False
    try:
        f = open(st.path, "rb")
    except OSError:
        f = None  # no state yet: the first save writes the file
    if f is not None:
        try:
            for body in records(st, f):
                c = body[:1]
                if c == b"S" or c == b"H":
                    live += 1
                    if live > most:
                        most = live
                elif c == b"X":
                    live -= 1
                elif c == b"P":
                    pend = True
                elif c == b"C":
                    pend = False
        finally:
            f.close()
    need = live + (1 if pend else 0)
    if count is not None and count < 0:  # a session's start: the server's count guessed (uidstate's RAM)
        count = need + _NEW_MAIL
    n = st.max_entries if count is None else min(st.max_entries, need + count)
    st.n = need
    most += 1 if pend else 0
    return n if n > most else most  # (the replay's most, or a max_entries lowered since)


def load(st):
    """UidState.load's replay into the table made for it (size)."""
    st.n = 0
    st.added = {}
    st.pending = None
    st._ne = 0
    st._pend = False
    st._compact = True
    st._snap = 0
    st._jbytes = 0
    st._count = 0
    try:
        f = open(st.path, "rb")
    except OSError:
        st.dirty = False
        return st  # no state yet: the first save writes the file (no slot is current)
    c = 0  # the file's bytes up to its last C record (see the slots below)
    try:
        journal = False
        size = 0
        for body in records(st, f):
            if journal:
                st._jbytes += len(body) + 10
            else:
                size += len(body) + 10
            if _apply(st, body):
                journal = True
            elif body[:1] == b"C":
                c = size + st._jbytes
        st._snap = size
        # A v1 file, a torn last record or a file cut short of its J line: rewrite it whole
        # before appending anything.
        st._compact = st._v1 or st._torn or not journal
    finally:
        f.close()
    st.dirty = False
    # Slot 0 written against this journal, and no C record after that (uidstate's pending
    # paragraph): a cut may have left current slots (clientrecover.pendings reads them all, the
    # client reconciles them).
    try:
        f = open(st.path + "0", "rb")
    except OSError:
        return st
    try:
        n = _check(f.read(24).split(b"\n")[0])
    finally:
        f.close()
    n = int(n[2:]) if n is not None and n[:2] == b"L " else -1
    if c <= n <= st._snap + st._jbytes:
        st._count = 1
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
                    _remove(st, i)
                else:  # (first_seen in days, the session bits kept: UidState._put)
                    st._put(None, int(w[2]), _flag_bits(w[3].decode()), k)
            return False
    except ValueError:
        pass
    raise StateError("corrupt state record in " + st.path)


def _remove(st, index):
    """Drop the table's record at index (an X record replayed)."""
    o = index * _REC
    end = st.n * _REC
    mv = memoryview(st.buf)
    mv[o:end - _REC] = mv[o + _REC:end]
    st.n -= 1


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
        new = old  # (None: a new state)
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
            o = i * _REC + _FL
            buf[o] &= ~_F_SAVED & 0xFF
    if written != st.n:
        raise StateError("state save lost track of %d entries: %s kept" % (st.n - written, st.path))
    compat.rename(tmp, st.path)
    compat.sync_dir(st.dir)
    st._snap = size
    st._jbytes = 0
    st._compact = False
    st._saved()
    st._count = 0
    # Slot 0 emptied (uidstate's pending paragraph): the snapshot has no C record, so an older
    # slot 0 naming no greater length would pass for current. A new state's slots are all made
    # now, empty: each write of one is then a rewrite, one commit (clientget.py), from the first.
    try:
        for k in range(_SLOTS if new is None else 1):
            open(st.path + str(k), "wb").close()
    except OSError:
        pass  # (the snapshot has landed and holds that slot's entry: a cut now would only look it up again)


def _write_entry(st, f, key):
    """Write key's line if it has a record not written yet in this compaction; returns
    the bytes written (0: none)."""
    i = st._index(key)
    if i < 0:
        return 0
    o = i * _REC + _FL
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
        o = i * _REC + _FL
        st.buf[o] &= ~_F_DELETED & 0xFF
