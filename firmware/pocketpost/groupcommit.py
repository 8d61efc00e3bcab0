"""Group commit: one message into several mailboxes of the store, all or nothing.

Used by the SMTP receiver ("250 after DATA means stored" for every recipient or for none).
Built on Delivery: each mailbox gets its own temp file (littlefs has no hard links), written in
the same pass. commit():
  1. ends, flushes and closes every temp file, checks quotas, makes the bucket directories;
  2. writes the intent record <root>/group.new ("<tmp> <final>" per copy, paths relative to
     the root, then "end"), flushes it and renames it to <root>/group: the commit point;
  3. renames every temp file to its final name (the seq each box is at: in the bucket the temp
     file is in, unless another delivery took the seq it expected, store.Delivery);
  4. removes <root>/group.
A failure before step 2 completes aborts every copy: nothing is stored. Recovery (Store(),
before its clean-up of temp files: storerare.finish_group, loaded only when it finds an intent
record, so the SMTP receiver does not keep that code) rolls a complete <root>/group forward (renames the temp files
still there) and removes a group.new that never became the intent: so after a power cut a
message is in every mailbox of the group or in none.

Only the SMTP receiver imports this module. Each copy goes through the two steps of Delivery.commit
around its rename: Delivery.seal() (step 1) and Delivery.landed() (the RAM state, after step 3), so
a change to commit is made once, in store.py.
"""

from pocketpost import compat, log
from pocketpost.storecore import StoreError, StoreFull, _cold, _os_error, _remove

# The intent record is "group" in the store root (mailboxes are directories), written as
# "group.new" first; each a literal where used: a name of its own would be an interned one (as
# would a helper's or an argument's: names here are the store's or built-in ones, so that an SMTP
# session's first message interns few; docs/ARCHITECTURE.md).


def begin(store, names, arrival=None):
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
            if d.limit >= 0 and d.exc_type is StoreFull:  # (a quota's limit stays as it is)
                d.limit //= k  # k copies of one message share the free flash
    return ds


def commit(store, group):
    """Make every delivery of `group` (begin's list) durable and visible, or none of them (see
    above). Returns the UIDs in the same order (one whose text found no heap left out). Raises
    (StoreError, or MemoryError before the commit point) only when nothing was stored."""
    ds = group
    root = store.root
    intent = compat.join(root, "group")
    pending = compat.join(root, "group.new")
    rel = len(root) if root.endswith("/") else len(root) + 1  # paths in the intent: relative to root
    targets = []
    uids = []  # (made before the commit point: past it nothing may need the heap to succeed)
    named = False  # the intent's rename was tried: it may be on flash
    try:
        if compat.exists(intent):  # an earlier group's roll-forward failed (the flash, or no heap):
            _cold("storerare", "finish_group", root)  # finished now, as Store() would at a restart
            if compat.exists(intent):  # (refused, as before this, rather than a second intent)
                raise StoreError("unfinished group commit", "SYS/TEMP")
        seen = []
        for d in ds:
            if d.box in seen:
                raise StoreError("delivery is closed")
            seen.append(d.box)
            targets.append(d.seal())  # (epoch, seq, final path); aborts d if it fails
        f = open(pending, "w")
        try:
            for i in range(len(ds)):
                f.write("%s %s\n" % (ds[i].tmp[rel:], targets[i][2][rel:]))
            f.write("end\n")
            compat.sync_file(f)
        finally:
            f.close()
        named = True
        compat.rename(pending, intent)  # the commit point
        compat.sync_dir(root)
    except BaseException as e:
        # The rename (or the sync after it) raised with the intent on flash: the intent decides,
        # as the file does in Delivery.commit. Committed: go on below. Aborting the copies here
        # left the intent in place, and every later group commit (each SMTP delivery) refused
        # with "unfinished group commit" until a restart.
        landed = named and isinstance(e, OSError) and compat.exists(intent) and not compat.exists(pending)
        if not landed:
            try:
                _remove(pending)
            except OSError:
                pass
            for i in range(len(ds)):
                if named:  # an intent that reached flash renames the copy there at the next start
                    ds[i].spent(targets[i][1])
                ds[i].abort()
            if isinstance(e, OSError):
                raise _os_error(e)
            raise
    # Committed: from here on nothing may undo it, and nothing raises (the caller's 250 depends on
    # it: a sender told anything else sends the message again, and it is stored twice).
    try:
        try:
            for i in range(len(ds)):
                compat.rename(ds[i].tmp, targets[i][2])
                compat.sync_dir(ds[i].box.bucket_dir(targets[i][1]))
            _remove(intent)
        except (OSError, MemoryError):  # the flash, or a path made on a full heap: committed all the
            pass  # same; the intent stays and the next group commit (or Store() at a start) finishes it
        except Exception as e:  # a bug: finished later as above, but said (the line may find no heap)
            try:
                log.error("group commit roll-forward: %r", e)
            except MemoryError:
                pass
    finally:
        # RAM state, as Delivery.commit leaves it, even when interrupted (Ctrl-C): each copy's
        # seq is taken, whether its file is in place or still named by the intent; merges once
        # all have landed. Every copy lands even when one's UID text (or its place in uids) finds
        # no heap: that UID is left out (the caller's reply and log line do without it); else the
        # next ones stayed busy with their seq free to hand out again, under a UID a client had seen.
        # A Ctrl-C in one copy's waits for the others to land too, then goes on up.
        stop = None
        for i in range(len(ds)):
            try:
                uids.append(ds[i].landed(targets[i][0], targets[i][1], False))
            except MemoryError:
                pass
            except BaseException as e:
                stop = e
        if stop is not None:
            raise stop
    for d in ds:
        try:
            d.box.merge_due()
        except MemoryError:  # (merge_due keeps the flash's failures to itself) retried at the next delivery
            pass
    return uids
