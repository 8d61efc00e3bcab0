"""The store's deletion commit (store.py's theory of operation, "Deletion commit"): the intent
log written (write_intent), carried out (apply_deletions: also recovery's roll-forward) and a
session's commit (Mailbox.commit: the records of its deleted messages read from the index through
the session's buffer, the log written, the deletions applied).

Apart from storesession.py so that a POP3 server keeps only what a session reads: storecore._cold
loads it for a Mailbox.commit that deletes something and for recovery (storescan.py), and drops it
after (MicroPython). Its two steps are reached as storesession.write_intent and
storesession.apply_deletions (a module __getattr__ there gives these), and a session's commit
calls them by those names, so the deletion commit has one name for its callers and tests.
"""

import os

from pocketpost import compat, storesession
from pocketpost.compat import const
from pocketpost.storecore import BUCKET, StoreError, _os_error, _remove
from pocketpost.storeindex import _iter_recs, _lsize, _pack, _unpack, iter_index, read_index_state, write_index

# storeindex.py's private constants (const() folds them at compile time: they are not module
# attributes on MicroPython); host_tests/dual/test_store.py checks they agree.
_REC = const(24)
_RECS_PER_READ = const(32)
_MAGIC_COMMIT = const(0x32435050)  # b'PPC2'
_STUFFED = const(0x40000000)
_SIZE = const(0x3FFFFFFF)


def write_intent(box, records, n=None, name="commit"):
    """Step 1 of a deletion commit: the intent log, flushed. Once complete it is the commit
    point; a failure before that removes it and nothing is deleted.

    records: the n records to delete (epoch, seq, arrival, size field, LIST size: the log keeps
    the LIST size where the index keeps the running total), in index order, i.e.
    ascending seq; any iterable, walked once and written a block at a time (nothing is kept,
    so a generator reading the index costs a fixed amount of RAM for any n)."""
    if n is None:
        n = len(records)
    buf = bytearray(_REC * _RECS_PER_READ)
    intent = box.p(name)
    f = open(intent, "wb")
    try:
        _pack(buf, 0, _MAGIC_COMMIT, n, 0, 0, 0)
        k = 1  # records in buf
        put = 0
        for r in records:
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
    compat.sync_dir(box.path)

def apply_deletions(box, ok, mask=None):
    """Steps 2-3 of a deletion commit, driven by the intent log on flash (idempotent: this is
    also the roll-forward after a crash). Every pass streams the log a block at a time:
    unlink the files (the floor is the highest seq + 1), rewrite the index without them,
    then drop emptied buckets. mask: the committing session's bitmask of deleted index
    positions (the index is unchanged since the lock, so the rewrite filters by position);
    None in recovery (the rewrite merges the index with the log by seq: a third read). Only
    recovery passes ok False or mask None: then storescan is loaded and held (_cold)."""
    intent = box.p("commit")
    floor = box.floor
    it = _iter_recs(intent, "intent log corrupt")
    try:
        for r in it:
            _remove(box.msg_path(r[0], r[1], r[2], r[3], r[4]))
            if r[1] + 1 > floor:
                floor = r[1] + 1
    finally:
        it.close()
    if ok:
        floor = max(floor, box.last_seq + 1)
        new = box.p("index.new")
        if mask is not None:
            it = iter_index(box, mask)
        else:
            from pocketpost import storescan  # recovery: loaded and held (_cold)

            it = storescan.iter_kept(box, intent)
        try:
            write_index(box, new, it, box.epoch, floor)
        finally:
            it.close()
        compat.rename(new, box.p("index"))
        compat.sync_dir(box.path)
        read_index_state(box)
    else:
        from pocketpost import storescan  # recovery: loaded and held (_cold)

        box.floor = floor
        storescan.rebuild(box)
    # Drop bucket directories emptied below the floor (a littlefs directory costs two blocks);
    # rmdir of a non-empty one fails harmlessly before writing anything. The log's seqs
    # ascend, so each bucket comes up in one run and the first one at the top ends the walk.
    top = box.floor // BUCKET
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
                    os.rmdir(box.p("b%d" % k))
                except OSError:
                    pass
    finally:
        it.close()


def _popcount(mask, size):
    n = 0
    for j in range(size):
        b = mask[j]
        while b:
            b &= b - 1
            n += 1
    return n


def commit(mb, d):
    """The work of storesession.Mailbox.commit(mask) (its docstring says what `d`, its mask, may
    be and what is returned): every deletion of the session applied together through the intent
    log, then the lock released. mb: the Mailbox (its index file and buffer are read here, then
    closed; the lock is released at the end, whatever happens)."""
    if mb._box is None:
        raise StoreError("mailbox released")
    box = mb._box
    try:
        count = mb.count
        nbytes = (count + 7) // 8
        if isinstance(d, (bytes, bytearray, memoryview)):
            mask = d
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
            for i in d:
                if not 0 <= i < count:
                    raise StoreError("no such message", "SYS/PERM")
                mask[i >> 3] |= 1 << (i & 7)
        n = _popcount(mask, nbytes)
        if not n:
            return 0
        mb._free = 0
        storesession.write_intent(box, _marked(mb, mask, nbytes), n)
        mb.close()
        # Committed: from here a crash is rolled forward by the next recovery.
        box.loaded = False
        storesession.apply_deletions(box, True, mask)  # (by that name: see the module docstring)
        _remove(box.p("commit"))
        box.loaded = True
        box.count -= n
        box.total -= mb._free
        if box.next_seq < box.floor:
            box.next_seq = box.floor
        return n
    except OSError as e:
        raise _os_error(e)
    finally:
        mb.release()


def _marked(mb, mask, size):
    """Yield the index records of the messages whose bit is set in mask[:size], reading the
    index a block (_RECS_PER_READ records, a multiple of 8) at a time through the session's
    buffer and skipping blocks with no bit set; adds their sizes up in mb._free."""
    f = mb.f
    buf = mb.buf
    held = storesession._held  # the buffer is every open Mailbox's: it no longer holds what _rec cached
    if held[0] is not None:
        held[0].n = 0
    held[0] = None
    step = _RECS_PER_READ // 8
    for b0 in range(0, size, step):
        b1 = min(b0 + step, size)
        for j in range(b0, b1):
            if mask[j]:
                break
        else:
            continue
        i0 = b0 * 8
        f.seek(_REC * (i0 + 1))
        got = f.readinto(buf) // _REC
        for i in range(i0, min(b1 * 8, mb.count)):
            if mask[i >> 3] & (1 << (i & 7)):
                if i - i0 >= got:
                    raise StoreError("index truncated")
                r = _unpack(buf, (i - i0) * _REC)
                if r is None:
                    raise StoreError("index record corrupt")
                lsize = r[3] & _SIZE
                if r[3] & _STUFFED:
                    lsize = _lsize(r, _total_before(mb, i, i0, got))
                mb._free += lsize
                yield r[0], r[1], r[2], r[3], lsize

def _total_before(mb, i, a, b):
    """The running total of record i - 1 (0 for i = 0): from the block in the buffer (records
    a .. a + b - 1), else read on its own (a stuffed record first in its block)."""
    if not i:
        return 0
    if i - 1 >= a:
        r = _unpack(mb.buf, (i - 1 - a) * _REC)
    else:
        one = bytearray(_REC)
        f = mb.f
        f.seek(_REC * i)
        if f.readinto(one) != _REC:
            raise StoreError("index truncated")
        r = _unpack(one, 0)
    if r is None:
        raise StoreError("index record corrupt")
    return r[4]
