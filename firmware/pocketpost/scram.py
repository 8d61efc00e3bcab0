"""SCRAM-SHA-256 (RFC 5802, RFC 7677), both sides, sans-I/O: they take and return the SASL
messages as raw bytes; `ServerLogin` is the servers' glue around ScramServer, in base64 (POP3
and SMTP both carry SASL so, RFC 5034 and RFC 4954). The stored record and the key derivations
are auth.py's; this module is imported only when a peer uses SCRAM (pop3server's and smtp's
AUTH SCRAM-SHA-256, the client's "scram-sha-256"), so its code costs no heap otherwise.

No channel binding: the GS2 header is "n,," (or "y,,", or with "a=" the user's own name); "p="
(the -PLUS variants) is refused. No SASLprep (see auth.py). Every comparison of secret-derived
bytes is constant-time (auth.equal), and the server computes every step of a check whatever
failed before it.
"""

import hashlib

from pocketpost.auth import (MAX_ITERATIONS, AuthError, Pbkdf2, b64decode, b64encode, equal, format_record,
                             hmac_sha256, parse_hash, folded, scram_keys, user_of)
from pocketpost.compat import const, urandom

_DKLEN = const(32)
_SALT_BYTES = const(16)  # auth's (a private copy)
# Random octets in a nonce: 18 give 24 base64 characters (RFC 5802 asks for enough to be unique).
_NONCE_BYTES = const(18)


def saslname_escape(name):
    """RFC 5802 section 5.1: "," -> "=2C", "=" -> "=3D" (bytes)."""
    return name.replace(b"=", b"=3D").replace(b",", b"=2C")


def saslname_unescape(s):
    """The reverse; any other "=" sequence is malformed (AuthError)."""
    parts = bytes(s).split(b"=")
    out = parts[0]
    for p in parts[1:]:
        if p[:2] == b"2C":
            out += b"," + p[2:]
        elif p[:2] == b"3D":
            out += b"=" + p[2:]
        else:
            raise AuthError("bad saslname")
    return out


def _nonce():
    return b64encode(urandom(_NONCE_BYTES))


def _printable_nonce(n):
    """RFC 5802 "printable": 0x21..0x7E except ","."""
    if not n:
        return False
    for c in n:
        if c < 0x21 or c > 0x7E or c == 0x2C:
            return False
    return True


def _attrs(msg, want):
    """Split "k=v,k=v" and check the keys are `want` in order (bytes of one letter each);
    -> list of values. Extensions after them are refused (none are defined)."""
    parts = bytes(msg).split(b",")
    if len(parts) != len(want):
        raise AuthError("bad SCRAM message")
    out = []
    for i in range(len(parts)):
        p = parts[i]
        if len(p) < 2 or p[1] != 0x3D or p[0] != want[i]:
            raise AuthError("bad SCRAM message")
        out.append(p[2:])
    return out


def _xor(a, b):
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(_DKLEN, "big")


class ScramServer:
    """The server side of one SCRAM-SHA-256 exchange:
        name = s.client_first(msg)        # -> the user name (str); AuthError if malformed
        s.server_first(iterations, salt, stored_key, server_key) -> bytes to send
        s.client_final(msg) -> server-final bytes (b"v=...") if the proof is right, else None
    For an unknown user pass `scram_fake(...)`: the exchange runs the same and the proof fails.
    `authzid`: the "a=" name if the client sent one (the caller refuses any other than `name`)."""

    def __init__(self, nonce=None):
        self.snonce = nonce  # tests only: RFC 7677's fixed nonce
        self.name = None
        self.authzid = None
        self._gs2 = None
        self._auth = None  # client-first-bare "," server-first, growing into AuthMessage
        self._nonce = None
        self._keys = None

    def client_first(self, msg):
        msg = bytes(msg)
        if msg[:2] not in (b"n,", b"y,"):
            raise AuthError("channel binding not supported" if msg[:2] == b"p=" else "bad SCRAM message")
        j = msg.find(b",", 2)
        if j < 0:
            raise AuthError("bad SCRAM message")
        az = msg[2:j]
        if az:
            if az[:2] != b"a=":
                raise AuthError("bad SCRAM message")
            self.authzid = saslname_unescape(az[2:]).decode()
        self._gs2 = msg[: j + 1]
        bare = msg[j + 1 :]
        n, r = _attrs(bare, b"nr")  # "m=" (reserved) or extensions: refused
        if not _printable_nonce(r):
            raise AuthError("bad SCRAM nonce")
        self.name = saslname_unescape(n).decode()
        self._auth = bare
        self._nonce = r
        return self.name

    def server_first(self, iterations, salt, stored_key, server_key):
        self._nonce = self._nonce + (self.snonce or _nonce())
        self._keys = (stored_key, server_key)
        sf = b"r=" + self._nonce + b",s=" + b64encode(salt) + b",i=" + str(iterations).encode()
        self._auth = self._auth + b"," + sf
        return sf

    def client_final(self, msg):
        msg = bytes(msg)
        j = msg.rfind(b",p=")
        if j < 0:
            raise AuthError("bad SCRAM message")
        c, r = _attrs(msg[:j], b"cr")
        proof = b64decode(msg[j + 3 :])
        sk, svk = self._keys
        am = self._auth + b"," + msg[:j]
        # Every step is computed whatever failed before it: the answer takes the same time.
        ok = equal(c, b64encode(self._gs2)) and equal(r, self._nonce) and len(proof) == _DKLEN
        sig = hmac_sha256(sk, am)
        ck = _xor(proof if len(proof) == _DKLEN else sig, sig)
        ok = equal(hashlib.sha256(ck).digest(), sk) and ok
        sf = b"v=" + b64encode(hmac_sha256(svk, am))
        return sf if ok else None


def scram_fake(secret, name, iterations):
    """(iterations, salt, StoredKey, ServerKey) for a user that does not exist (RFC 5802
    section 5.1): the same name gives the same salt every time (a salt that changed per try
    would tell the name is unknown), and no one can know a key whose proof passes. Costs what a
    real lookup does (one key derivation, as for an old-form record)."""
    if isinstance(name, str):
        name = name.encode()
    salt = hmac_sha256(secret, b"salt\x00" + name)[:_SALT_BYTES]
    sk, svk = scram_keys(hmac_sha256(secret, b"key\x00" + name))
    return iterations, salt, sk, svk


class ServerLogin:
    """One AUTH SCRAM-SHA-256 on a server, against a pop3server.Service `svc` (its users, dummy
    record, board count, scram_secret and rehashed): the part the POP3 and SMTP sessions share.
    Messages in and out are base64; the session frames them ("+ " for POP3, "334 " for SMTP).
    It hands every client line of the exchange to `step` and sends what it returns:
        msg = x.step(blob)    # server-first, then server-final as a challenge; None: over
    Once `step` answers None, `x.user` is the outcome: the user's dict, or None, which the
    session turns into its own failed login (delay, throttle, max failures) for `x.name`. Inside:
        first(blob)   server-first, or None: malformed ("" name)
        final(blob)   server-final, or None: wrong proof, unknown user, other authzid
        done(blob)    the user's dict once the client took server-final (an empty answer), else None
    No password hash runs here: the client did the PBKDF2, so the session answers at once. An
    unknown name gets a fake salt and keys (scram_fake, always computed, so the lookup costs the
    same) with the board's count, and fails at the proof, like a wrong password. An old-form
    record is stored as its keys (svc.rehashed) once its login succeeds."""

    def __init__(self, svc):
        self.svc = svc
        self.name = ""
        self.user = None  # the outcome, once step() answered None
        self._n = 0  # client messages taken
        self._s = None
        self._user = None
        self._upgrade = None

    def step(self, blob):
        """The next client message -> the next message to send, or None: the exchange is over
        and `user` says how (None: failed)."""
        n = self._n
        self._n = n + 1
        if n == 0:
            return self.first(blob)
        if n == 1:
            return self.final(blob)
        self.user = self.done(blob)
        return None

    def first(self, blob):
        s = ScramServer()
        try:
            name = s.client_first(b64decode(blob))
        except (AuthError, UnicodeError):
            return None
        svc = self.svc
        # (the proof covers the name as sent; the user it means, as every login: auth.user_of)
        other = s.authzid is not None and s.authzid != name  # no proxy logins: as oneself only
        name = self.name = user_of(svc.users, name)
        fake = scram_fake(svc.scram_secret, folded(name), svc.iterations)  # (one salt per name however spelt)
        u = svc.users.get(name)
        try:  # an unknown name parses the dummy record: the lookup costs the same
            rec = parse_hash(u.get("password") if u is not None else svc._dummy)
        except AuthError:  # config.check refuses these
            u = None
        if u is None:
            rec = fake + (False,)
        if other:
            u = None
        self._s = s
        self._user = u
        self._upgrade = format_record(rec[0], rec[1], rec[2], rec[3]) if rec[4] else None
        return b64encode(s.server_first(rec[0], rec[1], rec[2], rec[3]))

    def final(self, blob):
        try:
            sf = self._s.client_final(b64decode(blob))
        except AuthError:
            sf = None
        if sf is None or self._user is None:
            return None
        return b64encode(sf)

    def done(self, blob):
        """The client's answer to server-final: empty (RFC 5034 section 4, RFC 4954 section 4;
        "=" taken too)."""
        if blob and blob != b"=":
            return None
        if self._upgrade is not None:
            self.svc.rehashed(self.name, self._upgrade)
        return self._user


class ScramClient:
    """The client side of one SCRAM-SHA-256 exchange:
        c.first() -> client-first bytes
        c.server_first(msg)                # AuthError: bad message, nonce, count above the limit
        while not c.step(n): ...           # SaltedPassword, a slice at a time (like Pbkdf2)
        c.final() -> client-final bytes
        c.server_final(msg)                # AuthError unless the server proved it has the keys
    `max_iterations`: the most this client will hash (a server choosing the count must not
    make a board hash past its watchdog)."""

    def __init__(self, user, password, nonce=None, max_iterations=MAX_ITERATIONS):
        if isinstance(user, str):
            user = user.encode()
        if isinstance(password, str):
            password = password.encode()
        self.password = password
        self.cnonce = nonce or _nonce()
        self.max_iterations = max_iterations
        self.bare = b"n=" + saslname_escape(user) + b",r=" + self.cnonce
        self.job = None
        self.iterations = 0
        self._sfirst = None
        self._without_proof = None
        self._server_sig = None

    def first(self):
        return b"n,," + self.bare

    def server_first(self, msg):
        msg = bytes(msg)
        r, s, i = _attrs(msg, b"rsi")
        if r[: len(self.cnonce)] != self.cnonce or len(r) == len(self.cnonce) or not _printable_nonce(r):
            raise AuthError("SCRAM: the server's nonce does not extend ours")
        salt = b64decode(s)
        try:
            it = int(i)
        except ValueError:
            raise AuthError("SCRAM: bad iteration count")
        if it < 1 or it > self.max_iterations:
            raise AuthError("SCRAM: the server asks for %d iterations; this client allows 1..%d" % (it, self.max_iterations))
        self.iterations = it
        self._sfirst = msg
        self._without_proof = b"c=biws,r=" + r  # biws = base64("n,,")
        self.job = Pbkdf2(self.password, salt, it)

    def step(self, n):
        return self.job.step(n)

    def final(self):
        while not self.job.step(MAX_ITERATIONS):  # already done when the caller stepped it
            pass
        sp = self.job.digest()
        ck = hmac_sha256(sp, b"Client Key")
        am = self.bare + b"," + self._sfirst + b"," + self._without_proof
        sig = hmac_sha256(hashlib.sha256(ck).digest(), am)
        self._server_sig = hmac_sha256(hmac_sha256(sp, b"Server Key"), am)
        return self._without_proof + b",p=" + b64encode(_xor(ck, sig))

    def server_final(self, msg):
        msg = bytes(msg)
        if msg[:2] == b"e=":
            raise AuthError("SCRAM: the server says " + msg[2:80].decode())
        if msg[:2] != b"v=" or self._server_sig is None:
            raise AuthError("SCRAM: bad server-final message")
        v = b64decode(msg[2:])
        if not equal(v, self._server_sig):
            raise AuthError("SCRAM: the server's signature is wrong: it does not know this password")


# --- the fetcher's side of AUTH SCRAM-SHA-256 (client.py calls it; loaded only then) ------------
# The server picks the PBKDF2 count and the client pays it: more than this is refused (0.3 ms per
# iteration on an ESP32 makes 65536 about 20 s; Dovecot's default is 4096).
_CLIENT_MAX_ITERATIONS = const(65536)
# Iterations between two yields to the event loop while the client hashes (~10 ms on a board).
_CLIENT_SLICE = const(32)


async def pop3_auth(c, user, password, failed):
    """AUTH SCRAM-SHA-256 (RFC 5802/7677 over RFC 5034) driven through the client shell `c`
    (client.Pop3Client: cmd, _send, _status, its pop3client session `c.s`, `where`). The server
    must prove it holds the ServerKey (its signature in a "+ " challenge, which an empty line
    answers) before its +OK is taken. Raises `failed` (client.AuthFailed)."""
    import asyncio

    from pocketpost.client import ErrReply

    what = "AUTH SCRAM-SHA-256"
    x = ScramClient(user, password, max_iterations=_CLIENT_MAX_ITERATIONS)
    try:
        rep = await c.cmd("AUTH", "SCRAM-SHA-256", b64encode(x.first()))
        bad = _take(rep, x.server_first)
        if bad is None:
            while not x.step(_CLIENT_SLICE):
                await asyncio.sleep(0)
            await c._send(c.s.respond(b64encode(x.final())), what)
            rep = await c._status()
            bad = _take(rep, x.server_final)
        if bad is not None:
            if rep.ok is None:  # cancel the exchange (RFC 5034): the server answers -ERR
                await c._send(c.s.respond(b"*"), what)
                try:
                    await c._status()
                except ErrReply:
                    pass
            raise failed("%s: %s: %s" % (c.where, what, bad))
        await c._send(c.s.respond(b""), what)
        await c._status()  # +OK, or -ERR (ErrReply)
    except ErrReply as e:
        from pocketpost.clientauth import hint  # (loaded: the login runs in it)

        raise failed(hint(e.code, "scram-sha-256", "%s: %s: -ERR %s" % (c.where, what, e.msg.rsplit("-ERR ", 1)[-1])),
                     e.code)


def _take(rep, fn):
    """A "+ " challenge's message to fn: None if it took it, else why not (a +OK before the
    server proved anything, or the AuthError's text)."""
    if rep.ok is not None:
        return "the server did not prove it knows the password"
    try:
        fn(b64decode(bytes(rep.text)))
    except AuthError as e:
        return str(e)
    return None
