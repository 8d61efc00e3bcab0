"""Password hashes, constant-time compare, APOP digest and SASL PLAIN decoding.

Passwords live on flash only as salted PBKDF2-HMAC-SHA256 hashes:
    "pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>"
The iteration count is per board (config "server"/"pbkdf2_iterations"): an ESP32 needs a
count that keeps one login well under a second, a host can afford far more.

MicroPython has hashlib.sha256 but no hmac, no pbkdf2_hmac, and its sha256 objects have no
`.copy()`, so the usual trick of hashing the ipad/opad blocks once and copying the state per
iteration is unavailable. Cost per iteration here: two sha256 calls over a 96-octet buffer
(64-octet pad block + 32-octet digest), i.e. 4 compression-function blocks (2 per call),
against 2 with state copies. The pads live in two preallocated bytearrays; the running XOR
is kept as one big int, so an iteration allocates only the two 32-octet digests and an int.

The APOP secret (RFC 1939 section 7) must be stored in clear: APOP is weaker than PBKDF2 on
flash and off by default (per-user opt-in "apop_secret"), as documented in the README.
"""

import binascii
import hashlib

from pocketpost.compat import const, urandom

SCHEME = "pbkdf2-sha256"
# Default iterations when the config names none. Boards override it: ~2 ms/iteration-pair
# budget on an ESP32 makes 1000 about 0.3 s per login; the host can do more.
DEFAULT_ITERATIONS = const(1000)
# Upper bound accepted from a stored hash: a corrupted or hostile config must not make one
# login take minutes (an ESP32 spends ~0.3 ms per iteration: 200k is about a minute).
MAX_ITERATIONS = const(200000)
SALT_BYTES = const(16)
MAX_SALT_BYTES = const(64)  # a stored salt longer than this is a corrupt entry
_DKLEN = const(32)
_BLOCK = const(64)


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


def pbkdf2_sha256(password, salt, iterations, dklen=_DKLEN):
    """PBKDF2-HMAC-SHA256 (RFC 8018), same result as CPython's hashlib.pbkdf2_hmac."""
    if isinstance(password, str):
        password = password.encode()
    ipad, opad = _hmac_pads(password)
    ipad_block = bytes(ipad[:_BLOCK])
    sha = hashlib.sha256
    out = b""
    block = 1
    while len(out) < dklen:
        h = sha(ipad_block)
        h.update(salt)
        h.update(block.to_bytes(4, "big"))
        opad[_BLOCK:] = h.digest()
        u = sha(opad).digest()
        acc = int.from_bytes(u, "big")
        for _ in range(iterations - 1):
            ipad[_BLOCK:] = u
            opad[_BLOCK:] = sha(ipad).digest()
            u = sha(opad).digest()
            acc ^= int.from_bytes(u, "big")
        out += acc.to_bytes(_DKLEN, "big")
        block += 1
    return out[:dklen]


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


def hash_password(password, iterations=None, salt=None):
    if iterations is None:
        iterations = DEFAULT_ITERATIONS
    if iterations < 1 or iterations > MAX_ITERATIONS:
        raise AuthError("bad iteration count")
    if salt is None:
        salt = urandom(SALT_BYTES)
    dk = pbkdf2_sha256(password, salt, iterations)
    return "%s$%d$%s$%s" % (SCHEME, iterations, binascii.hexlify(salt).decode(), binascii.hexlify(dk).decode())


def parse_hash(stored):
    """"pbkdf2-sha256$iter$salthex$hashhex" -> (iterations, salt, hash). Raises AuthError."""
    parts = stored.split("$") if isinstance(stored, str) else []
    if len(parts) != 4 or parts[0] != SCHEME:
        raise AuthError("unknown password scheme")
    try:
        it = int(parts[1])
        salt = binascii.unhexlify(parts[2])
        dk = binascii.unhexlify(parts[3])
    except (ValueError, TypeError):
        raise AuthError("malformed password hash")
    # One PBKDF2 block only: a longer stored hash would multiply the work of every login.
    if it < 1 or it > MAX_ITERATIONS or len(dk) != _DKLEN or len(salt) > MAX_SALT_BYTES:
        raise AuthError("malformed password hash")
    return it, salt, dk


def verify_password(password, stored):
    """True if `password` (str or bytes) matches `stored`. Constant time in the password."""
    try:
        it, salt, dk = parse_hash(stored)
    except AuthError:
        return False
    return equal(pbkdf2_sha256(password, salt, it, len(dk)), dk)


def apop_digest(banner_ts, secret):
    """RFC 1939 section 7: lower-case hex MD5 of the banner timestamp followed by the secret."""
    if isinstance(banner_ts, str):
        banner_ts = banner_ts.encode()
    if isinstance(secret, str):
        secret = secret.encode()
    h = hashlib.md5(banner_ts)
    h.update(secret)
    return binascii.hexlify(h.digest())


def sasl_plain(blob):
    """RFC 4616 PLAIN: base64 of authzid NUL authcid NUL passwd -> (authzid, authcid, passwd)
    as bytes. Raises AuthError on bad base64 or framing."""
    try:
        raw = binascii.a2b_base64(blob)
    except (ValueError, TypeError):
        raise AuthError("bad base64")
    # a2b_base64 is lenient about junk characters on some ports: re-encode to check strictly.
    if binascii.b2a_base64(raw).rstrip(b"\n") != bytes(blob).rstrip(b"\r\n"):
        raise AuthError("bad base64")
    parts = raw.split(b"\x00")
    if len(parts) != 3 or not parts[1]:
        raise AuthError("bad PLAIN message")
    return parts[0], parts[1], parts[2]
