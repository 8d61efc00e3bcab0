"""auth.py: PBKDF2-HMAC-SHA256 and SCRAM-SHA-256 (RFC 7677 section 3) against known vectors (computed with CPython's
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


# --- SCRAM-SHA-256 ---------------------------------------------------------------------------
# RFC 7677 section 3: user "user", password "pencil".
R_CNONCE = b"rOprNGfwEbeRWgbNEkqO"
R_SNONCE = b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
R_SALT = b"W22ZaJ0SNY7soEsUEjb6gQ=="
R_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
R_SFIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
R_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
           b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
R_SFINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
_PENCIL = {}


def pencil_record():
    """The RFC example's record (4096 iterations: computed once per run)."""
    if not _PENCIL:
        _PENCIL["r"] = auth.hash_password("pencil", 4096, auth.b64decode(R_SALT))
    return _PENCIL["r"]


def test_scram_rfc7677_client():
    c = auth.ScramClient("user", "pencil", nonce=R_CNONCE)
    assert c.first() == R_FIRST
    c.server_first(R_SFIRST)
    n = 0
    while not c.step(1000):  # sliced like a board's client: 4096 = 5 steps
        n += 1
    assert n == 4
    assert c.final() == R_FINAL
    c.server_final(R_SFINAL)  # raises if the signature is wrong
    for bad in (b"v=" + b"A" * 43 + b"=", b"e=invalid-proof", b"x=1", b"v=!!"):
        try:
            c.server_final(bad)
            raise AssertionError(bad)
        except auth.AuthError:
            pass


def test_scram_rfc7677_server():
    it, salt, sk, svk, legacy = auth.parse_hash(pencil_record())
    assert (it, legacy) == (4096, False)
    s = auth.ScramServer(nonce=R_SNONCE)
    assert s.client_first(R_FIRST) == "user" and s.authzid is None
    assert s.server_first(it, salt, sk, svk) == R_SFIRST
    assert s.client_final(R_FINAL) == R_SFINAL


def _server(record=None, first=R_FIRST):
    it, salt, sk, svk, _ = auth.parse_hash(record or pencil_record())
    s = auth.ScramServer(nonce=R_SNONCE)
    s.client_first(first)
    s.server_first(it, salt, sk, svk)
    return s


def test_scram_server_refuses_wrong_proofs():
    flip = bytearray(R_FINAL)
    flip[-5] ^= 1  # one bit of the proof's base64
    for bad in (bytes(flip),
                R_FINAL.replace(b"c=biws", b"c=eSws"),  # "y,," binding claimed in the final only
                R_FINAL.replace(b"hNlF$k0", b"hNlF$k1"),  # another nonce
                R_FINAL.replace(b"p=dHzb", b"p=dHzc")):
        try:
            got = _server().client_final(bad)
        except auth.AuthError:  # malformed base64 after the change: refused as well
            got = None
        assert got is None, bad
    # the same proof against another user's record (right format, wrong keys)
    other = auth.hash_password("pencil2", 5, b"s")
    assert _server(other).client_final(R_FINAL) is None


def test_scram_server_refuses_malformed():
    for first in (b"p=tls-unique,,n=user,r=abc", b"n,,m=ext,n=user,r=abc", b"n,,n=user", b"n,,r=abc,n=user",
                  b"x,,n=user,r=abc", b"n,,n=user,r=a,b", b"n,,n=us=41er,r=abc", b"n,,n=user,r=", b"n,",
                  b"n,,n=user,r=ab c", b"n,b=x,n=user,r=abc"):
        try:
            auth.ScramServer().client_first(first)
            raise AssertionError(first)
        except auth.AuthError:
            pass
    for final in (b"c=biws,r=x", b"r=x,c=biws,p=AAAA", b"c=biws,r=x,e=1,p=AAAA", b"c=biws,r=x,p=!!!"):
        try:
            got = _server().client_final(final)
        except auth.AuthError:
            got = None
        assert got is None, final


def test_scram_authzid_and_saslname_escaping():
    s = auth.ScramServer()
    assert s.client_first(b"n,a=a=3Db=2Cc,n=a=3Db=2Cc,r=xyz") == "a=b,c"
    assert s.authzid == "a=b,c"
    assert s.client_first(b"y,,n=user,r=xyz") == "user"  # "y": the client could bind, we cannot
    assert auth.saslname_escape(b"a=b,c") == b"a=3Db=2Cc"
    c = auth.ScramClient("we,ird=", "pw")
    assert c.first().startswith(b"n,,n=we=2Cird=3D,r=")
    assert auth.saslname_unescape(auth.saslname_escape(b"=,=2C,")) == b"=,=2C,"


def test_scram_client_and_server_agree_with_random_nonces():
    rec = auth.hash_password("s3cret, with comma=", 7)
    it, salt, sk, svk, _ = auth.parse_hash(rec)
    c = auth.ScramClient("bob", "s3cret, with comma=")
    s = auth.ScramServer()
    assert s.client_first(c.first()) == "bob"
    c.server_first(s.server_first(it, salt, sk, svk))
    assert c.cnonce != R_CNONCE and len(c.cnonce) == 24
    sf = s.client_final(c.final())
    assert sf is not None
    c.server_final(sf)
    # the wrong password: the server says no
    c = auth.ScramClient("bob", "s3cret")
    s = auth.ScramServer()
    s.client_first(c.first())
    c.server_first(s.server_first(it, salt, sk, svk))
    assert s.client_final(c.final()) is None


def test_scram_client_refuses_bad_server_first():
    for sf, why in ((b"r=other,s=QUJD,i=5", "nonce"), (b"r=" + R_CNONCE + b",s=QUJD,i=5", "nonce"),
                    (b"r=" + R_CNONCE + b"x,s=QUJD,i=0", "iterations"),
                    (b"r=" + R_CNONCE + b"x,s=QUJD,i=5001", "iterations"),
                    (b"r=" + R_CNONCE + b"x,s=QUJD,i=x", "iteration"), (b"r=" + R_CNONCE + b"x,s=!,i=5", "base64"),
                    (b"r=" + R_CNONCE + b"x,i=5,s=QUJD", "")):
        c = auth.ScramClient("user", "pencil", nonce=R_CNONCE, max_iterations=5000)
        try:
            c.server_first(sf)
            raise AssertionError(sf)
        except auth.AuthError as e:
            assert why in str(e), (sf, str(e))


def test_legacy_record_verifies_and_derives_the_same_keys():
    salt = auth.b64decode(R_SALT)
    old = auth.format_hash(4096, salt, auth.pbkdf2_sha256(b"pencil", salt, 4096))
    it, s2, sk, svk, legacy = auth.parse_hash(old)
    assert legacy and it == 4096 and s2 == salt
    assert auth.parse_hash(pencil_record())[2:4] == (sk, svk)
    assert auth.verify_password("pencil", old) and not auth.verify_password("pencil ", old)
    # SCRAM works against the old form too (its keys are derived when read)
    assert _server(old).client_final(R_FINAL) == R_SFINAL
    v = auth.Verify("pencil", old)
    while not v.step(1000):
        pass
    assert v.ok and v.legacy and auth.scram_record(v.iterations, v.salt, v.salted) == pencil_record()


def test_scram_fake_is_stable_and_never_passes():
    a = auth.scram_fake(b"secret", "nobody", 700)
    assert a == auth.scram_fake(b"secret", "nobody", 700) and a[0] == 700 and len(a[1]) == auth.SALT_BYTES
    assert a[1] != auth.scram_fake(b"secret", "nobody2", 700)[1]
    assert a[1] != auth.scram_fake(b"secret2", "nobody", 700)[1]
    s = auth.ScramServer(nonce=R_SNONCE)
    s.client_first(R_FIRST)
    s.server_first(*auth.scram_fake(b"secret", "user", 4096))
    assert s.client_final(R_FINAL) is None


def test_scram_channel_binding_must_match_the_gs2_header():
    """A client that sent "y,," (or "n,a=x,") must echo that header in c=: a proof signed over
    "c=biws" then is refused (RFC 5802 section 6: downgrade detection), even though it is a
    correct proof of the password."""
    rec = auth.hash_password("pw", 3)
    it, salt, sk, svk, _ = auth.parse_hash(rec)
    for header in (b"y,,", b"n,a=bob,"):
        c = auth.ScramClient("bob", "pw")
        s = auth.ScramServer()
        s.client_first(header + c.bare)
        c.server_first(s.server_first(it, salt, sk, svk))
        assert s.client_final(c.final()) is None, header
    c = auth.ScramClient("bob", "pw")  # control: the same with "n,,"
    s = auth.ScramServer()
    s.client_first(c.first())
    c.server_first(s.server_first(it, salt, sk, svk))
    assert s.client_final(c.final()) is not None
