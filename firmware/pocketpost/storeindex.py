"""The store's index (store.py's theory of operation): its on-flash format, a record packed,
unpacked and checked, the whole index read and verified, its records walked, an index written.
Functions of a storecore._Box.

Apart from storecore.py so that no role keeps it between the calls that need it: a lock's check
of the index (storesession.lock, through storecore._cold), a deletion commit (storecommit.py),
recovery (storescan.py, storecheck.py) and storemerge.py (a first load, a merge, create) load it
for the call and drop it after (on MicroPython). A record read (unpacked and checked: _unpack,
and its LIST size: _lsize) is also storesession.py's (a copy: a Mailbox reads records between
those calls; not storecore's, which every process that delivers keeps and never reads a record
with; host_tests/dual/test_store.py checks the copies agree). Appending to the index (merge) and
parsing names: storemerge.py.
"""

import binascii
import struct

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.storecore import StoreError

# binascii.crc32: in every MicroPython build with deflate (ESP32 and unix since 1.22).

# The on-flash format. These are the originals: storecore, store, storescan and storesession repeat
# the ones they use (const() folds them at compile time: they are not module attributes on
# MicroPython); host_tests/dual/test_store.py checks they agree.
_REC = const(24)  # one index record: six little-endian uint32
_RECS_PER_READ = const(32)  # records read at once by a session (768-byte buffer)
# A record's struct format: "<6I" (its first five fields: "<5I"), written out where used (a
# module-level name for it would be one more interned name in every process that reads an index).
# Format 2: a record's check is a CRC-32 (format 1, b'PPX1'/b'PPC1', used a weaker mix that had to
# be verified record by record in Python; such an index is rebuilt from the files, UIDs kept, and
# such an intent log is rewritten in format 2 and carried out: see storescan._upgrade_intent).
_MAGIC_INDEX = const(0x32585050)  # b'PPX2'
_MAGIC_COMMIT = const(0x32435050)  # b'PPC2'
# (format 1's index magic, b"PPX1", is storescan's: only its recovery reads it; a bytes value
# here would be one more interned name in every process that reads an index)
_OLD_MAGIC_COMMIT = const(0x31435050)  # b'PPC1'
# A record's check is the CRC-32 of its first 20 bytes continued from this value, the CRC-32
# residue: the CRC of a whole valid record (check included) continued from it gives it back, so a
# run of records is verified by one crc32 call over the run (residue in, residue out).
_RES = const(0x2144DF1C)
_MASK = const(0xFFFFFFFF)
_PLAIN = const(0x80000000)  # in a record's size field: the file is the wire form (plain or stuffed)
_STUFFED = const(0x40000000)  # with _PLAIN: the file has dots added (their number is in its name)
_SIZE = const(0x3FFFFFFF)  # the file's octets (messages are far below 1 GiB)


def _unpack(buf, off):
    """The six fields of an index record, or None if its check fails. (storesession.py has a copy:
    a Mailbox reads records, and nothing else of the index, between the calls that load this.)"""
    if binascii.crc32(memoryview(buf)[off : off + _REC], _RES) != _RES:
        return None
    return struct.unpack_from("<6I", buf, off)


def _lsize(r, prev):
    """The LIST size of index record r (six fields) whose predecessor's running total is prev
    (0 for the first record): the size field for an unstuffed file, else the difference of the
    running totals (which add up LIST sizes while the size field holds the file's octets).
    (storesession.py has a copy.)"""
    if r[3] & _STUFFED:
        return (r[4] - prev) & _MASK
    return r[3] & _SIZE
# (the folder of files a scan sets aside, "damaged", is storescan's _DAMAGED, for the same reason)


def _pack(buf, off, a, b, c, d, e):
    struct.pack_into("<5I", buf, off, a, b, c, d, e)
    struct.pack_into("<I", buf, off + 20, binascii.crc32(memoryview(buf)[off : off + 20], _RES))


def _runs_ok(mv, n):
    """True if every record in mv[:n] (whole records) passes its check: one C call for them all."""
    return binascii.crc32(mv[:n], _RES) == _RES

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


def write_index(box, path, records, epoch, floor):
    """Write a complete index (header + the records, an iterable) to path, flushed."""
    buf = bytearray(_REC * _RECS_PER_READ)
    count = 0
    total = 0
    last = 0
    f = open(path, "wb")
    try:
        _pack(buf, 0, _MAGIC_INDEX, 1, epoch, floor, 0)
        f.write(memoryview(buf)[:_REC])
        n = 0
        for r in records:
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

def read_index_state(box):
    """Read and verify the whole index (every record's check, one crc32 call per block of
    records: the cost of reading the file, ~1 ms at 5,000 messages on the host), then set the
    idx_* fields from its header and last record. False if missing, torn, unreadable or if
    any record fails its check."""
    try:
        f = open(box.p("index"), "rb")
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
                h = struct.unpack_from("<6I", buf, 0)
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
        r = struct.unpack_from("<6I", buf, last)
        if r[1] < 1:
            return False
        last_seq = r[1]
        total = r[4]
    box.epoch = h[2]
    box.floor = h[3]
    box.idx_count = count
    box.idx_total = total
    box.last_seq = last_seq
    return True

def iter_index(box, mask=None):
    """Yield (epoch, seq, arrival, size field, LIST size) of every index record, a block at a
    time, leaving out record i (0-based) when bit (i & 7) of mask[i >> 3] is set."""
    i = 0
    prev = 0  # the running total of the record before
    it = _iter_recs(box.p("index"), "index record corrupt")
    try:
        for r in it:
            if mask is None or not (i >> 3 < len(mask) and mask[i >> 3] & (1 << (i & 7))):
                yield r[0], r[1], r[2], r[3], _lsize(r, prev)
            prev = r[4]
            i += 1
    finally:
        it.close()

# --- directory scans ----------------------------------------------------------------------
