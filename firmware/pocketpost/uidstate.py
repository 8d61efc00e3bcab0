"""Per-account UIDL state on flash: which server messages are already safely in the store.

Theory of operation
-------------------
One text file per account, `<state_dir>/<account>.uidl`: a snapshot of every entry, then an
append-only journal of the changes since. Every line after the header ends with " " and the
CRC-32 of the rest of the line (8 hex digits):

    pocketpost-uidl 2
    S <first_seen> <flag> <uid> <crc>                          stored (flag f: full, h: headers only)
    H <first_seen> <flag> <sha1hex> <crc>                      stored, server without UIDL (see below)
    P <size> <sha1hex> <local> <first_seen> <flag> [<uid>] <crc>   pending: see below
    J <crc>                                                    end of the snapshot; journal follows
    journal records: S / H (an entry added), P (pending set), and
    C <crc>                                                    pending cleared
    X <key hex> <crc>                                          the entry with this record key dropped
    T <key hex> <first_seen> <flag> <crc>                      that entry's first_seen / flag changed

`save()` appends the changes since the last save as one write (the client saves once per batch
of new messages: their `S` lines, and a `C`; or at the session's end or error exit), then
flushes: on littlefs one metadata commit (and, once the file is past littlefs's inline size, the
device sync littlefs runs before it so the appended data is on flash first); the close adds
nothing (clientget.py: a message's syncs). `save(1)`, the client's save of a pending entry,
writes it into a slot file instead (the pending paragraph below). A power cut during that write leaves a
torn last record: its checksum fails (or its line end is missing), `load()` ignores it and the
next save compacts. A bad record followed by good ones is not a torn write: load refuses it.
Compaction rewrites the snapshot whole through a temp file and an atomic rename (a cut leaves
the old file; uidcompact.remove_tmp drops the temp file): when the journal would pass its bound
(_JOURNAL_MIN + half the snapshot, so a compaction costs at most twice the journal bytes it
removes), when an old-format or torn file was loaded, and when more than _MAX_EDITS drops or
changes are waiting (clientend.retain after a big deletion). Flash written per stored message is then
~2 records plus a share of the compactions (tools/bench_uidstate.py), not two whole files.
`flash_need(max_entries)` is the flash the journal and one compaction may take on top of the
snapshot; config.open_store adds it to the store's reserve for each client account.

Replay rule that keeps the table allocation exact: an X record is only written for an entry
that is on file (one added since the last save just leaves `added`), so the live entry count of
a file is (S/H records) - (X records), counted by load's first pass before the table is made.

The client's "never lose, never duplicate" rule rests on the pending record. Just before it
commits a downloaded message to the store it saves `P` with the stored size, the SHA-1 of the
stored bytes and the local UID the commit will give it (`local`, Delivery.uid_on_commit()),
with `save(1)`: into a slot file of its own, `<state_dir>/<account>.uidl<k>` for the k-th
pending entry since the last journal write (k < _SLOTS, else the journal takes it as before),
rewritten whole with two sealed lines: `L <journal length>` (the bytes of the file's records as
a load counts them, the header left out) and the `P` line. A small file stays inline in
littlefs: its write is one metadata commit, no barrier, no data block (an append to the state file
copied its last block: clientget.py). After the commit the entry becomes `S` in RAM; the batch's
`S` lines go to the journal in one write after the batch (or at the session's end), with a `C`
last (the pending entry cleared), and from then on the slots are out of date. A crash before
that write leaves them current: load finds slot 0 current when the journal length it names is
at most the file's as loaded and no `C` record lies beyond it (a write cut short of its `C` may
have landed some of its records: the slots still count), and clientrecover.pendings takes slot
0 and then slots 1, 2, ... while each is whole, names slot 0's length and holds a local UID of a
higher seq than the slot before it. The next run (`clientrecover.reconcile`, also for a `P` in
the journal: a commit that failed in doubt, which the session's next journal write carries)
looks for each local UID with its size and hash: found means the commit happened (the entry
becomes `S`), otherwise it did not (the entry is dropped and the message is downloaded again);
one journal write, a `C` last, then makes the slots out of date. A torn slot means its commit
never started. A compaction empties slot 0 (its snapshot has no `C`: an older slot 0 would
pass for current; slot 1 and on must follow a current slot 0 with a higher seq). So the window
between "durably stored" and "recorded" is closed, at the
cost of one index lookup and one hash per slot, and only after a crash. (The table a session's
start or the board's settle makes holds what is on file: reconcile makes it again with room for
the slots' entries when it has too little.)

Servers without UIDL: a message is keyed by the SHA-1 of its stored bytes. In RAM that key is
`hash_key(sha1hex)` = b" " + hex: a real UID is 1-70 octets in 0x21-0x7E (RFC 1939 section 7),
so it can never begin with a space and no server can send a UID that is taken for a synthetic
key ("#abc" is just a UID). On file such keys have their own record type (H, and P without a UID).

first_seen is Unix time, or 0 (any value before 2020) when the board clock was not set yet: the
client stamps it in a later session with a set clock and never deletes by age before that. In RAM
(and so in what get() returns and a compaction writes) it is kept in days: rounded up to the next
day boundary counted from 2020-01-01 UTC (_SANE_TIME), 0 still "clock not set". Rounded up, a
message's age is never overstated: keep_days deletes it at most a day later than the exact time
would, never earlier. The file keeps Unix times (a rounded value is one too).

RAM: one record of _REC = 11 bytes per entry, in one bytearray made by load(count) and never
grown: an add beyond it raises StateError (the client never asks: clientplan takes no more new
messages than the table has room for). load's first pass (uidcompact.size) counts the live
entries on file (and a pending one); the table holds them plus `count`, at most max_entries, and
never fewer than the replay holds at once (an S journaled before an X: one more than live) nor
than is on file (a limit lowered since); without count (tests, tools) it is made for
max_entries. A fetch needs the entries on file + one per message on the server (each message
number is downloaded at most once a session, its content key, H, being that entry): at its start
(clientconf._state) the table is made for as many again as on file + _NEW_MAIL (16; policy keep:
the server holds what is on file and a few new ones), counted there by the records' first bytes
so that no code is loaded before the table is made (as the constructor made it until stop 29:
an extra code load placed first cost a full table 2-3 KiB of the fetch's smallest heap); after
STAT, if the table has fewer records than min(max_entries, entries + STAT's count), the state is
loaded again for that (client.fetch_account: the old table freed first, never two at once; the
entries on file known from the start's load, the file is read once, without uidcompact.size's
pass: a session reads it twice, three times with that load, host_tests/test_fetch_stateread.py). So
the table is made before any download, and no heap for it fails there (naming the account and
the entries), nothing fetched. Until stop 29 it was made for max_entries: 5,500 bytes at the
default through every session. Measured (tools/bench_heap.py d and dfull, 64-bit host, the fetch
CLI's smallest heap): a fresh account and a 1-message mailbox 92-93 -> 87-88 KiB; a keep mailbox
of N messages, N - 1 on file: N = 2 88, 10-50 89, 100 90, 250-500 (the table full-size) 92-93,
against 92-93 for every N before.
Sorted by key (binary search; an insert or removal moves the tail with a memoryview memmove):

    key[8]      first 8 bytes (64 bits) of SHA-1 of the full key (the UID, or hash_key(sha1hex))
    first_seen  2 bytes, big-endian unsigned: days, 0 (clock not set) or 1 + the days from
                _SANE_TIME to first_seen rounded up (1 = 2020-01-01 00:00 UTC; 65535: the year 2199)
    flags       1 byte: _F_HEADERS (flag "h"), _F_SYNTH (a hash_key entry), and per-session bits
                _F_SEEN (on the server this session), _F_DELETED (DELE accepted this session),
                _F_NEW (stored this session), _F_SAVED (transient, inside a compaction); session
                bits are never written to the file.

The full UIDs stay on flash only: compaction streams the old file and rewrites each S/H line
whose key is still in the table (with its current first_seen/flag), then the entries added since
the last save (their full keys are held in `added` until then: normally one), then the pending
line. If the lines written do not cover every record, it raises before the rename (old file kept).

Key collisions: a collision makes a NEW message look already stored: never fetched, and with
policy delete/keep_days possibly deleted on the server: a silent loss. The key is 64 bits: with
n stored keys the chance that a given new UID hits one of them is n / 2**64: at the default
n = 500, 2.7e-17; at n = 2000, 1.1e-16. Over 10**6 new messages (~270 a day for ten years) that
is 2.7e-11 (1.1e-10 at 2000), and even over an implausible 10**9, 2.7e-8 (1.1e-7): far below the
chance of the flash or the server losing the message. The birthday bound within the stored set,
n**2 / 2**65, is ~ 1.1e-13 at 2000. Until issue 10's heap work the key was 88 bits (16-byte
records): 3 bytes more per entry (1.5 KB at 500 entries, one block the board has to find) for a
risk already negligible. A file written with 11-byte journal keys (X/T records) still loads: an
11-byte key's first 8 bytes are the 8-byte key (uidcompact.load).
Load inserts each record in sorted position: O(n**2 / 2) bytes moved (2000: ~32 MB of memmove).
"""

import gc
import hashlib
import struct
import binascii

from pocketpost import compat
from pocketpost.compat import const

# Entries kept per account (the account's "max_entries"; this is its default). Each entry is one
# 11-byte record in one bytearray, whatever the UID length and on every port, made when the
# session's state is loaded for at most this many (the theory's RAM paragraph: for the entries on
# file + the messages on the server): 500 entries = 5,500 bytes in one heap block (8,000 with the 16-byte records
# before issue 10's heap work, 6,500 with the 13-byte ones until stop 28: first_seen in 4 bytes).
# The default was 2000 (32,000 bytes) until the deployed pseudo-board (256 KiB host heap, server and REPL loaded) could no
# longer find one free 32,000-byte block; a no-PSRAM ESP32 has ~100 KiB in all. The file on flash
# holds the full UIDs (~95 bytes per entry worst case). A mailbox that keeps more mail on the
# server than this waits for deletions (state_full); a board with PSRAM can raise it per account.
_DEFAULT_MAX_ENTRIES = const(500)
# A state line: "P" + size + 40 hex + local UID (<= 19) + time + flag + a 70-octet UID (RFC 1939
# section 7) + " " + 8 hex of CRC-32.
_MAX_STATE_LINE = const(220)
# Worst entry line: "S " + 10-digit time + " f " + 70-octet UID + " " + 8 hex + LF.
_MAX_ENTRY_LINE = const(95)
# (The file's first line, HEADER: uidcompact.py's, which reads and writes it.)
# The journal may grow to _JOURNAL_MIN + snapshot / _JOURNAL_SHARE bytes before a compaction: one
# flash block for a small state; at 2000 entries a compaction every ~400 stored messages, so it
# adds ~1/2 KiB per message, for a flash need (flash_need) of 1.5 snapshots.
_JOURNAL_MIN = const(4096)
_JOURNAL_SHARE = const(2)
# Drops / first_seen changes held between two saves (_EDIT = 14 bytes each, preallocated); more (a big
# clientend.retain after QUIT) and the save compacts instead of journaling each.
_MAX_EDITS = const(64)
_EDIT = const(14)  # op, key[8], first_seen[4], flag bits
# Two 4 KiB littlefs blocks: partly filled last blocks of file and temp; and two more: the slot
# files (_SLOTS of ~240 bytes, inline) may take the state directory a metadata pair of its own.
_FS_SLACK = const(16384)
_REC = const(11)
_KEY = const(8)
_FL = const(10)  # the flags byte's offset in a record (after key and first_seen's days)
# first_seen's days count from here (a clock before it is unset: first_seen 0); client._SANE_TIME
_SANE_TIME = const(1577836800)  # 2020-01-01
_DAY = const(86400)
_MAX_DAYS = const(65535)  # 2 bytes: 2199 (a later first_seen is stored as this)
_F_HEADERS = const(0x01)
_F_SYNTH = const(0x02)
_F_SEEN = const(0x04)
_F_DELETED = const(0x08)
_F_SAVED = const(0x10)
_F_NEW = const(0x20)
_F_SESSION = const(0x3C)  # SEEN | DELETED | SAVED | NEW
# Slot files (the theory's pending paragraph): pending entries written since the last journal
# write, one file each; the next one goes to the journal with the entries added (as before stop
# 31), which makes the slots free again. Half the client's batch (clientplan._NEW_BATCH, 16): a
# journal write per 9 messages as well as the batch's own; each slot is a file (inline on
# littlefs, ~240 bytes; a cluster on FAT, a page on tmpfs), made with a new state.
_SLOTS = const(8)


class StateError(Exception):
    """The state file or table cannot be used as it is (see the message)."""


def hash_key(digest):
    """The state key of a message from a server without UIDL (never equal to a real UID): from
    the SHA-1 of its content as 40 hex digits (Delivery.digest())."""
    return b" " + digest.encode()


def is_hash_key(key):
    return key[:1] == b" "


def table_key(key):
    """The 8-byte record key of a full key (a UID, or hash_key(sha1hex))."""
    return hashlib.sha1(key).digest()[:_KEY]


def _flag_bits(flag):
    return _F_HEADERS if flag == "h" else 0


def _journal_bound(size):
    """The journal's bound for a snapshot of size bytes."""
    return _JOURNAL_MIN + size // _JOURNAL_SHARE


def max_snapshot(max_entries):
    """Bytes of the largest snapshot: max_entries worst-case lines, a pending line, header, J."""
    return max_entries * _MAX_ENTRY_LINE + _MAX_STATE_LINE + 64


def flash_need(max_entries):
    """Flash an account's state may take beyond its snapshot: the journal at its bound plus the
    temp file of one compaction of a full table (the old file stays until the rename), and its
    slot files."""
    s = max_snapshot(max_entries)
    return s + _journal_bound(s) + _FS_SLACK


def _seal(body):
    """A record line: body, a space, 8 hex of CRC-32 of body, LF."""
    return b"%s %08x\n" % (body, binascii.crc32(body) & 0xFFFFFFFF)


class UidState:
    def __init__(self, state_dir, account, max_entries=_DEFAULT_MAX_ENTRIES):
        self.max_entries = max_entries
        self.dir = state_dir
        self.path = compat.join(state_dir, account + ".uidl")
        self.journal_min = _JOURNAL_MIN  # tests lower it to reach compactions with a few records
        self.buf = None  # the table, made by load(): n records of _REC bytes, sorted by key, then free space
        self.n = 0
        self.added = {}  # full key -> None: entries added since the last save (not on file yet)
        self.pending = None  # (size, sha1hex, local uid, first_seen, flag, uid) or None
        self.dirty = False
        self._edits = None  # X / T records waiting for the next save (made at the first one)
        self._ne = 0
        self._pend = False  # pending set or cleared since the last save
        self._compact = True  # the next save rewrites the file (no v2 file loaded yet)
        self._snap = 0  # bytes of the snapshot part of the file
        self._jbytes = 0  # bytes of journal after it
        self._most = 0  # the largest journal write's bytes since the load (due's guess of a batch's)
        self._count = 0  # slot files written since the last journal write (load: 1 if slot 0 is current)

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

    def _put(self, key, first_seen, bits, k=None):
        """Insert or update; returns (index, new). `k`: the record key if already known."""
        if k is None:
            k = table_key(key)
        found, i = self._find(k)
        if key is not None and is_hash_key(key):
            bits |= _F_SYNTH
        if not found:
            if (self.n + 1) * _REC > len(self.buf):
                self._cold("_table", None)  # raises StateError: full (its text cold)
            mv = memoryview(self.buf)
            o = i * _REC
            end = self.n * _REC
            if o < end:
                mv[o + _REC:end + _REC] = mv[o:end]  # memmove (overlap-safe in both runtimes)
            self.buf[o:o + _KEY] = k
            self.n += 1
        else:
            o = i * _REC
            bits |= self.buf[o + _FL] & (_F_SESSION | _F_SYNTH)
        # first_seen in days (the theory above), rounded up: an age is never overstated
        d = 0 if first_seen < _SANE_TIME else min((first_seen - _SANE_TIME + _DAY - 1) // _DAY + 1, _MAX_DAYS)
        struct.pack_into(">H", self.buf, o + _KEY, d)
        self.buf[o + _FL] = bits
        return i, not found

    def _index(self, key):
        found, i = self._find(table_key(key))
        return i if found else -1

    def _edit(self, code, k, first_seen, bits):
        """Journal a drop (code X) or change (T) of the on-file entry with record key k."""
        if self._compact:
            return  # the next save rewrites everything anyway
        if self._ne >= _MAX_EDITS:
            self._compact = True
            return
        e = self._edits
        if e is None:  # most sessions journal no drop or change before their end: no buffer
            e = self._edits = bytearray(_MAX_EDITS * _EDIT)
        o = self._ne * _EDIT
        e[o] = code
        e[o + 1:o + 1 + _KEY] = k
        struct.pack_into(">I", e, o + 1 + _KEY, first_seen)
        e[o + _EDIT - 1] = bits & _F_HEADERS
        self._ne += 1

    def _cold(self, fn, *args):
        """uidcompact.<fn>(self, *args): the file and rare-table code (load; compact;
        clear_deleted, for a refused DELE), loaded for the call and dropped after it on
        MicroPython (not held while messages move; its qstrs stay)."""
        from pocketpost import uidcompact

        try:
            return getattr(uidcompact, fn)(self, *args)
        finally:
            uidcompact = None
            compat.forget(("uidcompact",))

    def mark(self, key, seen=False, deleted=False, new=False):
        """Set per-session bits on key's record (none: a lookup); returns the bits it had
        before, or -1 if the key is not in the table."""
        i = self._index(key)
        if i < 0:
            return -1
        o = i * _REC + _FL
        old = self.buf[o]
        self.buf[o] = old | (_F_SEEN if seen else 0) | (_F_DELETED if deleted else 0) | (_F_NEW if new else 0)
        return old

    # -- reading the file -------------------------------------------------------------
    def load(self, count=None, n=None):
        """Make the table and read the state file into it (uidcompact.size and load: loaded for
        each, dropped after it on MicroPython). The table holds the live entries on file (and a
        pending one) and room for `count` more, at most max_entries in all (the RAM paragraph
        above); -1: a session's start, which guesses; without `count`, max_entries. `n`: the
        table's records, counted by the caller (clientconf._state: no first pass here)."""
        self.dirty = False
        if n is None:
            n = self._cold("size", count)  # the first pass: the table's records (self.n: those on file)
        self.buf = None  # (an earlier load's table freed before this one is made; size looks at it)
        if compat.IS_MICROPYTHON:
            # The table made where the first pass's code was, before the load's is placed again
            # (above the table, its hole then free with the heap's top: a table made by the load,
            # above its code, held the hole the session's 4 KiB buffer came in next: d 87 -> 90 KiB)
            gc.collect()
        try:
            self.buf = bytearray(n * _REC)
        except MemoryError:
            pass
        if self.buf is None:  # (outside the except: its MemoryError freed first)
            self._cold("_table", n, self.n, count)  # raises StateError: no heap for it (its text cold)
        return self._cold("load")

    # -- writing ----------------------------------------------------------------------
    def _entry_line(self, key):
        """key's sealed S/H line with its current values, or None if it has no record."""
        e = self.get(key)
        if e is None:
            return None
        # S, or H for a content key (its hex without the space); the flag f or h (%c: ints, so
        # no more bytes constants, each a heap object held with this module)
        h = is_hash_key(key)
        return _seal(b"%c %d %c %s" % (0x48 if h else 0x53, e[0], 0x68 if e[1] == "h" else 0x66, key[1:] if h else key))

    def _pending_line(self):
        p = self.pending
        if p is None:
            return _seal(b"C")
        line = b"P %d %s %s %d %s" % (p[0], p[1].encode(), p[2].encode(), p[3], p[4].encode())
        if not is_hash_key(p[5]):
            line += b" " + p[5]
        return _seal(line)

    def _batch(self):
        """The journal records of the changes since the last save: a list of lines, the pending
        entry's (a C or P) last (written one by one, not joined: a batch's records in one
        ~700-byte object found no room at its end, the first fetch of 100 93 -> 95 KiB)."""
        parts = []
        e = self._edits
        for j in range(self._ne):
            o = j * _EDIT
            hx = binascii.hexlify(bytes(e[o + 1:o + 1 + _KEY]))
            if e[o] == 0x58:
                parts.append(_seal(b"X " + hx))
            else:
                fs = struct.unpack_from(">I", e, o + 1 + _KEY)[0]
                parts.append(_seal(b"T %s %d %c" % (hx, fs, 0x68 if e[o + _EDIT - 1] & _F_HEADERS else 0x66)))
        for key in self.added:
            ln = self._entry_line(key)
            if ln is not None:
                parts.append(ln)
        if self._pend:
            parts.append(self._pending_line())
        return parts

    def save(self, batch=0):
        """Make the changes since the last save durable: appended to the journal as one write,
        or (see the theory above) by a compaction. batch=1 (the client, a pending entry just set):
        the pending entry alone, into the next slot file (the theory's pending paragraph), while the
        journal is sound and a slot is left; the other changes wait for the next journal write."""
        if not self._compact:
            path = self.path
            if batch and self._count < _SLOTS:  # one inline file rewritten whole (clientget.py)
                path += str(self._count)
                batch = (_seal(b"L %d" % (self._snap + self._jbytes)), self._pending_line())
            else:
                batch = self._batch()
            n = 0
            for b in batch:
                n += len(b)
            if path != self.path or self._jbytes + n <= self._bound():
                if n:
                    try:
                        f = open(path, "ab" if path == self.path else "wb")
                        try:
                            for b in batch:
                                f.write(b)
                            compat.sync_file(f)
                        finally:
                            f.close()
                    except BaseException:
                        self._compact = True  # a partial record may be on file: rewrite next time
                        raise
                    if path != self.path:
                        self._count += 1
                        return  # (the other changes wait for the next journal write)
                    self._jbytes += n
                    self._count = 0  # the slot files are older than the journal now
                    if n > self._most:
                        self._most = n
                self._saved()
                return
        self.compact()

    def _bound(self):
        """Bytes the journal may reach before a save compacts (see the theory above)."""
        return _journal_bound(min(self._snap, max_snapshot(self.max_entries))) + self.journal_min - _JOURNAL_MIN

    def due(self, batch=0):
        """True if the next journal write (the entries added so far and a P record) would
        compact: a new or repaired file, or a journal near its bound. The client then compacts
        at the session's start or between two batches, so a compaction (uidcompact.py) never
        comes on top of a delivery's heap. batch: messages about to be stored (client.fetch_account's next
        batch): True also when one more journal write as large as the largest since the load
        (a batch's records go in one) would pass the bound, so the client compacts between
        batches (an estimate)."""
        # Its batch: the drops and changes journaled since the last save (a T or X line each,
        # shorter than an entry line), the entries added (the batch's stored so far: with batch
        # only, at the batch's end; between two downloads the journal takes none, clientget.py),
        # a P line.
        k = len(self.added) if batch else 1
        lines = self._ne + (k if k > 1 else 1)
        need = self._jbytes + lines * _MAX_ENTRY_LINE + _MAX_STATE_LINE + (batch and self._most)
        return self._compact or need > self._bound()

    def _saved(self):
        self.added = {}
        self._ne = 0
        self._pend = False
        self.dirty = False

    def compact(self):
        """Atomically replace the state file (temp file, flush/fsync, rename) by a snapshot of
        the table (uidcompact.py)."""
        self._cold("compact")

    # -- entries ----------------------------------------------------------------------
    def __contains__(self, uid):
        return self._index(uid) >= 0

    def __len__(self):
        return self.n

    def get(self, uid):
        i = self._index(uid)
        if i < 0:
            return None
        o = i * _REC
        d = struct.unpack_from(">H", self.buf, o + _KEY)[0]  # (days: the theory above)
        return [_SANE_TIME + (d - 1) * _DAY if d else 0, "h" if self.buf[o + _FL] & _F_HEADERS else "f"]

    def add(self, uid, first_seen, flag="f"):
        uid = bytes(uid)
        k = table_key(uid)
        i, new = self._put(uid, first_seen, _flag_bits(flag), k)
        if new:
            self.added[uid] = None
        elif uid not in self.added:
            self._edit(0x54, k, first_seen, _flag_bits(flag))  # T: an entry already on file
        self.dirty = True

    def set_pending(self, size, digest, local_uid, first_seen, flag, uid):
        # (The message's SHA-1 as 40 hex digits, the local UID Delivery.uid_on_commit gives.)
        self.pending = (size, digest, local_uid, first_seen, flag, uid)
        self._pend = True
        self.dirty = True

    def clear_pending(self):
        if self.pending is not None:
            self.pending = None
            self._pend = True
            self.dirty = True

