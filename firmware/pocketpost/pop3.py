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
leading zero, value at most _MAX_NUMBER. So `RETR 01`, `RETR -1`, `RETR 1x` and
`LIST 4294967297` are all rejected with -ERR rather than read as something else.

Replies: `reply(ok, text, code)` builds a status line; `parse_reply(line)` reads one into
`Reply` (ok, resp-code, text). Whether a +OK reply is followed by a multi-line block depends on
the command *and* its arguments (`LIST` vs `LIST 1`): `is_multiline(keyword, nargs)` decides.

This module keeps only what both sides use (ProtocolError, parse_number, _MAX_NUMBER). The two
halves load at their first use through this module's __getattr__ (`from pocketpost.pop3 import
reply` and `... import parse_reply` work as before):
- the server's side, pop3cmd.py: `parse_command`, `COMMANDS`, `reply` (a
  fetch, which never parses a command or builds a status line, never holds it);
- the client's side, in pop3client.py (the client session, which uses them): command,
  is_multiline, Reply, parse_reply, parse_listing, valid_uid (a server never holds it).
"""

from pocketpost.compat import const

# Largest message number / line count we accept: fits a signed 32-bit int on every port.
_MAX_NUMBER = const(2147483647)
_MAX_DIGITS = const(10)


class ProtocolError(Exception):
    """Peer bytes that break the grammar. `code` is an RFC 2449/3206 response code or None."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.msg = msg
        self.code = code


def parse_number(word, a=1):
    """Strict decimal: digits only, no sign, no leading zero, a <= it <= _MAX_NUMBER (a: one letter,
    an interned name the server has already)."""
    n = len(word)
    if n == 0 or n > _MAX_DIGITS:
        raise ProtocolError("invalid number")
    for c in word:
        if c < 48 or c > 57:
            raise ProtocolError("invalid number")
    if n > 1 and word[0] == 48:
        raise ProtocolError("invalid number")
    v = int(word)
    if v > _MAX_NUMBER or v < a:
        raise ProtocolError("invalid number")
    return v


def __getattr__(name):
    """The server's side (pop3cmd.py) or the client's (pop3client.py), loaded at its first use."""
    if name in ("parse_command", "COMMANDS", "reply"):  # (a literal: a module name is one more interned name)
        from pocketpost import pop3cmd

        return getattr(pop3cmd, name)
    from pocketpost import pop3client

    return getattr(pop3client, name)
