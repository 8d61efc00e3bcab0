"""One connection class per runtime, for every service: the POP3 client, the POP3 server and
the SMTP receiver (`Conn`: this module's on MicroPython, hostconn.py's on CPython; the two servers use it through
listener.ServerConn, which adds a server's named deadlines and STLS needs).

Theory of operation
-------------------
A connection moves bytes and nothing else: `recv_into(mv, ms)` reads what is there into the
caller's buffer (0 at end of stream; `recv_now(mv)` the same without waiting, None when
nothing is there: a bulk reader's fast path), `send(data, ms)` writes all of it, each wait bounded by
`ms` milliseconds (raises `Timeout`). `start_tls(ctx, hostname, server_side, ms)` puts TLS under
the stream (STLS / STARTTLS, or at once for implicit TLS); `close()` drops it at once
(`close(True)`: what is still queued goes out first), `shutdown(ms)` closes politely (after
QUIT). A server adopts what listener.listen hands its handler with `from_stream(reader,
writer)` (CPython: asyncio.start_server's streams; MicroPython: the accepted socket and its
address). The hooks `_bound`, `_expired`, `_hs`, `_through` are where listener.ServerConn puts
its deadlines.

MicroPython (`Conn`): reads and writes go to the raw (or TLS-wrapped, non-blocking) socket;
when it answers None (would block) the task parks on asyncio's poller until the socket is
ready (`_wait`, the same mechanism asyncio's own streams use), bounded as above (`_alarm`:
a task that cancels the wait when its bound runs out, not asyncio.wait_for). No polling loop. TLS is never handed to the listener (a failed handshake would leak the socket): the
socket is wrapped here, the raw one kept and closed too. MicroPython's TLS socket has no
do_handshake(): with do_handshake_on_connect=False the handshake runs inside the first reads
and writes, which answer None while it waits for the peer's next flight; so until the first
byte of application data has gone through either way (`_through`), a stalled write waits for
readability instead of writability. A TLS client whose peer speaks first (POP3) drives the
handshake with its first read. Writes go straight to the socket: asyncio's StreamWriter.write
would copy unsent data into a new bytes object.

CPython (hostconn.Conn, also transport.Conn there): standard asyncio streams and TLS (the host's
debugging and test runtime), in a module of its own: every name a loaded module holds is interned,
run or not, so the board never loads that code.
"""

import asyncio

from pocketpost.compat import IS_MICROPYTHON, TIMEOUT_ERRNOS, const, errno_of, ticks_diff, ticks_ms


class Timeout(Exception):
    """A read, write, connect or handshake did not finish within its bound; `name`: which bound
    (a server's named deadline, see listener.py; "idle" for a wait's own bound)."""

    def __init__(self, name="idle"):
        super().__init__(name)
        self.name = name


if IS_MICROPYTHON:
    # MicroPython asyncio internals (asyncio.core: the poller and the run queue), reached through
    # the asyncio name: an import of core under a name of ours would be one more interned name.

    async def _alarm(t, s):
        # wait_for's timer without asyncio.wait_for (asyncio.funcs: ~0.9 KB of heap on the 64-bit
        # unix port once loaded, and a runner task, its closure and frames on top of each wait):
        # after s seconds, wake task t with Timeout thrown in, as Task.cancel does with
        # CancelledError (off the poller, onto the run queue, the exception in t.data), but only
        # if t is still parked on the poller. Not a cancel: a cancel from outside landing in the
        # same scheduler pass (before this, or after it and before t runs) would be the same
        # CancelledError as ours, and told apart by guesswork only. This way t gets whichever
        # came last: an outside cancel is always a CancelledError, the bound alone a Timeout,
        # and a socket that became ready before the alarm ran wins over it.
        await asyncio.sleep(s)
        q = asyncio.core._io_queue  # type: ignore[attr-defined]
        if t.data is q:
            q.remove(t)
            asyncio.core._task_queue.push(t)  # type: ignore[attr-defined]
            t.data = Timeout


def would_block(e):
    """An OSError that only says "nothing there yet" (see Conn.recv_now)."""
    return errno_of(e) in TIMEOUT_ERRNOS


_ROUNDING_MS = const(20)  # a timer may fire this much before ticks_ms says its time has come


class _Bounds:
    """How long a wait may take: `ms` given by the caller (listener.ServerConn overrides these
    for its named deadlines)."""

    def _bound(self, ms):
        """Seconds for the next wait."""
        if ms <= 0:
            raise Timeout()
        return ms / 1000

    def _expired(self, ms):
        """The Timeout for a wait that ran out of its bound."""
        return Timeout()

    def _hs(self, ms):
        """A TLS handshake begins, bounded by ms: the bound its waits get."""
        return ms

    def _through(self):
        """A byte of application data went through: any handshake is over."""
        self.handshaking = False


# Only the running runtime's class is defined: the other would be heap for nothing.
if IS_MICROPYTHON:

    class Conn(_Bounds):
        """MicroPython: one connection's I/O through the raw socket and asyncio's poller."""

        def __init__(self, stream):
            self.stream = stream
            self.raw = stream.s
            self.sock = stream.s
            self.handshaking = False

        @classmethod
        def from_stream(cls, reader, writer):
            return cls(reader)

        async def start_tls(self, ctx, hostname=None, server_side=False, ms=None):
            """Wrap the socket; the handshake runs inside the next reads and writes (bounded by
            theirs; a server's by its handshake deadline too)."""
            self._hs(ms)
            if server_side:
                s = ctx.wrap_socket(self.raw, server_side=True, do_handshake_on_connect=False)
            else:
                s = ctx.wrap_socket(self.raw, server_hostname=hostname, do_handshake_on_connect=False)
            s.setblocking(False)
            self.sock = s
            self.stream.s = s
            self.handshaking = True

        async def _wait(self, write, ms):
            s = self._bound(ms)
            # The raw socket, also under TLS: the poller then holds file descriptors only. An SSL
            # socket has none, and the unix port's select.poll, mixing the two, crashed (SIGSEGV)
            # or lost the TLS session's wake-ups with 4+ connections (host_tests/test_server_poll.py).
            # The bound: an alarm task throws Timeout into this one when it runs out (see _alarm);
            # a cancel from outside (e.g. the board's per-account deadline) goes on as it is.
            # The task parks on the poller in this frame (no coroutine of its own for it: one
            # frame less held through every wait).
            a = asyncio.create_task(_alarm(asyncio.current_task(), s))
            try:
                q = asyncio.core._io_queue  # type: ignore[attr-defined]
                yield q.queue_write(self.raw) if write else q.queue_read(self.raw)
            except Timeout:  # the alarm's: the Timeout named by the bound's owner
                raise self._expired(ms)
            finally:
                a.cancel()

        def recv_now(self, mv):
            """What recv_into would read without waiting: bytes read into mv (> 0), 0 at end of
            stream, None when nothing is there yet (then await recv_into). A bulk reader's fast
            path: no coroutine per read, and no try here (a function with one gets its frame
            from the heap on every call): an OSError for which would_block(e) is true means None
            too (a non-blocking socket answers None; the check is recv_into's, kept just in case)."""
            n = self.sock.readinto(mv)  # drives a TLS handshake; returns decrypted bytes
            if n and self.handshaking:
                self._through()
            return n

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
                    if n and self.handshaking:
                        self._through()
                    return n
                await self._wait(False, ms)

        async def send(self, data, ms=None):
            # A memoryview (the server's RETR block) as it is: another view would be garbage per block.
            mv = data if isinstance(data, memoryview) else memoryview(data)
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
                    if self.handshaking:
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

else:  # CPython, the host's runtime: asyncio's streams, in hostconn.py (never loaded by MicroPython)

    def __getattr__(name):
        # transport.Conn, loaded at its first use (hostconn imports this module for _Bounds: an
        # import here at load would find it half made when hostconn is the first one imported)
        if name == "Conn":
            from pocketpost.hostconn import Conn

            return Conn
        raise AttributeError(name)

