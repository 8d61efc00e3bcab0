"""Password records, constant-time compare, APOP digest, SASL PLAIN and SCRAM-SHA-256.

A user's password lives on flash as the record SCRAM-SHA-256 needs (RFC 5802, RFC 7677):
    "scram-sha-256$<iterations>$<salt hex>$<StoredKey hex>$<ServerKey hex>"
where SaltedPassword = PBKDF2-HMAC-SHA256(password, salt, iterations), ClientKey =
HMAC(SaltedPassword, "Client Key"), StoredKey = SHA-256(ClientKey), ServerKey =
HMAC(SaltedPassword, "Server Key"). One record serves every mechanism: SCRAM uses it as is;
USER/PASS, PLAIN and LOGIN compute SaltedPassword from the password (in slices, `Verify`), then
ClientKey, and compare SHA-256(ClientKey) with StoredKey. Neither key logs anyone in: SCRAM's
proof needs ClientKey (StoredKey is its hash), the others need the password. The older record
    "pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>"
is exactly SCRAM's SaltedPassword: it still verifies (its keys are derived when it is read,
`parse_hash`), and the server stores it in the new form at the next successful login (by any
mechanism: SCRAM needs no password for that), dropping SaltedPassword (which would log in).

The SCRAM exchange itself (both sides, sans-I/O) is in scram.py, imported only when a peer
uses it (its code would otherwise take heap on every board). SCRAM here: SHA-256 only, no channel binding ("n,,"; no -PLUS), no SASLprep (names and passwords
are used as their UTF-8 bytes: the same for ASCII, which is what config names allow). RFC 7677
says the iteration count SHOULD be at least 4096; a board's count is what its watchdog and a
login's latency allow (boards/*/config.json: 700..1300 on ESP32s, ~0.3 s per login), and one
record serves every mechanism, so SCRAM announces the stored count even when it is below 4096.
A client refuses a count above its own limit (`scram.ScramClient(max_iterations=)`): a server must not
make a board hash for minutes.
The iteration count is per board (config "server"/"pbkdf2_iterations"): an ESP32 needs a
count that keeps one login well under a second, a host can afford far more. A stored hash with
another count is rehashed to the board's at the next successful login (pop3server), and a count
above the board's ceiling is refused when the config loads (serverconf.pbkdf2_ceiling).

`Pbkdf2` and `Verify` compute in steps, so the server can hash a login a slice at a time and
keep serving other sessions in between; `pbkdf2_sha256`/`verify_password` run them to the end.
Those two, `hash_password` and the servers' start-up figures (`scram_secret`, `parse_cidr`) are
authsetup.py, loaded at their first use through this module's names (__getattr__): a login
check never needs them, so the login code a server holds while a session logs in is smaller.

MicroPython has hashlib.sha256 but no hmac, no pbkdf2_hmac, and its sha256 objects have no
`.copy()`, so the usual trick of hashing the ipad/opad blocks once and copying the state per
iteration is unavailable. Cost per iteration here: two sha256 calls over a 96-octet buffer
(64-octet pad block + 32-octet digest), i.e. 4 compression-function blocks (2 per call),
against 2 with state copies. The pads live in two preallocated bytearrays; the running XOR
is kept as one big int, so an iteration allocates only the two 32-octet digests and an int.

The servers' login check (`LoginCheck`: verify, pad to the board's count, rehash) lives here
too: this module is login code, which the servers load only while some session can log in
(pop3server.LOGIN_MODULES). The trusted-network match (plaintext_auth "local", an SMTP peer's
bare LF) is pop3server.Service.trusted's: an SMTP message asks it without any login code.

The APOP secret (RFC 1939 section 7) must be stored in clear: APOP is weaker than PBKDF2 on
flash and off by default (per-user opt-in "apop_secret"), as documented in the README.
"""

import binascii
import hashlib

from pocketpost.compat import const, urandom

SCRAM = "scram-sha-256"
# Default iterations when the config names none. Boards override it (boards/*/config.json):
# at ~0.3 ms per iteration on an ESP32, 1000 is about 0.3 s per login; the host can do more.
DEFAULT_ITERATIONS = const(1000)
# Format bound on a stored count, whatever the board: a corrupt entry must not parse as a
# count of billions. The real limit is the board's ceiling (serverconf.pbkdf2_ceiling), lower.
MAX_ITERATIONS = const(200000)
_SALT_BYTES = const(16)
_MAX_SALT_BYTES = const(64)  # a stored salt longer than this is a corrupt entry
_DKLEN = const(32)
_BLOCK = const(64)


def __getattr__(name):
    """authsetup.py's names (hash_password, pbkdf2_sha256, verify_password, scram_secret,
    parse_cidr), loaded at their first use."""
    from pocketpost import authsetup

    return getattr(authsetup, name)


class AuthError(Exception):
    def __init__(self, msg):
        super().__init__(msg)


def _hmac_pads(key):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    ipad = bytearray(_BLOCK + _DKLEN)
    opad = bytearray(_BLOCK + _DKLEN)
    for i in range(_BLOCK):
        k = key[i] if i < len(key) else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C
    return ipad, opad


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104) for any message length."""
    ipad, opad = _hmac_pads(key)
    h = hashlib.sha256(bytes(ipad[:_BLOCK]))
    h.update(msg)
    opad[_BLOCK:] = h.digest()
    return hashlib.sha256(opad).digest()


class Pbkdf2:
    """One 32-octet block of PBKDF2-HMAC-SHA256 (RFC 8018), computed in steps: `step(n)` runs up
    to n more iterations and answers True once all are done; then `digest()`. The server runs a
    login's hash a slice at a time between other sessions' work (pop3cmd.Session.resume)."""

    def __init__(self, password, salt, iterations, block=1):
        if isinstance(password, str):
            password = password.encode()
        ipad, opad = _hmac_pads(password)
        h = hashlib.sha256(bytes(ipad[:_BLOCK]))
        h.update(salt)
        h.update(block.to_bytes(4, "big"))
        opad[_BLOCK:] = h.digest()
        self.u = hashlib.sha256(opad).digest()
        self.acc = int.from_bytes(self.u, "big")
        self.ipad = ipad
        self.opad = opad
        self.left = iterations - 1

    def step(self, n):
        k = n if n < self.left else self.left
        ipad = self.ipad
        opad = self.opad
        sha = hashlib.sha256
        u = self.u
        acc = self.acc
        for _ in range(k):
            ipad[_BLOCK:] = u
            opad[_BLOCK:] = sha(ipad).digest()
            u = sha(opad).digest()
            acc ^= int.from_bytes(u, "big")
        self.u = u
        self.acc = acc
        self.left -= k
        return self.left <= 0

    def digest(self):
        return self.acc.to_bytes(_DKLEN, "big")


class Verify:
    """A password check against a stored record, in steps like Pbkdf2: `step(n)` until True,
    then `ok`. Both record forms cost the same: SaltedPassword by PBKDF2, then ClientKey and its
    hash against StoredKey. `pad_to`: a record with fewer iterations is followed by spare ones up
    to this count, so every check costs at least the board's count (a hash made elsewhere, with a
    smaller count, does not answer faster than an unknown user does). After a match, `salted`
    is the SaltedPassword and `legacy` says the record was the old pbkdf2-sha256 form."""

    def __init__(self, password, stored, pad_to=0):
        self.ok = False
        self.salted = None
        try:
            it, salt, self.stored_key, _, self.legacy = parse_hash(stored)
        except AuthError:  # config.check refuses these: pay the padding only
            it, salt, self.stored_key, self.legacy = 1, b"", None, False
        self.iterations = it
        self.salt = salt
        self.job = Pbkdf2(password, salt, it)
        self.spare = pad_to - it if pad_to > it else 0
        self.pad = None

    def step(self, n):
        if self.job is not None:
            if not self.job.step(n):
                return False
            sp = self.job.digest()
            h = hashlib.sha256(hmac_sha256(sp, b"Client Key")).digest()
            self.ok = self.stored_key is not None and equal(h, self.stored_key)
            if self.ok:
                self.salted = sp
            self.job = None
            if self.spare:
                self.pad = Pbkdf2(b"", b"", self.spare + 1)
            return self.pad is None
        return self.pad is None or self.pad.step(n)


def equal(a, b):
    """Constant-time comparison of two byte strings (time depends on length only)."""
    if len(a) != len(b):
        # Still walk a, so a length mismatch costs like a mismatch of equal length.
        b = a
        diff = 1
    else:
        diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


def scram_keys(salted):
    """SaltedPassword -> (StoredKey, ServerKey) (RFC 5802 section 3)."""
    return hashlib.sha256(hmac_sha256(salted, b"Client Key")).digest(), hmac_sha256(salted, b"Server Key")


def scram_record(iterations, salt, salted):
    """The stored record for a SaltedPassword: its keys only, never SaltedPassword itself."""
    sk, svk = scram_keys(salted)
    return format_record(iterations, salt, sk, svk)


def format_record(iterations, salt, stored_key, server_key):
    return "%s$%d$%s$%s$%s" % (SCRAM, iterations, _hexs(salt), _hexs(stored_key), _hexs(server_key))


def _hexs(b):
    return binascii.hexlify(b).decode()


def parse_hash(stored):
    """A stored record, either form -> (iterations, salt, StoredKey, ServerKey, legacy).
    The old form's keys are derived here (legacy True). Raises AuthError."""
    parts = stored.split("$") if isinstance(stored, str) else []
    if len(parts) == 5 and parts[0] == SCRAM:
        legacy = False
    elif len(parts) == 4 and parts[0] == "pbkdf2-sha256":  # the old record form, read and upgraded
        legacy = True
    else:
        raise AuthError("unknown password scheme")
    try:
        it = int(parts[1])
        salt = binascii.unhexlify(parts[2])
        k1 = binascii.unhexlify(parts[3])
        k2 = binascii.unhexlify(parts[4]) if not legacy else k1
    except (ValueError, TypeError):
        raise AuthError("malformed password hash")
    # One PBKDF2 block only: a longer stored hash would multiply the work of every login.
    if it < 1 or it > MAX_ITERATIONS or len(k1) != _DKLEN or len(k2) != _DKLEN or len(salt) > _MAX_SALT_BYTES:
        raise AuthError("malformed password hash")
    if legacy:
        k1, k2 = scram_keys(k1)
    return it, salt, k1, k2, legacy


def apop_digest(banner_ts, secret):
    """RFC 1939 section 7: lower-case hex MD5 of the banner timestamp followed by the secret."""
    if isinstance(banner_ts, str):
        banner_ts = banner_ts.encode()
    if isinstance(secret, str):
        secret = secret.encode()
    h = hashlib.md5(banner_ts)
    h.update(secret)
    return binascii.hexlify(h.digest())


# The LOGIN mechanism's prompts (draft-murchison-sasl-login), "Username:" and "Password:" in
# base64 as every LOGIN client expects them (VXNlcm5hbWU6, UGFzc3dvcmQ6): whole lines in
# pop3login.py ("+ ") and smtpauth.py ("334 "), no name of their own.


def b64decode(blob):
    """Strict base64 (a SASL response) -> bytes. Raises AuthError."""
    try:
        raw = binascii.a2b_base64(blob)
    except (ValueError, TypeError):
        raise AuthError("bad base64")
    # a2b_base64 is lenient about junk characters on some ports: re-encode to check strictly.
    if binascii.b2a_base64(raw).rstrip(b"\n") != bytes(blob).rstrip(b"\r\n"):
        raise AuthError("bad base64")
    return raw


def sasl_plain(blob):
    """RFC 4616 PLAIN: base64 of authzid NUL authcid NUL passwd -> (authzid, authcid, passwd)
    as bytes. Raises AuthError on bad base64 or framing."""
    raw = b64decode(blob)
    parts = raw.split(b"\x00")
    if len(parts) != 3 or not parts[1]:
        raise AuthError("bad PLAIN message")
    return parts[0], parts[1], parts[2]


def plain_login(blob):
    """A PLAIN response as both servers check it -> (name, password, fail) for a password check
    that is always paid, so the answer's timing tells nothing: "=" is the empty response (RFC
    4954); malformed (base64, framing, a name not UTF-8) -> ("", b"", True); an authzid other
    than the authcid (a proxy login: authorize only as oneself) -> fail True."""
    if blob == b"=":
        blob = b""
    try:
        authz, authc, pw = sasl_plain(blob)
        name = authc.decode()
    except (AuthError, ValueError, UnicodeError):
        return "", b"", True
    return name, pw, bool(authz) and authz != authc


def b64encode(raw):
    return binascii.b2a_base64(raw).rstrip(b"\n")


# --- the servers' login check (pop3cmd.Session, smtp.Session: the same users, hashes, rehash)


def user_of(users, name):
    """The user a login name means, for every login of both servers (POP3 USER/PASS, APOP, AUTH
    PLAIN, LOGIN and SCRAM-SHA-256; SMTP AUTH): `name` itself if it is one of `users`; else, as
    mail clients fill it in (Outlook and Apple Mail make the e-mail address the user name, some
    capitalise it), the user its lower-case part before its last "@" is, if that is one (user
    names are a-z 0-9 . _ - only: nothing else can match); else `name` (no user: it fails)."""
    if name in users:
        return name
    n = folded(name)
    return n if n in users else name


def folded(name):
    """`name` as user_of looks it up: its lower-case part before its last "@"; a name with
    non-ASCII letters as it is (MicroPython lower-cases ASCII only: the host and the board must
    map the same names). scram.py's salt for an unknown name is made from this, so every
    spelling of one unknown name gets one salt, as every spelling of a user does."""
    if len(name.encode()) != len(name):
        return name
    n = name.lower()
    i = n.rfind("@")
    return n[:i] if i > 0 else n


class LoginCheck:
    """A login's password check, in steps (`step(n)` until True, like Pbkdf2): verify
    against the stored hash (or the dummy, for an unknown user), padded to the board's count;
    if it matches and the stored count is not the board's, hash the password again with the
    board's count, or if the record is the old pbkdf2-sha256 form, store it as the SCRAM record
    (`new_hash`). `ok`, `user` and `new_hash` are the outcome."""

    def __init__(self, svc, name, password, force_fail=False):
        self.svc = svc
        u = svc.users.get(name)
        self.user = u
        # a copy: the shell's line buffer may move on while the check runs (the rehash needs it)
        self.password = password if isinstance(password, (str, bytes)) else bytes(password)
        self.force_fail = force_fail
        self.ok = False
        self.new_hash = None
        self.verify = Verify(password, u["password"] if u is not None else svc._dummy, svc.iterations)
        self.rehash = None
        self._salt = b""

    def step(self, n):
        if self.rehash is not None:
            if not self.rehash.step(n):
                return False
            self.new_hash = scram_record(self.svc.iterations, self._salt, self.rehash.digest())
            return True
        v = self.verify
        if not v.step(n):
            return False
        self.ok = v.ok and self.user is not None and not self.force_fail
        if self.ok and v.iterations != self.svc.iterations:
            self._salt = urandom(_SALT_BYTES)
            self.rehash = Pbkdf2(self.password, self._salt, self.svc.iterations)
            return False
        if self.ok and v.legacy:  # the old form (SaltedPassword in clear): keep only its keys
            self.new_hash = scram_record(v.iterations, v.salt, v.salted)
        return True

