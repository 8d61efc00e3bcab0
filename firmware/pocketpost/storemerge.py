"""The store's files above its index and its names (store.py's theory of operation): find the
message files delivered since the index's last record and append their records (merge), parse a
message file's name and a UID, create a mailbox (its directories and empty index).

Loaded for a call (storecore._cold), dropped after it on MicroPython: a merge runs at a lock that
finds unindexed messages (after deliveries), every _MERGE_AFTER deliveries with nobody holding the
mailbox, and in recovery; names are parsed by recovery and the check (storescan.py,
storecheck.py, which import it), by a merge and by a restore's begin(uid=...). So a POP3 server's
sessions keep none of it between those calls.
"""

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.storecore import BUCKET, _Box, _os_error
from pocketpost.storeindex import _pack, write_index

# storeindex.py's private constants (const() folds them at compile time: they are not module
# attributes on MicroPython); host_tests/dual/test_store.py checks they agree.
_REC = const(24)
_MASK = const(0xFFFFFFFF)
_PLAIN = const(0x80000000)
_STUFFED = const(0x40000000)


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


def scan_bucket(box, k, above):
    """Message files in bucket k with seq > above: list of (epoch, seq, arrival, size field,
    LIST size)."""
    path = box.p("b%d" % k)
    out = []
    for name, is_dir, size in compat.listdir_stat(path):
        if is_dir:
            continue
        m = _parse_msg_name(name)
        if m is None or m[1] <= above or size < m[4]:
            continue  # (a file shorter than its added dots waits for a scan to set it aside)
        out.append(_file_rec(m, size))
    return out

def find_unindexed(box):
    """Files with seq above the index, found by listing the newest buckets only."""
    start = max(box.last_seq + 1, box.floor)
    k = start // BUCKET
    out = []
    while compat.isdir(box.p("b%d" % k)):
        out.extend(scan_bucket(box, k, box.last_seq))
        k += 1
    out.sort(key=lambda r: r[1])
    return out

def merge(box, recs=None):
    """Append records for unindexed files (records first; files are already in place).
    recs: those records when the caller knows them (a delivery with a given UID)."""
    if recs is None:
        recs = find_unindexed(box)
    if not recs:
        return
    buf = bytearray(_REC)
    total = box.idx_total
    f = open(box.p("index"), "ab")
    try:
        for r in recs:
            total += r[4]
            _pack(buf, 0, r[0], r[1], r[2], r[3], total & _MASK)
            f.write(buf)
        compat.sync_file(f)
    finally:
        f.close()
    box.idx_count += len(recs)
    box.idx_total = total & _MASK
    box.last_seq = recs[-1][1]
    box.unindexed = 0


def create(store, name):
    """Store.create: the mailbox's directories and its empty index (a new epoch)."""
    path = store._path(name)
    try:
        compat.makedirs(compat.join(path, "tmp"))
        if not compat.exists(compat.join(path, "index")):
            box = _Box(path)
            write_index(box, box.p("index.new"), iter(()), _new_epoch(), 1)
            compat.rename(box.p("index.new"), box.p("index"))
            compat.sync_dir(path)
    except OSError as e:
        raise _os_error(e)
