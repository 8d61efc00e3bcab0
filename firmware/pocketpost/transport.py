"""One connection class per runtime, for every service (the POP3 client now; the server's shell
can adopt it: `Conn.from_stream` takes what asyncio.start_server hands a handler).

Theory of operation
-------------------
A connection moves bytes and nothing else: `recv_into(mv, ms)` reads what is there into the
caller's buffer (0 at end of stream), `send(data, ms)` writes all of it, each bounded by a
timeout in milliseconds that the caller computes from its own deadlines (raises `Timeout`).
`start_tls(ctx, hostname, server_side, ms)` puts TLS under the stream (STLS, or at once for
implicit TLS); `close()` drops it at once, `shutdown(ms)` closes politely (after QUIT). For a
server: `before_tls()` (before the +OK to STLS) and `send_nowait(data)` (a last word) as in
server.py's two classes today, whose shape this module keeps: adopting it there is
`recv_into(mv)` -> `recv_into(mv, ms)`, `send(out, k)` -> `send(memoryview(out)[:k], ms)`.

MicroPython (`Conn`): reads and writes go to the raw (or TLS-wrapped, non-blocking) socket;
when it answers None (would block) the task parks on asyncio's poller until the socket is
ready (`_wait_io`, the same mechanism asyncio's own streams use), bounded by the timeout. No
polling loop. A non-blocking TLS socket also answers None while its handshake waits for the
peer's next flight, so until the first byte has gone through either way, a stalled write waits
for readability instead of writability. A TLS client whose peer speaks first (POP3) drives the
handshake with its first read. Writes go straight to the socket: asyncio's StreamWriter.write
would copy unsent data into a new bytes object.

CPython (`CConn`): standard asyncio streams and TLS (the host's debugging and test runtime).
"""

import asyncio

from pocketpost.compat import IS_MICROPYTHON, TIMEOUT_ERRNOS, errno_of


class Timeout(Exception):
    """A read, write, connect or handshake did not finish within its bound."""


if IS_MICROPYTHON:
    from asyncio import core as _core  # type: ignore[attr-defined]  # MicroPython asyncio internals

    async def _wait_io(sock, write):
        # MicroPython's asyncio: park this task on the poller until sock is ready.
        if write:
            yield _core._io_queue.queue_write(sock)
        else:
            yield _core._io_queue.queue_read(sock)


async def _bounded(aw, ms):
    try:
        return await asyncio.wait_for(aw, ms / 1000)
    except asyncio.TimeoutError:
        raise Timeout()


# Only the running runtime's class is defined: the other would be heap for nothing.
if IS_MICROPYTHON:

    class Conn:
        """MicroPython: one connection's I/O through the raw socket and asyncio's poller."""

        def __init__(self, stream):
            self.stream = stream
            self.raw = stream.s
            self.sock = stream.s
            self.handshaking = False

        @classmethod
        def from_stream(cls, reader, writer):
            return cls(reader)

        def before_tls(self):
            pass  # we read only when asked: bytes after the +OK stay in the socket for TLS

        def send_nowait(self, data):
            """Best effort, never waits: a last word to a peer that may not be reading."""
            self.sock.write(data)

        async def start_tls(self, ctx, hostname=None, server_side=False, ms=0):
            """Wrap the socket; the handshake runs inside the next reads and writes (bounded by
            theirs)."""
            if server_side:
                s = ctx.wrap_socket(self.raw, server_side=True, do_handshake_on_connect=False)
            else:
                s = ctx.wrap_socket(self.raw, server_hostname=hostname, do_handshake_on_connect=False)
            s.setblocking(False)
            self.sock = s
            self.stream.s = s
            self.handshaking = True

        async def _wait(self, write, ms):
            if ms <= 0:
                raise Timeout()
            # The raw socket, also under TLS: the poller then holds file descriptors only (an SSL
            # socket has none; mixing the two crashed the unix port's select.poll, see server.py).
            await _bounded(_wait_io(self.raw, write), ms)

        async def recv_into(self, mv, ms):
            """Bytes read into mv (> 0), or 0 at end of stream."""
            while True:
                try:
                    n = self.sock.readinto(mv)  # drives a TLS handshake; returns decrypted bytes
                except OSError as e:
                    if errno_of(e) not in TIMEOUT_ERRNOS:
                        raise
                    n = None
                if n is not None:
                    if n:
                        self.handshaking = False
                    return n
                await self._wait(False, ms)

        async def send(self, data, ms):
            mv = memoryview(data)
            n = len(mv)
            off = 0
            while off < n:
                try:
                    r = self.sock.write(mv[off:] if off else mv)
                except OSError as e:
                    if errno_of(e) not in TIMEOUT_ERRNOS:
                        raise
                    r = None
                if r:
                    off += r
                    self.handshaking = False
                    continue
                # The handshake waits for the peer's next flight; otherwise the send buffer is full.
                await self._wait(not self.handshaking, ms)

        def close(self):
            for s in (self.sock, self.raw):
                try:
                    s.close()
                except Exception:
                    pass

        async def shutdown(self, ms):
            self.close()

else:

    class CConn:
        """CPython: standard asyncio streams and TLS."""

        def __init__(self, reader, writer):
            self.r = reader
            self.w = writer

        @classmethod
        def from_stream(cls, reader, writer):
            return cls(reader, writer)

        def before_tls(self):
            """A server, before its +OK to STLS: stop reading, so the client's ClientHello stays in
            the socket for TLS; what asyncio already holds was pipelined after STLS and is dropped
            (RFC 2595 section 4). asyncio has no public call for the latter: `_buffer`."""
            self.w.transport.pause_reading()
            held = getattr(self.r, "_buffer", None)
            if held:
                del held[:]

        def send_nowait(self, data):
            self.w.write(data)  # asyncio buffers it; the transport sends what the peer accepts

        async def start_tls(self, ctx, hostname=None, server_side=False, ms=0):
            if server_side:
                await _bounded(self.w.start_tls(ctx), ms)
            else:
                await _bounded(self.w.start_tls(ctx, server_hostname=hostname), ms)

        async def recv_into(self, mv, ms):
            if ms <= 0:
                raise Timeout()
            data = await _bounded(self.r.read(len(mv)), ms)
            mv[: len(data)] = data
            return len(data)

        async def send(self, data, ms):
            self.w.write(bytes(data))
            if ms <= 0:
                raise Timeout()
            await _bounded(self.w.drain(), ms)

        def close(self):
            """Drop at once: a stalled or broken peer must not cost a wait for its close."""
            try:
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


async def connect(host, port, ms, ctx=None):
    """A TCP connection to host:port (with `ctx`, implicit TLS to that host), within ms."""
    if IS_MICROPYTHON:
        r, w = await _bounded(asyncio.open_connection(host, port), ms)
        c = Conn(r)
        if ctx is not None:
            await c.start_tls(ctx, host)
        return c
    r, w = await _bounded(asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None), ms)
    return CConn(r, w)
