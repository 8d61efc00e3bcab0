"""The maildrop on flash: deliver, list, open, commit deletions, index, quota, locks.

Theory of operation
-------------------
One directory per mailbox under the store root:

    <root>/<name>/index          fixed 24-byte records: a header, then one record per indexed message
    <root>/<name>/commit         present only while a deletion commit is in flight (the intent log)
    <root>/<name>/index.new      present only while the index is being rewritten
    <root>/<name>/tmp/           deliveries being written (orphans are removed when the store opens)
    <root>/<name>/b<k>/          message files with seq in [k*BUCKET, (k+1)*BUCKET)

A message file is named "<epoch>.<seq>.<arrival>" (epoch: 8 hex digits, seq and arrival: decimal),
or "<epoch>.<seq>.<arrival>.p" when it is "plain": no line of it starts with "." (so its wire form
is the file itself plus the terminator, and RETR can send it without dot-stuffing). It holds
exactly the bytes sent on the wire before dot-stuffing, CRLF line ends, so its size is its wire
size. The UID is "<epoch>.<seq>". seq grows by one per delivered message and never goes
backwards; the epoch is a random number chosen when the index is created or rebuilt, so even if
the index is lost after the highest message was deleted, no UID is ever handed out twice.

Delivery never touches the index (that keeps it at about three metadata commits beyond the
payload on littlefs): the message is streamed into tmp/, flushed, then renamed into its bucket.
Lone LF becomes CRLF here and nowhere else. A chunk whose LFs are all preceded by CR (two C
`count` passes; a LF first in the chunk after a CR last in the previous one counts as paired) is
written to the file as given; only a chunk with a lone LF takes the slow path, a per-line walk
through a fixed output buffer. On the way the delivery learns whether the message is plain (one
`find(b"\n.")` per chunk, plus a "." first in the chunk when the previous byte was LF or the
message starts there); the flag goes into the file name at the rename, so it costs no flash
operation. `begin(name, digest=True)` also keeps a SHA-1 of the stored bytes (the client's
crash-safe bookkeeping); `digest()` ends the message (the final line end is added then) and
returns it. Files with a seq above the index's last record are "unindexed"; they
can only live in the newest buckets, so finding them lists at most a bucket or two, never the
whole mailbox. They are appended to the index (records first, in seq order) when the mailbox is
locked, or during delivery once enough have piled up while nobody holds the lock.

An index record is (epoch, seq, arrival, size, running total of sizes, check). Bit 31 of the
size field is the plain flag (sizes are far below 2 GiB); records written before the flag existed
have it clear, which reads as "unknown: needs stuffing", matching their three-part file names. A
rebuild takes the flag from the file names, like everything else. Every index record carries the
running total of sizes, so opening a mailbox reads the header and
the last record: STAT costs the same at 1 or 5,000 messages. Records are read on demand (seek),
so a session's RAM does not grow with the message count either.

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
Recovery (at lock time, or at the first delivery after boot) finishes a valid intent log, throws
away a torn one, removes `index.new`, rebuilds an index that is missing or fails its checks (from
one listing of the bucket directories; file names carry uid and arrival, sizes come from the
listing), then indexes any unindexed files.

Locks live in RAM (a module-level set): a dead session cannot leave one behind across a restart.
One process owns a store root; all Store objects in it share the per-mailbox state below.
"""

import binascii
import hashlib
import os
import struct

from pocketpost import compat
from pocketpost.compat import const

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
_MAGIC_INDEX = const(0x31585050)  # b'PPX1'
_MAGIC_COMMIT = const(0x31435050)  # b'PPC1'
_MASK = const(0xFFFFFFFF)
_PLAIN = const(0x80000000)  # in a record's size field: no line of the message starts with "."
_SIZE = const(0x7FFFFFFF)
_LF = const(10)
_CR = const(13)
_DOT = const(46)

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


def _check(a, b, c, d, e):
    # Detects torn or garbled records (not an adversary): a cheap mix of the five fields.
    h = 0x811C9DC5
    for v in (a, b, c, d, e):
        h = ((h ^ v) * 0x01000193) & _MASK
        h ^= h >> 15
    return h


def _pack(buf, off, a, b, c, d, e):
    struct.pack_into(_FMT, buf, off, a, b, c, d, e, _check(a, b, c, d, e))


def _unpack(buf, off):
    """The five fields of a record, or None if its check fails."""
    r = struct.unpack_from(_FMT, buf, off)
    if _check(r[0], r[1], r[2], r[3], r[4]) != r[5]:
        return None
    return r


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


def _msg_name(epoch, seq, arrival, szf):
    """The file name of a message; szf is a record's size field (its bit 31: plain)."""
    if szf & _PLAIN:
        return "%08x.%d.%d.p" % (epoch, seq, arrival)
    return "%08x.%d.%d" % (epoch, seq, arrival)


def _parse_msg_name(name):
    """(epoch, seq, arrival, plain) of a message file name, or None for anything else."""
    parts = name.split(".")
    n = len(parts)
    if not (n == 3 or (n == 4 and parts[3] == "p")) or len(parts[0]) != 8:
        return None
    try:
        epoch = int(parts[0], 16)
        seq = int(parts[1])
        arrival = int(parts[2])
    except ValueError:
        return None
    if seq < 1 or arrival < 0 or seq > _MASK or arrival > _MASK:
        return None
    return epoch, seq, arrival, n == 4


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

    def p(self, *parts):
        return compat.join(self.path, *parts)

    def bucket_dir(self, seq):
        return self.p("b%d" % (seq // BUCKET))

    def msg_path(self, epoch, seq, arrival, szf):
        return compat.join(self.bucket_dir(seq), _msg_name(epoch, seq, arrival, szf))

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
                total += r[3] & _SIZE
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
        """Validate header and last record; set idx_* fields. False if missing or corrupt."""
        try:
            f = open(self.p("index"), "rb")
        except OSError:
            return False
        try:
            size = f.seek(0, 2)
            if size < _REC or size % _REC:
                return False
            buf = bytearray(_REC)
            f.seek(0)
            if f.readinto(buf) != _REC:
                return False
            h = _unpack(buf, 0)
            if h is None or h[0] != _MAGIC_INDEX or h[1] != 1:
                return False
            count = size // _REC - 1
            last_seq = 0
            total = 0
            if count:
                f.seek(size - _REC)
                if f.readinto(buf) != _REC:
                    return False
                r = _unpack(buf, 0)
                if r is None or r[1] < 1:
                    return False
                last_seq = r[1]
                total = r[4]
        finally:
            f.close()
        self.epoch = h[2]
        self.floor = h[3]
        self.idx_count = count
        self.idx_total = total
        self.last_seq = last_seq
        return True

    def iter_index(self, mask=None):
        """Yield (epoch, seq, arrival, size field) of every index record, a block at a time,
        leaving out record i (0-based) when bit (i & 7) of mask[i >> 3] is set."""
        i = 0
        it = _iter_recs(self.p("index"), "index record corrupt")
        try:
            for r in it:
                if mask is None or not (i >> 3 < len(mask) and mask[i >> 3] & (1 << (i & 7))):
                    yield r[0], r[1], r[2], r[3]
                i += 1
        finally:
            it.close()

    def _iter_kept(self, intent):
        """Index records whose seq is not in the intent log: a merge of two streams that are both
        in ascending seq order (a log is written in index order; _commit_ok checks it)."""
        dead = _iter_recs(intent, "intent log corrupt")
        idx = self.iter_index()
        try:
            d = _next(dead)
            for r in idx:
                while d is not None and d[1] < r[1]:
                    d = _next(dead)
                if d is not None and d[1] == r[1]:
                    continue
                yield r
        finally:
            idx.close()
            dead.close()

    # --- directory scans ----------------------------------------------------------------------

    def scan_bucket(self, k, above):
        """Message files in bucket k with seq > above: list of (epoch, seq, arrival, size field)."""
        path = self.p("b%d" % k)
        out = []
        for name, is_dir, size in compat.listdir_stat(path):
            if is_dir:
                continue
            m = _parse_msg_name(name)
            if m is None or m[1] <= above:
                continue
            out.append((m[0], m[1], m[2], (size | _PLAIN) if m[3] else size))
        return out

    def buckets(self):
        out = []
        for name, is_dir, _ in compat.listdir_stat(self.path):
            if is_dir and len(name) > 1 and name[0] == "b":
                try:
                    out.append(int(name[1:]))
                except ValueError:
                    pass
        out.sort()
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

    # --- recovery ----------------------------------------------------------------------------

    def recover(self):
        """Bring flash to a consistent state and load RAM state. Caller holds exclusivity."""
        compat.makedirs(self.p("tmp"))
        index_ok = self.read_index_state()
        intent = self.p("commit")
        if compat.exists(intent):
            if _commit_ok(intent):
                self.apply_deletions(index_ok)
                index_ok = self.read_index_state()
            _remove(intent)
        _remove(self.p("index.new"))
        if not index_ok:
            self.rebuild()
        self.merge()
        self.next_seq = max(self.floor, self.last_seq + 1)
        self.count = self.idx_count
        self.total = self.idx_total
        self.unindexed = 0
        self.loaded = True

    def write_intent(self, recs, n=None):
        """Step 1 of a deletion commit: the intent log, flushed. Once complete it is the commit
        point; a failure before that removes it and nothing is deleted.

        recs: the n records to delete (five fields each, as in the index), in index order, i.e.
        ascending seq; any iterable, walked once and written a block at a time (nothing is kept,
        so a generator reading the index costs a fixed amount of RAM for any n)."""
        if n is None:
            n = len(recs)
        buf = bytearray(_REC * _RECS_PER_READ)
        intent = self.p("commit")
        f = open(intent, "wb")
        try:
            _pack(buf, 0, _MAGIC_COMMIT, n, 0, 0, 0)
            k = 1  # records in buf
            put = 0
            for r in recs:
                if k == _RECS_PER_READ:
                    f.write(buf)
                    k = 0
                _pack(buf, k * _REC, r[0], r[1], r[2], r[3], r[4])
                k += 1
                put += 1
            if put != n:
                raise StoreError("intent log: %d records, expected %d" % (put, n))
            f.write(memoryview(buf)[: k * _REC])
            compat.sync_file(f)
        except BaseException:
            f.close()
            _remove(intent)
            raise
        f.close()
        compat.sync_dir(self.path)

    def apply_deletions(self, index_ok, mask=None):
        """Steps 2-3 of a deletion commit, driven by the intent log on flash (idempotent: this is
        also the roll-forward after a crash). Every pass streams the log a block at a time:
        unlink the files (the floor is the highest seq + 1), rewrite the index without them,
        then drop emptied buckets. mask: the committing session's bitmask of deleted index
        positions (the index is unchanged since the lock, so the rewrite filters by position);
        None in recovery (the rewrite merges the index with the log by seq: a third read)."""
        intent = self.p("commit")
        floor = self.floor
        it = _iter_recs(intent, "intent log corrupt")
        try:
            for r in it:
                _remove(self.msg_path(r[0], r[1], r[2], r[3]))
                if r[1] + 1 > floor:
                    floor = r[1] + 1
        finally:
            it.close()
        if index_ok:
            floor = max(floor, self.last_seq + 1)
            new = self.p("index.new")
            it = self.iter_index(mask) if mask is not None else self._iter_kept(intent)
            try:
                self.write_index(new, it, self.epoch, floor)
            finally:
                it.close()
            compat.rename(new, self.p("index"))
            compat.sync_dir(self.path)
            self.read_index_state()
        else:
            self.floor = floor
            self.rebuild()
        # Drop bucket directories emptied below the floor (a littlefs directory costs two blocks);
        # rmdir of a non-empty one fails harmlessly before writing anything. The log's seqs
        # ascend, so each bucket comes up in one run and the first one at the top ends the walk.
        top = self.floor // BUCKET
        last = -1
        it = _iter_recs(intent, "intent log corrupt")
        try:
            for r in it:
                k = r[1] // BUCKET
                if k >= top:
                    break
                if k != last:
                    last = k
                    try:
                        os.rmdir(self.p("b%d" % k))
                    except OSError:
                        pass
        finally:
            it.close()

    def rebuild(self):
        """Index lost or corrupt: rebuild from one listing of the buckets, under a new epoch."""
        ks = self.buckets()
        # Seqs restart above every bucket ever listed; the new epoch keeps old UIDs unique even
        # if the highest messages were deleted before the index was lost.
        floor = max(self.floor, (ks[-1] + 1) * BUCKET if ks else 1)
        new = self.p("index.new")
        self.write_index(new, self._iter_files(ks), _new_epoch(), floor)
        compat.rename(new, self.p("index"))
        compat.sync_dir(self.path)
        if not self.read_index_state():
            raise StoreError("index rebuild failed")

    def _iter_files(self, ks):
        # One bucket in RAM at a time: a rebuild of 5,000 messages must fit an ESP32 heap.
        for k in ks:
            recs = self.scan_bucket(k, 0)
            recs.sort(key=lambda r: r[1])
            for r in recs:
                yield r

    def merge(self):
        """Append records for unindexed files (records first; files are already in place)."""
        recs = self.find_unindexed()
        if not recs:
            return
        buf = bytearray(_REC)
        total = self.idx_total
        f = open(self.p("index"), "ab")
        try:
            for r in recs:
                total += r[3] & _SIZE
                _pack(buf, 0, r[0], r[1], r[2], r[3], total & _MASK)
                f.write(buf)
            compat.sync_file(f)
        finally:
            f.close()
        self.idx_count += len(recs)
        self.idx_total = total & _MASK
        self.last_seq = recs[-1][1]
        self.unindexed = 0


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


def _next(it):
    """The next item of an iterator, or None at its end (next(it, default) is optional in MicroPython)."""
    for r in it:
        return r
    return None


def _commit_ok(path):
    """True if the intent log at path is complete: a valid header whose count matches the file
    size, every record's check right, seqs in ascending order. Read a block at a time."""
    try:
        f = open(path, "rb")
    except OSError:
        return False
    try:
        size = f.seek(0, 2)
        if size < _REC or size % _REC:
            return False
        f.seek(0)
        buf = bytearray(_REC * _RECS_PER_READ)
        n = f.readinto(buf)
        h = _unpack(buf, 0) if n >= _REC else None
        if h is None or h[0] != _MAGIC_COMMIT or h[1] != size // _REC - 1:
            return False
        seen = 0
        last = 0
        off = _REC
        while n:
            for o in range(off, n - n % _REC, _REC):
                r = _unpack(buf, o)
                if r is None or r[1] < last:
                    return False
                last = r[1]
                seen += 1
            off = 0
            n = f.readinto(buf)
        return seen == h[1]
    finally:
        f.close()


def _popcount(mask, nbytes):
    n = 0
    for j in range(nbytes):
        b = mask[j]
        while b:
            b &= b - 1
            n += 1
    return n


class Store:
    def __init__(self, root, quota=DEFAULT_QUOTA, reserve=DEFAULT_RESERVE_BYTES):
        self.root = root.rstrip("/") or "/"
        self.quota = quota
        self.reserve = reserve
        self._free_cache = None  # [free, block size, uses, bytes delivered since]
        compat.makedirs(self.root)
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
            tmp = compat.join(path, "tmp")
            if compat.isdir(tmp):
                for fn in compat.listdir(tmp):
                    _remove(compat.join(tmp, fn))

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
                box.recover()
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

    def begin(self, name, arrival=None, digest=False):
        """Start a delivery into mailbox `name` (created if missing). With digest=True the
        Delivery keeps a SHA-1 of the bytes it stores (see Delivery.digest)."""
        box = self._box(name)
        limit, exc = self._room(box.path, box.count, box.total)
        if not limit:
            raise exc("mailbox quota exceeded" if exc is QuotaExceeded else "flash full")
        return Delivery(self, box, compat.now() if arrival is None else arrival, limit, exc, digest)

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
        """Lock a mailbox for a POP3 session and return its snapshot (a Mailbox)."""
        path = self._path(name)
        if path in _LOCKS:
            raise MailboxLocked("mailbox in use")
        _LOCKS.add(path)
        try:
            box = self._box(name)
            if box.unindexed:
                box.merge()
            return Mailbox(box)
        except OSError as e:
            _LOCKS.discard(path)
            raise _os_error(e)
        except BaseException:
            _LOCKS.discard(path)
            raise


def reboot():
    """Forget all RAM state (locks and caches) as a restart would. For tests only."""
    _LOCKS.clear()
    _BOXES.clear()


class Delivery:
    """One message being written: write() any number of times, then commit() or abort().

    Lone LF becomes CRLF as the bytes go by (one byte of state, the last byte written, is kept
    across write() calls). A chunk without a lone LF goes to the file as given; a chunk with one
    is converted through a fixed output buffer. Pass bytes or bytearray to get the fast path with
    no copy; a memoryview (which has no find/count) is scanned through a fixed input buffer.
    """

    def __init__(self, store, box, arrival, limit, limit_exc, digest=False):
        self._store = store
        self._box = box
        self.arrival = arrival
        self._limit = limit
        self._limit_exc = limit_exc
        self.size = 0
        self._last = _LF  # pretend a line just ended: a leading LF is lone, a leading "." a dot line
        self._plain = True  # no line seen so far starts with "."
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
        return self._plain

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
                    if dots and self._plain and ((data[0] == _DOT and self._last == _LF) or data.find(b"\n.") >= 0):
                        self._plain = False
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
        plain = self._plain
        if buf[0] == _DOT and last == _LF:
            plain = False
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
                plain = False
            left -= 1
            if not left:
                lone = buf.count(b"\n", i, end) != buf.count(b"\r\n", i, end)
                scan = i
                break
        if plain and scan >= 0 and not lone and buf.find(b"\n.", scan, end) >= 0:
            plain = False
        self._plain = plain
        if lone:
            self._convert(buf, end)
            return
        self._put(whole, end)

    def _put(self, whole, end):
        # Fast path: every LF has its CR; the caller's chunk goes to the file as it is.
        if self._limit >= 0 and self.size + end > self._limit:
            raise self._limit_exc("message too large for the space left")
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
                self._plain = False
        if end > run:
            self._emit(mv[run:end])
        if end:
            self._last = buf[end - 1]

    def _emit(self, piece):
        n = len(piece)
        if self._limit >= 0 and self.size + n > self._limit:
            raise self._limit_exc("message too large for the space left")
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
        return "%08x.%d" % (self._box.epoch, self._box.next_seq)

    def commit(self):
        """Make the message durable and visible; returns its UID."""
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
            seq = box.next_seq
            bdir = box.bucket_dir(seq)
            if not compat.isdir(bdir):
                os.mkdir(bdir)
            szf = (self.size | _PLAIN) if self._plain else self.size
            compat.rename(self._tmp, compat.join(bdir, _msg_name(box.epoch, seq, self.arrival, szf)))
            compat.sync_dir(bdir)
        except OSError as e:
            self.abort()
            raise _os_error(e)
        except BaseException:
            self.abort()
            raise
        # The message is durable from here on: nothing below may fail the delivery.
        self._tmp = None
        box.busy -= 1
        box.next_seq = seq + 1
        box.count += 1
        box.total += self.size
        box.unindexed += 1
        c = store._free_cache
        if c is not None:
            c[3] += self.size + 512  # + metadata, roughly
        if box.unindexed >= MERGE_AFTER and box.path not in _LOCKS and not box.busy:
            try:
                box.merge()
            except (OSError, StoreError):
                pass  # retried at the next lock or delivery
        return "%08x.%d" % (box.epoch, seq)

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


class Mailbox:
    """A locked mailbox as the session sees it: a snapshot taken at lock time.

    Messages delivered during the session are not part of the snapshot (RFC 1939 numbering is
    stable within a session); they show up at the next lock.
    """

    def __init__(self, box):
        self._box = box
        self.count = box.idx_count
        self.total_size = box.idx_total
        self._buf = bytearray(_REC * _RECS_PER_READ)
        self._first = 0  # index of the first record in _buf
        self._have = 0  # records in _buf
        self._freed = 0  # bytes freed by the commit in progress (see _marked)
        self._f = open(box.p("index"), "rb") if self.count else None

    def _rec(self, i):
        if self._box is None:
            raise StoreError("mailbox released")
        if not 0 <= i < self.count:
            raise IndexError(i)
        if not self._first <= i < self._first + self._have:
            self._f.seek(_REC * (i + 1))
            n = self._f.readinto(self._buf)
            self._first = i
            self._have = n // _REC
            if self._have < 1:
                raise StoreError("index truncated")
        r = _unpack(self._buf, (i - self._first) * _REC)
        if r is None:
            raise StoreError("index record corrupt")
        return r

    def uid(self, i):
        r = self._rec(i)
        return "%08x.%d" % (r[0], r[1])

    def size(self, i):
        return self._rec(i)[3] & _SIZE

    def needs_stuffing(self, i):
        """False when no line of message i starts with "." (RETR may send the file as it is);
        True when one does, or when the store does not know (messages from before the flag)."""
        return not self._rec(i)[3] & _PLAIN

    def arrival(self, i):
        return self._rec(i)[2]

    def open(self, i):
        r = self._rec(i)
        try:
            return open(self._box.msg_path(r[0], r[1], r[2], r[3]), "rb")
        except OSError as e:
            raise _os_error(e)

    def commit(self, deleted):
        """UPDATE state: apply every deletion of the session together, then release the lock.

        deleted: the session's bitmask (bytes, bytearray or memoryview): bit (i & 7) of byte i >> 3 set when
        message i (0-based) is deleted (pop3server.Session keeps one); or any other iterable of
        0-based indices (duplicates are fine), turned into such a bitmask of (count + 7) // 8
        bytes. That bitmask is the only state that grows with the mailbox: the intent log is
        written while the index is read a block at a time, and nothing is kept per deletion.
        An index or a set bit beyond count raises StoreError('SYS/PERM') and deletes nothing.
        Returns the number of messages deleted."""
        if self._box is None:
            raise StoreError("mailbox released")
        box = self._box
        try:
            count = self.count
            nbytes = (count + 7) // 8
            if isinstance(deleted, (bytes, bytearray, memoryview)):
                mask = deleted
                bad = False
                for j in range(nbytes, len(mask)):
                    if mask[j]:
                        bad = True
                if count & 7 and len(mask) >= nbytes and mask[nbytes - 1] >> (count & 7):
                    bad = True
                if bad:
                    raise StoreError("no such message", "SYS/PERM")
                nbytes = min(nbytes, len(mask))
            else:
                mask = bytearray(nbytes)
                for i in deleted:
                    if not 0 <= i < count:
                        raise StoreError("no such message", "SYS/PERM")
                    mask[i >> 3] |= 1 << (i & 7)
            n = _popcount(mask, nbytes)
            if not n:
                return 0
            self._freed = 0
            box.write_intent(self._marked(mask, nbytes), n)
            self._close()
            # Committed: from here a crash is rolled forward by the next recovery.
            box.loaded = False
            box.apply_deletions(True, mask)
            _remove(box.p("commit"))
            box.loaded = True
            box.count -= n
            box.total -= self._freed
            if box.next_seq < box.floor:
                box.next_seq = box.floor
            return n
        except OSError as e:
            raise _os_error(e)
        finally:
            self.release()

    def _marked(self, mask, nbytes):
        """Yield the index records of the messages whose bit is set in mask[:nbytes], reading the
        index a block (_RECS_PER_READ records, a multiple of 8) at a time through the session's
        buffer and skipping blocks with no bit set; adds their sizes up in self._freed."""
        f = self._f
        buf = self._buf
        self._have = 0  # the buffer no longer holds what _rec cached
        step = _RECS_PER_READ // 8
        for b0 in range(0, nbytes, step):
            b1 = min(b0 + step, nbytes)
            for j in range(b0, b1):
                if mask[j]:
                    break
            else:
                continue
            i0 = b0 * 8
            f.seek(_REC * (i0 + 1))
            got = f.readinto(buf) // _REC
            for i in range(i0, min(b1 * 8, self.count)):
                if mask[i >> 3] & (1 << (i & 7)):
                    if i - i0 >= got:
                        raise StoreError("index truncated")
                    r = _unpack(buf, (i - i0) * _REC)
                    if r is None:
                        raise StoreError("index record corrupt")
                    self._freed += r[3] & _SIZE
                    yield r

    def _close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def release(self):
        """Release the lock without deleting anything (idempotent)."""
        if self._box is None:
            return
        self._close()
        _LOCKS.discard(self._box.path)
        self._box = None
