"""The SMTP receiver's AUTH (RFC 4954; SASL PLAIN, LOGIN, SCRAM-SHA-256): functions of an
smtp.Session, offered on the submission ports only.

Loaded only while a submission session is before its AUTH, like auth.py and scram.py
(pop3server.LOGIN_MODULES: Service.hold/release drop them when no session can log in), so a
receiver whose sessions are on port 25 or logged in keeps none of this code in its heap
(docs/FIGURES.md "Server heap"). smtpenv.auth makes the cheap checks and calls
start(); handle() passes SASL continuation lines to step(); resume() finishes a password check.
Names (functions, arguments, the SASL steps' strings) are built-in ones or the POP3 server's: see
smtp.py's module doc.
"""

from pocketpost import log, loginsvc
from pocketpost.compat import const, ticks_diff, ticks_ms
from pocketpost.smtp import reply

_LOGIN_SLICE_MS = const(10)  # pop3server's (a private copy)
# Refusals: smtptext.text's numbers (smtp.reply; private copies, host_tests/test_smtp_texts.py).
_T_RESUME = const(1)
_T_AUTH_SYNTAX = const(41)
_T_MECH = const(42)
_T_CLEARTEXT = const(43)
_T_CANCELLED = const(44)
_T_AUTH_LIMIT = const(45)
_T_AUTH_FAILED = const(46)


def start(s, arg):
    """AUTH's argument, after smtpenv.auth's checks (smtpenv is loaded: the command phase)."""
    from pocketpost import smtpenv  # (imported per call: a module-level reference would keep a dropped copy)

    parts = [p for p in arg.split(b" ") if p]
    if not parts or len(parts) > 2:
        return smtpenv.error(s, reply(_T_AUTH_SYNTAX))
    mech = parts[0].upper()
    initial = parts[1] if len(parts) > 1 else None
    s.method = mech
    if mech == b"SCRAM-SHA-256":  # the password never crosses: allowed without TLS
        from pocketpost import scram  # only when a peer uses SCRAM: its code costs heap

        s._scram = scram.ServerLogin(s.svc.logins)
        if initial is None:
            s.step = "scram"
            return b"334 \r\n"
        return _scram(s, initial)
    if mech != b"PLAIN" and mech != b"LOGIN":
        return reply(_T_MECH)
    if not smtpenv._plain(s):
        return reply(_T_CLEARTEXT)
    if mech == b"PLAIN":
        if initial is None:
            s.step = "plain"
            return b"334 \r\n"
        return _plain(s, initial)
    if initial is None:  # LOGIN
        s.step = "user"
        return b"334 VXNlcm5hbWU6\r\n"  # "Username:" (auth.py: the LOGIN prompts)
    return step(s, initial, "user")


def step(s, line, step=None):
    """A SASL continuation line; the step under way is s.step ("scram", "plain", or LOGIN's
    "user" and "password": what the line holds), or `step` for LOGIN's initial response."""
    if step is None:  # a continuation line: "*" cancels (RFC 4954 4)
        step = s.step
        if line == b"*":
            s.step = None
            s._scram = None
            return reply(_T_CANCELLED)
    s.step = None
    if step == "scram":
        return _scram(s, line)
    if step == "plain":
        return _plain(s, line)
    if step == "user":  # LOGIN: the user name, then the password is asked for
        raw = decode(line)
        try:
            s.user = None if raw is None else raw.decode()
        except UnicodeError:
            s.user = None
        s.step = "password"
        return b"334 UGFzc3dvcmQ6\r\n"  # "Password:"
    name = s.user  # LOGIN: the password
    s.user = None
    password = decode(line)
    if name is None or password is None:
        return verify(s, "", b"", True)
    return verify(s, name, password, False)


def _plain(s, blob):
    from pocketpost import auth

    name, password, fail = auth.plain_login(blob)  # malformed or a proxy login: a check all the same
    return verify(s, name, password, fail)


def decode(blob):
    """auth.b64decode, None for malformed base64 (LOGIN still asks for the password)."""
    from pocketpost import auth

    try:
        return auth.b64decode(blob)
    except auth.AuthError:
        return None


# -- SCRAM-SHA-256: scram.ServerLogin does the work (the POP3 server's glue too); no hash
# runs here (the client did the PBKDF2), so each step answers at once. A failure at any step
# is a failed AUTH like any other (login: delay, throttle, max failures).
def _scram(s, blob):
    """server-first, then server-final as a challenge (RFC 4954 section 4), then the result."""
    x = s._scram
    msg = x.step(blob)
    if msg is not None:
        s.step = "scram"
        return b"334 " + msg + b"\r\n"
    s._scram = None
    return login(s, x.name, x.user)


def verify(s, name, password, fail):
    """Start the password check (always paid, also when the answer is already "failed");
    handle() answers None and resume() finishes it."""
    from pocketpost import auth

    name = auth.user_of(s.svc.logins.users, name)  # (as POP3: "Alice@example.org" is alice)
    s._check = auth.LoginCheck(s.svc.logins, name, password, fail)
    s._check_name = name
    return None


def login(s, name, u):
    """The AUTH's outcome: logged in as name (u, the user's record, not None), or failed."""
    from pocketpost.smtpenv import text  # (the command phase's code, loaded while AUTH runs)

    lg = s.svc.logins
    if u is None:
        s.failures += 1
        s.delay = loginsvc.fail(lg, s.peer)
        log.info("smtp %s AUTH failed user=%s method=%s failures=%d delay=%ss", s.peer, text(name.encode()),
                 text(s.method or b"?"), s.failures, s.delay)  # (as POP3's: why the next answer waits)
        if s.failures >= s.svc.max_failures:
            s.closing = True
            return reply(_T_AUTH_LIMIT)
        return reply(_T_AUTH_FAILED)
    s.delay = loginsvc.succeed(lg, s.peer)  # (the rest of the last failure's delay)
    s.login = name
    s.passed = True
    s._unhold()  # no AUTH after this one
    log.info("smtp %s AUTH user=%s method=%s tls=%d", s.peer, name, text(s.method or b"?"),
             int(s.tls_active))
    return b"235 2.7.0 authentication successful\r\n"


def resume(s):
    """Continue the password check that made handle() answer None, for about LOGIN_SLICE_MS:
    None while it is unfinished, then the reply to the AUTH."""
    w = s._check
    if w is None:
        return reply(_T_RESUME)
    lg = s.svc.logins
    t0 = ticks_ms()
    while not w.step(lg.login_chunk):
        if ticks_diff(ticks_ms(), t0) >= _LOGIN_SLICE_MS:  # type: ignore[operator]  # stub: ticks are opaque
            return None
    s._check = None
    name = s._check_name
    if w.new_hash is not None:
        loginsvc.rehashed(lg, name, w.new_hash)
    return login(s, name, w.user if w.ok else None)
