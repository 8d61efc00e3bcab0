"""A local OAuth 2.0 provider for the tests: HTTPS on loopback, in a thread of the test process.

It plays both parts a real provider plays:
- the token endpoint (`POST /token`, RFC 6749 section 6): grant_type=refresh_token with a known,
  unrevoked refresh token and the right client_id -> {"access_token", "expires_in", "token_type"};
  a revoked or unknown one -> 400 {"error": "invalid_grant"};
- the token check Dovecot's oauth2 passdb calls (`GET /tokeninfo?access_token=T`):
  200 {"email": user, "expires_in": left} for a live token, 400 {"error": "invalid_token"} else.
Every request is recorded in `log` (method, path, form fields or the token checked), so a test can
tell which token the client used and how often it refreshed. `expire(token)` / `revoke(rt)` change
the state between fetches. `stop()` shuts the thread down (bounded).
"""

import json
import os
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CLIENT_ID = "pocketpost-test-client"
CLIENT_SECRET = "s3cret-client"


class Provider:
    def __init__(self, certfile, keyfile, expires_in=3600, token_len=40):
        self.certfile = certfile
        self.keyfile = keyfile
        self.expires_in = expires_in
        self.token_len = token_len  # octets of random hex per access token (long ones: > 255-octet AUTH lines)
        self.refresh_tokens = {}  # refresh token -> user
        self.revoked = set()
        self.access = {}  # access token -> [user, expiry (time.time())]
        self.log = []
        self.lock = threading.Lock()
        self.httpd = None
        self.thread = None

    # -- state ------------------------------------------------------------------------
    def add_refresh_token(self, user):
        rt = "1//rt-" + os.urandom(12).hex()
        self.refresh_tokens[rt] = user
        return rt

    def revoke(self, rt):
        self.revoked.add(rt)

    def expire(self, token):
        with self.lock:
            self.access[token][1] = 0

    def issued(self):
        return [e["access_token"] for e in self.log if e["path"] == "/token" and "access_token" in e]

    def checked(self):
        return [e["token"] for e in self.log if e["path"] == "/tokeninfo"]

    # -- lifecycle --------------------------------------------------------------------
    def start(self):
        prov = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *a):
                pass

            def _answer(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(n).decode(), keep_blank_values=True)
                f = {k: v[0] for k, v in form.items()}
                entry = {"method": "POST", "path": self.path, "form": f,
                         "content_type": self.headers.get("Content-Type")}
                with prov.lock:
                    prov.log.append(entry)
                    if self.path != "/token":
                        return self._answer(404, {"error": "not_found"})
                    if f.get("client_id") != CLIENT_ID or f.get("client_secret") != CLIENT_SECRET:
                        return self._answer(401, {"error": "invalid_client"})
                    if f.get("grant_type") != "refresh_token":
                        return self._answer(400, {"error": "unsupported_grant_type"})
                    rt = f.get("refresh_token")
                    if rt not in prov.refresh_tokens or rt in prov.revoked:
                        return self._answer(400, {"error": "invalid_grant",
                                                  "error_description": "Token has been expired or revoked."})
                    tok = "ya29." + os.urandom(prov.token_len // 2).hex()
                    prov.access[tok] = [prov.refresh_tokens[rt], time.time() + prov.expires_in]
                    entry["access_token"] = tok
                    return self._answer(200, {"access_token": tok, "expires_in": prov.expires_in,
                                              "token_type": "Bearer", "scope": "https://mail.example/"})

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                tok = q.get("access_token", [""])[0]
                with prov.lock:
                    prov.log.append({"method": "GET", "path": u.path, "token": tok})
                    if u.path != "/tokeninfo":
                        return self._answer(404, {"error": "not_found"})
                    e = prov.access.get(tok)
                    if e is None or e[1] <= time.time():
                        return self._answer(400, {"error": "invalid_token"})
                    return self._answer(200, {"email": e[0], "expires_in": int(e[1] - time.time())})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certfile, self.keyfile)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        return self

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(10)
            self.httpd = None
