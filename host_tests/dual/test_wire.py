"""The shared wire core: line framing and the dot-stuffing codec, fed at every split point.
Runs under CPython (pytest) and MicroPython (host_tests/dual/run.py)."""

from pocketpost.wire import (
    BAD_LINE,
    OVERLONG,
    DotStuffer,
    DotUnstuffer,
    LineReader,
)
from wirefeed import MAX_COMMAND_LINE, lines_of, stuff, unstuff

STREAM = b"USER alice\r\nPASS se cret\nSTAT\r\n\r\nLIST 1\r\nQU\x00IT\r\n" + b"X" * 300 + b"\r\nNOOP\r\n"
EXPECTED = [b"USER alice", b"PASS se cret", b"STAT", b"", b"LIST 1", BAD_LINE, OVERLONG, b"NOOP"]


def test_lines_basic():
    assert lines_of(STREAM, []) == EXPECTED


def test_every_split_position_gives_same_events():
    for cut in range(len(STREAM) + 1):
        assert lines_of(STREAM, [cut]) == EXPECTED, cut
        assert lines_of(STREAM, [cut], via_space=True) == EXPECTED, cut
    for a in range(0, len(STREAM), 7):
        for b in range(a, len(STREAM), 13):
            assert lines_of(STREAM, [a, b]) == EXPECTED, (a, b)


def test_one_byte_at_a_time():
    assert lines_of(STREAM, range(1, len(STREAM))) == EXPECTED
    assert lines_of(STREAM, range(1, len(STREAM)), via_space=True) == EXPECTED


def test_line_length_boundary():
    ok = b"A" * (MAX_COMMAND_LINE - 2) + b"\r\n"  # exactly 255 with CRLF
    bad = b"A" * (MAX_COMMAND_LINE - 1) + b"\r\n"  # 256
    assert lines_of(ok, []) == [b"A" * (MAX_COMMAND_LINE - 2)]
    assert lines_of(bad + b"NOOP\r\n", []) == [OVERLONG, b"NOOP"]
    # the tail of an overlong line is never read as a command, even if it looks like one
    evil = b"A" * 255 + b"DELE 1\r\nQUIT\r\n"
    for cut in range(len(evil)):
        assert lines_of(evil, [cut]) == [OVERLONG, b"QUIT"], cut
    # a huge line spanning many buffers still yields exactly one error
    assert lines_of(b"B" * 5000 + b"\nSTAT\n", range(0, 5000, 100)) == [OVERLONG, b"STAT"]


def test_bigger_buffer_same_line_limit():
    data = b"+OK " + b"x" * 600 + b"\r\n+OK fine\r\n"
    assert lines_of(data, [], max_line=512, bufsize=4096) == [OVERLONG, b"+OK fine"]
    assert lines_of(data, range(1, len(data), 3), max_line=512, bufsize=1024) == [OVERLONG, b"+OK fine"]


def test_buffered_and_clear():
    r = LineReader()
    r.feed(b"STLS\r\nUSER evil\r\n")
    assert r.next_line() == b"STLS"
    assert r.pending() == len(b"USER evil\r\n")
    assert bytes(r.buf[r.start : r.end]) == b"USER evil\r\n"
    r.clear()
    assert r.next_line() is None and r.pending() == 0


BODIES = [
    b"",
    b"a",
    b"hello\r\nworld\r\n",
    b"no final newline",
    b".\r\n",
    b"..\r\n.\r\n.x\r\n",
    b"line\r\n.\r\nafter dot line\r\n",
    b"\r\n.\r\n\r\n",
    b".leading\r\n.",
    b"8bit \xff\xfe\x00\x80 bytes\r\n.\xff\r\n",
    b"ends with cr\r",
]


def test_stuff_known_forms():
    assert stuff(b"", 4, 16) == b".\r\n"
    assert stuff(b"a\r\n", 4, 16) == b"a\r\n.\r\n"
    assert stuff(b"a", 4, 16) == b"a\r\n.\r\n"
    assert stuff(b".a\r\n.\r\n", 3, 16) == b"..a\r\n..\r\n.\r\n"


def test_unstuff_known_forms():
    assert unstuff(b".\r\n", 1, 4) == (b"", b"", True)
    assert unstuff(b"..a\r\n..\r\n.\r\n+OK next\r\n", 5, 8) == (b".a\r\n.\r\n", b"+OK next\r\n", True)
    # sloppy peers: bare LF line ends and LF.LF terminator
    assert unstuff(b"a\n..b\n.\n", 2, 8) == (b"a\n.b\n", b"", True)
    # not yet terminated
    assert unstuff(b"a\r\n.", 1, 8) == (b"a\r\n", b"", False)


def test_roundtrip_every_chunk_size():
    for body in BODIES:
        expect = body if body.endswith(b"\n") or not body else body + b"\r\n"
        ref = stuff(body, 1 << 20, 1 << 12)
        for chunk in range(1, len(ref) + 2):
            for outsize in (1, 2, 3, 64):
                assert stuff(body, chunk, outsize) == ref, (body, chunk, outsize)
                got, rest, done = unstuff(ref + b"+OK", chunk, outsize)
                assert done and rest == b"+OK" and got == expect, (body, chunk, outsize, got)


def test_unstuff_terminator_at_every_split():
    wire = b"x\r\n..\r\n.y\r\n.\r\n-ERR z\r\n"
    for cut in range(len(wire) + 1):
        u = DotUnstuffer()
        out = bytearray(64)
        body = b""
        rest = b""
        for piece in (wire[:cut], wire[cut:]):
            made = u.unstuff_into(piece, 0, len(piece), out)
            used = u.consumed
            body += bytes(out[:made])
            rest += piece[used:]
        assert body == b"x\r\n.\r\ny\r\n" and rest == b"-ERR z\r\n", cut


def test_unstuff_dots_flag_is_set_before_the_dot_line_is_written():
    # `dots` (a body line starts with ".") spares the store its own search, so it must be set no
    # later than the output byte "." of such a line, at every split and output size.
    for body in BODIES + [b".x\r\n", b"a\r\n.\r\n", b"a\r\nb.c\r\n", b"a.\r\n.b"]:
        wire = stuff(body, 1 << 20, 1 << 12)
        for chunk in (1, 2, 3, 7, 64):
            for outsize in (1, 2, 64):
                u = DotUnstuffer()
                out = bytearray(outsize)
                got = b""
                i = 0
                while not u.done and i < len(wire):
                    made = u.unstuff_into(wire, i, min(len(wire), i + chunk), out)
                    i += u.consumed
                    got += bytes(out[:made])
                    has = got.startswith(b".") or b"\n." in got
                    assert not has or u.dots, (body, chunk, outsize, got)
                assert u.dots == (got.startswith(b".") or b"\n." in got), (body, got)


def test_stuff_large_body_fixed_buffers():
    line = b"The quick brown fox. Jumps.\r\n.dot line\r\n"
    body = line * 2000
    s = DotStuffer()
    out = bytearray(1024)
    u = DotUnstuffer()
    back = bytearray(512)
    total = 0
    for i in range(0, len(body), 700):
        piece = body[i : i + 700]
        pos = 0
        while pos < len(piece):
            made = s.stuff_into(piece, pos, len(piece), out)
            used = s.consumed
            pos += used
            q = 0
            while q < made:
                m2 = u.unstuff_into(out, q, made, back)
                u2 = u.consumed
                assert bytes(back[:m2]) == body[total : total + m2]
                total += m2
                q += u2
    end = s.finish()
    made = u.unstuff_into(end, 0, len(end), back)
    assert u.done and made == 0 and total == len(body)



def test_unstuff_line():
    from pocketpost.wire import unstuff_line

    assert unstuff_line(b".") is None
    assert unstuff_line(b"..") == b"." and unstuff_line(b".x") == b"x"
    assert unstuff_line(b"1 u1") == b"1 u1" and unstuff_line(b"") == b""


# --- strict mode (SMTP DATA): the SMTP-smuggling family (CVE-2023-51764 and siblings) -----------

# Every end-of-data look-alike a lenient receiver (or a lenient hop before us) might accept.
SMUGGLE_ENDS = [
    b"\n.\n",  # LF.LF (Postfix < 3.8.4, Sendmail)
    b"\n.\r\n",  # LF.CRLF
    b"\r\n.\n",  # CRLF.LF (Exchange / Cisco family)
    b"\r.\r",  # CR.CR
    b"\r.\r\n",  # CR.CRLF
    b"\r\n.\r",  # CRLF.CR (then not LF)
    b"\n.\r",  # LF.CR
    b"\r\n.\r\r\n",  # CRLF.CR CRLF
    b"\r\n\r.\r\n",  # CRLF CR.CRLF: the line starts with a bare CR
    b"\r\n.\r\x00\n",  # NUL between CR and LF
    b"\n\r.\r\n",  # LF CR . CRLF
]
SMUGGLED = b"MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nFrom: ceo\r\n\r\nwire money"
REAL_END = b"\r\n.\r\n"


def _strict_all_ways(wire, strict=True):
    """(body, rest, done, bad) agreed by every chunk and out size; raises if they disagree."""
    ref = None
    for chunk in (1, 2, 3, 5, 7, 64, 4096):
        for outsize in (1, 3, 16, 4096):
            bad = []
            got = unstuff(wire, chunk, outsize, strict, bad) + (bad[0],)
            if ref is None:
                ref = got
            assert got == ref, (wire, chunk, outsize, got, ref)
    return ref


def test_strict_clean_messages():
    for body in (b"", b"a\r\n", b"hello\r\nworld\r\n", b"\r\n\r\n", b"8bit \xff\x80\r\n"):
        body2, rest, done, bad = _strict_all_ways(body.replace(b"\r\n.", b"\r\n..") + b".\r\nQUIT\r\n")
        assert (body2, rest, done, bad) == (body, b"QUIT\r\n", True, False), body
    # stuffed dots are removed only at the start of a CRLF line
    assert _strict_all_ways(b"..a\r\nb..\r\n...\r\n.\r\n")[:2] == (b".a\r\nb..\r\n..\r\n", b"")


def test_strict_smuggling_variants_are_content_and_bad():
    for end in SMUGGLE_ENDS:
        wire = b"Subject: hi\r\n\r\nbody" + end + SMUGGLED + REAL_END + b"QUIT\r\n"
        body, rest, done, bad = _strict_all_ways(wire)
        assert done and rest == b"QUIT\r\n", end  # ended only at the real CRLF.CRLF
        assert SMUGGLED in body, end  # the smuggled commands stayed inside the message
        assert bad, end  # and the message is refused


def test_strict_bare_cr_or_lf_anywhere_is_bad():
    for body in (b"a\nb\r\n", b"a\rb\r\n", b"a\r\n\n", b"\n", b"\r", b"x\r\r\n", b"x\n\r\n"):
        got = _strict_all_ways(body + b".\r\n" + REAL_END)
        assert got[2] and got[3], body


def test_strict_never_ends_on_lenient_forms():
    # without a real terminator nothing ends, whatever look-alikes pass by
    for end in SMUGGLE_ENDS:
        body, rest, done, bad = _strict_all_ways(b"x" + end + b"y" + end)
        assert not done and bad, end
    # the lenient mode (POP3 client) still ends on LF.LF
    assert unstuff(b"a\n.\nrest", 1, 8)[2]


# --- strict=2 (SMTP DATA from a peer in trusted_networks): lines end at LF, checked ---------------
LF_LINES = 2  # unstuffer._LF_LINES
LF_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n"]  # a "." line, its line ends LF or CRLF


def _lf_all_ways(wire):
    return _strict_all_ways(wire, LF_LINES)


def test_lf_lines_end_at_lf_dot_lf_and_unstuff_lf_lines():
    # A device's LF text: its "." line ends it, its stuffed dots are removed as after CRLF, the
    # rest is the next command; `bad` says a bare LF is there (the store makes it CRLF).
    assert _lf_all_ways(b"a\n..b\n.c\r\n..\n.\nQUIT\r\n") == (b"a\n.b\nc\r\n.\n", b"QUIT\r\n", True, True)
    for end in SMUGGLE_ENDS:
        body, rest, done, bad = _lf_all_ways(b"x" + end + SMUGGLED + REAL_END + b"QUIT\r\n")
        assert done, end
        if end in LF_ENDS:  # ended at the look-alike: what follows is commands
            assert (body, rest) == (b"x" + end[: end.index(b".")], SMUGGLED + REAL_END + b"QUIT\r\n"), end
            assert bad == (end[0] == 10), end  # a bare LF in the text ("x\n"), none in "x\r\n"
        else:  # CR alone ends no line: content, as with strict=True
            assert SMUGGLED in body and rest == b"QUIT\r\n" and bad, end


def test_lf_lines_clean_crlf_text_is_as_strict():
    # CRLF text: the same body and end as strict=True, `bad` False (the store's scans skipped)
    for wire in (b"hello\r\n..x\r\n.y\r\n\r\n.\r\nQUIT\r\n", b".\r\n", b"a\r\n.\r\n"):
        assert _lf_all_ways(wire) == _strict_all_ways(wire), wire
        assert not _lf_all_ways(wire)[3], wire
    for body in (b"a\rb\r\n", b"x\r\r\n", b"\r"):  # a bare CR: `bad`, not a line end
        got = _lf_all_ways(body + b".\r\n" + REAL_END)
        assert got[2] and got[3] and got[0].startswith(body), body


def _copy_left(buf, s, e, d):
    # what nativescan's copy does (a left move inside one buffer), in Python
    for i in range(e - s):
        buf[d + i] = buf[s + i]


def test_reader_head_keeps_one_tail_view_and_the_same_lines():
    # head (the POP3 client's receive buffer, issue 12): a rest of at most `head` bytes moves to
    # end at buf[head] and space() is then the one view of buf[head:] made at the start; a
    # longer rest goes to buf[0] as without a head. The lines read are the same either way, with
    # the slice copy or a copy function.
    data = b"".join(b"line %d %s\r\n" % (i, b"x" * (i * 7 % 300)) for i in range(200))
    for copy in (None, _copy_left):
        r = LineReader(512, 1024, 64, copy)
        plain = LineReader(512, 1024)
        got = []
        want = []
        tails = 0
        pos = 0
        while pos < len(data) or r.pending():
            sp = r.space()
            if len(sp) == 1024 - 64:
                tails += 1
                assert sp is r.space()  # the same object, no new slice
            n = min(len(sp), len(data) - pos, 100 + pos % 400)
            sp[0:n] = data[pos : pos + n]
            r.commit(n)
            pos += n
            while True:
                ln = r.next_line()
                if ln is None:
                    break
                got.append(ln)
            if not n:
                break
        k = 0
        while k < len(data):
            k += plain.feed(data[k:])
            while True:
                ln = plain.next_line()
                if ln is None:
                    break
                want.append(ln)
        assert got == want and len(got) == 200 and tails > 20, (len(got), len(want), tails)
