"""The store's recovery: a deletion commit's intent log rolled forward or discarded, the scan of
the files against the index (every valid record salvaged, damaged files set aside, the index
rewritten from the files, the temp files of deliveries a crash ended removed: orphans), the
format-1 upgrade. Functions of a storecore._Box.

Runs only when the first lock or delivery of a mailbox after boot finds something to repair
(storemerge.load, which loads it then), at a lock that found damage and under Store.check
(storecheck.py), so storecore imports it only then (storecore._cold) and, on MicroPython, drops it
when no call is inside it (see store.py's theory of operation).
Nothing outside a call refers to anything here: the exceptions and the RAM state (_Box, _BOXES,
_LOCKS) live in storecore.py, reports are plain dicts, and the generators made here are closed
before the call returns.
"""

import struct

from pocketpost import compat, log
from pocketpost.compat import const
from pocketpost.storecore import BUCKET, StoreError, _msg_name, _remove
from pocketpost.storeindex import _iter_recs, _lsize, _unpack, iter_index, read_index_state, write_index
from pocketpost.storemerge import _next, buckets, loaded
from pocketpost.storemerge import _file_rec, _new_epoch, _parse_msg_name, scan_bucket

# storeindex.py's private constants (const() folds them at compile time: they are not module
# attributes on MicroPython); host_tests/dual/test_store.py checks they agree.
_REC = const(24)
_RECS_PER_READ = const(32)
_FMT = "<6I"
_MAGIC_INDEX = const(0x32585050)  # b'PPX2'
_MAGIC_COMMIT = const(0x32435050)  # b'PPC2'
_OLD_MAGIC_INDEX = b"PPX1"
_OLD_MAGIC_COMMIT = const(0x31435050)  # b'PPC1'
_MASK = const(0xFFFFFFFF)
_SIZE = const(0x3FFFFFFF)
_DAMAGED = "damaged"  # in a mailbox: message files set aside by a scan, kept for export/inspection
_ASIDE_COPIES = const(9)  # files of one name damaged/ takes (the first, then .2 ... .9)
_DUPS = const(128)  # second files of a seq a walk holds per bucket (BUCKET: one per seq; the old bug's are rare)
# Listings of one bucket a scan makes to move the files of other buckets' seqs out of it, _DUPS
# names per listing (a whole restore put in one bucket: 1024 files); more are left with the
# index as it is, for the next lock (see scan).
_REHOME_PASSES = const(8)


def recover(box, rep=None):
    """Bring flash to a consistent state and load RAM state. Caller holds exclusivity.
    rep: a report() to fill in (Store.check), else one is made and dropped."""
    if rep is None:
        rep = report()
    index_ok = read_index_state(box)
    if not index_ok:
        _say_index_bad(box)
    intent = box.p("commit")
    if compat.exists(intent):
        if not _commit_ok(intent):
            _upgrade_intent(box)
        if _commit_ok(intent):
            rep["intent"] = "replayed"
            try:
                from pocketpost import storesession  # the roll-forward is the session's

                storesession.apply_deletions(box, index_ok)
                index_ok = read_index_state(box)
            except (OSError, StoreError) as e:
                # Whatever stops the roll-forward (an unreadable index or log, a damaged
                # directory), the files are the truth: rebuild from them below, never raise
                # here again at every lock and every delivery. Only a full flash is final.
                if isinstance(e, OSError) and compat.errno_of(e) == compat.ENOSPC:
                    raise
                log.warning("store %s: deletion commit not replayed (%s): index rebuilt from the files",
                            box.path, e)
                index_ok = False
                rep["intent"] = "not replayed"
        else:
            rep["intent"] = "discarded"
            log.info("store %s: incomplete deletion commit discarded (nothing deleted)", box.path)
        _remove(intent)
    _remove(box.p("index.new"))
    _remove(box.p("commit.new"))
    moved = 0
    for r in box.unreadable:  # the scan then finds their records without a file
        # (Not moved, damaged/ full of its name: it stays indexed, neither missing nor unreadable.)
        if compat.exists(box.msg_path(r[0], r[1], r[2], r[3], r[4])) and _set_aside(box, r,
                                                                                    "unreadable by a session"):
            moved += 1
    box.unreadable = ()  # (no list held until the next report: _Box.unreadable)
    rep["unreadable"] += moved
    # The files against the index (one listing of the buckets): a damaged index is
    # rewritten from them, a message whose file is gone or has another size leaves it.
    scan(box, rep, True, not index_ok)
    rep["missing"] = max(0, rep["missing"] - moved)  # counted as unreadable
    box.merge()
    if rep["top"] >= max(box.floor, box.last_seq + 1) and "retry" not in rep:
        # A file at or above the next seq that merge()'s walk of consecutive buckets did not
        # reach (a restore beyond a gap of buckets whose index append failed): rewrite the
        # index from the files, which indexes it and puts the floor above it. Otherwise it
        # stays invisible and its seq is handed out again. (Not when a file was not moved to
        # its bucket: the index is left for the next lock's recovery, see scan.)
        scan(box, report(), True, True)
        rep["index"] = "rebuilt"
    loaded(box, "retry" in rep)  # a same-seq file not renumbered yet: the next lock scans again


def _upgrade_intent(box):
    """An intent log of format 1 (b'PPC1', written by an older version just before it
    stopped), complete and valid by that format's check, is rewritten in format 2
    (commit.new, then renamed over commit): its deletion was promised, so it is carried out."""
    path = box.p("commit")
    try:
        f = open(path, "rb")
    except OSError:
        return
    try:
        size = f.seek(0, 2)
        f.seek(0)
        h = _old_unpack(f.read(_REC))
        if h is None or h[0] != _OLD_MAGIC_COMMIT or size != (h[1] + 1) * _REC:
            return
        from pocketpost import storesession

        storesession.write_intent(box, _old_records(f, h[1]), h[1], "commit.new")
    except (OSError, StoreError):
        _remove(box.p("commit.new"))
        return
    finally:
        f.close()
    compat.rename(box.p("commit.new"), path)
    log.info("store %s: deletion commit of an older format carried over", box.path)


def _say_index_bad(box):
    try:
        f = open(box.p("index"), "rb")
    except OSError:
        log.warning("store %s: index missing: rebuilt from the message files", box.path)
        return
    try:
        old = f.read(4) == _OLD_MAGIC_INDEX
    except OSError:
        old = False
    finally:
        f.close()
    if old:
        log.info("store %s: index of an older format: rebuilt from the message files (UIDs kept)", box.path)
    else:
        log.warning("store %s: index damaged: rebuilt from the message files", box.path)


def rebuild(box):
    """Index lost or damaged: rewrite it from one listing of the buckets (see scan)."""
    scan(box, report(), True, True)


def scan(box, rep, repair=True, force=False):
    """Compare the index with the message files, bucket by bucket, and count what differs in
    rep (see report). The files are the truth: a record that fails its check is replaced by
    what its file's name says (UIDs are in the names, so they do not change); a record
    whose file is gone is dropped ("missing"); a file shorter or longer than its record
    ("damaged") is moved to damaged/ (kept for export and inspection); a file below the
    index's last record with no valid record is indexed again ("recovered"; so is a file in a
    bucket its seq does not belong to or named in another spelling than _msg_name's, which
    repair first moves to its path: _rehome). With repair,
    if anything differed (or force), the index is rewritten to match: index.new, renamed
    over index (files above the last record are indexed with the rest; without a rewrite
    they are left to merge()). Costs one listing of every bucket (one bucket in RAM at a
    time) and one read of the index; True if rewritten."""
    hdr = _read_header(box.p("index"))
    # Below the header's floor every file was indexed once (a commit or rebuild set it).
    hfloor = hdr[3] if hdr is not None else 0
    _walk(box, rep, False, hfloor, None, repair)
    bad = rep["bad_records"] + rep["missing"] + rep["damaged"] + rep["recovered"] + rep["renamed"]
    bad += rep["duplicates"]
    if hdr is None:
        rep["index"] = "missing" if not compat.exists(box.p("index")) else "damaged"
    elif bad:
        rep["index"] = "damaged"
    if rep.get("broken", 0) > box.floor:
        bad += 1  # the floor moves past the broken bucket: new mail goes to a new one
    if not repair or not (force or bad or hdr is None):
        return False
    if ("overflow" in rep or "retry" in rep) and hdr is not None and not force:
        # More second files in a bucket than a walk holds: which one a record names is not
        # known for those, so a rewrite could give a client's UID to another message. The
        # index is left as it is (the index's messages stay served, no second file renumbered;
        # the first walk has moved files of other buckets or spellings to their paths already,
        # _rehome, where a record finds its own), reported. (A damaged index, force, is
        # rewritten anyway: a lock must never fail for good.) So is it when a file was not
        # moved to its bucket (_rehome: retry; or past _REHOME_PASSES listings): a record's
        # file may be that one, and a rewrite would drop it, or set aside another of its seq.
        if "retry" in rep:
            return False
        log.error("store %s: more than %d files with a seq already taken in a bucket: index left as it is, "
                  "%d such files not served (export the mailbox)", box.path, _DUPS, rep["duplicates"])
        return False
    for k in ("bad_records", "missing", "damaged", "recovered", "renamed", "unindexed", "duplicates"):
        rep[k] = 0
    rep.pop("retry", None)
    rep.pop("overflow", None)
    ks = buckets(box)
    floor = box.floor
    if hdr is None:
        # Seqs restart above every bucket ever listed; the new epoch keeps old UIDs unique
        # even if the highest messages were deleted before the index was lost.
        epoch = _new_epoch()
        floor = max(floor, (ks[-1] + 1) * BUCKET if ks else 1)
    else:
        epoch = hdr[2]
        floor = max(floor, hdr[3])
    new = box.p("index.new")
    # A second file of a seq is renumbered (epoch, next seq): where new mail would go, above
    # every file the walk above saw and every seq handed out (the floor), as a delivery's UID.
    start = max(floor, rep["top"] + 1, rep.get("broken", 0))
    it = _walk(box, rep, True, hfloor, [epoch, start, start])
    try:
        write_index(box, new, it, epoch, max(floor, rep["top"] + 1, rep.get("broken", 0)))
    finally:
        it.close()
    compat.rename(new, box.p("index"))
    compat.sync_dir(box.path)
    if not read_index_state(box):
        raise StoreError("index rebuild failed")
    rep["index"] = "rebuilt"
    log.warning("store %s: index rewritten from the files (%d bad records, %d missing, %d damaged, %d recovered, "
                "%d duplicates)", box.path, rep["bad_records"], rep["missing"], rep["damaged"], rep["recovered"],
                rep["duplicates"])
    return True


def _walk(box, rep, act, hfloor, fresh=None, move=False):
    """The scan itself (a generator when act, else run to its end here). Yields the records
    of the index that matches the files, in seq order; with act, moves damaged files aside and
    renumbers a second file of a seq to fresh ([epoch, next seq, first seq]: above every file
    the walk lists), yielding the renumbered files last. With move, a file not at its seq's path
    (another bucket, another spelling) is moved there (_rehome; scan's first walk, before the
    rewrite's)."""
    g = _walk_gen(box, rep, act, hfloor, fresh, move)
    if act:
        return g
    for _ in g:
        pass
    return None


def _walk_gen(box, rep, act, hfloor, fresh, move):
    # Fixed RAM for any mailbox: one slot per seq of a bucket, reused for every bucket. The
    # listing fills the slots (names parsed one at a time), the bucket's records are then
    # matched against them, and the slots are read out in seq order.
    slots = [None] * BUCKET  # file tuple (epoch, seq, arrival, size field, LIST size) by seq % BUCKET
    claimed = bytearray(BUCKET)  # 1: a valid record matched the slot's file
    named = bytearray(BUCKET)  # 1: a valid record has the slot's seq
    old = _iter_salvage(box.p("index"), rep)
    try:
        bad = rep["bad_records"]
        r = _next(old)
        # The running total of the record just before r in the index (0 before the first),
        # None when a bad record lay between (salvage skipped it).
        prev = 0 if rep["bad_records"] == bad else None
        kept = 0
        top = 0  # highest seq of any record read or file seen
        last_old = 0  # highest seq of a valid record of the old index
        for k in buckets(box):
            lo = k * BUCKET
            hi = lo + BUCKET
            # Files of a seq a slot holds already (a store from before the fix of a UID-reuse
            # bug may hold two): one keeps the seq, the others are renumbered below.
            dups = []
            away = []  # with move: files of another bucket's seq, moved once the listing is done
            more = False  # more of them than `away` holds (_rehome_all lists the bucket again)
            temps = None  # temp files of deliveries (store.Delivery): orphans counted, removed with move
            try:
                for name, size in compat.iter_files(box.p("b%d" % k)):
                    m = _parse_msg_name(name)
                    if m is None or not lo <= m[1] < hi:
                        # Not at its seq's path: in another bucket, or named in another spelling
                        # (copied by hand, a restore, a move cut short): counted (so the index
                        # is rewritten) and moved to its path, where the rewrite's walk indexes
                        # it; its seq kept from new mail.
                        m = m or _parse_msg_name(name, True)
                        if m is None and temp_name(name) and fresh is None:
                            temps = temps or []
                            if len(temps) < _DUPS:  # (more: the next recovery's)
                                temps.append(name)
                        if m is not None:
                            rep["recovered"] += 1
                            top = max(top, m[1])
                            if move and len(away) < _DUPS:
                                away.append(name)
                            else:
                                more = move
                        continue
                    if fresh is not None and m[1] >= fresh[2]:
                        continue  # (renumbered by this walk, yielded last)
                    if slots[m[1] - lo] is None:
                        slots[m[1] - lo] = _file_rec(m, size)
                    elif len(dups) < _DUPS:
                        dups.append(_file_rec(m, size))
                    else:  # counted; the index is then left as it is (see scan)
                        rep["duplicates"] += 1
                        rep["overflow"] = 1
            except OSError as e:
                # A bucket directory littlefs cannot read: its messages are lost (their
                # records count as missing) and no new mail may go into it.
                for i in range(BUCKET):
                    slots[i] = None
                dups = []
                rep["broken"] = max(rep.get("broken", 0), hi)
                if act:
                    log.warning("store %s: bucket b%d unreadable (%r): its messages are lost", box.path, k, e)
            if temps:
                rep["temp"] += orphans(box, k, temps, move)
            if away:
                _rehome_all(box, k, away, more, rep)
            while r is not None and r[1] < hi:
                top = max(top, r[1])
                last_old = r[1]
                i = r[1] - lo
                if i >= 0 and dups:
                    named[i] = 1
                    _keep(slots, dups, i, r[1], r)
                t = slots[i] if i >= 0 else None
                if t is None:
                    rep["missing"] += 1
                    if act:
                        log.warning("store %s: message %08x.%d missing (%d octets)", box.path, r[0], r[1],
                                    r[3] & _SIZE)
                elif t[3] & _SIZE != r[3] & _SIZE:
                    slots[i] = None
                    rep["damaged"] += 1
                    if act:
                        _set_aside(box, t, "size %d, index says %d" % (t[3] & _SIZE, r[3] & _SIZE))
                else:
                    # The LIST size a stuffed record gives depends on its neighbour's running
                    # total: checked when that neighbour was valid (else the rewrite fixes it).
                    lz = t[4] if prev is None else _lsize(r, prev)
                    if t[0] != r[0] or t[2] != r[2] or t[3] != r[3] or lz != t[4]:
                        rep["renamed"] += 1  # the file's name disagrees with its record: the name wins
                    claimed[i] = 1
                prev = r[4]
                bad = rep["bad_records"]
                r = _next(old)
                if rep["bad_records"] != bad:
                    prev = None
            for j in range(len(dups)):
                t = dups[j]
                if not named[t[1] - lo]:
                    _keep(slots, dups, t[1] - lo, t[1], None)
            if dups:
                for i in range(BUCKET):
                    named[i] = 0
            for t in dups:  # each a file no client has seen under its seq (see _keep)
                rep["duplicates"] += 1
                if act:
                    _renumber(box, t, fresh, slots[t[1] - lo], rep)
            dups = None
            for i in range(BUCKET):
                t = slots[i]
                if t is None:
                    continue
                slots[i] = None
                if not claimed[i]:
                    top = max(top, t[1])
                    if t[4] < 0:  # shorter than the dots its name says were added
                        rep["damaged"] += 1
                        if act:
                            _set_aside(box, t, "size %d below its added dots" % (t[3] & _SIZE))
                        continue
                    if t[1] <= last_old or r is not None or t[1] < hfloor:
                        rep["recovered"] += 1
                    else:
                        rep["unindexed"] += 1
                claimed[i] = 0
                kept += 1
                if act:
                    yield t
        if act and fresh is not None and fresh[1] > fresh[2]:
            # The renumbered files, above every other (a rename that failed left a gap; one
            # that raised after it happened left its file: indexed).
            for k in range(fresh[2] // BUCKET, (fresh[1] - 1) // BUCKET + 1):
                try:
                    got = [_file_rec(m, size) for m, size in scan_bucket(box, k, fresh[2] - 1)]
                except OSError:
                    continue
                got.sort(key=lambda t: t[1])
                for t in got:
                    if t[1] < fresh[1]:
                        top = max(top, t[1])
                        kept += 1
                        rep["unindexed"] += 1
                        yield t
        while r is not None:  # records of buckets that are gone
            top = max(top, r[1])
            rep["missing"] += 1
            if act:
                log.warning("store %s: message %08x.%d missing (%d octets)", box.path, r[0], r[1],
                            r[3] & _SIZE)
            r = _next(old)
        rep["top"] = top
        rep["messages"] = kept
    finally:
        old.close()


def _keep(slots, dups, i, seq, r):
    """Which file of slot i's seq keeps it: the one index record r names (epoch and arrival:
    a client may have seen it under this UID, and its record has its size), else (no record,
    or one naming neither) the older arrival (the first delivered: the one the index named
    when the bug handed the seq out again; the name breaks a tie, so every walk picks the
    same). The keeper goes into the slot, the others stay in dups."""
    for j in range(len(dups)):
        b = dups[j]
        a = slots[i]
        if b[1] != seq or a is None:
            continue
        if r is not None and a[0] == r[0] and a[2] == r[2]:
            continue
        if (r is not None and b[0] == r[0] and b[2] == r[2]) or (b[2], b[0], b[3]) < (a[2], a[0], a[3]):
            slots[i] = b
            dups[j] = a


def _renumber(box, t, fresh, keeper, rep):
    """Rename the second file t of a seq to the next fresh seq (fresh: [epoch, seq, ...]), in
    that seq's bucket: a new UID, indexed by the rewrite (_walk_gen yields it last). The fresh seq is used up before
    the rename: a rename that raised after it happened (littlefs: a move across directories
    is two commits) never shares it. A power cut before the rename leaves both files for the
    next recovery, one after it a file above the index, which merge() indexes: each runs once."""
    if t[4] < 0:  # shorter than its added dots: damaged anyway
        rep["damaged"] += 1
        _set_aside(box, t, "size %d below its added dots" % (t[3] & _SIZE))
        return
    seq = fresh[1]
    fresh[1] = seq + 1
    d = box.bucket_dir(seq)
    try:
        compat.makedirs(d)
        compat.rename(compat.join(box.bucket_dir(t[1]), _msg_name(t[0], t[1], t[2], t[3], t[4])),
                      compat.join(d, _msg_name(fresh[0], seq, t[2], t[3], t[4])))
    except OSError as e:
        rep["retry"] = 1
        log.warning("store %s: message %08x.%d (arrival %d) has the same seq as another, not renumbered (%r)",
                    box.path, t[0], t[1], t[2], e)
        return
    log.warning("store %s: message %08x.%d (arrival %d) has the same seq as another (%s): renumbered %08x.%d",
                box.path, t[0], t[1], t[2], "arrival %d kept it" % keeper[2] if keeper else "set aside",
                fresh[0], seq)


def temp_name(name):
    """True for a delivery's temp file name: "<epoch>.<seq>.t<n>.<ticks>" (store.Delivery), or
    "t<n>.<ticks>" (older versions'): one "t", first or after a dot, hex digits and dots before
    it, digits and dots after it. A message's name has no "t"."""
    i = name.find("t")
    return (i == 0 or i > 0 and name[i - 1] == "." and not name[:i].strip("0123456789abcdef.")) and (
        not name[i + 1 :].strip("0123456789."))


def orphans(box, k, names, remove):
    """Of the files `names` found in bucket k, the temp files (temp_name: named by
    store.Delivery, which writes a message into its bucket before the rename that names it):
    how many are left by deliveries that are over (a power cut, a crash), removed if `remove`.
    None is, when a delivery of this process into the mailbox is under way (it may be theirs) or
    a group commit's intent is on flash (<root>/group names its copies' temp files: the next
    Store() renames them). A first load (storemerge._sound) and a scan list every bucket, so
    they find them wherever a delivery put them."""
    if box.busy or compat.exists(compat.join(box.path.rsplit("/", 1)[0], "group")):
        return 0
    n = 0
    for name in names:
        if not temp_name(name):
            continue  # (not a temp name: left alone, as any file that is not a message)
        n += 1
        if remove:
            try:
                _remove(box.p("b%d" % k, name))
            except OSError:  # (left for the next recovery)
                n -= 1
    return n


def _rehome_all(box, k, away, more, rep):
    """Move the files of other buckets' seqs found in bucket k (away: up to _DUPS names; more:
    the listing found others) to their paths (_rehome). While there were more, the bucket is
    listed again for the next _DUPS (each pass moves files out of it, so the listings end; at
    most _REHOME_PASSES): every file is home before the rewrite's walk, which indexes only
    files at their paths (so the first session lists every message). Any left unmoved: retry
    (the index left as it is, see scan)."""
    lo = k * BUCKET
    n = 1
    while True:
        moved = 0
        for name in away:
            moved += _rehome(box, k, name, rep)
        if not more or not moved or n == _REHOME_PASSES:
            break
        n += 1
        away.clear()
        more = False
        try:
            for name, _ in compat.iter_files(box.p("b%d" % k)):  # (to its end: the listing is closed)
                m = _parse_msg_name(name)
                if m is None and _parse_msg_name(name, True) is None or m is not None and lo <= m[1] < lo + BUCKET:
                    continue  # (not a message, or at its path)
                if len(away) < _DUPS:
                    away.append(name)
                else:
                    more = True
        except OSError:  # (the bucket unreadable now: the next lock's)
            more = True
            break
    if more:
        rep["retry"] = 1


def _rehome(box, k, name, rep):
    """Move message file `name`, found in bucket k, to its path: its seq's bucket, under the name
    _msg_name spells (its UID kept; a second file of that seq there is renumbered by the
    rewrite's walk, as any). A file of that name there already: this is a second copy of it,
    set aside to damaged/ as _set_aside does (_aside_path: never over a file set aside before;
    with _ASIDE_COPIES there, left where it is). Never removed. One rename: a power cut leaves
    it in one place or the other (littlefs finishes a move cut short), and the next recovery
    moves it or finds it home. Returns 1 if it moved (home or to damaged/), else 0."""
    m = _parse_msg_name(name, True)
    t = _file_rec(m, 0)  # (its dots are then minus its LIST size: _msg_name spells them back)
    to = _msg_name(t[0], t[1], t[2], t[3], t[4])
    src = box.p("b%d" % k)
    d = box.bucket_dir(m[1])
    dst = compat.join(d, to)
    what = "left there (a copy in its bucket, damaged/ full of its name)"
    moved = 0
    try:
        # (`to` there but not listed: a filesystem that ignores case found this very file.)
        if compat.exists(dst) and (d != src or _listed(d, to)):
            dst = _aside_path(box, to)  # a copy of that file
        else:
            compat.makedirs(d)
        if dst is not None:
            compat.rename(compat.join(src, name), dst)
            what = "moved to " + dst
            moved = 1
    except OSError as e:  # left there, and the index as it is, for the next lock (see scan)
        rep["retry"] = 1
        what = "not moved (%r)" % (e,)
    log.warning("store %s: message file b%d/%s is not at its path: %s", box.path, k, name, what)
    return moved


def _listed(d, name):
    """True if directory d lists a file of exactly this name."""
    found = False
    for n, _ in compat.iter_files(d):  # (to its end: the listing is closed)
        found = found or n == name
    return found


def _set_aside(box, t, why, at=None):
    """Move a damaged message file to damaged/ (same name: the UID stays readable; a name an
    earlier one took gets ".2" ... so no set-aside file is ever renamed over). at: (its
    directory, its name) when it may not be at its seq's path (storecheck.deep_read's listing).
    Returns True if it moved."""
    d, name = at or (box.bucket_dir(t[1]), _msg_name(t[0], t[1], t[2], t[3], t[4]))
    try:
        dst = _aside_path(box, name)
        if dst is None:
            raise OSError("%d copies in %s/ already" % (_ASIDE_COPIES, _DAMAGED))
        compat.rename(compat.join(d, name), dst)
    except OSError as e:  # left in place: the next scan indexes it at the size it has
        log.warning("store %s: message %08x.%d damaged (%s), not moved: %r", box.path, t[0], t[1], why, e)
        return False
    log.warning("store %s: message %08x.%d damaged (%s): moved to %s", box.path, t[0], t[1], why, dst)
    return True


def _aside_path(box, name):
    """Where a file named `name` goes in damaged/: that name, or the first of name.2 ...
    name.<_ASIDE_COPIES> not taken (a file set aside is never renamed over); None if all are."""
    compat.makedirs(box.p(_DAMAGED))
    dst = box.p(_DAMAGED, name)
    n = 1
    while compat.exists(dst):
        n += 1
        if n > _ASIDE_COPIES:
            return None
        dst = box.p(_DAMAGED, "%s.%d" % (name, n))
    return dst


def iter_kept(box, intent):
    """Index records whose seq is not in the intent log: a merge of two streams that are both
    in ascending seq order (a log is written in index order; _commit_ok checks it)."""
    dead = _iter_recs(intent, "intent log corrupt")
    idx = iter_index(box)
    try:
        d = _next(dead)
        for r in idx:
            while d is not None and d[1] < r[1]:
                d = _next(dead)
            if d is not None and d[1] == r[1]:
                continue
            yield r
    finally:
        idx.close()
        dead.close()


def report():
    """What a scan or check found in one mailbox (counts), filled in by _Box.scan/check."""
    return {"index": "ok", "bad_records": 0, "missing": 0, "damaged": 0, "recovered": 0, "renamed": 0,
            "unindexed": 0, "unreadable": 0, "temp": 0, "intent": None, "top": 0, "duplicates": 0}


def _old_unpack(b):
    """A format-1 record (the check was an FNV-style mix of the five fields), or None."""
    if len(b) != _REC:
        return None
    r = struct.unpack(_FMT, b)
    h = 0x811C9DC5
    for v in r[:5]:
        h = ((h ^ v) * 0x01000193) & _MASK
        h ^= h >> 15
    return r if h == r[5] else None


def _old_records(f, n):
    """The n records of a format-1 intent log (f after its header), checked, ascending seq;
    raises StoreError at the first that is not (the log is then left as it was: discarded)."""
    last = 0
    for _ in range(n):
        r = _old_unpack(f.read(_REC))
        if r is None or r[1] < last:
            raise StoreError("old intent log damaged")
        last = r[1]
        yield r


def _read_header(path):
    """The header record of an index if it is there and valid, else None."""
    buf = bytearray(_REC)
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        if f.readinto(buf) != _REC:
            return None
    except OSError:
        return None
    finally:
        f.close()
    h = _unpack(buf, 0)
    if h is None or h[0] != _MAGIC_INDEX or h[1] != 1:
        return None
    return h


def _iter_salvage(path, rep):
    """Yield the valid records of an index, in ascending seq, skipping (and counting in rep) the
    ones that fail their check, go backwards, or cannot be read. Never raises for damage."""
    buf = bytearray(_REC * _RECS_PER_READ)
    try:
        f = open(path, "rb")
    except OSError:
        return
    try:
        last = 0
        skip = _REC  # the header
        while True:
            try:
                n = f.readinto(buf)
            except OSError:
                rep["bad_records"] += 1
                break
            if not n:
                break
            if n % _REC:
                rep["bad_records"] += 1  # a torn tail
            for off in range(skip, n - n % _REC, _REC):
                r = _unpack(buf, off)
                if r is None or r[1] <= last:
                    rep["bad_records"] += 1
                    continue
                last = r[1]
                yield r
            skip = 0
    finally:
        f.close()


def _commit_ok(path):
    """True if the intent log at path is complete: a valid header whose count matches the file
    size, every record's check right, seqs in ascending order. Read a block at a time."""
    try:
        f = open(path, "rb")
    except OSError:
        return False
    try:
        size = f.seek(0, 2)
        if size < _REC or size % _REC:
            return False
        f.seek(0)
        buf = bytearray(_REC * _RECS_PER_READ)
        n = f.readinto(buf)
        h = _unpack(buf, 0) if n >= _REC else None
        if h is None or h[0] != _MAGIC_COMMIT or h[1] != size // _REC - 1:
            return False
        seen = 0
        last = 0
        off = _REC
        while n:
            for o in range(off, n - n % _REC, _REC):
                r = _unpack(buf, o)
                if r is None or r[1] < last:
                    return False
                last = r[1]
                seen += 1
            off = 0
            n = f.readinto(buf)
        return seen == h[1]
    finally:
        f.close()
