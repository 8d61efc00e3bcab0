"""OAuth 2.0 for the fetcher: XOAUTH2 and OAUTHBEARER (RFC 7628) SASL, and the access token
refreshed over HTTPS from a refresh token kept in the secrets file.

Theory of operation
-------------------
An OAuth account (`"auth": "xoauth2"` or `"oauthbearer"`) has no password. Its config.json entry
names the provider's token endpoint (`token_url`) and the app's `client_id`; its secrets.json entry
holds the `refresh_token` (and a `client_secret` when the provider issued one; see config.py
merge_secrets). Before each POP3 session the client asks `access_token(account)`:

  1. the cache (one entry per account name, in RAM) holds an access token and its expiry in board
     clock seconds (compat.now()); it is used while it has more than REFRESH_MARGIN seconds left;
  2. otherwise (none yet, nearly expired, the clock was unset when it was obtained or is unset now,
     or the server refused it) it is refreshed: one HTTPS POST of
     `grant_type=refresh_token&refresh_token=...&client_id=...` to the token endpoint, whose JSON
     answer carries `access_token` and `expires_in` (and, with some providers, a new
     `refresh_token`, used from then on in this process; see docs/PROVIDERS.md);
  3. a refused refresh (`invalid_grant`: revoked or expired refresh token) raises OAuthError whose
     message names the account and says what to do.

The SASL exchange (RFC 7628 section 3.2): the client sends the initial response with AUTH; on
success the server says +OK. On failure the server sends a "+ " challenge holding a base64 JSON
status ({"status": "401", "schemes": "bearer", "scope": ...}); the client must answer it with a
dummy response (OAUTHBEARER: the single byte 0x01, "AQ=="; XOAUTH2: an empty line), and the
server then says -ERR. `challenge_error` decodes that status for the error message.

Everything here but `http_post` is sans-I/O and runs the same on CPython and MicroPython.
`http_post` is the one blocking I/O function (socket + ssl with the tls.py client context,
certificate verified, a deadline over the whole exchange, a bounded response). It blocks the
event loop while it runs: at most REFRESH_DEADLINE seconds, about once an hour per account.
"""

import binascii
import json

from pocketpost import compat
from pocketpost.compat import const

# Refresh this long before the token's stated expiry: covers the clock drift between board and
# provider and a session that starts just before the expiry (a POP3 login takes seconds).
REFRESH_MARGIN = const(120)
# A board clock earlier than this is unset (no NTP yet): expiry cannot be judged, so refresh.
_SANE_TIME = const(1577836800)  # 2020-01-01
# Whole token request (connect, TLS handshake, request, response) must finish within this. It
# blocks the event loop: with the watchdog fed every 7.5 s of its 30 s (board.py), 15 s stays clear
# of a reset. The DNS lookup before it is not bounded by it (the port's getaddrinfo has no timeout).
REFRESH_DEADLINE = const(15)
# A token endpoint's answer is a few hundred octets of JSON (Microsoft's with its refresh token
# ~3 KB); more than this is not a token response, and the board's heap must not pay for it.
_MAX_RESPONSE = const(16384)
# An access token longer than this is refused (Microsoft's are ~2 KB, Google's ~200 octets): it
# goes on one POP3 line, and the client's heap holds it for the session.
MAX_TOKEN = const(8192)
# Each socket read: small enough for the heap, large enough for a response in a few reads.
_READ_SIZE = const(1024)
# getaddrinfo's answers tried in turn, at most this many, within the one deadline (as
# clientauth._open does for the POP3 connect).
_ADDRS = const(4)
# The server's error challenge: a short JSON object (RFC 7628 section 3.2.2).
MAX_CHALLENGE = const(1024)

_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


class OAuthError(Exception):
    """The access token could not be had. `code` is the provider's OAuth error
    ("invalid_grant", ...) or None for a transport / format failure."""

    def __init__(self, msg, code=None):
        super().__init__(msg)
        self.msg = msg
        self.code = code


# --- SASL --------------------------------------------------------------------------------------
def _b64(data):
    return binascii.b2a_base64(data).rstrip(b"\n")


def _check_token(token):
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        raise OAuthError("access token missing or longer than %d octets" % MAX_TOKEN)
    for c in token:  # RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-._~+/" ) *"="
        if c in " \x01\r\n":
            raise OAuthError("access token holds a space or control character")


def xoauth2_response(user, token):
    """The XOAUTH2 initial client response, base64:
    "user=" user ^A "auth=Bearer " token ^A ^A (Google's and Microsoft's description)."""
    _check_token(token)
    return _b64(b"user=" + user.encode() + b"\x01auth=Bearer " + token.encode() + b"\x01\x01")


def _saslname(user):
    # RFC 5801 section 4 (gs2-header authzid): "," -> "=2C", "=" -> "=3D".
    return user.replace("=", "=3D").replace(",", "=2C")


def oauthbearer_response(user, token, host=None, port=None):
    """The OAUTHBEARER initial client response (RFC 7628 section 3.1), base64:
    gs2-header "n,a=user," ^A ["host=" host ^A] ["port=" port ^A] "auth=Bearer " token ^A ^A."""
    _check_token(token)
    out = b"n,a=" + _saslname(user).encode() + b",\x01"
    if host:
        out += b"host=" + host.encode() + b"\x01"
    if port:
        out += b"port=" + str(port).encode() + b"\x01"
    return _b64(out + b"auth=Bearer " + token.encode() + b"\x01\x01")


def initial_response(mech, user, token, host=None, port=None):
    if mech == "xoauth2":
        return xoauth2_response(user, token)
    if mech == "oauthbearer":
        return oauthbearer_response(user, token, host, port)
    raise OAuthError("unknown OAuth mechanism %r" % (mech,))


def error_ack(mech):
    """The dummy response to the server's error challenge (RFC 7628 section 3.2.3: %x01 for
    OAUTHBEARER; XOAUTH2 takes an empty response), without the line end."""
    return b"AQ==" if mech == "oauthbearer" else b""


def challenge_error(text):
    """The server's error challenge (base64 JSON, RFC 7628 section 3.2.2) -> a dict with at
    least "status" (a str, "" when the challenge is not the expected JSON). Never raises on
    peer bytes: a bad challenge is reported, not trusted."""
    text = bytes(text).strip()
    if len(text) > MAX_CHALLENGE:
        return {"status": "", "raw": "(challenge of %d octets)" % len(text)}
    try:
        doc = json.loads(binascii.a2b_base64(text))
    except (ValueError, TypeError):  # binascii.Error is a ValueError on both runtimes
        return {"status": "", "raw": _printable(text)}
    if not isinstance(doc, dict):
        return {"status": "", "raw": _printable(text)}
    out = {}
    for k in doc:
        v = doc[k]
        if isinstance(v, (str, int)) and not isinstance(v, bool):
            out[k] = str(v)
    out.setdefault("status", "")
    return out


def describe_challenge(info):
    """A short text for an error challenge dict: 'status 401 (scope ...)'."""
    if not info.get("status"):
        return "unreadable error challenge %s" % info.get("raw", "")
    s = "status " + info["status"]
    if info.get("scope"):
        s += " (scope " + info["scope"] + ")"
    return s


def _printable(b):
    b = bytes(b)[:80]
    out = ""
    for c in b:
        out += chr(c) if 32 <= c < 127 else "?"
    return out


# --- the token cache ---------------------------------------------------------------------------
class Token:
    """An access token and its expiry in board clock seconds (None: unknown, so refresh)."""

    def __init__(self, access, expires):
        self.access = access
        self.expires = expires

    def fresh(self, now):
        """Usable for a session starting at `now`? Unknown clock or expiry -> no."""
        if self.expires is None or now < _SANE_TIME:
            return False
        return now + REFRESH_MARGIN < self.expires


_cache = {}  # account name -> Token
# account name -> (fingerprint of the secrets file's refresh token, the newer one the provider gave)
_rotated = {}


def forget(name):
    """Drop an account's cached access token (the server refused it): next use refreshes."""
    _cache.pop(name, None)


def cached(name):
    return _cache.get(name)


def access_token(account, now=None, post=None):
    """The access token for an OAuth account (a checked account dict): the cached one while
    fresh, else a new one from the token endpoint. Returns (token, refreshed). `now` and
    `post(url, body, account) -> (status, body bytes)` are for tests; by default the board clock
    and `http_post`. Raises OAuthError naming the account."""
    name = account["name"]
    if now is None:
        now = compat.now()
    t = _cache.get(name)
    if t is not None and t.fresh(now):
        return t.access, False
    t = refresh(account, now, post)
    _cache[name] = t
    return t.access, True


def refresh(account, now, post=None):
    """One refresh_token grant (RFC 6749 section 6) -> Token."""
    name = account["name"]
    url = account["token_url"]
    rt = current_refresh_token(account)
    fields = [("grant_type", "refresh_token"), ("refresh_token", rt), ("client_id", account["client_id"])]
    if account.get("client_secret"):
        fields.append(("client_secret", account["client_secret"]))
    if post is None:
        post = http_post
    try:
        status, body = post(url, form_encode(fields), account)
    except OAuthError as e:
        raise OAuthError("account %s: token refresh at %s failed: %s" % (name, _origin(url), e.msg), e.code)
    try:
        tok, expires_in, new_rt = parse_token_response(status, body)
    except OAuthError as e:
        hint = ""
        if e.code == "invalid_grant":
            hint = ("; the refresh token was revoked or has expired: authorise pocketpost again and put the "
                    "new refresh_token in the secrets file (docs/PROVIDERS.md)")
        elif e.code in ("invalid_client", "unauthorized_client"):
            hint = "; check client_id (config.json) and client_secret (secrets file)"
        raise OAuthError("account %s: token refresh refused by %s: %s%s" % (name, _origin(url), e.msg, hint), e.code)
    if new_rt and new_rt != rt:
        _rotate(account, new_rt)
    expires = None
    if expires_in is not None and now >= _SANE_TIME:
        expires = now + expires_in
    return Token(tok, expires)


# --- rotated refresh tokens --------------------------------------------------------------------
# Some providers (Microsoft) answer a refresh with a new refresh token and let the old one lapse.
# The newest is kept in RAM and in "<state_dir>/<name>.oauth" (JSON {"from": fingerprint,
# "refresh_token": newest}, written tmp + rename), and used while the secrets file still holds the
# token it replaced ("from"): a new refresh token the user puts in the secrets file wins.
def _fingerprint(rt):
    import hashlib

    return binascii.hexlify(hashlib.sha256(rt.encode()).digest()).decode()


def _rot_path(account):
    sd = account.get("state_dir")
    return compat.join(sd, account["name"] + ".oauth") if sd else None


def current_refresh_token(account):
    """The refresh token to use: the secrets file's, or the newer one a refresh gave for it."""
    name = account["name"]
    rt = account["refresh_token"]
    rot = _rotated.get(name)
    if rot is None:
        rot = _load_rotated(account)
        if rot is not None:
            _rotated[name] = rot
    if rot is not None and rot[0] == _fingerprint(rt):
        return rot[1]
    return rt


def _load_rotated(account):
    path = _rot_path(account)
    if path is None:
        return None
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):  # none yet, or torn: the secrets file's token is the fallback
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("from"), str) or not isinstance(doc.get("refresh_token"), str):
        return None
    return doc["from"], doc["refresh_token"]


def _rotate(account, new_rt):
    from pocketpost import log

    rot = (_fingerprint(account["refresh_token"]), new_rt)
    _rotated[account["name"]] = rot
    path = _rot_path(account)
    if path is None:
        return
    try:
        compat.makedirs(account["state_dir"])
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps({"from": rot[0], "refresh_token": new_rt}))
            compat.sync_file(f)
        compat.rename(tmp, path)
    except OSError as e:  # flash full or read-only: this run still uses it from RAM
        log.warning("oauth %s: cannot save the new refresh token in %s: %r", account["name"], path, e)


def _origin(url):
    try:
        scheme, host, port, _ = parse_url(url)
    except OAuthError:
        return "the token endpoint"
    return "%s://%s:%d" % (scheme, host, port)


# --- HTTP, sans-I/O ----------------------------------------------------------------------------
def form_encode(fields):
    """application/x-www-form-urlencoded (WHATWG URL, as providers expect) from (name, value) pairs."""
    out = b""
    for k, v in fields:
        if out:
            out += b"&"
        out += _pct(k) + b"=" + _pct(v)
    return out


def _pct(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    out = bytearray()
    for c in b:
        if c in _UNRESERVED:
            out.append(c)
        else:
            out += b"%%%02X" % c
    return bytes(out)


def parse_url(url):
    """"https://host[:port]/path?query" -> (scheme, host, port, path-with-query)."""
    if not isinstance(url, str):
        raise OAuthError("token_url must be a string")
    i = url.find("://")
    if i < 0:
        raise OAuthError("token_url %s is not a URL" % url)
    scheme = url[:i].lower()
    if scheme not in ("https", "http"):
        raise OAuthError("token_url %s: scheme must be https" % url)
    rest = url[i + 3 :]
    j = rest.find("/")
    hostport, path = (rest, "/") if j < 0 else (rest[:j], rest[j:])
    port = 443 if scheme == "https" else 80
    if hostport.startswith("["):  # IPv6 literal
        k = hostport.find("]")
        host = hostport[1:k]
        tail = hostport[k + 1 :]
    else:
        host, _, tail = hostport.partition(":")
        tail = ":" + tail if tail else ""
    if tail:
        if not tail.startswith(":") or not tail[1:].isdigit() or not 0 < int(tail[1:]) < 65536:
            raise OAuthError("token_url %s: bad port" % url)
        port = int(tail[1:])
    if not host or "@" in host:
        raise OAuthError("token_url %s: bad host" % url)
    return scheme, host, port, path


def build_post(host, port, path, body, default_port=443):
    """An HTTP/1.0 POST (no chunked answer, the server closes when done) of a form body."""
    h = host if port == default_port else "%s:%d" % (host, port)
    if ":" in host and port == default_port:
        h = "[%s]" % host
    return (b"POST " + path.encode() + b" HTTP/1.0\r\nHost: " + h.encode() +
            b"\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\n"
            b"User-Agent: pocketpost\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\nConnection: close\r\n\r\n" + body)


def parse_http_response(data):
    """A whole HTTP/1.x response (bytes) -> (status int, body bytes). Chunked bodies are decoded;
    Content-Length, when given, must match. Raises OAuthError on anything malformed."""
    data = bytes(data)
    i = data.find(b"\r\n\r\n")
    if i < 0:
        raise OAuthError("malformed HTTP response (no end of headers)")
    head = data[:i].split(b"\r\n")
    body = data[i + 4 :]
    w = head[0].split(b" ")
    if len(w) < 2 or not w[0].startswith(b"HTTP/1.") or len(w[1]) != 3 or not w[1].isdigit():
        raise OAuthError("malformed HTTP status line %s" % _printable(head[0]))
    status = int(w[1])
    chunked = False
    length = None
    for ln in head[1:]:
        k, _, v = ln.partition(b":")
        k = k.strip().lower()
        v = v.strip()
        if k == b"transfer-encoding" and v.lower() == b"chunked":
            chunked = True
        elif k == b"content-length":
            if not v.isdigit():
                raise OAuthError("malformed Content-Length")
            length = int(v)
    if chunked:
        body = _dechunk(body)
    elif length is not None:
        if len(body) < length:
            raise OAuthError("HTTP response cut short (%d of %d octets)" % (len(body), length))
        body = body[:length]
    return status, body


def _dechunk(b):
    out = b""
    i = 0
    while True:
        j = b.find(b"\r\n", i)
        if j < 0:
            raise OAuthError("malformed chunked body")
        size = b[i:j].split(b";")[0].strip()
        try:
            n = int(size, 16)
        except ValueError:
            raise OAuthError("malformed chunk size")
        if n == 0:
            return out
        if j + 2 + n > len(b):
            raise OAuthError("chunked body cut short")
        out += b[j + 2 : j + 2 + n]
        i = j + 2 + n + 2


def parse_token_response(status, body):
    """The token endpoint's answer -> (access_token, expires_in or None, new refresh_token or None).
    An error answer (RFC 6749 section 5.2) raises OAuthError with the provider's error code."""
    try:
        doc = json.loads(body)
    except (ValueError, TypeError):
        doc = None
    if not isinstance(doc, dict):
        raise OAuthError("HTTP %d without a JSON object" % status)
    if status != 200 or "error" in doc:
        code = doc.get("error")
        code = code if isinstance(code, str) else None
        desc = doc.get("error_description")
        msg = "HTTP %d %s" % (status, code or "error")
        if isinstance(desc, str) and desc:
            msg += " (%s)" % desc[:200]
        raise OAuthError(msg, code)
    tok = doc.get("access_token")
    if not isinstance(tok, str) or not tok:
        raise OAuthError("answer has no access_token")
    _check_token(tok)
    tt = doc.get("token_type", "Bearer")
    if not isinstance(tt, str) or tt.lower() != "bearer":
        raise OAuthError("token_type %r is not Bearer" % (tt,))
    exp = doc.get("expires_in")
    if isinstance(exp, str) and exp.isdigit():  # some providers send it as a string
        exp = int(exp)
    if not isinstance(exp, int) or isinstance(exp, bool) or exp < 0:
        exp = None  # unknown: treated as expired at the next session (refresh every time)
    rt = doc.get("refresh_token")
    return tok, exp, rt if isinstance(rt, str) and rt else None


# --- HTTP, the I/O -----------------------------------------------------------------------------
def http_post(url, body, account, deadline=REFRESH_DEADLINE, max_response=_MAX_RESPONSE):
    """POST `body` (form-encoded) to `url` over TLS, certificate verified against the account's
    token_ca (DER; default its "ca"; CPython without one: the system store). Blocking, the whole
    exchange bounded by `deadline` seconds and the answer by `max_response` octets.
    Returns (status, body bytes); raises OAuthError."""
    import socket

    from pocketpost import tls

    scheme, host, port, path = parse_url(url)
    if scheme != "https":
        if not account.get("allow_plaintext"):
            raise OAuthError("token_url %s is not https (tokens would cross the network in clear)" % url)
    end = compat.ticks_add(compat.ticks_ms(), int(deadline * 1000))

    def left():
        ms = compat.ticks_diff(end, compat.ticks_ms())
        if ms <= 0:
            raise OAuthError("no answer within %ss" % deadline)
        return ms / 1000

    ca = account.get("token_ca") or account.get("ca")
    s = None
    try:
        try:
            err = OSError("no address")
            for ai in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[:_ADDRS]:
                try:  # each address in turn (::1 first, a server on IPv4 only), in the one deadline
                    s = t = socket.socket(ai[0], socket.SOCK_STREAM)
                    s.settimeout(left())
                    s.connect(ai[-1])
                    break
                except OSError as e:
                    if compat.errno_of(e) in compat.TIMEOUT_ERRNOS or type(e).__name__ in ("timeout", "TimeoutError"):
                        raise  # the deadline (below)
                    err = e
                    if s is not None:
                        s.close()
                        s = None
            else:
                raise err  # every address failed: the last one's error, in words below
            if scheme == "https":
                ctx = tls.client_context(ca, account.get("token_verify", True))
                s = ctx.wrap_socket(s, server_hostname=host)
                if hasattr(s, "settimeout"):  # CPython: the TLS socket took the descriptor over
                    t = s  # MicroPython: its TLS socket reads through the plain one, whose timeout holds
            req = build_post(host, port, path, body, 443 if scheme == "https" else 80)
            _send_all(s, t, req, left)
            data = bytearray()
            while True:
                t.settimeout(left())
                chunk = _recv(s, _READ_SIZE)
                if chunk is None:  # MicroPython TLS: a timed-out read may return None
                    raise OAuthError("no answer within %ss" % deadline)
                if not chunk:
                    break
                data += chunk
                if len(data) > max_response:
                    raise OAuthError("answer longer than %d octets" % max_response)
        except OAuthError:
            raise
        except (OSError, ValueError) as e:
            if compat.errno_of(e) in compat.TIMEOUT_ERRNOS or type(e).__name__ in ("timeout", "TimeoutError"):
                raise OAuthError("no answer within %ss" % deadline)
            # tls.py's words are for the POP3 server: name the token endpoint's keys instead
            msg = tls.describe_error(e, host, port, ca).replace('"ca"', '"token_ca"')
            raise OAuthError(msg.replace('"host" and "port" (POP3S 995, POP3/STLS 110)', '"token_url"'))
    finally:
        if s is not None:
            try:
                s.close()
            except OSError:
                pass
    return parse_http_response(data)


def _send_all(s, t, data, left):
    mv = memoryview(data)
    off = 0
    while off < len(mv):
        t.settimeout(left())
        n = s.write(mv[off:]) if hasattr(s, "write") else s.send(mv[off:])
        if n is None:
            n = 0
        off += n


def _recv(s, n):
    # MicroPython's blocking read(n) waits for all n octets; recv returns what has arrived.
    # Its ssl socket has no recv but its read returns what the TLS record gave.
    if hasattr(s, "recv"):
        return s.recv(n)
    return s.read(n)


# --- account keys ------------------------------------------------------------------------------
def check_account(d, a):
    """Copy and check an OAuth account's keys from the config dict `d` into the checked account
    `a` (client.account_from_dict): token_url, client_id (config.json); refresh_token and the
    optional client_secret (secrets file); token_ca (DER, default the account's "ca") and
    token_verify (default true). Raises OAuthError with the problem."""
    name = a["name"]
    for k in ("token_url", "client_id", "refresh_token"):
        v = d.get(k)
        if not isinstance(v, str) or not v:
            where = "the secrets file" if k == "refresh_token" else "config.json"
            raise OAuthError("account %s: auth %s needs %s (a string, in %s)" % (name, a["auth"], k, where))
        a[k] = v
    scheme = parse_url(a["token_url"])[0]
    if scheme != "https" and d.get("allow_plaintext") is not True:
        raise OAuthError("account %s: token_url must be https" % name)
    for k in ("client_secret", "token_ca"):
        v = d.get(k)
        if v is not None and (not isinstance(v, str) or not v):
            raise OAuthError("account %s: %s must be a string" % (name, k))
        a[k] = v
    v = d.get("token_verify", True)
    if not isinstance(v, bool):
        raise OAuthError("account %s: token_verify must be true or false" % name)
    a["token_verify"] = v
    # The token endpoint's CA: here, not in config.check, so accounts without OAuth pay no heap for it.
    tca = a["token_ca"] or d.get("ca")
    if compat.IS_MICROPYTHON and v and not tca:
        raise OAuthError('account %s: the token endpoint\'s certificate is verified: give "token_ca" (its CA '
                         'certificate, DER) on MicroPython, which has no system CA store' % name)
    if isinstance(tca, str) and tca != d.get("ca"):
        from pocketpost.tls import is_pem

        if is_pem(tca):
            from pocketpost.tlserror import pem_words

            raise OAuthError("account %s: %s %s" % (name, tca, pem_words(tca, "token_ca")))
    if "password" in d:
        raise OAuthError("account %s: auth %s uses no password; remove it" % (name, a["auth"]))


# --- POP3 AUTH through the client shell (client.Pop3Client) -------------------------------------
# These drive client.Pop3Client (cmd/_send/_status) and live here, not in client.py, so an account
# without OAuth pays no heap for them. `failed` is client.AuthFailed (passed in: no import cycle).
# At the merge they move onto the sans-I/O client session: the exchange is "AUTH <MECH> [ir]";
# "+ " (ir too long) -> ir; "+ <b64 json>" (refused) -> error_ack(mech) -> "-ERR".
async def pop3_auth(c, mech, user, token, failed):
    """AUTH XOAUTH2 / OAUTHBEARER (RFC 7628 over RFC 5034's POP3 AUTH), driven through the client
    shell `c` (client.Pop3Client: cmd, _send, _status and its pop3client session `c.s`). A refused
    token comes back as a "+ " error challenge (base64 JSON status) that takes a dummy answer
    before the server's -ERR. Raises `failed` with `.oauth` (the status dict)."""
    from pocketpost.client import ErrReply

    ir = initial_response(mech, user, token, c.host, c.port)
    name = mech.upper()
    info = {"status": ""}
    try:
        if len(ir) + len(name) + 8 <= 255:  # RFC 5034 section 4: "AUTH mech ir" CRLF in 255 octets
            rep = await c.cmd("AUTH", name, ir)
        else:
            rep = await c.cmd("AUTH", name)
            if rep.ok is None:  # "+ ": the server waits for the response on a line of its own
                await c._send(c.s.respond(ir), "AUTH " + name)
                rep = await c._status()
        if rep.ok is True:
            return
        # the error challenge (RFC 7628 section 3.2.2): acknowledged, then the server says -ERR
        info = challenge_error(rep.text)
        await c._send(c.s.respond(error_ack(mech)), "AUTH " + name)
        rep = await c._status()
        text, code = rep.text, rep.code
    except ErrReply as e:  # "where: AUTH X: -ERR text"
        text, code = e.msg.rsplit("-ERR ", 1)[-1].encode(), e.code
        if not info["status"] and (code in ("IN-USE", "LOGIN-DELAY") or (code or "")[:4] == "SYS/"):
            # (no error challenge: the token was taken, the mailbox or the server is the trouble)
            from pocketpost.clientauth import hint  # (loaded: the login runs in it)

            raise failed(hint(code, None, e.msg), code)  # (the server's text quoted)
    err = failed("AUTH %s: token refused (%s): %s" % (name, describe_challenge(info), _printable(text)), code)
    err.oauth = info
    raise err


def pop3_token(a, failed):
    """(access token, freshly refreshed?) for an OAuth account; a failed refresh (revoked refresh
    token, endpoint unreachable) raises `failed` naming the account."""
    try:
        return access_token(a)
    except OAuthError as e:
        raise failed(e.msg)


async def pop3_login(c, a, token, fresh, failed):
    """Log in with the token; a cached token the server refuses before its stated expiry (revoked
    early, the clocks disagree) is dropped and one fresh token tried in the same session."""
    from pocketpost import log

    try:
        await c.login(a["user"], token, a["auth"])
        return
    except failed as e:
        if getattr(e, "oauth", None) is None:  # not the token refused (IN-USE, SYS/TEMP): kept
            raise failed("account %s: %s" % (a["name"], e.msg), e.code)
        forget(a["name"])
        if fresh:
            raise failed("account %s: %s" % (a["name"], e.msg), e.code)
        log.warning("fetch %s: cached access token refused (%s); refreshing", a["name"], e.msg)
    token, _ = pop3_token(a, failed)
    try:
        await c.login(a["user"], token, a["auth"])
    except failed as e:
        forget(a["name"])
        raise failed("account %s: %s" % (a["name"], e.msg), e.code)
