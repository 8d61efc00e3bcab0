"""POP3 client shell: fetch an account's mail from a real server into the store.

Theory of operation
-------------------
The protocol lives in pop3client.ClientSession (sans-I/O: reply parsing, multi-line blocks
through the core's LineReader and DotUnstuffer, pipelining, the size rule); the bytes move through
transport.py. `Pop3Client` drives the session and owns the deadlines; this module keeps the
account policy and the exactly-once bookkeeping with uidstate. The code of each step that is not
needed at the others is in a cold module, loaded for its step and dropped after it on MicroPython
(so the fetch's smallest heap is set by the largest step, not by all of them): the connect, login
and STAT (clientauth.py), the listing pass (clientplan.py), the downloads (clientget.py: RETR
into the store and step 4's exactly-once sequence; placed right before each listing pass, for
its place in the heap, and held through the batch) and the session's end (clientend.py).

`fetch_account(account, store)` runs one session, under a session deadline:
  1. load the UIDL state (uidstate.py) and reconcile a pending entry left by a crash;
  2. connect (plain, STLS or implicit TLS), CAPA, authenticate (strongest offered);
  3. STAT; the state loaded again into the session's UID table, sized by STAT's count; UIDL,
     LIST; decide per message: download (RETR, or TOP n 0 when oversize and
     `oversize` is "headers"), skip, or DELE (policy; targets held as bits per message number);
  4. per downloaded message: stream into a store Delivery, hashing the stored bytes; the message
     must prove complete (its octets match LIST's size, pop3client's size rule, and the reply
     after it, NOOP's, is well-formed); save a *pending* state entry (size, SHA-1, the local UID
     the commit will give) into a slot file of its own (uidstate.py); commit the Delivery; record
     the *stored* entry (on flash with the batch's others in one journal write after the batch,
     or at the session's end: until then its slot file stands for it); only then DELE if the
     policy deletes it (to a server with PIPELINING the next message's RETR goes out ahead: as
     soon as this one proved complete when no DELE can follow, so it streams in while this one
     commits; else in the same write as this one's DELE);
  5. QUIT; only after +OK are the deleted UIDs dropped from the state.
A crash at any point leaves: a partial delivery (the store removes it), or pending entries (in
slot files or the journal: the next run decides from the store whether each commit happened,
clientrecover.py), or a stored entry (not fetched
again; DELE re-sent if the policy wants it), or DELEs the server never committed (re-sent). So
every message ends up in the store exactly once.

A message that does not prove complete (short, padded, or a server that forgot to dot-stuff and
ended it at a body line "."), or any reply that is neither +OK nor -ERR: the delivery is aborted
(dropped, not kept aside: a copy we cannot trust is no copy, and the server still holds the
message), nothing is recorded, and the session ends without QUIT, so no DELE of this session
commits; the message is fetched again next time. A server that always sends it short stalls
there, with an error naming the message and the sizes, and never loses it. A message the
server refuses (RETR -ERR, e.g. [SYS/PERM] for a file it cannot read) is skipped for this
session, logged and left there unrecorded; the others are fetched, and it is asked for again next
time (one unreadable message never holds back the ones after it).

Servers without UIDL (best effort): only policy "delete" is possible. Each message is
downloaded, keyed by the SHA-1 of its bytes (uidstate.hash_key: never equal to a real UID); a key
already in the state means the message was stored by a session whose QUIT never completed: the
new copy is dropped and the message deleted. Cost: such a message is downloaded twice.

Unusable UIDLs (over 70 octets, octets outside 0x21-0x7E, or one UID listed for two messages):
the mailbox is still fetched. Those messages are keyed by content like the above, with any policy;
under "keep" they are downloaded again each session to be recognised (and dropped as duplicates),
their keys kept while they are seen. A stored UID that later shows up twice makes both copies
content-keyed: the copy stored under the UID may then be stored once more (a duplicate, never a
loss: which of the two the UID named is unknowable).
"""

import asyncio
import gc
import sys

from pocketpost import compat, log, transport
from pocketpost.compat import ConfigError, const  # a bad account: the one config error class
from pocketpost.pop3 import ProtocolError
from pocketpost.pop3client import CONTINUE, REPLY, ClientSession, _text

# --- named defaults and limits ------------------------------------------------------------------
# (the account defaults are in clientconf.py, loaded only to check an account; the two no other
# module reads are private: a public name is one more interned name in every fetch)
# (The largest server mailbox taken on, _MAX_SERVER_MESSAGES: clientauth.py, which checks STAT.)
_CONNECT_TIMEOUT = const(15)  # seconds: TCP connect (and, on CPython, the TLS handshake)
READ_TIMEOUT = 30  # seconds: the greeting, each command's reply, any single wait for bytes
# Slowest transfer we wait for, in bytes/s: a message of S octets gets read_timeout + S / _MIN_RATE
# seconds (a GPRS-class link moves ~2 KB/s; a server dripping a byte per half second is cut off).
_MIN_RATE = const(1024)
# The whole session (connect to QUIT): one stuck server cannot hold the board's schedule longer.
SESSION_TIMEOUT = 1800
# (After QUIT +OK, the polite close's bound, _CLOSE_MS: clientend.py.)
# (How far a message may exceed its LIST size before the read stops, _SIZE_SLACK_DIV and
# _SIZE_SLACK_MIN: clientget.py.)
# A board whose clock reads earlier than this has no time set: age-based deletion is skipped.
_SANE_TIME = const(1577836800)  # 2020-01-01
_DAY = const(86400)
_REC = const(11)  # uidstate's record size (a private copy; host_tests/test_fetch_heap.py checks)
_NEW_BATCH = const(16)  # clientplan's batch of new messages (a private copy, checked likewise)

# (The OAuth SASL mechanisms, _OAUTH: clientconf.py and clientauth.py, each its copy: a tuple here
# would be heap held while messages move.)
# The texts of errors and of log lines at a session's end: clientfail.TEXTS[n] (cold: a text
# here would be a string object held while messages move); private copies of its numbers
# (host_tests/test_fetch_heap.py checks them).
_T_UNEXPECTED = const(0)
_T_UNLISTED = const(1)
_T_FULL = const(2)
_T_FETCH = const(3)
_T_UNSAVED = const(4)
_T_STORE = const(5)
_T_SKIP = const(18)
_T_LEFT = const(19)
_T_ROOM = const(21)


# --- errors ------------------------------------------------------------------------------------
class ClientError(Exception):
    """A fetch failed; the store and the UIDL state are consistent."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg


class Pop3Timeout(ClientError):
    pass


class ConnectionLost(ClientError):
    pass


class ErrReply(ClientError):
    """The server answered -ERR. `code` is its RFC 2449 response code or None."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


class AuthFailed(ErrReply):
    pass


# (TlsRequired, an STLS account's server without STLS: clientstls.py; ShortMessage, a message
# not proved complete: clientget.py. Each is raised there only, and a class held here would be
# heap for the whole session.)


# --- account ------------------------------------------------------------------------------------
def account_from_dict(d):
    """Validate an account dict (from the JSON config) and fill in the named defaults
    (clientconf.py: loaded for the check, dropped after it on MicroPython)."""
    from pocketpost import clientconf

    try:
        return clientconf.account_from_dict(d)
    finally:
        clientconf = None
        compat.forget(("clientconf",))


def _failed(fn, *args):
    """clientfail.<fn>(*args): the error of a failed wait or connection (clientfail.py: loaded for
    it, dropped after it on MicroPython; not held while messages move)."""
    from pocketpost import clientfail

    try:
        return getattr(clientfail, fn)(*args)
    finally:
        clientfail = None
        compat.forget(("clientfail",))


# --- the session driver ----------------------------------------------------------------------------
class Pop3Client:
    """One POP3 session: the asyncio shell around pop3client.ClientSession. Usage:
        c = Pop3Client(host, port, tls="implicit", ctx=tls.client_context(ca, verify))
        await clientauth.connect(c); await clientauth.login(c, user, password)
        n, total = await clientauth.stat(c); await clientget.retr(c, 1, writer)
        await clientend.quit(c)
    The steps of a session that are not needed while messages move are functions of the cold
    modules that run them (clientauth: connect, CAPA, login, STAT; clientget: RETR; clientend:
    DELEs of a batch, QUIT), not methods: the class keeps no stub for them (each method is heap
    held for the whole session, all the more at its peak, the downloads), but login (oauth2.py
    logs in through it).

    Deadlines (every wait is bounded by the nearest): the connect (connect_timeout), the
    greeting and each command's reply (read_timeout from the moment the command goes out), each
    message (read_timeout + size / min_rate), the whole session (`session_deadline`, ticks ms,
    set by the caller), and any single wait for bytes (read_timeout)."""

    def __init__(self, host, port, tls_mode="none", ctx=None, connect_timeout=_CONNECT_TIMEOUT,
                 read_timeout=READ_TIMEOUT, min_rate=_MIN_RATE, account=None, opener=None):
        self.host = host
        self.port = port
        self.tls_mode = tls_mode
        self.ctx = ctx
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.min_rate = min_rate
        self.where = "%s%s:%s" % (account + " " if account else "", host, port)
        self.ca_path = None  # the account's CA file, named in certificate errors
        self.s = ClientSession()  # its 4 KiB receive buffer: 2 KiB saved 2 KiB of heap, ran ~18% slower (FIGURES.md)
        self.caps = None  # dict KEYWORD -> list of args (those the client uses: clientauth._CAPS), or None when CAPA is unsupported
        self.timestamp = None  # APOP banner timestamp
        self.secure = False
        self.session_deadline = None
        self.opener = opener  # (host, port, ms, ctx) -> connection; None: clientauth._open (transport's)
        self._conn = None

    def _lost(self, doing, e=None, w=0):
        """The ConnectionLost for a failure while `doing` ("waiting for the reply to STAT",
        "connect"; with w, "waiting for " + doing): the OSError / TLS error e in words a user can
        act on (tls.describe_error), or without e the server's close (clientfail.lost)."""
        return _failed("lost", self, doing, e, w)

    # -- deadlines and bytes --------------------------------------------------------------------
    def deadline(self, timeout, size=0):
        """A deadline (ticks ms) `timeout` seconds from now, plus size / min_rate."""
        ms = int(timeout * 1000) + (int(size * 1000 // self.min_rate) if size else 0)  # (seconds)
        return compat.ticks_add(compat.ticks_ms(), ms)

    def _left(self, deadline):
        now = compat.ticks_ms()
        left = int(self.read_timeout * 1000)
        if deadline is not None:  # (no loop over a tuple: this runs once per socket read)
            x = compat.ticks_diff(deadline, now)
            if x < left:
                left = x
        d = self.session_deadline
        if d is not None:
            x = compat.ticks_diff(d, now)
            if x < left:
                left = x
        return left

    def _timeout(self, deadline, what, w=0):
        """The Pop3Timeout for a wait for `what` (with w, for "the server to take " + what) that
        ran out (clientfail.timeout: which deadline)."""
        return _failed("timeout", self, deadline, what, w)

    async def _fill(self, deadline, what):
        mv = self.s.space()
        ms = self._left(deadline)
        if ms <= 0:
            raise self._timeout(deadline, what)
        try:
            n = await self._conn.recv_into(mv, ms)
        except transport.Timeout:
            raise self._timeout(deadline, what)
        except (OSError, ValueError) as e:
            raise self._lost(what, e, 1)
        if not n:
            raise self._lost(what, None, 1)
        self.s.commit(n)

    def _out(self, keyword, *args, limit=0):
        """The session's bytes for a command (its reply now awaited)."""
        try:
            return self.s.send(keyword, *args, limit=limit)
        except ProtocolError as e:
            raise ProtocolError("%s: %s" % (self.where, e.msg))

    async def _send(self, data, what):
        ms = int(self.read_timeout * 1000)
        sd = self.session_deadline
        if sd is not None:
            ms = min(ms, compat.ticks_diff(sd, compat.ticks_ms()))
        try:
            await self._conn.send(data, ms)
        except transport.Timeout:
            raise self._timeout(None, what, 1)
        except (OSError, ValueError) as e:
            raise self._lost("sending " + what, e)

    async def _status(self, deadline=None, what=None):
        """The status line answering the oldest command; -ERR raises ErrReply. With `what` (the
        greeting, a listing's lines: what is awaited, in words), the session's next event as it
        is, unchecked. The wait for bytes is inline, not _fill's: every coroutine frame of the
        chain under a wait (here the RETR's +OK, at the fetch's peak) is heap held through it."""
        s = self.s
        w = what or "the reply to " + s.waiting_for()
        if deadline is None:
            deadline = self.deadline(self.read_timeout)
        while True:
            try:
                ev = s.next_event()
            except ProtocolError as e:
                raise ProtocolError("%s: %s" % (self.where, e.msg))
            if ev:
                break
            ms = self._left(deadline)  # (_fill's steps)
            if ms <= 0:
                raise self._timeout(deadline, w)
            try:
                n = await self._conn.recv_into(s.space(), ms)
            except transport.Timeout:
                raise self._timeout(deadline, w)
            except (OSError, ValueError) as e:
                raise self._lost(w, e, 1)
            if not n:
                raise self._lost(w, None, 1)
            s.commit(n)
        if what:
            return ev
        if ev != REPLY and ev != CONTINUE:
            raise ProtocolError(_failed("text", _T_UNEXPECTED, self.where, w))
        r = s.reply
        if r.ok is False:
            raise ErrReply("%s: %s: -ERR %s" % (self.where, s.what, _text(r.text)), r.code)
        return r

    async def cmd(self, keyword, *args):
        """Send a command and read its status line; -ERR raises ErrReply."""
        data = self._out(keyword, *args)
        await self._send(data, keyword)
        return await self._status()

    # -- session --------------------------------------------------------------------------------
    def login(self, user, password, method="auto"):
        """Authenticate; `method` "auto" picks the strongest the server offers (clientauth.login:
        loaded, as the session's login runs in it; oauth2.pop3_login logs in through this)."""
        from pocketpost import clientauth

        return clientauth.login(self, user, password, method)

    async def dele(self, n, next=0):
        """DELE n: True when the server marked it deleted. A refused DELE (-ERR: a read-only
        maildrop, a message another session holds) is no reason to end the session: it is
        logged and False returned, and the message stays (and stays recorded) for next time.
        `next` (a message number; to a server offering PIPELINING): RETR next and its NOOP go out
        in the same write, after DELE n; only DELE's reply is read here (the message is the next
        retr's, asked for ahead: see fetch_account)."""
        data = self._out("DELE", n)
        if next and self.caps is not None and "PIPELINING" in self.caps:
            data += self._out("RETR", next) + self._out("NOOP")
        try:
            await self._send(data, "DELE")
            await self._status()
        except ErrReply as e:
            log.warning("pop3 %s", e.msg)
            return False
        return True

    async def close(self):
        """Drop the connection at once (an error path never waits on the peer)."""
        if self._conn is not None:
            c = self._conn
            self._conn = None
            c.close()

# --- fetching into the store --------------------------------------------------------------------
def _bit(bits, n):
    return bits[n >> 3] & (1 << (n & 7))


def _set(bits, n):
    bits[n >> 3] |= 1 << (n & 7)


def settle(account, store):
    """Settle what a crash left pending in the account's UIDL state (uidstate.py): the message
    it names is recorded as stored or left to fetch again. The board calls this for each account
    at boot, before any local session runs: the last message stored before a power cut is then
    recorded before a user could read and delete it locally, which would make the next fetch
    download it a second time. Returns True if something was pending (clientconf.settle: loaded
    for it, dropped after it)."""
    from pocketpost import clientconf

    try:
        return clientconf.settle(account, store)
    finally:
        clientconf = None
        compat.forget(("clientconf",))


async def fetch_account(account, store, on_message=None, opener=None, headers=True):
    """Fetch one account into its local mailbox; returns a stats dict. `on_message(info)` is
    called after each stored message with a dict: uid, local_uid, size, headers_only, headers
    (a dict, parsed while the message streams in: headers.py; None when `headers` is False,
    which keeps headers.py and its parser out of the heap). `opener` replaces clientauth._open
    (tests: an in-process connection pair)."""
    # The account checked, its state loaded (a crash's pending entry settled), an OAuth token,
    # the Pop3Client, the local mailbox loaded (clientconf.py: loaded for it, dropped after it)
    from pocketpost import clientconf

    try:
        a, st, c, token, fresh = clientconf.start(account, store, opener)
    except OSError as e:  # its .who record or the state's compaction (below: its journal writes)
        raise _failed("nospace", account.get("name"), account.get("state_dir", "state"), e)
    finally:
        clientconf = None
        compat.forget(("clientconf",))
    parse = headers and on_message is not None  # parse each message's headers for on_message
    name = a["name"]
    mailbox = a["mailbox"]
    policy = a["policy"]
    stats = {"account": name, "fetched": 0, "bytes": 0, "headers_only": 0, "skipped": 0,
             "deleted": 0, "duplicates": 0, "on_server": 0, "state_full": False, "by_content": 0}
    store_error = None
    room_error = None  # the first message left for want of room (said once the session ends)
    try:
        # Connect, log in, STAT (clientauth.py: loaded for it, dropped after it, with the
        # session's greeting and CAPA code, pop3listing.py)
        from pocketpost import clientauth

        try:
            count = await clientauth.start(c, a, token, fresh)
        finally:
            clientauth = None
            compat.forget(("clientauth", "pop3listing"))
        stats["on_server"] = count
        # The UID table needs room for the entries on file + one per message on the server, at
        # most max_entries (uidstate.py's RAM paragraph). The one made at the start (for what is
        # on file and as many again, + a few) mostly has it; else the state is loaded again now,
        # into a table of that size (no heap for it: StateError here, nothing fetched). Never
        # grown after this.
        # Entries this session can add: one per download, so at most the cap (max_messages), not
        # one per message listed (a first fetch of 1 of 500 made a 500-entry table).
        cap = a["max_messages"] or count  # downloads this session (skipped ones do not count)
        if len(st.buf) // _REC < min(a["max_entries"], len(st) + min(count, cap)):
            if compat.IS_MICROPYTHON:
                gc.collect()  # the login's garbage goes before the load's code (uidcompact.py) is placed
            st.load(min(count, cap))  # (the file read once: uidcompact.size has the entries)
        # Per message number, one bit each (no per-message object, no list of UIDs):
        #   done  handled this session (stored, skipped or dropped as a duplicate);
        #   dele  stored by an earlier session and due for deletion by the policy (first pass);
        #   fb    its UIDL is unusable (invalid, over 70 octets, or listed twice): keyed by
        #         content instead, like a server without UIDL (see the module doc);
        #   refused  a DELE the server refused (its record must not count as deleted).
        # UIDs already in the state are marked "seen" in their state record. New messages are
        # taken in batches of at most clientplan._NEW_BATCH (their full UIDs held until stored): when a
        # batch is done and more wait, UIDL (and LIST) are read again.
        nb = count // 8 + 1
        done = bytearray(nb)
        dele = bytearray(nb)
        fb = bytearray(nb)
        refused = None
        now = compat.now()
        sane = now >= _SANE_TIME
        # first pass, more new messages wait, room for new entries, downloads left under the cap (clientplan.py)
        ctl = [True, False, 0, cap]

        deleted = 0  # DELEs accepted: marked in the state records, forgotten after QUIT
        downloads = 0
        while True:
            # UIDL (and LIST): this batch's messages (clientplan.py: loaded for the pass, dropped
            # after it with the session's listing code, pop3listing.py; nothing of it outlives
            # the call). The download code (clientget.py, held for the batch, see below) is placed
            # first, right after the collection, while the heap has its largest holes: placed at
            # the batch's downloads, among what the listing left, d was 95-96 / 96 KiB, this way
            # 95 / 95 (docs/FIGURES.md); the listing pass with it still stays under the download.
            if compat.IS_MICROPYTHON:
                gc.collect()  # the login's garbage goes before the module's code is placed
            if st.due(_NEW_BATCH):
                # A compaction of the state due within the next batch's saves: now, with neither
                # the listing's nor the downloads' heap held (between two downloads, the download
                # code dropped and placed again: a first fetch of 30 messages 90 -> 95 KiB).
                st.compact()
                if compat.IS_MICROPYTHON:
                    gc.collect()  # the compaction's heap goes before the download code is placed
            __import__("pocketpost.clientget")
            from pocketpost import clientplan

            ctl[3] = cap - downloads
            try:
                want, sizes = await clientplan.batch(c, st, a, count, done, dele, fb, ctl, stats, now, sane)
            finally:
                clientplan = None
                compat.forget(("clientplan", "pop3listing"))
            if ctl[0]:
                # Messages stored by earlier sessions: delete them when the policy says so,
                # _PIPELINE DELEs at a time (clientend.py: loaded for it, dropped after it).
                if any(dele):
                    from pocketpost import clientend

                    try:
                        deleted, refused = await clientend.dele_stored(c, count, dele)
                    finally:
                        clientend = None
                        compat.forget(("clientend",))
                ctl[0] = False

            stop = False
            # The download code (clientget.py, loaded before the listing pass), held for this batch
            # and dropped after it; the store's delivery code (store.py, ~7 KB, else loaded by the first Store.begin, in the
            # middle of the session's blocks) placed with it, right after the collection, and
            # dropped with it when this batch loaded it: the session's end (clientend,
            # uidcompact) is not placed on top of it.
            drop = ("clientget",) if "pocketpost.store" in sys.modules else ("clientget", "store")
            order = sorted(want)
            r = store.room(mailbox)[0] if order else 0
            if order and downloads < cap and c.caps is not None and "PIPELINING" in c.caps and r != 0:
                # The batch's first download asked for at once (as the next one is at the end of
                # each message, below): the server looks it up while the state compacts and the
                # download code loads. Not into a store already full: its begin would refuse it
                # and it would be downloaded only to be dropped, every run until there is room.
                # Nor one larger than the room left (below: kept on the server).
                m = order[0]
                ms = sizes.get(m)
                if ms is not None and not (a["max_size"] and ms > a["max_size"]) and not 0 < r < ms:
                    await c._send(c._out("RETR", m) + c._out("NOOP"), "RETR %d" % m)
            if want:
                if st.due():
                    st.compact()  # a compaction of the state due at the first message's save: now (see below)
                if compat.IS_MICROPYTHON:
                    gc.collect()  # the listing pass's code (and a compaction's) goes before it is placed
                # (The download code loaded again if another account's fetch dropped it meanwhile:
                # board.py runs them at once.) The download code before the store's: its retr is one ~830 B block, which the holes the collection leaves
                # still hold before store.py's code is placed in them (the other order: d 97 / 97
                # KiB, this one 96 / 96-97, with clientget loaded here).
                __import__("pocketpost.clientget")
                __import__("pocketpost.store")
            for k in range(len(order)):
                n = order[k]
                if downloads >= cap:
                    stop = True
                    break
                uid = want[n]
                size = sizes.get(n)
                if size is None:
                    raise ProtocolError(_failed("text", _T_UNLISTED, c.where, n))
                _set(done, n)
                top = False
                if a["max_size"] and size > a["max_size"]:
                    if a["oversize"] == "skip":
                        stats["skipped"] += 1
                        log.info(_failed("text", _T_SKIP, name, n, size))
                        continue
                    top = True
                room = store.room(mailbox)[0]
                if not top and 0 < room < size and not c.s.waiting_for():
                    # Larger than the room the store has left (its quota or the flash; a message
                    # is stored in no fewer octets than LIST gives): not downloaded (the store
                    # would refuse it at its end, every run, and every message after it waited
                    # behind it): kept on the server, said once the session ends (QUIT: what it
                    # fetched and deleted commits); the messages after it that fit come in.
                    stats["skipped"] += 1
                    if room_error is None:
                        room_error = _failed("text", _T_ROOM, n, size, mailbox, room)
                    continue
                downloads += 1
                if st.due():
                    # A compaction of the state due at this message's save runs now, before its
                    # delivery holds heap and without the download code (uidcompact.py is loaded
                    # for it): the save then appends as usual.
                    compat.forget(("clientget",))
                    st.compact()
                    if compat.IS_MICROPYTHON:
                        gc.collect()  # the compaction's heap goes before the download code is placed again
                    __import__("pocketpost.clientget")
                # The next message asked for ahead (PIPELINING: the server streams it while this one
                # is committed or deleted) when it is the next download for sure (listed, not
                # oversize, under the cap): as soon as this one is complete when it is never
                # followed by its DELE (not policy delete; under keep_days a content-keyed
                # duplicate may be deleted at once), else in the write of its DELE, which goes out
                # only once this one is committed and recorded (none if it is not deleted: the
                # next retr asks; nor into a full store). Each path that stops the batch after
                # that write reads the message off (a store error, below) or raises (no QUIT:
                # nothing commits).
                ahead = 0
                if k + 1 < len(order) and downloads < cap:
                    m = order[k + 1]
                    ms = sizes.get(m)
                    if (ms is not None and not (a["max_size"] and ms > a["max_size"])
                            and not (room > 0 and ms > room - size)):  # (one that may not fit: above)
                        ahead = m
                # The download code (clientget.download, held for this batch: called straight, no
                # coroutine of a wrapper on top of the download's) loaded again if another
                # account's fetch (board.py: they run at once) dropped it, held for the rest of
                # this batch (not per message).
                get = sys.modules.get("pocketpost.clientget")
                if get is None:
                    __import__("pocketpost.clientget")
                    get = sys.modules["pocketpost.clientget"]
                try:
                    key, info, store_error = await get.download(
                        c, st, store, mailbox, n, uid, size, top, parse,
                        ahead if policy != "delete" and (uid is not None or policy == "keep") else 0)
                except ErrReply as e:
                    # The server refused this message (RETR -ERR: a file it cannot read, ...):
                    # nothing of it was kept or recorded, it stays there and is asked for again
                    # next session, and the session goes on (clientget.retr read every reply):
                    # one unreadable message must not hold back every message after it, run
                    # after run.
                    stats["skipped"] += 1
                    downloads -= 1  # not downloaded: it takes no place under the cap (max_messages)
                    log.warning(_failed("text", _T_LEFT, name, n, e.msg))
                    continue
                if uid is None:  # (not a refused one, above: it was not downloaded)
                    stats["by_content"] += 1
                if store_error is not None:
                    stop = True  # (the message named, and the setting that lets the others through)
                    store_error = _failed("stored", n, size, store_error)
                    w = c.s.waiting_for()
                    if w:
                        # A message asked for ahead ("RETR m": the only reply it can be waiting
                        # for here): read off (and dropped: `len` takes each chunk) before QUIT,
                        # under its own deadline; its size rule holds as for any message. (The
                        # download code loaded again if another account's fetch dropped it
                        # while this message streamed in: see above.)
                        m = int(w[5:])
                        __import__("pocketpost.clientget")
                        try:
                            await sys.modules["pocketpost.clientget"].retr(c, m, len, sizes.get(m))
                        except ErrReply:
                            pass  # refused: its replies read (clientget.retr), in step for QUIT
                    break
                if info is None:
                    stats["duplicates"] += 1
                    st.mark(key, seen=True)  # still on the server: its content key stays
                    if policy == "keep_days" and not top:
                        first = st.get(key)[0]  # (not `e`: the refused RETR's except above binds it)
                        if not (sane and first >= _SANE_TIME and now - first >= a["keep_days"] * _DAY):
                            continue
                    elif policy != "delete":
                        continue
                else:
                    stats["fetched"] += 1
                    stats["bytes"] += info["size"]
                    if top:
                        stats["headers_only"] += 1
                    if on_message is not None:
                        on_message(info)
                    if uid is not None:
                        st.mark(uid, seen=True, new=True)
                    if policy != "delete" or top:
                        continue
                # (Nothing asked for yet; not into a store this message filled: its begin would
                # refuse the next, downloaded only to be dropped.)
                if await c.dele(n, ahead if ahead and not c.s.waiting_for() and store.room(mailbox)[0] != 0 else 0):
                    st.mark(key, deleted=True)
                    deleted += 1
            # (get: the local held the download code's module past its forget, through the
            # session's end, one of the fetch's peaks)
            merge = stats["fetched"] if want else 0
            want = sizes = order = get = info = None
            compat.forget(drop)
            if merge:
                # The store's merge of the messages this batch stored (every _MERGE_AFTER, as a
                # delivery's commit does it; clientget's commits leave it here): storemerge.py's
                # code placed now, with the batch's heap gone, not on top of a delivery's at the
                # 16th message (a first fetch of 16 messages: 90 -> 96 KiB, docs/FIGURES.md), and
                # after a collection: in the hole of the batch's code, not above its garbage (a
                # first fetch of 100: 96-97 -> 92-93 KiB).
                if compat.IS_MICROPYTHON:
                    gc.collect()
                if st.dirty:
                    # The batch's records (its messages' slot files stand for them until now:
                    # clientget.py): one journal write, before the next batch writes the slots
                    # again; here, with the batch's heap gone (at the next batch's start, its
                    # ~700-byte write found no room: the first fetch of 100, 93 -> 95 KiB).
                    st.save()
                store.box(mailbox).merge_due()
            if stop or not ctl[1] or downloads >= cap:
                break
        if stats["state_full"]:
            # With deletions this session (policy delete, or keep_days), their entries go at QUIT:
            # the next session goes on (the fetch CLI starts it at once), no error.
            (log.info if deleted else log.error)(_failed("text", _T_FULL if not deleted else 17, name, a["max_entries"]))
        # Refused DELEs put right, QUIT, the records kept or dropped and saved (clientend.py:
        # cold, loaded for it and dropped after it; not held while messages stream in).
        from pocketpost import clientend

        try:
            await clientend.finish(c, st, count, refused, now, sane)
        finally:
            clientend = None
            compat.forget(("clientend",))
        stats["deleted"] = deleted
        if store_error is None:
            if room_error is None:
                return stats
            store_error = room_error
    except (ClientError, ProtocolError) as e:
        if store_error is None:
            raise
        # The connection failed after the store's error had stopped the batch (reading off the
        # message asked for ahead, or at QUIT): the store's error is the one to act on, this one
        # is logged. No QUIT +OK: nothing of this session commits on the server (its DELEs are
        # sent again next time, from the records).
        log.warning(_failed("text", _T_FETCH, name, e.msg))
    except OSError as e:  # the UIDL state's writes: a full flash said as such (clientfail.nospace)
        raise _failed("nospace", name, a["state_dir"], e)
    finally:
        compat.forget(("clientget",))
        await c.close()
        if st.dirty and st.pending is None:
            # An error ended the session: the last stored message's record (see clientget.download)
            # goes to flash now rather than through a reconcile next time.
            try:
                st.save()
            except Exception as e:  # the pending entry on flash still stands for it
                log.warning(_failed("text", _T_UNSAVED, name, e))
    raise ClientError(_failed("text", _T_STORE, c.where, store_error))


def fetch_account_sync(account, store, on_message=None, opener=None, headers=True):
    """Blocking wrapper for the REPL and host tools."""
    return asyncio.run(fetch_account(account, store, on_message, opener, headers))
