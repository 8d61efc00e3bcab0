"""The maildrop on flash: deliver, index, quota (lock, list, open, commit deletions: storesession.py).

Theory of operation
-------------------
One directory per mailbox under the store root:

    <root>/<name>/index          fixed 24-byte records: a header, then one record per indexed message
    <root>/<name>/commit         present only while a deletion commit is in flight (the intent log)
    <root>/<name>/index.new      present only while the index is being rewritten
    <root>/<name>/b<k>/          message files with seq in [k*BUCKET, (k+1)*BUCKET), and the temp
                                 files "<epoch>.<seq>.t<n>.<ticks>" of deliveries being written
    <root>/<name>/tmp/           (older versions' temp files: Store() removes them, then tmp/)
    <root>/<name>/damaged/       message files set aside by a scan (wrong size, unreadable), same names

A message file holds the message's wire form: CRLF line ends, every line that starts with "."
stuffed with a second ".", no terminator. So RETR of any message is a copy: the file, then
".\r\n" (pop3trans.PlainProducer). It is named "<epoch>.<seq>.<arrival>.p" (epoch: 8 hex digits,
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

Delivery never touches the index. The message is streamed into a temp file in the bucket its
seq is expected to take (the mailbox's next seq at begin), closed, then renamed to its name there:
three littlefs metadata commits beyond the payload (the temp file's creation, its close, the
rename: 64, 32 and 96 B of the bucket's metadata log at littlefs's program size of 32 B; littlefs
also syncs the device once before a non-inline file's close commit, a barrier that is no flash
operation). littlefs compacts the bucket's log (an erase, and the bucket's live entries, ~41 B a
message, written again; above 2 KB it splits them in two) when a commit does not fit: ~0.45
programs per delivery. The temp file is created, closed and opened again (Delivery: else its close
could compact the bucket a second time), and named to sort next to the message's name (in the same
metadata pair of the bucket: the rename is one commit). With the temp files in tmp/ (older
versions) the rename moved the file across two directories: two commits (one in each, and a
pending move in between that could hide a neighbour in a listing: flashfs.py). When another
delivery took that seq first (several under way, a seq the next bucket's), the rename crosses to
that bucket as before. A temp file a crash
left behind is removed at the mailbox's next first load (storemerge._sound hands a bucket holding
one to the scan, storescan.orphans), unless a delivery of this process into the mailbox is under
way or a group commit's intent names it (groupcommit.py). Temp names ("<epoch>.<seq>.t<n>.<ticks>",
sorted next to the message's name, in its metadata pair; "t<n>.<ticks>" before: storescan.temp_name)
are no message name: every listing (the scan, the search for unindexed files, a check) passes them by.
Lone LF becomes CRLF and dot lines are stuffed here and nowhere else. A chunk whose LFs are all
preceded by CR (one walk from LF to LF with C `find`, switching to C `count` passes when lines are
short; a LF first in the chunk after a CR last in the previous one counts as paired) and with no
line starting with "." (the same walk looks at the byte after each LF, plus a "." first in the chunk
when the previous byte was LF or the message starts there) is written to the file as given (those
scans: storewalk.py). A chunk with dot lines is written in pieces cut after each LF that precedes a
".", with a "." in between (C `find` of "\n."); only a chunk with a lone LF takes the slow path, a
per-line walk through a fixed output buffer that does both. A caller that un-stuffed the text itself
says what it knows with `write(..., crlf=True, dots=False)` (no lone LF, no dot line so far) and
skips the scans. The dot count goes into the file name at the rename, so it costs no flash operation.
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
its name, for export and inspection), a file the index lost is indexed again (one in a bucket
its seq does not belong to is first moved to its own: storescan._rehome); if anything
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

The modules, by who needs them and when (each role keeps only its part; figures: resident heap
after the import, 64-bit unix port, from .mpy, in the fetch CLI's order):
  - storecore.py, what every role keeps (~6.7 KB): the exceptions (their texts: storerare.TEXTS,
    looked up by StoreError(n)), the RAM state (_BOXES, _LOCKS, _Box), Store (open, quota and
    room, begin, lock) and _cold, which loads the parts below for a call. config.open_store
    imports it, not this module. (An index record read, _unpack and _lsize, is storeindex's,
    with a copy in storesession: a process that only delivers never reads a record.)
  - store.py (this module, ~5 KB more): Delivery and the public names (store.Store,
    store.StoreError, ...; a module __getattr__ finds the others where they live:
    storerare.find). Store.begin imports it: a POP3 server that receives no mail never loads it.
  - storesession.py (~4 KB): lock (Store.lock imports it), Mailbox (the session's reads,
    store.Mailbox resolves to it) and the deletion commit's names (write_intent,
    apply_deletions: storecommit.py's). A process that only delivers (the fetch CLI) never
    loads it. It holds no index code (but its copy of the record read).
  - Loaded for a call and dropped after it (MicroPython): storeindex.py (~2 KB: the index
    format, the index read and verified, walked, written: a lock's check, a merge, recovery,
    a commit), storemerge.py (~4 KB: the files above the index appended to it, at a lock after
    deliveries and every _MERGE_AFTER deliveries; file and UID names parsed; create; and the
    first load of a mailbox after boot: the index verified and compared with one listing of
    the buckets, the clean case finished there), storecommit.py (a commit that deletes
    something), storescan.py (recovery: the roll-forward or discard of an intent log, the
    scan, salvage, the rebuild from the files, the format-1 upgrade), storecheck.py
    (Store.check, describe), storerare.py (~4 KB: store.X, a stuffed message read
    un-stuffed, a session's report of an unreadable message, a restore's UIDs, a group commit
    cut short, a commit whose rename raised, the texts of this module's and storecore's
    errors), storewalk.py (~1.5 KB: the scans of a chunk written without the caller's hint,
    above; the POP3 client gives it, so a fetch never loads this) and storeopen.py (~2.5 KB:
    Store()'s opening, an older version's tmp/ removed with the temp files of its interrupted
    deliveries; those of this one are in the buckets, removed by the scan).
    Recovery runs when a first load (storemerge.load) finds anything to repair, at a lock that
    found damage and at a check. _cold counts the calls under way (_held), so a module in use
    is never dropped. Nothing outside a call refers to them: the exceptions, _Box and the RAM
    state live in storecore, reports are plain dicts, their generators are closed before the
    call returns (an _Unstuffed reader keeps its class, not the module's name, while open).

Locks live in RAM (a module-level set): a dead session cannot leave one behind across a restart.
One process owns a store root; all Store objects in it share the per-mailbox state below.
"""

import binascii
import hashlib
import os

from pocketpost import compat
from pocketpost.compat import const

# The public names (store.Store, store.StoreError, ...), one object each wherever imported from.
# (Mailbox and MailboxLocked: storesession.py's, through __getattr__ below.)
from pocketpost.storecore import (QuotaExceeded, Store, StoreError, StoreFull, _cold,  # noqa: F401
                                  _Delivery_ids, _msg_name, _os_error, _remove, describe, reboot)

# --- named limits -----------------------------------------------------------------------------
# (BUCKET and the private _MERGE_AFTER, _DEFAULT_QUOTA, _DEFAULT_RESERVE_BYTES, _MAX_NAME_LEN,
# _FREE_RECHECK and _FREE_MARGIN, with their reasons: storecore.py; store.X gives the public ones.)

# Delivery I/O buffers: fixed, allocated once per delivery, never proportional to the message
# (the output buffer of a lone LF's conversion, storewalk.py's _OUT_BUF; the input buffer a
# memoryview is copied into).
_IN_BUF = const(512)  # storecore's (a private copy)
# storeindex.py's (the on-flash format: const() folds them, test_store.py checks they agree).
_PLAIN = const(0x80000000)  # in a record's size field: the file is the wire form (plain or stuffed)
_STUFFED = const(0x40000000)  # with _PLAIN: the file has dots added (their number is in its name)
# The texts of its errors: storerare.TEXTS[n] (cold; StoreError(n) loads one: storecore.py), by
# number (private copies: host_tests/dual/test_store_texts.py checks they name their texts).
_E_CLOSED = const(0)
_E_NODIGEST = const(1)
_E_LARGE = const(2)
_E_QUOTA = const(3)
_E_FLASH = const(8)
_LF = const(10)
_CR = const(13)
_DOT = const(46)


def __getattr__(name):
    """The store's other public names where they live (store.Mailbox, store.MailboxLocked,
    store._Box, store.parse_uid, ...): storerare.find. (reboot and describe, which tests and
    tools call often, are imported above.)"""
    return _cold("storerare", "find", name)


class Delivery:
    """One message being written: write() any number of times, then commit() or abort().

    Lone LF becomes CRLF and a line starting with "." gets a second "." as the bytes go by (one
    byte of state, the last byte written, is kept across write() calls): the file is the
    message's wire form. A chunk without a lone LF or a dot line goes to the file as given; a
    chunk with dot lines goes in pieces split at them; a chunk with a lone LF is converted
    through a fixed output buffer. Pass bytes or bytearray to get the fast path with no copy; a
    memoryview (which has no find/count) is scanned through a fixed input buffer. `size` counts
    the message's octets (LIST's), `dots` the dots added; the digest is of the message.

    The scans of a chunk written without the hint (lone LFs, dot lines) are storewalk.py's,
    loaded for such a write: the POP3 client and the SMTP receiver give the hint (with it, only
    dot lines are looked for: _scan, through the input buffer for a memoryview: copy).

    Its working parts (file, sha1, done, finish, copy, szf, _scan, _count, ...) take names the
    runtime already holds, built in or used by the modules a fetch loads anyway: any other name
    would be interned, never freed, by the first delivery of every process (issue 10: the fetch
    CLI's names, docs/ARCHITECTURE.md). For callers: write, digest, uid_on_commit, commit (or
    seal, landed, spent for a group), abort, and size, dots (none: the message has no line
    starting with "."), tmp, box, limit, exc_type.
    """

    # Defaults as class attributes, as smtp.Session's: an instance holds only what it has set.
    # Each is set on the instance only by the delivery that needs it (a digest, a restore, a
    # memoryview or a lone LF written, a dot line), so a delivery through the SMTP receiver or the
    # POP3 client sets 9 to 11 attributes: an attribute table of 10 or 12 slots (160 or 192 B on
    # the 64-bit host) instead of the 17 (272 B, 368 B with a lone LF's _omv) that setting all of
    # them took: bench_heap c ran out on that block, one per recipient mailbox.
    dots = 0  # dots added so far (lines starting with ".")
    done = False  # finish() ended the message (digest, seal): no more write()
    sha1 = None  # the SHA-1 of the message so far, with begin(..., digest=True)
    _out = None  # slow path output buffer, made at the first lone LF (with _omv, its view)
    _count = 0  # octets waiting in it (within a storewalk._lines call only)
    _block = None  # input buffer a memoryview is copied into, made at the first one
    _mv = None  # its memoryview
    _uid = None  # (epoch, seq) given to Store.begin, else None: the next seq

    def __init__(self, store, box, arrival, limit, exc_type, digest=False, uid=None):
        self.store = store
        self.box = box  # the mailbox's RAM state (the group commit checks its mailboxes are distinct)
        self.arrival = arrival
        self.limit = limit  # most octets the file may take (-1: no limit); groupcommit shares it
        self.exc_type = exc_type  # raised past `limit`: StoreFull (flash) or QuotaExceeded
        self.size = 0
        self._last = _LF  # pretend a line just ended: a leading LF is lone, a leading "." a dot line
        if digest:
            self.sha1 = hashlib.sha1()
        if uid is not None:
            self._uid = uid
        self.file = None  # the temp file, open while the message is written
        self.tmp = None  # the temp file's path while the delivery is open or sealed, else None
        box.busy += 1
        try:
            _Delivery_ids[0] += 1
            # In the bucket the message is expected to land in (the next seq's; a restore's own
            # seq's), so that commit's rename stays within one directory: one littlefs commit
            # (a move from another directory is two). Named "<epoch>.<seq>.t<n>.<ticks>", no
            # message name: littlefs keeps a directory's names sorted, over metadata pairs once
            # it has split, and this one sorts next to the message's ("<epoch>.<seq>.<arrival>..."),
            # in its pair, so the rename is one commit there too ("t<n>.<ticks>", as before, sorted
            # after every message: seqs 100-127 of bucket 0, whose names sort among the two-digit
            # ones, took two, one per pair; 1000-1023 and 10000-10111 too).
            epoch, seq = (box.epoch, box.next_seq) if uid is None else uid
            bdir = box.bucket_dir(seq)
            if not compat.isdir(bdir):
                os.mkdir(bdir)
            self.tmp = compat.join(bdir, "%08x.%d.t%d.%d" % (epoch, seq, _Delivery_ids[0], compat.ticks_ms() & 0xFFFF))  # type: ignore[operator]  # stub: ticks are opaque
            # Created, closed (no commit: nothing written), opened again (no commit either): the
            # file's littlefs handle keeps the bucket's metadata state as its open left it, and a
            # creation that had to compact a bucket whose last commit filled its block left it
            # marked "not erased" there, so the close compacted the bucket again: ~6 programs and
            # an erase, 3 times in 256 deliveries (host_tests/test_store_flash.py).
            open(self.tmp, "wb").close()
            self.file = open(self.tmp, "wb")
        except Exception as e:  # MemoryError too: a "busy" left raised would stop merges for good
            if self.tmp is None:
                box.busy -= 1  # abort() undoes it only once the temp name exists
            self.abort()
            if isinstance(e, OSError):
                raise _os_error(e)
            raise

    def write(self, data, crlf=False, dots=True):
        """Add data. `crlf=True` says the caller has checked that every LF in `data` follows a
        CR (the one before data being the last byte written), and `dots=False` (with crlf) that no
        line of the message so far starts with ".": the POP3 client knows both from counting line
        ends for its size rule and from un-stuffing, so the store skips its own scans."""
        if self.file is None or self.done:
            raise StoreError(_E_CLOSED)
        try:
            if not crlf:
                from pocketpost import storewalk  # no hint: the scans (loaded for such a write, see there)

                storewalk.write(self, data)
            elif dots and isinstance(data, memoryview):  # (a memoryview has no find)
                self.copy(data, True)
            elif len(data):
                self._scan(data, len(data), dots, data)
        except OSError as e:
            self.abort()
            raise _os_error(e)
        except BaseException:
            self.abort()
            raise

    def _scan(self, buf, end, dots, view):
        """buf[:end] (no lone LF: the caller's hint) into the message, dot lines looked for
        when `dots` (else it goes as it is); view: that range as one object (None: buf is the
        input buffer, _mv[:end] is made only if it goes as it is). (Without the hint:
        storewalk._scan.)"""
        j = buf.find(b"\n.", 0, end) if dots else -1
        if j >= 0 or (dots and buf[0] == _DOT and self._last == _LF):
            self._dots(buf, end, j)
        else:
            self._put(view if view is not None else self._mv[:end], end)

    def copy(self, data, crlf):
        """A memoryview through the input buffer, _IN_BUF at a time (a memoryview has no find or
        count): each piece as _scan takes it with the caller's hint (crlf), else as
        storewalk._scan does."""
        if self._block is None:
            self._block = bytearray(_IN_BUF)
            self._mv = memoryview(self._block)
        buf = self._block
        i = 0
        n = len(data)
        while i < n:
            k = min(_IN_BUF, n - i)
            buf[:k] = data if k == n else data[i : i + k]  # no slice object for a whole chunk
            view = buf if k == _IN_BUF else None  # None: the view is made only if it is needed
            if crlf:
                self._scan(buf, k, True, view)
            else:
                from pocketpost import storewalk

                storewalk._scan(self, buf, k, view)
            i += k

    def _room(self, n):
        if self.limit >= 0 and self.size + self.dots + n > self.limit:
            # Which limit is short: the mailbox quota, or the flash (less the store's reserve).
            raise self.exc_type(_E_LARGE if self.exc_type is QuotaExceeded else _E_FLASH)

    def _dots(self, buf, end, pos):
        """buf[:end] (bytes or bytearray, every LF with its CR) into the file with a "." added
        before each line that starts with ".": the pieces between go as memoryview slices.
        pos: where the first "\n." is if the caller found it (-1: none), -2: not looked for."""
        self._room(end)
        mv = self._mv if buf is self._block else memoryview(buf)  # one view object fewer per chunk
        if self.sha1 is not None:
            self.sha1.update(buf if end == len(buf) else mv[:end])
        f = self.file
        i = 0
        if buf[0] == _DOT and self._last == _LF:
            f.write(b".")
            self.dots += 1
        j = buf.find(b"\n.", 0, end) if pos == -2 else pos
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

    def _put(self, view, end):
        # Fast path: every LF has its CR, no line starts with "."; the chunk goes as it is.
        self._room(end)
        self._sink(view)
        self.size += end
        self._last = view[end - 1]

    def _sink(self, data):
        # Message octets to the digest and the file.
        if self.sha1 is not None:
            self.sha1.update(data)
        self.file.write(data)

    def finish(self):
        """Add the final line end if it is missing: the content is complete. (Nothing waits in
        the output buffer between writes: storewalk._lines empties it at the end of its chunk.)"""
        if not self.done:
            if self.size and self._last != _LF:
                self._put(b"\n" if self._last == _CR else b"\r\n", 1 if self._last == _CR else 2)
            self.done = True

    def digest(self):
        """End the message (no write() after this; the final line end is added now if missing,
        so `size` is final) and return the SHA-1 of the stored bytes as 40 hex digits.
        Needs begin(..., digest=True)."""
        if self.sha1 is None:
            raise StoreError(_E_NODIGEST)
        if self.file is None:
            raise StoreError(_E_CLOSED)
        try:
            self.finish()
        except OSError as e:
            self.abort()
            raise _os_error(e)
        except BaseException:
            self.abort()
            raise
        return binascii.hexlify(self.sha1.digest()).decode()

    def uid_on_commit(self):
        """The UID commit() will give this message if nothing else is delivered into the mailbox
        first (the caller records it, then commits without yielding in between)."""
        if self._uid is not None:
            return "%08x.%d" % self._uid
        return "%08x.%d" % (self.box.epoch, self.box.next_seq)

    def commit(self, merge=True):
        """Make the message durable and visible; returns its UID. The two steps around the
        rename, seal() and landed(), are also what the group commit (groupcommit.py) runs.
        merge=False: landed's (the due merge of unindexed messages left to the caller).

        Interrupted at the rename or after it, the file decides, never the exception: a rename
        can raise after it happened (littlefs renames across directories in two commits, and
        an error in the second, the temp entry's removal, is raised with the message already in
        its bucket; or Ctrl-C lands right after it). If the message is there, it is landed()
        (RAM state: the next delivery takes the next seq, not this one's) and an OSError
        reports it stored: its UID is returned (the sender retrying would duplicate it). If it
        is not there (or flash cannot tell), the delivery is aborted and the seq is skipped all
        the same: a seq handed to a rename is never handed out again. (That decision, rare, is
        storerare.commit's.)"""
        epoch, seq, target = self.seal()
        try:
            compat.rename(self.tmp, target)
            compat.sync_dir(self.box.bucket_dir(seq))
        except BaseException as e:
            # The file decides: storerare.commit (cold: a commit whose rename raised is rare).
            try:
                return _cold("storerare", "commit", self, e, epoch, seq, target)
            except MemoryError:
                # (No heap to load it, or e itself: the seq skipped, the delivery closed; both
                # are no-ops after storerare.commit. A message that did land is found unindexed
                # by the next merge, like any other.)
                self.spent(seq)
                self.abort()
                raise
        return self.landed(epoch, seq, merge)

    def seal(self):
        """Commit, step 1: end the message, flush and close its temp file, check the quota and
        the restore UID, make the bucket directory if the seq is not in the temp file's (another
        delivery took the one begin expected). Returns (epoch, seq, final path): rename self.tmp
        there, then call landed(epoch, seq). On failure the delivery is aborted."""
        if self.file is None:
            raise StoreError(_E_CLOSED)
        box = self.box
        store = self.store
        try:
            self.finish()
            compat.sync_file(self.file)
            self.file.close()
            self.file = None
            if store.quota and box.total + self.size > store.quota:
                raise QuotaExceeded(_E_QUOTA)
            epoch, seq = box.epoch, box.next_seq
            if self._uid is not None:
                epoch, seq = _cold("storerare", "restore_seal", self)
            bdir = box.bucket_dir(seq)
            if not self.tmp.startswith(bdir + "/") and not compat.isdir(bdir):
                os.mkdir(bdir)  # (another delivery took the seq begin expected: another bucket)
            return epoch, seq, compat.join(bdir, _msg_name(epoch, seq, self.arrival, self.szf(), self.size))
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
        box = self.box
        if box.next_seq <= seq:
            box.next_seq = seq + 1

    def szf(self):
        """The index record's size field: the file's octets, wire form (stuffed if dots)."""
        return (self.size + self.dots) | (_PLAIN | _STUFFED if self.dots else _PLAIN)

    def landed(self, epoch, seq, merge=True):
        """Commit, step 2, once the temp file is renamed to seal()'s path (the message is durable):
        the mailbox's RAM state. Returns the UID. Nothing here may fail the delivery. merge=False
        leaves the due merge of unindexed messages to the caller (box.merge_due())."""
        try:
            box = self.box
            self.tmp, box.busy = None, box.busy - 1  # (one step: the handler tells whether it ran)
            box.next_seq = seq + 1
            box.count += 1
            box.total += self.size
            c = self.store._free_cache
            if c is not None:
                c[3] += self.size + self.dots + 512  # + metadata, roughly
            if self._uid is not None:
                return _cold("storerare", "restore_landed", self, epoch, seq)
            box.unindexed += 1
        except BaseException:
            # Interrupted (Ctrl-C, no heap) with the RAM state half made: the file is on flash
            # all the same. Its seq is never handed out again, and the next lock rebuilds the
            # mailbox from flash (a second file of this seq, or one never counted, would be a UID
            # naming two messages, or a message a crash's reconcile cannot find: fetched twice).
            if self.tmp is not None:
                self.tmp, self.box.busy = None, self.box.busy - 1
            self.spent(seq)
            self.box.suspect = True
            raise
        if merge:
            box.merge_due()
        return "%08x.%d" % (box.epoch, seq)

    def abort(self):
        """Throw the message away (safe to call more than once, and after a failed write)."""
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None
        if self.tmp is not None:
            try:
                _remove(self.tmp)
            except OSError:
                pass
            self.tmp = None
            self.box.busy -= 1

