"""The maildrop on flash: deliver, index, quota (lock, list, open, commit deletions: storesession.py).

Theory of operation
-------------------
One directory per mailbox under the store root:

    <root>/<name>/index          fixed 24-byte records: a header, then one record per indexed message
    <root>/<name>/commit         present only while a deletion commit is in flight (the intent log)
    <root>/<name>/index.new      present only while the index is being rewritten
    <root>/<name>/tmp/           deliveries being written (orphans are removed when the store opens)
    <root>/<name>/b<k>/          message files with seq in [k*BUCKET, (k+1)*BUCKET)
    <root>/<name>/damaged/       message files set aside by a scan (wrong size, unreadable), same names

A message file holds the message's wire form: CRLF line ends, every line that starts with "."
stuffed with a second ".", no terminator. So RETR of any message is a copy: the file, then
".\r\n" (pop3server.PlainProducer). It is named "<epoch>.<seq>.<arrival>.p" (epoch: 8 hex digits,
seq and arrival: decimal) when no line starts with "." (the file is the message itself), and
"<epoch>.<seq>.<arrival>.d<N>" when N dots were added (N >= 1). LIST, STAT and UIDL sizes stay
the message's own octets (unstuffed, CRLF: what Dovecot reports and what our fetcher's size rule
compares), the file's size less N. Readers of the content (export, backup, the fetcher's digest)
get it un-stuffed from Mailbox.open; RETR and TOP take the file (open(i, stored=True)). Files
named "<epoch>.<seq>.<arrival>" were written before the wire form: unstuffed (CRLF) messages,
served as before through the stuffing codec (needs_stuffing); they are not converted.
The UID is "<epoch>.<seq>". seq grows by one per delivered message and never goes
backwards; the epoch is a random number chosen when the index is created or rebuilt, so even if
the index is lost after the highest message was deleted, no UID is ever handed out twice.

Delivery never touches the index (that keeps it at about three metadata commits beyond the
payload on littlefs): the message is streamed into tmp/, flushed, then renamed into its bucket.
Lone LF becomes CRLF and dot lines are stuffed here and nowhere else. A chunk whose LFs are all
preceded by CR (one walk from LF to LF with C `find`, switching to C `count` passes when lines are
short; a LF first in the chunk after a CR last in the previous one counts as paired) and with no
line starting with "." (the same walk looks at the byte after each LF, plus a "." first in the
chunk when the previous byte was LF or the message starts there) is written to the file as
given. A chunk with dot lines is written in pieces cut after each LF that precedes a ".", with a
"." in between (C `find` of "\n."); only a chunk with a lone LF takes the slow path, a per-line
walk through a fixed output buffer that does both. A caller that un-stuffed the text itself says
what it knows with `write(..., crlf=True, dots=False)` (no lone LF, no dot line so far) and skips
the scans. The dot count goes into the file name at the rename, so it costs no flash operation.
`begin(name, digest=True)` also keeps a SHA-1 of the message (the un-stuffed octets LIST counts:
the client's crash-safe bookkeeping); `digest()` ends the message (the final line end is added
then) and returns it. Files with a seq above the index's last record are "unindexed"; they
can only live in the newest buckets, so finding them lists at most a bucket or two, never the
whole mailbox. They are appended to the index (records first, in seq order) when the mailbox is
locked, or during delivery once enough have piled up while nobody holds the lock.

An index record is (epoch, seq, arrival, size field, running total, check); the check is the
CRC-32 of the first five fields continued from the CRC-32 residue, so one crc32 call over a block
of records verifies them all (residue in, residue out). The size field is the file's octets in
bits 0-29 (messages are far below 1 GiB), bit 31 set for a file in the wire form, bit 30 for one
with dots added; the running total adds up LIST sizes (unstuffed). So a stuffed message's LIST
size is its running total less the one before (0 before the first record: every rewrite starts
the total at 0, every append continues it), and its dot count, the file's octets less that: the
record gives the file name without a field of its own, and the format (b'PPX2', 24 bytes) is
unchanged. Records written before the wire form have bits 30-31 clear ("unstuffed", matching
their three-part names; their size field is their LIST size too). A rebuild takes the flags and
dot counts from the file names, like everything else. The intent log keeps each record's LIST
size where the index keeps the running total (its records are not consecutive). Every index
record carries the running total, so opening a mailbox reads the header and the last record:
STAT costs the same at 1 or 5,000 messages. Records are read on demand (seek), so a session's
RAM does not grow with the message count either.

Deletion commit (UPDATE state), crash-safe by roll-forward:
  1. write the intent log `commit` (a header with the count, then the records to delete in
     index order, with checks), flush: the commit point;
  2. unlink the message files (a missing one is fine: we may be redoing this);
  3. write `index.new` without them, flush, rename it over `index` (atomic);
  4. remove `commit`.
Its RAM does not grow with the number of deletions: the session hands over its bitmask of deleted
messages (one bit per message), the intent log is written while the index is read a block at a
time, and every later pass (unlink, index rewrite, bucket removal, recovery's check of the log)
streams the log or the index through a fixed buffer. The log holds its records in index order
(ascending seq), so recovery filters the index by merging the two streams and a bucket's
records come up in one run.
Recovery (at the first lock or delivery after boot, at Store.check, or at a lock that found
damage) finishes a valid intent log (if that fails for any reason but a full flash, the files
decide: see the scan), throws away a torn one, removes `index.new`, then scans: the index
(every valid record) against one listing of the bucket directories. File names carry the UID,
arrival, form and dot count, the listing gives sizes, so the files are the truth: a record failing
its check is replaced by its file's name, a record whose file is gone is dropped, a file whose
size is not its record's (the file's octets, exact: the dot count in the name keeps a stuffed
file as exactly checked as any) or is below its own dot count is moved to damaged/ (kept, under
its name, for export and inspection), a file the index lost is indexed again; if anything
differed (a dot count that disagrees with the running totals included), the index is rewritten
(index.new, renamed over). UIDs never change; a new epoch is taken only when the header itself
is lost.
Then unindexed files are appended.

Damage while running: every lock reads the whole index and verifies every record (one crc32
call per block; ~1 ms at 5,000 messages on the host); a failure sends the mailbox through
recovery before the session sees it. Mailbox.open checks the file's size against the record
(the file's octets) and refuses a file that differs or cannot be opened, marking the mailbox so
the next lock recovers it. A file's content is not checksummed: a same-size change goes unseen
by RETR (reading a stuffed file un-stuffed also checks it comes to its LIST size, EIO if not).

Cold code: recovery (the roll-forward or discard of an intent log, the scan, salvage, the rebuild
from the files, the format-1 upgrade) is in storescan.py, Store.check and describe() in
storecheck.py. They run only at the first lock or delivery of a mailbox after boot, at a lock that
found damage and at a check, so this module imports them for the call (_cold) and, on
MicroPython, drops both when no call is inside them (_held counts the calls under way: a module in
use is never dropped). Nothing outside a call refers to them: the exceptions, _Box and the RAM
state live here, reports are plain dicts, their generators are closed before the call returns.
Delivery stays here and never loads them.

The session side is storesession.py: lock (Store.lock imports it), Mailbox (the session's reads,
store.Mailbox resolves to it) and the deletion commit (write_intent, apply_deletions, also the
roll-forward of recovery). A process that only delivers (the fetch CLI) never loads it.

Locks live in RAM (a module-level set): a dead session cannot leave one behind across a restart.
One process owns a store root; all Store objects in it share the per-mailbox state below.
"""

import binascii
import hashlib
import os
import struct

from pocketpost import compat, log
from pocketpost.compat import const

_crc32 = binascii.crc32  # in every MicroPython build with deflate (ESP32 and unix since 1.22)

# --- named limits -----------------------------------------------------------------------------

# Default per-mailbox quota: a 4 MB ESP32 board leaves ~1-2 MB to the filesystem; one mailbox may
# use most of it, but not all (the reserve below and other mailboxes need room).
DEFAULT_QUOTA = const(1024 * 1024)
# Free space kept back from deliveries so a deletion commit (intent log, metadata commits,
# directory compaction on littlefs) can still run when the flash is otherwise full. The space for
# rewriting the index is reserved on top of this (it grows with the mailbox).
DEFAULT_RESERVE_BYTES = const(16 * 1024)
# Mailbox names become directory names: [a-z0-9._-], not starting with '.', bounded length.
MAX_NAME_LEN = const(32)
# Messages per bucket directory: bounds the listing needed to find unindexed messages at open.
BUCKET = const(128)
# Unindexed deliveries tolerated before a delivery (with the mailbox unlocked) indexes them;
# each merge appends to the index, which on littlefs rewrites the index's last block.
MERGE_AFTER = const(16)
# Delivery I/O buffers: fixed, allocated once per delivery, never proportional to the message.
OUT_BUF = const(512)
IN_BUF = const(512)
# Delivery checks a chunk by walking its LFs while they average at least this many bytes apart,
# and by C count passes over the rest of the chunk once lines are denser (see Delivery._take).
_WALK_BYTES = const(32)
# Free-space estimate: re-measured every FREE_RECHECK deliveries, and at every delivery once the
# estimate is within FREE_MARGIN of the reserve (statvfs is O(files) on littlefs).
FREE_RECHECK = const(32)
FREE_MARGIN = const(64 * 1024)

_REC = const(24)  # one index record: six little-endian uint32
_RECS_PER_READ = const(32)  # records read at once by a session (768-byte buffer)
_FMT = "<6I"
_FMT5 = "<5I"
# Format 2: a record's check is a CRC-32 (format 1, b'PPX1'/b'PPC1', used a weaker mix that had to
# be verified record by record in Python; such an index is rebuilt from the files, UIDs kept, and
# such an intent log is rewritten in format 2 and carried out: see _Box._upgrade_intent).
_MAGIC_INDEX = const(0x32585050)  # b'PPX2'
_MAGIC_COMMIT = const(0x32435050)  # b'PPC2'
_OLD_MAGIC_INDEX = b"PPX1"
_OLD_MAGIC_COMMIT = const(0x31435050)  # b'PPC1'

# A record's check is the CRC-32 of its first 20 bytes continued from this value, the CRC-32
# residue: the CRC of a whole valid record (check included) continued from it gives it back, so a
# run of records is verified by one crc32 call over the run (residue in, residue out).
_RES = const(0x2144DF1C)
_MASK = const(0xFFFFFFFF)
_PLAIN = const(0x80000000)  # in a record's size field: the file is the wire form (plain or stuffed)
_STUFFED = const(0x40000000)  # with _PLAIN: the file has dots added (their number is in its name)
_SIZE = const(0x3FFFFFFF)  # the file's octets (messages are far below 1 GiB)
_LF = const(10)
_CR = const(13)
_DOT = const(46)
# Listings of tmp/ when cleaning it: one, then one more after removals (see _clean_tmp).
_TMP_PASSES = const(3)
_DAMAGED = "damaged"  # in a mailbox: message files set aside by a scan, kept for export/inspection
_LOCKS = set()  # mailbox directories locked in this process (RAM only, by design)
_BOXES = {}  # mailbox directory -> _Box (RAM state shared by every Store in the process)


class StoreError(Exception):
    """A store failure; `code` is the RFC 2449/3206 response code the protocol layer sends."""

    code = "SYS/TEMP"

    def __init__(self, msg="store error", code=None):
        super().__init__(msg)
        if code is not None:
            self.code = code


class StoreFull(StoreError):
    """The filesystem (less its reserve) has no room for this message."""

    code = "SYS/TEMP"


class QuotaExceeded(StoreError):
    """The mailbox quota has no room for this message."""

    code = "SYS/TEMP"


class MailboxLocked(StoreError):
    """The mailbox is already locked by another session of this process."""

    code = "IN-USE"


def _pack(buf, off, a, b, c, d, e):
    struct.pack_into(_FMT5, buf, off, a, b, c, d, e)
    struct.pack_into("<I", buf, off + 20, _crc32(memoryview(buf)[off : off + 20], _RES))


def _unpack(buf, off):
    """The six fields of a record, or None if its check fails."""
    if _crc32(memoryview(buf)[off : off + _REC], _RES) != _RES:
        return None
    return struct.unpack_from(_FMT, buf, off)


def _runs_ok(mv, n):
    """True if every record in mv[:n] (whole records) passes its check: one C call for them all."""
    return _crc32(mv[:n], _RES) == _RES


def _os_error(e):
    """Map an OSError from the filesystem to the StoreError the protocol layers understand."""
    if compat.errno_of(e) == compat.ENOSPC:
        return StoreFull("flash full")
    return StoreError("storage error %r" % (compat.errno_of(e),))


def _remove(path):
    try:
        os.remove(path)
        return True
    except OSError as e:
        if compat.errno_of(e) != compat.ENOENT:
            raise
        return False


def valid_name(name):
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LEN or name[0] == ".":
        return False
    for ch in name:
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch in "._-"):
            return False
    return True


def _dots(szf, lsize):
    """Dots added to a stored message: its file octets (szf, a record's size field) less its
    LIST size; 0 unless the record says stuffed."""
    return (szf & _SIZE) - lsize if szf & _STUFFED else 0


def _msg_name(epoch, seq, arrival, szf, lsize=None):
    """The file name of a message; szf is a record's size field (bit 31: wire form, bit 30:
    stuffed), lsize its LIST size (which gives the number of added dots)."""
    if szf & _STUFFED:
        if lsize is None:
            raise StoreError("stuffed message: LIST size needed for its name")
        return "%08x.%d.%d.d%d" % (epoch, seq, arrival, _dots(szf, lsize))
    if szf & _PLAIN:
        return "%08x.%d.%d.p" % (epoch, seq, arrival)
    return "%08x.%d.%d" % (epoch, seq, arrival)


def _parse_msg_name(name):
    """(epoch, seq, arrival, flags, dots) of a message file name, or None for anything else;
    flags: 0 (unstuffed, from before the wire form), _PLAIN, or _PLAIN | _STUFFED."""
    parts = name.split(".")
    n = len(parts)
    if not 3 <= n <= 4 or len(parts[0]) != 8:
        return None
    flags = 0
    dots = 0
    if n == 4:
        t = parts[3]
        if t == "p":
            flags = _PLAIN
        elif len(t) > 1 and t[0] == "d" and t[1:].isdigit() and t[1] != "0" and len(t) <= 11:
            flags = _PLAIN | _STUFFED
            dots = int(t[1:])
        else:
            return None
    try:
        epoch = int(parts[0], 16)
        seq = int(parts[1])
        arrival = int(parts[2])
    except ValueError:
        return None
    if seq < 1 or arrival < 0 or seq > _MASK or arrival > _MASK:
        return None
    return epoch, seq, arrival, flags, dots


def _lsize(r, prev):
    """The LIST size of index record r (six fields) whose predecessor's running total is prev
    (0 for the first record): the size field for an unstuffed file, else the difference of the
    running totals (which add up LIST sizes while the size field holds the file's octets)."""
    if r[3] & _STUFFED:
        return (r[4] - prev) & _MASK
    return r[3] & _SIZE


def _file_rec(m, size):
    """The in-RAM record (epoch, seq, arrival, size field, LIST size) of a message file from
    its parsed name m and its size; the LIST size is negative when the file is shorter than the
    dots its name says were added (damaged)."""
    return m[0], m[1], m[2], size | m[3], size - m[4]


def parse_uid(uid):
    """(epoch, seq) of a UID "<8 hex digits>.<seq>" as the store makes them, or None."""
    parts = uid.split(".") if isinstance(uid, str) else ()
    if len(parts) != 2 or len(parts[0]) != 8 or not parts[1].isdigit() or len(parts[1]) > 10:
        return None
    try:
        epoch = int(parts[0], 16)
    except ValueError:
        return None
    seq = int(parts[1])
    if not 1 <= seq <= _MASK:
        return None
    return epoch, seq


def _new_epoch():
    b = compat.urandom(4)
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]


class _Box:
    """RAM state of one mailbox, shared by every Store of the process (see module docstring)."""

    def __init__(self, path):
        self.path = path
        self.loaded = False
        self.busy = 0  # deliveries in flight
        self.epoch = 0
        self.floor = 1  # header: next seq may not be below this
        self.last_seq = 0  # seq of the last index record (0: none)
        self.idx_count = 0
        self.idx_total = 0
        self.next_seq = 1
        self.count = 0  # indexed + unindexed
        self.total = 0
        self.unindexed = 0
        self.suspect = False  # a session met damage: the next lock runs recovery again
        self.unreadable = []  # records of messages a session could not read (Mailbox.unreadable)

    def p(self, *parts):
        return compat.join(self.path, *parts)

    def bucket_dir(self, seq):
        return self.p("b%d" % (seq // BUCKET))

    def msg_path(self, epoch, seq, arrival, szf, lsize=None):
        """The message file's path; lsize (the LIST size) is needed for a stuffed one only."""
        return compat.join(self.bucket_dir(seq), _msg_name(epoch, seq, arrival, szf, lsize))

    # --- index file ---------------------------------------------------------------------------

    def write_index(self, path, records_iter, epoch, floor):
        """Write a complete index (header + records from records_iter) to path, flushed."""
        buf = bytearray(_REC * _RECS_PER_READ)
        count = 0
        total = 0
        last = 0
        f = open(path, "wb")
        try:
            _pack(buf, 0, _MAGIC_INDEX, 1, epoch, floor, 0)
            f.write(memoryview(buf)[:_REC])
            n = 0
            for r in records_iter:
                total += r[4]  # the LIST size (the size field holds the file's octets)
                _pack(buf, n * _REC, r[0], r[1], r[2], r[3], total & _MASK)
                n += 1
                count += 1
                last = r[1]
                if n == _RECS_PER_READ:
                    f.write(buf)
                    n = 0
            if n:
                f.write(memoryview(buf)[: n * _REC])
            compat.sync_file(f)
        finally:
            f.close()
        return count, total, last

    def read_index_state(self):
        """Read and verify the whole index (every record's check, one crc32 call per block of
        records: the cost of reading the file, ~1 ms at 5,000 messages on the host), then set the
        idx_* fields from its header and last record. False if missing, torn, unreadable or if
        any record fails its check."""
        try:
            f = open(self.p("index"), "rb")
        except OSError:
            return False
        buf = bytearray(_REC * _RECS_PER_READ)
        mv = memoryview(buf)
        h = None
        try:
            size = f.seek(0, 2)
            if size < _REC or size % _REC:
                return False
            f.seek(0)
            last = 0
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                if n % _REC or not _runs_ok(mv, n):
                    return False
                if h is None:
                    h = struct.unpack_from(_FMT, buf, 0)
                last = n - _REC
        except OSError:  # an unreadable block: as good as a failed check
            return False
        finally:
            f.close()
        if h is None or h[0] != _MAGIC_INDEX or h[1] != 1:
            return False
        count = size // _REC - 1
        last_seq = 0
        total = 0
        if count:
            r = struct.unpack_from(_FMT, buf, last)
            if r[1] < 1:
                return False
            last_seq = r[1]
            total = r[4]
        self.epoch = h[2]
        self.floor = h[3]
        self.idx_count = count
        self.idx_total = total
        self.last_seq = last_seq
        return True

    def iter_index(self, mask=None):
        """Yield (epoch, seq, arrival, size field, LIST size) of every index record, a block at a
        time, leaving out record i (0-based) when bit (i & 7) of mask[i >> 3] is set."""
        i = 0
        prev = 0  # the running total of the record before
        it = _iter_recs(self.p("index"), "index record corrupt")
        try:
            for r in it:
                if mask is None or not (i >> 3 < len(mask) and mask[i >> 3] & (1 << (i & 7))):
                    yield r[0], r[1], r[2], r[3], _lsize(r, prev)
                prev = r[4]
                i += 1
        finally:
            it.close()

    # --- directory scans ----------------------------------------------------------------------

    def scan_bucket(self, k, above):
        """Message files in bucket k with seq > above: list of (epoch, seq, arrival, size field,
        LIST size)."""
        path = self.p("b%d" % k)
        out = []
        for name, is_dir, size in compat.listdir_stat(path):
            if is_dir:
                continue
            m = _parse_msg_name(name)
            if m is None or m[1] <= above or size < m[4]:
                continue  # (a file shorter than its added dots waits for a scan to set it aside)
            out.append(_file_rec(m, size))
        return out

    def find_unindexed(self):
        """Files with seq above the index, found by listing the newest buckets only."""
        start = max(self.last_seq + 1, self.floor)
        k = start // BUCKET
        out = []
        while compat.isdir(self.p("b%d" % k)):
            out.extend(self.scan_bucket(k, self.last_seq))
            k += 1
        out.sort(key=lambda r: r[1])
        return out

    def merge(self, recs=None):
        """Append records for unindexed files (records first; files are already in place).
        recs: those records when the caller knows them (a delivery with a given UID)."""
        if recs is None:
            recs = self.find_unindexed()
        if not recs:
            return
        buf = bytearray(_REC)
        total = self.idx_total
        f = open(self.p("index"), "ab")
        try:
            for r in recs:
                total += r[4]
                _pack(buf, 0, r[0], r[1], r[2], r[3], total & _MASK)
                f.write(buf)
            compat.sync_file(f)
        finally:
            f.close()
        self.idx_count += len(recs)
        self.idx_total = total & _MASK
        self.last_seq = recs[-1][1]
        self.unindexed = 0

    def merge_due(self):
        """After a delivery: index the unindexed messages once MERGE_AFTER have piled up, if
        nobody holds the mailbox and no delivery is in flight (a failure is retried later)."""
        if self.unindexed >= MERGE_AFTER and self.path not in _LOCKS and not self.busy:
            try:
                self.merge()
            except (OSError, StoreError):
                pass  # retried at the next lock or delivery


def _iter_recs(path, what):
    """Yield the records (six fields) after the header of an index or intent log file, reading
    _RECS_PER_READ at a time; raises StoreError(what) at a record that fails its check. The file
    stays open until the walk ends: close() a walk that is left early (MicroPython has no
    __del__ to do it)."""
    buf = bytearray(_REC * _RECS_PER_READ)
    f = open(path, "rb")
    try:
        f.seek(_REC)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            for off in range(0, n - n % _REC, _REC):
                r = _unpack(buf, off)
                if r is None:
                    raise StoreError(what)
                yield r
    finally:
        f.close()


def _clean_tmp(tmp):
    """Remove every file in a mailbox's tmp/ (orphans of interrupted deliveries); returns how
    many. Listed again after a removal, up to _TMP_PASSES times: the first write after a mount
    is when littlefs finishes a move a power cut left half done, and an entry can show up (or go)
    only then; one more listing keeps it from waiting for the next boot."""
    removed = 0
    try:
        if not compat.isdir(tmp):
            return 0
        for _ in range(_TMP_PASSES):
            names = compat.listdir(tmp)
            if not names:
                break
            for fn in names:
                if _remove(compat.join(tmp, fn)):
                    removed += 1
    except OSError as e:  # a damaged tmp/ must not keep the store from opening
        log.warning("store %s: temp files not removed: %r", tmp, e)
    return removed


class Store:
    def __init__(self, root, quota=DEFAULT_QUOTA, reserve=DEFAULT_RESERVE_BYTES):
        self.root = root.rstrip("/") or "/"
        self.quota = quota
        self.reserve = reserve
        self._free_cache = None  # [free, block size, uses, bytes delivered since]
        compat.makedirs(self.root)
        # A group commit (groupcommit.py: one SMTP message into several mailboxes) cut short: finish
        # or forget it before the temp clean-up below (a committed group's files are still there).
        if compat.exists(compat.join(self.root, "group")) or compat.exists(compat.join(self.root, "group.new")):
            from pocketpost import groupcommit

            groupcommit.recover(self.root)
        # Forget RAM state of idle mailboxes under this root (the flash may have changed since,
        # e.g. a remount in tests), and remove orphaned temp files of interrupted deliveries.
        prefix = self.root + "/"
        for path in list(_BOXES):
            box = _BOXES[path]
            if path.startswith(prefix) and not box.busy and path not in _LOCKS:
                del _BOXES[path]
        for name in self.mailboxes():
            path = compat.join(self.root, name)
            box = _BOXES.get(path)
            if box is not None and box.busy:
                continue
            _clean_tmp(compat.join(path, "tmp"))

    def check(self, repair=False, deep=False, names=None):
        """Check every mailbox that no session holds; with repair, fix what is found. Returns
        {"mailboxes": {name: report}, "problems": n}; a report counts (see storescan.report): "bad_records"
        (index records failing their check), "missing" (files gone), "damaged" (files whose size
        is not the index's; moved to damaged/), "recovered" (files the index had lost),
        "renamed", "duplicates" (second files of a seq: renumbered), "unreadable" (deep only),
        "temp" (leftover temp files), "intent" (a deletion commit in flight: pending/torn, or
        with repair replayed/discarded/not replayed),
        "index" (ok, damaged, missing, rebuilt), "messages", "in_use" (locked: not checked).
        The cheap part (what the board runs at boot): verify each index, compare it with one
        listing of the buckets, finish or drop an intent log, remove temp files. deep=True also
        reads every message file to its end (the host tool does; on a board it costs a read of
        the whole mailbox). Without repair nothing on flash or in RAM changes. names: only these
        mailboxes (the board checks one at a time, yielding to the loop in between)."""
        return _cold("storecheck", "check", self, repair, deep, names)

    def _free(self, path):
        """(free bytes, block size), or (-1, 0) if unknown. statvfs on littlefs walks the whole
        filesystem (O(files)), so between checks we subtract what this store delivered; we look
        again every FREE_RECHECK deliveries, and always when the estimate nears the reserve."""
        c = self._free_cache
        if c is not None and c[2] < FREE_RECHECK and c[0] - c[3] > self.reserve + FREE_MARGIN:
            c[2] += 1
            return c[0] - c[3], c[1]
        try:
            free, bsize = compat.free_bytes(path)
        except (OSError, AttributeError):
            return -1, 0
        self._free_cache = [free, bsize, 0, 0]
        return free, bsize

    def _path(self, name):
        if not valid_name(name):
            raise StoreError("bad mailbox name", "SYS/PERM")
        return compat.join(self.root, name)

    def _box(self, name, create=True):
        """The loaded RAM state of a mailbox, recovering it from flash if needed."""
        path = self._path(name)
        box = _BOXES.get(path)
        if box is None:
            if not compat.isdir(path):
                if not create:
                    raise StoreError("no such mailbox", "SYS/PERM")
                self.create(name)
            box = _Box(path)
            _BOXES[path] = box
        if not box.loaded:
            try:
                _cold("storescan", "recover", box)
            except OSError as e:
                raise _os_error(e)
        return box

    def mailboxes(self):
        out = []
        for name, is_dir, _ in compat.listdir_stat(self.root):
            if is_dir and valid_name(name):
                out.append(name)
        out.sort()
        return out

    def exists(self, name):
        return compat.isdir(self._path(name))

    def create(self, name):
        path = self._path(name)
        try:
            compat.makedirs(compat.join(path, "tmp"))
            if not compat.exists(compat.join(path, "index")):
                box = _Box(path)
                box.write_index(box.p("index.new"), iter(()), _new_epoch(), 1)
                compat.rename(box.p("index.new"), box.p("index"))
                compat.sync_dir(path)
        except OSError as e:
            raise _os_error(e)

    def usage(self, name):
        box = self._box(name)
        return box.count, box.total

    # --- delivery -----------------------------------------------------------------------------

    def begin(self, name, arrival=None, digest=False, uid=None):
        """Start a delivery into mailbox `name` (created if missing). With digest=True the
        Delivery keeps a SHA-1 of the bytes it stores (see Delivery.digest).

        uid: "<epoch>.<seq>" to commit the message under that UID instead of the next one
        (restore from a backup keeps every POP3 UIDL). The seq must be at least the mailbox's
        next seq (restore in ascending seq order, into a mailbox that has nothing above it)
        and the mailbox must not be locked; commit() then writes its index record at once,
        because a restored seq may lie beyond a gap of bucket directories, where the search for
        unindexed files (which walks consecutive buckets) does not look. Seqs stay unique in a
        mailbox, and the mailbox's own epoch (new deliveries) differs from the restored ones."""
        if uid is not None:
            uid = parse_uid(uid)
            if uid is None:
                raise StoreError("bad uid", "SYS/PERM")
        box = self._box(name)
        limit, exc = self._room(box.path, box.count, box.total)
        if not limit:
            raise exc("mailbox quota exceeded" if exc is QuotaExceeded else "flash full")
        d = Delivery(self, box, compat.now() if arrival is None else arrival, limit, exc, digest)
        d._uid = uid
        return d

    def room(self, name):
        """(octets a message delivered to `name` may take now, the exception past it); -1 if
        unbounded, 0 if none. Writes nothing (host tools check a batch before delivering any):
        a mailbox that does not exist yet counts as empty."""
        path = self._path(name)
        if compat.isdir(path):
            box = self._box(name)
            return self._room(box.path, box.count, box.total)
        return self._room(self.root, 0, 0)

    def _room(self, path, count, total):
        limit, exc = -1, StoreFull
        if self.quota:
            limit, exc = self.quota - total, QuotaExceeded
            if limit <= 0:
                return 0, QuotaExceeded
        free, bsize = self._free(path)
        if free >= 0:
            # Room kept for a deletion commit: the reserve, a copy of the index, two spare blocks.
            room = free - self.reserve - (count + 1) * _REC - 2 * bsize
            if room <= 0:
                return 0, StoreFull
            if limit < 0 or room < limit:
                limit, exc = room, StoreFull
        return limit, exc

    def deliver_stream(self, name, readinto, arrival=None):
        """Deliver what readinto(buf) yields (it returns the byte count, 0 at EOF)."""
        d = self.begin(name, arrival)
        try:
            buf = bytearray(IN_BUF)
            mv = memoryview(buf)
            while True:
                n = readinto(buf)
                if not n:
                    break
                d.write(buf if n == IN_BUF else mv[:n])  # a full block: the no-copy path
            return d.commit()
        except BaseException:
            d.abort()
            raise

    def deliver_file(self, name, path, arrival=None):
        f = open(path, "rb")
        try:
            return self.deliver_stream(name, f.readinto, arrival)
        finally:
            f.close()

    # --- sessions -----------------------------------------------------------------------------

    def lock(self, name):
        """Lock a mailbox for a POP3 session and return its snapshot (a storesession.Mailbox)."""
        from pocketpost import storesession  # the session side: a delivery never loads it

        return storesession.lock(self, name)


def __getattr__(name):
    """store.Mailbox: the class lives in storesession.py (loaded on first use)."""
    if name == "Mailbox":
        from pocketpost import storesession

        return storesession.Mailbox
    raise AttributeError(name)


# The cold code (see the module docstring): storescan.py and storecheck.py, loaded by _cold for a
# call and dropped (MicroPython) once _held, the calls under way, is back to 0.
_held = [0]
_COLD = ("storecheck", "storescan")


def _cold(mod, fn, *args):
    """pocketpost.<mod>.<fn>(*args) (mod: storescan or storecheck), the cold modules kept loaded
    until the last call is out."""
    _held[0] += 1
    try:
        if mod == "storecheck":
            from pocketpost import storecheck  # (it imports storescan)

            return getattr(storecheck, fn)(*args)
        from pocketpost import storescan

        return getattr(storescan, fn)(*args)
    finally:
        compat.release_cold(_held, _COLD)


def describe(name, rep):
    """One line for a human about one mailbox's report from Store.check."""
    return _cold("storecheck", "describe", name, rep)


def reboot():
    """Forget all RAM state (locks and caches) as a restart would: the next lock or delivery
    recovers each mailbox from flash. For tests, and for board.main once Ctrl-C has stopped every
    session (never while a session or delivery of this process is still running)."""
    _LOCKS.clear()
    _BOXES.clear()


class Delivery:
    """One message being written: write() any number of times, then commit() or abort().

    Lone LF becomes CRLF and a line starting with "." gets a second "." as the bytes go by (one
    byte of state, the last byte written, is kept across write() calls): the file is the
    message's wire form. A chunk without a lone LF or a dot line goes to the file as given; a
    chunk with dot lines goes in pieces split at them; a chunk with a lone LF is converted
    through a fixed output buffer. Pass bytes or bytearray to get the fast path with no copy; a
    memoryview (which has no find/count) is scanned through a fixed input buffer. `size` counts
    the message's octets (LIST's), `dots` the dots added; the digest is of the message.
    """

    def __init__(self, store, box, arrival, limit, limit_exc, digest=False):
        self._store = store
        self._box = box
        self.arrival = arrival
        self._limit = limit
        self._limit_exc = limit_exc
        self.size = 0
        self._last = _LF  # pretend a line just ended: a leading LF is lone, a leading "." a dot line
        self.dots = 0  # dots added so far (lines starting with ".")
        self._ended = False  # digest() ended the message: no more write()
        self._h = None
        if digest:
            self._h = hashlib.sha1()
        self._out = None  # slow path output buffer, made at the first lone LF
        self._outmv = None
        self._n = 0
        self._in = None  # memoryview input buffer, made at the first memoryview
        self._inmv = None
        self._f = None
        self._uid = None  # (epoch, seq) given to Store.begin, else None: the next seq
        box.busy += 1
        _Delivery_ids[0] += 1
        self._tmp = box.p("tmp", "t%d.%d" % (_Delivery_ids[0], compat.ticks_ms() & 0xFFFF))  # type: ignore[operator]  # stub: ticks are opaque
        try:
            self._f = open(self._tmp, "wb")
        except OSError as e:
            self.abort()
            raise _os_error(e)

    @property
    def plain(self):
        """True while no line of the message written so far starts with "."."""
        return not self.dots

    def write(self, data, crlf=False, dots=True):
        """Add data. `crlf=True` says the caller has checked that every LF in `data` follows a
        CR (the one before data being the last byte written), and `dots=False` (with crlf) that no
        line of the message so far starts with ".": the POP3 client knows both from counting line
        ends for its size rule and from un-stuffing, so the store skips its own scans."""
        if self._f is None or self._ended:
            raise StoreError("delivery is closed")
        try:
            if crlf and not (dots and isinstance(data, memoryview)):  # a memoryview has no find()
                end = len(data)
                if end:
                    j = data.find(b"\n.") if dots else -1
                    if j >= 0 or (dots and data[0] == _DOT and self._last == _LF):
                        self._stuff(data, end, j)
                    else:
                        self._put(data, end)
            elif isinstance(data, memoryview):
                if self._in is None:
                    self._in = bytearray(IN_BUF)
                    self._inmv = memoryview(self._in)
                buf = self._in
                i = 0
                n = len(data)
                while i < n:
                    k = min(IN_BUF, n - i)
                    buf[:k] = data[i : i + k]
                    self._take(buf, k, buf if k == IN_BUF else self._inmv[:k])
                    i += k
            else:
                self._take(data, len(data), data)
        except OSError as e:
            self.abort()
            raise _os_error(e)
        except BaseException:
            self.abort()
            raise

    def _take(self, buf, end, whole):
        """buf[:end] (bytes or bytearray) into the message; `whole` is that range as one object.

        One walk over the LFs (a C find from each to the next) checks that each follows a CR and
        whether the byte after it is "."; it measured cheaper than C count passes on mail-like
        lines (two counts plus a find: ~2x). Lines denser than one per _WALK_BYTES bytes on
        average switch to those passes for the rest of the chunk, which bounds the walk."""
        if not end:
            return
        last = self._last
        dotted = buf[0] == _DOT and last == _LF  # a line of this chunk starts with "."
        i = 0
        left = end // _WALK_BYTES
        lone = False
        scan = -1  # where the walk stopped short: "\n." from here on is left to a C find
        while True:
            j = buf.find(b"\n", i, end)
            if j < 0:
                break
            if (buf[j - 1] if j else last) != _CR:
                lone = True  # _convert walks every LF anyway and checks the rest for dots
                break
            i = j + 1
            if i < end and buf[i] == _DOT:
                dotted = True
            left -= 1
            if not left:
                lone = buf.count(b"\n", i, end) != buf.count(b"\r\n", i, end)
                scan = i
                break
        if not dotted and scan >= 0 and not lone and buf.find(b"\n.", scan, end) >= 0:
            dotted = True
        if lone:
            self._convert(buf, end)
        elif dotted:
            self._stuff(buf, end, -2)
        else:
            self._put(whole, end)

    def _room(self, n):
        if self._limit >= 0 and self.size + self.dots + n > self._limit:
            raise self._limit_exc("message too large for the space left")

    def _stuff(self, buf, end, j):
        """buf[:end] (bytes or bytearray, every LF with its CR) into the file with a "." added
        before each line that starts with ".": the pieces between go as memoryview slices.
        j: where the first "\n." is if the caller found it (-1: none), -2: not looked for."""
        self._room(end)
        if self._n:
            self._flush()
        if self._h is not None:
            self._h.update(buf if end == len(buf) else memoryview(buf)[:end])
        f = self._f
        mv = memoryview(buf)
        i = 0
        if buf[0] == _DOT and self._last == _LF:
            f.write(b".")
            self.dots += 1
        if j == -2:
            j = buf.find(b"\n.", 0, end)
        while True:
            if j < 0:
                break
            f.write(mv[i : j + 1])
            f.write(b".")
            self.dots += 1
            i = j + 1
            j = buf.find(b"\n.", i, end)
        if i < end:
            f.write(mv[i:end])
        self.size += end
        self._last = buf[end - 1]

    def _put(self, whole, end):
        # Fast path: every LF has its CR, no line starts with "."; the chunk goes as it is.
        self._room(end)
        if self._n:
            self._flush()
        self._write(whole)
        self.size += end
        self._last = whole[end - 1]

    def _write(self, piece):
        if self._h is not None:
            self._h.update(piece)
        self._f.write(piece)

    def _convert(self, buf, end):
        if self._out is None:
            self._out = bytearray(OUT_BUF)
            self._outmv = memoryview(self._out)
        mv = memoryview(buf)
        run = 0
        i = 0
        if end and buf[0] == _DOT and self._last == _LF:
            self._dot()
        while True:
            j = buf.find(b"\n", i, end)
            if j < 0:
                break
            prev = buf[j - 1] if j > 0 else self._last
            if prev != _CR:
                if j > run:
                    self._emit(mv[run:j])
                self._emit(b"\r\n")
                run = j + 1
            i = j + 1
            if i < end and buf[i] == _DOT:
                if i > run:
                    self._emit(mv[run:i])
                run = i
                self._dot()
        if end > run:
            self._emit(mv[run:end])
        if end:
            self._last = buf[end - 1]

    def _dot(self):
        """The slow path's stuffing dot: written past the digest (which is of the message)."""
        self._room(1)
        self._flush()
        self._f.write(b".")
        self.dots += 1

    def _emit(self, piece):
        n = len(piece)
        self._room(n)
        self.size += n
        if self._out is None or self._n + n > OUT_BUF:
            self._flush()
        if n >= OUT_BUF or self._out is None:
            self._write(piece)
        else:
            self._out[self._n : self._n + n] = piece
            self._n += n

    def _flush(self):
        if self._n:
            self._write(self._outmv[: self._n])
            self._n = 0

    def _end(self):
        """Add the final line end if it is missing and flush: the content is complete."""
        if not self._ended:
            if self.size and self._last != _LF:
                self._emit(b"\n" if self._last == _CR else b"\r\n")
                self._last = _LF
            self._flush()
            self._ended = True

    def digest(self):
        """End the message (no write() after this; the final line end is added now if missing,
        so `size` is final) and return the SHA-1 of the stored bytes as 40 hex digits.
        Needs begin(..., digest=True)."""
        if self._h is None:
            raise StoreError("delivery keeps no digest")
        if self._f is None:
            raise StoreError("delivery is closed")
        try:
            self._end()
        except OSError as e:
            self.abort()
            raise _os_error(e)
        except BaseException:
            self.abort()
            raise
        return binascii.hexlify(self._h.digest()).decode()

    def uid_on_commit(self):
        """The UID commit() will give this message if nothing else is delivered into the mailbox
        first (the caller records it, then commits without yielding in between)."""
        if self._uid is not None:
            return "%08x.%d" % self._uid
        return "%08x.%d" % (self._box.epoch, self._box.next_seq)

    def commit(self):
        """Make the message durable and visible; returns its UID. The two steps around the
        rename, seal() and landed(), are also what the group commit (groupcommit.py) runs.

        Interrupted at the rename or after it, the file decides, never the exception: a rename
        can raise after it happened (littlefs renames across directories in two commits, and
        an error in the second, the temp entry's removal, is raised with the message already in
        its bucket; or Ctrl-C lands right after it). If the message is there, it is landed()
        (RAM state: the next delivery takes the next seq, not this one's) and an OSError
        reports it stored: its UID is returned (the sender retrying would duplicate it). If it
        is not there (or flash cannot tell), the delivery is aborted and the seq is skipped all
        the same: a seq handed to a rename is never handed out again."""
        epoch, seq, target = self.seal()
        try:
            compat.rename(self._tmp, target)
            compat.sync_dir(self._box.bucket_dir(seq))
        except BaseException as e:
            tmp = self._tmp
            if compat.exists(target) and not compat.exists(tmp):
                uid = self.landed(epoch, seq)
                if isinstance(e, OSError):
                    log.warning("store %s: %s after the rename of %s: stored", self._box.path, e, uid)
                    return uid
                raise
            self.spent(seq)
            self.abort()
            if isinstance(e, OSError):
                raise _os_error(e)
            raise
        return self.landed(epoch, seq)

    def seal(self):
        """Commit, step 1: end the message, flush and close its temp file, check the quota and
        the restore UID, make the bucket directory. Returns (epoch, seq, final path): rename
        self.tmp there, then call landed(epoch, seq). On failure the delivery is aborted."""
        if self._f is None:
            raise StoreError("delivery is closed")
        box = self._box
        store = self._store
        try:
            self._end()
            compat.sync_file(self._f)
            self._f.close()
            self._f = None
            if store.quota and box.total + self.size > store.quota:
                raise QuotaExceeded("mailbox quota exceeded")
            epoch, seq = box.epoch, box.next_seq
            if self._uid is not None:
                epoch, seq = self._uid
                if box.path in _LOCKS:
                    raise MailboxLocked("mailbox in use")
                if seq < box.next_seq:
                    raise StoreError("uid %08x.%d is not above the mailbox's last" % (epoch, seq), "SYS/PERM")
                if box.unindexed:
                    box.merge()  # the records stay in seq order
            bdir = box.bucket_dir(seq)
            if not compat.isdir(bdir):
                os.mkdir(bdir)
            return epoch, seq, compat.join(bdir, _msg_name(epoch, seq, self.arrival, self._szf(), self.size))
        except OSError as e:
            self.abort()
            raise _os_error(e)
        except BaseException:
            self.abort()
            raise

    def spent(self, seq):
        """seq went to a rename that may have happened (or may yet: a group's intent): the
        mailbox never hands it out again in this process (after a restart, recovery indexes
        the file if it is there). A skipped seq is only a gap in the UIDs."""
        box = self._box
        if box.next_seq <= seq:
            box.next_seq = seq + 1

    def _szf(self):
        """The index record's size field: the file's octets, wire form (stuffed if dots)."""
        return (self.size + self.dots) | (_PLAIN | _STUFFED if self.dots else _PLAIN)

    def landed(self, epoch, seq, merge=True):
        """Commit, step 2, once the temp file is renamed to seal()'s path (the message is durable):
        the mailbox's RAM state. Returns the UID. Nothing here may fail the delivery. merge=False
        leaves the due merge of unindexed messages to the caller (box.merge_due())."""
        box = self._box
        self._tmp = None
        box.busy -= 1
        box.next_seq = seq + 1
        box.count += 1
        box.total += self.size
        c = self._store._free_cache
        if c is not None:
            c[3] += self.size + self.dots + 512  # + metadata, roughly
        if self._uid is not None:
            try:
                box.merge([(epoch, seq, self.arrival, self._szf(), self.size)])
            except (OSError, StoreError):
                # Durable but unindexed beyond a possible bucket gap: an index rebuild (or the
                # same restore run again, which renames over it) makes it visible.
                box.loaded = False
            return "%08x.%d" % (epoch, seq)
        box.unindexed += 1
        if merge:
            box.merge_due()
        return "%08x.%d" % (box.epoch, seq)

    @property
    def box(self):
        """The mailbox's RAM state (the group commit checks its mailboxes are distinct)."""
        return self._box

    @property
    def tmp(self):
        """The temp file's path while the delivery is open or sealed, else None."""
        return self._tmp

    def share_flash(self, k):
        """Let this delivery take only 1/k of the free flash (k copies of one message share it);
        a quota limit stays as it is."""
        if self._limit >= 0 and self._limit_exc is StoreFull:
            self._limit //= k

    def abort(self):
        """Throw the message away (safe to call more than once, and after a failed write)."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
        if self._tmp is not None:
            try:
                _remove(self._tmp)
            except OSError:
                pass
            self._tmp = None
            self._box.busy -= 1


_Delivery_ids = [0]  # unique temp names within the process
