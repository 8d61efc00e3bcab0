"""The TRANSACTION state of a pop3cmd.Session (RFC 1939 section 5): its commands, as functions
of the session (dispatched through TABLE by Session.handle), and the reply producers the shell
drains (ListingProducer for LIST/UIDL, PlainProducer for RETR; TOP and the RETR of a file from
before the wire form go through pop3body.BodyProducer; see pop3cmd.py's theory of operation
for how the shell uses them).

Loaded while some session is logged in: a session holds it from its first command in
TRANSACTION until its close() (pop3server.TRANS_MODULES, Session._held); when none holds it,
it is dropped (compat.forget; MicroPython only), so a server that is only listening, or whose
sessions are all before their login, keeps none of it (~6 KB of heap from `.mpy` on the
64-bit host, docs/FIGURES.md). The RETR of a wire-form file (every file the store writes) needs
neither pop3body.py nor wirestuff.py (the DotStuffer): those load at the first TOP (or RETR of an
older file) and are dropped with this module. AUTHORIZATION's CAPA and QUIT are pop3login's;
TRANSACTION's (QUIT: the UPDATE state) and read_failed are here.
"""

from pocketpost import log
from pocketpost.compat import const
from pocketpost.pop3 import reply
from pocketpost.pop3server import IMPLEMENTATION
from pocketpost.wire import TERMINATOR

_DONE = const(2)  # pop3cmd's (a private copy)
_LF = const(10)
_EIO = const(5)  # a message file ended before the size its index entry (and LIST) gave
# RETR's copy unit when the shell's block is smaller: a RETR is one read and one socket write
# per unit, and at 1 KiB (block_size's default) those calls cost 3x a 4 KiB copy's for the same
# message (bench_server: 3 KiB 1.7x, 2 KiB 2.2x, this 1.4x; 3 KiB gained nothing in bench_heap b/c
# once the shell let go of a finished RETR's unit). Allocated per RETR, dropped after it (idle
# sessions keep nothing); if the heap has no such block free, the shell's own block serves.
_RETR_UNIT = const(4096)
# RETRs streaming through a unit of their own at once (Service.units); a RETR beyond copies
# through its session's block. Two clients reading at once is rare on a board and each unit is a
# 4 KiB block the heap must find: one (bench_heap b and c: -3 KiB, see docs/FIGURES.md).
_RETR_UNITS = const(1)


# Names here cost no interned name of their own (issue 12, docs/ARCHITECTURE.md "what costs a
# name"): the commands are named after themselves (pop3cmd interns "STAT", "LIST", ...), the rest
# with names the runtime has built in or the listening server interns (mask, msg, caps, u, busy,
# consume, release, end), so a logged-in session adds few names to the listening server's.


def mask(s, i):
    """Message i's bit in the session's deletion mask (non-zero: deleted)."""
    return s._del[i >> 3] & (1 << (i & 7))


def msg(s, n):
    """1-based message number -> 0-based index, or None (no such message / deleted)."""
    i = n - 1
    if i < 0 or i >= s.mb.count or mask(s, i):
        return None
    return i


def STAT(s, args):
    # Status lines whole (+OK ... CRLF, as pop3.reply builds): a short "%d %d" would be an interned name.
    return b"+OK %d %d\r\n" % (s.mb.count - s._ndel, s.mb.total_size - s._sdel)


def UIDL(s, args):
    return LIST(s, args, True)


def LIST(s, args, u=False):
    """LIST, or UIDL (u True)."""
    mb = s.mb
    if args:
        i = msg(s, args[0])
        if i is None:
            return reply(False, "no such message")
        return ("+OK %d %s\r\n" % (i + 1, mb.uid(i) if u else mb.size(i))).encode()
    s.producer = ListingProducer(s, u)
    if u:
        return reply(True, "unique-id listing follows")
    return reply(True, "%d messages (%d octets)" % (mb.count - s._ndel, mb.total_size - s._sdel))


def RETR(s, args):
    i = msg(s, args[0])
    if i is None:
        return reply(False, "no such message")
    mb = s.mb
    f = mb.open(i, True)
    try:  # until the producer that closes it exists, a failure (a full heap) closes it here
        if mb.needs_stuffing(i):  # a file from before the wire form: stuffed on the way out
            from pocketpost import pop3body

            p = pop3body.producer(s, f, i, -1)
        else:
            svc = s.svc
            p = PlainProducer(f, mb.stored_size(i), _RETR_UNIT if svc.block_size < _RETR_UNIT and svc.units < _RETR_UNITS else 0)
            if p.unit is not None:  # handed back at close()
                p.svc = svc  # first: a failure here (a full heap) leaves no unit counted out
                svc.units += 1
    except Exception:
        f.close()
        raise
    s.producer = p
    p.msg = i
    return b"+OK %d octets\r\n" % mb.size(i)


def TOP(s, args):
    i = msg(s, args[0])
    if i is None:
        return reply(False, "no such message")
    from pocketpost import pop3body

    f = s.mb.open(i, True)
    try:  # as in RETR
        p = pop3body.producer(s, f, i, args[1])
    except Exception:
        f.close()
        raise
    s.producer = p
    p.msg = i
    return reply(True, "top of message follows")


def DELE(s, args):
    i = msg(s, args[0])
    if i is None:
        return reply(False, "no such message")
    s._del[i >> 3] |= 1 << (i & 7)
    s._ndel += 1
    s._sdel += s.mb.size(i)
    return reply(True, "message %d deleted" % (i + 1))


# CAPA in TRANSACTION (RFC 2449: no AUTH, USER, SASL or STLS once logged in).
caps = ("+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nIMPLEMENTATION %s\r\n.\r\n"
         % IMPLEMENTATION).encode()


def CAPA(s, args):
    return caps


def NOOP(s, args):
    return reply(True)


def RSET(s, args):
    for k in range(len(s._del)):
        s._del[k] = 0
    s._ndel = 0
    s._sdel = 0
    return reply(True, "%d messages (%d octets)" % (s.mb.count, s.mb.total_size))


def QUIT(s, args):
    """The UPDATE state (RFC 1939 section 6). The store takes the session's bitmask as it is:
    no per-message list, so QUIT after deleting thousands costs no more heap than after one."""
    s.closing = True
    mb = s.mb
    s.mb = None
    s.state = _DONE
    try:
        n = mb.commit(s._del)
    except Exception as e:
        log.error("pop3 #%d %s user=%s commit failed: %r", s.sid, s.peer, s.user, e)
        mb.release()
        return reply(False, "some deleted messages not removed", getattr(e, "code", None) or "SYS/TEMP")
    log.info("pop3 #%d %s quit user=%s deleted=%d", s.sid, s.peer, s.user, n)
    return reply(True, "bye (%d deleted)" % n)


def read_failed(s, e, busy):
    """The shell's fill() of a RETR/TOP reply raised OSError (a flash read error, a file
    shorter than LIST said): the store sets the file aside at the next lock
    (Mailbox.unreadable) and the producer is closed. Returns the -ERR [SYS/PERM] to send
    instead of the +OK while nothing of the reply has gone out (busy False), else None:
    the shell then closes the connection (a half-sent message must never end with a
    terminator, which would make it look complete)."""
    p = s.producer
    s.producer = None
    i = getattr(p, "msg", None)
    if p is not None:
        p.close()
    log.error("pop3 #%d %s message %s unreadable%s: %r", s.sid, s.peer, "?" if i is None else i + 1,
              " mid-reply, closing" if busy else "", e)
    if i is not None and s.mb is not None:
        try:
            s.mb.unreadable(i)
        except Exception as e2:
            log.error("pop3 #%d %s unreadable: %r", s.sid, s.peer, e2)
    if busy:
        return None
    return reply(False, "message could not be read", "SYS/PERM")


TABLE = {
    "CAPA": CAPA,
    "STAT": STAT,
    "LIST": LIST,
    "UIDL": UIDL,
    "RETR": RETR,
    "TOP": TOP,
    "DELE": DELE,
    "NOOP": NOOP,
    "RSET": RSET,
    "QUIT": QUIT,
}


class ListingProducer:
    """LIST / UIDL without an argument: one line per undeleted message, then ".", produced into
    the shell's buffer as many lines at a time as fit."""

    def __init__(self, session, u):
        self.s = session
        self.u = u  # UIDL (else LIST)
        self.i = 0
        self.done = False

    def fill(self, out):
        if self.done:
            return 0
        mb = self.s.mb
        n = 0
        cap = len(out)
        while self.i < mb.count:
            i = self.i
            if mask(self.s, i):
                self.i += 1
                continue
            line = ("%d %s\r\n" % (i + 1, mb.uid(i) if self.u else mb.size(i))).encode()
            if n + len(line) > cap:
                return n
            out[n : n + len(line)] = line
            n += len(line)
            self.i += 1
        if n + 3 > cap:
            return n
        out[n : n + 3] = TERMINATOR
        self.done = True
        return n + 3

    def close(self):
        pass


class _FileReply:
    """A reply streamed from a message file; closing it (at the end, or when the session dies
    first) closes the file. `left`: octets the file still owes (the size its index entry gave,
    -1: unchecked); a file that ends sooner raises OSError(EIO) instead of ending the reply."""

    msg = None  # the message's index in the mailbox (read_failed)
    unit = None  # a buffer of its own the shell fills and sends instead of its block (RETR)
    svc = None  # the Service whose unit count `unit` is in

    def __init__(self, f, size=-1):
        self.f = f
        self.left = size

    def consume(self, n):
        """Account for n octets read from the file (0: its end)."""
        if n:
            self.left -= n
        elif self.left > 0:
            raise OSError(_EIO, "message file ends %d octets early" % self.left)

    def close(self):
        if self.svc is not None:  # first: a file that fails to close still hands the unit back
            self.svc.units -= 1
            self.svc = None
        self.unit = None
        self.release()

    def release(self):
        """The file alone (all read): the unit stays counted until close(), which the shell
        calls once it has sent the last block, from the unit."""
        if self.f is not None:
            f = self.f
            self.f = None
            f.close()


class PlainProducer(_FileReply):
    """RETR of a plain message: the stored file is its own wire form (no line starts with ".").

    fill(out) reads the file straight into `out` and returns the byte count; after the file the
    terminator, then 0. The store ends every non-empty message with CRLF, so the terminator is
    ".\r\n"; should a file not end with LF after all, a CRLF goes first (the reply stays framed).
    """

    def __init__(self, f, size=-1, unit=0):
        """unit: the size of a copy buffer of its own (`unit`, for the shell), 0: none."""
        super().__init__(f, size)
        self.end = _LF  # the last byte handed out (an empty message is just the terminator)
        self.done = False
        if unit and size > unit // 2:  # a small message gains nothing from it
            try:
                self.unit = bytearray(unit)
            except MemoryError:
                pass

    def fill(self, out):
        if self.done:
            return 0
        f = self.f
        if f is not None:
            n = f.readinto(out)
            self.consume(n)
            if n:
                self.end = out[n - 1]
                if not self.left and self.end == _LF and n + 3 <= len(out):
                    # The file is all read (its size is known) and the block has room: the
                    # terminator goes in the same write.
                    out[n : n + 3] = TERMINATOR
                    self.release()
                    self.done = True
                    return n + 3
                return n
            self.release()
        # wirestuff.terminator, written out: that module stays unloaded for a RETR
        t = TERMINATOR if self.end == _LF else b"\r\n.\r\n"
        if len(out) < len(t):
            return 0
        out[: len(t)] = t
        self.done = True
        return len(t)
