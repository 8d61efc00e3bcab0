"""What every role of the store keeps loaded (store.py's theory of operation): the exceptions,
the RAM state (_BOXES, _LOCKS, _Box), Store (open, quota and room, begin a delivery, lock) and the
loading of the store's other parts for the call that needs them (_cold).

The store is split by who needs what, and when:
  - store.py: Delivery (write, seal, commit) and the public names (store.Store, store.Mailbox,
    the exceptions, ...). Store.begin imports it: a POP3 server that receives no mail (no SMTP,
    no fetcher) never loads it.
  - storesession.py: lock, Mailbox (Store.lock imports it). It holds no index code: a Mailbox
    reads records with its own copy of storeindex's _unpack and _lsize (the only part of the
    index format a reader needs; not here: a process that only delivers never reads a record),
    and a lock verifies the index through _cold.
  - storeindex.py (the index format, read and verified, walked, written), storemerge.py (the
    files above the index appended to it, file and UID names parsed, create, a mailbox's first
    load: the index checked against the files), storecommit.py (the deletion commit: a
    session's commit that deletes something, recovery's roll-forward), storescan.py (recovery:
    only when that check finds something to repair), storecheck.py (Store.check, describe),
    storerare.py (store.X looked up, a stuffed message read un-stuffed, a session's
    report of an unreadable message, a restore's UIDs, a group commit cut short) and
    storewalk.py (a delivery's scans of chunks written without the caller's hint) and
    storeopen.py (Store()'s opening: temp files of interrupted deliveries removed, RAM state
    of idle mailboxes forgotten, a group commit cut short finished): loaded for a call,
    dropped after it. Store() loads only storeopen, kept small: a server opens its store with
    its configuration loaded, so that load adds to the heap the server's start needs.
The session side's exception (MailboxLocked) is storesession.py's and the recovery of every
mailbox at a server's start (recover_all) storemerge.py's: a process that never locks a mailbox
(the fetch CLI) interns neither name, and a server that only listens or receives SMTP keeps
neither module loaded.
On MicroPython the code loaded for a call is dropped when the last call inside any of it returns
(_held: the calls under way, compat.release_cold); CPython keeps modules (a second copy would
give its classes a second identity).
"""

import os

from pocketpost import compat, log
from pocketpost.compat import const

# --- named limits (the reasons: store.py) ----------------------------------------------------

# Those used by no other module are private (_NAME: const() folds them, and a public name would
# be one more interned name, never freed, in every process that opens a store).
_DEFAULT_QUOTA = const(1024 * 1024)
_DEFAULT_RESERVE_BYTES = const(16 * 1024)
_MAX_NAME_LEN = const(32)
BUCKET = const(128)
# Unindexed messages a delivery merges at (nobody holding the mailbox): each merge copies the
# index's last, partial block (littlefs), so fewer merges cost less flash (16: 4.24 programs per
# 4 KiB delivery beyond the payload over bench_store's long run, 64: 3.82).
_MERGE_AFTER = const(64)
_IN_BUF = const(512)
_FREE_RECHECK = const(32)
_FREE_MARGIN = const(64 * 1024)

# storeindex.py's private constants (const() folds them at compile time: they are not module
# attributes on MicroPython); host_tests/dual/test_store.py checks they agree.
_REC = const(24)
_PLAIN = const(0x80000000)
_STUFFED = const(0x40000000)
_SIZE = const(0x3FFFFFFF)
# The texts of the store's errors (StoreError(n), rarely raised while mail moves), by number:
# storerare.TEXTS[n], loaded only to raise one (a text here would be a string object held by every
# process that delivers: issue 10, the fetch CLI's smallest heap). Private copies of its numbers
# (store.py has its own; host_tests/dual/test_store_texts.py checks they name their texts).
_E_QUOTA = const(3)
_E_LSIZE = const(4)
_E_NAME = const(5)
_E_NOBOX = const(6)
_E_UID = const(7)
_LOCKS = set()  # mailbox directories locked in this process (RAM only, by design)
_BOXES = {}  # mailbox directory -> _Box (RAM state shared by every Store in the process)
_Delivery_ids = [0]  # unique temp names within the process (store.Delivery; here, so a reload of store.py keeps counting)



class StoreError(Exception):
    """A store failure; `code` is the RFC 2449/3206 response code the protocol layer sends."""

    code = "SYS/TEMP"

    def __init__(self, msg="store error", code=None):
        if isinstance(msg, int):  # a number into storerare.TEXTS: the text is cold (below)
            try:
                msg = _cold("storerare", "text", msg)
            except MemoryError:
                pass  # no heap to load the text: the number stands for it
        super().__init__(msg)
        if code is not None:
            self.code = code


class StoreFull(StoreError):
    """The filesystem (less its reserve) has no room for this message (code: SYS/TEMP)."""


class QuotaExceeded(StoreError):
    """The mailbox quota has no room for this message (code: SYS/TEMP)."""


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
    # Every character one of these: strip() leaves nothing (one C call, no loop; one long
    # literal: short ones such as "z" would be interned names).
    return (isinstance(name, str) and 0 < len(name) <= _MAX_NAME_LEN and name[0] != "."
            and not name.strip("abcdefghijklmnopqrstuvwxyz0123456789._-"))


def _msg_name(epoch, seq, arrival, szf, lsize=None):
    """The file name of a message; szf is a record's size field (bit 31: wire form, bit 30:
    stuffed), lsize its LIST size (which gives the number of added dots)."""
    if szf & _STUFFED:
        if lsize is None:
            raise StoreError(_E_LSIZE)
        return "%08x.%d.%d.d%d" % (epoch, seq, arrival, (szf & _SIZE) - lsize)  # the dots added
    if szf & _PLAIN:
        return "%08x.%d.%d.p" % (epoch, seq, arrival)
    return "%08x.%d.%d" % (epoch, seq, arrival)


class _Box:
    """RAM state of one mailbox, shared by every Store of the process (see module docstring)."""

    # Records of messages a session could not read (Mailbox.unreadable): a list made by the first
    # report (storerare.unreadable), emptied by the next scan; a class default until then, so a
    # mailbox holds no empty list of its own for the whole run (64 B each on the 64-bit host).
    unreadable = ()

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

    def p(self, *parts):
        return compat.join(self.path, *parts)

    def bucket_dir(self, seq):
        return self.p("b%d" % (seq // BUCKET))

    def msg_path(self, epoch, seq, arrival, szf, lsize=None):
        """The message file's path; lsize (the LIST size) is needed for a stuffed one only."""
        return compat.join(self.bucket_dir(seq), _msg_name(epoch, seq, arrival, szf, lsize))

    # --- the index side (storeindex.py) -------------------------------------------------------

    def merge(self, records=None):
        """Append records for unindexed files (storemerge.merge); records: those records when
        the caller knows them (a delivery with a given UID)."""
        _cold("storemerge", "merge", self, records)

    def merge_due(self):
        """After a delivery: index the unindexed messages once _MERGE_AFTER have piled up, if
        nobody holds the mailbox and no delivery is in flight (a failure is retried later)."""
        if self.unindexed >= _MERGE_AFTER and self.path not in _LOCKS and not self.busy:
            try:
                self.merge()
            except (OSError, StoreError):
                pass  # retried at the next lock or delivery


class Store:
    def __init__(self, root, quota=_DEFAULT_QUOTA, reserve=_DEFAULT_RESERVE_BYTES):
        self.root = root.rstrip("/") or "/"
        self.quota = quota
        self.reserve = reserve
        self._free_cache = None  # [free, block size, uses, bytes delivered since]
        _cold("storeopen", "open_store", self)  # the root made, what a cut left behind cleaned up

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
        again every _FREE_RECHECK deliveries, and always when the estimate nears the reserve."""
        c = self._free_cache
        if c is not None and c[2] < _FREE_RECHECK and c[0] - c[3] > self.reserve + _FREE_MARGIN:
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
            raise StoreError(_E_NAME, "SYS/PERM")
        return compat.join(self.root, name)

    def box(self, name, create=True):
        """The loaded RAM state of a mailbox, recovering it from flash if needed (the client runs
        its merge_due after a batch of deliveries: client.fetch_account)."""
        path = self._path(name)
        box = _BOXES.get(path)
        if box is None:
            if not compat.isdir(path):
                if not create:
                    raise StoreError(_E_NOBOX, "SYS/PERM")
                self.create(name)
            box = _Box(path)
            _BOXES[path] = box
        if not box.loaded:
            try:
                _cold("storemerge", "load", box)  # (storescan.recover if anything needs repair)
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
        _cold("storemerge", "create", self, name)  # its directories and empty index

    def usage(self, name):
        box = self.box(name)
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
            uid = _cold("storemerge", "parse_uid", uid)
            if uid is None:
                raise StoreError(_E_UID, "SYS/PERM")
        box = self.box(name)
        limit, exc = self._room(box.path, box.count, box.total)
        if not limit:
            raise exc(_E_QUOTA if exc is QuotaExceeded else "flash full")
        from pocketpost import store  # Delivery: a process that delivers nothing never loads it

        return store.Delivery(self, box, compat.now() if arrival is None else arrival, limit, exc, digest, uid)

    def room(self, name):
        """(octets a message delivered to `name` may take now, the exception past it); -1 if
        unbounded, 0 if none. Writes nothing (host tools check a batch before delivering any):
        a mailbox that does not exist yet counts as empty."""
        path = self._path(name)
        if compat.isdir(path):
            box = self.box(name)
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
        """Deliver what readinto(buf) yields (it returns the byte count, 0 at EOF): storerare's."""
        return _cold("storerare", "deliver_stream", self, name, readinto, arrival)

    def deliver_file(self, name, path, arrival=None):
        return _cold("storerare", "deliver_file", self, name, path, arrival)

    # --- sessions -----------------------------------------------------------------------------

    def lock(self, name):
        """Lock a mailbox for a POP3 session and return its snapshot (a storesession.Mailbox)."""
        from pocketpost import storesession  # the session side: a delivery never loads it

        return storesession.lock(self, name)


# The code loaded for a call (see the module docstring), dropped on MicroPython once no call into
# any of it is under way (_held: the calls under way; storeindex with the rest: they import it).
_held = [0]
_COLD = ("storecheck", "storescan", "storemerge", "storecommit", "storeindex", "storerare", "storewalk",
         "storeopen")


def _cold(name, fn, *args):
    """pocketpost.<name>.<fn>(*args), name one of _COLD, kept loaded until the last call is out."""
    _held[0] += 1
    try:
        return getattr(getattr(__import__("pocketpost." + name), name), fn)(*args)
    finally:
        compat.release_cold(_held, _COLD)


def describe(name, rep):
    """One line for a human about one mailbox's report from Store.check (storecheck's)."""
    return _cold("storecheck", "describe", name, rep)


def reboot():
    """Forget all RAM state (locks and caches) as a restart would: the next lock or delivery
    recovers each mailbox from flash. For tests, and for board.main once Ctrl-C has stopped every
    session (never while a session or delivery of this process is still running)."""
    _LOCKS.clear()
    _BOXES.clear()
