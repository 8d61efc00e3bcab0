"""Store.check and describe(): functions of a storecore.Store, on top of storescan.py's recovery and
scan (see store.py's theory of operation).

Only a check (the board at boot, admin.check, ppadmin's host check) and describe() use this code,
so it is apart from the recovery a lock may need: storecore._cold loads it for the call and, on
MicroPython, drops it (and storescan) when no call is inside them.
"""

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.storecore import _BOXES, _LOCKS, StoreError, _Box
from pocketpost.storeindex import read_index_state
from pocketpost.storemerge import _file_rec, _parse_msg_name
from pocketpost.storeopen import _clean_tmp
from pocketpost.storescan import _commit_ok, _set_aside, buckets, recover, report, scan

_IN_BUF = const(512)  # storecore's (a private copy)


def inspect(box, rep):
    """check(repair=False): what recover() would find and fix, changing nothing."""
    if not read_index_state(box):
        rep["index"] = "missing" if not compat.exists(box.p("index")) else "damaged"
    if compat.exists(box.p("commit")):
        # Its files may be half unlinked: comparing them with the index would mislead.
        rep["intent"] = "pending" if _commit_ok(box.p("commit")) else "torn"
        return
    index = rep["index"]
    scan(box, rep, False)
    if index != "ok":
        rep["index"] = index


def deep_read(box, rep, repair):
    """Read every message file to its end (a fixed buffer); a file that cannot be read is
    "unreadable" and, with repair, moved to damaged/. Returns how many were moved."""
    buf = bytearray(_IN_BUF)
    moved = 0
    for k in buckets(box):
        for name, is_dir, size in compat.listdir_stat(box.p("b%d" % k)):
            m = None if is_dir else _parse_msg_name(name, True)  # (any spelling: all are read)
            if m is None:
                continue
            try:
                f = open(box.p("b%d" % k, name), "rb")
                try:
                    n = 0
                    while True:
                        got = f.readinto(buf)
                        if not got:
                            break
                        n += got
                finally:
                    f.close()
                if n == size:
                    continue
            except OSError:
                pass
            rep["unreadable"] += 1
            if repair:
                if _set_aside(box, _file_rec(m, size), "unreadable", (box.p("b%d" % k), name)):  # where it is
                    moved += 1
    return moved


def _problems(rep):
    n = rep["bad_records"] + rep["missing"] + rep["damaged"] + rep["recovered"] + rep["renamed"]
    n += rep["duplicates"] + rep["unreadable"] + rep["temp"] + (rep["intent"] is not None) + ("broken" in rep)
    if not n and rep["index"] != "ok":
        n = 1
    return n


def describe(name, rep):
    """One line for a human about one mailbox's check report."""
    if rep.get("in_use"):
        return "mailbox %s: in use by a session, not checked" % name
    if "error" in rep:
        return "mailbox %s: check failed: %s" % (name, rep["error"])
    out = ["%d messages" % rep.get("messages", 0), "index %s" % rep["index"]]
    for k in ("bad_records", "missing", "damaged", "unreadable", "recovered", "renamed", "duplicates", "temp"):
        if rep[k]:
            out.append("%d %s" % (rep[k], k.replace("_", " ")))
    if rep["intent"]:
        out.append("deletion commit %s" % rep["intent"])
    if "broken" in rep:
        out.append("a bucket directory unreadable")
    return "mailbox %s: %s" % (name, ", ".join(out))


def check(store, repair, deep, names):
    """Store.check's body (what it returns and does: its docstring)."""
    out = {}
    problems = 0
    for name in store.mailboxes() if names is None else names:
        path = store._path(name)
        box = _BOXES.get(path)
        rep = report()
        out[name] = rep
        if not compat.isdir(path):
            rep["error"] = "no such mailbox"
            problems += 1
            continue
        if path in _LOCKS or (box is not None and box.busy):
            rep["in_use"] = True
            continue
        tmp = compat.join(path, "tmp")
        moved = 0
        try:
            if repair:
                rep["temp"] = _clean_tmp(tmp)
                if box is None:
                    box = _Box(path)
                    _BOXES[path] = box
                box.loaded = False
                if deep:
                    moved = deep_read(box, rep, True)
                recover(box, rep)
                rep["missing"] = max(0, rep["missing"] - moved)  # counted as unreadable
            else:
                rep["temp"] = len(compat.listdir(tmp)) if compat.isdir(tmp) else 0
                scratch = _Box(path)  # RAM state of the real box stays as it is
                inspect(scratch, rep)
                if deep and rep["intent"] is None:
                    deep_read(scratch, rep, False)
                box = scratch
        except (OSError, StoreError) as e:
            rep["error"] = str(e)
            problems += 1
            continue
        if repair or "messages" not in rep:
            rep["messages"] = box.idx_count + box.unindexed
        problems += _problems(rep)
    return {"mailboxes": out, "problems": problems}
