"""Sans-I/O POP3 server session (RFC 1939, 2449, 3206, 5034, 2595; SASL PLAIN, LOGIN, SCRAM-SHA-256).

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
some session can log in, see LOGIN_MODULES; TRANSACTION: pop3trans.TABLE, loaded only while some
session is logged in, see TRANS_MODULES), as popa3d does: a command the
grammar knows but the state does not gets exactly one -ERR; nothing raises.
UPDATE is not a table: QUIT in TRANSACTION commits the deletions and ends the session. Any other
ending (drop, timeout, error) goes through `close()`, which releases the maildrop lock and
deletes nothing.

Message bodies are never held whole. The store keeps a message in its wire form (CRLF,
dot-stuffed, no terminator: store.py), so RETR is a copy: `PlainProducer` (pop3trans.py, as the
other producers) reads the file
straight into the shell's buffer and hands it out unchanged (no stuffing pass, no copy, no block
buffer of its own), then ".\r\n". TOP of such a file: `BodyProducer` (pop3body.py, loaded at the
first TOP) without a stuffer reads it in fixed blocks and cuts it (headers, blank line, n body
lines; stuffing changes no line count). A file from before the wire form
(`mb.needs_stuffing(i)`) goes through `BodyProducer` with the DotStuffer for both.
"""

import binascii

from pocketpost import heapmark, log
from pocketpost.compat import const, release_cold, ticks_ms, urandom
from pocketpost.pop3 import ProtocolError, parse_command, reply
from pocketpost.wire import OVERLONG

# The session's states; pop3login, pop3trans and server.py keep private copies (a public const
# would be one more interned name for each).
_AUTHORIZATION = const(0)
_TRANSACTION = const(1)
_DONE = const(2)

# A login's PBKDF2 runs in slices of about this many ms; between slices the shell serves other
# sessions, so this bounds the stall a login causes (the chunk of iterations between two clock
# reads: serverstart.login_setup).
_LOGIN_SLICE_MS = const(10)
IMPLEMENTATION = "pocketpost"

# The login code: pop3login.py (the AUTHORIZATION state's commands), smtpauth.py (SMTP AUTH),
# auth.py (password records, LoginCheck; authsetup.py, its start-up half, is loaded at start only)
# and scram.py, imported where used and dropped whenever
# no session can be in a login (Service.hold/release): ~12 KiB of heap on the 64-bit host
# (docs/FIGURES.md "Server heap") while every session is logged in, on port 25 or gone.
LOGIN_MODULES = ("pop3login", "smtpauth", "loginsvc", "auth", "authsetup", "scram")
holds = [0]  # sessions that may still log in, every Service's (POP3 and SMTP): Service.hold
# The TRANSACTION state's code: pop3trans.py (its commands and the reply producers), loaded by
# the first session to be logged in and dropped when no session is (Session._trans): a server
# only listening, or with every session before its login, keeps none of it. pop3body.py and
# wirestuff.py (TOP, the RETR of a file from before the wire form) load at their first use and
# are dropped with it (a plain RETR never loads them).
TRANS_MODULES = ("pop3trans", "pop3body", "wirestuff")
trans = [0]  # sessions holding pop3trans.py (logged in, not yet closed), every Service's



class Service:
    """What every session of one server shares: users, store, policy, limits, throttle."""

    def __init__(self, server_cfg, users, store, tls_available=False):
        # server_cfg is config.check's "server" section: every key is there, defaults merged
        # (serverconf.SERVER_DEFAULTS is the one place they are written).
        self.cfg = server_cfg
        self.users = users
        self.store = store
        self.tls_available = tls_available
        self.tls_ctx = None  # the shell's TLS context (server.py), the SMTP receiver's too
        self.hostname = server_cfg["hostname"]
        self.policy = server_cfg["plaintext_auth"]
        self.max_failures = server_cfg["max_auth_failures"]
        # The failed-login throttle's state (its code: loginsvc.fail/succeed/failures): delays,
        # window and per-address records [failures, last failure ticks].
        self.delays = server_cfg["auth_delays"]
        self.window_ms = int(server_cfg["auth_fail_window"] * 1000)
        self.fails = {}  # type: dict
        self.block_size = server_cfg["block_size"]
        self.units = 0  # RETR copy units out (_RETR_UNITS)
        from pocketpost import serverstart  # start-up only (heapmark.forget)

        self.nets, self.apop_enabled, self.iterations, self._dummy, self.scram_secret, self.login_chunk = \
            serverstart.login_setup(server_cfg, users)
        self.on_rehash = None  # the shell's fn(name, new_hash): make the new hash durable
        if not holds[0]:
            heapmark.forget(LOGIN_MODULES)  # imported again by the first session that logs in

    def hold(self):
        """A session that may log in (POP3 before its login, SMTP submission before AUTH): the
        login code stays loaded until it calls release()."""
        holds[0] += 1

    def release(self):
        """That session logged in or ended. With none left, drop the login code: nothing refers
        to it then (only a session before its login holds a LoginCheck, a scram.ServerLogin or
        an exception of those modules), so no two copies of it can ever meet."""
        release_cold(holds, LOGIN_MODULES)

    def trusted(self, ip):
        from pocketpost import loginsvc  # login code: loaded while a session can log in

        return loginsvc.trusted(self, ip)

    def rehashed(self, name, new_hash):
        from pocketpost import loginsvc

        loginsvc.rehashed(self, name, new_hash)


class Session:
    # Defaults as class attributes: an instance holds only what it has set (a session that never
    # logs in, or logs in without SASL, has no slots for the rest: less heap per session).
    delay = 0  # set by every command
    producer = None
    starttls = False
    closing = False
    user = None  # name given by USER
    login = None  # authenticated user name
    failures = 0
    mb = None
    _del = None  # bitmask of deleted messages
    _ndel = 0
    _sdel = 0
    _sasl = 0  # waiting for a SASL continuation: a pop3login step (_SASL_PLAIN, ...)
    _sasl_user = b""  # AUTH LOGIN: the user name, until the password comes
    _scram = None  # AUTH SCRAM-SHA-256 under way: a scram.ServerLogin
    _check = None  # an auth.LoginCheck under way (see resume)
    _check_name = None
    _check_method = None
    _blockbuf = None  # file block for TOP and dot-stuffed replies (see pop3body.producer)
    _trans = False  # holds pop3trans.py (TRANS_MODULES): from its first command in TRANSACTION to close()
    _stuffer = None
    timestamp = None  # the RFC 1939 banner timestamp: made only where APOP is offered

    def __init__(self, service, peer="?", tls_active=False, sid=0):
        self.svc = service
        self.peer = peer
        self.sid = sid  # the shell's session number, on every log line of this session
        self.tls_active = tls_active
        self.state = _AUTHORIZATION
        if service.apop_enabled:
            self.timestamp = "<%s.%d@%s>" % (_hex(urandom(6)), ticks_ms() & 0xFFFFFF, service.hostname)  # type: ignore[operator]  # stub: ticks are opaque
        self._held = True  # holds the login code (Service.hold) until logged in or closed; last
        service.hold()

    # -- entry points ----------------------------------------------------------------------
    def greeting(self):
        if self.svc.apop_enabled:
            return reply(True, "%s ready %s" % (IMPLEMENTATION, self.timestamp))
        return ("+OK %s ready\r\n" % IMPLEMENTATION).encode()  # (a short "%s ready": an interned name)

    def handle(self, line):
        self.delay = 0
        self.producer = None
        self.starttls = False
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
            if not self._trans:
                self._trans = True
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

    def handle_bad(self, kind):
        self.delay = 0
        self.producer = None
        self.starttls = False
        if self._sasl:
            self._sasl = 0
            self._scram = None
            return reply(False, "bad SASL response")
        if kind == OVERLONG:
            return reply(False, "line too long")
        return reply(False, "invalid octet in command")

    def close(self):
        """The connection ended without QUIT (or after it): close a reply still being produced
        (its message file), release the lock, delete nothing."""
        self._check = None
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
        if self._trans:  # last: the producer above was pop3trans's
            self._trans = False
            release_cold(trans, TRANS_MODULES)  # imported again by the next session to log in

    # -- AUTHORIZATION -----------------------------------------------------------------------
    def _unhold(self):
        if self._held:
            self._held = False
            self.svc.release()


def _hex(b):
    return binascii.hexlify(b).decode()
