"""Sans-I/O POP3 grammar shared by the server and the client (RFC 1939, 2449, 3206, 5034, 2595).

Theory of operation
-------------------
Commands: `parse_command(line)` turns one framed command line (from wire.LineReader) into
`(keyword, args)` or raises `ProtocolError`. The argument rules live in one table, `COMMANDS`,
keyed by keyword, so the server's state tables and the client's reply expectations agree with
the parser. Keywords are case-insensitive; arguments are split on single spaces, except PASS,
whose argument is the rest of the line (a password may hold spaces), and AUTH, whose initial
response may exceed the 40-octet argument limit.

Numbers follow one strict rule (documented in the README): 1 to 10 ASCII digits, no sign, no
leading zero, value at most MAX_NUMBER. So `RETR 01`, `RETR -1`, `RETR 1x` and
`LIST 4294967297` are all rejected with -ERR rather than read as something else.

Replies: `reply(ok, text, code)` builds a status line; `parse_reply(line)` reads one into
`Reply` (ok, resp-code, text). Whether a +OK reply is followed by a multi-line block depends on
the command *and* its arguments (`LIST` vs `LIST 1`): `is_multiline(keyword, nargs)` decides.

The server's side (`parse_command`, `COMMANDS`, `reply`, MAX_ARG, MAX_KEYWORD) is in pop3cmd.py,
loaded at its first use through this module's __getattr__ (`from pocketpost.pop3 import reply`
works as before): a fetch, which never parses a command or builds a status line, never holds it.
"""

from pocketpost.compat import const

_SERVER_SIDE = ("parse_command", "COMMANDS", "reply", "MAX_ARG", "MAX_KEYWORD")


def __getattr__(name):
    if name in _SERVER_SIDE:
        from pocketpost import pop3cmd

        return getattr(pop3cmd, name)
    raise AttributeError(name)

# Largest message number / line count we accept: fits a signed 32-bit int on every port.
MAX_NUMBER = const(2147483647)
_MAX_DIGITS = const(10)


class ProtocolError(Exception):
    """Peer bytes that break the grammar. `code` is an RFC 2449/3206 response code or None."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.msg = msg
        self.code = code


def parse_number(word, minimum=1):
    """Strict decimal: digits only, no sign, no leading zero, <= MAX_NUMBER."""
    n = len(word)
    if n == 0 or n > _MAX_DIGITS:
        raise ProtocolError("invalid number")
    for c in word:
        if c < 48 or c > 57:
            raise ProtocolError("invalid number")
    if n > 1 and word[0] == 48:
        raise ProtocolError("invalid number")
    v = int(word)
    if v > MAX_NUMBER or v < minimum:
        raise ProtocolError("invalid number")
    return v


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

    def __repr__(self):
        return "Reply(%r, %r, %r)" % (self.ok, self.code, self.text)


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


# RFC 1939 section 7: a UID is 1 to 70 characters in the range 0x21 to 0x7E.
MAX_UID = const(70)


def valid_uid(uid):
    if not 1 <= len(uid) <= MAX_UID:
        return False
    for c in uid:
        if c < 0x21 or c > 0x7E:
            return False
    return True
