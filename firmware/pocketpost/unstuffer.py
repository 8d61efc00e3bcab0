"""wire.DotUnstuffer (see wire.py, through which it is imported: `from pocketpost.wire import
DotUnstuffer` loads this module at the first use): received multi-line bodies un-stuffed
incrementally, for the POP3 client's RETR, the SMTP receiver's DATA and the store's reads of
stuffed files. A POP3 server that only sends never loads it.
"""

from pocketpost.compat import const
from pocketpost.wire import _Views

_LF = const(10)
_CR = const(13)
_DOT = const(46)

# DotUnstuffer states
_BOL = const(0)  # at the start of a line
_MID = const(1)  # inside a line
_DOT1 = const(2)  # a "." opened the line
_DOTCR = const(3)  # ".\r" opened the line

# strict for a trusted SMTP peer: bare LF ends lines too, line ends checked (True is 1). smtpdata.py
# keeps a private copy (host_tests/test_smtp_barelf.py checks it).
_LF_LINES = const(2)


class DotUnstuffer:
    """Received multi-line block -> body, spotting the terminating line "." wherever chunk
    boundaries fall. Accepts LF.LF from peers that send bare LF. Line ends pass through as sent.

    strict=True (SMTP DATA, RFC 5321 sections 2.3.8 and 4.1.1.4): only <CRLF>.<CRLF> ends the
    block; <LF>.<LF>, <CR>.<CR>, <LF>.<CRLF>, <CRLF>.<LF> and every other mix are content, and any
    CR or LF that is not part of a CRLF pair sets `bad` (the caller has the store make a bare LF
    CRLF; none of the SMTP-smuggling family, CVE-2023-51764, ends the block). Bare line ends are found with C `count` passes per
    copied segment, so the fast path stays one slice per chunk.
    strict=_LF_LINES, 2 (SMTP DATA from a trusted peer, as Postfix for its mynetworks): a line ends at
    LF, CR before it or not, as without strict (<LF>.<LF>, <LF>.<CRLF>, <CRLF>.<LF> end the block;
    a CR alone ends no line), and `bad` is kept as with strict=True."""

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
        cap = len(out)
        si = start
        oi = ostart
        st = self._state
        while si < end:
            if st == _MID:
                stop = v.run(src, si, end, oi, cap)
                if stop == si:
                    break
                oi += stop - si
                if strict:
                    st = self._strict_segment(src, si, stop)
                if strict != 1 and src[stop - 1] == _LF:  # not strict, or _LF_LINES
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
                if c == _LF and strict != 1:
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
