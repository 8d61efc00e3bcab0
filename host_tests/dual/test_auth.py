"""auth.py: PBKDF2-HMAC-SHA256 against known vectors (computed with CPython's
hashlib.pbkdf2_hmac, which is also checked directly when it exists), constant-time compare,
APOP digest (RFC 1939 example) and SASL PLAIN decoding. Runs under CPython and MicroPython."""

import binascii
import hashlib

from dualtest import skip
from pocketpost import auth

VECTORS = [
    # password, salt, iterations, dklen, hex (CPython hashlib.pbkdf2_hmac / RFC 7914 section 11)
    (b"passwd", b"salt", 1, 64,
     "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
     "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"),
    (b"password", b"salt", 4096, 32, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
    (b"pass word with spaces \xc3\xa9", b"0123456789abcdef", 1000, 32,
     "8cbcc929961dc4cea7243c104fff681e47af290f32d9c15bc14bff963790ee10"),
    (b"k" * 100, b"s", 3, 32, "5393fdd22141d18e0ad7f185974c30da7be2e9b79425e88e4991c4fc7c9027cb"),
]


def hx(b):
    return binascii.hexlify(b).decode()


def test_pbkdf2_vectors():
    for p, s, c, n, want in VECTORS:
        assert hx(auth.pbkdf2_sha256(p, s, c, n)) == want


def test_pbkdf2_matches_cpython_when_available():
    ref = getattr(hashlib, "pbkdf2_hmac", None)
    if ref is None:  # MicroPython: test_pbkdf2_vectors checks the same function against fixed vectors
        skip("no hashlib.pbkdf2_hmac to compare with on this runtime")
    for i in range(1, 40, 7):
        pw = bytes(range(i))
        salt = b"x" * (i % 20)
        assert auth.pbkdf2_sha256(pw, salt, i, 32) == ref("sha256", pw, salt, i, 32)


def test_hmac_vector():
    got = auth.hmac_sha256(b"key", b"The quick brown fox jumps over the lazy dog")
    assert hx(got) == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"


def test_hash_and_verify():
    h = auth.hash_password("sp ace pass", iterations=50)
    parts = h.split("$")
    assert parts[0] == "scram-sha-256" and parts[1] == "50"
    assert len(parts[2]) == 32 and len(parts[3]) == 64 and len(parts[4]) == 64
    # the record holds no SaltedPassword (it would log in as USER/PASS's hash did)
    sp = hx(auth.pbkdf2_sha256(b"sp ace pass", binascii.unhexlify(parts[2]), 50))
    assert sp not in h
    assert auth.verify_password("sp ace pass", h)
    assert auth.verify_password(b"sp ace pass", h)
    assert not auth.verify_password("sp ace pas", h)
    assert not auth.verify_password("", h)
    # salts differ between calls
    assert auth.hash_password("x", iterations=2) != auth.hash_password("x", iterations=2)
    # a given salt is reproducible
    assert auth.hash_password("x", 3, b"abc") == auth.hash_password("x", 3, b"abc")


def test_verify_rejects_malformed():
    for bad in ("", "plain", "md5$1$00$00", "pbkdf2-sha256$x$00$00", "pbkdf2-sha256$0$00$00",
                "pbkdf2-sha256$1$zz$00", "pbkdf2-sha256$1$00$", None, 5, "scram-sha-256$1$00$" + "00" * 32,
                "scram-sha-256$1$00$" + "00" * 32 + "$" + "00" * 31, "scram-sha-256$1$00$" + "00" * 32 + "$zz"):
        assert not auth.verify_password("pw", bad)


def test_bad_iterations_refused():
    for it in (0, -1, auth.MAX_ITERATIONS + 1):
        try:
            auth.hash_password("x", iterations=it)
        except auth.AuthError:
            continue
        assert False, it


def test_constant_time_equal():
    assert auth.equal(b"abc", b"abc")
    assert not auth.equal(b"abc", b"abd")
    assert not auth.equal(b"abc", b"ab")
    assert not auth.equal(b"", b"a")
    assert auth.equal(b"", b"")


def test_apop_rfc1939_example():
    d = auth.apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf")
    assert d == b"c4c9334bac560ecc979e58001b3e22fb"


def test_sasl_plain():
    blob = binascii.b2a_base64(b"\x00tim\x00tanstaaftanstaaf").rstrip(b"\n")
    assert auth.sasl_plain(blob) == (b"", b"tim", b"tanstaaftanstaaf")
    blob = binascii.b2a_base64(b"admin\x00tim\x00pass with spaces").rstrip(b"\n")
    assert auth.sasl_plain(blob) == (b"admin", b"tim", b"pass with spaces")
    for bad in (b"!!!!", b"AAA", binascii.b2a_base64(b"tim\x00pw").rstrip(b"\n"),
                binascii.b2a_base64(b"\x00\x00pw").rstrip(b"\n"),
                binascii.b2a_base64(b"a\x00b\x00c\x00d").rstrip(b"\n")):
        try:
            auth.sasl_plain(bad)
        except auth.AuthError:
            continue
        assert False, bad


def test_plain_login_is_always_a_check_to_pay():
    """What both servers (POP3 AUTH PLAIN, SMTP AUTH PLAIN) do with a PLAIN response."""
    b64 = lambda raw: binascii.b2a_base64(raw).rstrip(b"\n")
    assert auth.plain_login(b64(b"\x00tim\x00pw")) == ("tim", b"pw", False)
    assert auth.plain_login(b64(b"tim\x00tim\x00pw")) == ("tim", b"pw", False)  # authzid = authcid
    assert auth.plain_login(b64(b"admin\x00tim\x00pw")) == ("tim", b"pw", True)  # no proxy logins
    for bad in (b"=", b"!!!!", b64(b"\x00\xff\x00pw")):  # "=": the empty response, malformed too
        assert auth.plain_login(bad) == ("", b"", True), bad


def test_iteration_ceiling_from_the_watchdog():
    from pocketpost import config

    board = {"watchdog": {"timeout_ms": 3000}, "server": {"pbkdf2_iteration_us": 300, "pbkdf2_iterations": 5000}}
    assert config.pbkdf2_ceiling(board)[0] == 5000  # 3000 ms / 2 at 0.3 ms per iteration
    config.check(board)
    board["server"]["pbkdf2_iterations"] = 5001
    try:
        config.check(board)
        raise AssertionError("accepted a count above the ceiling")
    except config.ConfigError as e:
        msg = str(e)
        assert "pbkdf2_iterations 5001" in msg and "ceiling 5000" in msg and "3000 ms watchdog" in msg, msg
        assert "\n" not in msg
    board["server"]["pbkdf2_iterations"] = 1000
    fake = "pbkdf2-sha256$%d$" + "00" * 16 + "$" + "00" * 32
    board["users"] = {"alice": {"password": fake % 5000}}
    config.check(board)
    board["users"] = {"alice": {"password": fake % 5001}}
    try:
        config.check(board)
        raise AssertionError("accepted a stored hash above the ceiling")
    except config.ConfigError as e:
        assert "users.alice.password has 5001" in str(e) and "ceiling 5000" in str(e), str(e)


def test_steps_give_the_same_hash():
    want = auth.pbkdf2_sha256(b"pw", b"salt", 37)
    for n in (1, 5, 36, 100):
        p = auth.Pbkdf2(b"pw", b"salt", 37)
        while not p.step(n):
            pass
        assert p.digest() == want
