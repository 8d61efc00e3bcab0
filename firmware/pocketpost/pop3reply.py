"""The client's half of the POP3 grammar (see pop3.py, through which it is imported: `from
pocketpost.pop3 import parse_reply` loads this module at the first use): commands built,
status lines and listings parsed, UIDs checked. A server never loads it.
"""

from pocketpost.compat import const
from pocketpost.pop3 import ProtocolError, parse_number


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
_MAX_UID = const(70)


def valid_uid(uid):
    if not 1 <= len(uid) <= _MAX_UID:
        return False
    for c in uid:
        if c < 0x21 or c > 0x7E:
            return False
    return True
