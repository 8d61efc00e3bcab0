"""The store's opening (Store(), store.py's theory of operation), loaded for it and dropped after
(storecore._cold): the root made, a group commit cut short finished or forgotten (storerare.py),
the RAM state of idle mailboxes under the root forgotten (the flash may have changed since, e.g.
a remount in tests), and an older version's temp files of interrupted deliveries removed with
their tmp/ (_clean_tmp, which Store.check runs too; a delivery's temp file is in its bucket since,
removed at the mailbox's first load: storescan.orphans). Apart from storecore.py so that no role
keeps this code after its start; small, because its load comes on top of whatever the process
holds when it opens the store (a server: its configuration), and a first try with it in
storemerge.py (and the index code that imports) made that the listening server's peak
(bench_heap a +7 KiB).
"""

import os

from pocketpost import compat, log
from pocketpost.compat import const
from pocketpost.storecore import _BOXES, _LOCKS, _cold, _remove

# Listings of tmp/ when cleaning it: one, then one more after removals (see _clean_tmp).
_TMP_PASSES = const(3)


def open_store(store):
    """Store(): see the module docstring."""
    root = store.root
    compat.makedirs(root)
    # A group commit (groupcommit.py: one SMTP message into several mailboxes) cut short: finish
    # or forget it before the temp clean-up below (a committed group's files are still there).
    if compat.exists(compat.join(root, "group")) or compat.exists(compat.join(root, "group.new")):
        _cold("storerare", "finish_group", root)  # (a long name as a string: not an interned one)
    prefix = root + "/"
    for path in list(_BOXES):
        box = _BOXES[path]
        if path.startswith(prefix) and not box.busy and path not in _LOCKS:
            del _BOXES[path]
    for name in store.mailboxes():
        path = compat.join(root, name)
        box = _BOXES.get(path)
        if box is not None and box.busy:
            continue
        _clean_tmp(compat.join(path, "tmp"))


def _clean_tmp(tmp):
    """Remove every file in a mailbox's tmp/ (orphans of interrupted deliveries of an older
    version: deliveries write into their bucket since, store.Delivery; storescan.orphans
    removes those), then tmp/ itself (a littlefs directory holds two blocks); returns how many
    files. Listed again after a removal, up to _TMP_PASSES times: the first write after a mount
    is when littlefs finishes a move a power cut left half done, and an entry can show up (or go)
    only then; one more listing keeps it from waiting for the next boot."""
    removed = 0
    try:
        if not compat.isdir(tmp):
            return 0
        for _ in range(_TMP_PASSES):
            names = compat.listdir(tmp)
            if not names:
                break
            for fn in names:
                if _remove(compat.join(tmp, fn)):
                    removed += 1
        os.rmdir(tmp)
    except OSError as e:  # a damaged tmp/ must not keep the store from opening
        log.warning("store %s: temp files not removed: %r", tmp, e)
    return removed
