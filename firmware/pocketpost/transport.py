"""One connection class per runtime, for every service: the POP3 client, the POP3 server and
the SMTP receiver (`Conn` on MicroPython, `CConn` on CPython).

Theory of operation
-------------------
A connection moves bytes and nothing else: `recv_into(mv, ms)` reads what is there into the
caller's buffer (0 at end of stream), `send(data, ms)` writes all of it, `start_tls(ctx,
hostname, server_side, ms)` puts TLS under the stream (STLS / STARTTLS, or at once for implicit
TLS), `close()` drops it at once (`close(True)`: what is queued still goes out), `shutdown(ms)`
closes politely (after QUIT). Every wait is bounded; running out raises `Timeout`, whose `name`
says which bound ran out. A server adopts what asyncio.start_server hands its handler with
`from_stream(reader, writer)`; `before_tls()` (before the +OK to STLS) drops plaintext pipelined
after it, `send_nowait(data)` is a last word to a peer that may not be reading.

Bounds. A caller that computes its own deadlines (the client) passes `ms` to every call. A
server passes none: then the connection's named deadlines bound each wait (see _Deadlines):
    tls-handshake  the whole TLS handshake (`start_tls(..., ms)`), however the peer trickles it
    authorization  an absolute deadline the shell sets with `limit()` (from connect until login)
    idle           `idle` seconds per wait once the shell has called `no_limit()`
A wait past its deadline raises Timeout(name); `pause(s)` (a failed-login delay) is cut short
there too.

MicroPython (`Conn`): reads and writes go to the raw (or TLS-wrapped, non-blocking) socket;
when it answers None (would block) the task parks on asyncio's poller until the socket is
ready (`_wait_io`, the same mechanism asyncio's own streams use), bounded as above. No polling
loop. TLS is never handed to start_server (a failed handshake would leak the socket): the
socket is wrapped here, the raw one kept and closed too. MicroPython's TLS socket has no
do_handshake(): with do_handshake_on_connect=False the handshake runs inside the first reads
and writes, which answer None while it waits for the peer's next flight; so until the first
byte of application data has gone through either way, a stalled write waits for readability
instead of writability, and the tls-handshake deadline bounds those waits (implicit TLS: until
the greeting is written; after STLS: until the first command is read, so there it also covers
the wait for that command). A TLS client whose peer speaks first (POP3) drives the handshake
with its first read. Writes go straight to the socket: asyncio's StreamWriter.write would copy
unsent data into a new bytes object.

CPython (`CConn`): standard asyncio streams and TLS (the host's debugging and test runtime).
"""

import asyncio

from pocketpost.compat import IS_MICROPYTHON, TIMEOUT_ERRNOS, errno_of, ticks_add, ticks_diff, ticks_ms

# The names of a server's deadlines, as its log lines and the tests see them.
DEADLINE_HANDSHAKE = "tls-handshake"
DEADLINE_AUTH = "authorization"
DEADLINE_IDLE = "idle"
# Plaintext a client pipelined after STLS that is read off the socket and dropped before the +OK
# (RFC 2595 section 4): at most this much; beyond it the TLS handshake fails on the rest.
STLS_DRAIN_MAX = 4096


class Timeout(Exception):
    """A read, write, connect or handshake did not finish within its bound; `name`: the named
    deadline that ran out (DEADLINE_IDLE for a caller's own bound)."""

    def __init__(self, name=DEADLINE_IDLE):
        super().__init__(name)
        self.name = name


if IS_MICROPYTHON:
    from asyncio import core as _core  # type: ignore[attr-defined]  # MicroPython asyncio internals

    async def _wait_io(sock, write):
        # MicroPython's asyncio: park this task on the poller until sock is ready.
        if write:
            yield _core._io_queue.queue_write(sock)
        else:
            yield _core._io_queue.queue_read(sock)


def peer_ip(writer):
    """The peer address of a server's connection as a string: MicroPython's unix port gives a
    raw sockaddr, the ESP32 a tuple, CPython a tuple."""
    try:
        peer = writer.get_extra_info("peername")
        if isinstance(peer, tuple):
            return str(peer[0])
        b = bytes(peer)
        # sockaddr_in: family 2 (Linux: 16-bit little-endian; BSD: length byte, then family)
        if len(b) >= 8 and ((b[0] == 2 and b[1] == 0) or b[1] == 2):
            return "%d.%d.%d.%d" % (b[4], b[5], b[6], b[7])
    except Exception:  # no peername (a closed socket), or a form not parsed above
        pass
    return "?"


class _Deadlines:
    """The bounds of one connection's waits (see the module docstring).

    A call given `ms` waits at most that long (ms <= 0: Timeout at once). A call without waits
    at most `idle` seconds or, while one is set, until an absolute deadline with a name:
    "authorization" (limit()), "tls-handshake" while a handshake runs (the earlier of the two
    wins). A wait past its deadline raises Timeout(name)."""

    def __init__(self):
        self.idle = None  # seconds per wait without a deadline (a server's idle timeout)
        self.until = None  # ticks_ms of the absolute deadline, or None: idle timeout only
        self.name = DEADLINE_IDLE
        self._saved = None  # the deadline a handshake interrupted

    def limit(self, name, seconds):
        """Set an absolute deadline `seconds` from now (replaces the current one)."""
        self.until = ticks_add(ticks_ms(), int(seconds * 1000))
        self.name = name

    def no_limit(self):
        """Authenticated: from now on only the idle timeout bounds a wait."""
        self.until = None
        self.name = DEADLINE_IDLE
        self._saved = None

    def _hs_begins(self, ms):
        self._saved = (self.until, self.name)
        until = ticks_add(ticks_ms(), int(ms))
        if self.until is None or ticks_diff(self.until, until) > 0:
            self.until = until
            self.name = DEADLINE_HANDSHAKE

    def _hs_done(self):
        if self._saved is not None:
            self.until, self.name = self._saved
            self._saved = None

    def budget(self):
        """Seconds the next wait may take; raises Timeout(name) once the deadline has passed."""
        if self.until is None:
            return self.idle
        left = ticks_diff(self.until, ticks_ms())
        if left <= 0:
            raise Timeout(self.name)
        return left / 1000

    def _bound(self, ms):
        """Seconds for the next wait: the caller's ms, else the named deadlines."""
        if ms is None:
            return self.budget()
        if ms <= 0:
            raise Timeout()
        return ms / 1000

    def _expired(self, ms):
        """The Timeout for a wait that ran out of its bound."""
        if ms is None and self.until is not None and ticks_diff(self.until, ticks_ms()) <= 0:
            return Timeout(self.name)
        return Timeout()

    async def pause(self, seconds):
        """The failed-login delay, cut short (Timeout) at the deadline."""
        b = self.budget()
        if seconds > b:
            await asyncio.sleep(b)
            raise self._expired(None)
        await asyncio.sleep(seconds)


# Only the running runtime's class is defined: the other would be heap for nothing.
if IS_MICROPYTHON:

    class Conn(_Deadlines):
        """MicroPython: one connection's I/O through the raw socket and asyncio's poller."""

        def __init__(self, stream):
            super().__init__()
            self.stream = stream
            self.raw = stream.s
            self.sock = stream.s
            self.handshaking = False

        @classmethod
        def from_stream(cls, reader, writer):
            return cls(reader)

        def before_tls(self):
            """A server, before its +OK to STLS. A client starts its handshake only once it has
            that +OK, so whatever is in the socket now is plaintext pipelined after STLS (a
            command injection, RFC 2595 section 4): drop it, or it would reach TLS as a broken
            ClientHello."""
            buf = bytearray(256)
            for _ in range(STLS_DRAIN_MAX // 256):
                try:
                    n = self.raw.readinto(buf)
                except OSError:
                    return
                if not n:  # None: nothing more waiting (non-blocking socket); 0: EOF
                    return

        def send_nowait(self, data):
            """Best effort, never waits: a last word to a peer that may not be reading."""
            self.sock.write(data)

        async def start_tls(self, ctx, hostname=None, server_side=False, ms=None):
            """Wrap the socket; the handshake runs inside the next reads and writes, bounded by
            theirs and (ms given) by the tls-handshake deadline ms from now."""
            if ms is not None:
                self._hs_begins(ms)
            if server_side:
                s = ctx.wrap_socket(self.raw, server_side=True, do_handshake_on_connect=False)
            else:
                s = ctx.wrap_socket(self.raw, server_hostname=hostname, do_handshake_on_connect=False)
            s.setblocking(False)
            self.sock = s
            self.stream.s = s
            self.handshaking = True

        def _through(self):
            # A byte of application data went through: the handshake is over.
            if self.handshaking:
                self.handshaking = False
                self._hs_done()

        async def _wait(self, write, ms):
            s = self._bound(ms)
            try:
                await asyncio.wait_for(_wait_io(self.sock, write), s)
            except asyncio.TimeoutError:
                raise self._expired(ms)

        async def recv_into(self, mv, ms=None):
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
                        self._through()
                    return n
                await self._wait(False, ms)

        async def send(self, data, ms=None):
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
                    self._through()
                    continue
                # The handshake waits for the peer's next flight; otherwise the send buffer is full.
                await self._wait(not self.handshaking, ms)

        def close(self, flush=False):
            """Close both sockets (what the kernel holds still goes out)."""
            for s in (self.sock, self.raw):
                try:
                    s.close()
                except Exception:
                    pass

        async def shutdown(self, ms):
            self.close()

else:

    class CConn(_Deadlines):
        """CPython: standard asyncio streams and TLS."""

        def __init__(self, reader, writer):
            super().__init__()
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
            self.w.write(data)  # asyncio buffers it; close(True) lets it go out

        async def start_tls(self, ctx, hostname=None, server_side=False, ms=None):
            # The whole handshake here (reading resumes once TLS is in place). asyncio's own
            # handshake timeout, not wait_for: a start_tls run as wait_for's task left the next
            # POP3S handshake of the server hanging (CPython 3.11).
            if ms is not None:
                self._hs_begins(ms)
            try:
                await self.w.start_tls(ctx, server_hostname=hostname, ssl_handshake_timeout=self.budget())
            except (ConnectionAbortedError, asyncio.TimeoutError):
                t = self._expired(None)
                if t.name == DEADLINE_IDLE:
                    raise
                raise t
            self._hs_done()

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


async def connect(host, port, ms, ctx=None):
    """A TCP connection to host:port (with `ctx`, implicit TLS to that host), within ms."""
    try:
        if IS_MICROPYTHON:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), ms / 1000)
        else:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None),
                                          ms / 1000)
    except asyncio.TimeoutError:
        raise Timeout()
    if IS_MICROPYTHON:
        c = Conn(r)
        if ctx is not None:
            await c.start_tls(ctx, host)
        return c
    return CConn(r, w)
