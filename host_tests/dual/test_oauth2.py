"""oauth2.py without sockets: the XOAUTH2 / OAUTHBEARER initial responses (RFC 7628 and Google's
published example), the error challenge, the token cache and its clock rules, the refresh request
and the token endpoint's answers, URL and HTTP parsing, and the account keys. Runs under CPython
and MicroPython (the one I/O function, http_post, is tested against a real HTTPS endpoint in
host_tests/test_client_oauth.py)."""

import binascii
import json

from flashdev import in_fresh_root
from pocketpost import oauth2
from pocketpost.oauth2 import OAuthError

NOW = 1800000000  # a set board clock (2027)


def raises(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OAuthError as e:
        return e
    raise AssertionError("no OAuthError")


def test_xoauth2_google_example():
    # developers.google.com "OAuth 2.0 Mechanism" (XOAUTH2) example, its base64 given there
    ir = oauth2.xoauth2_response("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert ir == (b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
                  b"YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==")
    assert oauth2.initial_response("xoauth2", "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg") == ir


def test_oauthbearer_rfc7628_example():
    # RFC 7628 section 4.1 (the base64 line of the example)
    ir = oauth2.oauthbearer_response("user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
                                     "server.example.com", 143)
    assert ir == (b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRm"
                  b"dDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB")
    raw = binascii.a2b_base64(oauth2.oauthbearer_response("a,b=c", "tok"))
    assert raw == b"n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01"  # RFC 5801 saslname escaping, no host/port


def test_bad_tokens_refused():
    for tok in ("", "a b", "a\x01b", "x\r\n", "t" * (oauth2.MAX_TOKEN + 1), None):
        raises(oauth2.xoauth2_response, "u", tok)
        raises(oauth2.oauthbearer_response, "u", tok)
    raises(oauth2.initial_response, "plain", "u", "t")


def test_error_challenge():
    # RFC 7628 section 4.3
    info = oauth2.challenge_error(
        b"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4"
        b"YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=")
    assert info["status"] == "invalid_token" and info["scope"] == "example_scope"
    assert "invalid_token" in oauth2.describe_challenge(info) and "example_scope" in oauth2.describe_challenge(info)
    # Dovecot's XOAUTH2 challenge (numeric status in a string) and Google's (number)
    assert oauth2.challenge_error(binascii.b2a_base64(b'{"status":"401","schemes":"bearer","scope":"mail"}'))["status"] == "401"
    assert oauth2.challenge_error(binascii.b2a_base64(b'{"status":400}'))["status"] == "400"
    # whatever else a server sends is reported, never raised
    for bad in (b"", b"!!!", b"bm90IGpzb24=", binascii.b2a_base64(b"[1,2]"), binascii.b2a_base64(b'{"status":true}'),
                b"A" * (oauth2.MAX_CHALLENGE + 4), bytearray(b"\xff\x00")):
        info = oauth2.challenge_error(bad)
        assert info["status"] == ""
        assert oauth2.describe_challenge(info).startswith("unreadable")
    assert oauth2.error_ack("oauthbearer") == b"AQ==" and binascii.a2b_base64(b"AQ==") == b"\x01"
    assert oauth2.error_ack("xoauth2") == b""


def test_token_fresh_rules():
    t = oauth2.Token("a", NOW + 3600)
    assert t.fresh(NOW)
    assert t.fresh(NOW + 3600 - oauth2.REFRESH_MARGIN - 1)
    assert not t.fresh(NOW + 3600 - oauth2.REFRESH_MARGIN)  # within the margin: refresh
    assert not t.fresh(NOW + 4000)
    assert not t.fresh(100)  # the board clock is unset now
    assert not oauth2.Token("a", None).fresh(NOW)  # expiry unknown


class FakeEndpoint:
    """post(url, body, account) -> (status, body), recording each form it got."""

    def __init__(self, expires_in=3600, rotate=False):
        self.forms = []
        self.n = 0
        self.expires_in = expires_in
        self.rotate = rotate
        self.revoked = set()

    def __call__(self, url, body, account):
        form = {}
        for kv in body.decode().split("&"):
            k, v = kv.split("=", 1)
            form[k] = v
        self.forms.append(form)
        if form["refresh_token"] in self.revoked:
            return 400, b'{"error":"invalid_grant","error_description":"Token has been expired or revoked."}'
        self.n += 1
        doc = {"access_token": "at-%d" % self.n, "token_type": "Bearer"}
        if self.expires_in is not None:
            doc["expires_in"] = self.expires_in
        if self.rotate:
            doc["refresh_token"] = "rt-%d" % self.n
        return 200, json.dumps(doc).encode()


def _account(name, **kw):
    a = {"name": name, "token_url": "https://oauth.example/token", "client_id": "cid", "refresh_token": "rt-0",
         "client_secret": "cs"}
    a.update(kw)
    return a


def test_cache_refresh_and_expiry():
    ep = FakeEndpoint()
    a = _account("cache1")
    assert oauth2.access_token(a, NOW, ep) == ("at-1", True)
    assert ep.forms[0] == {"grant_type": "refresh_token", "refresh_token": "rt-0", "client_id": "cid",
                           "client_secret": "cs"}
    assert oauth2.access_token(a, NOW + 60, ep) == ("at-1", False)  # cached: no request
    assert len(ep.forms) == 1
    assert oauth2.cached("cache1").expires == NOW + 3600
    assert oauth2.access_token(a, NOW + 3600 - oauth2.REFRESH_MARGIN, ep) == ("at-2", True)  # near expiry
    oauth2.forget("cache1")
    assert oauth2.access_token(a, NOW + 3600, ep) == ("at-3", True)  # forgotten (the server refused it)
    assert len(ep.forms) == 3
    # no client_secret: none sent
    ep2 = FakeEndpoint()
    oauth2.access_token(_account("cache1b", client_secret=None), NOW, ep2)
    assert "client_secret" not in ep2.forms[0]


def test_unknown_clock_or_expiry_refreshes_every_time():
    ep = FakeEndpoint()
    a = _account("clock1")
    assert oauth2.access_token(a, 1000, ep) == ("at-1", True)  # board clock unset (1970)
    assert oauth2.cached("clock1").expires is None
    assert oauth2.access_token(a, NOW, ep) == ("at-2", True)  # clock set since: the old expiry is unknown
    ep2 = FakeEndpoint(expires_in=None)
    a2 = _account("clock2")
    assert oauth2.access_token(a2, NOW, ep2) == ("at-1", True)
    assert oauth2.access_token(a2, NOW + 1, ep2) == ("at-2", True)  # no expires_in: never trusted


def test_revoked_refresh_token_names_account():
    ep = FakeEndpoint()
    ep.revoked.add("rt-0")
    e = raises(oauth2.access_token, _account("revoked1"), NOW, ep)
    assert e.code == "invalid_grant"
    assert "account revoked1" in e.msg and "invalid_grant" in e.msg and "revoked" in e.msg
    assert "secrets file" in e.msg  # says what to do
    assert oauth2.cached("revoked1") is None


def test_rotated_refresh_token_used_next():
    ep = FakeEndpoint(rotate=True)
    a = _account("rot1")
    oauth2.access_token(a, NOW, ep)
    oauth2.forget("rot1")
    oauth2.access_token(a, NOW, ep)
    assert [f["refresh_token"] for f in ep.forms] == ["rt-0", "rt-1"]
    # the user put a new refresh token in the secrets file: that one wins over the rotated one
    oauth2.forget("rot1")
    oauth2.access_token(_account("rot1", refresh_token="rt-new"), NOW, ep)
    assert ep.forms[-1]["refresh_token"] == "rt-new"


def test_transport_error_names_account():
    def post(url, body, account):
        raise OAuthError("no answer within 20s")

    e = raises(oauth2.access_token, _account("net1", token_url="https://oauth.example:8443/t"), NOW, post)
    assert "account net1" in e.msg and "https://oauth.example:8443" in e.msg and "no answer" in e.msg


def test_form_encode():
    assert oauth2.form_encode([("a", "b c"), ("r", "1//x+y=z&/é~._-")]) == b"a=b%20c&r=1%2F%2Fx%2By%3Dz%26%2F%C3%A9~._-"


def test_parse_url():
    assert oauth2.parse_url("https://oauth2.googleapis.com/token") == ("https", "oauth2.googleapis.com", 443, "/token")
    assert oauth2.parse_url("https://127.0.0.1:8443/a/b?x=1") == ("https", "127.0.0.1", 8443, "/a/b?x=1")
    assert oauth2.parse_url("HTTPS://h") == ("https", "h", 443, "/")
    assert oauth2.parse_url("https://[::1]:9/t") == ("https", "::1", 9, "/t")
    for bad in ("oauth.example/token", "ftp://h/x", "https://:8/x", "https://h:0/x", "https://h:99999/",
                "https://h:x/", "https://u@h/", 5):
        raises(oauth2.parse_url, bad)


def test_build_post():
    req = oauth2.build_post("oauth.example", 443, "/token", b"a=b")
    head, body = req.split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /token HTTP/1.0"
    assert b"Host: oauth.example" in lines
    assert b"Content-Type: application/x-www-form-urlencoded" in lines
    assert b"Content-Length: 3" in lines and body == b"a=b"
    assert b"Host: 127.0.0.1:8443" in oauth2.build_post("127.0.0.1", 8443, "/t", b"").split(b"\r\n")


def test_parse_http_response():
    ok = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}'
    assert oauth2.parse_http_response(ok) == (200, b'{"a":1}')
    assert oauth2.parse_http_response(b"HTTP/1.0 400 Bad\r\n\r\n{}") == (400, b"{}")  # to EOF
    ch = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n"
    assert oauth2.parse_http_response(ch) == (200, b'{"a":1}')
    for bad in (b"", b"HTTP/1.1 200 OK\r\n", b"SMTP 200 OK\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nab"):
        raises(oauth2.parse_http_response, bad)


def test_parse_token_response():
    assert oauth2.parse_token_response(200, b'{"access_token":"t","expires_in":3599,"token_type":"Bearer"}') == ("t", 3599, None)
    assert oauth2.parse_token_response(200, b'{"access_token":"t","expires_in":"60","refresh_token":"r2"}') == ("t", 60, "r2")
    assert oauth2.parse_token_response(200, b'{"access_token":"t","expires_in":-5}') == ("t", None, None)
    e = raises(oauth2.parse_token_response, 401, b'{"error":"invalid_client"}')
    assert e.code == "invalid_client" and "401" in e.msg
    e = raises(oauth2.parse_token_response, 200, b'{"error":"invalid_grant","error_description":"Bad Request"}')
    assert e.code == "invalid_grant" and "Bad Request" in e.msg
    for st, body in ((200, b"<html>"), (502, b"Bad gateway"), (200, b"[]"), (200, b'{"expires_in":1}'),
                     (200, b'{"access_token":"t","token_type":"mac"}'), (200, b'{"access_token":"a b"}')):
        e = raises(oauth2.parse_token_response, st, body)
        assert e.code is None


def test_check_account():
    def chk(**kw):
        d = {"token_url": "https://oauth.example/token", "client_id": "cid", "refresh_token": "rt", "ca": "pop.der"}
        d.update(kw)
        a = {"name": "acc", "auth": "xoauth2"}
        oauth2.check_account(d, a)
        return a

    a = chk()
    assert a["token_url"] == "https://oauth.example/token" and a["refresh_token"] == "rt"
    assert a["client_secret"] is None and a["token_ca"] is None and a["token_verify"] is True
    assert chk(client_secret="cs", token_ca="g.der", token_verify=False)["token_ca"] == "g.der"
    e = raises(chk, refresh_token=None)
    assert "refresh_token" in e.msg and "secrets file" in e.msg and "account acc" in e.msg
    for kw in ({"token_url": ""}, {"client_id": 5}, {"token_url": "http://oauth.example/t"},
               {"token_url": "oauth.example"}, {"client_secret": ""}, {"token_verify": "yes"}, {"password": "x"}):
        raises(chk, **kw)
    assert chk(token_url="http://127.0.0.1:8/t", allow_plaintext=True)["token_url"].startswith("http:")


def test_rotated_refresh_token_kept_on_flash():
    def body(root):
        sd = root + "/state"
        ep = FakeEndpoint(rotate=True)
        a = _account("rotf", state_dir=sd)
        oauth2.access_token(a, NOW, ep)  # rt-0 -> gives rt-1, saved
        # a reboot: RAM forgotten, the state file remembers rt-1 for the secrets file's rt-0
        oauth2._cache.clear()
        oauth2._rotated.clear()
        assert oauth2.current_refresh_token(a) == "rt-1"
        oauth2.access_token(a, NOW, ep)
        assert [f["refresh_token"] for f in ep.forms] == ["rt-0", "rt-1"]
        oauth2._cache.clear()
        oauth2._rotated.clear()
        assert oauth2.current_refresh_token(a) == "rt-2"
        # the user authorised again and put a new token in the secrets file: it wins after a reboot too
        oauth2._rotated.clear()
        assert oauth2.current_refresh_token(_account("rotf", state_dir=sd, refresh_token="rt-user")) == "rt-user"
        # a torn / foreign state file: the secrets file's token
        f = open(sd + "/rotf.oauth", "w")
        f.write('{"from": ')
        f.close()
        oauth2._rotated.clear()
        assert oauth2.current_refresh_token(a) == "rt-0"
        # no state_dir writable: still used from RAM, the refresh itself succeeds
        f = open(root + "/afile", "w")
        f.close()
        oauth2._rotated.clear()
        b = _account("rotg", state_dir=root + "/afile/sub")
        assert oauth2.access_token(b, NOW, FakeEndpoint(rotate=True))[1] is True
        assert oauth2.current_refresh_token(b) == "rt-1"
        oauth2._cache.clear()
        oauth2._rotated.clear()

    in_fresh_root(body)


def test_secrets_file_and_account_check():
    import json as _json

    from pocketpost import client, compat, config

    def body(root):
        compat.makedirs(root)
        acct = {"name": "gm", "host": "pop.gmail.com", "user": "me@gmail.com", "auth": "xoauth2", "ca": "gts.der",
                "token_url": "https://oauth2.googleapis.com/token", "client_id": "cid"}
        f = open(root + "/config.json", "w")
        f.write(_json.dumps({"accounts": [acct]}))
        f.close()
        f = open(root + "/secrets.json", "w")
        f.write(_json.dumps({"accounts": {"gm": {"refresh_token": "1//rt", "client_secret": "cs"}}}))
        f.close()
        a = client.account_from_dict(config.load(root + "/config.json")["accounts"][0])
        assert a["refresh_token"] == "1//rt" and a["client_secret"] == "cs" and a["auth"] == "xoauth2"
        assert "password" not in a and a["token_url"] == "https://oauth2.googleapis.com/token"
        # a refresh token in config.json is a secret in the wrong file only when both hold it
        bad = dict(acct)
        bad["refresh_token"] = "x"
        f = open(root + "/config.json", "w")
        f.write(_json.dumps({"accounts": [bad]}))
        f.close()
        try:
            config.load(root + "/config.json")
        except config.ConfigError as e:
            assert "refresh_token" in str(e)
        else:
            raise AssertionError("a refresh token in both files was accepted")
        # the client names what is missing
        del acct["client_id"]
        acct["refresh_token"] = "rt"
        try:
            client.account_from_dict(acct)
        except client.ConfigError as e:
            assert "client_id" in e.msg and "account gm" in e.msg
        else:
            raise AssertionError("no client_id accepted")

    in_fresh_root(body)


def test_token_ca_checked():
    import sys

    def chk(**kw):
        d = {"token_url": "https://oauth.example/token", "client_id": "cid", "refresh_token": "rt"}
        d.update(kw)
        a = {"name": "o", "auth": "xoauth2"}
        oauth2.check_account(d, a)
        return a

    chk(token_ca="t.der")
    chk(ca="pop.der")  # the POP3 server's CA serves the token endpoint too
    chk(token_verify=False)
    if sys.implementation.name == "micropython":
        e = raises(chk)  # no system CA store on the board
        assert "token_ca" in e.msg and "DER" in e.msg
    else:
        chk()  # CPython: the system store

    def pem(root):
        from pocketpost import compat

        compat.makedirs(root)
        p = root + "/tok.pem"
        f = open(p, "w")
        f.write("-----BEGIN CERTIFICATE-----\n")
        f.close()
        e = raises(chk, token_ca=p)
        assert "PEM" in e.msg and "openssl x509" in e.msg

    in_fresh_root(pem)


def test_a_locked_mailbox_is_not_a_refused_token():
    """AUTH XOAUTH2 answered -ERR [IN-USE] (the token was taken, the mailbox is locked by another
    session) or [SYS/TEMP]: the error says so and what to do, the cached token is kept, and no
    refresh is tried (it was no token's fault; a refresh would only hide the reason)."""
    import asyncio

    from pocketpost import client
    from pop3pair import Pop3Pair, Scripted

    ep = FakeEndpoint()
    for code, words in ((b"IN-USE", "in use by another session"), (b"SYS/TEMP", "try again later")):
        a = _account("locked1", auth="xoauth2", user="me@example.org", tls="none")
        tok, fresh = oauth2.access_token(a, NOW, ep)
        srv = Scripted([], {"AUTH": b"-ERR [" + code + b"] Mailbox is locked\r\n"})
        c = client.Pop3Client("script", 110, account="locked1", opener=None)
        pair = Pop3Pair(srv)
        c._conn = pair.conn()
        refreshes = len(ep.forms)

        async def run():
            await c._status(c.deadline(5), "the greeting")
            await oauth2.pop3_login(c, a, tok, False, client.AuthFailed)

        try:
            asyncio.run(run())
        except client.AuthFailed as e:
            msg = e.msg
        else:
            raise AssertionError("no AuthFailed")
        assert "account locked1" in msg and "script:110" in msg and words in msg, msg
        assert "[%s]" % code.decode() in msg and "token refused" not in msg, msg
        assert oauth2.cached("locked1") is not None and len(ep.forms) == refreshes  # kept, no refresh
        oauth2.forget("locked1")
