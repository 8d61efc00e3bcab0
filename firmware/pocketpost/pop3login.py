"""The POP3 server's AUTHORIZATION state (RFC 1939 USER/PASS/APOP, RFC 5034 AUTH with SASL
PLAIN, LOGIN and SCRAM-SHA-256, RFC 2595 STLS): functions of a pop3cmd.Session.

Loaded only while a session can log in, like auth.py and scram.py (pop3server.LOGIN_MODULES:
Service.hold/release drop all three when no session is before its login), so a server whose
sessions are logged in, or which has none, keeps none of this code in its heap (docs/FIGURES.md
"Server heap"). pop3cmd.Session.handle dispatches AUTHORIZATION commands through TABLE and
SASL continuation lines through sasl_continue; Session.resume finishes a login check here.
"""

from pocketpost import log
from pocketpost.compat import const, ticks_diff, ticks_ms
from pocketpost.pop3 import reply
from pocketpost.pop3server import IMPLEMENTATION

_TRANSACTION = const(1)  # pop3cmd's (a private copy)
_DONE = const(2)  # pop3cmd's (a private copy)
_LOGIN_SLICE_MS = const(10)  # pop3server's (a private copy)

# SASL continuation steps (Session._sasl).
_SASL_PLAIN = const(1)
_LOGIN_USER = const(2)
_LOGIN_PASS = const(3)
_SCRAM = const(4)  # AUTH SCRAM-SHA-256 under way: scram.ServerLogin.step takes the next line

# Login methods, for the log (login()'s `method`: an index into a constant tuple, whose strings
# cost no interned name).
_USER_PASS = const(0)
_APOP = const(1)
_AUTH_PLAIN = const(2)
_AUTH_LOGIN = const(3)
_AUTH_SCRAM = const(4)

# Names here cost no interned name of their own (issue 12, docs/ARCHITECTURE.md "what costs a
# name"): the commands are named after themselves (pop3cmd interns "USER", "PASS", ...), the
# helpers with names the listening server interns (_plain, _scram, _sasl).


def _plain(s):
    """None if plain-text logins are allowed on this connection, else the -ERR that refuses one."""
    p = s.svc.policy
    if s.tls_active or p in ("always",) or (p == "local" and s.svc.trusted(s.peer)):
        return None
    return b"-ERR [AUTH] plain-text login needs TLS: use STLS or port POP3S\r\n"


def CAPA(s, args):
    # Whole lines in each literal: a capability of its own ("RESP-CODES") would be an interned name.
    out = "+OK capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
    if not _plain(s):
        out += "USER\r\nSASL PLAIN LOGIN SCRAM-SHA-256\r\n"
    else:  # SCRAM sends no password: offered without TLS too
        out += "SASL SCRAM-SHA-256\r\n"
    if s.svc.tls_available and not s.tls_active:
        out += "STLS\r\nIMPLEMENTATION "
    else:
        out += "IMPLEMENTATION "
    return (out + IMPLEMENTATION + "\r\n.\r\n").encode()


def QUIT(s, args):
    """QUIT in AUTHORIZATION (TRANSACTION's, the UPDATE state: pop3trans.QUIT)."""
    s.closing = True
    s.state = _DONE
    return b"+OK bye\r\n"




def USER(s, args):
    r = _plain(s)
    if r:
        return r
    s.user = bytes(args[0]).decode()
    return b"+OK send PASS\r\n"  # (whole: "send PASS" alone would be an interned name)


def PASS(s, args):
    r = _plain(s)
    if r:
        return r
    if s.user is None:
        return b"-ERR USER first\r\n"
    name = s.user
    s.user = None
    return login(s, name, args[0], None, _USER_PASS)


def APOP(s, args):
    if not s.svc.apop_enabled:
        return reply(False, "APOP is not enabled here", "AUTH")
    from pocketpost import auth

    name = auth.user_of(s.svc.users, bytes(args[0]).decode())  # (as USER/PASS: "Alice@example.org" is alice)
    digest = bytes(args[1]).lower()
    u = s.svc.users.get(name)
    secret = u.get("apop_secret") if u is not None else None
    # Same work for unknown users and users without APOP: compute a digest either way.
    want = auth.apop_digest(s.timestamp, secret or "\x00no-apop")
    ok = auth.equal(want, digest) and secret is not None
    return login(s, name, None, u if ok else False, _APOP)


def AUTH(s, args):
    if not args:  # "AUTH" alone: list mechanisms (a pre-RFC 5034 habit some clients keep)
        if not _plain(s):
            return b"+OK\r\nPLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\n.\r\n"
        return b"+OK\r\nSCRAM-SHA-256\r\n.\r\n"
    mech = bytes(args[0]).upper()
    if mech == b"SCRAM-SHA-256":  # the password never crosses: allowed without TLS
        from pocketpost import scram  # only when a peer uses SCRAM: its code costs heap

        s._scram = scram.ServerLogin(s.svc)
        if len(args) < 2:
            s._sasl = _SCRAM
            return b"+ \r\n"
        return _scram(s, bytes(args[1]))
    if mech != b"PLAIN" and mech != b"LOGIN":
        return reply(False, "unsupported SASL mechanism")
    r = _plain(s)
    if r:
        return r
    if mech == b"LOGIN":  # draft-murchison-sasl-login: user name, then password, each base64
        if len(args) < 2:
            s._sasl = _LOGIN_USER
            from pocketpost import auth

            return b"+ VXNlcm5hbWU6\r\n"  # "Username:" (auth.py: the LOGIN prompts)
        return sasl_continue(s, _LOGIN_USER, bytes(args[1]))
    if len(args) < 2:
        s._sasl = _SASL_PLAIN
        return b"+ \r\n"
    return _sasl(s, bytes(args[1]))


def sasl_continue(s, step, blob):
    if step == _SASL_PLAIN:
        return _sasl(s, blob)
    if blob == b"*":
        s._scram = None
        return reply(False, "authentication cancelled")
    if step == _SCRAM:
        return _scram(s, blob)
    from pocketpost import auth

    try:
        raw = auth.b64decode(blob)
    except auth.AuthError:
        return login(s, "", b"", None, _AUTH_LOGIN)  # malformed: pay a check all the same
    if step == _LOGIN_USER:
        s._sasl_user = raw
        s._sasl = _LOGIN_PASS
        return b"+ UGFzc3dvcmQ6\r\n"  # "Password:"
    name = s._sasl_user
    s._sasl_user = b""
    try:
        user = name.decode()
    except UnicodeError:
        user = ""  # no such user: the same check and answer as any unknown name
    return login(s, user, raw, None, _AUTH_LOGIN)


# -- SCRAM-SHA-256 (RFC 5802, RFC 7677, RFC 5034): scram.ServerLogin does the work ----------
# It fails through login() like every other mechanism (failure delay, max failures, the
# throttle's reset on success); an unknown name fails at the proof, like a wrong password.
def _scram(s, blob):
    """server-first, then server-final as a challenge (RFC 5034 section 4), then the login."""
    x = s._scram
    msg = x.step(blob)
    if msg is not None:
        s._sasl = _SCRAM
        return b"+ " + msg + b"\r\n"
    s._scram = None
    return login(s, x.name, None, x.user or False, _AUTH_SCRAM)


def _sasl(s, blob):
    """AUTH PLAIN's response."""
    if blob == b"*":
        return reply(False, "authentication cancelled")
    from pocketpost import auth

    name, pw, fail = auth.plain_login(blob)  # malformed or a proxy login: a check all the same
    return login(s, name, pw, None, _AUTH_PLAIN, fail)


def login(s, name, password, user, method, force_fail=False):
    """user None: check the password (handle() answers None, resume() finishes the login);
    False: already failed; a dict: already verified. method: the command, for the log (_USER_PASS,
    _APOP, _AUTH_PLAIN, _AUTH_LOGIN, _AUTH_SCRAM)."""
    if user is None:
        from pocketpost import auth

        name = auth.user_of(s.svc.users, name)  # "Alice@example.org" as mail clients fill it in: alice
        s._check = (auth.LoginCheck(s.svc, name, password, force_fail), name, method)  # one attribute: see pop3cmd.Session
        return None
    method = ("USER/PASS", "APOP", "AUTH PLAIN", "AUTH LOGIN", "AUTH SCRAM-SHA-256")[method]
    if not user:
        from pocketpost import loginsvc  # the throttle's code: a failure, a success after one

        s.failures += 1
        s.delay = loginsvc.fail(s.svc, s.peer)
        log.info("pop3 #%d %s login failed user=%s method=%s failures=%d delay=%ss", s.sid, s.peer,
                 loginsvc.text(name), method, s.failures, s.delay)
        if s.failures >= s.svc.max_failures:
            s.closing = True
            return reply(False, "authentication failed; too many failures, closing", "AUTH")
        return reply(False, "authentication failed", "AUTH")
    try:
        mb = s.svc.store.lock(user.get("mailbox", name))
    except Exception as e:
        code = getattr(e, "code", None) or "SYS/TEMP"
        log.info("pop3 #%d %s login user=%s method=%s mailbox unavailable: %s", s.sid, s.peer, name, method, code)
        if code in ("IN-USE",):  # what the user can do: the other client, or how long to wait
            t = int(s.svc.cfg["idle_timeout"])
            return reply(False, "mailbox is in use by another session: quit the other mail client, or wait "
                         "(a session left open ends after %s without a command)"
                         % ("%d min" % ((t + 59) // 60) if t >= 120 else "%d s" % t), code)
        return reply(False, "mailbox unavailable", code)
    if s.peer in s.svc.fails:  # (else nothing to forget: loginsvc.py stays unloaded)
        from pocketpost import loginsvc

        s.delay = loginsvc.succeed(s.svc, s.peer)  # (the rest of the last failure's delay)
    s.mb = mb
    s.user = name  # the authenticated user name from now on
    s.state = _TRANSACTION
    s._unhold()  # no login after this one
    s._del = bytearray((mb.count + 7) // 8)  # (_ndel, _sdel: their class defaults, 0)
    log.info("pop3 #%d %s login user=%s method=%s tls=%d messages=%d", s.sid, s.peer, name, method,
             int(s.tls_active), mb.count)
    return reply(True, "%d messages (%d octets)" % (mb.count, mb.total_size))


def STLS(s, args):
    if s.tls_active:
        return reply(False, "TLS already active")
    if not s.svc.tls_available:
        return reply(False, "TLS not available")
    s.starttls = True
    s.user = None
    return reply(True, "begin TLS negotiation")


def resume(s):
    """Continue the login check that made handle() answer None, for about LOGIN_SLICE_MS:
    None while it is unfinished (the shell lets other sessions run, then calls again),
    then the reply to the login command."""
    c = s._check
    if c is None:
        return reply(False, "nothing to resume")
    w = c[0]
    t0 = ticks_ms()
    n = s.svc.login_chunk
    while not w.step(n):
        if ticks_diff(ticks_ms(), t0) >= _LOGIN_SLICE_MS:  # type: ignore[operator]  # stub: ticks are opaque
            return None
    s._check = None
    name = c[1]
    if w.new_hash is not None:
        s.svc.rehashed(name, w.new_hash)
    return login(s, name, None, w.user if w.ok else False, c[2])


TABLE = {
    "CAPA": CAPA,
    "USER": USER,
    "PASS": PASS,
    "APOP": APOP,
    "AUTH": AUTH,
    "STLS": STLS,
    "QUIT": QUIT,
}
