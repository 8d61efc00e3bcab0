"""The session side of the store (store.py's theory of operation): lock a mailbox (Store.lock),
read it (Mailbox: the snapshot a POP3 session sees; a stuffed file read un-stuffed, and a
message reported unreadable: storerare.py, loaded for it),
and commit its deletions (Mailbox.commit; the intent log and its roll-forward, which recovery in
storescan.py also runs, are write_intent and apply_deletions here: their code is in storecommit.py,
loaded for a commit that deletes something and dropped after it).

Apart from the rest so that a process that only delivers (the fetch CLI, a delivery) never loads
it: Store.lock imports it, storescan.py only to roll an intent log forward. It holds no index
code: a lock verifies the index through storecore._cold (storeindex.py, dropped after), and a
Mailbox reads records with its copies of storeindex's _unpack and _lsize (here, not in
storecore: a process that only delivers never reads a record). The RAM state (_BOXES, _LOCKS, _Box)
and the exceptions are storecore.py's. A lock that finds unindexed messages merges them
through storecore._cold (storemerge.py, dropped after).
"""

import binascii
import struct

from pocketpost import compat, log, storecore
from pocketpost.compat import const
from pocketpost.storecore import _BOXES, _LOCKS, StoreError, _os_error

# storeindex.py's private constants (const() folds them at compile time: they are not module
# attributes on MicroPython); host_tests/dual/test_store.py checks they agree.
_REC = const(24)
_RECS_PER_READ = const(32)
_PLAIN = const(0x80000000)
_STUFFED = const(0x40000000)
_SIZE = const(0x3FFFFFFF)
_RES = const(0x2144DF1C)
_MASK = const(0xFFFFFFFF)

# The index records read ahead (_RECS_PER_READ of them, 768 B): one buffer for every open Mailbox,
# not one per session (a POP3 session held its own while logged in), made with the first lock and
# dropped with the last release (a listening server holds none). A read and the use of what it
# read never span an await (Mailbox._rec, storecommit._marked), so sessions take turns in it:
# [0] is the Mailbox whose records it holds, and a read for another ends that one's cache (n = 0).
_held = [None, None]  # type: list  # [the Mailbox whose records the buffer holds, the buffer]


def _unpack(buf, off):
    """storeindex._unpack (a copy): a record's six fields, or None if its check fails."""
    if binascii.crc32(memoryview(buf)[off : off + _REC], _RES) != _RES:
        return None
    return struct.unpack_from("<6I", buf, off)


def _lsize(r, prev):
    """storeindex._lsize (a copy): record r's LIST size, prev its predecessor's running total."""
    if r[3] & _STUFFED:
        return (r[4] - prev) & _MASK
    return r[3] & _SIZE


class MailboxLocked(StoreError):
    """The mailbox is already locked by another session of this process (store.MailboxLocked)."""

    code = "IN-USE"


def lock(store, name):
    """Store.lock: lock a mailbox for a POP3 session and return its snapshot (a Mailbox)."""
    path = store._path(name)
    if path in _LOCKS:
        raise MailboxLocked("mailbox in use")
    _LOCKS.add(path)
    try:
        box = _BOXES.get(path)
        if box is not None and box.loaded and (
                box.suspect or not storecore._cold("storeindex", "read_index_state", box)):
            # Checked at every lock (one read of the index, a crc32 per block): damage found
            # since the last recovery sends the mailbox through recovery again, which
            # rebuilds the index from the files. A session that saw damage set `suspect`.
            box.loaded = False
        box = store.box(name)
        if box.unindexed:
            box.merge()
        return Mailbox(box)
    except OSError as e:
        _LOCKS.discard(path)
        raise _os_error(e)
    except BaseException:
        _LOCKS.discard(path)
        raise


def __getattr__(name):
    """write_intent and apply_deletions, the deletion commit's two steps: in storecommit.py."""
    if name == "write_intent" or name == "apply_deletions":
        from pocketpost import storecommit

        return getattr(storecommit, name)
    raise AttributeError(name)


class Mailbox:
    """A locked mailbox as the session sees it: a snapshot taken at lock time.

    Messages delivered during the session are not part of the snapshot (RFC 1939 numbering is
    stable within a session); they show up at the next lock.
    """

    def __init__(self, box):
        self._box = box
        self.count = box.idx_count
        self.total_size = box.idx_total
        if _held[1] is None:
            _held[1] = bytearray(_REC * _RECS_PER_READ)
        self.buf = _held[1]  # (shared: _held)
        self.i = 0  # index of the first record in buf
        self.n = 0  # records in buf (0 too once another Mailbox has read into it)
        self._free = 0  # bytes freed by the commit in progress (see _marked)
        self.f = open(box.p("index"), "rb") if self.count else None

    def _rec(self, i):
        if self._box is None:
            raise StoreError("mailbox released")
        if not 0 <= i < self.count:
            raise IndexError(i)
        if not self.i <= i < self.i + self.n:
            if _held[0] is not self:  # the shared buffer is this Mailbox's now (_held)
                if _held[0] is not None:
                    _held[0].n = 0
                _held[0] = self
            self.f.seek(_REC * (i + 1))
            n = self.f.readinto(self.buf)
            self.i = i
            self.n = n // _REC
            if self.n < 1:
                raise StoreError("index truncated")
        r = _unpack(self.buf, (i - self.i) * _REC)
        if r is None:
            self._box.suspect = True  # damaged since the lock: the next lock rebuilds
            raise StoreError("index record corrupt")
        return r

    def uid(self, i):
        r = self._rec(i)
        return (b"%08x.%d" % (r[0], r[1])).decode()  # (a str literal this short: an interned name)

    def _lsize(self, i, r):
        """The LIST size of message i, whose record is r: a stuffed message's is the difference
        of its running total and the one before (a second record read, usually in the buffer)."""
        if not r[3] & _STUFFED:
            return r[3] & _SIZE
        return _lsize(r, self._rec(i - 1)[4] if i else 0)

    def size(self, i):
        """The message's octets (LIST, STAT): CRLF line ends, without dot-stuffing."""
        return self._lsize(i, self._rec(i))

    def stored_size(self, i):
        """The file's octets: size(i) plus the dots added to a stuffed message."""
        return self._rec(i)[3] & _SIZE

    def needs_stuffing(self, i):
        """False when the file is the message's wire form (RETR sends it as it is, then the
        terminator); True for a file from before the wire form (unstuffed: RETR stuffs it)."""
        return not self._rec(i)[3] & _PLAIN

    def stuffed(self, i):
        """True when the file has dots added (a reader of the message must un-stuff it)."""
        return bool(self._rec(i)[3] & _STUFFED)

    def arrival(self, i):
        return self._rec(i)[2]

    def open(self, i, stored=False):
        """The message: a reader (readinto, read, close) of its size(i) octets, un-stuffing a
        stuffed file as it goes (export, the fetcher's digest). stored=True: the file itself,
        stored_size(i) octets, the wire form unless needs_stuffing(i) (RETR, TOP). Checked
        first: a file gone, unreadable or of another size than its record since the lock raises
        StoreError('SYS/PERM') and marks the mailbox: the next lock scans it and moves the file
        aside."""
        r = self._rec(i)
        lsize = self._lsize(i, r)
        box = self._box
        f = None
        try:
            f = open(box.msg_path(r[0], r[1], r[2], r[3], lsize), "rb")
            n = f.seek(0, 2)
            f.seek(0)
        except OSError as e:
            if f is not None:
                f.close()
            if compat.errno_of(e) == compat.ENOSPC:
                raise _os_error(e)
            n = -1
        if n == r[3] & _SIZE:
            if stored or not r[3] & _STUFFED:
                return f
            return storecore._cold("storerare", "_Unstuffed", f, lsize)
        if f is not None:
            f.close()
        box.suspect = True
        storecore._cold("storerare", "damaged", box, r)  # logs it, raises StoreError

    def unreadable(self, i):
        """The session could not read message i (an OSError while sending it): the next lock
        moves its file to damaged/, so one bad block cannot stop a client at that message on
        every connection. For the server's RETR/TOP error path; at most _MAX_UNREADABLE kept (storerare.unreadable)."""
        storecore._cold("storerare", "unreadable", self, i)

    def commit(self, mask):
        """UPDATE state: apply every deletion of the session together, then release the lock.

        mask: the session's bitmask (bytes, bytearray or memoryview): bit (i & 7) of byte i >> 3 set when
        message i (0-based) is deleted (pop3cmd.Session keeps one); or any other iterable of
        0-based indices (duplicates are fine), turned into such a bitmask of (count + 7) // 8
        bytes. That bitmask is the only state that grows with the mailbox: the intent log is
        written while the index is read a block at a time, and nothing is kept per deletion.
        An index or a set bit beyond count raises StoreError('SYS/PERM') and deletes nothing.
        Returns the number of messages deleted. The work is storecommit.commit, loaded for a
        commit that deletes something (every QUIT commits: one without deletions loads nothing)."""
        if self._box is not None:
            if isinstance(mask, (bytes, bytearray, memoryview)):
                none = not any(mask)
            else:
                none = isinstance(mask, (list, tuple, set)) and not mask
            if none:
                self.release()
                return 0
        return storecore._cold("storecommit", "commit", self, mask)

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None

    def release(self):
        """Release the lock without deleting anything (idempotent)."""
        if self._box is None:
            return
        self.close()
        _LOCKS.discard(self._box.path)
        self._box = None
        if _held[0] is self:
            _held[0] = None
        if not _LOCKS:  # the last open Mailbox: the shared buffer goes (this one keeps its reference)
            _held[1] = None
