"""Words a user can act on for a failed connect / TLS handshake (tls.describe_error loads this
module only when something failed, so its strings cost no heap on the happy path).

What the runtimes really raise (checked against a local server, host_tests/test_tls_errors.py):
  MicroPython (mbedTLS):  ValueError('\\nThe certificate Common Name (CN) does not match with the
      expected CN\\n') - one line per failed check (mbedtls_x509_crt_verify_info), also "is not
      correctly signed by the trusted CA", "validity has expired", "validity starts in the future";
      ValueError('invalid cert') for a CA that is not DER (PEM); OSError(2) for a missing CA file
      (no path); OSError(111) refused; OSError(code[, name]) for other mbedTLS errors: the unix
      port adds the name, a board's build may give the bare negative code;
      OSError('[addrinfo error -2]') (unix) / OSError(-202) (ESP32) for an unknown host name.
  CPython: ssl.SSLCertVerificationError with verify_code (62 name, 20/21/19/18/2 issuer, 10
      expired, 9 not yet valid), ssl.SSLError('...cadata does not contain a certificate') for a
      PEM cadata, 'WRONG_VERSION_NUMBER' for a server not speaking TLS, FileNotFoundError,
      ConnectionRefusedError, socket.gaierror.
"""

from pocketpost.tls import is_pem

# mbedTLS 3.6 error codes the client can meet (library/ssl.h, net_sockets.h, x509.h), with what
# to do about them. Checked against the names the unix port reports where it reports them.
_MBEDTLS = (
    (-0x7200, "SSL_INVALID_RECORD", "no TLS"),
    (-0x6E80, "SSL_BAD_PROTOCOL_VERSION", "no TLS"),
    (-0x7300, "SSL_DECODE_ERROR", "no TLS"),
    (-0x7700, "SSL_UNEXPECTED_MESSAGE", "no TLS"),
    (-0x7680, "SSL_CA_CHAIN_REQUIRED", "no CA"),
    (-0x7780, "SSL_FATAL_ALERT_MESSAGE", "alert"),
    (-0x6E00, "SSL_HANDSHAKE_FAILURE", "alert"),
    (-0x7080, "SSL_FEATURE_UNAVAILABLE", "alert"),
    (-0x7880, "SSL_PEER_CLOSE_NOTIFY", "closed"),
    (-0x7280, "SSL_CONN_EOF", "closed"),
    (-0x0050, "NET_CONN_RESET", "closed"),
    (-0x004C, "NET_RECV_FAILED", "closed"),
    (-0x004E, "NET_SEND_FAILED", "closed"),
    (-0x7A00, "SSL_BAD_CERTIFICATE", "cert"),
    (-0x2700, "X509_CERT_VERIFY_FAILED", "cert"),
    (-0x7180, "SSL_INVALID_MAC", "closed"),
    (-0x7F00, "SSL_ALLOC_FAILED", "memory"),
    (-0x6C00, "SSL_INTERNAL_ERROR", "memory"),
    (-0x6800, "SSL_TIMEOUT", "timeout"),
    (-0x0052, "NET_UNKNOWN_HOST", "dns"),
    (-0x2180, "X509_INVALID_FORMAT", "ca format"),
    (-0x2780, "X509_FATAL_ERROR", "ca format"),
)

_DO = {
    "no TLS": "the server at %s does not speak TLS there: use \"tls\": \"implicit\" for POP3S (port 995) "
              "or \"stls\" for POP3 with STLS (port 110)",
    "no CA": "no CA certificate to check %s against: set \"ca\" to the server's CA certificate (DER)",
    "alert": "the server at %s refused the TLS handshake (no TLS version or cipher in common, or it wants "
             "a client certificate)",
    "closed": "the server at %s closed the connection during TLS: check the port and \"tls\" mode",
    "cert": "the certificate of %s failed verification",
    "memory": "out of memory for TLS with %s: run fewer connections at once",
    "timeout": "no answer from %s in time: check the host, the port and the network",
    "dns": "cannot resolve the host name of %s: check \"host\" and the network's DNS",
    "ca format": "the CA certificate for %s is not a valid DER certificate",
}


def _text(exc):
    parts = []
    for a in getattr(exc, "args", ()):
        parts.append(a if isinstance(a, str) else repr(a))
    return " ".join(parts)


def _code(exc):
    c = getattr(exc, "errno", None)
    if isinstance(c, int) and c != 1:  # CPython SSLError.errno 1 is "SSL error", not EPERM
        return c
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        return args[0]
    return None


def _exists(path):
    try:
        open(path, "rb").close()
        return True
    except OSError:
        return False


def pem_words(path, key):
    """'is PEM; the board needs DER: convert with `...`' for a PEM certificate the config names
    under `key`; config, oauth2 and the connect's error say it with these words. The command
    works as printed: a PEM under a .der name is moved aside first, never one file as openssl's
    -in and -out (openssl may empty -out before it reads -in: tools/deploy.py's pem_fix)."""
    if path[-4:] == ".der":
        pem = path[:-4] + ".pem"
        return "is PEM; the board needs DER: convert with `mv %s %s && openssl x509 -in %s -outform DER -out %s`" % (
            path, pem, pem, path)
    der = (path[:-4] if path[-4:-3] == "." else path) + ".der"
    return 'is PEM; the board needs DER: convert with `openssl x509 -in %s -outform DER -out %s`, then set "%s" to %s' % (
        path, der, key, der)


def _ca_words(exc, msg, code, ca_path):
    """A problem with the CA file itself, or None."""
    if not ca_path:
        return None
    low = msg.lower()
    if code == 2 and not _exists(ca_path):
        return ("CA file %s not found: copy the server's CA certificate (DER) there, or fix \"ca\" in the account"
                % ca_path)
    if "invalid cert" in low or "cadata" in low or "asn1" in low or code in (-0x2180, -0x2780):
        if is_pem(ca_path):
            return "%s: this file %s" % (ca_path, pem_words(ca_path, "ca"))
        return "CA file %s is not a DER certificate (export the CA certificate as DER)" % ca_path
    return None


def describe(exc, host, port, ca_path=None):
    where = "%s:%s" % (host, port)
    msg = _text(exc)
    low = msg.lower()
    code = _code(exc)
    tname = type(exc).__name__
    w = _ca_words(exc, msg, code, ca_path)
    if w is not None:
        return w
    vc = getattr(exc, "verify_code", None)
    why = []
    if "common name" in low or "hostname mismatch" in low or "ip address mismatch" in low or vc in (62, 64):
        why.append("certificate name mismatch: the certificate of %s is not issued for %s; set \"host\" to a "
                   "name the certificate covers" % (where, host))
    if "not correctly signed" in low or vc in (2, 18, 19, 20, 21):
        why.append("unknown CA: the certificate of %s is not signed by %s; set \"ca\" to the CA certificate "
                   "(DER) that issued it" % (where, ("the CA in " + ca_path) if ca_path else "a CA this system trusts"))
    if "validity has expired" in low or vc == 10:
        why.append("the certificate of %s has expired (or this clock is wrong)" % where)
    if "starts in the future" in low or vc == 9:
        why.append("the certificate of %s is not valid yet: is the clock set? (a board sets it by NTP "
                   "before fetching)" % where)
    if why:
        return "; ".join(why)
    if tname == "gaierror" or "addrinfo" in low or code in (-202, 202):
        return _DO["dns"] % where
    if code == 111 or tname == "ConnectionRefusedError":
        return ("connection refused by %s: nothing listens on that port; check \"host\" and \"port\" "
                "(POP3S 995, POP3/STLS 110)" % where)
    if code in (110, 11, 116) or tname in ("TimeoutError", "Pop3Timeout"):
        return _DO["timeout"] % where
    # The runtime's numbers (Linux and lwIP's own errno.h: 101, 113, 104, 103; newlib's, as on
    # ESP-IDF: 114, 118, 104, 113), imported (MicroPython's compiler folds `errno.X` to its own).
    # ENETUNREACH has no name in MicroPython's errno: see clientauth._open.
    from errno import ECONNABORTED, ECONNRESET, EHOSTUNREACH

    if code == EHOSTUNREACH:
        return "host unreachable: no route to %s: check \"host\" and the network (Wi-Fi)" % where
    if code == getattr(__import__("errno"), "ENETUNREACH", 114 if EHOSTUNREACH == 118 else 101):
        return "network unreachable: no route to %s: check the network (Wi-Fi) and \"host\"" % where
    if code in (23, 24):  # ENFILE, EMFILE (Linux and newlib alike): socket() found none free. (Not ENOMEM:
        # MicroPython's mbedTLS says ENOMEM for a handshake out of heap.)
        return ("no socket free to connect to %s (%s): every socket here is in use (the server's sessions, waiting "
                "connections and listening ports, other accounts' fetches: boards/*/BUDGET.md \"Sockets\"); tried again "
                "at the next fetch" % (where, msg or code))
    if code in (ECONNRESET, ECONNABORTED) or tname in ("ConnectionResetError", "ConnectionAbortedError"):
        return "connection reset by %s: check the port and the \"tls\" mode" % where
    if "wrong_version_number" in low or "wrong version number" in low:
        return _DO["no TLS"] % where
    if isinstance(code, int) and code < 0:
        for c, name, kind in _MBEDTLS:
            if c == code:
                return "%s (MBEDTLS_ERR_%s)" % (_DO[kind] % where, name)
        return "TLS with %s failed: mbedTLS error -0x%04X%s" % (where, -code, (" " + msg) if msg else "")
    return "%s: %s%s" % (where, tname, (": " + msg) if msg else "")
