"""The client's end of a session and its first-pass deletions (client.fetch_account): DELE of the
messages stored by earlier sessions that the policy deletes (deles: pipelined), and after the
downloads the refused DELEs put right, QUIT (quit), and the state's records kept or dropped and
saved. Cold code: neither runs
while the session logs in or while a message streams in, so it is loaded for its moment and, on
MicroPython, dropped after it (its heap is not held at the fetch's peaks; its qstrs stay)."""

import struct

from pocketpost import log
from pocketpost.client import ErrReply, _bit, _failed, _set
from pocketpost.compat import const, forget
from pocketpost.uidstate import table_key

# DELEs sent in one write to a server that offers PIPELINING (16 lines of <= 16 octets).
_PIPELINE = const(16)
# After QUIT +OK, the polite close (TLS close_notify) is waited for this long at most.
_CLOSE_MS = const(2000)
_SANE_TIME = const(1577836800)  # client._SANE_TIME: a clock before 2020 is unset
# A content key (server without UIDL) not seen for this long after a session whose QUIT result was
# lost is dropped.
_SYNTH_DAYS = const(30)
_DAY = const(86400)
# uidstate's record layout and flags (its const() names are not module attributes on
# MicroPython): keep equal (host_tests/test_fetch_heap.py checks).
_REC = const(11)
_KEY = const(8)
_FL = const(10)
_MAX_DAYS = const(65535)
_F_HEADERS = const(0x01)
_F_SYNTH = const(0x02)
_F_SEEN = const(0x04)
_F_DELETED = const(0x08)


async def deles(c, ns):
    """DELE each message number in ns, pipelined when the server offers PIPELINING (RFC 2449):
    one write, then the replies in order. A list of accepted flags (see Pop3Client.dele)."""
    if c.caps is None or "PIPELINING" not in c.caps:
        out = []
        for n in ns:
            out.append(await c.dele(n))
        return out
    data = b""
    for n in ns:
        data += c._out("DELE", n)
    await c._send(data, "DELE")
    out = []
    for n in ns:
        try:
            await c._status()
            out.append(True)
        except ErrReply as e:
            log.warning("pop3 %s", e.msg)
            out.append(False)
    return out


async def dele_stored(c, count, dele):
    """DELE every message number whose bit is set in `dele`, _PIPELINE at a time. Returns
    (accepted count, bits of the refused ones or None)."""
    deleted = 0
    refused = None
    batch = []
    for n in range(1, count + 2):
        if n <= count and _bit(dele, n):
            batch.append(n)
        if batch and (len(batch) == _PIPELINE or n > count):
            oks = await deles(c, batch)
            for i in range(len(batch)):
                if oks[i]:
                    deleted += 1
                else:
                    if refused is None:
                        refused = bytearray(len(dele))
                    _set(refused, batch[i])
            batch = []
    return deleted, refused


async def quit(c):
    """QUIT: +OK means the server committed our DELEs (RFC 1939 UPDATE state); then the polite
    close. Returns the reply."""
    try:
        rep = await c.cmd("QUIT")
    except ErrReply as e:
        if e.code:  # [SYS/TEMP]: no DELE committed; said, with what to do (clientfail.TEXTS[12])
            raise ErrReply(_failed("text", 12, e.msg, e.code), e.code)
        raise
    conn = c._conn
    c._conn = None
    if conn is not None:
        await conn.shutdown(_CLOSE_MS)
    return rep


async def finish(c, st, count, refused, now, sane):
    """After the downloads: the records of refused DELEs cleared again, QUIT (+OK: the server
    committed this session's DELEs), then every record kept or dropped (see keep) and saved."""
    if refused is not None:
        # Rare: DELEs refused for messages stored earlier. Their records were marked when the
        # policy chose them; find their UIDs again (refused ones are still listed).
        # clientplan (its listing) and uidcompact (clear_deleted) are loaded for this rare case
        # and dropped after it: uidcompact once for all of them (a read-only maildrop refuses
        # every DELE), not once per refused message as st._cold would.
        from pocketpost import clientplan, uidcompact
        from pocketpost.pop3 import valid_uid  # (pop3listing.py: dropped with clientplan)

        def on_refused(n, uid):
            if _bit(refused, n) and valid_uid(uid):
                uidcompact.clear_deleted(st, bytes(uid))

        try:
            await clientplan.listing(c, "UIDL", count, on_refused)
        finally:
            clientplan = uidcompact = on_refused = valid_uid = None
            forget(("clientplan", "uidcompact", "pop3listing"))
    await quit(c)

    def keep(first_seen, flag, synthetic, seen, dele):
        if dele:
            return None  # the server committed the DELEs: those UIDs are gone for good
        if synthetic:
            if first_seen < _SANE_TIME:
                return now if sane else first_seen
            if seen:
                return first_seen  # checked again this session: still on the server
            if sane and now - first_seen > _SYNTH_DAYS * _DAY:
                return None  # best-effort keys of a session whose QUIT result was lost
            return first_seen
        if not seen:
            return None  # no longer on the server: it can never be offered again
        return first_seen

    retain(st, keep)
    if st.dirty:
        st.save()


def retain(st, fn):
    """Keep or drop every record: fn(first_seen, flag, synthetic, seen, deleted) returns None to
    drop it, else its (possibly new) first_seen. One pass over the table, in place (the client:
    retain(st, keep) in finish, after QUIT)."""
    buf = st.buf
    mv = memoryview(buf)
    fresh = None
    if st.added:  # record key -> full key of the entries added since the last save (normally one)
        fresh = {}
        for key in st.added:
            fresh[table_key(key)] = key
    w = 0
    for i in range(st.n):
        o = i * _REC
        b = buf[o + _FL]
        fs = struct.unpack_from(">H", buf, o + _KEY)[0]  # first_seen in days (uidstate's theory)
        if fs:
            fs = _SANE_TIME + (fs - 1) * _DAY
        r = fn(fs, "h" if b & _F_HEADERS else "f", bool(b & _F_SYNTH), bool(b & _F_SEEN),
               bool(b & _F_DELETED))
        if r is None or r != fs:
            st.dirty = True
            k = bytes(buf[o:o + _KEY])
            if fresh is not None and k in fresh:
                if r is None:  # never on file: just forget its full key
                    del st.added[fresh[k]]
            elif r is None:
                st._edit(0x58, k, 0, 0)  # X
            else:
                st._edit(0x54, k, r, b)  # T
            if r is None:
                continue
            struct.pack_into(">H", buf, o + _KEY, 0 if r < _SANE_TIME else min((r - _SANE_TIME + _DAY - 1) // _DAY + 1, _MAX_DAYS))
        if w != i:
            mv[w * _REC:(w + 1) * _REC] = mv[o:o + _REC]
        w += 1
    st.n = w
