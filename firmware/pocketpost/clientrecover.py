"""The client's recovery after a crash (client.fetch_account, when the UIDL state holds a pending
entry; see uidstate.py): did the store commit of that message happen? Cold code: loaded only
then, and dropped after it on MicroPython."""

import binascii
import hashlib

from pocketpost import log
from pocketpost.client import _text
from pocketpost.compat import const

# Bytes read per step while hashing the stored copy (one small buffer, once per recovery).
_READ = const(512)


def _holds(store, mailbox, local, size, digest):
    """Does the local mailbox hold message `local` (a store UID) with this size and SHA-1?
    Reads the index and hashes that one message only."""
    mb = store.lock(mailbox)
    try:
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
    finally:
        mb.release()


def reconcile(st, store, mailbox):
    """A crash left a pending entry: did its store commit happen? (see uidstate.py)"""
    size, digest, local, first_seen, flag, uid = st.pending
    if _holds(store, mailbox, local, size, digest):
        log.info("fetch: recovered %s: it was stored before the interruption", _text(uid))
        st.add(uid, first_seen, flag)
    else:
        log.info("fetch: %s was not stored before the interruption; fetching it again", _text(uid))
    st.clear_pending()
    st.save()
