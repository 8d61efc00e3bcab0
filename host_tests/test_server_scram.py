"""AUTH SCRAM-SHA-256 against the server under micropython, from two clients that share no code
with ours: mpop (GNU SASL's SCRAM) over plain POP3, STLS and POP3S, fetching into a maildir;
and a client written here from the RFC 5802 / RFC 7677 formulas with CPython's hashlib.pbkdf2_hmac
and hmac. Also: an old pbkdf2-sha256 record is stored in the new form after a SCRAM login (saved
to the config file), and what a stolen config holds (StoredKey, ServerKey) logs no one in."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys

import pytest
import oldrecord
from helpers import FIRMWARE
from serverharness import Pop3Server, Raw, msg

sys.path.insert(0, FIRMWARE)
from pocketpost import auth  # noqa: E402

MSGS = [msg(1), msg(2, 40)]


@pytest.fixture
def srv(tmp_path):
    # plain-text passwords refused everywhere: SCRAM is the only way in without TLS
    (tmp_path / "srv").mkdir()
    s = Pop3Server(str(tmp_path / "srv"), {"alice": MSGS}, server={"plaintext_auth": "never"})
    s.start()
    yield s
    s.stop()


def _mpop(tmp_path, s, *opts, password="alice pass", keep=True):
    md = tmp_path / "md"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True, exist_ok=True)
    cmd = ["mpop", "--host=127.0.0.1", "--auth=scram-sha-256", "--user=alice", "--passwordeval=echo '%s'" % password,
           "--timeout=20", "--received-header=off", "--delivery=maildir,%s" % md, "--keep=%s" % ("on" if keep else "off"),
           "--uidls-file=%s" % (tmp_path / "uidls"), "-d"] + list(opts)
    r = subprocess.run(cmd, capture_output=True, timeout=60, env=dict(os.environ, HOME=str(tmp_path)))
    got = []
    for name in sorted(os.listdir(md / "new")):
        with open(md / "new" / name, "rb") as f:
            got.append(f.read())
    return r, sorted(got)


def _want():
    return sorted(m.replace(b"\r\n", b"\n") for m in MSGS)


def _as_lf(got):
    return sorted(g.replace(b"\r\n", b"\n") for g in got)


def test_mpop_scram_over_plain_pop3(srv, tmp_path):
    r, got = _mpop(tmp_path, srv, "--port=%d" % srv.port, "--tls=off")
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "--> AUTH SCRAM-SHA-256" in out and "<-- SASL SCRAM-SHA-256" in out  # offered without TLS
    assert "PASS" not in out and "AUTH PLAIN" not in out
    assert _as_lf(got) == _want()
    assert "login user=alice method=AUTH SCRAM-SHA-256 tls=0" in srv.log()
    # a wrong password: refused, with the server's failure path (logged, delayed)
    r, _ = _mpop(tmp_path, srv, "--port=%d" % srv.port, "--tls=off", password="alice pas")
    assert r.returncode != 0 and b"authentication failed" in r.stdout + r.stderr
    assert "login failed user=alice method=AUTH SCRAM-SHA-256" in srv.log()


def test_mpop_scram_over_stls_and_pop3s_then_delete(srv, tmp_path):
    ca = "--tls-trust-file=%s" % srv.ca
    r, got = _mpop(tmp_path, srv, "--port=%d" % srv.port, "--tls=on", "--tls-starttls=on", ca)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "--> STLS" in out and "--> AUTH SCRAM-SHA-256" in out and _as_lf(got) == _want()
    r, got = _mpop(tmp_path / "2", srv, "--port=%d" % srv.pop3s_port, "--tls=on", "--tls-starttls=off", ca, keep=False)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "--> AUTH SCRAM-SHA-256" in out and _as_lf(got) == _want()
    assert srv.log().count("method=AUTH SCRAM-SHA-256 tls=1") == 2
    srv.stop()
    assert srv.mailbox("alice") == []  # mpop deleted what it fetched (QUIT after a SCRAM login)


# --- an independent SCRAM-SHA-256 client (RFC 5802 section 3, from CPython's stdlib) ------------
def _h(k, m):
    return hmac.new(k, m, hashlib.sha256).digest()


def _b64(b):
    return base64.b64encode(b)


class Scram:
    """The client side from the RFC's formulas; proof_key replaces ClientKey (a stolen-config
    attacker who has only StoredKey)."""

    def __init__(self, user, password, gs2=b"n,,", proof_key=None):
        self.gs2 = gs2
        self.bare = b"n=" + user.encode() + b",r=" + _b64(os.urandom(15))
        self.password = password.encode()
        self.proof_key = proof_key

    def first(self):
        return self.gs2 + self.bare

    def final(self, server_first):
        attrs = dict(kv.split(b"=", 1) for kv in server_first.split(b","))
        assert attrs[b"r"].startswith(self.bare.split(b",r=")[1])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs[b"s"]), int(attrs[b"i"]))
        client_key = self.proof_key or _h(salted, b"Client Key")
        without = b"c=" + _b64(self.gs2) + b",r=" + attrs[b"r"]
        am = self.bare + b"," + server_first + b"," + without
        sig = _h(hashlib.sha256(client_key).digest(), am) if self.proof_key is None else _h(self.proof_key, am)
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        self.server_sig = _h(_h(salted, b"Server Key"), am)
        self.iterations = int(attrs[b"i"])
        self.salt = attrs[b"s"]
        return without + b",p=" + _b64(proof)


def _scram_login(port, client, ack=b""):
    """-> (final status line, the server's signature was right, server-first)."""
    c = Raw(port)
    try:
        assert c.line().startswith(b"+OK")
        c.send(b"AUTH SCRAM-SHA-256 " + _b64(client.first()) + b"\r\n")
        r = c.line()
        if not r.startswith(b"+ "):
            return r, False, None
        sf = base64.b64decode(r[2:])
        c.send(_b64(client.final(sf)) + b"\r\n")
        r = c.line()
        if not r.startswith(b"+ "):
            return r, False, sf
        v = base64.b64decode(r[2:])
        ok = v == b"v=" + _b64(client.server_sig)
        c.send(ack + b"\r\n")
        r = c.line()
        if r.startswith(b"+OK"):
            c.send(b"QUIT\r\n")
            assert c.line().startswith(b"+OK")
        return r, ok, sf
    finally:
        c.close()


def test_independent_client_cross_checks_the_server(srv):
    r, sig_ok, sf = _scram_login(srv.port, Scram("alice", "alice pass"))
    assert r.startswith(b"+OK 2 messages") and sig_ok, r
    assert sf.endswith(b",i=200")  # the board's count, as stored
    # an authzid naming oneself, with the matching channel binding (c=base64("n,a=alice,"))
    r, sig_ok, _ = _scram_login(srv.port, Scram("alice", "alice pass", gs2=b"n,a=alice,"))
    assert r.startswith(b"+OK") and sig_ok, r
    # ... naming someone else: refused although the proof is right
    r, _, _ = _scram_login(srv.port, Scram("alice", "alice pass", gs2=b"n,a=bob,"))
    assert r.startswith(b"-ERR [AUTH]"), r
    r, _, _ = _scram_login(srv.port, Scram("alice", "alice pas"))
    assert r.startswith(b"-ERR [AUTH] authentication failed"), r


def test_unknown_user_gets_a_stable_fake_challenge(srv):
    known = Scram("bob", "x")
    r_known, _, sf_known = _scram_login(srv.port, known)
    salts = []
    for _ in range(2):
        c = Scram("mallory", "x")
        r, _, sf = _scram_login(srv.port, c)
        assert r == r_known  # the same -ERR as a wrong password
        assert c.iterations == known.iterations and len(base64.b64decode(c.salt)) == len(base64.b64decode(known.salt))
        salts.append(c.salt)
    assert salts[0] == salts[1]  # stable per name: a changing salt would give the name away


def test_stolen_config_logs_no_one_in(srv):
    """The config holds salt, count, StoredKey and ServerKey. StoredKey used as ClientKey in a
    SCRAM proof, or the record (or a key) sent as a password, is refused. (The server here
    accepts USER/PASS only over TLS, so the password attempts go through POP3S... with poplib.)"""
    import poplib
    import ssl

    with open(srv.config_path) as f:
        rec = json.load(f)["users"]["alice"]["password"]
    it, salt, sk, svk, legacy = auth.parse_hash(rec)
    assert not legacy and rec.count("$") == 4
    r, _, _ = _scram_login(srv.port, Scram("alice", "unused", proof_key=sk))
    assert r.startswith(b"-ERR [AUTH]"), r
    ctx = ssl.create_default_context(cafile=srv.ca)
    for guess in (rec, sk.hex(), svk.hex()):
        p = poplib.POP3_SSL("127.0.0.1", srv.pop3s_port, context=ctx, timeout=10)
        try:
            p.user("alice")
            with pytest.raises(poplib.error_proto):
                p.pass_(guess)
        finally:
            p.close()
    # control: the password itself works over the same path
    p = poplib.POP3_SSL("127.0.0.1", srv.pop3s_port, context=ctx, timeout=10)
    p.user("alice")
    assert p.pass_("alice pass").startswith(b"+OK")
    p.quit()


def test_old_record_upgraded_by_a_scram_login_and_saved(tmp_path):
    s = Pop3Server(str(tmp_path), {"alice": MSGS}, server={"plaintext_auth": "never"})
    with open(s.config_path) as f:
        raw = json.load(f)
    salt = os.urandom(16)
    old = oldrecord.format_hash(200, salt, hashlib.pbkdf2_hmac("sha256", b"alice pass", salt, 200))
    raw["users"]["alice"]["password"] = old
    with open(s.config_path, "w") as f:
        json.dump(raw, f)
    s.start()
    try:
        for _ in range(2):  # the old record works at once; the second login finds the new one
            r, sig_ok, _ = _scram_login(s.port, Scram("alice", "alice pass"))
            assert r.startswith(b"+OK") and sig_ok, r
        with open(s.config_path) as f:
            new = json.load(f)["users"]["alice"]["password"]
        assert new.startswith("scram-sha-256$200$" + salt.hex() + "$") and old.split("$")[3] not in new
        assert auth.parse_hash(new)[2:4] == auth.parse_hash(old)[2:4]
        assert s.log().count("password record now scram-sha-256, 200 iterations") == 1, s.log()
    finally:
        s.stop()
