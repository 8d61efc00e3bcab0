"""The store's files above its index and its names (store.py's theory of operation): find the
message files delivered since the index's last record and append their records (merge), parse a
message file's name and a UID, create a mailbox (its directories and empty index), and a
mailbox's first load after boot when nothing needs repair (load, below), and every mailbox's at a
server's start (recover_all).

Loaded for a call (storecore._cold), dropped after it on MicroPython: a merge runs at a lock that
finds unindexed messages (after deliveries), every _MERGE_AFTER deliveries with nobody holding the
mailbox, and in recovery; names are parsed by recovery and the check (storescan.py,
storecheck.py, which import it), by a merge and by a restore's begin(uid=...); a mailbox's first
lock or delivery since boot loads it (load). So a POP3 server's sessions keep none of it between
those calls.

The first load (load; it was storeload.py, which imported this module anyway: a module fewer is
three interned names fewer in every process), when nothing needs repair: the index verified,
compared with one listing of the buckets, the files delivered above it appended (merge), the RAM
state set. Functions of a storecore._Box.

This is every fetch's and nearly every first lock's case, so it is kept apart from the repair
code (storescan.py: the intent log rolled forward, salvage, files set aside or renumbered, the
index rewritten, old formats): a process whose mailboxes are sound never loads that, and never
interns its names (a name once interned stays for good). The comparison bails out at the first
thing a scan would count (storescan._walk_gen: a record failing its check or out of order, a
file missing, of another size or name, a second file of a seq, a file in a bucket its seq does
not belong to or named in another spelling than its path's, a file without a record below the
index's end, an unreadable bucket, a delivery's temp file: the scan removes an orphan), and at a
deletion commit in flight, a session's report of damage (_Box.suspect, _Box.unreadable) or a
file above the index that merge() cannot reach: then
storescan.recover runs from the start, as it did before this split. So it may send a sound
mailbox to the repair code, never leave a damaged one unrepaired.
"""

import struct

from pocketpost import compat, log
from pocketpost.compat import const
from pocketpost.storecore import BUCKET, StoreError, _Box, _os_error, _remove
from pocketpost.storeindex import _pack, iter_index, read_index_state, write_index

# storeindex.py's private constants (const() folds them at compile time: they are not module
# attributes on MicroPython); host_tests/dual/test_store.py checks they agree.
_REC = const(24)
_MASK = const(0xFFFFFFFF)
_PLAIN = const(0x80000000)
_STUFFED = const(0x40000000)
# A merge finds the files above the index _WINDOW seqs at a time. Each file's (epoch, seq,
# arrival, size field, LIST size) goes into a slot of _SLOT bytes ("<5I"): 320 B for the window,
# at any backlog. A due merge (storecore's _MERGE_AFTER, 64) lists its bucket four times: reads
# only. A window of 64 (one listing) needed 2 KiB more heap at a tight board's start-up merge
# (test_deploy's TIGHT_HEAP: 142k, not 140k).
_WINDOW = const(16)
_SLOT = const(20)


def _parse_msg_name(name, loose=False):
    """(epoch, seq, arrival, flags, dots) of a message file name spelt as storecore._msg_name
    spells it (a record's path is that name), or None for anything else; flags: 0 (unstuffed,
    from before the wire form), _PLAIN, or _PLAIN | _STUFFED. loose: any spelling int() reads
    too (upper-case hex, leading zeros, ...: a hand copy, a restore tool), a file recovery
    renames to its path (storescan._rehome)."""
    # ASCII only, before any int(): CPython's int() and isdigit() take other digits ("²", "٥"),
    # "_", signs and spaces, MicroPython's do not; so both read the same names, and no name
    # makes int() raise. (One strip over the name: a message name leaves "", no copy.)
    if name.strip("0123456789abcdefABCDEF.p" if loose else "0123456789abcdef.p"):
        return None
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
    if not loose and (parts[1] < "1" or (parts[2] < "1" and parts[2] != "0")):
        return None  # (a leading zero, which _msg_name never writes: comparisons, no copy)
    return epoch, seq, arrival, flags, dots



def _file_rec(m, size):
    """The in-RAM record (epoch, seq, arrival, size field, LIST size) of a message file from
    its parsed name m and its size; the LIST size is negative when the file is shorter than the
    dots its name says were added (damaged)."""
    return m[0], m[1], m[2], size | m[3], size - m[4]


def parse_uid(uid):
    """(epoch, seq) of a UID "<8 hex digits>.<seq>" as the store makes them, or None."""
    parts = uid.split(".") if isinstance(uid, str) else ()
    # (ASCII digits only: CPython's isdigit() takes "²", which int() then refuses.)
    if len(parts) != 2 or len(parts[0]) != 8 or not parts[1] or parts[1].strip("0123456789") or len(parts[1]) > 10:
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


def scan_bucket(box, k, above):
    """(parsed name, size) of each message file in bucket k with seq > above, as the listing goes
    (streamed: no list of the bucket). A file of another bucket's seq, or named in another
    spelling than _msg_name's, is left to a scan (a record's path is its seq's bucket and that
    name), and so is one shorter than its added dots (a scan sets it aside)."""
    for name, size in compat.iter_files(box.p("b%d" % k)):
        m = _parse_msg_name(name)
        if m is not None and m[1] > above and size >= m[4] and m[1] // BUCKET == k:
            yield m, size


def _unindexed(box):
    """The files above the index, in seq order: (epoch, seq, arrival, size field, LIST size).
    Found _WINDOW seqs at a time: each window one listing of the buckets from its first seq's up,
    each file of a seq in the window put in that seq's slot (no list of the files, no sort: a
    merge's RAM is the same at any backlog: a lock held while mail came in, a restart), then the
    next window from the lowest seq above this one. Files at or below `above` are indexed (or in
    an earlier window); one between the index's end and its floor, or a second file of a seq, is
    left to the next lock's recovery (box.suspect), as the first load leaves any such file to it
    (_sound). (Names: a function or argument name is one more interned in every process that
    merges; locals are not.)"""
    slots = bytearray(_WINDOW * _SLOT)
    above = box.last_seq
    lo = max(above + 1, box.floor)
    while lo:
        hi = lo + _WINDOW
        top = 0  # the lowest seq above the window
        k = lo // BUCKET
        while compat.isdir(box.p("b%d" % k)):
            for m, size in scan_bucket(box, k, above):
                seq = m[1]
                off = (seq - lo) * _SLOT
                if seq >= hi:
                    if not top or seq < top:
                        top = seq
                elif seq < lo or struct.unpack_from("<I", slots, off + 4)[0]:
                    box.suspect = True
                else:
                    struct.pack_into("<5I", slots, off, m[0], seq, m[2], size | m[3], size - m[4])
            k += 1
        for off in range(0, _WINDOW * _SLOT, _SLOT):
            r = struct.unpack_from("<5I", slots, off)
            if r[1]:
                struct.pack_into("<I", slots, off + 4, 0)  # (emptied for the next window)
                yield r
        above = hi - 1
        lo = top


def merge(box, records=None):
    """Append records for unindexed files (records first; files are already in place), in one
    append to the index (littlefs copies the index's last, partial block at each: ~1 erase and up
    to 16 programs, hence a merge every _MERGE_AFTER deliveries, not at each). records: those
    records when the caller knows them (a delivery with a given UID). If it fails once the index
    is open, records it wrote may be on flash (a close commits them): the mailbox is loaded from
    flash again at its next use."""
    buf = bytearray(_REC)
    total = box.idx_total
    n = 0
    last = 0
    f = None
    try:
        for r in _unindexed(box) if records is None else records:
            if f is None:
                f = open(box.p("index"), "ab")
            total += r[4]
            _pack(buf, 0, r[0], r[1], r[2], r[3], total & _MASK)
            f.write(buf)
            n += 1
            last = r[1]
        if f is None:
            return
        compat.sync_file(f)
    except BaseException:
        if f is not None:
            box.loaded = False
        raise
    finally:
        if f is not None:
            f.close()
    box.idx_count += n
    box.idx_total = total & _MASK
    box.last_seq = last
    box.unindexed = 0


def create(store, name):
    """Store.create: the mailbox's directories and its empty index (a new epoch)."""
    path = store._path(name)
    try:
        compat.makedirs(path)  # (no tmp/: a delivery writes into its bucket, store.Delivery)
        if not compat.exists(compat.join(path, "index")):
            box = _Box(path)
            write_index(box, box.p("index.new"), iter(()), _new_epoch(), 1)
            compat.rename(box.p("index.new"), box.p("index"))
            compat.sync_dir(path)
    except OSError as e:
        raise _os_error(e)


# --- a mailbox's first load (storecore.Store.box) ---------------------------------------------


def load(box):
    """Load a mailbox's RAM state (storescan.recover's result, without its repairs when there
    is nothing to repair). Caller holds exclusivity."""
    top = None
    if not (box.suspect or box.unreadable or compat.exists(box.p("commit"))) and read_index_state(box):
        top = _sound(box)
    if top is not None:
        _remove(box.p("index.new"))  # a rewrite cut short before its rename (as recover does)
        _remove(box.p("commit.new"))  # an intent log cut short before its rename
        box.merge()
        if top < max(box.floor, box.last_seq + 1):
            loaded(box, False)
            return
        # A file above the index that merge()'s walk of consecutive buckets did not reach:
        # storescan.recover rewrites the index from the files (see there).
    from pocketpost import storescan

    storescan.recover(box)


def loaded(box, suspect):
    """The RAM state from the index's fields (read_index_state, merge), as loaded."""
    box.next_seq = max(box.floor, box.last_seq + 1)
    box.count = box.idx_count
    box.total = box.idx_total
    box.unindexed = 0
    box.suspect = suspect
    box.loaded = True


def _sound(box):
    """None if a scan of the (verified) index against the files would count anything; else the
    highest seq of a file without a record (0: none), each such file above the index's last
    record and its floor (merge()'s to append). Fixed RAM: one slot per seq of a bucket."""
    slots = [None] * BUCKET
    it = iter_index(box)
    try:
        r = _next(it)
        last = 0
        top = 0
        for k in buckets(box):
            lo = k * BUCKET
            hi = lo + BUCKET
            second = False  # a second file of a seq (or one of another bucket's): the listing runs to its end
            for name, size in compat.iter_files(box.p("b%d" % k)):
                m = _parse_msg_name(name)
                if m is None:
                    # Not a message, or one in another spelling (the scan renames it: its
                    # record's path is not this file): only names that are not _msg_name's.
                    # A delivery's temp file (a crash left it, or one is under way): the scan
                    # removes it if it is an orphan (storescan.orphans; storescan.temp_name tells
                    # a temp name, this passes it any name of hex digits, dots and one "t").
                    second = (second or _parse_msg_name(name, True) is not None
                              or "t" in name and not name.replace("t", "", 1).strip("0123456789abcdef."))
                    continue
                if not lo <= m[1] < hi or slots[m[1] - lo] is not None:
                    second = True  # (another bucket's seq: the scan moves it to its own)
                    continue
                slots[m[1] - lo] = _file_rec(m, size)
            if second:
                return None
            while r is not None and r[1] < hi:
                if r[1] <= last or r[1] < lo:
                    return None  # out of order (salvage drops it), or its bucket is gone
                last = r[1]
                if slots[r[1] - lo] != r:  # its file missing, or another size or name
                    return None
                slots[r[1] - lo] = None
                r = _next(it)
            for i in range(BUCKET):
                t = slots[i]
                if t is not None:
                    slots[i] = None
                    if t[4] < 0 or t[1] <= box.last_seq or t[1] < box.floor:
                        return None  # damaged (shorter than its dots), or below the index's end
                    top = max(top, t[1])
        if r is not None:
            return None  # records of buckets that are gone
        return top
    except (OSError, StoreError):  # an unreadable bucket or index: the scan's to report
        return None
    finally:
        it.close()


def buckets(box):
    """The mailbox's bucket numbers (b<k> directories), ascending."""
    out = []
    for name, is_dir, _ in compat.listdir_stat(box.path):
        if is_dir and len(name) > 1 and name[0] == "b":
            try:
                out.append(int(name[1:]))
            except ValueError:
                pass
    out.sort()
    return out


def _next(items):
    """The next item of an iterator, or None at its end (next(items, default) is optional in MicroPython)."""
    for r in items:
        return r
    return None


def recover_all(store):
    """Every mailbox of store not loaded yet is loaded now (load, storescan.recover if it needs
    repair, as its first lock or delivery would); returns (mailboxes, failed). A mailbox that fails
    here is logged and left to its first lock (Store.box), as one made later is. For a server's
    start-up (serverstart.recover), while the heap holds little; called through storecore._cold,
    which holds the cold code (and storeindex) loaded for all the mailboxes and drops it after, so
    a server keeps none of it, nor the session side, until a session needs them."""
    names = store.mailboxes()
    failed = 0
    for name in names:
        try:
            store.box(name, False)
        except Exception as e:  # MemoryError too: this mailbox's, never the server's start
            failed += 1
            log.warning("store %s: not recovered at start (%r): at its first lock", name, e)
    return len(names), failed
