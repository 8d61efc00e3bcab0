"""tls.describe_error against real handshakes, under CPython and under the real micropython.

Certificates are made by openssl in the test (a CA, an unrelated CA, a server certificate for
localhost, one expired and one not valid until 2040); CPython TLS servers (and one plain POP3
greeter) listen on loopback in threads. Each case is a real connect + handshake: CPython through
asyncio.open_connection (as client.py does), MicroPython through its mbedTLS ssl module; the
exception that comes out is handed to tls.describe_error and its words are checked. The
exception shapes differ between the runtimes (tlserror.py lists them); the advice must not.
"""

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import threading

import pytest

from helpers import FIRMWARE, ROOT, free_port, run_micropython

sys.path.insert(0, FIRMWARE)
from pocketpost import tls, tlserror  # noqa: E402


def _run(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certs(d):
    for ca, cn in (("ca", "Test CA"), ("other", "Other CA")):
        _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj", "/CN=" + cn,
              "-keyout", ca + ".key", "-out", ca + ".pem"], d)
        _run(["openssl", "x509", "-in", ca + ".pem", "-outform", "DER", "-out", ca + ".der"], d)
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "srv.key",
          "-out", "srv.csr"], d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _run(["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
          "-days", "3", "-out", "srv.pem", "-extfile", "ext.cnf"], d)
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = mini\n[mini]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n"
                "default_md = sha256\npolicy = any\ncopy_extensions = copy\nunique_subject = no\n"
                "[any]\ncommonName = supplied\n")
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")
    for name, start, end in (("expired", "20200101000000Z", "20210101000000Z"),
                             ("future", "20400101000000Z", "20410101000000Z")):
        _run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in",
              "srv.csr", "-out", name + ".pem", "-startdate", start, "-enddate", end, "-extfile", "ext.cnf"], d)


class Servers:
    """TLS servers for the good, expired and future certificates, and a plain POP3 greeter."""

    def __init__(self, d):
        self.socks = []
        self.ports = {}
        for name in ("srv", "expired", "future", "plain"):
            ls = socket.socket()
            ls.bind(("127.0.0.1", 0))
            ls.listen(8)
            ls.settimeout(0.2)
            self.socks.append(ls)
            self.ports[name] = ls.getsockname()[1]
            ctx = None
            if name != "plain":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(os.path.join(d, name + ".pem"), os.path.join(d, "srv.key"))
            threading.Thread(target=self._serve, args=(ls, ctx), daemon=True).start()
        # a port with nothing listening (free_port's: never one another worker's server is given)
        self.ports["closed"] = free_port()
        self.stop = False

    def _serve(self, ls, ctx):
        while True:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed: the test is over
            try:
                c.settimeout(5)
                if ctx is None:
                    c.sendall(b"+OK plain POP3 here\r\n")
                    c.recv(100)
                else:
                    s = ctx.wrap_socket(c, server_side=True)
                    s.sendall(b"+OK tls\r\n")
                    s.close()
            except OSError:
                pass
            finally:
                c.close()

    def close(self):
        for s in self.socks:
            s.close()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tlscerts"))
    _make_certs(d)
    srv = Servers(d)
    yield d, srv.ports
    srv.close()


def cases(d, ports):
    """(label, port, server_hostname, ca file, words the description must hold)."""
    der = os.path.join(d, "ca.der")
    return [
        ("name", ports["srv"], "mail.example.org", der, ["certificate name mismatch", "mail.example.org"]),
        ("unknown_ca", ports["srv"], "localhost", os.path.join(d, "other.der"), ["unknown CA", "other.der"]),
        ("pem_ca", ports["srv"], "localhost", os.path.join(d, "ca.pem"),
         ["this file is PEM; the board needs DER", "openssl x509 -in %s -outform DER -out %s"
          % (os.path.join(d, "ca.pem"), os.path.join(d, "ca.der"))]),
        ("missing_ca", ports["srv"], "localhost", os.path.join(d, "nope.der"),
         ["CA file %s not found" % os.path.join(d, "nope.der")]),
        ("refused", ports["closed"], "localhost", der, ["connection refused", "localhost:%d" % ports["closed"]]),
        ("expired", ports["expired"], "localhost", der, ["has expired"]),
        ("future", ports["future"], "localhost", der, ["not valid yet", "clock"]),
        ("plain", ports["plain"], "localhost", der, ["does not speak TLS", '"stls"']),
    ]


def _cpython_connect(port, host, ca):
    async def go():
        ctx = tls.client_context(ca, True)
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=host), 10)
        w.close()

    asyncio.run(go())


def test_described_under_cpython(env):
    d, ports = env
    for label, port, host, ca, words in cases(d, ports):
        try:
            _cpython_connect(port, host, ca)
        except Exception as e:  # noqa: BLE001 - every shape the handshake raises is the point
            err = e
            text = tls.describe_error(e, host, port, ca)
        else:
            raise AssertionError("%s: connected" % label)
        for w in words:
            assert w in text, (label, w, text, err)
        assert "\n" not in text, text
    # the good case connects (the servers are right, the failures come from the cases)
    _cpython_connect(ports["srv"], "localhost", os.path.join(d, "ca.der"))


MP_SCRIPT = r"""
import json, socket, ssl, sys
from pocketpost import tls, tlserror
names = {}
for c, n, _ in tlserror._MBEDTLS:
    names[c] = "MBEDTLS_ERR_" + n
f = open(sys.argv[1])
cases = json.load(f)
f.close()
out = {}
for label, port, host, ca, words in cases:
    try:
        ctx = tls.client_context(ca, True)
        s = socket.socket()
        try:
            s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            t = ctx.wrap_socket(s, server_hostname=host)
            t.read(4)
            out[label] = None
        finally:
            s.close()
    except Exception as e:
        a = e.args
        named = len(a) == 2 and isinstance(a[0], int) and isinstance(a[1], str) and a[1].startswith("MBEDTLS_ERR_")
        out[label] = [tls.describe_error(e, host, port, ca), repr(e),
                      [a[0], a[1], names.get(a[0])] if named else None]
print("RESULT " + json.dumps(out))
"""


def test_described_under_micropython(env, tmp_path):
    d, ports = env
    cs = cases(d, ports)
    script = tmp_path / "tlsprobe.py"
    script.write_text(MP_SCRIPT)
    (tmp_path / "cases.json").write_text(json.dumps(cs))  # a file: this unix port dies on a long argv
    r = run_micropython([str(script), str(tmp_path / "cases.json")], timeout=120)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    res = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][0][7:])
    for label, port, host, ca, words in cs:
        got = res[label]
        assert got is not None, (label, "connected")
        text, raw, named = got
        for w in words:
            assert w in text, (label, w, text, raw)
        assert "\n" not in text, text
        if named is not None:  # the unix port names mbedTLS codes: our table must agree
            assert named[2] == named[1], (label, named)


def test_raw_mbedtls_codes_named():
    """A board's build may raise the bare code (no name): the table names it and says what to do.
    The codes are checked against the unix port's own names above where a handshake produces them."""
    t = tls.describe_error(OSError(-0x7200), "pop.example.net", 995)
    assert "does not speak TLS" in t and "MBEDTLS_ERR_SSL_INVALID_RECORD" in t and "pop.example.net:995" in t
    t = tls.describe_error(OSError(-0x7680), "h", 995)
    assert "MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED" in t and '"ca"' in t
    t = tls.describe_error(OSError(-0x7F00), "h", 995)
    assert "out of memory" in t
    t = tls.describe_error(OSError(-0x1234), "h", 995)
    assert "-0x1234" in t and "h:995" in t
    assert (-0x7780, "SSL_FATAL_ALERT_MESSAGE", "alert") in tlserror._MBEDTLS
