"""scram.py with auth.py's records: SCRAM-SHA-256 both sides against RFC 7677 section 3 (user
"user", password "pencil", its nonces, salt and 4096 iterations, byte for byte), each other with
random nonces, malformed and hostile messages, channel-binding downgrade, saslname escaping, the
old pbkdf2-sha256 record (its keys are the new record's), and the unknown-user fake. Runs under
CPython and MicroPython."""

import oldrecord
from pocketpost import auth, scram

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
    c = scram.ScramClient("user", "pencil", nonce=R_CNONCE)
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
    s = scram.ScramServer(nonce=R_SNONCE)
    assert s.client_first(R_FIRST) == "user" and s.authzid is None
    assert s.server_first(it, salt, sk, svk) == R_SFIRST
    assert s.client_final(R_FINAL) == R_SFINAL


def _server(record=None, first=R_FIRST):
    it, salt, sk, svk, _ = auth.parse_hash(record or pencil_record())
    s = scram.ScramServer(nonce=R_SNONCE)
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
            scram.ScramServer().client_first(first)
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
    s = scram.ScramServer()
    assert s.client_first(b"n,a=a=3Db=2Cc,n=a=3Db=2Cc,r=xyz") == "a=b,c"
    assert s.authzid == "a=b,c"
    assert s.client_first(b"y,,n=user,r=xyz") == "user"  # "y": the client could bind, we cannot
    assert scram.saslname_escape(b"a=b,c") == b"a=3Db=2Cc"
    c = scram.ScramClient("we,ird=", "pw")
    assert c.first().startswith(b"n,,n=we=2Cird=3D,r=")
    assert scram.saslname_unescape(scram.saslname_escape(b"=,=2C,")) == b"=,=2C,"


def test_scram_client_and_server_agree_with_random_nonces():
    rec = auth.hash_password("s3cret, with comma=", 7)
    it, salt, sk, svk, _ = auth.parse_hash(rec)
    c = scram.ScramClient("bob", "s3cret, with comma=")
    s = scram.ScramServer()
    assert s.client_first(c.first()) == "bob"
    c.server_first(s.server_first(it, salt, sk, svk))
    assert c.cnonce != R_CNONCE and len(c.cnonce) == 24
    sf = s.client_final(c.final())
    assert sf is not None
    c.server_final(sf)
    # the wrong password: the server says no
    c = scram.ScramClient("bob", "s3cret")
    s = scram.ScramServer()
    s.client_first(c.first())
    c.server_first(s.server_first(it, salt, sk, svk))
    assert s.client_final(c.final()) is None


def test_scram_client_refuses_bad_server_first():
    for sf, why in ((b"r=other,s=QUJD,i=5", "nonce"), (b"r=" + R_CNONCE + b",s=QUJD,i=5", "nonce"),
                    (b"r=" + R_CNONCE + b"x,s=QUJD,i=0", "iterations"),
                    (b"r=" + R_CNONCE + b"x,s=QUJD,i=5001", "iterations"),
                    (b"r=" + R_CNONCE + b"x,s=QUJD,i=x", "iteration"), (b"r=" + R_CNONCE + b"x,s=!,i=5", "base64"),
                    (b"r=" + R_CNONCE + b"x,i=5,s=QUJD", "")):
        c = scram.ScramClient("user", "pencil", nonce=R_CNONCE, max_iterations=5000)
        try:
            c.server_first(sf)
            raise AssertionError(sf)
        except auth.AuthError as e:
            assert why in str(e), (sf, str(e))


def test_legacy_record_verifies_and_derives_the_same_keys():
    salt = auth.b64decode(R_SALT)
    old = oldrecord.format_hash(4096, salt, auth.pbkdf2_sha256(b"pencil", salt, 4096))
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
    a = scram.scram_fake(b"secret", "nobody", 700)
    assert a == scram.scram_fake(b"secret", "nobody", 700) and a[0] == 700 and len(a[1]) == 16  # auth._SALT_BYTES
    assert a[1] != scram.scram_fake(b"secret", "nobody2", 700)[1]
    assert a[1] != scram.scram_fake(b"secret2", "nobody", 700)[1]
    s = scram.ScramServer(nonce=R_SNONCE)
    s.client_first(R_FIRST)
    s.server_first(*scram.scram_fake(b"secret", "user", 4096))
    assert s.client_final(R_FINAL) is None


def test_scram_channel_binding_must_match_the_gs2_header():
    """A client that sent "y,," (or "n,a=x,") must echo that header in c=: a proof signed over
    "c=biws" then is refused (RFC 5802 section 6: downgrade detection), even though it is a
    correct proof of the password."""
    rec = auth.hash_password("pw", 3)
    it, salt, sk, svk, _ = auth.parse_hash(rec)
    for header in (b"y,,", b"n,a=bob,"):
        c = scram.ScramClient("bob", "pw")
        s = scram.ScramServer()
        s.client_first(header + c.bare)
        c.server_first(s.server_first(it, salt, sk, svk))
        assert s.client_final(c.final()) is None, header
    c = scram.ScramClient("bob", "pw")  # control: the same with "n,,"
    s = scram.ScramServer()
    s.client_first(c.first())
    c.server_first(s.server_first(it, salt, sk, svk))
    assert s.client_final(c.final()) is not None


def _salt(svc, name):
    """The salt the server's first SCRAM reply gives a login as `name`."""
    sf = auth.b64decode(scram.ServerLogin(svc).first(auth.b64encode(b"n,,n=" + name.encode() + b",r=abcdefgh")))
    return [p for p in sf.split(b",") if p[:2] == b"s="][0]


def test_every_spelling_of_a_name_gets_one_salt_known_or_not():
    """Logins map Alice@example.org and ALICE to alice (auth.user_of): a known user's salt is then
    the same for every spelling. An unknown name's fake salt must be too, or comparing two
    spellings' salts tells a prober which names are users."""
    from pocketpost import serverconf

    cfg = {"users": {}}
    serverconf.add_user(cfg, "alice", "pw", 1000)

    class Svc:
        users = cfg["users"]
        scram_secret = b"k" * 32
        iterations = 1000
        _dummy = cfg["users"]["alice"]["password"]

    svc = Svc()
    assert _salt(svc, "alice@a.example") == _salt(svc, "ALICE@b.example") == _salt(svc, "alice")
    assert _salt(svc, "zed@a.example") == _salt(svc, "ZED@b.example") == _salt(svc, "zed")
    assert _salt(svc, "zed") != _salt(svc, "alice") and _salt(svc, "zed") != _salt(svc, "yan")


def test_a_name_with_non_ascii_letters_maps_alike_on_host_and_board():
    """CPython lower-cases the Kelvin sign to k, MicroPython only ASCII: such a name is taken as
    it is on both (it is no user: user names are a-z 0-9 . _ -)."""
    users = {"kate": {}}
    assert auth.user_of(users, "\u212aATE@example.org") == "\u212aATE@example.org"
    assert auth.user_of(users, "KATE@example.org") == "kate"
    assert auth.folded("Bob@Example.org") == "bob" and auth.folded("@x") == "@x"
