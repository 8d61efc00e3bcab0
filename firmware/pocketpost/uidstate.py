"""Per-account UIDL state on flash: which server messages are already safely in the store.

Theory of operation
-------------------
One text file per account, `<state_dir>/<account>.uidl`, rewritten whole through a temp file and
an atomic rename (`save()`), so a crash leaves either the old or the new state, never a mix:

    pocketpost-uidl 1
    S <first_seen> <flag> <uid>                       stored (flag f: full message, h: headers only)
    H <first_seen> <flag> <sha1hex>                   stored, server without UIDL (see below)
    P <size> <sha1hex> <local> <first_seen> <flag> <uid>   pending: see below
    P <size> <sha1hex> <local> <first_seen> <flag>         pending, server without UIDL

The client's "never lose, never duplicate" rule rests on the pending record. Just before it
commits a downloaded message to the store it saves `P` with the stored size, the SHA-1 of the
stored bytes and the local UID the commit will give it (`local`, Delivery.uid_on_commit()).
Right after the commit it saves `S`. A crash between the two leaves `P`; the next run
(`client._reconcile`) looks for that local UID with that size and hash: found means the commit
happened (the entry becomes `S`), otherwise it did not (the entry is dropped and the message is
downloaded again). So the window between "durably stored" and "recorded" is closed, at the
cost of one index lookup and one hash, and only after a crash. (A state file written before
this form holds a number there: it never matches a UID, so that message is fetched again, at
worst a duplicate.)

Servers without UIDL: a message is keyed by the SHA-1 of its stored bytes. In RAM that key is
`hash_key(sha1hex)` = b" " + hex: a real UID is 1-70 octets in 0x21-0x7E (RFC 1939 section 7),
so it can never begin with a space and no server can send a UID that is taken for a synthetic
key ("#abc" is just a UID). On file such keys have their own record type (H, and P without a UID).
(State files from before H held "S ... #<sha1hex>": those now load as UIDs, which at worst costs
one duplicate for a no-UIDL server whose QUIT result was lost just before the upgrade.)

first_seen is Unix time, or 0 (any value before 2020) when the board clock was not set yet: the
client stamps it in a later session with a set clock and never deletes by age before that.

RAM: the entries live in a dict (uid bytes -> [first_seen, flag]); the file is read through a
fixed buffer with the shared LineReader, never whole. The number of entries is bounded.
"""

import hashlib
import binascii
import os

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.wire import LineReader

# Entries kept per account (the account's "max_entries"; this is its default). Each entry is a
# dict slot + the UID bytes + a [first_seen, flag] list, and the client's `present` dict adds a slot
# per UID on the server. Measured on the 64-bit unix port: 146 bytes (20-octet UID) to 209 bytes
# (70-octet UID) per entry, + ~18 for `present`; an ESP32 (32-bit, 16-byte GC blocks) needs about
# half: 200 entries ~ 15-23 KiB of a no-PSRAM board's 56-112 KiB heap, and ~12 KiB of flash.
# A mailbox that keeps more mail on the server than this waits for deletions (state_full).
DEFAULT_MAX_ENTRIES = const(200)
# A state line: "P" + size + 40 hex + local UID (<= 19) + time + flag + a 70-octet UID (RFC 1939 section 7).
MAX_STATE_LINE = const(200)
_READ_BUF = const(512)
HEADER = b"pocketpost-uidl 1"


class StateError(Exception):
    def __init__(self, msg):
        super().__init__(msg)


def hash_key(sha1hex):
    """The state key of a message from a server without UIDL (never equal to a real UID)."""
    return b" " + sha1hex.encode()


def is_hash_key(key):
    return key[:1] == b" "


def sha1_hex(h):
    return binascii.hexlify(h.digest()).decode()


def new_hash():
    return hashlib.sha1()


class UidState:
    def __init__(self, state_dir, account, max_entries=DEFAULT_MAX_ENTRIES):
        self.max_entries = max_entries
        self.dir = state_dir
        self.path = compat.join(state_dir, account + ".uidl")
        self.entries = {}  # uid (bytes) -> [first_seen, flag]
        self.pending = None  # (size, sha1hex, local uid, first_seen, flag, uid) or None
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
            if w[0] == b"S" and len(w) == 4 and w[3]:
                self.entries[w[3]] = [int(w[1]), w[2].decode()]
                return
            if w[0] == b"H" and len(w) == 4 and w[3]:
                self.entries[hash_key(w[3].decode())] = [int(w[1]), w[2].decode()]
                return
            if w[0] == b"P" and (len(w) == 7 and w[6] or len(w) == 6):
                sha = w[2].decode()
                uid = w[6] if len(w) == 7 else hash_key(sha)
                self.pending = (int(w[1]), sha, w[3].decode(), int(w[4]), w[5].decode(), uid)
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
                if is_hash_key(uid):
                    f.write(b"H %d %s %s\n" % (e[0], e[1].encode(), uid[1:]))
                else:
                    f.write(b"S %d %s %s\n" % (e[0], e[1].encode(), uid))
            p = self.pending
            if p is not None:
                line = b"P %d %s %s %d %s" % (p[0], p[1].encode(), p[2].encode(), p[3], p[4].encode())
                if is_hash_key(p[5]):
                    f.write(line + b"\n")  # the key is hash_key(sha1hex)
                else:
                    f.write(line + b" " + p[5] + b"\n")
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
        return len(self.entries) >= self.max_entries

    def get(self, uid):
        return self.entries.get(uid)

    def add(self, uid, first_seen, flag="f"):
        self.entries[uid] = [first_seen, flag]
        self.dirty = True

    def forget(self, uid):
        if uid in self.entries:
            del self.entries[uid]
            self.dirty = True

    def set_pending(self, size, digest_hex, local, first_seen, flag, uid):
        self.pending = (size, digest_hex, local, first_seen, flag, uid)
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
