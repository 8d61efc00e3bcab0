"""What the store does rarely (store.py's theory of operation), loaded for the call and dropped
after it (storecore._cold), so that no role keeps it while it delivers or a session reads:
  - deliver_stream, deliver_file: Store's, for the host tools and tests;
  - find: the store's other public names looked up for store.X (store.Mailbox,
    store.parse_uid, ...: store.py's module __getattr__);
  - finish_group: a group commit (groupcommit.py) cut short, finished or forgotten by Store();
  - _Unstuffed: a stuffed message read un-stuffed (Mailbox.open(i): export, the fetcher's check
    of a copy it stored; never RETR or TOP, which send the file as it is). The reader keeps its
    class, and so this code, only while it is open;
  - damaged, unreadable: a message Mailbox.open found damaged, a session's report of one it
    could not read (Mailbox.unreadable);
  - restore_seal, restore_landed: a delivery under a given UID (Store.begin(uid=...), a restore
    from a backup), checked at its seal and indexed once landed;
  - commit: the rest of Delivery.commit when its rename (or the sync after it) raised: the file
    decides;
  - TEXTS, text: the texts of store.py's and storecore.py's errors (StoreError(n) looks its text
    up here: no role holds them while it delivers).
"""

from pocketpost import compat, log
from pocketpost.compat import const
from pocketpost.storecore import _LOCKS, StoreError, _os_error, _remove

_EIO = const(5)  # a stuffed file that does not un-stuff to its LIST size
# Messages a session reported unreadable, kept in RAM until the next lock sets them aside (bounded:
# more than this and the rest wait for another session or for check(deep=True)).
_MAX_UNREADABLE = const(8)
_IN_BUF = const(512)  # storecore's (a private copy)
_SIZE = const(0x3FFFFFFF)  # storeindex's (the file's octets in a record's size field)

# The texts of store.py's and storecore.py's errors by number (their _E_ names, private copies):
# StoreError(n) takes text(n) as its message.
TEXTS = (
    "delivery is closed",  # 0
    "delivery keeps no digest",  # 1
    "message too large for the mailbox quota left",  # 2 (QuotaExceeded)
    "mailbox quota exceeded",  # 3
    "stuffed message: LIST size needed for its name",  # 4
    "bad mailbox name",  # 5
    "no such mailbox",  # 6
    "bad uid",  # 7
    "message too large for the flash space left",  # 8 (StoreFull: the free flash less the reserve)
)


def text(n):
    """TEXTS[n]: the message of StoreError(n) (storecore.StoreError)."""
    return TEXTS[n]


def find(name):
    """store.<name>: storesession's Mailbox and MailboxLocked (loaded, and kept, by the lookup),
    else the name in storecore, storeindex or storemerge, in that
    order; AttributeError if none has it (a dunder at once: CPython's import machinery asks for
    __path__ and the like)."""
    if name[:2] == "__":
        raise AttributeError(name)
    if name in ("Mailbox", "MailboxLocked"):
        from pocketpost import storesession

        return getattr(storesession, name)
    for m in ("storecore", "storeindex", "storemerge"):
        try:
            return getattr(getattr(__import__("pocketpost." + m), m), name)
        except AttributeError:
            pass
    raise AttributeError(name)


def finish_group(root):
    """groupcommit.py's recovery, at Store() when it finds an intent record: finish a committed
    group (<root>/group: rename the temp files it names that are still there, in their buckets
    or, written by an older version, in tmp/), forget an uncommitted one
    (<root>/group.new)."""
    intent = compat.join(root, "group")
    try:
        _remove(compat.join(root, "group.new"))
        if not compat.exists(intent):
            return
        f = open(intent)
        try:
            text = f.read()
        finally:
            f.close()
        if text.endswith("end\n"):
            for line in text.split("\n"):
                parts = line.split(" ")
                if len(parts) != 2:
                    continue
                src = compat.join(root, parts[0])
                dst = compat.join(root, parts[1])
                if compat.exists(src):
                    compat.makedirs(dst.rsplit("/", 1)[0])
                    compat.rename(src, dst)
            compat.sync_dir(root)
        _remove(intent)
    except OSError as e:
        raise _os_error(e)


class _Unstuffed:
    """The message of a stuffed file (Mailbox.open): readinto(buf) un-stuffs the file through a
    fixed _IN_BUF block (wire.DotUnstuffer, which never meets a terminator in a sound file).
    A terminator inside the file, or a message that does not come to `size` octets, raises
    OSError(EIO) like any other unreadable message."""

    def __init__(self, f, size):
        from pocketpost.wire import DotUnstuffer  # the stuffing codec, for stuffed files only

        self.f = f
        self.left = size
        self.u = DotUnstuffer()
        self.buf = bytearray(_IN_BUF)
        self.start = 0
        self.end = 0

    def readinto(self, out):
        cap = len(out)
        n = 0
        u = self.u
        while n < cap:
            if self.start >= self.end:
                got = self.f.readinto(self.buf)
                if not got:
                    break
                self.start = 0
                self.end = got
            n += u.unstuff_into(self.buf, self.start, self.end, out, n)
            self.start += u.consumed
            if u.done:
                raise OSError(_EIO, "terminator inside a stored message")
        self.left -= n
        if self.left < 0 or (not n and self.left):
            raise OSError(_EIO, "stored message is not its recorded size")
        return n

    def read(self, n=-1):
        """Up to n octets (all that is left when n < 0: for tests and tools, not the board)."""
        b = bytearray(n if n >= 0 else max(self.left, 0))
        mv = memoryview(b)
        k = 0
        while k < len(b):
            got = self.readinto(mv[k:])
            if not got:
                break
            k += got
        return bytes(mv[:k])

    def close(self):
        self.f.close()


def deliver_stream(store, name, readinto, arrival):
    """Store.deliver_stream (host tools, tests): deliver what readinto(buf) yields (it returns
    the byte count, 0 at EOF), without the hint (the scans: storewalk.py)."""
    d = store.begin(name, arrival)
    try:
        buf = bytearray(_IN_BUF)
        mv = memoryview(buf)
        while True:
            n = readinto(buf)
            if not n:
                break
            d.write(buf if n == _IN_BUF else mv[:n])  # a full block: the no-copy path
        return d.commit()
    except BaseException:
        d.abort()
        raise


def deliver_file(store, name, path, arrival):
    """Store.deliver_file: the file's content delivered (deliver_stream)."""
    f = open(path, "rb")
    try:
        return deliver_stream(store, name, f.readinto, arrival)
    finally:
        f.close()


def damaged(box, r):
    """Mailbox.open found message r's file gone, unreadable or of another size than its record
    (the mailbox is marked: the next lock scans it): logged, and StoreError('SYS/PERM')."""
    log.warning("store %s: message %08x.%d unreadable or not %d octets", box.path, r[0], r[1], r[3] & _SIZE)
    raise StoreError("message damaged", "SYS/PERM")


def unreadable(mb, i):
    """Mailbox.unreadable(i): the session could not read message i; the next lock moves its file
    to damaged/ (at most _MAX_UNREADABLE kept in RAM)."""
    r = mb._rec(i)
    box = mb._box
    u = box.unreadable
    if len(u) < _MAX_UNREADABLE:
        if not u:  # the first report since the last scan: the list is made now (_Box.unreadable)
            u = box.unreadable = []
        u.append((r[0], r[1], r[2], r[3], mb._lsize(i, r)))
    box.suspect = True
    log.warning("store %s: message %08x.%d could not be read: set aside at the next lock", box.path, r[0], r[1])


def commit(d, e, epoch, seq, target):
    """Delivery.commit when the rename of d's temp file to target (or the sync after it) raised e:
    the file decides, never the exception (see there). Landed: the RAM state, and its UID
    returned for an OSError (logged), else e raised again. Not there (or flash cannot tell):
    the seq skipped, the delivery aborted, e raised (a StoreError for an OSError)."""
    if compat.exists(target) and not compat.exists(d.tmp):
        uid = d.landed(epoch, seq)
        if isinstance(e, OSError):
            log.warning("store %s: %s after the rename of %s: stored", d.box.path, e, uid)
            return uid
        raise e
    d.spent(seq)
    d.abort()
    if isinstance(e, OSError):
        raise _os_error(e)
    raise e


def restore_seal(d):
    """Delivery.seal of a delivery under a given UID: (epoch, seq) once checked (the mailbox not
    locked, the seq above its last); the unindexed messages are merged first, so the records
    stay in seq order."""
    box = d.box
    epoch, seq = d._uid
    if box.path in _LOCKS:
        raise find("MailboxLocked")("mailbox in use")
    if seq < box.next_seq:
        raise StoreError("uid %08x.%d is not above the mailbox's last" % (epoch, seq), "SYS/PERM")
    if box.unindexed:
        box.merge()
    return epoch, seq


def restore_landed(d, epoch, seq):
    """Delivery.landed of a delivery under a given UID: its record appended to the index at once
    (its seq may lie beyond a gap of buckets, where the search for unindexed files does not look).
    Returns the UID."""
    try:
        d.box.merge([(epoch, seq, d.arrival, d.szf(), d.size)])
    except (OSError, StoreError):
        # Durable but unindexed beyond a possible bucket gap: an index rebuild (or the same
        # restore run again, which renames over it) makes it visible.
        d.box.loaded = False
    return "%08x.%d" % (epoch, seq)
