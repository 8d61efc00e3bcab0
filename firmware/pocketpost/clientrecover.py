"""The client's recovery after a crash (client.fetch_account and client.settle, when the UIDL
state holds a pending entry or current slot files; see uidstate.py): did the store commit of each
of those messages happen? Cold code: loaded only then, and dropped after it on MicroPython."""

import binascii
import hashlib

from pocketpost import log, uidcompact
from pocketpost.client import _text
from pocketpost.compat import const
from pocketpost.uidstate import StateError

# Bytes read per step while hashing the stored copy (one small buffer, once per recovery).
_READ = const(512)
_REC = const(11)  # uidstate's record size, slot count and longest line (private copies)
_SLOTS = const(8)
_MAX_STATE_LINE = const(220)


def _holds(mb, local, size, digest):
    """Does the locked mailbox mb hold message `local` (a store UID) with this size and SHA-1?
    Reads the index and hashes that one message only."""
    for i in range(mb.count - 1, -1, -1):  # it is among the newest
        if mb.uid(i) != local:
            continue
        if mb.size(i) != size:
            return False
        h = hashlib.sha1()
        buf = bytearray(_READ)
        f = mb.open(i)
        try:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(memoryview(buf)[:n])
        finally:
            f.close()
        return binascii.hexlify(h.digest()).decode() == digest  # (Delivery.digest()'s form)
    return False


def pendings(st):
    """The pending entries a cut left (tuples as st.pending): the journal's, then each current
    slot file's (uidstate.py's pending paragraph): slot 0 if the load found it current, then
    slots 1, 2, ... while each is whole, names the journal length slot 0 names and holds a local
    UID of a higher seq than the one before it (a slot of an older batch left beside current
    ones does not)."""
    found = [] if st.pending is None else [st.pending]
    keep = st.pending
    last = -1
    length = -1  # slot 0's journal length (uidcompact.load found it current), the others' too
    for k in range(_SLOTS if st._count else 0):
        try:
            f = open(st.path + str(k), "rb")
        except OSError:
            break
        try:
            w = f.read(2 * _MAX_STATE_LINE).split(b"\n")
        finally:
            f.close()
        try:
            n = uidcompact._check(w[0]) if len(w) == 3 and not w[2] else None
            n = int(n[2:]) if n is not None and n[:2] == b"L " else -1
            if not k:
                length = n
            body = uidcompact._check(w[1]) if n == length >= 0 else None
            if body is None or body[:2] != b"P ":
                break
            uidcompact._apply(st, body)  # (sets st.pending)
            seq = int(st.pending[2].split(".")[-1])
        except (StateError, ValueError):
            break
        if seq <= last:
            break
        last = seq
        found.append(st.pending)
    st.pending = keep
    return found


def reconcile(st, store, mailbox):
    """A crash left a pending entry, or slot files written after the journal: did their store
    commits happen? (see uidstate.py) Each one found is recorded as stored, the others dropped
    (fetched again), in one journal write, which also makes every slot file out of date."""
    found = pendings(st)
    if len(st.buf) // _REC < len(st) + len(found):
        st.load(None, len(st) + len(found))  # (a table with room for them: the entries made again)
    mb = store.lock(mailbox)
    try:
        for size, digest, local, first_seen, flag, uid in found:
            if _holds(mb, local, size, digest):
                log.info("fetch: recovered %s: it was stored before the interruption", _text(uid))
                st.add(uid, first_seen, flag)
            else:
                log.info("fetch: %s was not stored before the interruption; fetching it again", _text(uid))
    finally:
        mb.release()
    st.pending = None
    st._pend = True  # (a C record at least: the journal write that outdates the slots)
    st.dirty = True
    st.save()
