"""The client's download of a message (client.fetch_account's loop: download; and retr, also for
any caller with a Pop3Client): RETR (or TOP n 0) streamed into a store Delivery through _StoreSink, the size
rule, then the pending entry, the commit and the record (the exactly-once steps: client.py's
module doc). Cold code: fetch_account loads it for a batch (right before the batch's listing pass,
clientplan.py, for its place in the heap) and on MicroPython drops it after the batch's downloads:
it is not held while the session logs in or ends (its qstrs stay).

What a stored message costs the flash beyond its bytes, on littlefs: five device syncs, four of
them metadata commits (host_tests/test_fetch_syncs.py counts them per phase; on the host each sync
is an fsync of the image, on a board a sync is no flash operation, a commit is programs into a
metadata block). In download's order:
  1. store.begin creates the temp file in its bucket: 1 commit (littlefs names a file only by a
     commit). The bytes stream into it with no sync.
  2. uidstate.save(1) writes the pending record P into the message's slot file (<account>.uidl<k>,
     k its place since the last journal write: uidstate.py), rewritten whole: an inline file (its
     two lines at most ~240 bytes, under littlefs's inline size, the cache size: 256 bytes with
     the board's sizes), so its close is 1 commit and no barrier (the slots are made, empty,
     with a new state's first compaction: uidcompact.compact).
  3. Delivery.seal flushes the temp file, then closes it: its barrier and its commit, 2 syncs;
     the close adds nothing. On the host this barrier is the costly fsync: it carries the
     message's bytes.
  4. Delivery.commit renames it to its name in the same directory: 1 commit, the commit point.
The message's S record is not written per message: the S records go to the state file in one
append after the batch (client.fetch_account, before the next batch's slots are written again,
or at the session's end): 2 syncs (a barrier and a commit) per batch, not per message; in a
batch of more than uidstate._SLOTS (8) new messages the 9th's P goes to the state file too, with
the 8 S records before it, in place of its slot write (2 syncs instead of 1). A batch of 16: 4
syncs per message for the store, 19 / 16 for the state (15 slot writes, 2 journal writes), ~5.2
(until stop 31: 6). None of the per-message syncs is redundant. P must be
on flash before 4 (after it, a cut would leave a message stored and forgotten: fetched again),
and each message needs its own: the store's file name is made from its index record (an
epoch, seq and arrival: no room for the server's UID), so the rename cannot record whose message
it is, and P (its local UID, size and SHA-1) is what lets the next run tell. It cannot ride with 1
(the size, the hash and the local UID are known only once the message is in; and the state is
another file in another directory: littlefs commits one file per call). It goes to a slot of
its own rather than over the last one: the S records of the batch's earlier messages are not on
flash yet, their slots stand for them. 3 must come before 4: a rename carries the file's last
committed content, and the temp file's is the empty one of 1. Until stop 31 P was appended to
the state file with the previous message's S: 2 syncs per message (the state file is past the
inline size: a barrier, then the commit), and on a board that append copied the journal's last
block into a new one (~3.5 KB programmed and one erase per message: tools/bench_client.py
--lfs-counts)."""

from pocketpost import compat, transport
from pocketpost.client import ConnectionLost, ErrReply, Pop3Timeout, _failed
from pocketpost.compat import const
from pocketpost.pop3 import ProtocolError
from pocketpost.pop3client import BODY, END
from pocketpost.uidstate import hash_key

_SANE_TIME = const(1577836800)  # client._SANE_TIME: a clock before 2020 is unset
# A message may exceed its LIST size by this much before we stop reading it (beyond, it would
# only fill the flash); such a message is not kept either way (pop3client's size rule). Private
# constants: a public name would be one more interned name for every process that fetches.
_SIZE_SLACK_DIV = const(16)
_SIZE_SLACK_MIN = const(1024)
# The texts of its errors: clientfail.TEXTS[n] (cold: not held while messages move); private
# copies of its numbers (host_tests/test_fetch_heap.py checks them).
_T_UNEXPECTED = const(0)
_T_INSIDE = const(6)
_T_LARGER = const(7)
_T_SHORT = const(8)
_T_NOOP = const(9)


class ShortMessage(ProtocolError):
    """A message whose octet count does not prove it complete: not kept, not deleted."""


async def retr(c, n, sink, size=None, top=False, next=0):
    """Stream message n (RETR, or TOP n 0 for the headers only) into sink(chunk), chunk being
    a bytes-like valid only during the call (a sink with a fail(e) method gets what its call
    raised there, and the message is still read to its end). Returns the octet count.
    With `size` (LIST's), the message must prove complete (pop3client's size rule) and the
    reply after it must be well-formed, else ShortMessage / ProtocolError: the caller must
    not keep it, and the connection is unusable. Bounded by read_timeout + size / min_rate.
    `next` (a message number, with `size`, to a server offering PIPELINING): once this message has
    proved complete (its NOOP answered), RETR next (and its NOOP) goes out, so the server streams
    that message while the caller commits this one (see client.fetch_account). A RETR already on
    its way (asked for ahead: the session waits for its reply) is not sent again; a caller that
    stops first must read that message off (its retr, the sink dropping each chunk) before any
    other command. (`next`: a name the runtime already interns, no new qstr.)"""
    s = c.s
    d = c.deadline(c.read_timeout, size or 0)
    what = ("TOP %d 0" if top else "RETR %d") % n
    # (Few locals: the coroutine's frame is one heap block, made at each download; `got` also
    # holds what is sent or awaited before the body, and the sink's fail.)
    pipelined = size is not None and not top and c.caps is not None and "PIPELINING" in c.caps
    got = s.waiting_for()
    if got:  # asked for ahead: RETR n and its NOOP went out already (at the end of the message before)
        if got != what or not pipelined:  # another reply comes first: it would be read as this one's
            raise ProtocolError(_failed("text", _T_UNEXPECTED, c.where, what))
    else:
        got = c._out("TOP", n, 0) if top else c._out("RETR", n)
        if pipelined:
            got += c._out("NOOP")  # the reply after the message: proves the stream in step
        await c._send(got, what)
    try:
        await c._status(d)
    except ErrReply:
        # -ERR for this message (a file the server cannot read: [SYS/PERM], ...): one status
        # line, no body. The NOOP sent with it is answered too, so the session stays in step
        # and the caller can go on with the next message (nothing of this one was kept).
        if pipelined:
            await c._status(c.deadline(c.read_timeout))
        raise
    limit = size + max(size // _SIZE_SLACK_DIV, _SIZE_SLACK_MIN) if size is not None else 0
    waiting = "the body of " + what
    now = getattr(c._conn, "recv_now", None)  # a read that never waits (transport.py)
    # The hot loop of a fetch, once per body chunk: next_event is called here rather than
    # through _status (one coroutine less per chunk), and a read tries recv_now (inline: a
    # coroutine's locals cost no heap frame) before it makes coroutines to wait; the
    # deadlines hold the same (a server that always has a byte ready is cut off by them too),
    # and the same errors come out.
    read = False  # the +OK may have come with body bytes: ask the session first
    while True:
        if read:
            got = None
            if now is not None:
                if c._left(d) <= 0:
                    raise c._timeout(d, waiting)
                try:
                    got = now(s.space())
                except (OSError, ValueError) as e:
                    if not (isinstance(e, OSError) and transport.would_block(e)):
                        raise c._lost(waiting, e, 1)
                if got == 0:
                    raise c._lost(waiting, None, 1)
            if got is None:
                await c._fill(d, waiting)
            else:
                s.commit(got)
        try:
            ev = s.next_event()
        except ProtocolError as e:
            raise ProtocolError("%s: %s" % (c.where, e.msg))
        if not ev:
            read = True
            continue
        if ev == END:
            break
        if ev != BODY:
            raise ProtocolError(_failed("text", _T_INSIDE, c.where, what))
        if limit and s.octets > limit:
            raise ProtocolError(_failed("text", _T_LARGER, c.where, what, n, size))
        try:
            sink(s.chunk)
        except Exception as e:  # a sink with fail() keeps its error; the message is read on
            got = getattr(sink, "fail", None)
            if got is None:
                raise
            got(e)
        read = s.hungry  # only more bytes can give another event: read at once
    if size is not None and not top:  # (the octets stay s.octets until the next body's +OK)
        if not s.size_matches(size):
            raise ShortMessage(_failed("text", _T_SHORT, c.where, what, s.octets, s.lf, s.crlf, size))
        if not pipelined:
            await c._send(c._out("NOOP"), "NOOP")
        try:
            await c._status(c.deadline(c.read_timeout))
        except ErrReply as e:
            # NOOP always succeeds (RFC 1939): a server answering it -ERR is broken, and this is no
            # refusal of the message (the caller skips those, quietly): not proved, and the session
            # ends here, loudly, rather than every message being downloaded and dropped each run.
            raise ProtocolError(_failed("text", _T_NOOP, c.where, what, e.msg))
        if next and pipelined and not getattr(sink, "error", None):
            # This message is proved (its NOOP answered): the next one is asked for now, and the
            # server reads and sends it while this one is committed. A failed send does not
            # cost this message: the next retr's read fails on the same connection instead. Not
            # after a store error in this one (the sink's): the batch stops there.
            try:
                await c._send(c._out("RETR", next) + c._out("NOOP"), "RETR %d" % next)
            except (ConnectionLost, Pop3Timeout):
                pass
    return s.octets


class _StoreSink:
    """Takes un-stuffed chunks for one Delivery (begun with digest=True: the store converts line
    ends and hashes exactly the bytes it keeps), feeds the header parser, and keeps a store
    failure as `error` (retr hands it to fail(e)) while the rest of the message is still read off
    the wire (the session stays usable). Headers are parsed only for an `on_message` callback
    (headers.py loads with it). __call__ runs once per body chunk: no try in it (MicroPython
    gives a frame with one, or with many locals, a heap block per call)."""

    def __init__(self, d, headers, s):
        # (One-letter arguments as the attributes: a name of their own is one more interned name
        # for every process that downloads; "pocketpost.headers" is one too until headers.py loads.)
        self.d = d  # the store Delivery
        self.s = s  # pop3client.ClientSession: `bare` and `dots` spare the store two scans
        self.headers = None
        if headers:
            from pocketpost import headers as parser

            self.headers = parser.HeaderParser()
        self.error = None

    def __call__(self, chunk):
        h = self.headers
        if h is not None and not h.done:
            h.feed(chunk)
        if self.error is None:
            s = self.s
            self.d.write(chunk, s.bare == 0, s.dots)

    def fail(self, e):
        """A write raised e (StoreError: full, quota; or OSError): keep it, write no more."""
        self.error = e


async def download(c, st, store, mailbox, n, uid, size, top, headers=True, next=0):
    """One message into the store, crash-safely (client.fetch_account calls it straight). Returns
    (key, info or None if a duplicate, store error or None). A message that does not prove
    complete raises (pop3client's size rule): its delivery is aborted, nothing is recorded, the
    caller's session ends without QUIT.
    `next`: retr's (the next message, asked for once this one is proved)."""
    # retr's coroutine (one ~360 B block) made before the delivery's objects: made after them,
    # among the holes they leave, it was the download's first failing allocation.
    sink = _StoreSink(None, headers, c.s)
    r = retr(c, n, sink, size, top, next)
    try:
        d = store.begin(mailbox, digest=True)
    except Exception as e:  # StoreFull / QuotaExceeded / OSError: nothing sent for it yet
        r.close()  # (never started: nothing of it ran)
        return None, None, e
    sink.d = d
    try:
        await r
    except BaseException:
        d.abort()
        raise
    if sink.error is not None:
        d.abort()
        return None, None, sink.error
    # (Few locals: the coroutine's frame is one heap block, made at each download. `r`, its
    # retr done, holds the digest; d.size is the stored size.)
    try:
        r = d.digest()  # ends the message: the final size and the SHA-1 of the stored bytes
    except Exception as e:  # the delivery has aborted itself
        return None, None, e
    key = uid if uid is not None else hash_key(r)
    if uid is None and key in st:
        d.abort()  # stored by a session whose QUIT never completed (server without UIDL)
        return key, None, None
    first_seen = compat.now()
    if first_seen < _SANE_TIME:
        first_seen = 0  # clock not set yet: unknown, stamped by a later session (see keep_days)
    # A crash after this point is reconciled by looking for this very local UID with this size
    # and hash (not for any identical copy: the same bytes fetched earlier under another UID
    # must not pass for this one). Nothing may yield between here and the commit, so no other
    # delivery can take the UID first; if one ever did, the check fails and the message is
    # fetched again (a duplicate at worst, never a loss).
    local = d.uid_on_commit()
    st.set_pending(d.size, r, local, first_seen, "h" if top else "f", key)
    try:
        st.save(1)  # into its slot file (uidstate.py): the journal write waits for the batch's end
    except BaseException:
        d.abort()  # not committed: no temp file, open handle or busy mailbox left behind
        st.clear_pending()
        raise
    try:
        local = d.commit(False)  # the store's due merge: fetch_account's, after the batch
    except Exception as e:
        # Failed, or landed all the same (a rename that raised after it happened, and no heap
        # for the store to look: Delivery.commit): the pending entry on flash stays for the next
        # session's reconcile to decide (clientrecover.py), as after a power cut here.
        d.abort()
        return key, None, e
    st.add(key, first_seen, "h" if top else "f")
    st.clear_pending()
    # Not saved here: the record goes to the journal with the batch's others, in one write after
    # the batch (client.fetch_account; or at the end of the session, or on its way out after an
    # error). Until then its slot file on flash stands for it: a crash reconciles it as stored
    # (the same check as above).
    # close(): a header with no empty line after it counts
    return key, {"n": n, "uid": key, "local_uid": local, "size": d.size, "headers_only": top,
                 "headers": sink.headers.close() if headers else None}, None
