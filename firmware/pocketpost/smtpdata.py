"""The SMTP session's message phase (RFC 5321 DATA, from the 354 to the final reply): functions of
an smtp.Session, reached through Session.feed (names: see smtp.py's module doc).

Loaded when a session's DATA passes its checks (smtpenv.data answers smtp._GO_DATA: the
envelope's code is handed back first) and dropped when no session is in DATA any more
(smtp.data_holds, compat.release_cold, as smtpenv.py by the command phase): a session in its
command phase, the SMTP receiver's largest moment when it meets the fetcher, keeps none of this
code in the heap, and one receiving a message keeps none of the envelope's. A session holds this
module (Session.data) only between begin() and the end of its message, so no two copies of it meet.

DATA streams: a strict wire.DotUnstuffer (only CRLF.CRLF ends the text; a bare CR or LF is content,
never a line start, and the store makes a bare LF CRLF: see smtp.py; from trusted_networks a line
ends at LF too) writes into a fixed block (made
as DATA starts, dropped at the message's end: a session between messages holds none), which
goes to one store.Delivery per distinct recipient mailbox (groupcommit.begin). At the end
groupcommit.commit makes every copy durable or none, and only then does the 250 go out. See
smtp.py's module doc. groupcommit.py is loaded for each of those two calls and dropped after it:
the message text streams without its code in the heap (~1.6 KB on the 64-bit host, at bench_heap
c's edge: a message being received meeting the fetch's first batch).
"""

from pocketpost import log
from pocketpost import storecore  # the exceptions; store.py (Delivery) loads at Store.begin
from pocketpost.compat import const, forget
from pocketpost.smtp import reply

# Refusals: smtptext.text's numbers (smtp.reply; private copies, host_tests/test_smtp_texts.py).
_T_TOO_BIG = const(24)
_T_FULL = const(38)
_T_FLASH = const(39)
_T_STORE = const(40)
# DotUnstuffer's strict for a trusted peer: a bare LF ends a line (unstuffer.py's, a private copy).
_LF_LINES = const(2)


def begin(s):
    """After DATA's checks (smtpenv.data): one Delivery per mailbox, the trace fields first, the
    strict un-stuffer (made at the first DATA; the block is the session's), then 354."""
    hdr = s.reply  # the trace fields (smtpenv.data)
    s.reply = None
    try:
        from pocketpost import groupcommit  # (not held while the text streams: dropped below)

        try:
            s.group = groupcommit.begin(s.svc.store, s.mailboxes)
        finally:
            groupcommit = None
            forget(("groupcommit",))  # loaded again for the commit (finish)
        for d in s.group:  # CRLF lines, none opening with ".": the store's scans are not needed
            d.write(hdr, True, False)
    except storecore.StoreError as e:
        s.abort()
        s.reset()
        s.forget()
        s.hold()  # still in the command phase
        return reason(e)
    if s.unstuffer is None:  # again after a MemoryError loading it
        from pocketpost.wire import DotUnstuffer  # unstuffer.py: loaded by the first DATA, not by EHLO

        # A peer in server.trusted_networks may end lines with a bare LF (<LF>.<LF> ends its
        # text), as Postfix's smtpd_forbid_bare_newline_exclusions = $mynetworks: devices that
        # send LF. Asked once a session (the un-stuffer is the session's).
        lg = s.svc.logins
        s.unstuffer = DotUnstuffer(_LF_LINES if lg is not None and lg.trusted(s.peer) else True)
    s.unstuffer.reset()
    s.fill = 0
    s.total = 0
    s.in_data = True
    return reply(354, "end data with <CR><LF>.<CR><LF>")


def feed(s, src, start, end):
    """Session.feed: message text src[start:end] (any chunking) -> bytes consumed. When the
    terminating CRLF.CRLF has been consumed, in_data turns False and `reply` holds the final reply."""
    u = s.unstuffer
    out = s.out
    cap = len(out)
    limit = s.svc.cfg["max_message_size"]
    pos = start
    while pos < end and not u.done:
        fill = s.fill
        n = u.unstuff_into(src, pos, end, out, fill)  # from out[fill] on: no slice per chunk
        pos += u.consumed
        s.total += n
        if s.total > limit:
            if s.total - n <= limit:  # over it now: too big, even when a full flash refused it first
                abort(s, reply(_T_TOO_BIG, limit))  # (its 452 would be retried for a message never stored)
            continue
        if s.reason is not None:
            continue  # being refused: read to the end, keep nothing
        s.fill = fill + n
        if s.fill == cap:
            write(s, out)
    if u.done:
        finish(s)
    return pos - start


def abort(s, r):
    """Refuse the message: r is the reply at its end; what was written is thrown away."""
    s.reason = r
    s.abort()
    s.fill = 0


def write(s, buf):
    """buf (the output block, or its filled part at the end) to every recipient's Delivery."""
    s.fill = 0
    # The strict un-stuffer has checked the line ends and knows whether any line started with
    # ".": with CRLF only, each recipient's Delivery skips its own scans of the same bytes; after a
    # bare CR or LF it scans (the store makes a bare LF CRLF and stuffs lines that start with ".").
    crlf = not s.unstuffer.bad
    dots = s.unstuffer.dots
    try:
        for d in s.group:
            d.write(buf, crlf, dots)
    except storecore.StoreError as e:
        abort(s, reason(e))


def reason(e):
    """The reply for a StoreError."""
    if isinstance(e, storecore.QuotaExceeded):
        return reply(_T_FULL)
    if isinstance(e, storecore.StoreFull):
        return reply(_T_FLASH)
    return reply(_T_STORE)


def finish(s):
    s.in_data = False
    s.hold()  # back in the command phase (close() releases it)
    if s.reason is None and s.fill:
        write(s, memoryview(s.out)[: s.fill])
    s.out = None  # (reset's too) the block's room free before the commit's code loads
    r = s.reason
    if r is None:
        from pocketpost import groupcommit  # (if this fails, s.group still has the deliveries: close() aborts them)

        ds = s.group
        try:
            # (s.group kept, s.abort() below drops it: a MemoryError out of it, before its commit
            # point, leaves them to close() to abort; else each mailbox stayed busy for good)
            uids = groupcommit.commit(s.svc.store, ds, s)  # returns once stored (raises only when not)
        except storecore.StoreError as e:
            log.warning("smtp %s commit failed, nothing stored: %r", s.peer, e)
            r = reason(e)
        else:
            # Stored: counted by the commit from its commit point on (s.stored, a small int: no
            # heap), which tells the shell that a 250 is owed should anything from there to its
            # write raise (smtpserver: it then writes a constant one and closes). A 250 lost
            # would have the sender send the message again: stored twice.
            r = b"250 2.0.0 stored\r\n"  # (a constant: no heap) when the text below finds none
            try:
                log.info("smtp %s stored %d octets from <%s> for %d recipient(s) in %s as %s", s.peer, s.total,
                         s.sender, s.count, ",".join(s.mailboxes), ",".join(uids))
                if len(uids) == len(ds):  # (a UID whose text found no heap is left out: groupcommit)
                    r = reply(250, "2.0.0 stored as %s" % uids[0])
            except MemoryError:
                pass
        finally:
            groupcommit = None
            forget(("groupcommit",))
    else:
        log.info("smtp %s refused message from <%s> (%d octets): %s", s.peer, s.sender, s.total, r.decode().strip())
    s.abort()
    s.reset()
    s.reply = r
    s.forget()  # this module, once no session is in DATA (the caller returns at once)
