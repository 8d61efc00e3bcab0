"""The sans-I/O POP3 client session (pop3client.py), alone and wired to the server session
(pop3server.py) through host_tests/dual/pop3pair.py; and the whole client (fetch_account) over
the pair. No sockets, no sleeps. Runs under CPython (pytest) and MicroPython (run.py)."""

import asyncio
import os

from pocketpost import client, log, uidstate
from pocketpost.pop3 import ProtocolError
from pocketpost import pop3client
from pocketpost.pop3client import (BODY, CONTINUE, END, GREETING, REPLY, ClientSession)
from pocketpost.store import Store

from dualtest import skip
from pop3pair import Pop3Pair
from test_pop3server import MSGS, Env, _rmtree, tmpdir
import storeread

log.set_sink(lambda line: None)

# pop3client's private events (const: no module attributes on MicroPython; checked below)
NEED_DATA = 0
LINE = 4
ENTRY = 5


def test_private_event_values_match_pop3client():
    # CPython keeps a private const as a module attribute; on MicroPython the CAPA and listing
    # tests below fail if these copies drift (they tell LINE from ENTRY by value).
    if hasattr(pop3client, "_LINE"):
        assert (pop3client._NEED_DATA, pop3client._LINE, pop3client._ENTRY) == (NEED_DATA, LINE, ENTRY)
        # pop3listing.py's copies (the greeting's and the listings' events) and its one state
        from pocketpost import pop3listing

        assert (pop3listing._NEED_DATA, pop3listing._LINE, pop3listing._ENTRY) == (NEED_DATA, LINE, ENTRY)
        assert pop3listing._STATUS == pop3client._STATUS
    s = ClientSession()
    assert s.next_event() == NEED_DATA


def raises(fn, text):
    try:
        fn()
    except ProtocolError as e:
        assert text in e.msg, e.msg
        return e
    raise AssertionError("no ProtocolError (%s)" % text)


def block(p, s):
    """Events up to END of the current multi-line reply -> (kind, value) list."""
    out = []
    while True:
        ev = p.event(s)
        assert ev, "stalled"
        if ev == END:
            return out
        if ev == ENTRY:
            out.append((s.n, bytes(s.field)))
        elif ev == LINE:
            out.append(bytes(s.line))
        elif ev == BODY:
            out.append(bytes(s.chunk))
        else:
            raise AssertionError("event %d inside a block" % ev)


def _expecting(s):
    """Commands sent whose replies have not fully arrived."""
    return len(s._pending)


def _closed(s):
    """The last reply was QUIT's +OK."""
    return s.keyword == "QUIT" and s.reply.ok


def status(p, s, ok=True):
    ev = p.event(s)
    assert ev == REPLY, ev
    assert s.reply.ok is ok, s.reply
    return s.reply


def retr_all(p, s, n, size):
    p.client_sent(s.send("RETR", n))
    status(p, s)
    body = b"".join(block(p, s))
    assert s.octets == len(body) and s.size_matches(size), (s.octets, size)
    return body


def test_session_against_the_server_at_every_split():
    for split in (1, 2, 3, 7, 64, 0):
        e = Env(apop=True)
        try:
            s = ClientSession(bufsize=600, chunk=64)
            p = Pop3Pair(e.session(), split)
            assert p.event(s) == GREETING and s.reply.ok and s.timestamp.startswith(b"<")
            p.client_sent(s.send("CAPA"))
            status(p, s)
            caps = block(p, s)
            assert b"PIPELINING" in caps and b"UIDL" in caps
            p.client_sent(s.send("USER", "alice"))
            status(p, s)
            p.client_sent(s.send("PASS", "pass word"))
            status(p, s)
            p.client_sent(s.send("STAT"))
            assert bytes(status(p, s).text).startswith(b"3 ")
            p.client_sent(s.send("UIDL", limit=3))
            status(p, s)
            uids = block(p, s)
            assert [n for n, _ in uids] == [1, 2, 3]
            p.client_sent(s.send("LIST", limit=3))
            status(p, s)
            sizes = block(p, s)
            assert sizes == [(i + 1, b"%d" % len(MSGS[i])) for i in range(3)]
            for i in range(3):
                assert retr_all(p, s, i + 1, len(MSGS[i])) == MSGS[i], split
            p.client_sent(s.send("RETR", 9))
            assert status(p, s, False).ok is False  # -ERR: no block follows
            p.client_sent(s.send("QUIT"))
            status(p, s)
            assert _closed(s) and _expecting(s) == 0
        finally:
            e.done()


def test_pipelined_commands_answered_in_order():
    e = Env()
    try:
        s = ClientSession(bufsize=600, chunk=100)
        p = Pop3Pair(e.session(), 5)
        assert p.event(s) == GREETING
        data = s.send("USER", "alice") + s.send("PASS", "pass word") + s.send("STAT") + s.send("LIST", limit=3)
        data += s.send("RETR", 2) + s.send("NOOP") + s.send("DELE", 1) + s.send("RETR", 1) + s.send("QUIT")
        p.client_sent(data)
        assert _expecting(s) == 9
        status(p, s)
        status(p, s)
        status(p, s)
        status(p, s)
        assert len(block(p, s)) == 3
        status(p, s)
        assert b"".join(block(p, s)) == MSGS[1] and s.size_matches(len(MSGS[1]))
        status(p, s)  # NOOP
        status(p, s)  # DELE 1
        status(p, s, False)
        assert s.keyword == "RETR" and s.what == "RETR 1"  # -ERR: message 1 is deleted
        status(p, s)
        assert _closed(s) and _expecting(s) == 0
    finally:
        e.done()


def _unstuff_dots(data):
    """A server that forgot to dot-stuff: its body lines "." go out bare."""
    return bytes(data).replace(b"\r\n..", b"\r\n.")


def test_server_that_forgot_to_dot_stuff_is_caught():
    """MSGS[2] holds a body line ".": sent bare it ends the message early. The size rule says
    incomplete, and the next reply (NOOP's) is body text: an error naming NOOP; the session stays
    broken."""
    e = Env()
    try:
        s = ClientSession(bufsize=600, chunk=256)
        p = Pop3Pair(e.session(), 0, _unstuff_dots)
        p.event(s)
        p.client_sent(s.send("USER", "alice") + s.send("PASS", "pass word"))
        status(p, s)
        status(p, s)
        p.client_sent(s.send("RETR", 3) + s.send("NOOP"))
        status(p, s)
        body = b"".join(block(p, s))
        assert MSGS[2].startswith(body) and len(body) < len(MSGS[2])
        assert not s.size_matches(len(MSGS[2]))
        raises(lambda: p.event(s), "reply to NOOP is neither +OK nor -ERR")
        raises(lambda: p.event(s), "NOOP")  # broken for good
        raises(lambda: s.send("QUIT"), "NOOP")
    finally:
        e.done()


def _raw(*lines):
    s = ClientSession(bufsize=600, chunk=64)
    s.feed(b"+OK hi\r\n")
    assert s.next_event() == GREETING and s.timestamp is None
    return s


def _retr(s, wire=b"+OK\r\n"):
    """Session s greeted, RETR 1 sent, and `wire` (the reply and what follows it) fed."""
    s.feed(b"+OK hi\r\n")
    s.next_event()
    s.send("RETR", 1)
    s.feed(wire)


def _events(s):
    out = []
    while True:
        ev = s.next_event()
        if not ev:
            return out
        out.append(ev)
        if ev == BODY:
            out.append(bytes(s.chunk))


def test_reply_neither_ok_nor_err_names_its_command():
    s = _raw()
    s.send("STAT")
    s.feed(b"200 fine\r\n")
    raises(s.next_event, "reply to STAT is neither +OK nor -ERR")
    s = _raw()
    s.send("RETR", 4)
    s.feed(b"OK\r\n")
    raises(s.next_event, "RETR 4")
    s = _raw()
    s.send("PASS", "secret")
    s.feed(b"+ go on\r\n")  # a continuation answers AUTH only
    e = raises(s.next_event, "reply to PASS")
    assert "secret" not in e.msg
    s = ClientSession()
    s.feed(b"* hello\r\n")
    raises(s.next_event, "malformed greeting")


def test_size_rule():
    cases = [  # (wire body, LIST size, complete?)
        (b"a\r\nbb\r\n", 7, True),  # exact, CRLF
        (b"a\nbb\n", 7, True),  # bare LF from the server, size counted with CRLF
        (b"a\nbb\n", 5, True),  # size counted with LF (an LF-stored file)
        (b"a\r\nbb\r\n", 5, True),  # CRLF on the wire, the size of the LF file
        (b"a\r\nbb\r\n", 5 + 3, False),
        (b"a\r\nbb\r\n", 7 - 1, False),
        (b"a\r\nlast\r\n", 7, True),  # no final line end: the server added CRLF before "."
        (b"a\r\nbb\r\n", 7 + 200, False),  # truncated
        (b"", 0, True),
    ]
    for body, size, ok in cases:
        for chunk in (1, 3, 64):
            s = ClientSession(bufsize=600, chunk=chunk)
            _retr(s, b"+OK\r\n" + body + b".\r\n")
            ev = _events(s)
            assert ev[0] == REPLY and ev[-1] == END
            assert b"".join(x for x in ev if isinstance(x, bytes)) == body
            assert s.size_matches(size) == ok, (body, size, chunk)


def test_bare_counts_lone_lfs_per_chunk():
    # `bare` (LFs without a CR before them in the last BODY chunk, a CR ending the chunk before
    # counted) is what lets the store skip its own LF walk: it must be exact at every split.
    body = b"a\r\nb\nc\r\n\n\rd\r\ne"
    for chunk in (1, 2, 3, 5, 64):
        s = ClientSession(bufsize=600, chunk=chunk)
        _retr(s, b"+OK\r\n" + body + b"\r\n.\r\n")
        assert s.next_event() == REPLY
        prev = 0  # nothing before the body: a leading LF is lone
        total = 0
        while True:
            ev = s.next_event()
            if ev == END:
                break
            assert ev == BODY
            c = bytes(s.chunk)
            want = 0
            for i in range(len(c)):
                if c[i] == 10 and (c[i - 1] if i else prev) != 13:
                    want += 1
            assert s.bare == want, (chunk, c, s.bare, want)
            total += want
            prev = c[-1]
        assert total == 2


def test_retr_body_path_allocates_little_per_chunk():
    # The RETR hot path (receive buffer -> clean-line walk or un-stuffer -> body chunk) runs once
    # per read of every message. It cannot be allocation-free in MicroPython (a chunk is a
    # memoryview object), but it must allocate only such small objects, never a copy of the
    # data nor a heap frame per call (a function with many locals gets one: the body is a
    # generator): with the GC off, at most per_chunk bytes per chunk, and few chunks per read
    # (whole clean lines leave in one chunk). Reads of 1,500 bytes cut lines; the body has
    # stuffed dot lines (the slow path).
    import gc

    if not hasattr(gc, "mem_alloc"):
        skip("needs gc.mem_alloc (MicroPython only)")
    per_chunk = 128  # a few memoryview objects (32-byte GC blocks on the 64-bit host), no frame
    line = b"Line of a message body, long enough to look like mail, 0123456789.\r\n"
    piece = bytearray((line * 10 + b"..a stuffed dot line\r\n" + line * 20)[:1500])
    s = ClientSession(bufsize=4096, chunk=2048)
    _retr(s)
    assert s.next_event() == REPLY
    rounds = 0
    chunks = 0
    dotted = 0
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        while rounds < 200:
            mv = s.space()
            mv[0:1500] = piece
            s.commit(1500)
            while True:
                ev = s.next_event()
                if ev != BODY:
                    break
                chunks += 1
                if s.dots:
                    dotted += 1
            rounds += 1
        grown = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert ev == 0 and rounds <= chunks <= 4 * rounds and dotted, (ev, chunks, dotted)
    # one stuffing dot per piece; the last line, cut by the last read, waits for its line end
    assert 200 * 1500 - 200 - len(line) < s.octets <= 200 * 1500 - 200, s.octets
    assert grown <= chunks * per_chunk, (grown, chunks, grown // chunks)


def test_retr_clean_body_allocates_one_view_per_read():
    # Issue 12: a read that fills the receive buffer (a fast link) leaves the last line cut; the
    # compaction moving it to the front and the view of the free space each took a memoryview
    # object per read, beside the chunk's own: 96 bytes of garbage per 4 KiB read (~24 KiB per
    # MiB), so the fetch's smallest heap for a big message depended on when the GC ran. With the
    # native copy and the receive buffer's fixed tail view only the chunk's view is left.
    import gc
    import io

    if not hasattr(gc, "mem_alloc"):
        skip("needs gc.mem_alloc (MicroPython only)")
    if pop3client._scan is None:
        skip("needs native code (nativescan.py: the scan and the copy)")
    line = b"Line of a message body, long enough to look like mail, 0123456789.\r\n"
    src = io.BytesIO(line * 3000 + b".\r\n")  # ~200 KiB: ~50 reads of the 4 KiB buffer
    s = ClientSession()
    _retr(s)
    assert s.next_event() == REPLY
    reads = 0
    chunks = 0
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        while True:
            ev = s.next_event()
            if ev == BODY:
                chunks += 1
            elif ev == END:
                break
            else:
                n = src.readinto(s.space())
                s.commit(n)
                reads += 1
        grown = gc.mem_alloc() - before
    finally:
        gc.enable()
    assert s.octets == len(line) * 3000 and reads > 40 and chunks <= reads + 1, (s.octets, reads, chunks)
    assert grown <= 40 * reads, (grown, reads, grown // reads)  # one 32-byte view per read


def _stuff(body):
    """The wire form of a body (dot-stuffed after every LF, CRLF-terminated), as a server makes it."""
    out = bytearray()
    bol = True
    for c in body:
        if bol and c == 46:
            out.append(46)
        out.append(c)
        bol = c == 10
    return bytes(out) + (b".\r\n" if bol else b"\r\n.\r\n")


def test_body_paths_agree_with_the_un_stuffer_at_every_split():
    # Clean lines go out straight from the receive buffer, the rest through the un-stuffer
    # (pop3client "The body's two paths"): whatever the mix, the reads' sizes and the buffer's,
    # the chunks must join to the body; each chunk's `bare` must count its lone LFs exactly and
    # `dots` must be set for any chunk holding a line that starts with "." (the store trusts
    # both); the line-end counts must be the body's.
    pieces = [b"plain line\r\n", b".dot\r\n", b"..two\r\n", b"\n", b"lone\n", b"cr\r", b"\r\n",
              b".", b"x" * 70 + b"\r\n", b"a\r\n", b"y" * 150, b"\r\n" * 5, b"..\r\n"]
    seed = [12345]

    def rnd(n):
        seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (seed[0] >> 8) % n

    bodies = [b"", b"a\r\n" * 60, (b"x" * 69 + b"\r\n") * 30 + b".end\r\n"]
    for _ in range(40):
        bodies.append(b"".join(pieces[rnd(len(pieces))] for _ in range(rnd(40) + 1)))
    for sent in bodies:
        body = sent
        if body and body[-1] != 10:
            body += b"\r\n"  # the server's line end before the terminator is received too
        lf = body.count(b"\n")
        crlf = body.count(b"\r\n")
        wire_len = len(b"+OK\r\n" + _stuff(sent) + b"+OK after\r\n")
        for bufsize, step in ((40, 1), (40, 7), (64, 13), (600, 64), (600, wire_len)):
            got, s = _receive(sent, bufsize, step)  # checks each chunk's `bare` and `dots`
            assert got == body, (body, bufsize, step)
            assert (s.octets, s.lf, s.crlf) == (len(body), lf, crlf), (body, bufsize, step, s.lf, s.crlf)


def test_unstuffed_dot_cr_line_reads_the_same_at_every_split():
    # A server that does not dot-stuff sends a line ".\rX": the un-stuffer holds ".\r" back
    # until it knows the line is no terminator. Cut after it, the next read must not let the
    # held octets overwrite unread input (an in-place un-stuffing did: the body came out
    # corrupted with its length unchanged, and NOOP's reply was swallowed into it).
    wire = b"+OK\r\nhello\r\n.\rXmore text\r\nabc\r\n.\r\n+OK after\r\n"

    def body(cut):
        s = ClientSession(bufsize=600, chunk=64)
        s.feed(b"+OK hi\r\n")
        s.next_event()
        s.send("RETR", 1)
        s.send("NOOP")
        fed = [wire[:cut], wire[cut:]] if cut else [wire]
        got = []
        for _ in range(64):  # bounded
            ev = s.next_event()
            if ev == 0:
                assert fed, (cut, got)
                s.feed(fed.pop(0))
            elif ev == BODY:
                got.append(bytes(s.chunk))
            elif ev == REPLY and s.keyword == "NOOP":
                return b"".join(got)
        raise AssertionError("no NOOP reply (cut %d): %r" % (cut, got))

    whole = body(0)
    assert whole.startswith(b"hello\r\n") and whole.endswith(b"abc\r\n") and b"Xmore text" in whole, whole
    for cut in range(1, len(wire)):
        assert body(cut) == whole, cut


def _receive(body, bufsize, step, chunk=16):
    """RETR of `body` fed `step` octets at a time into a session with a `bufsize` receive buffer:
    checks each chunk's `bare` and `dots` against its bytes; returns (chunks joined, session)."""
    wire = b"+OK\r\n" + _stuff(body) + b"+OK after\r\n"
    s = ClientSession(bufsize=bufsize, chunk=chunk)
    s.feed(b"+OK hi\r\n")
    s.next_event()
    s.send("RETR", 1)
    s.send("NOOP")
    got = []
    prev = 10  # before the body: a line starts
    i = 0
    for _ in range(4 * len(wire) + 16):  # bounded: a broken path must fail, not spin
        ev = s.next_event()
        if ev == 0:
            assert i < len(wire), "stalled"
            i += s.feed(wire[i:i + step])
            continue
        if ev == REPLY and s.keyword == "NOOP":
            break
        if ev != BODY:
            continue
        c = bytes(s.chunk)
        assert c, "empty chunk"
        bare = 0
        dot = False
        for k in range(len(c)):
            p = c[k - 1] if k else prev
            if c[k] == 10 and p != 13:
                bare += 1
            if c[k] == 46 and p == 10:
                dot = True
        assert s.bare == bare, (body, bufsize, step, c, s.bare)
        assert s.dots or not dot, (body, bufsize, step, c)
        got.append(c)
        prev = c[-1]
    else:
        raise AssertionError("no end after %d events" % (4 * len(wire) + 16))
    return b"".join(got), s


def _ref_scan(buf, s, e):
    """What pop3client's native scan must answer (its docstring), written plainly."""
    n = 0
    k = s
    for i in range(s, e):
        if buf[i] == 10:
            if i == k or buf[i - 1] != 13:
                return (n << 17) | (k - s)
            n += 1
            k = i + 1
            if k < e and buf[k] == 46:
                return (n << 17) | (k - s)
    return (n << 17) | 65536 | (k - s)


def test_native_scan_agrees_with_its_definition():
    # The clean-line run is found in native code on MicroPython (nativescan.py, viper): the
    # unix port has the emitter, so there it must be in use, and answer as the plain definition
    # for every start and end inside buffers mixing CRLF, lone LFs, lone CRs, dot lines and
    # octets differing from LF in one bit (its four-octets-at-a-time test must not miss an LF).
    import sys
    from pocketpost import pop3client

    if sys.implementation.name != "micropython":
        assert pop3client._scan is None  # CPython: the Python walk
        skip("the native scan is MicroPython's")
    scan = pop3client._scan
    assert scan is not None, "the viper scan did not compile"
    seed = [777]

    def rnd(n):
        seed[0] = (seed[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (seed[0] >> 8) % n

    alphabet = b"ab\r\n.\r\n\x8a\x0b\xff"  # octets near LF's bits: the four-at-a-time test
    for _ in range(40):
        buf = bytearray(alphabet[rnd(len(alphabet))] for _ in range(rnd(56) + 1))
        for s in range(len(buf) + 1):
            for e in range(s, len(buf) + 1):
                assert scan(s, e, buf, s) == _ref_scan(buf, s, e), (bytes(buf), s, e)
    # A buffer whose first octet is not word-aligned (a view one to three octets in): the scan
    # then goes octet by octet only (its word loads need aligned addresses on an ESP32); octets
    # just past e and just before s differ from the answer's (a read outside buf[s:e] shows).
    for _ in range(60):
        raw = bytearray(alphabet[rnd(len(alphabet))] for _ in range(rnd(40) + 1))
        for off in (1, 2, 3):
            v = memoryview(bytearray(b"\r" * off) + raw + b".\n")[off:off + len(raw)]
            for _ in range(12):
                s = rnd(len(raw) + 1)
                e = s + rnd(len(raw) - s + 1)
                assert scan(s, e, v, s) == _ref_scan(raw, s, e), (bytes(raw), off, s, e)
    big = bytearray((b"x" * 60 + b"\r\n") * 260)  # 4 receive buffers: both packed fields well used
    assert scan(0, len(big), big, 0) == _ref_scan(big, 0, len(big)) == (260 << 17) | 65536 | len(big)


def test_clean_run_stops_at_every_offset_of_a_dot_line_lone_lf_and_cr():
    # The clean-line run (the native scan on MicroPython, and the Python walk: both are run here)
    # must end before a line opening with ".", at a line holding a lone LF, and before a line
    # not received whole (a CR may end the data, its LF still on the wire), wherever the data in
    # the receive buffer ends and wherever the buffer's own end falls: one-octet reads and
    # buffers of every size from 12 to 27 octets put each boundary at every offset of "\r\n.",
    # of "x\ny" and of "\r" + "\n". The chunks must join to the body, with exact `bare`,
    # `dots` and line-end counts.
    from pocketpost import pop3client

    paths = [pop3client._scan, None] if pop3client._scan is not None else [None]
    specials = [b".dot\r\n", b"..\r\n", b".\r\n", b"lone\nlf\r\n", b"\n", b"cr\r", b"cr\r\r\n",
                b"\r\n", b"end"]
    saved = pop3client._scan
    try:
        for path in paths:
            pop3client._scan = path
            for special in specials:
                for off in range(7):
                    body = b"ab\r\n" * 2 + b"x" * off + b"\r\n" + special + b"\r\ntail\r\n"
                    lf = body.count(b"\n")
                    crlf = body.count(b"\r\n")
                    for bufsize in range(12, 28):
                        for step in (1, 3, 64):
                            got, s = _receive(body, bufsize, step)
                            assert got == body, (path, body, bufsize, step, got)
                            assert (s.octets, s.lf, s.crlf) == (len(body), lf, crlf), (path, body, bufsize, step)
    finally:
        pop3client._scan = saved


def test_body_paths_agree_at_every_split_with_the_python_walk_too():
    # The Python walk (CPython, or a MicroPython without the native emitter) over the same
    # bodies as test_body_paths_agree_with_the_un_stuffer_at_every_split, on MicroPython too.
    from pocketpost import pop3client

    saved = pop3client._scan
    pop3client._scan = None
    try:
        test_body_paths_agree_with_the_un_stuffer_at_every_split()
    finally:
        pop3client._scan = saved


def test_receive_buffer_full_to_a_line_end():
    # The walk may look one byte past the data (pop3client._body); when the data fills the
    # receive buffer to its last byte with a whole line, that byte is past the buffer.
    line = b"x" * 62 + b"\r\n"
    body = line * 20
    s = ClientSession(bufsize=512, chunk=64)
    assert len(s.reader.buf) == 8 * len(line)
    _retr(s)
    assert s.next_event() == REPLY
    wire = body + b".\r\n"
    got = []
    i = 0
    while True:
        ev = s.next_event()
        if ev == END:
            break
        if ev == BODY:
            got.append(bytes(s.chunk))
            continue
        i += s.feed(wire[i:])  # fills the buffer: 8 whole lines at a time
    assert b"".join(got) == body and len(got[0]) == 512 and s.crlf == 20


def test_listing_rules():
    for listing, text in ((b"2 a\r\n1 b\r\n", "out of order"), (b"1 a\r\n4 b\r\n", "out of order or range"),
                          (b"x\r\n", "malformed entry"), (b"1 a\r\n2 b\r\n3 c\r\n4 d\r\n", "does not end"),
                          (b"01 a\r\n", "malformed entry")):
        s = _raw()
        s.send("UIDL", limit=3)
        s.feed(b"+OK\r\n" + listing + b".\r\n")
        raises(lambda: _events(s), text)
    s = _raw()
    s.send("CAPA")
    s.feed(b"+OK\r\n" + b"X\r\n" * 65)
    raises(lambda: _events(s), "does not end")
    s = _raw()
    s.send("UIDL", limit=3)
    s.feed(b"+OK\r\n1 ..dot\r\n.\r\n")  # a stuffed line un-stuffed
    assert _events(s) == [REPLY, ENTRY, END] and s.keyword == "UIDL"


def test_bad_lines():
    s = _raw()
    s.send("STAT")
    s.feed(b"+OK " + b"x" * 600)
    raises(lambda: _events(s), "longer than 512")
    s = _raw()
    s.send("STAT")
    s.feed(b"+OK 1\x00 2\r\n")
    raises(lambda: _events(s), "NUL")
    s = _raw()
    s.feed(b"+OK surprise\r\n")  # nothing was asked
    raises(lambda: _events(s), "nobody asked for")


def test_auth_continuation_and_stls():
    s = _raw()
    s.send("AUTH", "PLAIN")
    s.feed(b"+ \r\n")
    assert _events(s) == [CONTINUE] and _expecting(s) == 1
    assert s.respond(b"AGFAYg==") == b"AGFAYg==\r\n"
    s.feed(b"+OK in\r\n")
    assert _events(s) == [REPLY] and s.reply.ok and _expecting(s) == 0
    s = _raw()
    s.send("STLS")
    s.feed(b"+OK go\r\n")
    assert _events(s) == [REPLY]
    s.after_stls()
    s = _raw()
    s.send("STLS")
    s.feed(b"+OK go\r\nsmuggled\r\n")
    assert s.next_event() == REPLY
    raises(s.after_stls, "after STLS")


# --- the whole client over the pair ------------------------------------------------------------
class Server:
    """An in-process server (pop3server on a store) the client reaches through a pair."""

    def __init__(self, msgs):
        self.env = Env(msgs=msgs)
        self.tamper = None
        self.split = 0
        self.pairs = []

    async def open(self, host, port, ms, ctx):
        p = Pop3Pair(self.env.session(), self.split, self.tamper)
        self.pairs.append(p)
        return p.conn()

    def sent(self):
        return [l for p in self.pairs for l in p.sent]

    def messages(self):
        return storeread.messages(self.env.store, "alice")


class Local:
    def __init__(self):
        self.dir = tmpdir()
        self.acct = {"name": "isp", "host": "pair", "port": 110, "tls": "none", "user": "alice",
                     "password": "pass word", "mailbox": "in", "state_dir": self.dir + "/state", "policy": "delete"}

    def fetch(self, srv, **kw):
        a = dict(self.acct)
        a.update(kw)
        return asyncio.run(client.fetch_account(a, Store(self.dir + "/mail"), None, srv.open))

    def messages(self):
        return storeread.messages(Store(self.dir + "/mail"), "in")

    def state(self):
        try:
            with open(self.dir + "/state/isp.uidl", "rb") as f:
                return f.read()
        except OSError:
            return b""


def test_fetch_over_the_pair():
    srv = Server(MSGS)
    loc = Local()
    try:
        st = loc.fetch(srv, policy="keep")
        assert st["fetched"] == 3 and loc.messages() == MSGS and srv.messages() == MSGS
        st = loc.fetch(srv)  # policy delete: the stored ones go, nothing fetched twice
        assert st["fetched"] == 0 and st["deleted"] == 3 and srv.messages() == []
        assert loc.messages() == MSGS
    finally:
        srv.env.done()
        _rmtree(loc.dir)


def test_store_hints_from_the_session_keep_the_plain_flag_and_line_ends():
    # Full body chunks reach the store with the session's hints (bare: no lone LF; dots: no line
    # starting with "."), which skip the store's own scans: the plain flag (file name ".p": RETR
    # sends the file as is) and the line ends must come out as the scans would make them.
    head = b"Subject: s\r\n\r\n"
    pad = b"x" * (2048 - len(head) - 2) + b"\r\n"  # the next line starts the second chunk
    msgs = [
        head + b".dot in the first chunk\r\n" + b"y" * 3000 + b"\r\n",
        head + b"y" * 5000 + b"\r\nplain\r\n",
        head + pad + b".dot opening the second chunk\r\n" + b"w" * 3000 + b"\r\n",
        head + pad + b"w" * 3000 + b"\r\n.dot in the last, short chunk\r\n",
    ]
    wire = [m.replace(b"\r\n", b"\n") if i == 1 else m for i, m in enumerate(msgs)]  # 2: bare LFs
    srv = Server(wire)
    loc = Local()
    try:
        st = loc.fetch(srv, policy="keep")
        assert st["fetched"] == 4 and loc.messages() == msgs
        names = []
        for b in os.listdir(loc.dir + "/mail/in"):
            if b.startswith("b"):
                names += os.listdir(loc.dir + "/mail/in/" + b)
        assert sorted(int(n.split(".")[1]) for n in names if n.endswith(".p")) == [2], names
    finally:
        srv.env.done()
        _rmtree(loc.dir)


def test_message_from_a_server_that_forgot_to_dot_stuff_is_never_recorded_or_deleted():
    """The issue's case: message 2 holds a bare "." body line and the server does not stuff it.
    Message 2 is neither stored, nor recorded, nor DELEted, in any number of sessions; the
    session ends without QUIT (so message 1's DELE does not commit either); once the server
    behaves, message 2 arrives whole."""
    one = b"Subject: one\r\n\r\nfirst\r\n"
    two = b"Subject: two\r\n\r\nabove\r\n.\r\nbelow the dot line, " + b"y" * 300 + b"\r\n"
    srv = Server([one, two])
    srv.tamper = _unstuff_dots
    loc = Local()
    try:
        for _ in range(2):
            for policy in ("delete", "keep"):
                try:
                    loc.fetch(srv, policy=policy)
                    raise AssertionError("the short message went unnoticed")
                except ProtocolError as e:
                    assert "RETR 2" in e.msg and "not provably complete" in e.msg, e.msg
                assert loc.messages() == [one]
                assert b"two" not in loc.state()
                sent = srv.sent()
                assert b"DELE 2" not in sent and b"QUIT" not in sent, sent
                assert srv.messages() == [one, two]
        # (both guards catch this one: the size rule, and NOOP's reply being body text)
        srv.tamper = None
        st = loc.fetch(srv, policy="delete")
        assert st["fetched"] == 1 and loc.messages() == [one, two] and srv.messages() == []
    finally:
        srv.env.done()
        _rmtree(loc.dir)


def test_short_message_with_well_formed_replies_is_not_kept():
    """The server cuts message 2 at its "." line and drops the rest: every reply is well-formed,
    only the size rule can tell. Not stored, not recorded, not deleted, no QUIT."""
    one = b"Subject: one\r\n\r\nfirst\r\n"
    two = b"Subject: two\r\n\r\nabove\r\n.\r\nbelow\r\n"

    def cut(data):
        i = data.find(b"\r\n..\r\n")
        return data[:i + 2] + b".\r\n" if i >= 0 else data

    srv = Server([one, two])
    srv.tamper = cut
    loc = Local()
    try:
        try:
            loc.fetch(srv)
            raise AssertionError("the short message went unnoticed")
        except ProtocolError as e:  # clientget.ShortMessage (its module is dropped after the batch)
            assert type(e).__name__ == "ShortMessage" and "RETR 2" in e.msg and "LIST said %d" % len(two) in e.msg, e.msg
        assert loc.messages() == [one] and b"two" not in loc.state()
        assert b"DELE 2" not in srv.sent() and b"QUIT" not in srv.sent() and srv.messages() == [one, two]
    finally:
        srv.env.done()
        _rmtree(loc.dir)


def test_desynchronised_reply_after_a_message_keeps_nothing():
    """A message whose size is right but whose following reply is garbage (the stream is out of
    step): not kept, not recorded, no QUIT."""
    one = b"Subject: one\r\n\r\nfirst\r\n"

    def garbage_after(data):
        return data + b"garbage\r\n" if b"\r\nSubject: one" in data else data

    srv = Server([one])
    srv.tamper = garbage_after
    loc = Local()
    try:
        try:
            loc.fetch(srv)
            raise AssertionError("the garbage went unnoticed")
        except ProtocolError as e:
            assert "reply to NOOP is neither +OK nor -ERR" in e.msg and "isp pair:110" in e.msg, e.msg
        # no record (the state may be an empty snapshot: the client compacts before a delivery when due)
        assert loc.messages() == [] and not [ln for ln in loc.state().split(b"\n")[1:] if ln[:1] in b"SHP" and ln]
        assert b"QUIT" not in srv.sent() and srv.messages() == [one]
    finally:
        srv.env.done()
        _rmtree(loc.dir)


def test_stalled_server_over_the_pair():
    """The server's reply to RETR stops half-way (nothing more will come): a timeout error naming
    the command, nothing kept; the next session fetches the message."""
    one = b"Subject: one\r\n\r\n" + b"z" * 500 + b"\r\n"
    srv = Server([one])
    srv.tamper = lambda d: d[:100] if b"\r\nSubject: one" in d else d
    loc = Local()
    try:
        try:
            loc.fetch(srv)
            raise AssertionError("no timeout")
        except client.Pop3Timeout as e:
            assert "RETR 1" in e.msg, e.msg
        assert loc.messages() == [] and b"QUIT" not in srv.sent()
        srv.tamper = None
        assert loc.fetch(srv)["fetched"] == 1 and loc.messages() == [one]
    finally:
        srv.env.done()
        _rmtree(loc.dir)


def test_store_takes_dotted_memoryview_chunks_with_few_objects():
    # Issue 12: once a body has had a dot line, the session hands the store its un-stuffed out
    # chunk as a memoryview with dots=True. Such a write was copied through the store's input
    # buffer with a slice of the data, a view of the buffer, a new memoryview of it and a slice
    # of that for the digest (~200 bytes of garbage per chunk on the 64-bit host); now the copy
    # takes the chunk whole and the buffer's own view serves: the digest's slice and one per
    # piece written are left. The message kept is the same. (A directory store: littlefs's
    # Python block device would allocate too.)
    import gc

    if not hasattr(gc, "mem_alloc"):
        skip("needs gc.mem_alloc (MicroPython only)")
    chunk = memoryview(bytearray(b"a line of the body\r\n.a dot line\r\nmore of it\r\n"))
    root = tmpdir()
    try:
        st = Store(root + "/mail", quota=0, reserve=0)
        st.create("x")
        d = st.begin("x", digest=True)
        d.write(chunk, True, True)  # the input buffer and its view are made at the first one
        gc.collect()
        gc.disable()
        try:
            before = gc.mem_alloc()
            for _ in range(50):
                d.write(chunk, True, True)
            grown = gc.mem_alloc() - before
        finally:
            gc.enable()
        d.digest()
        d.commit()
        assert grown <= 50 * 112, (grown, grown // 50)  # three 32-byte views per chunk
        mb = st.lock("x")
        try:
            f = mb.open(0)
            got = f.read()
            f.close()
            assert got == bytes(chunk) * 51, got[:200]  # (open() gives the message, un-stuffed)
        finally:
            mb.release()
    finally:
        _rmtree(root)
