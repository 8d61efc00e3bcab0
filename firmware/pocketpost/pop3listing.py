"""The client session's greeting and multi-line listings (pop3client.ClientSession: CAPA, LIST,
UIDL): their events (greeting, line), and the grammar only they use (apop_timestamp, parse_listing,
valid_uid; pop3.py's and pop3client's names too, through their __getattr__), and block, the
client's read of such a block (a Pop3Client method held for the whole session before). Cold code:
ClientSession loads it at the greeting and at the first listing line; the client drops it after
its login and after each listing pass (not held while messages download; its qstrs stay), and
the next listing loads it again. Every event here is ClientSession's: see pop3client.py."""

from pocketpost.compat import const
from pocketpost.pop3 import ProtocolError, parse_number
from pocketpost.pop3client import END, GREETING, _reply_or_none, _text
from pocketpost.wire import unstuff_line

# RFC 1939 section 7: a UID is 1 to 70 characters in the range 0x21 to 0x7E.
_MAX_UID = const(70)
# pop3client's events and states (private copies: host_tests/dual/test_pop3client.py checks them).
_NEED_DATA = const(0)
_LINE = const(4)
_ENTRY = const(5)
_STATUS = const(1)
# The texts of ClientSession.fail(n, *args), by number (pop3client's _F_ names), here rather than
# in pop3client.py: a text there is a string object held for the whole session.
FAILS = (
    "server sent data nobody asked for before %s",
    "server sent data after STLS +OK",
    "server line longer than %d octets (%s)",
    "NUL in server line (%s)",
    "server sent data nobody asked for",
    "reply to %s is neither +OK nor -ERR: %s",
)


def apop_timestamp(text):
    """RFC 1939 section 7: the greeting's msg-id "<...@...>" (Dovecot's holds '=' too)."""
    text = bytes(text)
    i = text.find(b"<")
    if i < 0:
        return None
    j = text.find(b">", i)
    if j < 0 or text.find(b"@", i, j) < 0:
        return None
    return text[i : j + 1]


def parse_listing(line):
    """A scan listing "n size" or unique-id listing "n uid" line -> (n, bytes second field).
    The caller decides whether the second field is a size (parse_number(..., 0)) or a UID."""
    sp = line.find(b" ")
    if sp <= 0:
        raise ProtocolError("malformed listing")
    n = parse_number(line[:sp], 1)
    rest = line[sp + 1 :]
    sp2 = rest.find(b" ")
    if sp2 >= 0:  # RFC 1939 allows more after the size; we ignore it
        rest = rest[:sp2]
    if not rest:
        raise ProtocolError("malformed listing")
    return n, rest


def valid_uid(uid):
    if not 1 <= len(uid) <= _MAX_UID:
        return False
    for c in uid:
        if c < 0x21 or c > 0x7E:
            return False
    return True


def greeting(s):
    """ClientSession._event at the greeting: GREETING (the reply and its APOP timestamp)."""
    ln = s._next_line("greeting")
    if ln is None:
        return _NEED_DATA
    r = _reply_or_none(ln)
    if r is None or r.ok is None:
        s.fail("malformed greeting: %s" % _text(ln[:60]))
    s.reply = r
    s.timestamp = apop_timestamp(r.text) if r.ok else None
    s._state = _STATUS
    return GREETING


def line(s, p):
    """ClientSession._event inside a CAPA, LIST or UIDL block (p: its pending command): LINE,
    ENTRY, END or NEED_DATA."""
    ln = s._next_line(p[1] + " listing")
    if ln is None:
        return _NEED_DATA
    ln = unstuff_line(ln)
    if ln is None:
        s._state = _STATUS
        s._pending.pop(0)
        s.octets = s._count
        return END
    s._count += 1
    if s._count > p[3]:
        s.fail("%s reply does not end (more than %d lines)" % (p[1], p[3]))
    if p[0] == "CAPA":
        s.line = ln
        return _LINE
    try:
        n, field = parse_listing(ln)
    except ProtocolError:
        s.fail("%s: malformed entry %s" % (p[1], _text(ln[:60])))
    if n <= s._last or n > p[3]:
        s.fail("%s: message number %d out of order or range" % (p[1], n))
    s._last = n
    s.n = n
    s.field = field
    return _ENTRY


async def block(c, deadline, on_line):
    """The rest of a CAPA, LIST or UIDL reply on Pop3Client c (after its +OK): on_line(event) per
    LINE/ENTRY until END."""
    what = c.s.what + " listing"
    while True:
        ev = await c._status(deadline, what)
        if ev == END:
            return
        on_line(ev)
