"""A mailbox's first load after boot (storecore.Store._box), when nothing needs repair: the index
verified, compared with one listing of the buckets, the files delivered above it appended
(merge), the RAM state set. Functions of a storecore._Box.

This is every fetch's and nearly every first lock's case, so it is kept apart from the repair
code (storescan.py: the intent log rolled forward, salvage, files set aside or renumbered, the
index rewritten, old formats): a process whose mailboxes are sound never loads that, and never
interns its names (a name once interned stays for good). The comparison bails out at the first
thing a scan would count (storescan._walk_gen: a record failing its check or out of order, a
file missing, of another size or name, a second file of a seq, a file without a record below the
index's end, an unreadable bucket), and at a deletion commit in flight, a session's report of
damage (_Box.suspect, _Box.unreadable) or a file above the index that merge() cannot reach: then
storescan.recover runs from the start, as it did before this split. So it may send a sound
mailbox to the repair code, never leave a damaged one unrepaired. Loaded for the call like the
rest of the store's cold code (storecore._cold), dropped after it on MicroPython.
"""

from pocketpost import compat
from pocketpost.storecore import BUCKET, StoreError, _remove
from pocketpost.storeindex import iter_index, read_index_state
from pocketpost.storemerge import _file_rec, _parse_msg_name


def load(box):
    """Load a mailbox's RAM state (storescan.recover's result, without its repairs when there
    is nothing to repair). Caller holds exclusivity."""
    compat.makedirs(box.p("tmp"))
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
            for name, size in compat.iter_files(box.p("b%d" % k)):
                m = _parse_msg_name(name)
                if m is None or not lo <= m[1] < hi:
                    continue  # (not a message of this bucket: a scan ignores it too)
                if slots[m[1] - lo] is not None:
                    return None  # a second file of a seq
                slots[m[1] - lo] = _file_rec(m, size)
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


def _next(it):
    """The next item of an iterator, or None at its end (next(it, default) is optional in MicroPython)."""
    for r in it:
        return r
    return None
