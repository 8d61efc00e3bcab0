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
writer)` (CPython: asyncio.start_server's streams, hostconn.Conn's; MicroPython: the accepted
socket and its address, listener.ServerConn's). The hooks `_bound`, `_expired`, `_hs`,
`_through` are where listener.ServerConn puts its deadlines.

MicroPython (`Conn`): reads and writes go to the raw (or TLS-wrapped, non-blocking) socket;
when it answers None (would block) the task parks on asyncio's poller until the socket is
ready (`_wait`, the same mechanism asyncio's own streams use; recv_into is that wait's
generator, reading too), bounded as above (`_alarm`: one timer task for every connection's waits
throws Timeout into a wait whose bound ran out; not asyncio.wait_for). No polling loop. TLS is
never handed to the listener (a failed handshake would leak the socket): the
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

from pocketpost.compat import IS_MICROPYTHON, TIMEOUT_ERRNOS, const, errno_of, ticks_add, ticks_diff, ticks_ms


class Timeout(Exception):
    """A read, write, connect or handshake did not finish within its bound; `name`: which bound
    (a server's named deadline, see listener.py; "idle" for a wait's own bound)."""

    def __init__(self, name="idle"):
        super().__init__(name)
        self.name = name


if IS_MICROPYTHON:
    # MicroPython asyncio internals (asyncio.core: the poller and the run queue), reached through
    # the asyncio name: an import of core under a name of ours would be one more interned name.

    # The timer of every connection's waits (Conn._wait, listener.ServerConn's too): one task
    # wakes the parked tasks whose bound has run out, sleeping until the earliest. _timer: that
    # task, or None when no wait is parked; when it wakes; the event loop's run queue it was made
    # on (a new loop, asyncio.new_event_loop(), gets a timer of its own); the poll object
    # listener.ServerConn.gone looks through, made at its first look; and the parked tasks, each
    # with the ticks_ms its bound runs out at. Slots in one list, not module names of their own:
    # each would be one more interned name (the fetch's count is at its limit: test_fetch_heap).
    # Not asyncio.wait_for (asyncio.funcs: ~0.9 KB of heap on the 64-bit unix port once loaded,
    # and a runner task, its closure and frames on top of each wait), nor an alarm task per wait
    # (a task and its coroutine per waiting connection, ~290 B).
    _timer = [None, 0, None, None, {}]  # type: list

    def _alarm(s):
        # The current task, its wait bounded by s seconds: _expire throws Timeout into it then,
        # as Task.cancel does with CancelledError (off the poller, onto the run queue, the
        # exception in t.data), but only if it is still parked on the poller. Not a cancel: a
        # cancel from outside (e.g. the board's per-account deadline) landing in the same
        # scheduler pass would be the same CancelledError as ours, and told apart by guesswork
        # only. This way the task gets whichever came last: an outside cancel is always a
        # CancelledError, the bound alone a Timeout, and a socket that became ready before the
        # timer ran wins over it. The waiter takes itself out of _timer[4] when its wait ends.
        # Few locals: a plain function's frame then stays off the heap (with 6: 136 B per wait).
        due = ticks_add(ticks_ms(), int(s * 1000))
        t = asyncio.current_task()
        _timer[4][t] = due
        q = asyncio.core._task_queue  # type: ignore[attr-defined]
        if _timer[0] is None or _timer[2] is not q:  # (a new event loop gets a timer of its own)
            _timer[1] = due
            _timer[2] = q
            _timer[0] = asyncio.create_task(_expire())
        elif ticks_diff(due, _timer[1]) < 0:  # sooner than the timer wakes: it wakes sooner
            _timer[1] = due
            q.remove(_timer[0])
            q.push(_timer[0], due)
        return t

    async def _expire():
        # Allocates nothing (a full heap cannot stop it): one wait that ran out per scan.
        q = asyncio.core._io_queue  # type: ignore[attr-defined]
        waits = _timer[4]
        try:
            while waits:
                now = ticks_ms()
                soon = None
                late = None
                for t in waits:
                    due = waits[t]
                    if ticks_diff(due, now) <= 0:
                        late = t
                        break
                    if soon is None or ticks_diff(due, soon) < 0:
                        soon = due
                if late is not None:
                    del waits[late]
                    if late.data is q:  # still parked (see _alarm)
                        q.remove(late)
                        asyncio.core._task_queue.push(late)  # type: ignore[attr-defined]
                        late.data = Timeout
                    continue
                _timer[1] = soon
                await asyncio.sleep_ms(ticks_diff(soon, now))
        finally:  # also when cancelled or unwound (Ctrl-C): the next wait makes a new timer
            _timer[0] = None


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

        def _wait(self, write, ms, mv=None):
            """(Awaited.) Park until the socket is writable (write) or readable, bounded by ms
            (Timeout, as _expired names it). With mv, recv_into: a read is tried first and after
            each wait, and its count returned. The task parks on the poller in this frame: no
            coroutine of its own for the poller, nor for recv_into (a session waiting for its
            next command holds one frame, and a read makes one coroutine: with recv_into's own
            there were two, 192 B more on the 64-bit host).
            A plain generator: CPython parses this module too, and an async def may not return
            a value once it yields (MicroPython awaits either)."""
            while True:
                if mv is not None:
                    try:
                        n = self.recv_now(mv)
                    except OSError as e:
                        if not would_block(e):
                            raise
                        n = None
                    if n is not None:
                        return n
                t = _alarm(self._bound(ms))
                try:
                    q = asyncio.core._io_queue  # type: ignore[attr-defined]
                    # The raw socket, also under TLS: the poller then holds file descriptors
                    # only. An SSL socket has none, and the unix port's select.poll, mixing the
                    # two, crashed (SIGSEGV) or lost the TLS session's wake-ups with 4+
                    # connections (host_tests/test_server_poll.py).
                    yield q.queue_write(self.raw) if write else q.queue_read(self.raw)
                except Timeout:  # the timer's: the Timeout named by the bound's owner
                    raise self._expired(ms)
                finally:
                    _timer[4].pop(t, None)
                if mv is None:
                    return

        def recv_now(self, mv):
            """What recv_into would read without waiting: bytes read into mv (> 0), 0 at end of
            stream, None when nothing is there yet (then await recv_into). A bulk reader's fast
            path: no coroutine per read, and no try here (a function with one gets its frame
            from the heap on every call): an OSError for which would_block(e) is true means None
            too (a non-blocking socket answers None; the check is _wait's, kept just in case)."""
            n = self.sock.readinto(mv)  # drives a TLS handshake; returns decrypted bytes
            if n and self.handshaking:
                self._through()
            return n

        def recv_into(self, mv, ms=None):
            """Bytes read into mv (> 0), or 0 at end of stream: a coroutine (_wait's, which
            reads too)."""
            return self._wait(False, ms, mv)

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

