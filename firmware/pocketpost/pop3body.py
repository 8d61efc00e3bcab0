"""TOP, and the RETR of a message file from before the wire form, for pop3trans.py: a reply cut
from or stuffed out of a stored file (`BodyProducer`).

Loaded at the first such command and dropped with pop3trans.py (pop3server.TRANS_MODULES): the
RETR of a wire-form file (the store writes every message so) is a plain copy
(pop3trans.PlainProducer) and needs neither this code nor wirestuff.py's DotStuffer (~3 KB of
heap together, from `.mpy` on the 64-bit host).
"""

from pocketpost.compat import const
from pocketpost.pop3trans import _FileReply
from pocketpost.wire import DotStuffer, terminator

_CR = const(13)
_LF = const(10)


def producer(s, f, i, lines):
    """The reply of session s for message i (its open file f): TOP `lines` body lines, or with
    lines < 0 the whole message (the RETR of a file from before the wire form, stuffed here).
    The file block and the stuffer are the session's: made at its first such reply, reused by
    every later one (a 10 MiB reply and a 1 KiB one cost the same)."""
    if s._blockbuf is None:
        s._blockbuf = bytearray(s.svc.block_size)
        s._stuffer = DotStuffer()
    mb = s.mb
    wire = lines >= 0 and not mb.needs_stuffing(i)  # TOP of a stuffed file: cut it, stuff nothing
    return BodyProducer(f, s._blockbuf, lines, None if wire else s._stuffer, mb.stored_size(i), wire)


class BodyProducer(_FileReply):
    """RETR (lines < 0) or TOP n lines: the stored file, dot-stuffed, in fixed blocks (wire=True:
    the file is the wire form already, copied as it is).

    fill(out) returns how many bytes it wrote into `out` (the terminator included at the end),
    then 0. The file is closed when the terminator is produced or on close().
    """

    def __init__(self, f, block, lines, stuffer=None, size=-1, wire=False):
        """block: the file block buffer (a bytearray, reused across a session's replies) or its
        size; stuffer: a DotStuffer to reuse (reset here); size: the file's size per the index."""
        super().__init__(f, size)
        self.wire = wire
        self.buf = bytearray(block) if isinstance(block, int) else block
        self.start = 0
        self.end = 0
        self.eof = False
        self.done = False
        if stuffer is None and not wire:
            stuffer = DotStuffer()
        if stuffer is not None:
            stuffer.reset()
        self.stuffer = stuffer
        self.lines = lines  # body lines left for TOP; < 0: everything
        self.in_headers = lines >= 0
        self.llen = 0  # bytes of the current line seen so far
        self.last = 0  # last byte seen (for a CR straddling blocks)
        self.tail = _LF  # wire: the last byte handed out (nothing yet: the terminator alone)

    def _read(self):
        n = self.f.readinto(self.buf)
        self.consume(n)
        if not n:
            self.eof = True
            return
        self.start = 0
        self.end = n
        if self.lines >= 0:
            self.end = self._top_cut(n)

    def _top_cut(self, end):
        """How much of buf[:end] belongs to the TOP reply; sets eof once the limit is hit."""
        buf = self.buf
        i = 0
        while i < end:
            if not self.in_headers and self.lines == 0:
                self.eof = True
                return i
            j = buf.find(b"\n", i, end)
            if j < 0:
                self.llen += end - i
                self.last = buf[end - 1]
                return end
            llen = self.llen + (j - i)
            prev = buf[j - 1] if j > i else self.last
            empty = llen == 0 or (llen == 1 and prev == _CR)
            if self.in_headers:
                if empty:
                    self.in_headers = False
            else:
                self.lines -= 1
            self.llen = 0
            self.last = _LF
            i = j + 1
        if not self.in_headers and self.lines == 0:
            self.eof = True
        return end

    def fill(self, out):
        if self.done:
            return 0
        while True:
            if self.start < self.end:
                if self.wire:
                    p = min(len(out), self.end - self.start)
                    out[:p] = memoryview(self.buf)[self.start : self.start + p]
                    self.start += p
                    self.tail = out[p - 1]
                    return p
                p = self.stuffer.stuff_into(self.buf, self.start, self.end, out)
                self.start += self.stuffer.consumed
                if p:
                    return p
            elif not self.eof:
                self._read()
            else:
                t = terminator(self.tail == _LF) if self.wire else self.stuffer.finish()
                if len(out) < len(t):
                    return 0
                out[: len(t)] = t
                self.close()
                self.done = True
                return len(t)
