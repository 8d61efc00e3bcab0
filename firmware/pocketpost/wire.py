"""Sans-I/O wire rules shared by every line protocol pocketpost speaks (POP3 server and client,
SMTP receiver; uidstate and headers frame their lines with LineReader too).

Theory of operation
-------------------
Nothing here touches a socket. A shell reads bytes from its peer straight into a reader's
preallocated buffer (`LineReader.space()` / `commit(n)`) or hands it bytes (`feed`), then pulls
complete lines with `next_line()`. A line longer than the reader's limit produces exactly one
`OVERLONG` result; its tail is discarded up to the next line end, so it can never be read as a new
command. A line holding a NUL produces `BAD_LINE`. Both CRLF and a bare LF end a line; we always
send CRLF.

Multi-line blocks (RFC 1939 section 3) travel dot-stuffed. `DotStuffer` turns a message body into
its wire form and `DotUnstuffer` turns a received block back into the body while spotting the
CRLF.CRLF terminator. Both are streaming transformers: they keep their few bytes of state between
calls, so chunk boundaries may fall anywhere, even inside "\\r\\n." or "\\r\\n.\\r\\n", and they write
into a caller-supplied output buffer, so nothing allocates in proportion to the message.

Both transformers search for the rare "\\n." pattern with `bytes.find` (C speed) instead of
walking lines in Python: a body with no line starting with "." is copied in one slice per chunk.

`DotStuffer` and `terminator` (the servers' side) are in wirestuff.py, loaded at their first use
through this module's __getattr__ (`from pocketpost.wire import DotStuffer` works as before): a
fetch, which only un-stuffs, never holds them.
"""

from pocketpost.compat import const

# RFC 2449 section 4: "command lines ... MUST NOT exceed 255 octets, including the terminating CRLF".
MAX_COMMAND_LINE = const(255)
# RFC 2449 section 4: a response's first line is at most 512 octets, including the CRLF.
MAX_RESPONSE_LINE = const(512)

# Results of LineReader.next_line() other than a line.
OVERLONG = const(-1)  # the line exceeded the limit; its tail is being discarded
BAD_LINE = const(-2)  # the line held a NUL octet

_LF = const(10)
_CR = const(13)
_DOT = const(46)
CRLF = b"\r\n"
TERMINATOR = b".\r\n"


def __getattr__(name):
    if name == "DotStuffer" or name == "terminator":
        from pocketpost import wirestuff

        return getattr(wirestuff, name)
    raise AttributeError(name)


class LineReader:
    """Frames lines out of a byte stream through one fixed buffer.

    `max_line` bounds a line including its line end; `bufsize` (>= max_line) is the buffer,
    larger when the same reader also carries bulk data (a client reading a RETR reply).
    """

    def __init__(self, max_line=MAX_COMMAND_LINE, bufsize=0):
        if bufsize < max_line:
            bufsize = max_line
        self.max_line = max_line
        # Public and read-only (bulk readers take buf[start:end] without a call): changed only
        # by space/commit, feed, next_line, consume and clear.
        self.buf = bytearray(bufsize)
        self._mv = memoryview(self.buf)
        self.start = 0  # first unread byte
        self.end = 0  # one past the last buffered byte
        self._discarding = False  # inside the tail of an overlong line

    # -- putting bytes in ---------------------------------------------------------------
    def space(self):
        """A writable view of the free tail of the buffer, for `sock.readinto()`.
        Compacts first, so the view is as large as it can be."""
        self._compact()
        if self.end == 0:
            return self._mv  # the common bulk case: no slice object made
        return self._mv[self.end :]

    def commit(self, n):
        """Account for n bytes written into the view `space()` returned."""
        self.end += n

    def feed(self, data):
        """Copy as much of `data` as fits; returns how many bytes were taken.
        Call `next_line()` until it returns None, then feed the rest."""
        self._compact()
        n = len(data)
        room = len(self.buf) - self.end
        if n > room:
            n = room
        self._mv[self.end : self.end + n] = data[:n] if n < len(data) else data
        self.end += n
        return n

    def _compact(self):
        s = self.start
        if s:
            e = self.end
            if e > s:
                self._mv[0 : e - s] = self._mv[s:e]
            self.start = 0
            self.end = e - s

    # -- taking lines out ---------------------------------------------------------------
    def next_line(self):
        """The next complete line without its line end (bytes), or None when more data is
        needed, or OVERLONG / BAD_LINE once per bad line."""
        buf = self.buf
        if self._discarding:
            j = buf.find(b"\n", self.start, self.end)
            if j < 0:
                self.start = self.end
                return None
            self.start = j + 1
            self._discarding = False
        s = self.start
        limit = s + self.max_line
        e = self.end if self.end < limit else limit
        j = buf.find(b"\n", s, e)
        if j < 0:
            if self.end - s >= self.max_line:
                # No line end within the limit: report once, then drop the tail.
                self.start = s + self.max_line
                self._discarding = True
                return OVERLONG
            return None
        self.start = j + 1
        k = j - 1 if j > s and buf[j - 1] == _CR else j
        if buf.find(b"\x00", s, k) >= 0:
            return BAD_LINE
        return bytes(self._mv[s:k])

    # -- bulk access for multi-line bodies and STLS ---------------------------------------
    # The bytes received but not yet taken are buf[start:end]: read those three attributes
    # (no tuple per chunk, as a call returning them would make), never assign them; say how
    # many were used with consume(n).

    def consume(self, n):
        """Mark n buffered bytes as used by someone else (e.g. a DotUnstuffer)."""
        self.start += n

    def view(self, a, b):
        """buf[a:b] as a memoryview (valid until the buffer is next written or compacted)."""
        return self._mv[a:b]

    def pending(self):
        return self.end - self.start

    def clear(self):
        """Drop everything buffered (RFC 2595: plaintext pipelined after STLS is discarded)."""
        self.start = self.end = 0
        self._discarding = False


def unstuff_line(line):
    """One framed line of a short multi-line reply (CAPA, LIST, UIDL): None for the terminating
    ".", else the line with its stuffing dot removed. (Bulk bodies go through DotUnstuffer.)"""
    if line.startswith(b"."):
        return None if len(line) == 1 else line[1:]
    return line


class _Views:
    """memoryviews of the caller's in/out buffers, made once: a shell passes the same two
    buffers on every call, and a new memoryview per chunk is garbage per chunk."""

    def __init__(self):
        self.src = self.out = self.smv = self.omv = None

    def of(self, src, out):
        if src is not self.src:
            self.src = src
            self.smv = memoryview(src)
        if out is not self.out:
            self.out = out
            self.omv = memoryview(out)


# DotUnstuffer states
_BOL = const(0)  # at the start of a line
_MID = const(1)  # inside a line
_DOT1 = const(2)  # a "." opened the line
_DOTCR = const(3)  # ".\r" opened the line


class DotUnstuffer:
    """Received multi-line block -> body, spotting the terminating line "." wherever chunk
    boundaries fall. Accepts LF.LF from peers that send bare LF. Line ends pass through as sent.

    strict=True (SMTP DATA, RFC 5321 sections 2.3.8 and 4.1.1.4): only <CRLF>.<CRLF> ends the
    block; <LF>.<LF>, <CR>.<CR>, <LF>.<CRLF>, <CRLF>.<LF> and every other mix are content, and any
    CR or LF that is not part of a CRLF pair sets `bad` (the caller refuses the message: the
    SMTP-smuggling family, CVE-2023-51764). Bare line ends are found with C `count` passes per
    copied segment, so the fast path stays one slice per chunk."""

    def __init__(self, strict=False):
        self.strict = strict
        self.reset()

    def reset(self):
        self.consumed = 0
        self._state = _BOL
        self.done = False
        self.bad = False  # strict only: a bare CR or LF was seen
        self._cr = False  # strict only: the last byte copied was a CR (its LF may come next)
        # A body line starting with "." was un-stuffed ("..x" -> ".x"), set before that "." is
        # written out: a store can skip its own search for such lines while this stays False.
        self.dots = False
        self._views = _Views()

    def at_line_start(self):
        """True between lines of the block (not done): the next byte starts a line."""
        return self._state == _BOL and not self.done

    def unstuff_into(self, src, start, end, out, ostart=0):
        """Un-stuff src[start:end] (bytes or bytearray) into `out` (a bytearray) from
        out[ostart] on. Returns the number of bytes produced and sets `self.consumed` and
        `self.done`. Stops right after the terminator: bytes after it (the next pipelined reply)
        are not consumed. Call again from start + consumed while not done and bytes remain.
        Allocates no buffer (a slice copy makes one small memoryview object: MicroPython has no
        allocation-free copy between buffers)."""
        if self.done:
            self.consumed = 0
            return 0
        strict = self.strict
        v = self._views
        v.of(src, out)  # no tuple return: a tuple would be garbage on every call
        smv = v.smv
        omv = v.omv
        cap = len(out)
        si = start
        oi = ostart
        st = self._state
        while si < end:
            if st == _MID:
                # Search no further than `out` has room for: a bigger src (the client's receive
                # buffer) would otherwise be searched again by the next call.
                lim = cap - oi
                if lim <= 0:
                    break
                lim = end if end - si <= lim else si + lim
                j = src.find(b"\n.", si, lim)
                stop = lim if j < 0 else j + 1
                omv[oi : oi + stop - si] = smv[si:stop]
                oi += stop - si
                if strict:
                    st = self._strict_segment(src, si, stop)
                elif src[stop - 1] == _LF:
                    st = _BOL
                si = stop
            elif st == _BOL:
                if src[si] == _DOT:
                    st = _DOT1
                    si += 1
                else:
                    st = _MID
            elif st == _DOT1:
                c = src[si]
                if c == _LF and not strict:
                    si += 1
                    self.done = True
                    break
                if c == _CR:
                    st = _DOTCR
                    si += 1
                else:
                    if c == _DOT:
                        self.dots = True
                    # a stuffed dot: dropped, the line goes on (strict: "." + bare LF is
                    # content, and the copy in _MID flags the LF)
                    st = _MID
            else:  # _DOTCR
                if src[si] == _LF:
                    si += 1
                    self.done = True
                    break
                # ".\r" not followed by LF: the CR is line content; the dot was stuffing
                # (strict: a bare CR, flagged by the next segment's accounting).
                if oi >= cap:
                    break
                out[oi] = _CR
                oi += 1
                if strict:
                    self._cr = True
                st = _MID
        self._state = st
        self.consumed = si - start
        return oi - ostart

    def _strict_segment(self, src, si, stop):
        """strict=True, once per copied segment src[si:stop]: flags a CR or LF outside a CRLF
        pair (`bad`) by comparing C counts of CR, LF and CRLF (a CR last in the segment waits
        for the next byte), and returns the next state: a line starts only after a CRLF pair."""
        lf = src.count(b"\n", si, stop)
        cr = src.count(b"\r", si, stop)
        pairs = src.count(b"\r\n", si, stop)
        prev_cr = self._cr
        if prev_cr:
            cr += 1  # the CR held over from the last segment is accounted here
            if src[si] == _LF:
                pairs += 1
        last = src[stop - 1]
        self._cr = last == _CR
        if self._cr:
            cr -= 1  # decided by the next byte
        if lf != pairs or cr != pairs:
            self.bad = True
        if last == _LF and ((stop - 1 > si and src[stop - 2] == _CR) or (stop - 1 == si and prev_cr)):
            self._cr = False
            return _BOL
        return _MID
