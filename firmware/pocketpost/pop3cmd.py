"""The server's side of POP3 (RFC 1939, 2449, 3206, 5034, 2595; SASL PLAIN, LOGIN, SCRAM-SHA-256):
the sans-I/O session `Session`, the command grammar it parses with (`parse_command` against one
table, `COMMANDS`) and its status lines (`reply`). pop3.py has the grammar both sides share; the
servers' `from pocketpost.pop3 import reply` lands here (pop3's __getattr__), a fetch never loads
this module. The shell (server.py) loads it with its first connection and drops it when its
last one ends: a server that only listens keeps none of it. What every session shares (the
login Service, the counts of the cold modules) is pop3server.py's.

Theory of operation
-------------------
A shell (server.py) owns the socket. For every framed line from wire.LineReader it calls
`session.handle(line)` (or `handle_bad(kind)` for OVERLONG / BAD_LINE) and gets the bytes of one
status line (or a whole small multi-line reply such as CAPA). Before sending them it looks at
what the session asked for, in this order:

    (reply None)       a login's password hash is under way: let other sessions run, then
                       call `session.resume()`, until it answers the reply (auth in slices)
    session.delay      seconds to wait before sending (failed login; 0 otherwise)
    session.producer   an object with fill(buf) -> n: the rest of a multi-line reply (RETR, TOP,
                       LIST, UIDL) produced into the shell's fixed buffer, 0 when finished
    session.starttls   after sending, switch the connection to TLS (and drop buffered plaintext)
    session.closing    after sending, close the connection

Commands dispatch from one table per state (AUTHORIZATION: pop3login.TABLE, loaded only while
some session can log in, see pop3server.LOGIN_MODULES; TRANSACTION: pop3trans.TABLE, loaded only
while some session is logged in, see pop3server.TRANS_MODULES), as popa3d does: a command the
grammar knows but the state does not gets exactly one -ERR; nothing raises.
UPDATE is not a table: QUIT in TRANSACTION commits the deletions and ends the session. Any other
ending (drop, timeout, error) goes through `close()`, which releases the maildrop lock and
deletes nothing.

Message bodies are never held whole. The store keeps a message in its wire form (CRLF,
dot-stuffed, no terminator: store.py), so RETR is a copy: `PlainProducer` (pop3trans.py, as the
other producers) reads the file straight into the shell's buffer and hands it out unchanged (no
stuffing pass, no copy, no block buffer of its own), then ".\r\n". TOP of such a file:
`BodyProducer` (pop3body.py, loaded at the first TOP) without a stuffer reads it in fixed blocks
and cuts it (headers, blank line, n body lines; stuffing changes no line count). A file from
before the wire form (`mb.needs_stuffing(i)`) goes through `BodyProducer` with the DotStuffer
for both.
"""


import binascii

from pocketpost import log
from pocketpost.compat import const, release_cold, ticks_ms, urandom
from pocketpost.pop3 import ProtocolError, parse_number
from pocketpost.pop3server import IMPLEMENTATION, TRANS_MODULES, trans
from pocketpost.wire import OVERLONG

# The session's states; pop3login, pop3trans and server.py keep private copies (a public const
# would be one more interned name for each).
_AUTHORIZATION = const(0)
_TRANSACTION = const(1)
_DONE = const(2)
# What Session._held says the session holds (a pop3login copy of _LOGIN).
_LOGIN = const(1)
_TRANS = const(2)

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
        else:  # "s": a word (at most _MAX_ARG octets); "b": a SASL blob (the line limit only)
            if not w or (kind == "s" and len(w) > _MAX_ARG):
                raise ProtocolError("invalid argument")
            for c in w:
                if c < 0x21 or c > 0x7E:
                    raise ProtocolError("invalid argument")
            args.append(w)
    return keyword, tuple(args)


def reply(ok, text=b"", code=None):
    """Build a status line: +OK / -ERR, an optional [resp-code], text, CRLF."""
    out = b"+OK" if ok else b"-ERR"
    if code:
        out += b" [" + (code.encode() if isinstance(code, str) else code) + b"]"
    if text:
        out += b" " + (text.encode() if isinstance(text, str) else text)
    return out + b"\r\n"


class Session:
    # Defaults as class attributes: an instance holds only what it has set (a session that never
    # logs in, or logs in without SASL, has no slots for the rest: less heap per session). A
    # USER/PASS session through its RETRs sets 11 (svc, peer, sid, _held, user, _check, state,
    # mb, _del, producer; closing at QUIT; tls_active over TLS): its attribute table holds 12
    # before it grows to 17 slots (192 -> 288 B on the 64-bit host; it held 23, 384 B, with a
    # slot of its own for every default a command reset), so what a typical session never
    # changes stays a default here and is set only when it changes.
    state = _AUTHORIZATION
    tls_active = False
    delay = 0  # seconds before the reply (a failed login); reset by the next command
    producer = None
    starttls = False
    closing = False
    user = None  # name given by USER; once logged in, the authenticated user name
    failures = 0
    mb = None
    _del = None  # bitmask of deleted messages
    _ndel = 0
    _sdel = 0
    _sasl = 0  # waiting for a SASL continuation: a pop3login step (_SASL_PLAIN, ...)
    _sasl_user = b""  # AUTH LOGIN: the user name, until the password comes
    _scram = None  # AUTH SCRAM-SHA-256 under way: a scram.ServerLogin
    _check = None  # a login check under way (see resume): (auth.LoginCheck, user name, method)
    _blockbuf = None  # file block for TOP and dot-stuffed replies (see pop3body.producer)
    # What the session holds of the cold code: _LOGIN (the login code, Service.hold) from its
    # start until logged in or closed; _TRANS (pop3trans.py, TRANS_MODULES) from its first
    # command in TRANSACTION to close(); 0 nothing. One attribute for both: never at once.
    _held = 0
    _stuffer = None
    timestamp = None  # the RFC 1939 banner timestamp: made only where APOP is offered

    def __init__(self, service, peer="?", tls_active=False, sid=0):
        self.svc = service
        self.peer = peer
        self.sid = sid  # the shell's session number, on every log line of this session
        if tls_active:
            self.tls_active = True
        if service.apop_enabled:
            self.timestamp = "<%s.%d@%s>" % (binascii.hexlify(urandom(6)).decode(), ticks_ms() & 0xFFFFFF, service.cfg["hostname"])  # type: ignore[operator]  # stub: ticks are opaque
        self._held = _LOGIN  # holds the login code (Service.hold) until logged in or closed; last
        service.hold()

    # -- entry points ----------------------------------------------------------------------
    def greeting(self):
        if self.svc.apop_enabled:
            return reply(True, "%s ready %s" % (IMPLEMENTATION, self.timestamp))
        return ("+OK %s ready\r\n" % IMPLEMENTATION).encode()  # (a short "%s ready": an interned name)

    def handle(self, line):
        self._reset()
        if self.state == _DONE:
            self.closing = True
            return reply(False, "session is over")
        if self._sasl:
            step = self._sasl
            self._sasl = 0
            from pocketpost import pop3login

            return pop3login.sasl_continue(self, step, bytes(line))
        try:
            kw, args = parse_command(line)
        except ProtocolError as e:
            return reply(False, e.msg, e.code)
        if self.state == _AUTHORIZATION:
            from pocketpost import pop3login

            table = pop3login.TABLE
        else:
            if self._held != _TRANS:
                self._held = _TRANS
                trans[0] += 1
            from pocketpost import pop3trans

            table = pop3trans.TABLE
        fn = table.get(kw)
        if fn is None:
            return reply(False, "%s not valid in this state" % kw)
        try:
            return fn(self, args)
        except Exception as e:  # store/file trouble: one -ERR, never a dead session
            log.error("pop3 #%d %s %s: %s %r", self.sid, self.peer, kw, type(e).__name__, e)
            p = self.producer
            if p is not None:  # made before the failure: no reply body may follow the -ERR
                self.producer = None
                try:
                    p.close()  # its message file
                except Exception:
                    pass
            return reply(False, "internal error", getattr(e, "code", None) or "SYS/TEMP")

    def resume(self):
        """Continue the login check that made handle() answer None (pop3login.resume): None
        while it is unfinished (the shell lets other sessions run, then calls again), then the
        reply to the login command."""
        if self._check is None:
            return reply(False, "nothing to resume")
        from pocketpost import pop3login

        return pop3login.resume(self)

    def _reset(self):
        """What the last reply asked of the shell is done: back to the defaults (set only when
        changed, so the attribute table holds no slot for a default that never changed)."""
        if self.delay:
            self.delay = 0
        if self.producer is not None:
            self.producer = None
        if self.starttls:
            self.starttls = False

    def handle_bad(self, k):  # k: OVERLONG or BAD_LINE (wire.LineReader)
        self._reset()
        if self._sasl:
            self._sasl = 0
            self._scram = None
            return reply(False, "bad SASL response")
        if k == OVERLONG:
            return reply(False, "line too long")
        return reply(False, "invalid octet in command")

    def close(self):
        """The connection ended without QUIT (or after it): close a reply still being produced
        (its message file), release the lock, delete nothing."""
        if self._check is not None:
            self._check = None
        if self._scram is not None:
            self._scram = None
        self._unhold()
        if self.producer is not None:
            try:
                self.producer.close()
            except Exception as e:
                log.error("pop3 #%d %s producer close: %r", self.sid, self.peer, e)
            self.producer = None
        if self.mb is not None:
            try:
                self.mb.release()
            except Exception as e:
                log.error("pop3 #%d %s release: %r", self.sid, self.peer, e)
            self.mb = None
        self.state = _DONE
        if self._held == _TRANS:  # last: the producer above was pop3trans's
            self._held = 0
            release_cold(trans, TRANS_MODULES)  # imported again by the next session to log in

    # -- AUTHORIZATION -----------------------------------------------------------------------
    def _unhold(self):
        if self._held == _LOGIN:
            self._held = 0
            self.svc.release()

