"""The POP3 client's once-per-session steps (client.fetch_account: `start`; connect, capa, login,
stat, each taking the Pop3Client): the connect and greeting, CAPA (and STLS: clientstls.py), the
login (the method choice, best_auth, and the USER/PASS, APOP and SASL PLAIN exchanges; SCRAM in
scram.py, OAuth in oauth2.py) and STAT. Cold code: client.py imports it for the session's start
and, on MicroPython, drops it after (its heap is not held while the mailbox is listed or messages
move; its qstrs stay)."""

import binascii

from pocketpost import log, pop3listing, transport
from pocketpost.client import AuthFailed, ErrReply, Pop3Timeout, _failed, _text
from pocketpost.compat import IS_MICROPYTHON, ConfigError, const, forget, ticks_add, ticks_diff, ticks_ms
from pocketpost.pop3 import ProtocolError, parse_number
from pocketpost.pop3client import GREETING

_OAUTH = ("xoauth2", "oauthbearer")  # OAuth: SASL with an OAuth access token (oauth2.py); the same in clientconf.py

# getaddrinfo's answers tried in turn, at most this many, all within the connect's one bound: a
# name can resolve to ::1 first and the server listen on IPv4 only ("localhost" on many hosts).
# CPython's asyncio.open_connection tries them all itself.
_ADDRS = const(4)

# The capabilities the client acts on (Pop3Client.caps keeps only these: the others' strings and
# lists would be held for the whole session for nothing).
_CAPS = ("PIPELINING", "SASL", "STLS", "USER")
# Largest server mailbox we take on: a session keeps a few bits per message number (3 x 6 KB
# here), and a hostile STAT of "2000000000" must give a clear error, not a 750 MB allocation.
_MAX_SERVER_MESSAGES = const(50000)
# The texts of its errors: clientfail.TEXTS[n] (cold: a text here is a string object held through
# the login, the fetch's peak with the server's sessions; private copies, test_fetch_heap.py).
_T_STAT = const(22)
_T_NO_ANSWER = const(23)
_T_REFUSED = const(24)
_T_NO_STAMP = const(25)


async def start(c, a, token, fresh):
    """Connect, log in (the account's method, or OAuth with `token`), STAT: the message count."""
    await connect(c)
    if token is None:
        await login(c, a["user"], a["password"], a["auth"])
    else:
        from pocketpost import oauth2

        await oauth2.pop3_login(c, a, token, fresh, AuthFailed)
    count, _ = await stat(c)
    if count > _MAX_SERVER_MESSAGES:
        raise ProtocolError(_failed("text", _T_STAT, c.where, count, _MAX_SERVER_MESSAGES))
    return count


class _Stream:
    """What transport.Conn takes from an asyncio stream: its socket `s`. No method: a function
    of this module held by the connection would keep the whole module in the heap."""

    s = None  # the socket (set per connection)


async def _open(host, port, ms, ctx=None):
    """A TCP connection to host:port (with `ctx`, implicit TLS to that host) within ms, as a
    transport connection. On MicroPython without asyncio.open_connection: the same non-blocking
    connect (asyncio/stream.py's), but asyncio's stream module (~1.9 KB of heap on the 64-bit unix
    port, kept once loaded) is never loaded: the connection reads and writes the socket itself.
    (On CPython: hostconn.connect, asyncio's streams and TLS.)"""
    if not IS_MICROPYTHON:
        from pocketpost.hostconn import connect as host_connect  # ("pocketpost.hostconn": transport's name too)

        return await host_connect(host, port, ms, ctx)
    import errno
    import socket
    from errno import ECONNABORTED, ECONNREFUSED, ECONNRESET, EHOSTUNREACH, EINPROGRESS, ENOTCONN, ETIMEDOUT

    # What a second connect() of the non-blocking socket says once it is writable: the first one
    # failed (Linux answers its pending error, lwIP its closed connection). Anything else (nothing,
    # EISCONN, EALREADY) is taken as connected, and the first read says otherwise, as before.
    # ENETUNREACH has no name in MicroPython's errno: newlib's (ESP-IDF) 114 where EHOSTUNREACH is
    # newlib's 118, else Linux's (and lwIP's own errno.h) 101. (Looked up in the module's dict:
    # getattr would intern the name, never freed, for a fetch that never sees the error.)
    failed = (ECONNREFUSED, ECONNRESET, ECONNABORTED, EHOSTUNREACH, ENOTCONN, ETIMEDOUT,
              errno.__dict__.get("ENETUNREACH", 114 if EHOSTUNREACH == 118 else 101))
    end = ticks_add(ticks_ms(), ms)
    err = OSError("%s:%s: no address" % (host, port))
    for ai in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[:_ADDRS]:
        s = None
        try:
            s = socket.socket(ai[0], ai[1], ai[2])  # OSError here: e.g. no IPv6 on this host
            s.setblocking(False)
            try:
                s.connect(ai[-1])
            except OSError as e:
                if e.errno != EINPROGRESS:
                    raise
            st = _Stream()
            st.s = s
            conn = transport.Conn(st)
            await conn._wait(True, ticks_diff(end, ticks_ms()))  # writable: connected, or failed
            try:
                s.connect(ai[-1])  # again: the first one's outcome (see failed)
            except OSError as e:
                if e.errno in failed:
                    raise
        except OSError as e:  # refused, unreachable: the next address
            err = e
            if s is not None:
                s.close()
            continue
        except BaseException:  # the bound (transport.Timeout), a cancel, no heap: no more addresses
            if s is not None:
                s.close()
            raise
        try:
            if ctx is not None:
                await conn.start_tls(ctx, host)
        except BaseException:
            conn.close()
            raise
        return conn
    raise err  # every address failed: the last one's error (connect() names host:port)


async def connect(c):
    implicit = c.tls_mode == "implicit"
    try:
        c._conn = await (c.opener or _open)(c.host, c.port, int(c.connect_timeout * 1000), c.ctx if implicit else None)
    except transport.Timeout:
        raise Pop3Timeout(_failed("text", _T_NO_ANSWER, c.where, c.connect_timeout))
    except (OSError, ValueError) as e:
        # Refused, reset, or (CPython: the handshake is part of the connect) a TLS failure:
        # the same class MicroPython gives, where these surface at the first read.
        raise c._lost("connect", e)
    c.secure = implicit
    ev = await c._status(c.deadline(c.read_timeout), "the greeting")
    r = c.s.reply
    if ev != GREETING or r.ok is not True:
        raise ErrReply(_failed("text", _T_REFUSED, c.where, _text(r.text)), r.code)
    c.timestamp = c.s.timestamp
    await capa(c)
    if c.tls_mode == "stls":  # the upgrade (clientstls.py: loaded for it, dropped after it)
        from pocketpost import clientstls

        try:
            await clientstls.stls(c)
        finally:
            clientstls = None
            forget(("clientstls",))


async def capa(c):
    try:
        await c.cmd("CAPA")
    except ErrReply:
        c.caps = None
        return None
    caps = {}
    s = c.s

    def one(ev):
        ln = s.line
        w = _text(ln).split(" ") if ln else [""]
        k = w[0].upper()
        if k in _CAPS:
            caps[k] = [x.upper() for x in w[1:]]

    await pop3listing.block(c, c.deadline(c.read_timeout), one)
    c.caps = caps
    return caps


async def stat(c):
    try:
        rep = await c.cmd("STAT")
    except ErrReply as e:
        if e.code:  # [SYS/TEMP], [IN-USE]: said, with what to do (clientfail.TEXTS[12])
            raise ErrReply(_failed("text", 12, e.msg, e.code), e.code)
        raise
    w = bytes(rep.text).split(b" ")
    try:
        if len(w) < 2:
            raise ProtocolError("")
        return parse_number(w[0], 0), parse_number(w[1], 0)
    except ProtocolError:
        raise ProtocolError("%s: malformed STAT reply: %s" % (c.where, _text(rep.text)))


async def login(c, user, password, method="auto"):
    """Authenticate; `method` "auto" picks the strongest the server offers."""
    m = method
    if m == "auto":
        m = best_auth(c)
    log.info("pop3 %s: auth %s as %s%s", c.where, m, user, " over TLS" if c.secure else "")
    try:
        if m == "plain":
            blob = binascii.b2a_base64(b"\x00" + user.encode() + b"\x00" + password.encode()).rstrip(b"\n")
            if len(blob) + 13 <= 255:
                rep = await c.cmd("AUTH", "PLAIN", blob)
            else:
                rep = await c.cmd("AUTH", "PLAIN")
            if rep.ok is None:  # "+ " continuation: the server wants the response on its own
                await c._send(c.s.respond(blob), "AUTH PLAIN")
                rep = await c._status()
                if rep.ok is not True:
                    raise AuthFailed("%s: AUTH PLAIN: %s" % (c.where, _text(rep.text)), rep.code)
        elif m == "scram-sha-256":  # SCRAM (scram.py, loaded only here): no password on the wire
            from pocketpost import scram

            await scram.pop3_auth(c, user, password, AuthFailed)
        elif m == "apop":
            if c.timestamp is None:
                raise AuthFailed(_failed("text", _T_NO_STAMP, c.where))
            from pocketpost import auth  # ("auth": a name the runtime has; "pocketpost.auth" is not)

            await c.cmd("APOP", user, auth.apop_digest(c.timestamp, password))
        elif m == "user":
            await c.cmd("USER", user)
            await c.cmd("PASS", password)
        elif m in _OAUTH:  # OAuth: `password` is the access token
            from pocketpost import oauth2

            await oauth2.pop3_auth(c, m, user, password, AuthFailed)
        else:
            raise ConfigError("unknown auth method " + m)
    except AuthFailed:
        raise
    except ErrReply as e:
        raise AuthFailed(hint(e.code, m, e.msg), e.code)  # (its words: clientfail.hint's)


def hint(code, *a):
    """What to do about a refused login, by the reply's response code (RFC 2449, RFC 3206): a
    locked mailbox or a server's own failure is no wrong password (scram.py and oauth2.py too).
    Its texts are clientfail.hint's (cold: a refused login is rare, and this module is loaded at
    the login, one of the fetch's peaks). With `a` (the method or None, the ErrReply's text): the
    refused login's whole error, the server's text quoted (scram.py and oauth2.py too)."""
    return _failed("hint", code, *a)


def best_auth(c):
    """Strongest offered. SCRAM-SHA-256 first when offered (the password never crosses the
    wire, and the server proves it knows it). Then without TLS, APOP (no password on the
    wire either); over TLS, SASL PLAIN (APOP's MD5 challenge adds nothing there)."""
    caps = c.caps
    if caps is not None and "SCRAM-SHA-256" in caps.get("SASL", ()):
        return "scram-sha-256"
    offered = []
    if caps is not None and "PLAIN" in caps.get("SASL", ()):
        offered.append("plain")
    if c.timestamp is not None:
        offered.append("apop")
    if caps is None or "USER" in caps or not offered:
        offered.append("user")
    order = ("plain", "apop", "user") if c.secure else ("apop", "plain", "user")
    for m in order:
        if m in offered:
            return m
    return "user"

