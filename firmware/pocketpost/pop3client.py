"""Sans-I/O POP3 client session (RFC 1939, 2449, 2595, 5034): the server session's counterpart.

Theory of operation
-------------------
Like h11's Connection, this class knows bytes, not sockets. A shell puts what the server sent
into the session's receive buffer (`space()` + `commit(n)`, or `feed(data)`), sends what
`send(...)` returns, and asks `next_event()` for what happened:

    NEED_DATA  nothing complete yet: read more (and mind your deadlines)
    GREETING   the server's first line: `reply`, `timestamp` (the APOP msg-id or None)
    REPLY      the status line answering the oldest command sent: `keyword`, `reply`
               (for RETR/TOP/LIST/UIDL/CAPA a +OK opens a block; -ERR does not)
    CONTINUE   a SASL "+ " continuation answering AUTH (the command stays pending)
    LINE       one line of a CAPA block, un-stuffed: `line`
    ENTRY      one LIST/UIDL entry: `n`, `field` (size or UID, bytes)
    BODY       un-stuffed RETR/TOP bytes: `chunk` (valid until the next call), `octets`
               (the running count), `bare` (lone LFs in the chunk), `dots` (the chunk may hold a
               line starting with "."), `hungry` (see "The body's two paths")
    END        the block's terminator: `keyword`, `octets`, `lf` (line ends), `crlf` (of
               them CRLF); `size_matches(size)` applies the size rule below

Replies come back in the order commands were sent, so commands may be pipelined (RFC 2449
PIPELINING): `send` queues what each one expects. Anything that breaks the grammar raises
`ProtocolError` naming the command it answered, and the session stays broken (every later call
raises again): a reply that is neither +OK nor -ERR means the stream is out of step and nothing
after it can be trusted, so the shell must drop the connection without QUIT.

Multi-line blocks go through the core's one line reader (wire.LineReader: status lines, CAPA and
listing lines) and one un-stuffer (wire.DotUnstuffer: the bodies' dot lines, see below). Nothing
allocates in proportion to a message.

The body's two paths
--------------------
Each byte of a fetched message costs Python time, so a body moves in two ways. Clean lines (CRLF
at the end, the next line not opening with ".") need no un-stuffing and no line-end conversion:
one walk from LF to LF finds the run of them in the receive buffer (on MicroPython native code,
nativescan.py, four octets at a time; else a C find per line and a few byte checks, C count
passes instead once lines are shorter than _WALK_BYTES on average), and the run goes out as one
BODY chunk, a view of that buffer (no copy; `bare` 0, `dots` False, its lines
counted as CRLF line ends). A line that opens with "." (stuffed, or the terminator), holds a lone
LF, or is longer than the buffer goes through the DotUnstuffer into the out chunk (_CHUNK octets),
line by line for dot lines, and is handed out from there with its line ends counted (`bare`)
and `dots` set from the first dot line of the body on. A chunk holds whole lines unless the out
chunk filled or a line outgrew the buffer. After a clean chunk, `hungry` says when only more
bytes can give another event (the shell reads at once). The body's events come from a generator
(_body, one for the session, made with it), whose frame is kept between chunks and bodies: a MicroPython call with that many locals would take a
heap block per chunk, and the garbage collections it causes cost more than the walk.

The size rule (is a received message provably complete?)
--------------------------------------------------------
LIST gives a message's size in octets "exact" (RFC 1939 section 5) for the message with CRLF line
ends; the store keeps it with CRLF line ends. Let R be the octets received (un-stuffed, line ends
as sent, including the line end before the terminator), T the line ends received and C those that
were CRLF. The message is complete when the LIST size S is one of
    R + (T - C)        the CRLF-normalised size (what the store keeps): the RFC case;
    R + (T - C) - 2    the same for a message without a final line end: the CRLF before the
                       terminator is then the server's, not the message's (Dovecot, our server);
    R - C, R - C - 1   the same two counted with one octet per line end: servers that report
                       the size of an LF-stored file.
Anything else (a server that forgot to dot-stuff and ended the message at a body line ".", a
truncated or padded message) is not proven complete: the shell must not store it, record it or
delete it, and must end the session without QUIT (what followed cannot be trusted either).

The client's half of the POP3 grammar lives here too (commands built, status lines parsed:
command, is_multiline, Reply, parse_reply), as pop3.py's names through its __getattr__; it was
pop3reply.py, always loaded with this module (a module of its own cost a fetch three interned
names). The greeting and the multi-line listings (CAPA, LIST, UIDL: their events, the listing
and UID grammar, parse_listing, valid_uid, apop_timestamp) are pop3listing.py's: cold, loaded by
the first such event and dropped by the client after its login and after each listing pass, so
its ~1 KB is not held while messages download (this module's __getattr__ gives its names as
this module's, and so as pop3.py's). The texts of the session's protocol errors are there too
(FAILS: `fail(n, *args)` loads it; a text here would be a string object held all session). A
server never loads either module.
"""

from pocketpost.compat import const, forget
from pocketpost.pop3 import ProtocolError
from pocketpost.wire import BAD_LINE, OVERLONG, DotUnstuffer, LineReader

_MAX_RESPONSE_LINE = const(512)  # wire's (a private copy)
# (The longest UID, _MAX_UID: pop3listing.py.)

# Events returned by next_event(). Those no firmware module compares with (NEED_DATA, LINE,
# ENTRY) are private: a public const is a module name, interned (never freed) in every fetch;
# host_tests/dual/test_pop3client.py checks its copies of their values.
_NEED_DATA = const(0)
GREETING = const(1)
REPLY = const(2)
CONTINUE = const(3)
_LINE = const(4)
_ENTRY = const(5)
BODY = const(6)
END = const(7)

# CAPA lines accepted before the reply is called endless (real servers send ~10).
_MAX_CAPA_LINES = const(64)
# Socket reads land in a receive buffer this big: a RETR moves in few reads; status and listing
# lines are still bounded by _MAX_RESPONSE_LINE (RFC 2449 section 4: 512 octets).
_RECV_BUFSIZE = const(4096)
# Body bytes the slow path (dot lines, lone LFs, overlong lines) un-stuffs before handing them out;
# clean lines go out straight from the receive buffer, up to _RECV_BUFSIZE at a time. (Was 2 KiB
# when every byte went through it, then 1 KiB; the heap is the scarcer resource: 512 B is held
# at every step of a fetch. A dot line is handed out on its own at any size; only a body of lone
# LFs (a server that does not convert line ends) moves in chunks this big: its session CPU
# 19.4 -> 25.6 ms per MiB on the unix port; a dotted body's is unchanged.)
_CHUNK = const(512)
# The clean-line walk costs a little Python per line: below this many octets per line on average
# it checks the rest of the buffer with three C passes instead (see ClientSession._body).
_WALK_BYTES = const(32)
_CR = const(13)
_DOT = const(46)
# What the native scan returns (nativescan.py): (lines << _SCAN_LINES) | (ran to the end of the
# data: _SCAN_END) | (octets of the run). Used for receive buffers below _SCAN_MAX only: the lines
# (at most one per 2 octets) shifted must fit a small int on a 32-bit board (30 bits).
_SCAN_LINES = const(17)
_SCAN_END = const(65536)
_SCAN_RUN = const(65535)
_SCAN_MAX = const(16384)
# The receive buffer's head (wire.LineReader): reads go to buf[_HEAD:] whenever the rest of the
# last read (a line cut at its end) fits in front of it; a longer rest goes to buf[0] as before.
_HEAD = const(256)
# The session's protocol errors: their texts are pop3listing.FAILS[n] (private copies of its
# numbers: host_tests/test_fetch_heap.py checks that each gives its text).
_F_BEFORE = const(0)
_F_STLS = const(1)
_F_LONG = const(2)
_F_NUL = const(3)
_F_NOBODY = const(4)
_F_NEITHER = const(5)


# The clean-line walk in native code (nativescan.py), or None: the body then takes the Python
# walk. nativescan is cold: used once here, then dropped (its source text is ~1 KB). (Module code,
# not a function: a function would be held for the rest of the session.)
from pocketpost import nativescan  # noqa: E402

_scan = nativescan.compile_scan()  # (scan, copy) or None
del nativescan
forget(("nativescan",))
_copy = None
if _scan is not None:
    _copy = _scan[1]
    _scan = _scan[0]  # a test sets it to None to run the Python walk

# What the session is reading.
_GREET = const(0)
_STATUS = const(1)
_LINES = const(2)
_BODY = const(3)
_END = const(4)
_BROKEN = const(5)


def _text(b):
    try:
        return bytes(b).decode()
    except UnicodeError:
        return repr(bytes(b))


def _reply_or_none(line):
    """The parsed status line, or None if it is not one (the caller says what it answered)."""
    try:
        return parse_reply(line)
    except ProtocolError:
        return None


# --- the client's half of the POP3 grammar (pop3.py's __getattr__ gives these names as pop3's:
# `from pocketpost.pop3 import parse_reply` loads this module) -----------------------------------


def is_multiline(keyword, nargs):
    """Is a +OK reply to this command followed by a dot-terminated block?"""
    if keyword in ("RETR", "TOP", "CAPA"):
        return True
    if keyword in ("LIST", "UIDL"):
        return nargs == 0
    return False


def command(keyword, *args):
    """Build a command line (bytes with CRLF). Arguments may be str, bytes or int."""
    out = keyword.encode() if isinstance(keyword, str) else keyword
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out += b" " + a
    return out + b"\r\n"


class Reply:
    """A parsed status line. `ok` is True for +OK, False for -ERR, None for a SASL "+ "
    continuation; `code` is the response code without brackets (str) or None."""

    def __init__(self, ok, code, text):
        self.ok = ok
        self.code = code
        self.text = text


def parse_reply(line):
    """One status line (bytes, no line end) -> Reply. Raises ProtocolError."""
    if line.startswith(b"+OK"):
        ok = True
        rest = line[3:]
    elif line.startswith(b"-ERR"):
        ok = False
        rest = line[4:]
    elif line == b"+" or line.startswith(b"+ "):
        return Reply(None, None, line[2:])
    else:
        raise ProtocolError("malformed reply")
    if rest and rest[0] != 32:
        raise ProtocolError("malformed reply")
    rest = rest[1:]
    code = None
    # RFC 2449 section 8: resp-code = "[" resp-level *("/" resp-level) "]"
    if rest.startswith(b"["):
        j = rest.find(b"]")
        if j > 1:
            raw = rest[1:j]
            good = True
            for c in raw:
                if c < 0x21 or c > 0x7E or c == 0x5B:
                    good = False
                    break
            if good:
                code = raw.decode()
                rest = rest[j + 1 :]
                if rest.startswith(b" "):
                    rest = rest[1:]
    return Reply(ok, code, rest)


class ClientSession:
    def __init__(self, bufsize=_RECV_BUFSIZE, chunk=_CHUNK):
        # (the head: a rest of up to _HEAD bytes, a body line cut by the read, moves in front of
        # a fixed tail view: no garbage per read; wire.LineReader)
        self.reader = LineReader(_MAX_RESPONSE_LINE, bufsize, _HEAD if bufsize > 2 * _HEAD else 0, _copy)
        self.unstuffer = DotUnstuffer()  # the body's un-stuffing (its `dots` count: the store's hint)
        self._out = bytearray(chunk)
        self._omv = memoryview(self._out)
        self._fill = 0
        self._pending = []  # [keyword, what (for messages), multi-line, limit] per command sent
        self._state = _GREET
        self.error = None  # the ProtocolError that broke the session: every later event raises it
        self._last = 0  # last listing number (LIST/UIDL entries come in increasing order)
        self._count = 0  # lines of the current block
        self._cr = False  # the body's last byte so far was CR (a CRLF split across chunks)
        # After a BODY chunk: True when no further event can come before more bytes are read (the
        # shell may read at once instead of asking next_event for NEED_DATA).
        self.hungry = False
        # The body's event generator (_body): one for the session, made here, not at each RETR's
        # +OK (its frame, ~270 B on the 64-bit port, in one block: at a fetch's start its block
        # is found in a heap not yet cut up by the login and the listing; it was a download's
        # first failing allocation). Between bodies it waits at the END it gave.
        self._gen = self._body()
        # event details
        self.reply = None
        self.timestamp = None
        self.keyword = None
        self.what = None
        self.line = None
        self.n = 0
        self.field = None
        self.chunk = None
        self.octets = 0
        self.lf = 0
        self.crlf = 0
        self.bare = 0  # LFs without a CR before them in the last BODY chunk
        # The last BODY chunk may hold a line starting with "." (False: it holds none); the
        # slow path's chunks say so from the first dot line of the body on (DotUnstuffer.dots).
        self.dots = False

    # -- bytes in ----------------------------------------------------------------------------
    def space(self):
        return self.reader.space()

    def commit(self, n):
        self.reader.commit(n)

    def feed(self, data):
        return self.reader.feed(data)

    # -- commands out ------------------------------------------------------------------------
    def send(self, keyword, *args, limit=0):
        """The bytes of one command; its reply is expected after those of the commands sent
        before it. `limit` bounds a LIST/UIDL listing: entries numbered 1..limit."""
        if self._state == _BROKEN:
            raise self.error
        if not self._pending and self._state == _STATUS and self.reader.pending():
            self.fail(_F_BEFORE, keyword)
        multi = is_multiline(keyword, len(args))
        what = keyword
        if args and keyword != "PASS":  # the first argument, as errors show it ("RETR 3")
            a = args[0]
            what += " " + _text(str(a).encode() if isinstance(a, int) else a.encode() if isinstance(a, str) else a)
        self._pending.append([keyword, what, multi, limit if limit else _MAX_CAPA_LINES])
        return command(keyword, *args)

    def respond(self, data):
        """A SASL response line after CONTINUE (the AUTH command stays pending)."""
        return bytes(data) + b"\r\n"

    def waiting_for(self):
        """The oldest command whose reply is awaited, as shown in errors ("RETR 3"), or ""."""
        return self._pending[0][1] if self._pending else ""

    def after_stls(self):
        """Call after +OK to STLS, before the TLS handshake: RFC 2595 section 4 forbids the
        server to send anything more in the clear."""
        if self.reader.pending():
            self.fail(_F_STLS)
        self.reader.clear()

    # -- events --------------------------------------------------------------------------------
    def fail(self, msg, *args):
        """The server broke the protocol: the session is unusable from here on (raises). `msg`:
        the text, or the number of one of pop3listing.FAILS (cold: the texts are not held while
        messages move) formatted with `args`."""
        if isinstance(msg, int):
            from pocketpost import pop3listing

            msg = pop3listing.FAILS[msg] % args
        self._state = _BROKEN
        self.error = ProtocolError(msg)
        raise self.error

    def _next_line(self, what):
        ln = self.reader.next_line()
        if ln == OVERLONG:
            self.fail(_F_LONG, _MAX_RESPONSE_LINE, what)
        if ln == BAD_LINE:
            self.fail(_F_NUL, what)
        return ln

    def next_event(self):
        # A small frame: MicroPython takes a call's frame from the heap once the function has
        # more than a few locals, and this runs twice per body chunk.
        if self._state == _BODY:
            return next(self._gen)
        return self._event()

    def _event(self):
        st = self._state
        if st == _END:
            self._state = _STATUS
            self._pending.pop(0)
            return END
        if st == _BROKEN:
            raise self.error
        if st == _GREET:  # (pop3listing.py: once per session)
            from pocketpost import pop3listing

            return pop3listing.greeting(self)
        if not self._pending:
            if self.reader.pending():
                self.fail(_F_NOBODY)
            return _NEED_DATA
        p = self._pending[0]
        self.keyword = p[0]
        self.what = p[1]
        if st == _STATUS:
            ln = self._next_line("reply to " + p[1])
            if ln is None:
                return _NEED_DATA
            r = _reply_or_none(ln)
            if r is None or (r.ok is None and p[0] != "AUTH"):
                self.fail(_F_NEITHER, p[1], _text(ln[:60]))
            self.reply = r
            if r.ok is None:
                return CONTINUE
            if r.ok and p[2]:
                self._count = 0
                self._last = 0
                if p[0] == "RETR" or p[0] == "TOP":
                    self.unstuffer.reset()
                    self._fill = 0
                    self.octets = self.lf = self.crlf = 0
                    self._cr = False
                    self._state = _BODY
                else:
                    self._state = _LINES
            else:
                self._pending.pop(0)
            return REPLY
        # _LINES: CAPA, LIST, UIDL (pop3listing.py: not held while messages download)
        from pocketpost import pop3listing

        return pop3listing.line(self, p)

    def _emit(self, n):
        """Hand out the first n bytes of the out chunk (un-stuffed by the slow path) as BODY,
        counting its line ends."""
        out = self._out
        lf = out.count(b"\n", 0, n)
        self.bare = 0
        if lf:
            c = out.count(b"\r\n", 0, n)
            if self._cr and out[0] == 10:
                c += 1
            self.lf += lf
            self.crlf += c
            self.bare = lf - c
        self._cr = out[n - 1] == 13
        self.dots = self.unstuffer.dots
        self.chunk = out if n == len(out) else self._omv[:n]
        self._fill = 0
        return BODY

    def _body(self):
        """A generator, made with the session: from the +OK of a RETR/TOP on, each next() gives
        the body's next event (BODY, NEED_DATA, and at last END). A generator keeps its frame between calls; a call
        per chunk with this many locals would take a heap block per chunk (MicroPython).

        Two paths (module doc, "The body's two paths"): runs of clean lines straight out of the
        receive buffer, the rest through the un-stuffer into the out chunk. A clean line ends
        with CRLF and the next line does not open with "." (a lone LF or a dot line ends the
        run). The run is found by the native scan (nativescan.py) where it compiled, else by a
        walk from LF to LF (C find); once lines are denser than one per _WALK_BYTES, C count
        passes check the rest at once."""
        u = self.unstuffer
        r = self.reader
        buf = r.buf
        find = buf.find  # looked up once, not once per line
        scan = _scan if len(buf) < _SCAN_MAX else None
        while True:
            self.hungry = False
            if u.done:
                if self._fill:
                    yield self._emit(self._fill)
                    continue
                self._state = _END
                yield self._event()
                # Parked here (the session's state no longer _BODY) until the next RETR/TOP's
                # +OK: its body goes on from the top, the un-stuffer and counts reset.
                continue
            s = r.start  # the reader's public buf[start:end]: no call, no tuple per chunk
            e = r.end
            if s >= e:
                yield _NEED_DATA
                continue
            if buf[s] != _DOT and u.at_line_start():
                if scan is not None:  # the native walk (nativescan.py)
                    n = scan(s, e, buf, s)
                    i = s + (n & _SCAN_RUN)
                    j = -1 if n & _SCAN_END else 0  # -1: no LF in buf[i:e] (as find's answer)
                    n >>= _SCAN_LINES
                else:
                    i = s
                    n = 0
                    j = 0
                    # Per line: one C find and a few byte checks (this loop is the fetch's Python
                    # cost per byte). Lines walked at most (e - s) // _WALK_BYTES + 1 (the range
                    # counts them); past that, C passes check the rest at once. buf[i] may read one
                    # byte past e: stale, harmless (a "." there only ends the run early, and find
                    # from e finds nothing); past the buffer's end it raises IndexError.
                    try:
                        for n in range(1, (e - s) // _WALK_BYTES + 2):
                            j = find(b"\n", i, e)
                            if j <= i or buf[j - 1] != _CR:
                                n -= 1
                                break  # no line end yet, an empty line with a lone LF, a lone LF
                            i = j + 1
                            if buf[i] == _DOT:
                                break
                        else:
                            k = buf.rfind(b"\n", i, e) + 1
                            if k > i:
                                c = buf.count(b"\r\n", i, k)
                                if c == buf.count(b"\n", i, k) and find(b"\n.", i, k) < 0:
                                    i = k
                                    n += c
                    except IndexError:  # i == e == len(buf): the buffer ends with a whole line
                        pass
                if i > s:
                    if self._fill:  # what the slow path made goes first (the walk is redone)
                        yield self._emit(self._fill)
                        continue
                    self.lf += n
                    self.crlf += n
                    self.chunk = r.view(s, i)
                    r.start = i
                    self.octets += i - s
                    self.bare = 0
                    self.dots = False
                    self._cr = False
                    # The rest is a line without its end yet (not a dot line): only more bytes
                    # can give another event. room: start moved, so space() makes some.
                    self.hungry = i >= e or (j < 0 and buf[i] != _DOT)
                    yield BODY
                    continue
                if j < 0 and (s or e < len(buf)):
                    yield _NEED_DATA  # the line is not complete yet: read on (space() compacts)
                    continue
                lim = e  # a lone LF (or a line longer than the buffer): the slow path takes it all
            else:
                # A line opening with "." (stuffed, or the terminator), or the rest of a line the
                # out chunk had no room for: the slow path takes it to its end.
                j = find(b"\n", s, e)
                lim = e if j < 0 else j + 1
            f = self._fill
            made = u.unstuff_into(buf, s, lim, self._out, f)
            r.start = s + u.consumed
            f += made
            self._fill = f
            self.octets += made
            if f == len(self._out):
                yield self._emit(f)

    def size_matches(self, size):
        """After END of a RETR: does the LIST size prove the message complete? (module doc)"""
        crlf_size = self.octets + self.lf - self.crlf
        lf_size = self.octets - self.crlf
        return size == crlf_size or size == crlf_size - 2 or size == lf_size or size == lf_size - 1


def __getattr__(name):
    """The greeting's and the listings' grammar (parse_listing, valid_uid, apop_timestamp), loaded
    at its first use: pop3listing.py's."""
    from pocketpost import pop3listing

    return getattr(pop3listing, name)
