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
        k = len(ds)
        if k > 1:
            for d in ds:  # (its iterator is a heap object: a MemoryError here aborts them too)
                if d.limit >= 0 and d.exc_type is StoreFull:  # (a quota's limit stays as it is)
                    d.limit //= k  # k copies of one message share the free flash
        return ds
    except BaseException:
        for d in ds:  # (else each mailbox stayed busy for the process's life: never merged)
            d.abort()
        raise


def commit(store, group, told=None):
    """Make every delivery of `group` (begin's list) durable and visible, or none of them (see
    above). Returns the UIDs in the same order (one whose text found no heap left out). Raises
    (StoreError, or MemoryError before the commit point) only when nothing was stored. told: an
    object (the SMTP session) whose `stored` count is raised by one from the commit point on,
    whatever raises after it (a Ctrl-C): a 250 is owed then (smtpserver writes it)."""
    ds = group
    count = told.stored + 1 if told is not None else 0
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
        # with "unfinished group commit" until a restart. (A MemoryError in the sync after the
        # rename too, where the copies were aborted and no 250 said, the intent on flash naming
        # temp files gone: one whose removal failed was stored after all. A Ctrl-C is not
        # swallowed: the copies aborted, nothing stored, it goes on up.)
        landed = named and isinstance(e, Exception) and compat.exists(intent) and not compat.exists(pending)
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
        if told is not None:
            told.stored = count  # (set, not added to: the handler below sets it again)
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
        _land(ds, targets, uids)  # merges once all have landed
        for d in ds:
            try:
                d.box.merge_due()
            except MemoryError:  # (merge_due keeps the flash's failures to itself) retried at the next delivery
                pass
        return uids
    except BaseException as e:
        # Interrupted anyway (a Ctrl-C; a MemoryError in a line above: a range's or an iterator's
        # heap): each copy not yet landed lands here, then a Ctrl-C goes on up; after a
        # MemoryError the message is stored all the same (its 250).
        if told is not None:
            told.stored = count
        _land(ds, targets, uids)
        if not isinstance(e, MemoryError):
            raise
        return uids


def _land(ds, targets, uids):
    """The RAM state of each copy not yet landed, as Delivery.commit leaves it (Delivery.landed):
    its seq taken, whether its file is in place or still named by the intent. With no heap of its
    own (an int index, no range). Every copy lands even when one's UID text (or its place in uids)
    finds no heap: that UID is left out (the caller's reply and log line do without it); else the
    next ones stayed busy with their seq free to hand out again, under a UID a client had seen."""
    i = 0
    while i < len(ds):
        if ds[i].tmp is not None:
            try:
                uids.append(ds[i].landed(targets[i][0], targets[i][1], False))
            except MemoryError:
                # The same copy looked at again: landed (its tmp None: even a landed() cut short
                # makes it so), skipped; not yet (raised before the call ran), landed now
                continue
        i += 1
