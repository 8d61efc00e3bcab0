"""The client's listing pass (client.fetch_account): per batch of new messages, UIDL read and
each message decided (download, already stored, due for deletion by the policy, keyed by content
when its UIDL is unusable), then LIST for the sizes of those to download. Cold code: it runs
between the login and the downloads, so it is loaded for each pass and, on MicroPython, dropped
after it (not held at the login or while a message streams in; its qstrs stay). Its state lives
in the caller's bit arrays and `ctl`, not here: nothing of this module outlives the call."""

from pocketpost import log, pop3listing
from pocketpost.client import ClientError, ErrReply, _bit, _failed, _set
from pocketpost.compat import const
from pocketpost.pop3 import ProtocolError, parse_number, valid_uid

# New messages whose full UIDs are held at once: more wait for the next UIDL pass of the session.
# Each costs its UID (a bytes object) and a slot in want, sizes (and seen_new during the pass),
# held through the batch's downloads: at 64 a first fetch of a big mailbox needed ~6 KiB more
# than at 16 (docs/FIGURES.md, bench_heap dfirst); the price is a UIDL and LIST pass per 16 new
# messages, not per 64 (a first fetch only: a keep mailbox's later sessions have a few new).
_NEW_BATCH = const(16)
# Octets per LIST/UIDL line assumed for the listing's deadline (a 70-octet UID, the number).
_LISTING_LINE = const(80)
_SANE_TIME = const(1577836800)  # client._SANE_TIME: a clock before 2020 is unset
_DAY = const(86400)
# uidstate's per-session flag bits (mark's return value) and record layout (const() names are not
# module attributes on MicroPython): keep equal (test_fetch_heap checks).
_F_SEEN = const(0x04)
_F_NEW = const(0x20)
_F_SYNTH = const(0x02)
_REC = const(11)
_FL = const(10)  # the flags byte's offset in a record
# The texts of its errors: clientfail.TEXTS[n] (cold: a text here is a string object held through
# every listing pass, one of the fetch's peaks); private copies of its numbers
# (host_tests/test_fetch_heap.py checks them).
_T_LATER = const(12)
_T_NO_UIDL = const(14)
_T_SIZE = const(15)
_T_LIST = const(16)


async def listing(c, keyword, count, on_line):
    """LIST or UIDL for the whole mailbox on Pop3Client c: calls on_line(n, field) per entry.
    Entries must be numbered 1..count in increasing order (every server we know lists in order),
    which bounds the reply. Returns False when the server answered -ERR (UIDL unsupported)."""
    d = c.deadline(c.read_timeout, count * _LISTING_LINE)
    s = c.s
    await c._send(c._out(keyword, limit=count), keyword)
    try:
        await c._status(d)
    except ErrReply as e:
        if e.code:  # [IN-USE], [SYS/TEMP]: refused for now, not a server without the command
            raise ErrReply(_failed("text", _T_LATER, e.msg, e.code), e.code)
        return False

    def one(ev):
        on_line(s.n, s.field)

    await pop3listing.block(c, d, one)
    return True


async def batch(c, st, a, count, done, dele, fb, ctl, stats, now, sane):
    """One pass: returns (want, sizes): message number -> UID (None: keyed by content) of this
    batch's messages to download, and their LIST sizes. Marks the state records of the UIDs
    listed ("seen"; "deleted" for those the policy deletes, with their `dele` bit set, in the
    first pass: ctl[0]); ctl[1] is set when more new messages wait; ctl[2] is the room left in
    the state (set here); ctl[3], the downloads left under the cap (the caller's)."""
    name = a["name"]
    policy = a["policy"]
    want = {}  # n -> uid (None: keyed by content), this batch's messages to download
    seen_new = {}  # new uid -> n, this batch
    whole = {}  # n -> None: stored as headers only, in want if LIST says max_size lets it through now
    dups = {}  # stored UIDs listed twice (first pass)

    def take(n, uid):
        if n in want:
            return False
        # Not past the downloads left under the cap (a UID held for none is heap for nothing; the
        # table has room for those only, uidstate.py): first, so that is not "state full".
        if len(want) >= ctl[3]:
            ctl[1] = True
        elif len(want) >= ctl[2]:
            stats["state_full"] = True
        elif len(want) >= _NEW_BATCH:
            ctl[1] = True
        else:
            want[n] = uid
            return True
        return False

    def by_content(n):
        _set(fb, n)
        if not _bit(done, n):
            take(n, None)

    def on_uidl(n, uid):
        if _bit(done, n):
            return
        if _bit(fb, n) or not valid_uid(uid):
            by_content(n)
            return
        uid = bytes(uid)
        m = seen_new.get(uid)
        if m is not None:  # a new UID listed twice: neither copy may be keyed by it
            if want.get(m) is not None:
                want[m] = None
            _set(fb, m)
            by_content(n)
            return
        if ctl[0]:
            bits = st.mark(uid, seen=True)
            if bits >= 0 and bits & _F_SEEN:  # a stored UID listed twice: which copy is stored is unknown
                dups[uid] = None
                by_content(n)
                return
            if bits >= 0:
                e = st.get(uid)
                if e[0] < _SANE_TIME and sane:
                    st.add(uid, now, e[1])  # first seen while the clock was unset: its age starts now
                if e[1] != "f":
                    # A headers-only copy: the body still lives on the server only. Taken whole
                    # once max_size lets it through (raised, or 0; its LIST size is checked below):
                    # a header block is no copy of the message. It needs no new state entry.
                    # (Beyond this batch's room: at a later session.)
                    if len(want) < _NEW_BATCH:
                        want[n] = uid
                        whole[n] = None
                    return
                if policy == "delete" or (policy == "keep_days" and sane and e[0] >= _SANE_TIME
                                          and now - e[0] >= a["keep_days"] * _DAY):
                    _set(dele, n)
                    st.mark(uid, deleted=True)  # counts once the server accepts DELE n
                return
        else:
            bits = st.mark(uid)
            if bits >= 0:
                if bits & _F_NEW:  # stored this session under another message number
                    by_content(n)
                return
        if take(n, uid):
            seen_new[uid] = n

    def on_dup(n, uid):  # the first copies of stored UIDs found listed twice
        if bytes(uid) in dups:
            want.pop(n, None)  # (a headers-only copy taken whole by its UID: by content instead)
            whole.pop(n, None)
            dele[n >> 3] &= ~(1 << (n & 7)) & 0xFF
            st._cold("clear_deleted", bytes(uid))  # rare (uidcompact.py: loaded for it)
            by_content(n)

    ctl[1] = False
    # The table's room: max_entries less the entries, or (a smaller table, made for this
    # session's count: uidstate.py) more than this session can add; < 0 after the limit was lowered
    ctl[2] = min(a["max_entries"], len(st.buf) // _REC) - len(st)
    has_uidl = await listing(c, "UIDL", count, on_uidl)  # (refused for now, [SYS/TEMP]: raises)
    if not has_uidl:
        buf = st.buf
        for i in range(st.n):  # a UID stored before: this server has UIDL, refused for now
            if not buf[i * _REC + _FL] & _F_SYNTH:
                raise ClientError(_failed("no_uidl", c, st.path))
    if has_uidl and dups:
        await listing(c, "UIDL", count, on_dup)
    if not has_uidl:
        if policy != "delete":
            raise ClientError(_failed("text", _T_NO_UIDL, c.where))
        if ctl[0]:
            log.warning("fetch %s: server has no UIDL; best effort by content hash", name)
        for n in range(1, count + 1):
            if not _bit(done, n) and not take(n, None) and (ctl[1] or stats["state_full"]):
                break
    elif ctl[0] and any(fb):
        log.warning("fetch %s: some UIDLs are unusable (invalid or listed twice): those messages are "
                    "recognised by content, downloaded again each session", name)
    sizes = {}

    def on_list(n, field):
        if n in want:
            try:
                sizes[n] = parse_number(field, 0)
            except ProtocolError:
                raise ProtocolError(_failed("text", _T_SIZE, c.where, n))

    if want and not await listing(c, "LIST", count, on_list):
        raise ProtocolError(_failed("text", _T_LIST, c.where))
    m = a["max_size"]
    for n in whole:
        if m and sizes.get(n, 0) > m:  # still oversize: its header block is stored already
            del want[n]
            sizes.pop(n, None)
    return want, sizes
