"""POP3 client shell: fetch an account's mail from a real server into the store.

Theory of operation
-------------------
`Pop3Client` is a thin asyncio shell around the shared core: bytes from the socket land in one
`wire.LineReader` (a bulk-sized buffer, filled in place through `space()/commit()`); status and
listing lines come out of it with `next_line()`, and RETR/TOP bodies are handed straight from its
buffer to `wire.DotUnstuffer.unstuff_into`, which writes the un-stuffed bytes into a fixed output
chunk. A full chunk goes to the sink (the store's Delivery, or a caller's writer). Heap use does
not depend on message size.

`fetch_account(account, store)` runs one session:
  1. load the UIDL state (uidstate.py) and reconcile a pending entry left by a crash;
  2. connect (plain, STLS or implicit TLS), CAPA, authenticate (strongest offered);
  3. STAT, UIDL, LIST; decide per message: download (RETR, or TOP n 0 when oversize and
     `oversize` is "headers"), skip, or DELE (policy);
  4. per downloaded message: stream into a store Delivery, hashing the stored bytes; save a
     *pending* state entry (size, SHA-1, local copies already present); commit the Delivery;
     save the *stored* entry; only then send DELE if the policy deletes it;
  5. QUIT; only after +OK are the deleted UIDs dropped from the state.
A crash at any point leaves: a partial delivery (the store removes it), or a pending entry (the
next run decides from the store whether the commit happened), or a stored entry (not fetched
again; DELE re-sent if the policy wants it), or DELEs the server never committed (re-sent). So
every message ends up in the store exactly once.

Servers without UIDL (best effort, documented): only policy "delete" is possible. Each message is
downloaded, keyed by the SHA-1 of its bytes (uidstate.hash_key: never equal to a real UID); a key already in the state means the
message was stored by a session whose QUIT never completed: the new copy is dropped and the
message deleted. Cost: such a message is downloaded twice. Keys are dropped after QUIT +OK.

TLS and asyncio ("server speaks first"): on MicroPython the TCP connection is made by asyncio,
then the socket is wrapped with `do_handshake_on_connect=False` and non-blocking; our read path
first calls the TLS socket's `readinto` directly (this drives the handshake: the ClientHello goes
out, and bytes mbedTLS already decrypted are returned), and only then waits for readability. Writes
that would block mid-handshake poll with a short sleep. Every wait is bounded by the account's
read timeout, so a peer that stalls inside the handshake costs `read_timeout`, not a hang.
On CPython the standard asyncio TLS support (open_connection(ssl=...), start_tls) is used.
"""

import asyncio
import binascii
import sys

from pocketpost import compat, log, tls
from pocketpost.compat import const
from pocketpost.pop3 import ProtocolError, command, parse_listing, parse_number, parse_reply, valid_uid
from pocketpost.headers import HeaderParser
from pocketpost.uidstate import DEFAULT_MAX_ENTRIES, UidState, hash_key, new_hash, remove_tmp, sha1_hex
from pocketpost.wire import BAD_LINE, MAX_RESPONSE_LINE, OVERLONG, DotUnstuffer, LineReader, unstuff_line

# --- named defaults and limits ------------------------------------------------------------------
DEFAULT_TLS = "implicit"  # POP3S: the safest choice for an ISP account
PORTS = {"implicit": 995, "stls": 110, "none": 110}  # RFC 8314 / RFC 1939
DEFAULT_AUTH = "auto"
DEFAULT_POLICY = "keep"  # never deletes anything unless asked to
DEFAULT_KEEP_DAYS = 7
DEFAULT_MAX_SIZE = 0  # bytes; 0 = no limit (the store's quota still applies)
DEFAULT_OVERSIZE = "skip"
DEFAULT_MAX_MESSAGES = 0  # new messages per session; 0 = no cap
# Largest server mailbox we take on: a session keeps a bit per message number (6 KB here), and
# a hostile STAT of "2000000000" must give a clear error, not a 250 MB allocation.
MAX_SERVER_MESSAGES = const(50000)
# New messages whose full UIDs are held at once: more wait for the next UIDL pass of the session.
_NEW_BATCH = const(64)
DEFAULT_MAILBOX = "inbox"
DEFAULT_STATE_DIR = "state"
CONNECT_TIMEOUT = 15  # seconds: TCP connect (and the first bytes of TLS)
READ_TIMEOUT = 30  # seconds: any single wait for server bytes, including inside the TLS handshake

# Socket reads land in one buffer this big: big enough to move a RETR in few system calls,
# small enough for an ESP32 heap (LIST/UIDL/status lines are still bounded by MAX_RESPONSE_LINE).
BULK_BUFSIZE = const(4096)
# The un-stuffed body goes to the sink in chunks of this size (the store's flash writes).
# Note (host, 10 MiB from Dovecot, s in fetch): 4096/2048 (these) 0.49-0.54; 4096/4096 0.39-0.46;
# 8192/4096 0.46; 16384/8192 0.38-0.41. Bigger buffers cost heap a no-PSRAM ESP32 lacks
# (boards/esp32/BUDGET.md); the client reads no config for them, so they stay; a PSRAM board
# could take 16384/8192 if the account config grows a setting for it.
CHUNK = const(2048)
# CAPA lines we accept before calling the reply endless (real servers send ~10).
MAX_CAPA_LINES = const(64)
# A message may exceed its LIST size by this much before we call the size a lie (some servers
# report the size with LF line ends); beyond it we stop reading instead of filling the flash.
SIZE_SLACK_DIV = const(16)
SIZE_SLACK_MIN = const(1024)
# Poll interval while a non-blocking TLS write waits for the handshake to progress.
_TLS_POLL_MS = const(2)
# A board whose clock reads earlier than this has no time set: age-based deletion is skipped.
_SANE_TIME = const(1577836800)  # 2020-01-01
_DAY = const(86400)

_POLICIES = ("delete", "keep", "keep_days")
_TLS_MODES = ("implicit", "stls", "none")
_AUTHS = ("auto", "scram-sha-256", "plain", "user", "apop")
# SCRAM-SHA-256 (w2-scram): the server picks the PBKDF2 count and this client pays it. More than
# this is refused: 0.3 ms per iteration on an ESP32 makes 65536 about 20 s (Dovecot's default is
# 4096). The hash runs this many iterations between yields to the event loop (~10 ms on a board).
_SCRAM_MAX_ITERATIONS = const(65536)
_SCRAM_SLICE = const(32)
_OVERSIZE = ("skip", "headers")


# --- errors ------------------------------------------------------------------------------------
class ClientError(Exception):
    """A fetch failed; the store and the UIDL state are consistent."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg


class ConfigError(ClientError):
    pass


class Pop3Timeout(ClientError):
    pass


class ConnectionLost(ClientError):
    pass


class ErrReply(ClientError):
    """The server answered -ERR. `code` is its RFC 2449 response code or None."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.code = code


class AuthFailed(ErrReply):
    pass


class TlsRequired(ClientError):
    pass


# --- account ------------------------------------------------------------------------------------
def account_from_dict(d):
    """Validate an account dict (from the JSON config) and fill in the named defaults."""
    if not isinstance(d, dict):
        raise ConfigError("account must be an object")
    a = {}
    for k in ("name", "host", "user", "password"):
        v = d.get(k)
        if not isinstance(v, str) or not v:
            raise ConfigError("account: %s is required (a string)" % k)
        a[k] = v
    name = a["name"]
    for c in name:
        if not (c.isalpha() or c.isdigit() or c in "._-"):
            raise ConfigError("account %s: name may hold letters, digits and . _ -" % name)

    def pick(key, allowed, default):
        v = d.get(key, default)
        if v not in allowed:
            raise ConfigError("account %s: %s must be one of %s" % (name, key, ", ".join(allowed)))
        return v

    def number(key, default, minimum=0):
        v = d.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ConfigError("account %s: %s must be an integer >= %d" % (name, key, minimum))
        return v

    a["tls"] = pick("tls", _TLS_MODES, DEFAULT_TLS)
    a["port"] = number("port", PORTS[a["tls"]], 1)
    a["auth"] = pick("auth", _AUTHS, DEFAULT_AUTH)
    a["policy"] = pick("policy", _POLICIES, DEFAULT_POLICY)
    a["keep_days"] = number("keep_days", DEFAULT_KEEP_DAYS, 0)
    a["max_size"] = number("max_size", DEFAULT_MAX_SIZE, 0)
    a["oversize"] = pick("oversize", _OVERSIZE, DEFAULT_OVERSIZE)
    a["max_messages"] = number("max_messages", DEFAULT_MAX_MESSAGES, 0)
    # UIDs remembered (heap: see uidstate.DEFAULT_MAX_ENTRIES); with policy keep, the server keeps
    # more mail than this only for a board with the heap to spare.
    a["max_entries"] = number("max_entries", DEFAULT_MAX_ENTRIES, 1)
    verify = d.get("verify", True)
    if not isinstance(verify, bool):
        raise ConfigError("account %s: verify must be true or false" % name)
    a["verify"] = verify
    allow = d.get("allow_plaintext", False)  # config.load refuses tls "none" without it
    if not isinstance(allow, bool):
        raise ConfigError("account %s: allow_plaintext must be true or false" % name)
    a["allow_plaintext"] = allow
    ca = d.get("ca")
    if ca is not None and not isinstance(ca, str):
        raise ConfigError("account %s: ca must be a path" % name)
    a["ca"] = ca
    for k, default in (("mailbox", DEFAULT_MAILBOX), ("state_dir", DEFAULT_STATE_DIR)):
        v = d.get(k, default)
        if not isinstance(v, str) or not v:
            raise ConfigError("account %s: %s must be a string" % (name, k))
        a[k] = v
    t = d.get("timeouts", {})
    if not isinstance(t, dict):
        raise ConfigError("account %s: timeouts must be an object" % name)
    for k, default in (("connect_timeout", CONNECT_TIMEOUT), ("read_timeout", READ_TIMEOUT)):
        v = t.get(k, default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ConfigError("account %s: timeouts.%s must be a positive number" % (name, k))
        a[k] = v
    for k in d:
        if k not in a and k != "timeouts":
            raise ConfigError("account %s: unknown key %s" % (name, k))
    return a


# --- crash injection for the crash-safety tests (host only, off unless the env var is set) ------
_crash_at = None  # "step" or "step#k": stop dead at the k-th time `step` is reached
_crash_seen = {}


def set_crash_point(spec):
    global _crash_at
    _crash_at = spec
    _crash_seen.clear()


def _crash_point(step):
    if _crash_at is None:
        return
    k = _crash_seen.get(step, 0) + 1
    _crash_seen[step] = k
    if _crash_at == step or _crash_at == "%s#%d" % (step, k):
        import time

        print("CRASHPOINT", step, k)
        try:
            sys.stdout.flush()
        except AttributeError:
            pass
        time.sleep(3600)  # the test SIGKILLs us here: no finally block runs


# --- transport ----------------------------------------------------------------------------------
async def _timed(aw, seconds, what):
    try:
        return await asyncio.wait_for(aw, seconds)
    except asyncio.TimeoutError:
        raise Pop3Timeout("timed out after %ss waiting for %s" % (seconds, what))


class _UpyConn:
    """MicroPython: asyncio TCP stream whose socket we may swap for a non-blocking TLS socket."""

    async def open(self, host, port, timeout):
        r, _ = await _timed(asyncio.open_connection(host, port), timeout, "connect")
        self.stream = r
        self.sock = r.s

    def start_tls(self, ctx, host):
        s = ctx.wrap_socket(self.sock, server_hostname=host, do_handshake_on_connect=False)
        s.setblocking(False)
        self.sock = s
        self.stream.s = s

    async def readinto(self, mv, timeout):
        s = self.sock
        deadline = compat.ticks_add(compat.ticks_ms(), int(timeout * 1000))
        while True:
            n = s.readinto(mv)  # non-blocking: drives TLS, returns already-decrypted bytes
            if n is not None:
                return n
            left = compat.ticks_diff(deadline, compat.ticks_ms())
            if left <= 0:
                raise Pop3Timeout("timed out after %ss waiting for the server" % timeout)
            try:
                n = await asyncio.wait_for_ms(self.stream.readinto(mv), left)
            except asyncio.TimeoutError:
                raise Pop3Timeout("timed out after %ss waiting for the server" % timeout)
            if n is not None:
                return n

    async def write(self, data, timeout):
        s = self.sock
        mv = memoryview(data)
        off = 0
        deadline = compat.ticks_add(compat.ticks_ms(), int(timeout * 1000))
        while off < len(mv):
            n = s.write(mv[off:])
            if n:
                off += n
                continue
            # Would block: a full send buffer, or TLS mid-handshake waiting for the peer.
            if compat.ticks_diff(deadline, compat.ticks_ms()) <= 0:
                raise Pop3Timeout("timed out after %ss sending to the server" % timeout)
            await asyncio.sleep_ms(_TLS_POLL_MS)

    async def close(self, graceful=False):
        try:
            self.sock.close()
        except OSError:
            pass


class _CpyConn:
    """CPython: standard asyncio streams and TLS."""

    async def open(self, host, port, timeout, ctx=None):
        self.reader, self.writer = await _timed(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None), timeout, "connect"
        )
        self._host = host
        self._timeout = timeout

    async def open_tls(self, host, port, timeout, ctx):
        await self.open(host, port, timeout, ctx)

    async def start_tls_async(self, ctx, host, timeout):
        await _timed(self.writer.start_tls(ctx, server_hostname=host), timeout, "TLS handshake")

    async def readinto(self, mv, timeout):
        data = await _timed(self.reader.read(len(mv)), timeout, "the server")
        n = len(data)
        mv[:n] = data
        return n

    async def write(self, data, timeout):
        self.writer.write(bytes(data))
        await _timed(self.writer.drain(), timeout, "sending")

    async def close(self, graceful=False):
        try:
            if graceful:  # after QUIT: let TLS say close_notify, bounded
                self.writer.close()
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            else:  # a stalled or broken peer: waiting for its close would cost another 2 s
                self.writer.transport.abort()
        except (OSError, asyncio.TimeoutError, ConnectionError, Exception):
            pass


# --- the client ---------------------------------------------------------------------------------
class Pop3Client:
    """One POP3 session. Usage:
        c = Pop3Client(host, port, tls="implicit", ctx=tls.client_context(ca, verify))
        await c.connect(); await c.login(user, password)
        n, total = await c.stat(); await c.retr(1, writer); await c.quit()
    Every wait is bounded by connect_timeout / read_timeout (seconds)."""

    def __init__(self, host, port, tls_mode="none", ctx=None, connect_timeout=CONNECT_TIMEOUT,
                 read_timeout=READ_TIMEOUT):
        self.host = host
        self.port = port
        self.tls_mode = tls_mode
        self.ctx = ctx
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.reader = LineReader(MAX_RESPONSE_LINE, bufsize=BULK_BUFSIZE)
        self._unstuffer = DotUnstuffer()
        self._out = bytearray(CHUNK)
        self._outmv = memoryview(self._out)
        self.caps = None  # dict KEYWORD -> list of args, or None when CAPA is unsupported
        self.timestamp = None  # APOP banner timestamp
        self.secure = False
        self._conn = None

    # -- low level ------------------------------------------------------------------------
    async def _fill(self):
        sp = self.reader.space()
        if not len(sp):
            raise ProtocolError("receive buffer full")
        try:
            n = await self._conn.readinto(sp, self.read_timeout)
        except (OSError, ValueError) as e:
            raise ConnectionLost("connection lost: %r" % (e,))
        if not n:
            raise ConnectionLost("server closed the connection")
        self.reader.commit(n)

    async def _line(self):
        r = self.reader
        while True:
            ln = r.next_line()
            if ln is None:
                await self._fill()
                continue
            if ln == OVERLONG:
                raise ProtocolError("server line longer than %d octets" % MAX_RESPONSE_LINE)
            if ln == BAD_LINE:
                raise ProtocolError("NUL in server line")
            return ln

    async def _send(self, data):
        try:
            await self._conn.write(data, self.read_timeout)
        except (OSError, ValueError) as e:
            raise ConnectionLost("connection lost while sending: %r" % (e,))

    async def _status(self):
        return parse_reply(await self._line())

    async def cmd(self, keyword, *args, secret=False):
        """Send a command and read its status line; -ERR raises ErrReply."""
        await self._send(command(keyword, *args))
        rep = await self._status()
        if rep.ok is None and keyword != "AUTH":
            raise ProtocolError("unexpected continuation reply to " + keyword)
        if rep.ok is False:
            raise ErrReply("%s: -ERR %s" % (keyword, _text(rep.text)), rep.code)
        return rep

    async def _mlines(self, limit, what, on_line):
        """Feed each line of a multi-line listing (un-stuffed) to on_line, up to the terminating
        '.'. A reply with more than `limit` lines is endless as far as we are concerned.
        (A callback, not an async generator: MicroPython cannot `async for` over those.)"""
        n = 0
        while True:
            ln = unstuff_line(await self._line())
            if ln is None:
                return
            n += 1
            if n > limit:
                raise ProtocolError("%s reply does not end (more than %d lines)" % (what, limit))
            on_line(ln)

    # -- session --------------------------------------------------------------------------
    async def connect(self):
        try:
            if compat.IS_MICROPYTHON:
                self._conn = _UpyConn()
                await self._conn.open(self.host, self.port, self.connect_timeout)
                if self.tls_mode == "implicit":
                    self._conn.start_tls(self.ctx, self.host)  # type: ignore[union-attr]  # MicroPython conn class
            else:
                self._conn = _CpyConn()
                await self._conn.open(self.host, self.port, self.connect_timeout,
                                      self.ctx if self.tls_mode == "implicit" else None)
        except (OSError, ValueError) as e:
            # Refused, reset, or (CPython: the handshake is part of the connect) a TLS failure:
            # the same class MicroPython gives, where these surface at the first read.
            raise ConnectionLost("cannot connect to %s:%s: %r" % (self.host, self.port, e))
        self.secure = self.tls_mode == "implicit"
        try:
            greet = await self._status()
        except Pop3Timeout:
            raise Pop3Timeout("no greeting within %ss" % self.read_timeout)
        if greet.ok is not True:
            raise ErrReply("server refused the connection: " + _text(greet.text), greet.code)
        self.timestamp = _apop_timestamp(greet.text)
        await self.capa()
        if self.tls_mode == "stls":
            if self.caps is None or "STLS" not in self.caps:
                raise TlsRequired("TLS required but the server does not offer STLS")
            await self.cmd("STLS")
            if self.reader.pending():
                raise ProtocolError("server sent data after STLS +OK")  # RFC 2595 section 4
            self.reader.clear()
            try:
                if compat.IS_MICROPYTHON:
                    self._conn.start_tls(self.ctx, self.host)  # type: ignore[union-attr]  # MicroPython conn class
                else:
                    await self._conn.start_tls_async(self.ctx, self.host, self.read_timeout)  # type: ignore[union-attr]  # CPython conn class
            except (OSError, ValueError) as e:
                raise ConnectionLost("STLS: TLS handshake failed: %r" % (e,))
            self.secure = True
            await self.capa()  # RFC 2595 section 4: discard what we knew, ask again

    async def capa(self):
        await self._send(command("CAPA"))
        rep = await self._status()
        if not rep.ok:
            self.caps = None
            return None
        caps = {}

        def one(ln):
            w = _text(ln).split(" ") if ln else [""]
            if w[0]:
                caps[w[0].upper()] = [x.upper() for x in w[1:]]

        await self._mlines(MAX_CAPA_LINES, "CAPA", one)
        self.caps = caps
        return caps

    async def login(self, user, password, method="auto"):
        """Authenticate; `method` "auto" picks the strongest the server offers."""
        m = method
        if m == "auto":
            m = self.best_auth()
        log.info("pop3 %s: auth %s as %s%s", self.host, m, user, " over TLS" if self.secure else "")
        try:
            if m == "plain":
                blob = binascii.b2a_base64(b"\x00" + user.encode() + b"\x00" + password.encode()).rstrip(b"\n")
                if len(blob) + 13 <= 255:
                    rep = await self.cmd("AUTH", "PLAIN", blob)
                else:
                    rep = await self.cmd("AUTH", "PLAIN")
                if rep.ok is None:  # "+ " continuation: the server wants the response on its own
                    await self._send(blob + b"\r\n")
                    rep = await self._status()
                    if rep.ok is not True:
                        raise AuthFailed("AUTH PLAIN: " + _text(rep.text), rep.code)
            elif m == "scram-sha-256":  # SCRAM hook (w2-scram): the exchange is in _scram
                await self._scram(user, password)
            elif m == "apop":
                if self.timestamp is None:
                    raise AuthFailed("server offers no APOP timestamp")
                from pocketpost.auth import apop_digest

                await self.cmd("APOP", user, apop_digest(self.timestamp, password))
            elif m == "user":
                await self.cmd("USER", user)
                await self.cmd("PASS", password)
            else:
                raise ConfigError("unknown auth method " + m)
        except AuthFailed:
            raise
        except ErrReply as e:
            raise AuthFailed("login failed (%s): %s" % (m, e.msg), e.code)

    async def _scram(self, user, password):
        """AUTH SCRAM-SHA-256 (RFC 5802/7677 over RFC 5034; w2-scram hook): scram.ScramClient makes
        and checks the messages; here only the lines, and the PBKDF2 in slices with a yield to the
        event loop between them. The server must prove it holds the ServerKey (its signature in a
        "+ " challenge, answered by an empty line) before we take its +OK."""
        from pocketpost import auth, scram

        c = scram.ScramClient(user, password, max_iterations=_SCRAM_MAX_ITERATIONS)
        rep = await self.cmd("AUTH", "SCRAM-SHA-256", auth.b64encode(c.first()))
        if rep.ok is not None:
            raise AuthFailed("AUTH SCRAM-SHA-256: no challenge from the server")
        try:
            c.server_first(auth.b64decode(bytes(rep.text)))
        except auth.AuthError as e:
            await self._scram_cancel()
            raise AuthFailed("AUTH SCRAM-SHA-256: %s" % e)
        while not c.step(_SCRAM_SLICE):
            await asyncio.sleep(0)
        await self._send(auth.b64encode(c.final()) + b"\r\n")
        rep = await self._status()
        if rep.ok is not None:  # -ERR: refused; +OK without a signature: not proven, not used
            raise AuthFailed("AUTH SCRAM-SHA-256: " + (_text(rep.text) if rep.ok is False else
                             "the server did not prove it knows the password"), rep.code)
        try:
            c.server_final(auth.b64decode(bytes(rep.text)))
        except auth.AuthError as e:
            await self._scram_cancel()
            raise AuthFailed("AUTH SCRAM-SHA-256: %s" % e)
        await self._send(b"\r\n")
        rep = await self._status()
        if rep.ok is not True:
            raise AuthFailed("AUTH SCRAM-SHA-256: " + _text(rep.text), rep.code)

    async def _scram_cancel(self):
        await self._send(b"*\r\n")  # RFC 5034: cancel the exchange; the server answers -ERR
        await self._status()

    def best_auth(self):
        """Strongest offered. SCRAM-SHA-256 first when offered (the password never crosses the
        wire, and the server proves it knows it). Then without TLS, APOP (no password on the
        wire either); over TLS, SASL PLAIN (APOP's MD5 challenge adds nothing there)."""
        caps = self.caps
        if caps is not None and "SCRAM-SHA-256" in caps.get("SASL", ()):
            return "scram-sha-256"
        offered = []
        if caps is not None and "PLAIN" in caps.get("SASL", ()):
            offered.append("plain")
        if self.timestamp is not None:
            offered.append("apop")
        if caps is None or "USER" in caps or not offered:
            offered.append("user")
        order = ("plain", "apop", "user") if self.secure else ("apop", "plain", "user")
        for m in order:
            if m in offered:
                return m
        return "user"

    async def stat(self):
        rep = await self.cmd("STAT")
        w = bytes(rep.text).split(b" ")
        if len(w) < 2:
            raise ProtocolError("malformed STAT reply")
        return parse_number(w[0], 0), parse_number(w[1], 0)

    async def listing(self, keyword, count, on_line):
        """LIST or UIDL for the whole mailbox: calls on_line(n, field) per entry. Entries must be
        numbered 1..count in increasing order (every server we know lists in order), which bounds
        the reply. Returns False when the server answered -ERR (UIDL unsupported)."""
        await self._send(command(keyword))
        rep = await self._status()
        if not rep.ok:
            return False
        last = [0]

        def one(ln):
            n, field = parse_listing(ln)
            if n <= last[0] or n > count:
                raise ProtocolError("%s: message number %d out of order or range" % (keyword, n))
            last[0] = n
            on_line(n, field)

        await self._mlines(count, keyword, one)
        return True

    async def retr(self, n, sink, limit=0, top=False):
        """Stream message n (RETR, or TOP n 0 for the headers only) into sink(chunk), chunk being
        a bytes-like valid only during the call. Returns the byte count. With `limit`, more than
        limit bytes raise ProtocolError (a size that lies) and the connection is unusable."""
        if top:
            await self.cmd("TOP", n, 0)
        else:
            await self.cmd("RETR", n)
        u = self._unstuffer
        u.reset()
        r = self.reader
        out = self._out
        omv = self._outmv
        fill = 0
        total = 0
        while True:
            buf, s, e = r.buffered()
            if s < e:
                # Into the whole chunk when it is empty (no slice object), else its free tail.
                made = u.unstuff_into(buf, s, e, out if fill == 0 else omv[fill:])
                done = u.done
                r.consume(u.consumed)
                fill += made
                total += made
                if limit and total > limit:
                    raise ProtocolError("message %d is larger than the server said (%d)" % (n, limit))
                if fill == CHUNK:
                    sink(out)
                    fill = 0
                if done:
                    break
            else:
                await self._fill()
        if fill:
            sink(omv[:fill])
        return total

    async def dele(self, n):
        """DELE n: True when the server marked it deleted. A refused DELE (-ERR: a read-only
        maildrop, a message another session holds) is no reason to end the session: it is
        logged and False returned, and the message stays (and stays recorded) for next time."""
        try:
            await self.cmd("DELE", n)
        except ErrReply as e:
            log.warning("pop3 %s: %s", self.host, e.msg)
            return False
        return True

    async def quit(self):
        """QUIT: +OK means the server committed our DELEs (RFC 1939 UPDATE state)."""
        ok = False
        try:
            rep = await self.cmd("QUIT")
            ok = True
        finally:
            await self.close(graceful=ok)
        return rep

    async def close(self, graceful=False):
        """Drop the connection at once; `graceful` (the server answered QUIT) lets a TLS
        session end with close_notify, bounded. An error path never waits on the peer."""
        if self._conn is not None:
            c = self._conn
            self._conn = None
            await c.close(graceful)


def _text(b):
    try:
        return bytes(b).decode()
    except UnicodeError:
        return repr(bytes(b))


def _apop_timestamp(text):
    """RFC 1939 section 7: the greeting's msg-id "<...@...>" (Dovecot's holds '=' too)."""
    text = bytes(text)
    i = text.find(b"<")
    if i < 0:
        return None
    j = text.find(b">", i)
    if j < 0 or text.find(b"@", i, j) < 0:
        return None
    return text[i : j + 1]


# --- fetching into the store --------------------------------------------------------------------
class _StoreSink:
    """Takes un-stuffed chunks for one Delivery (begun with digest=True: the store converts line
    ends and hashes exactly the bytes it keeps), feeds the header parser, and turns a store failure
    into `error` while the rest of the message is still read off the wire (the session stays
    usable)."""

    def __init__(self, delivery):
        self.d = delivery
        self.headers = HeaderParser()
        self.error = None
        self.chunks = 0

    def __call__(self, chunk):
        if not self.headers.done:
            self.headers.feed(chunk)
        if self.error is None:
            try:
                self.d.write(chunk)
            except Exception as e:  # StoreError (full, quota) or OSError: keep reading the reply
                self.error = e
        self.chunks += 1
        _crash_point("chunk")


def _holds(store, mailbox, local, size, digest):
    """Does the local mailbox hold message `local` (a store UID) with this size and SHA-1?
    Reads the index and hashes that one message only."""
    mb = store.lock(mailbox)
    try:
        for i in range(mb.count - 1, -1, -1):  # it is among the newest
            if mb.uid(i) != local:
                continue
            if mb.size(i) != size:
                return False
            h = new_hash()
            buf = bytearray(512)
            f = mb.open(i)
            try:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    h.update(memoryview(buf)[:n])
            finally:
                f.close()
            return sha1_hex(h) == digest
        return False
    finally:
        mb.release()


def _reconcile(st, store, mailbox):
    """A crash left a pending entry: did its store commit happen? (see uidstate.py)"""
    size, digest, local, first_seen, flag, uid = st.pending
    if _holds(store, mailbox, local, size, digest):
        log.info("fetch: recovered %s: it was stored before the interruption", _text(uid))
        st.add(uid, first_seen, flag)
    else:
        log.info("fetch: %s was not stored before the interruption; fetching it again", _text(uid))
    st.clear_pending()
    st.save()


async def fetch_account(account, store, on_message=None):
    """Fetch one account into its local mailbox; returns a stats dict. `on_message(info)` is
    called after each stored message with a dict: uid, local_uid, size, headers_only, headers."""
    a = account_from_dict(account)
    name = a["name"]
    mailbox = a["mailbox"]
    policy = a["policy"]
    stats = {"account": name, "fetched": 0, "bytes": 0, "headers_only": 0, "skipped": 0,
             "deleted": 0, "duplicates": 0, "on_server": 0, "state_full": False}
    if a["tls"] == "none":
        log.warning("fetch %s: no TLS to %s:%d: password and mail cross the network in clear", name, a["host"], a["port"])
    remove_tmp(a["state_dir"], name)
    st = UidState(a["state_dir"], name, a["max_entries"]).load()
    if st.pending is not None:
        _reconcile(st, store, mailbox)
    ctx = tls.client_context(a["ca"], a["verify"]) if a["tls"] != "none" else None
    c = Pop3Client(a["host"], a["port"], a["tls"], ctx, a["connect_timeout"], a["read_timeout"])
    try:
        await c.connect()
        await c.login(a["user"], a["password"], a["auth"])
        count, _ = await c.stat()
        if count > MAX_SERVER_MESSAGES:
            raise ProtocolError("server mailbox holds %d messages, more than %d" % (count, MAX_SERVER_MESSAGES))
        stats["on_server"] = count
        cap = a["max_messages"] or count  # downloads this session (skipped ones do not count)
        # UIDs already in the state: marked "seen" in their state record (no per-UID object);
        # those to delete by policy are decided here, while their message number is known.
        # New messages are taken in batches of at most _NEW_BATCH (their full UIDs are held
        # until stored): when a batch is done and more wait, UIDL (and LIST) are read again.
        # `done` holds a bit per message number handled this session (stored or skipped).
        to_delete = []  # (n, uid)
        now = compat.now()
        sane = now >= _SANE_TIME
        done = bytearray(count // 8 + 1)
        want = {}  # n -> uid (None without UIDL), this batch's messages to download
        seen_new = {}
        ctl = [True, False, 0]  # first pass, more new messages wait, room for new entries

        def on_uidl(n, uid):
            if not valid_uid(uid):
                raise ProtocolError("invalid UIDL for message %d" % n)
            uid = bytes(uid)
            if uid in seen_new:
                raise ProtocolError("duplicate UIDL %s" % _text(uid))
            if ctl[0]:
                bits = st.mark(uid, seen=True)
                if st.was_seen(bits):
                    raise ProtocolError("duplicate UIDL %s" % _text(uid))
                if bits >= 0:
                    e = st.get(uid)
                    if e[0] < _SANE_TIME and sane:
                        st.add(uid, now, e[1])  # first seen while the clock was unset: its age starts now
                    if e[1] != "f":
                        return  # headers-only copies: the body still lives on the server only
                    if policy == "delete":
                        to_delete.append((n, uid))
                    elif policy == "keep_days" and sane and e[0] >= _SANE_TIME and now - e[0] >= a["keep_days"] * _DAY:
                        to_delete.append((n, uid))
                    return
            else:
                if done[n >> 3] & (1 << (n & 7)):
                    return
                bits = st.mark(uid)
                if bits >= 0:
                    if st.was_new(bits):  # stored this session under another message number
                        raise ProtocolError("duplicate UIDL %s" % _text(uid))
                    return
            if len(want) >= ctl[2]:
                stats["state_full"] = True
            elif len(want) >= _NEW_BATCH:
                ctl[1] = True
            else:
                want[n] = uid
                seen_new[uid] = n

        deleted = 0  # DELEs accepted: marked in the state records, forgotten after QUIT
        store_error = None
        downloads = 0
        while True:
            ctl[1] = False
            ctl[2] = a["max_entries"] - len(st)  # may be < 0 after the limit was lowered
            has_uidl = await c.listing("UIDL", count, on_uidl)
            if not has_uidl:
                if policy != "delete":
                    raise ClientError("server has no UIDL: only policy 'delete' can fetch each message once")
                if ctl[0]:
                    log.warning("fetch %s: server has no UIDL; best effort by content hash", name)
                for n in range(1, count + 1):
                    if done[n >> 3] & (1 << (n & 7)):
                        continue
                    if len(want) >= ctl[2]:
                        break
                    if len(want) >= _NEW_BATCH:
                        ctl[1] = True
                        break
                    want[n] = None
            sizes = {}

            def on_list(n, field):
                if n in want:
                    sizes[n] = parse_number(field, 0)

            if want and not await c.listing("LIST", count, on_list):
                raise ProtocolError("LIST failed")

            if ctl[0]:
                # Messages stored by earlier sessions: delete them when the policy says so.
                for n, uid in to_delete:
                    if await c.dele(n):
                        st.mark(uid, deleted=True)
                        deleted += 1
                    _crash_point("dele")
                to_delete = None
                ctl[0] = False

            stop = False
            for n in sorted(want):
                if downloads >= cap:
                    stop = True
                    break
                uid = want[n]
                size = sizes.get(n)
                if size is None:
                    raise ProtocolError("LIST did not list message %d" % n)
                done[n >> 3] |= 1 << (n & 7)
                top = False
                if a["max_size"] and size > a["max_size"]:
                    if a["oversize"] == "skip":
                        stats["skipped"] += 1
                        log.info("fetch %s: skipping message %d (%d bytes > max_size)", name, n, size)
                        continue
                    top = True
                downloads += 1
                key, info, store_error = await _download(c, st, store, mailbox, n, uid, size, top)
                if store_error is not None:
                    stop = True
                    break
                if info is None:
                    stats["duplicates"] += 1
                else:
                    stats["fetched"] += 1
                    stats["bytes"] += info["size"]
                    if top:
                        stats["headers_only"] += 1
                    if on_message is not None:
                        on_message(info)
                if uid is not None:
                    st.mark(uid, seen=True, new=True)
                if policy == "delete" and not top:
                    if await c.dele(n):
                        st.mark(key, deleted=True)
                        deleted += 1
                    _crash_point("dele")
            want = {}
            seen_new = {}
            sizes = None
            if stop or not ctl[1] or downloads >= cap:
                break
        if stats["state_full"]:
            log.error("fetch %s: UIDL state full (max_entries %d): new messages wait", name, a["max_entries"])
        await c.quit()
        _crash_point("quit")
        stats["deleted"] = deleted

        def keep(first_seen, flag, synthetic, seen, dele):
            if dele:
                return None  # the server committed the DELEs: those UIDs are gone for good
            if synthetic:
                if first_seen < _SANE_TIME:
                    return now if sane else first_seen
                if sane and now - first_seen > 30 * _DAY:
                    return None  # best-effort keys of a session whose QUIT result was lost
                return first_seen
            if not seen:
                return None  # no longer on the server: it can never be offered again
            return first_seen

        st.retain(keep)
        if st.dirty:
            st.save()
        if store_error is not None:
            raise ClientError("store: %s" % (store_error,))
        return stats
    finally:
        await c.close()


async def _download(c, st, store, mailbox, n, uid, size, top):
    """One message into the store, crash-safely. Returns (key, info or None if a duplicate,
    store error or None)."""
    try:
        d = store.begin(mailbox, digest=True)
    except Exception as e:  # StoreFull / QuotaExceeded / OSError: nothing sent for it yet
        return None, None, e
    sink = _StoreSink(d)
    try:
        limit = size + max(size // SIZE_SLACK_DIV, SIZE_SLACK_MIN)
        await c.retr(n, sink, limit=limit, top=top)
    except BaseException:
        d.abort()
        raise
    if sink.error is not None:
        d.abort()
        return None, None, sink.error
    try:
        digest = d.digest()  # ends the message: the final size and the SHA-1 of the stored bytes
    except Exception as e:  # the delivery has aborted itself
        return None, None, e
    size_stored = d.size
    key = uid if uid is not None else hash_key(digest)
    if uid is None and key in st:
        d.abort()  # stored by a session whose QUIT never completed (server without UIDL)
        return key, None, None
    flag = "h" if top else "f"
    first_seen = compat.now()
    if first_seen < _SANE_TIME:
        first_seen = 0  # clock not set yet: unknown, stamped by a later session (see keep_days)
    # A crash after this point is reconciled by looking for this very local UID with this size
    # and hash (not for any identical copy: the same bytes fetched earlier under another UID
    # must not pass for this one). Nothing may yield between here and the commit, so no other
    # delivery can take the UID first; if one ever did, the check fails and the message is
    # fetched again (a duplicate at worst, never a loss).
    local = d.uid_on_commit()
    st.set_pending(size_stored, digest, local, first_seen, flag, key)
    try:
        st.save()
    except BaseException:
        d.abort()  # not committed: no temp file, open handle or busy mailbox left behind
        st.clear_pending()
        raise
    _crash_point("pending")
    try:
        local = d.commit()
    except Exception as e:
        d.abort()
        st.clear_pending()
        st.save()
        return key, None, e
    _crash_point("committed")
    st.add(key, first_seen, flag)
    st.clear_pending()
    st.save()
    _crash_point("stored")
    info = {"n": n, "uid": key, "local_uid": local, "size": size_stored, "headers_only": top,
            "headers": sink.headers.close()}  # close(): a header with no empty line after it counts
    return key, info, None


def fetch_account_sync(account, store, on_message=None):
    """Blocking wrapper for the REPL and host tools."""
    return asyncio.run(fetch_account(account, store, on_message))
