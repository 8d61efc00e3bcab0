"""Per-account UIDL state on flash: which server messages are already safely in the store.

Theory of operation
-------------------
One text file per account, `<state_dir>/<account>.uidl`, rewritten whole through a temp file and
an atomic rename (`save()`), so a crash leaves either the old or the new state, never a mix:

    pocketpost-uidl 1
    S <first_seen> <flag> <uid>                       stored (flag f: full message, h: headers only)
    H <first_seen> <flag> <sha1hex>                   stored, server without UIDL (see below)
    P <size> <sha1hex> <local> <first_seen> <flag> <uid>   pending: see below
    P <size> <sha1hex> <local> <first_seen> <flag>         pending, server without UIDL

The client's "never lose, never duplicate" rule rests on the pending record. Just before it
commits a downloaded message to the store it saves `P` with the stored size, the SHA-1 of the
stored bytes and the local UID the commit will give it (`local`, Delivery.uid_on_commit()).
Right after the commit it saves `S`. A crash between the two leaves `P`; the next run
(`client._reconcile`) looks for that local UID with that size and hash: found means the commit
happened (the entry becomes `S`), otherwise it did not (the entry is dropped and the message is
downloaded again). So the window between "durably stored" and "recorded" is closed, at the
cost of one index lookup and one hash, and only after a crash. (A state file written before
this form holds a number there: it never matches a UID, so that message is fetched again, at
worst a duplicate.)

Servers without UIDL: a message is keyed by the SHA-1 of its stored bytes. In RAM that key is
`hash_key(sha1hex)` = b" " + hex: a real UID is 1-70 octets in 0x21-0x7E (RFC 1939 section 7),
so it can never begin with a space and no server can send a UID that is taken for a synthetic
key ("#abc" is just a UID). On file such keys have their own record type (H, and P without a UID).
(State files from before H held "S ... #<sha1hex>": those now load as UIDs, which at worst costs
one duplicate for a no-UIDL server whose QUIT result was lost just before the upgrade.)

first_seen is Unix time, or 0 (any value before 2020) when the board clock was not set yet: the
client stamps it in a later session with a set clock and never deletes by age before that.

RAM: one record of _REC = 16 bytes per entry, in one bytearray sorted by key (binary search;
an insert or removal moves the tail with a memoryview memmove, no per-entry object):

    key[11]     first 11 bytes (88 bits) of SHA-1 of the full key (the UID, or hash_key(sha1hex))
    first_seen  4 bytes, big-endian unsigned
    flags       1 byte: _F_HEADERS (flag "h"), _F_SYNTH (a hash_key entry), and per-session bits
                _F_SEEN (on the server this session), _F_DELETED (DELE accepted this session),
                _F_NEW (stored this session), _F_SAVED (transient, inside save()); session
                bits are never written to the file.

The full UIDs stay on flash only: save() streams the old file and rewrites each S/H line whose
key is still in the table (with its current first_seen/flag), then the entries added since the
last save (their full keys are held in `added` until then: normally one), then the pending line.
If the lines written do not cover every record, save() raises before the rename (old file kept).

Key collisions: a collision makes a NEW message look already stored: never fetched, and with
policy delete/keep_days possibly deleted on the server: a silent loss. So the key is 88 bits,
not 64: with n = 2000 stored keys the chance that a given new UID hits one of them is
n / 2**88 ~ 6.5e-24, for 10**9 new messages over a board's life ~ 6.5e-15 (a 64-bit key:
~ 1e-7 there); the birthday bound within the stored set, n**2 / 2**89, is ~ 6.5e-21. Two stored
UIDs that collided would share one record (both lines stay on file).
Load inserts each record in sorted position: O(n**2 / 2) bytes moved (2000: ~32 MB of memmove).
Cost: save() re-reads and re-hashes every line of the old file (SHA-1 + binary search per line):
at 2000 entries ~57 ms per save on the 64-bit unix port vs ~15 ms for the old dict version, and
the client saves twice per stored message (pending, then stored).
"""

import hashlib
import struct
import binascii
import os

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.wire import LineReader

# Entries kept per account (the account's "max_entries"; this is its default). Each entry is one
# 16-byte record in one bytearray, whatever the UID length and on every port (the table grows in
# steps of _GROW records); the client marks "on the server this session" in the record (no
# `present` dict). 2000 entries: 32,000 bytes of records (+ at most _GROW * 16 = 1 KiB slack),
# one heap block, vs ~290-420 KiB on the 64-bit host as a dict (146-209 bytes per entry; was the
# reason for the old default of 200). The file on flash holds the full UIDs (2000 entries with
# 70-octet UIDs ~ 180 KiB). A mailbox that keeps more mail on the server than this waits for
# deletions (state_full). The table is one contiguous block: on a fragmented no-PSRAM heap,
# lower max_entries for the account.
DEFAULT_MAX_ENTRIES = const(2000)
# A state line: "P" + size + 40 hex + local UID (<= 19) + time + flag + a 70-octet UID (RFC 1939 section 7).
MAX_STATE_LINE = const(200)
_READ_BUF = const(512)
HEADER = b"pocketpost-uidl 1"
_REC = const(16)
_KEY = const(11)
_GROW = const(64)
_F_HEADERS = const(0x01)
_F_SYNTH = const(0x02)
_F_SEEN = const(0x04)
_F_DELETED = const(0x08)
_F_SAVED = const(0x10)
_F_NEW = const(0x20)
_F_SESSION = const(0x3C)  # SEEN | DELETED | SAVED | NEW


class StateError(Exception):
    def __init__(self, msg):
        super().__init__(msg)


def hash_key(sha1hex):
    """The state key of a message from a server without UIDL (never equal to a real UID)."""
    return b" " + sha1hex.encode()


def is_hash_key(key):
    return key[:1] == b" "


def sha1_hex(h):
    return binascii.hexlify(h.digest()).decode()


def new_hash():
    return hashlib.sha1()


def table_key(key):
    """The 11-byte record key of a full key (a UID, or hash_key(sha1hex))."""
    return hashlib.sha1(key).digest()[:_KEY]


def _flag_bits(flag):
    return _F_HEADERS if flag == "h" else 0


class UidState:
    def __init__(self, state_dir, account, max_entries=DEFAULT_MAX_ENTRIES):
        self.max_entries = max_entries
        self.dir = state_dir
        self.path = compat.join(state_dir, account + ".uidl")
        self.buf = bytearray(0)  # n records of _REC bytes, sorted by key, then free space
        self.n = 0
        self.added = {}  # full key -> None: entries added since the last save (not on file yet)
        self.pending = None  # (size, sha1hex, local uid, first_seen, flag, uid) or None
        self.dirty = False

    # -- the table --------------------------------------------------------------------
    def _find(self, k):
        """(True, index) if key k is in the table, else (False, insertion index)."""
        buf = self.buf
        lo = 0
        hi = self.n
        while lo < hi:
            mid = (lo + hi) >> 1
            o = mid * _REC
            c = bytes(buf[o:o + _KEY])
            if c < k:
                lo = mid + 1
            elif c > k:
                hi = mid
            else:
                return True, mid
        return False, lo

    def _put(self, key, first_seen, bits):
        """Insert or update; returns (index, new)."""
        k = table_key(key)
        found, i = self._find(k)
        if is_hash_key(key):
            bits |= _F_SYNTH
        if not found:
            if (self.n + 1) * _REC > len(self.buf):
                nb = bytearray(len(self.buf) + _GROW * _REC)  # rare: load leaves _GROW spare
                nb[:self.n * _REC] = memoryview(self.buf)[:self.n * _REC]
                self.buf = nb
            mv = memoryview(self.buf)
            o = i * _REC
            end = self.n * _REC
            if o < end:
                mv[o + _REC:end + _REC] = mv[o:end]  # memmove (overlap-safe in both runtimes)
            self.buf[o:o + _KEY] = k
            self.n += 1
        else:
            o = i * _REC
            bits |= self.buf[o + _KEY + 4] & _F_SESSION
        struct.pack_into(">I", self.buf, o + _KEY, first_seen)
        self.buf[o + _KEY + 4] = bits
        return i, not found

    def _remove(self, i):
        o = i * _REC
        end = self.n * _REC
        mv = memoryview(self.buf)
        mv[o:end - _REC] = mv[o + _REC:end]
        self.n -= 1

    def _index(self, key):
        found, i = self._find(table_key(key))
        return i if found else -1

    def records(self):
        """Iterate (record key bytes, first_seen, flag, is_synthetic) in key order."""
        for i in range(self.n):
            o = i * _REC
            b = self.buf[o + _KEY + 4]
            yield (bytes(self.buf[o:o + _KEY]), struct.unpack_from(">I", self.buf, o + _KEY)[0],
                   "h" if b & _F_HEADERS else "f", bool(b & _F_SYNTH))

    def retain(self, fn):
        """Keep or drop every record: fn(first_seen, flag, synthetic, seen, deleted) returns None
        to drop it, else its (possibly new) first_seen. One pass, in place."""
        buf = self.buf
        mv = memoryview(buf)
        w = 0
        for i in range(self.n):
            o = i * _REC
            b = buf[o + _KEY + 4]
            fs = struct.unpack_from(">I", buf, o + _KEY)[0]
            r = fn(fs, "h" if b & _F_HEADERS else "f", bool(b & _F_SYNTH), bool(b & _F_SEEN),
                   bool(b & _F_DELETED))
            if r is None:
                self.dirty = True
                continue
            if r != fs:
                struct.pack_into(">I", buf, o + _KEY, r)
                self.dirty = True
            if w != i:
                mv[w * _REC:(w + 1) * _REC] = mv[o:o + _REC]
            w += 1
        self.n = w

    def mark(self, key, seen=False, deleted=False, new=False):
        """Set per-session bits on key's record (none: a lookup); returns the bits it had
        before, or -1 if the key is not in the table."""
        i = self._index(key)
        if i < 0:
            return -1
        o = i * _REC + _KEY + 4
        old = self.buf[o]
        self.buf[o] = old | (_F_SEEN if seen else 0) | (_F_DELETED if deleted else 0) | (_F_NEW if new else 0)
        return old

    def clear_deleted(self, key):
        """Undo mark(key, deleted=True): the server refused that DELE."""
        i = self._index(key)
        if i >= 0:
            o = i * _REC + _KEY + 4
            self.buf[o] &= ~_F_DELETED & 0xFF

    @staticmethod
    def was_seen(bits):
        return bits >= 0 and bits & _F_SEEN != 0

    @staticmethod
    def was_new(bits):
        return bits >= 0 and bits & _F_NEW != 0

    # -- persistence ------------------------------------------------------------------
    def _lines(self, f):
        r = LineReader(MAX_STATE_LINE, _READ_BUF)
        first = True
        while True:
            sp = r.space()
            n = f.readinto(sp)
            if n:
                r.commit(n)
            while True:
                ln = r.next_line()
                if ln is None:
                    break
                if isinstance(ln, int):
                    raise StateError("corrupt state line in " + self.path)
                if first:
                    if ln != HEADER:
                        raise StateError("not a uidl state file: " + self.path)
                    first = False
                    continue
                yield ln
            if not n:
                break
        if r.pending():
            raise StateError("truncated state file " + self.path)

    def load(self):
        self.buf = bytearray(0)
        self.n = 0
        self.added = {}
        self.pending = None
        try:
            f = open(self.path, "rb")
        except OSError:
            return self  # no state yet
        try:
            # Pass 1 counts the records, so the table is allocated once at its final size (growing
            # it step by step needs old + new block at once and fragments a small heap).
            count = 0
            for ln in self._lines(f):
                if ln[:1] in (b"S", b"H"):
                    count += 1
            f.seek(0)
            self.buf = bytearray((count + _GROW) * _REC)
            for ln in self._lines(f):
                e = self._parse(ln)
                if e is not None:
                    self._put(e[0], e[1], _flag_bits(e[2]))
        finally:
            f.close()
        self.dirty = False
        return self

    def _parse(self, ln):
        """An S/H line -> (full key, first_seen, flag); a P line sets self.pending -> None."""
        w = bytes(ln).split(b" ")
        try:
            if w[0] == b"S" and len(w) == 4 and w[3]:
                return w[3], int(w[1]), w[2].decode()
            if w[0] == b"H" and len(w) == 4 and w[3]:
                return hash_key(w[3].decode()), int(w[1]), w[2].decode()
            if w[0] == b"P" and (len(w) == 7 and w[6] or len(w) == 6):
                sha = w[2].decode()
                uid = w[6] if len(w) == 7 else hash_key(sha)
                self.pending = (int(w[1]), sha, w[3].decode(), int(w[4]), w[5].decode(), uid)
                return None
        except ValueError:
            pass
        raise StateError("corrupt state line in " + self.path)

    def _write_entry(self, f, key):
        """Write key's line if it has a record not written yet in this save; True if written."""
        i = self._index(key)
        if i < 0:
            return False
        o = i * _REC
        b = self.buf[o + _KEY + 4]
        if b & _F_SAVED:
            return False
        self.buf[o + _KEY + 4] = b | _F_SAVED
        fs = struct.unpack_from(">I", self.buf, o + _KEY)[0]
        fl = b"h" if b & _F_HEADERS else b"f"
        if is_hash_key(key):
            f.write(b"H %d %s %s\n" % (fs, fl, key[1:]))
        else:
            f.write(b"S %d %s %s\n" % (fs, fl, key))
        return True

    def save(self):
        """Atomically replace the state file (temp file, flush/fsync, rename). The full keys
        come from the old file (streamed) and from `added`."""
        compat.makedirs(self.dir)
        tmp = self.path + ".tmp"
        f = open(tmp, "wb")
        written = 0
        try:
            f.write(HEADER + b"\n")
            try:
                old = open(self.path, "rb")
            except OSError:
                old = None
            if old is not None:
                keep = self.pending
                try:
                    for ln in self._lines(old):
                        e = self._parse(ln)
                        if e is not None and self._write_entry(f, e[0]):
                            written += 1
                finally:
                    old.close()
                    self.pending = keep  # _parse set it from the old file's P line
            for key in self.added:
                if self._write_entry(f, key):
                    written += 1
            p = self.pending
            if p is not None:
                line = b"P %d %s %s %d %s" % (p[0], p[1].encode(), p[2].encode(), p[3], p[4].encode())
                if is_hash_key(p[5]):
                    f.write(line + b"\n")  # the key is hash_key(sha1hex)
                else:
                    f.write(line + b" " + p[5] + b"\n")
            compat.sync_file(f)
        finally:
            f.close()
            buf = self.buf
            for i in range(self.n):
                o = i * _REC + _KEY + 4
                buf[o] &= ~_F_SAVED & 0xFF
        if written != self.n:
            raise StateError("state save lost track of %d entries: %s kept" % (self.n - written, self.path))
        compat.rename(tmp, self.path)
        compat.sync_dir(self.dir)
        self.added = {}
        self.dirty = False

    # -- entries ----------------------------------------------------------------------
    def __contains__(self, uid):
        return self._index(uid) >= 0

    def __len__(self):
        return self.n

    def full(self):
        return self.n >= self.max_entries

    def get(self, uid):
        i = self._index(uid)
        if i < 0:
            return None
        o = i * _REC
        return [struct.unpack_from(">I", self.buf, o + _KEY)[0],
                "h" if self.buf[o + _KEY + 4] & _F_HEADERS else "f"]

    def add(self, uid, first_seen, flag="f"):
        _, new = self._put(uid, first_seen, _flag_bits(flag))
        if new:
            self.added[bytes(uid)] = None
        self.dirty = True

    def forget(self, uid):
        i = self._index(uid)
        if i >= 0:
            self._remove(i)
            self.dirty = True
        if uid in self.added:
            del self.added[uid]

    def set_pending(self, size, digest_hex, local, first_seen, flag, uid):
        self.pending = (size, digest_hex, local, first_seen, flag, uid)
        self.dirty = True

    def clear_pending(self):
        if self.pending is not None:
            self.pending = None
            self.dirty = True


def remove_tmp(state_dir, account):
    """Drop a temp file left by a crash inside save() (the real file is intact)."""
    try:
        os.remove(compat.join(state_dir, account + ".uidl.tmp"))
    except OSError:
        pass
