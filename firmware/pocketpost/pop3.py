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
The client's half (command, is_multiline, Reply, parse_reply, parse_listing, valid_uid) is
pop3reply.py, loaded by its first use through this module (`from pocketpost.pop3 import
parse_reply` works as before): a server never loads it.
"""

from pocketpost.compat import const

# RFC 1939 section 3: "Each argument may be up to 40 characters long."
MAX_ARG = const(40)
# RFC 1939 keywords are 3 or 4 characters; extensions (RFC 2449) keep to 4.
MAX_KEYWORD = const(4)
# Largest message number / line count we accept: fits a signed 32-bit int on every port.
MAX_NUMBER = const(2147483647)
_MAX_DIGITS = const(10)


class ProtocolError(Exception):
    """Peer bytes that break the grammar. `code` is an RFC 2449/3206 response code or None."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.msg = msg
        self.code = code


# Argument kinds: "n" message number (>= 1), "z" count (>= 0), "s" word (<= MAX_ARG octets),
# "r" rest of line (may hold spaces), "b" SASL blob (AUTH initial response, no 40-octet cap).
# A trailing "?" makes the remaining arguments optional.
COMMANDS = {
    "USER": "s",
    "PASS": "r",
    "APOP": "ss",
    "AUTH": "?sb",
    "STLS": "",
    "CAPA": "",
    "QUIT": "",
    "STAT": "",
    "LIST": "?n",
    "RETR": "n",
    "DELE": "n",
    "NOOP": "",
    "RSET": "",
    "TOP": "nz",
    "UIDL": "?n",
}


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


def _word(b):
    for c in b:
        if c < 0x21 or c > 0x7E:
            raise ProtocolError("invalid argument")
    return b


def parse_command(line):
    """One command line (bytes, no line end) -> (KEYWORD str, tuple of args).
    Numbers come back as int, words and blobs as bytes. Raises ProtocolError."""
    sp = line.find(b" ")
    kw = line if sp < 0 else line[:sp]
    if not kw or len(kw) > MAX_KEYWORD:
        raise ProtocolError("unknown command")
    for c in kw:
        if not (65 <= c <= 90 or 97 <= c <= 122):
            raise ProtocolError("unknown command")
    keyword = kw.decode().upper()
    spec = COMMANDS.get(keyword)
    if spec is None:
        raise ProtocolError("unknown command")
    rest = b"" if sp < 0 else line[sp + 1 :]
    optional = spec.startswith("?")
    if optional:
        spec = spec[1:]
    if spec == "r":  # PASS: everything after the single separating space
        if sp < 0 or not rest:
            raise ProtocolError("missing argument")
        return keyword, (rest,)
    if sp >= 0 and not rest:
        raise ProtocolError("trailing space")  # "LIST " is not "LIST"
    words = rest.split(b" ") if rest else []
    if len(words) > len(spec) or (len(words) < len(spec) and not optional):
        raise ProtocolError("wrong number of arguments")
    args = []
    for i in range(len(words)):
        w = words[i]
        kind = spec[i]
        if kind == "n":
            args.append(parse_number(w, 1))
        elif kind == "z":
            args.append(parse_number(w, 0))
        elif kind == "s":
            if not w or len(w) > MAX_ARG:
                raise ProtocolError("invalid argument")
            args.append(_word(w))
        else:  # "b": SASL blob, bounded by the command line limit only
            if not w:
                raise ProtocolError("invalid argument")
            args.append(_word(w))
    return keyword, tuple(args)


def reply(ok, text=b"", code=None):
    """Build a status line: +OK / -ERR, an optional [resp-code], text, CRLF."""
    out = b"+OK" if ok else b"-ERR"
    if code:
        out += b" [" + (code.encode() if isinstance(code, str) else code) + b"]"
    if text:
        out += b" " + (text.encode() if isinstance(text, str) else text)
    return out + b"\r\n"


def __getattr__(name):
    """The client's half of the grammar (pop3reply.py: command, is_multiline, Reply,
    parse_reply, parse_listing, valid_uid, MAX_UID), loaded at its first use: a server, which
    never uses it, keeps none of it in its heap."""
    from pocketpost import pop3reply

    return getattr(pop3reply, name)
