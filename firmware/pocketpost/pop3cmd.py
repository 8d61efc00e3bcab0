"""The server's side of the POP3 grammar (pop3.py has the shared part and the theory): command
lines parsed against one table, `COMMANDS`, and status lines built with `reply`. The servers get
these names from pop3 as before (its __getattr__ loads this module at their first use); a fetch
never loads it."""

from pocketpost.compat import const
from pocketpost.pop3 import ProtocolError, parse_number

# RFC 1939 section 3: "Each argument may be up to 40 characters long."
_MAX_ARG = const(40)
# RFC 1939 keywords are 3 or 4 characters; extensions (RFC 2449) keep to 4.
_MAX_KEYWORD = const(4)

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
    if not kw or len(kw) > _MAX_KEYWORD:
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
            if not w or len(w) > _MAX_ARG:
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
