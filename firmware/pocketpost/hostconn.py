"""CPython only (the host's debugging and test runtime): transport's connection over asyncio's
streams and TLS (`Conn`, also transport.Conn there), with listener.ServerConn's STLS and write hooks
for CPython. MicroPython never imports this module: each name a loaded module holds is interned
(a qstr, never freed) whether its code runs or not, so the board does not pay for this code's."""

import asyncio

from pocketpost.compat import const, ticks_diff, ticks_ms
from pocketpost.transport import Timeout, _Bounds

_ROUNDING_MS = const(20)  # transport's (a private copy)


async def connect(host, port, ms, ctx):
    """clientauth._open on CPython: asyncio's streams, TLS from the start with ctx."""
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None),
                                      ms / 1000)
    except asyncio.TimeoutError:
        raise Timeout()
    return Conn(r, w)


def server_context(ctx, cert_path, key_path):
    """tls.server_context on CPython: it loads certificate chains from PEM files only; the host
    tools write PEM copies next to the DER files (cert.der -> cert.pem)."""
    ctx.load_cert_chain(_pem(cert_path), _pem(key_path))


def _pem(der_path):
    return der_path[:-4] + ".pem" if der_path.endswith(".der") else der_path


def client_context(ctx, verify):
    """tls.client_context on CPython: verify, without a CA file, against the system store; not
    verifying, no host name check either (CPython refuses CERT_NONE while it is on)."""
    if verify:
        ctx.load_default_certs()
    else:
        ctx.check_hostname = False


class Conn(_Bounds):
    """CPython: standard asyncio streams and TLS."""

    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer
        self.handshaking = False

    @classmethod
    def from_stream(cls, reader, writer):
        return cls(reader, writer)

    async def start_tls(self, ctx, hostname=None, server_side=False, ms=None):
        # The whole handshake here (reading resumes once TLS is in place). asyncio's own
        # handshake timeout, not wait_for: a start_tls run as wait_for's task left the next
        # POP3S handshake of the server hanging (CPython 3.11).
        b = self._hs(ms)
        s = self._bound(b)
        t0 = ticks_ms()
        try:
            await self.w.start_tls(ctx, server_hostname=hostname, ssl_handshake_timeout=s)
        except (ConnectionAbortedError, asyncio.TimeoutError):
            if ticks_diff(ticks_ms(), t0) < s * 1000 - _ROUNDING_MS:  # not the timeout: a real abort
                raise
            raise self._expired(b)
        self._through()

    def recv_now(self, mv):
        """None: asyncio's streams have no read that never waits (see Conn.recv_now)."""
        return None

    async def recv_into(self, mv, ms=None):
        s = self._bound(ms)
        try:
            data = await asyncio.wait_for(self.r.read(len(mv)), s)
        except asyncio.TimeoutError:
            raise self._expired(ms)
        mv[: len(data)] = data
        return len(data)

    async def send(self, data, ms=None):
        self.w.write(bytes(data))
        s = self._bound(ms)
        try:
            await asyncio.wait_for(self.w.drain(), s)
        except asyncio.TimeoutError:
            raise self._expired(ms)

    def close(self, flush=False):
        """Drop at once: a stalled or broken peer must not cost a wait for its close.
        flush (a server's end of session): what asyncio still buffers goes out first."""
        try:
            if flush:
                self.w.close()
            else:
                self.w.transport.abort()
        except Exception:
            pass

    async def shutdown(self, ms):
        """After QUIT +OK: let TLS say close_notify, bounded."""
        try:
            self.w.close()
            await asyncio.wait_for(self.w.wait_closed(), ms / 1000)
        except Exception:
            self.close()

    # -- listener.ServerConn's, on CPython (MicroPython's are in listener.py) --

    def before_tls(self):
        """Before the +OK to STLS: stop reading, so the client's ClientHello stays in the
        socket for TLS; what asyncio already holds was pipelined after STLS and is dropped
        (RFC 2595 section 4). asyncio has no public call for the latter: `_buffer`."""
        self.w.transport.pause_reading()
        held = getattr(self.r, "_buffer", None)
        if held:
            del held[:]

    def gone(self, implicit):
        """listener.ServerConn.gone (a connection waiting for a slot): the stream's end. An
        implicit-TLS port's socket is not read while it waits (its ClientHello stays for
        start_tls, which reads again): its peer's close behind the hello is poll's POLLRDHUP."""
        if implicit:
            self.w.transport.pause_reading()
            import select

            p = select.poll()
            # (Linux's; 0x2000, its value there, where this Python's select names none)
            p.register(self.w.get_extra_info("socket").fileno(), getattr(select, "POLLRDHUP", 0x2000))
            return bool(p.poll(0))
        return self.r.at_eof()

    def send_nowait(self, data):
        self.w.write(data)  # asyncio buffers it, close(True) lets it go out

    def send_some(self, mv):
        return 0  # asyncio's writer: `await send()` (CPython is the test runtime, not the fast one)
