"""Per-account UIDL state on flash: which server messages are already safely in the store.

Theory of operation
-------------------
One text file per account, `<state_dir>/<account>.uidl`, rewritten whole through a temp file and
an atomic rename (`save()`), so a crash leaves either the old or the new state, never a mix:

    pocketpost-uidl 1
    S <first_seen> <flag> <uid>                       stored (flag f: full message, h: headers only)
    P <size> <sha1hex> <prior> <first_seen> <flag> <uid>   pending: see below

The client's "never lose, never duplicate" rule rests on the pending record. Just before it
commits a downloaded message to the store it saves `P` with the stored size, the SHA-1 of the
stored bytes and how many messages of that size and hash the local mailbox already held
(`prior`). Right after the commit it saves `S`. A crash between the two leaves `P`; the next run
(`client._reconcile`) counts the local copies with that size and hash: more than `prior` means
the commit happened (the entry becomes `S`), otherwise it did not (the entry is dropped and the
message is downloaded again). So the window between "durably stored" and "recorded" is closed.

UIDs starting with "#" are synthetic keys ("#<sha1hex>") used for servers without UIDL.

RAM: the entries live in a dict (uid bytes -> [first_seen, flag]); the file is read through a
fixed buffer with the shared LineReader, never whole. The number of entries is bounded.
"""

import hashlib
import binascii
import os

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.wire import LineReader

# Entries kept per account: each costs ~100-150 bytes of heap; 1000 keeps the state below ~150 KB
# on the host (half that on ESP32) and the file below ~100 KB of flash.
MAX_ENTRIES = const(1000)
# A state line: "P" + size + 40 hex + prior + time + flag + a 70-octet UID (RFC 1939 section 7).
MAX_STATE_LINE = const(200)
_READ_BUF = const(512)
HEADER = b"pocketpost-uidl 1"


class StateError(Exception):
    def __init__(self, msg):
        super().__init__(msg)


def sha1_hex(h):
    return binascii.hexlify(h.digest()).decode()


def new_hash():
    return hashlib.sha1()


class UidState:
    def __init__(self, state_dir, account):
        self.dir = state_dir
        self.path = compat.join(state_dir, account + ".uidl")
        self.entries = {}  # uid (bytes) -> [first_seen, flag]
        self.pending = None  # (size, sha1hex, prior, first_seen, flag, uid) or None
        self.dirty = False

    # -- persistence ------------------------------------------------------------------
    def load(self):
        self.entries = {}
        self.pending = None
        try:
            f = open(self.path, "rb")
        except OSError:
            return self  # no state yet
        try:
            r = LineReader(MAX_STATE_LINE, _READ_BUF)
            first = True
            while True:
                sp = r.space()
                n = f.readinto(sp)
                if n:
                    r.commit(n)
                while True:
                    ln = r.next_line()
                    if ln is None:
                        break
                    if isinstance(ln, int):
                        raise StateError("corrupt state line in " + self.path)
                    if first:
                        if ln != HEADER:
                            raise StateError("not a uidl state file: " + self.path)
                        first = False
                        continue
                    self._parse(ln)
                if not n:
                    break
            if r.pending():
                raise StateError("truncated state file " + self.path)
        finally:
            f.close()
        return self

    def _parse(self, ln):
        w = ln.split(b" ")
        try:
            if w[0] == b"S" and len(w) == 4:
                self.entries[w[3]] = [int(w[1]), w[2].decode()]
                return
            if w[0] == b"P" and len(w) == 7:
                self.pending = (int(w[1]), w[2].decode(), int(w[3]), int(w[4]), w[5].decode(), w[6])
                return
        except ValueError:
            pass
        raise StateError("corrupt state line in " + self.path)

    def save(self):
        """Atomically replace the state file (temp file, flush/fsync, rename)."""
        compat.makedirs(self.dir)
        tmp = self.path + ".tmp"
        f = open(tmp, "wb")
        try:
            f.write(HEADER + b"\n")
            for uid in self.entries:
                e = self.entries[uid]
                f.write(b"S %d %s %s\n" % (e[0], e[1].encode(), uid))
            p = self.pending
            if p is not None:
                f.write(b"P %d %s %d %d %s %s\n" % (p[0], p[1].encode(), p[2], p[3], p[4].encode(), p[5]))
            compat.sync_file(f)
        finally:
            f.close()
        compat.rename(tmp, self.path)
        compat.sync_dir(self.dir)
        self.dirty = False

    # -- entries ----------------------------------------------------------------------
    def __contains__(self, uid):
        return uid in self.entries

    def __len__(self):
        return len(self.entries)

    def full(self):
        return len(self.entries) >= MAX_ENTRIES

    def get(self, uid):
        return self.entries.get(uid)

    def add(self, uid, first_seen, flag="f"):
        self.entries[uid] = [first_seen, flag]
        self.dirty = True

    def forget(self, uid):
        if uid in self.entries:
            del self.entries[uid]
            self.dirty = True

    def set_pending(self, size, digest_hex, prior, first_seen, flag, uid):
        self.pending = (size, digest_hex, prior, first_seen, flag, uid)
        self.dirty = True

    def clear_pending(self):
        if self.pending is not None:
            self.pending = None
            self.dirty = True


def remove_tmp(state_dir, account):
    """Drop a temp file left by a crash inside save() (the real file is intact)."""
    try:
        os.remove(compat.join(state_dir, account + ".uidl.tmp"))
    except OSError:
        pass
