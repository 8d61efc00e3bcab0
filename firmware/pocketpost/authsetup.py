"""auth.py's cold half: password records made or checked whole (hash_password, pbkdf2_sha256,
verify_password: config.add_user, the host tools) and the servers' start-up figures
(scram_secret, parse_cidr: serverstart.login_setup, serverconf). A login check needs none of
it, so a server loads it at start-up only and drops it with the login code
(pop3server.LOGIN_MODULES). Reached as auth's own names (`auth.hash_password`, `from
pocketpost.auth import parse_cidr`): auth.__getattr__ loads this module at their first use.
"""

import hashlib

from pocketpost.auth import DEFAULT_ITERATIONS, MAX_ITERATIONS, AuthError, Pbkdf2, Verify, parse_hash, scram_record
from pocketpost.compat import const, urandom

_SALT_BYTES = const(16)  # auth's (a private copy)
_DKLEN = const(32)  # auth's (a private copy)


def pbkdf2_sha256(password, salt, iterations, size=_DKLEN):
    """PBKDF2-HMAC-SHA256 (RFC 8018) of size bytes (dklen), same result as CPython's hashlib.pbkdf2_hmac."""
    out = b""
    block = 1
    while len(out) < size:
        p = Pbkdf2(password, salt, iterations, block)
        p.step(iterations)
        out += p.digest()
        block += 1
    return out[:size]


def hash_password(password, iterations=None, salt=None):
    """A new record ("scram-sha-256$..."): what add_user and the tools store."""
    if iterations is None:
        iterations = DEFAULT_ITERATIONS
    if iterations < 1 or iterations > MAX_ITERATIONS:
        raise AuthError("bad iteration count")
    if salt is None:
        salt = urandom(_SALT_BYTES)
    return scram_record(iterations, salt, pbkdf2_sha256(password, salt, iterations))


def verify_password(password, stored):
    """True if `password` (str or bytes) matches `stored`. Constant time in the password."""
    try:
        parse_hash(stored)
    except AuthError:
        return False
    v = Verify(password, stored)
    while not v.step(MAX_ITERATIONS):
        pass
    return v.ok


def scram_secret(users):
    """The key that makes an unknown user's SCRAM salt (scram.scram_fake): it must be the same
    across connections and reboots (a salt that changes tells the name is unknown) and unknown
    to a peer. Derived from the users' StoredKeys, which never cross the wire: it changes only
    when a password does (or a record is rehashed to another count, which changes that user's
    salt too)."""
    h = hashlib.sha256(b"pocketpost scram fake salt")
    for name in sorted(users):
        try:
            sk = parse_hash(users[name].get("password"))[2]
        except AuthError:
            continue
        h.update(name.encode())
        h.update(sk)
    return h.digest()


def parse_cidr(s):
    """"a.b.c.d/n" (or a bare address) -> (network int, mask int), or None."""
    if not isinstance(s, str):
        return None
    bits = 32
    if "/" in s:
        s, b = s.split("/", 1)
        if not b.isdigit() or int(b) > 32:
            return None
        bits = int(b)
    from pocketpost.pop3server import parse_ipv4

    ip = parse_ipv4(s)
    if ip is None:
        return None
    mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return ip & mask, mask
