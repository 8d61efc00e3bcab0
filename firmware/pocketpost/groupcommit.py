"""Group commit: one message into several mailboxes of the store, all or nothing.

Used by the SMTP receiver ("250 after DATA means stored" for every recipient or for none).
Built on Delivery: each mailbox gets its own temp file (littlefs has no hard links), written in
the same pass. commit_group():
  1. ends, flushes and closes every temp file, checks quotas, makes the bucket directories;
  2. writes the intent record <root>/group.new ("<tmp> <final>" per copy, paths relative to
     the root, then "end"), flushes it and renames it to <root>/group: the commit point;
  3. renames every temp file into its bucket (the final names carry the seq each box is at);
  4. removes <root>/group.
A failure before step 2 completes aborts every copy: nothing is stored. Recovery (Store(),
before its clean-up of temp files) rolls a complete <root>/group forward (renames the temp files
still there) and removes a group.new that never became the intent: so after a power cut a
message is in every mailbox of the group or in none.

Only the SMTP receiver imports this module; store.Store() imports it only when it finds an intent
record to finish. It works on store.Delivery's internals (the temp file, its box, the plain flag),
which is why it lives beside store.py and not above its public API alone.
"""

import os

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.store import _LOCKS, MERGE_AFTER, QuotaExceeded, StoreError, StoreFull, _msg_name, _os_error, _remove

# store.py's values (its underscore consts take no RAM on MicroPython, so they cannot be imported):
_PLAIN = const(0x80000000)  # bit 31 of a size field / ".p" file name: no line starts with "."
_REC = const(24)  # one index record, counted in the room kept for a deletion commit

_GROUP = "group"  # the intent record's name in the store root (mailboxes are directories)


def begin_group(store, names, arrival=None):
    """Deliveries of one message into each mailbox of `names` (distinct). The free flash is
    shared: each copy may use its share of it. Raises StoreError (nothing begun) if one can't."""
    ds = []
    try:
        for n in names:
            ds.append(store.begin(n, arrival))
    except BaseException:
        for d in ds:
            d.abort()
        raise
    k = len(ds)
    if k > 1:
        for d in ds:
            if d._limit >= 0 and d._limit_exc is StoreFull:
                d._limit //= k
    return ds


def _rel(root, path):
    n = len(root) if root.endswith("/") else len(root) + 1
    return path[n:]


def commit_group(store, ds):
    """Make every delivery of `ds` durable and visible, or none of them (see above). Returns the
    UIDs in the same order. Raises StoreError when nothing was stored."""
    root = store.root
    intent = compat.join(root, _GROUP)
    pending = intent + ".new"
    targets = []
    try:
        if compat.exists(intent):  # an earlier group's roll-forward failed: a restart finishes it
            raise StoreError("unfinished group commit", "SYS/TEMP")
        seen = []
        for d in ds:
            if d._f is None or d._box in seen:
                raise StoreError("delivery is closed")
            seen.append(d._box)
            d._end()
            compat.sync_file(d._f)
            d._f.close()
            d._f = None
            box = d._box
            if store.quota and box.total + d.size > store.quota:
                raise QuotaExceeded("mailbox quota exceeded")
            seq = box.next_seq
            bdir = box.bucket_dir(seq)
            if not compat.isdir(bdir):
                os.mkdir(bdir)
            szf = (d.size | _PLAIN) if d._plain else d.size
            targets.append(compat.join(bdir, _msg_name(box.epoch, seq, d.arrival, szf)))
        f = open(pending, "w")
        try:
            for i in range(len(ds)):
                f.write("%s %s\n" % (_rel(root, ds[i]._tmp), _rel(root, targets[i])))
            f.write("end\n")
            compat.sync_file(f)
        finally:
            f.close()
        compat.rename(pending, intent)  # the commit point
        compat.sync_dir(root)
    except BaseException as e:
        try:
            _remove(pending)
        except OSError:
            pass
        for d in ds:
            d.abort()
        if isinstance(e, OSError):
            raise _os_error(e)
        raise
    # Committed: from here on nothing may undo it (a failure is finished by the next recovery).
    try:
        for i in range(len(ds)):
            compat.rename(ds[i]._tmp, targets[i])
            compat.sync_dir(ds[i]._box.bucket_dir(ds[i]._box.next_seq))
        _remove(intent)
    except OSError:
        pass  # the intent stays: Store() at the next start renames what is left
    uids = []
    for d in ds:  # RAM state, as at the end of Delivery.commit
        box = d._box
        seq = box.next_seq
        d._tmp = None
        box.busy -= 1
        box.next_seq = seq + 1
        box.count += 1
        box.total += d.size
        box.unindexed += 1
        c = store._free_cache
        if c is not None:
            c[3] += d.size + 512
        uids.append("%08x.%d" % (box.epoch, seq))
    for d in ds:
        box = d._box
        if box.unindexed >= MERGE_AFTER and box.path not in _LOCKS and not box.busy:
            try:
                box.merge()
            except (OSError, StoreError):
                pass
    return uids


def recover(root):
    """Finish a committed group (rename the temp files still in tmp/), forget an uncommitted one."""
    intent = compat.join(root, _GROUP)
    try:
        _remove(intent + ".new")
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


def flash_room(store):
    """Bytes of free flash a new message may take in any mailbox now (the reserve and two blocks
    kept, as Store.begin keeps them), -1 if unknown; for SMTP's SIZE check at MAIL FROM."""
    free, bsize = store._free(store.root)
    if free < 0:
        return -1
    return max(0, free - store.reserve - 2 * bsize)


def room(store, name):
    """Bytes a new message may take in mailbox `name` now (quota and free flash), -1 if unknown;
    for SMTP's SIZE checks (RFC 1870)."""
    box = store._box(name)
    n = -1
    if store.quota:
        n = max(0, store.quota - box.total)
    free, bsize = store._free(box.path)
    if free >= 0:  # the same room Store.begin keeps for a deletion commit
        r = max(0, free - store.reserve - (box.count + 1) * _REC - 2 * bsize)
        if n < 0 or r < n:
            n = r
    return n
