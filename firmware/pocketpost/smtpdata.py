"""The SMTP session's message phase (RFC 5321 DATA, from the 354 to the final reply): functions of
an smtp.Session, reached through Session.data_in.

Loaded when a session's DATA passes its checks (smtpenv.cmd_data answers smtp.GO_DATA: the
envelope's code is handed back first) and dropped when no session is in DATA any more
(smtp.data_holds, compat.release_cold, as smtpenv.py by the command phase): a session in its
command phase, the SMTP receiver's largest moment when it meets the fetcher, keeps none of this
code in the heap, and one receiving a message keeps none of the envelope's. A session holds this
module (Session._d) only between begin() and the end of its message, so no two copies of it meet.

DATA streams: a strict wire.DotUnstuffer (only CRLF.CRLF ends the text; a bare CR or LF anywhere
makes the message refused with 554 5.6.0 once its end arrives) writes into the session's fixed
block, which goes to one store.Delivery per distinct recipient mailbox (groupcommit.begin_group).
At the end groupcommit.commit_group makes every copy durable or none, and only then does the 250
go out. See smtp.py's module doc.
"""

from pocketpost import groupcommit, log
from pocketpost import storecore as store_mod  # the exceptions; store.py (Delivery) loads at Store.begin
from pocketpost.smtp import reply


def begin(s):
    """After DATA's checks (smtpenv.cmd_data): one Delivery per mailbox, the trace fields
    first, the strict un-stuffer (made at the first DATA; the block is the session's), then 354."""
    hdr = s._hdr
    s._hdr = None
    try:
        s._ds = groupcommit.begin_group(s.svc.store, s.boxes)
        for d in s._ds:
            d.write(hdr)
    except store_mod.StoreError as e:
        s._abort()
        s._reset()
        s._undata()
        s._hold_env()  # still in the command phase
        return _store_reply(e)
    if s._u is None:  # again after a MemoryError loading it
        from pocketpost.wire import DotUnstuffer  # unstuffer.py: loaded by the first DATA, not by EHLO

        s._u = DotUnstuffer(True)
    s._u.reset()
    s._fill = 0
    s._got = 0
    s.in_data = True
    return reply(354, "end data with <CR><LF>.<CR><LF>")


def data_in(s, src, start, end):
    """Session.data_in: message text src[start:end] (any chunking) -> bytes consumed. When the
    terminating CRLF.CRLF has been consumed, in_data turns False and `reply` holds the final reply."""
    u = s._u
    out = s._out
    cap = len(out)
    pos = start
    while pos < end and not u.done:
        fill = s._fill
        n = u.unstuff_into(src, pos, end, out, fill)  # from out[fill] on: no slice per chunk
        pos += u.consumed
        s._got += n
        if s._fail is not None:
            continue  # being refused: read to the end, keep nothing
        if s._got > s.svc.max_size:
            _refuse(s, reply(552, "5.3.4 message size exceeds fixed maximum message size"))
            continue
        s._fill = fill + n
        if s._fill == cap:
            _write(s, out)
    if u.done:
        _finish(s)
    return pos - start


def _refuse(s, r):
    s._fail = r
    s._abort()
    s._fill = 0


def _write(s, piece):
    s._fill = 0
    # The strict un-stuffer has checked the line ends (a bare CR or LF refuses the whole
    # message at its end, so these copies are then thrown away) and knows whether any line
    # started with ".": each recipient's Delivery skips its own scans of the same bytes.
    crlf = not s._u.bad
    dots = s._u.dots
    try:
        for d in s._ds:
            d.write(piece, crlf, dots)
    except store_mod.StoreError as e:
        _refuse(s, _store_reply(e))


def _store_reply(e):
    if isinstance(e, store_mod.QuotaExceeded):
        return reply(552, "5.2.2 mailbox full")
    if isinstance(e, store_mod.StoreFull):
        return reply(452, "4.3.1 insufficient system storage, try later")
    return reply(451, "4.3.0 local storage error, try later")


def _finish(s):
    s.in_data = False
    s._hold_env()  # back in the command phase (close() releases it)
    if s._fail is None and s._u.bad:
        # RFC 5321 2.3.8: CR and LF only as CRLF. Refused, not repaired: see smtp.py's module doc.
        _refuse(s, reply(554, "5.6.0 bare CR or LF in message text (RFC 5321 2.3.8)"))
    if s._fail is None and s._fill:
        _write(s, s._omv[: s._fill])
    r = s._fail
    if r is None:
        ds = s._ds
        s._ds = None
        try:
            uids = groupcommit.commit_group(s.svc.store, ds)
        except store_mod.StoreError as e:
            log.warning("smtp %s commit failed, nothing stored: %r", s.peer, e)
            r = _store_reply(e)
        else:
            s.stored += 1
            log.info("smtp %s stored %d octets from <%s> for %d recipient(s) in %s as %s", s.peer, s._got,
                     s.sender, s.rcpts, ",".join(s.boxes), ",".join(uids))
            r = reply(250, "2.0.0 stored as %s" % uids[0])
    else:
        log.info("smtp %s refused message from <%s>: %s", s.peer, s.sender, r.decode().strip())
    s._abort()
    s._reset()
    s.reply = r
    s._undata()  # this module, once no session is in DATA (the caller returns at once)
