"""TLS contexts from DER files on flash, for the server (STLS, POP3S) and the client.

MicroPython's ssl accepts DER only (PEM raises ValueError('invalid key')), and its client
context defaults to no verification: `client_context` turns verification on unless the caller
explicitly disables it, and logs when it does. `describe_error` turns a connect/handshake
exception into words (tlserror.py).
"""

import ssl

from pocketpost import log
from pocketpost.compat import IS_MICROPYTHON


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def server_context(cert_path, key_path, ctx=None):
    """ctx: an empty server context made earlier (heapmark.reserve), or None for a new one."""
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if IS_MICROPYTHON:
        ctx.load_cert_chain(_read(cert_path), _read(key_path))  # DER bytes (PEM is rejected)
    else:  # CPython: PEM copies (hostconn.py: host-only code, never loaded on a board)
        from pocketpost.hostconn import server_context as host_server_context  # (no "hostconn" name)

        host_server_context(ctx, cert_path, key_path)
    return ctx


def is_pem(path):
    """True if the file at path is readable and PEM ("-----BEGIN" in its first 64 bytes, so a
    PEM file with a short header still counts); a missing file is the connect's error, with its
    path. config, oauth2 and tlserror all ask here (a PEM CA the board cannot load)."""
    try:
        f = open(path, "rb")
    except OSError:
        return False
    try:
        head = f.read(64)
    finally:
        f.close()
    return b"-----BEGIN" in head


def client_context(ca_path=None, verify=True):
    """A client context that verifies the server's certificate against the CA in `ca_path`
    (DER). verify=False must be asked for and is logged as a warning."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # the stub lacks it; the port has it
        if ca_path:
            ctx.load_verify_locations(cadata=_read(ca_path))
        elif not IS_MICROPYTHON:  # CPython: the system store (hostconn.py)
            from pocketpost.hostconn import client_context as host_client_context

            host_client_context(ctx, True)
    else:
        log.warning("tls: certificate verification DISABLED by configuration")
        if not IS_MICROPYTHON:  # CPython checks the name unless told not to (hostconn.py)
            from pocketpost.hostconn import client_context as host_client_context

            host_client_context(ctx, False)
        ctx.verify_mode = ssl.CERT_NONE  # type: ignore[attr-defined]  # the stub lacks it; the port has it
    return ctx


def describe_error(exc, host, port, ca_path=None):
    """One line a user can act on for an exception from connecting to host:port or its TLS
    handshake (certificate name mismatch, unknown CA, a PEM CA, a missing CA file, refused,
    unreachable, a server without TLS, mbedTLS codes by name). The words live in tlserror.py,
    loaded only when something failed; without the heap for it, the raw exception."""
    try:
        from pocketpost import tlserror
    except MemoryError:
        return "%s:%s: %r" % (host, port, exc)
    return tlserror.describe(exc, host, port, ca_path)
