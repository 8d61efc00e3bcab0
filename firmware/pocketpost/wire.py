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

This module keeps what every side uses (LineReader, unstuff_line, _Views, the limits). Each
transformer loads at its first use through this module's __getattr__ (`from pocketpost.wire import
DotStuffer` and `... import DotUnstuffer` work as before):
- `DotStuffer` and `terminator`, the servers' side, are wirestuff.py: a fetch, which only
  un-stuffs, never holds them;
- `DotUnstuffer` is unstuffer.py (the client's RETR, SMTP DATA, the store's reads of stuffed
  files): a POP3 server that only sends bodies never holds it.
"""

from pocketpost.compat import const

# RFC 2449 section 4: "command lines ... MUST NOT exceed 255 octets, including the terminating CRLF".
_MAX_COMMAND_LINE = const(255)
# RFC 2449 section 4: a response's first line is at most 512 octets, including the CRLF.
_MAX_RESPONSE_LINE = const(512)

# Results of LineReader.next_line() other than a line.
OVERLONG = const(-1)  # the line exceeded the limit; its tail is being discarded
BAD_LINE = const(-2)  # the line held a NUL octet

_LF = const(10)
_CR = const(13)
_DOT = const(46)
CRLF = b"\r\n"
TERMINATOR = b".\r\n"


def __getattr__(name):
    """wirestuff.py's or unstuffer.py's names, loaded at their first use."""
    if name == "DotStuffer" or name == "terminator":
        from pocketpost import wirestuff

        return getattr(wirestuff, name)
    from pocketpost import unstuffer

    return getattr(unstuffer, name)


class LineReader:
    """Frames lines out of a byte stream through one fixed buffer.

    `max_line` bounds a line including its line end; `bufsize` (>= max_line) is the buffer,
    larger when the same reader also carries bulk data (a client reading a RETR reply).
    """

    def __init__(self, max_line=_MAX_COMMAND_LINE, bufsize=0, head=0, copy=None):
        if bufsize < max_line:
            bufsize = max_line
        self.max_line = max_line
        # Public and read-only (bulk readers take buf[start:end] without a call): changed only
        # by space/commit, feed, next_line, consume and clear.
        self.buf = bytearray(bufsize)
        self._mv = memoryview(self.buf)
        # head > 0 (a bulk reader: the POP3 client's): a rest of at most `head` bytes is moved to
        # end at buf[head], so that space() hands out the one view of buf[head:] made here rather
        # than a new slice per read; `copy(buf, s, e, d)` (nativescan's, where it compiled) moves
        # it without the memoryview slice a copy between buffers otherwise makes. Both per read:
        # garbage in proportion to the message (issue 12).
        self._tail = self._mv[head:] if head else None
        self.copy = copy
        self.start = 0  # first unread byte
        self.end = 0  # one past the last buffered byte
        self._discarding = False  # inside the tail of an overlong line

    # -- putting bytes in ---------------------------------------------------------------
    def space(self):
        """A writable view of the free tail of the buffer, for `sock.readinto()`.
        Compacts first, so the view is as large as it can be."""
        self._compact()
        e = self.end
        if e == 0:
            return self._mv  # no slice object made
        t = self._tail
        if t is not None and e == len(self.buf) - len(t):
            return t  # the bulk case with a rest (_compact put it there): no slice object made
        return self._mv[e:]

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
            k = e - s
            d = 0
            t = self._tail
            if t is not None and k:
                d = len(self.buf) - len(t) - k  # the rest to end at the head (a left move only)
                if d < 0 or d > s:
                    d = 0
            if d < s and k:
                if self.copy is not None:
                    self.copy(self.buf, s, e, d)
                else:
                    self._mv[d : d + k] = self._mv[s:e]
            self.start = d
            self.end = d + k

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

    def run(self, src, si, end, oi, cap):
        """The one copy loop step both transformers share: src[si:] into out at oi, up to and
        with the LF of the next "\n." (a line that starts with a dot) or as far as out has room
        for; returns where the copy stopped in src (si itself when out is full). It searches no
        further than out has room for: a bigger src (the client's receive buffer) would otherwise
        be searched again by the next call, and a "\n." cut at the limit is the caller's state."""
        lim = cap - oi
        if lim <= 0:
            return si
        lim = end if end - si <= lim else si + lim
        j = src.find(b"\n.", si, lim)
        stop = lim if j < 0 else j + 1
        self.omv[oi : oi + stop - si] = self.smv[si:stop]
        return stop
