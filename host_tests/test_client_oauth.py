"""XOAUTH2 and OAUTHBEARER end to end: the client (under micropython, as a board runs it, and
in-process under CPython) against a private Dovecot whose oauth2 passdb checks each token at a
local HTTPS provider (oauthserver.py, loopback, test CA), which is also the token endpoint the
client refreshes from. No network.

Cases: a fetch with a fresh token (short token: AUTH with an initial response; long token: the
response on its own line after "+ "); an access token that expires between two fetches of one
schedule (the second refreshes before connecting: the expired token is never presented); a cached
token the server refuses early (one refresh and a second AUTH in the same session); a revoked
refresh token (a clear error naming the account; nothing deleted on the server, nothing stored).
Plus http_post's own failures (wrong CA, silent endpoint, refused port) under both runtimes.
"""

import os
import socket
import threading

import pytest

from dovecot import Dovecot
from helpers import free_port, run_micropython
import oauthdriver
import oauthserver

from pocketpost import oauth2, store as storemod
from pocketpost.store import Store
import storeread

OAUTH_CONF = """passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d}/dovecot-oauth2.conf.ext
}
"""

MESSAGES = [b"From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n",
            b"From: b@example.org\r\nSubject: two\r\n\r\n.dot line\r\nsecond\r\n"]
NEW = b"From: c@example.org\r\nSubject: three\r\n\r\nthird, after the token expired\r\n"


@pytest.fixture(scope="module")
def env():
    box = {}

    def prepare(d):
        # The provider serves with Dovecot's server certificate (test CA; SAN localhost, 127.0.0.1).
        prov = oauthserver.Provider(d.path("server.pem"), d.path("server.key")).start()
        box["prov"] = prov
        with open(d.path("dovecot-oauth2.conf.ext"), "w") as f:
            f.write("tokeninfo_url = %s?access_token=\nusername_attribute = email\ntls_ca_cert_file = %s\n"
                    "timeout_msecs = 5000\n" % (prov.url("/tokeninfo"), d.path("ca.pem")))

    dc = Dovecot(mechs="plain login apop xoauth2 oauthbearer", extra=OAUTH_CONF, prepare=prepare)
    try:
        dc.start()
        yield dc, box["prov"]
    finally:
        dc.stop()
        if "prov" in box:
            box["prov"].stop()


@pytest.fixture(autouse=True)
def fresh_cache():
    oauth2._cache.clear()
    oauth2._rotated.clear()
    yield
    oauth2._cache.clear()
    oauth2._rotated.clear()


def account(dc, prov, tmp, rt, **kw):
    a = {"name": "mail-oauth", "host": "localhost", "port": dc.sport, "tls": "implicit", "user": "alice",
         "auth": "xoauth2", "ca": dc.path("ca.der"), "mailbox": "alice", "state_dir": str(tmp / "state"),
         "policy": "keep", "token_url": "https://localhost:%d/token" % prov.port,
         "client_id": oauthserver.CLIENT_ID, "client_secret": oauthserver.CLIENT_SECRET, "refresh_token": rt,
         "timeouts": {"connect_timeout": 5, "read_timeout": 10}}
    a.update(kw)
    return a


def local(root):
    storemod.reboot()
    return storeread.messages(Store(str(root)), "alice")


def expire_then_seed(dc, prov):
    """A `between` for schedule(): the last token issued expires, and one more message arrives."""

    def between(i):
        prov.expire(prov.issued()[-1])
        dc.seed("alice", [NEW], clear=False)

    return between

def schedule(runtime, acct, root, offsets, between=lambda i: None):
    spec = {"account": acct, "root": str(root), "offsets": offsets}
    if runtime == "micropython":
        res = oauthdriver.run_micropython(spec, between)
        assert all(r["implementation"] == "micropython" for r in res)
        return res
    return oauthdriver.run_inprocess(spec, between)


RUNTIMES = ["micropython", "cpython"]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("mech,token_len", [("xoauth2", 40), ("oauthbearer", 40), ("xoauth2", 1500),
                                            ("oauthbearer", 1500)])
def test_fetch_with_token(env, tmp_path, runtime, mech, token_len):
    dc, prov = env
    dc.seed("alice", MESSAGES)
    prov.token_len = token_len  # 1500: the AUTH line would pass 255 octets: response after "+ "
    try:
        rt = prov.add_refresh_token("alice")
        n0 = len(prov.log)
        res = schedule(runtime, account(dc, prov, tmp_path, rt, auth=mech), tmp_path / "store", [0])
    finally:
        prov.token_len = 40
    assert "ok" in res[0], res[0]
    assert res[0]["ok"]["fetched"] == 2
    assert local(tmp_path / "store") == MESSAGES
    log = prov.log[n0:]
    posts = [e for e in log if e["path"] == "/token"]
    assert len(posts) == 1 and posts[0]["form"]["grant_type"] == "refresh_token"
    assert posts[0]["form"]["refresh_token"] == rt
    assert posts[0]["content_type"] == "application/x-www-form-urlencoded"
    tok = posts[0]["access_token"]
    assert len(tok) == 5 + token_len
    assert [e["token"] for e in log if e["path"] == "/tokeninfo"] == [tok]  # Dovecot checked exactly it


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_token_expires_between_fetches(env, tmp_path, runtime):
    """Two fetches of one schedule; the first token expires between them (provider side, and by
    the board clock): the second fetch refreshes BEFORE connecting and never presents the old one."""
    dc, prov = env
    dc.seed("alice", MESSAGES)
    rt = prov.add_refresh_token("alice")
    n0 = len(prov.log)

    between = expire_then_seed(dc, prov)
    res = schedule(runtime, account(dc, prov, tmp_path, rt), tmp_path / "store", [0, prov.expires_in], between)
    assert [r.get("ok", {}).get("fetched") for r in res] == [2, 1], res
    assert local(tmp_path / "store") == MESSAGES + [NEW]
    issued = [e["access_token"] for e in prov.log[n0:] if "access_token" in e]
    checked = [e["token"] for e in prov.log[n0:] if e["path"] == "/tokeninfo"]
    assert len(issued) == 2
    assert checked == issued  # the expired token was not offered to the server again


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cached_token_refused_early_refreshes_once(env, tmp_path, runtime):
    """The cache still trusts the token (clock unchanged) but the server refuses it: the client
    drops it, refreshes, and authenticates again in the same session."""
    dc, prov = env
    dc.seed("alice", MESSAGES)
    rt = prov.add_refresh_token("alice")
    n0 = len(prov.log)

    between = expire_then_seed(dc, prov)
    res = schedule(runtime, account(dc, prov, tmp_path, rt, auth="oauthbearer"), tmp_path / "store", [0, 60],
                   between)
    assert [r.get("ok", {}).get("fetched") for r in res] == [2, 1], res
    issued = [e["access_token"] for e in prov.log[n0:] if "access_token" in e]
    checked = [e["token"] for e in prov.log[n0:] if e["path"] == "/tokeninfo"]
    assert len(issued) == 2
    assert checked == [issued[0], issued[0], issued[1]]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_revoked_refresh_token(env, tmp_path, runtime):
    """Policy delete, refresh token revoked: a clear error naming the account; the server keeps
    every message, the local store and the UIDL state stay empty. Then mid-schedule: the first
    fetch works, the token expires and the refresh token is revoked: the second fails the same
    way and stores nothing new."""
    dc, prov = env
    dc.seed("alice", MESSAGES)
    rt = prov.add_refresh_token("alice")
    prov.revoke(rt)
    res = schedule(runtime, account(dc, prov, tmp_path, rt, policy="delete"), tmp_path / "store", [0])
    r = res[0]
    assert r["exc"] == "AuthFailed", r
    assert "account mail-oauth" in r["msg"] and "invalid_grant" in r["msg"] and "refresh_token" in r["msg"]
    assert dc.messages("alice") == MESSAGES
    assert local(tmp_path / "store") == []
    assert not os.path.exists(tmp_path / "state") or not any(os.scandir(tmp_path / "state"))

    rt2 = prov.add_refresh_token("alice")
    root2 = tmp_path / "store2"

    def between(i):
        prov.expire(prov.issued()[-1])
        prov.revoke(rt2)
        dc.seed("alice", [NEW], clear=False)

    res = schedule(runtime, account(dc, prov, tmp_path, rt2, name="second", state_dir=str(tmp_path / "st2")), root2,
                   [0, prov.expires_in], between)
    assert res[0].get("ok", {}).get("fetched") == 2, res
    assert res[1]["exc"] == "AuthFailed" and "account second" in res[1]["msg"] and "revoked" in res[1]["msg"]
    assert local(root2) == MESSAGES
    assert dc.messages("alice") == MESSAGES + [NEW]


# --- http_post's own failures, both runtimes -----------------------------------------------------
HTTP_SCRIPT = """
import sys
from pocketpost import oauth2
url, ca, deadline = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    print("STATUS", oauth2.http_post(url, b"grant_type=x", {"ca": ca}, deadline)[0])
except oauth2.OAuthError as e:
    print("ERROR", e.msg)
"""


def _http_post(runtime, url, ca, deadline=5):
    if runtime == "micropython":
        r = run_micropython(["-c", HTTP_SCRIPT, url, ca, str(deadline)], timeout=60)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    else:
        try:
            out = "STATUS %d" % oauth2.http_post(url, b"grant_type=x", {"ca": ca}, deadline)[0]
        except oauth2.OAuthError as e:
            out = "ERROR " + e.msg
    return out.strip()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_http_post_failures(env, runtime):
    dc, prov = env
    assert _http_post(runtime, prov.url("/token"), dc.path("ca.der")) == "STATUS 401"  # no client_id: a real answer
    # a certificate from another CA: refused, in words
    out = _http_post(runtime, "https://localhost:%d/token" % prov.port, dc.path("otherca.der"))
    assert out.startswith("ERROR") and "unknown CA" in out and '"token_ca"' in out, out
    # nothing listens
    port = free_port()
    out = _http_post(runtime, "https://127.0.0.1:%d/token" % port, dc.path("ca.der"))
    assert out.startswith("ERROR") and str(port) in out and "refused" in out and '"token_url"' in out, out
    # an endpoint that accepts and never answers: the deadline ends it
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    held = []
    stop = threading.Event()

    def hold():
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    try:
        out = _http_post(runtime, "https://127.0.0.1:%d/token" % silent.getsockname()[1], dc.path("ca.der"), 2)
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        silent.close()
    assert out == "ERROR no answer within 2s", out


def test_fetch_cli_with_secrets_file(env, tmp_path):
    """The board's path: config.json without secrets, secrets.json with the refresh token and the
    client secret (config.load merges them), `micropython -m pocketpost.fetch`."""
    import json
    import subprocess

    from helpers import FIRMWARE, MICROPYTHON

    dc, prov = env
    dc.seed("alice", MESSAGES)
    rt = prov.add_refresh_token("alice")
    a = account(dc, prov, tmp_path, rt, auth="oauthbearer")
    secrets = {"accounts": {a["name"]: {"refresh_token": a.pop("refresh_token"),
                                        "client_secret": a.pop("client_secret")}}}
    (tmp_path / "config.json").write_text(json.dumps({"store": {"root": str(tmp_path / "store")}, "accounts": [a]}))
    (tmp_path / "secrets.json").write_text(json.dumps(secrets))
    envv = dict(os.environ)
    envv["MICROPYPATH"] = FIRMWARE + ":.frozen"
    r = subprocess.run([MICROPYTHON, "-m", "pocketpost.fetch", str(tmp_path / "config.json")], capture_output=True,
                       timeout=60, cwd=str(tmp_path), env=envv)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, out
    assert "2 fetched" in out, out
    assert local(tmp_path / "store") == MESSAGES
    assert rt not in out and prov.issued()[-1] not in out  # no secret in the output


class _Recorder:
    """A loopback TCP relay to Dovecot's plain port that records what the client sends."""

    def __init__(self, port):
        self.sent = b""
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.target = port
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _pump(self, a, b, record):
        try:
            while not self.stop.is_set():
                try:
                    data = a.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                if record:
                    self.sent += data
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _accept(self):
        while not self.stop.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                continue
            u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            for s in (c, u):
                s.settimeout(0.2)
            for a, b, rec in ((c, u, True), (u, c, False)):
                t = threading.Thread(target=self._pump, args=(a, b, rec), daemon=True)
                t.start()
                self.threads.append(t)

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(5)
        self.lsock.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("token_len", [40, 1500])
def test_auth_line_within_255_octets(env, tmp_path, runtime, token_len):
    """RFC 5034 section 4: the AUTH command line stays within 255 octets; a longer initial
    response goes on its own line after the server's "+ ". Checked on the wire (plain port)."""
    dc, prov = env
    dc.seed("alice", MESSAGES[:1])
    rec = _Recorder(dc.port)
    prov.token_len = token_len
    try:
        rt = prov.add_refresh_token("alice")
        a = account(dc, prov, tmp_path, rt, tls="none", allow_plaintext=True, port=rec.port, host="127.0.0.1")
        res = schedule(runtime, a, tmp_path / "store", [0])
    finally:
        prov.token_len = 40
        rec.close()
    assert res[0].get("ok", {}).get("fetched") == 1, res
    lines = rec.sent.split(b"\r\n")
    auth = [i for i, ln in enumerate(lines) if ln.startswith(b"AUTH ")]
    assert len(auth) == 1
    ln = lines[auth[0]]
    assert len(ln) + 2 <= 255, ln[:80]
    if token_len > 100:
        assert ln == b"AUTH XOAUTH2"
        assert len(lines[auth[0] + 1]) > 255  # the response, on its own line
    else:
        assert ln.startswith(b"AUTH XOAUTH2 ")
