"""A commit interrupted after its rename, in Delivery.landed (the RAM state): no UID names two
messages, the message is visible at the next lock, and a crash's reconcile can find it.

landed() runs once the message file has its final name: it takes the seq (next_seq), counts the
message and marks it unindexed. A MemoryError or a Ctrl-C at one of its lines used to leave that
half made: the next delivery took the same seq (a second file of it: two messages under one
UID once a restart indexed them), and the message was not counted, so the next lock did not
show it and the fetch's reconcile of its pending entry fetched it again (a duplicate; CI saw it
in test_fetch_memoryerror's sample when the two deliveries fell in different seconds). Under
CPython, a trace raises at each line event of landed() in turn (not a `try:` line: CPython's NOP
ahead of the block, where nothing can raise on either runtime), in a plain commit and in a
group commit's first copy; then, in the same process (no restart), another message is delivered
and a client lists the mailbox, then lists it again after a restart: each message there once, the
UIDs distinct and the same ones naming the same bodies, no delivery left busy.
"""

import linecache
import os
import sys

import pytest
from pocketpost import groupcommit
from pocketpost import store as store_mod
from pocketpost.store import Delivery, Store
from test_store_dupseq import _deliver, _listing  # (_listing -> ({uid: body}, the UIDs in order))

LANDED = Delivery.landed.__code__
BEFORE = [b"one\r\n", b"two\r\n"]  # delivered before the cut: the mailbox loaded, its seq past 1


class Cut:
    """sys.settrace's function: raises `exc` at the line event of `line` in landed() (line None:
    records the lines landed() runs)."""

    def __init__(self, line, exc=MemoryError):
        self.line, self.exc, self.seen, self.fired = line, exc, [], False

    def call(self, frame, event, arg):
        return self.local if frame.f_code is LANDED else None

    def local(self, frame, event, arg):
        if event == "line":
            self.seen.append(frame.f_lineno)
            if frame.f_lineno == self.line and not self.fired:
                self.fired = True
                raise self.exc("injected")
        return self.local


def _cut_commit(st, line, exc, cut=None):
    """Message A committed into x with landed() cut at `line`; the caller's clean-up after an
    exception (clientget's, as Delivery.commit's callers do: abort())."""
    d = st.begin("x", 1000)
    d.write(b"message A\r\n")
    cut = cut or Cut(line, exc)
    sys.settrace(cut.call)
    try:
        d.commit()
    except exc:
        d.abort()
    finally:
        sys.settrace(None)
    return cut.fired


def _cut_group(st, line, exc, cut=None):
    """Message A committed into x and y by a group commit, landed() cut at `line` in x's copy
    (groupcommit.commit keeps going: the sender is told 250)."""
    ds = groupcommit.begin(st, ["x", "y"], 1000)
    for d in ds:
        d.write(b"message A\r\n")
    cut = cut or Cut(line, exc)
    sys.settrace(cut.call)
    try:
        groupcommit.commit(st, ds)
    except exc:
        for d in ds:
            d.abort()
    finally:
        sys.settrace(None)
    return cut.fired


def _lines(root, how):
    """The lines landed() runs in this kind of commit (of x's copy), less `try:` lines."""
    store_mod.reboot()
    st = Store(root)
    _deliver(st, "x", b"one\r\n", 500)
    rec = Cut(None)
    (_cut_commit if how == "commit" else _cut_group)(st, None, MemoryError, rec)
    store_mod.reboot()
    if how == "group":
        rec.seen = rec.seen[: rec.seen.index(rec.seen[0], 1)]  # (x's copy: up to y's first line)
    lines = sorted(set(ln for ln in rec.seen if linecache.getline(LANDED.co_filename, ln).strip() != "try:"))
    assert len(lines) >= 8, lines  # (its state lines and the UID's text)
    return lines


@pytest.mark.parametrize("how", ["commit", "group"])
@pytest.mark.parametrize("exc", [MemoryError, KeyboardInterrupt])
def test_landed_cut_at_each_line(tmp_path, how, exc):
    boxes = ["x"] if how == "commit" else ["x", "y"]
    for line in _lines(str(tmp_path / "record"), how):
        what = "%s, %s at store.py:%d %r" % (how, exc.__name__, line, linecache.getline(LANDED.co_filename, line).strip())
        store_mod.reboot()
        st = Store(str(tmp_path / ("s%d" % line)))
        for name in boxes:  # two messages before: the mailbox loaded, its seq past 1
            for i, body in enumerate(BEFORE):
                _deliver(st, name, body, 500 + i)
            _listing(st, name)  # (a lock: they are merged into the index, none left unindexed)
            assert st.box(name).unindexed == 0, name
        fired = (_cut_commit if how == "commit" else _cut_group)(st, line, exc)
        assert fired, what
        afters = {}
        for name in boxes:
            # The next lock (a fetch's reconcile looks for A there; a client lists it under a UID)
            seen, uids = _listing(st, name)
            count = len(uids)
            assert count == len(seen) and sorted(seen.values()) == sorted(BEFORE + [b"message A\r\n"]), (what, name, seen)
            _deliver(st, name, b"message B\r\n", 2000)  # the same process: no restart in between
            assert st.box(name).busy == 0, (what, name, "a delivery left busy: merges stop for good")
            after, uids = _listing(st, name)
            count = len(uids)
            assert count == len(after) and sorted(after.values()) == sorted(BEFORE + [b"message A\r\n", b"message B\r\n"]), (what, name, after)
            assert all(after.get(uid) == body for uid, body in seen.items()), (what, name, "a UID names another message", seen, after)
            afters[name] = after
        store_mod.reboot()
        for name in boxes:
            again, _ = _listing(Store(st.root), name)
            assert again == afters[name], (what, name, "after a restart: the UIDs name other messages", afters[name], again)


def test_a_ctrl_c_right_after_a_groups_commit_point_is_not_swallowed(tmp_path, monkeypatch):
    """A KeyboardInterrupt in the sync after the intent's rename (the commit point) goes on up,
    the copies aborted: nothing stored, in either mailbox (the intent names temp files gone; the
    next group commit finishes it). A MemoryError there is committed instead (the intent decides:
    test_smtp_memoryerror)."""
    from pocketpost import compat
    from pocketpost import groupcommit as gc_mod

    store_mod.reboot()
    st = Store(str(tmp_path / "s"))
    real = compat.sync_dir

    def cut(path):
        if path == st.root:
            raise KeyboardInterrupt
        return real(path)

    ds = groupcommit.begin(st, ["x", "y"], 1000)
    for d in ds:
        d.write(b"message A\r\n")
    monkeypatch.setattr(gc_mod.compat, "sync_dir", cut)
    with pytest.raises(KeyboardInterrupt):
        groupcommit.commit(st, ds)
    monkeypatch.setattr(gc_mod.compat, "sync_dir", real)
    for name in ("x", "y"):
        _deliver(st, name, b"message B\r\n", 2000)
        seen, uids = _listing(st, name)
        assert sorted(seen.values()) == [b"message B\r\n"] and len(uids) == 1, (name, seen)
        assert st.box(name).busy == 0, name
