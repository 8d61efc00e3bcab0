"""The servers' side of the dot-stuffing codec (wire.py has the shared part and the theory):
`DotStuffer` turns a message body into its wire form, `terminator` closes a block. The servers
get these names from wire as before (its __getattr__ loads this module at their first use); a
fetch never loads it."""

from pocketpost.compat import const
from pocketpost.wire import TERMINATOR, _Views

_LF = const(10)  # wire._LF
_DOT = const(46)  # wire._DOT


def terminator(at_line_start):
    """What closes a multi-line block: ".\r\n", with a CRLF first when the body did not end
    with a line end (RFC 1939 section 3)."""
    return TERMINATOR if at_line_start else b"\r\n.\r\n"



class DotStuffer:
    """Message body -> dot-stuffed multi-line block (without the +OK line).

    The body is expected with CRLF line ends (the store guarantees it); a line starting with
    "." gets a second ".". `finish()` returns the terminator, preceded by CRLF when the body
    did not end with a line end.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self.consumed = 0
        self._bol = True  # the next byte starts a line
        self._empty = True
        self._views = _Views()

    def stuff_into(self, src, start, end, out):
        """Transform src[start:end] (bytes or bytearray) into `out` (a bytearray). Returns the
        number of bytes produced and sets `self.consumed`: call again from start + consumed
        while that is short of end (out was full). Allocates nothing."""
        if start >= end:
            self.consumed = 0
            return 0
        self._empty = False
        v = self._views
        v.of(src, out)  # no tuple return: a tuple would be garbage on every call
        cap = len(out)
        si = start
        oi = 0
        while si < end:
            if self._bol and src[si] == _DOT:
                if oi >= cap:
                    break
                out[oi] = _DOT
                oi += 1
            self._bol = False
            stop = v.run(src, si, end, oi, cap)  # (a "\n." cut at its limit is caught by _bol)
            if stop == si:
                break
            oi += stop - si
            si = stop
            self._bol = src[si - 1] == _LF
        self.consumed = si - start
        return oi

    def finish(self):
        """The bytes that close the block."""
        return terminator(self._empty or self._bol)
