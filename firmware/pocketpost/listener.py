"""What every listener shares (the POP3 server and the SMTP receiver): the server side of a
connection (named deadlines, STLS), peer addresses, and session slots with eviction.

Deadlines. `ServerConn` is transport.py's connection of the runtime with a server's bounds:
each wait is bounded by `idle` seconds or, while one is set, by an absolute deadline with a
name, each named in the log line that closes the connection:
    tls-handshake  the whole TLS handshake (start_tls(..., ms)), however the peer trickles it (a
                   ClientHello that claims 8 MB and sends nothing more is cut here). On
                   MicroPython the handshake runs inside the first reads and writes: the deadline
                   bounds those until a byte of application data has gone through (implicit
                   TLS: the greeting is written; after STLS: the first command is read, so there
                   it also covers the wait for that command)
    authorization  set by the shell with limit(): from admission (after any wait for a slot,
                   Slots.wait) until login
    idle           `idle` seconds per wait once the shell has called no_limit()
(the earlier of tls-handshake and authorization wins). A wait past its deadline raises
transport.Timeout(name); pause() (a failed-login delay) is cut short there too. On MicroPython
a waiting connection holds no alarm task of its own (transport.Conn's): one timer task for every
server connection (_expire) sleeps until the earliest bound and wakes whichever wait ran out.

Slots. Fairness: connections that have not got anywhere yet ("pre-auth": a TLS handshake,
POP3's AUTHORIZATION state or a failed-login delay, SMTP before MAIL on port 25 or AUTH on
submission) can never keep a user out, and a mail client's second connection does not cut its
first. The caps are applied when a connection is accepted, before any greeting, TLS handshake
or session is spent on it. A new connection that finds a cap full:
  1. waits for a slot to free, up to its section's `slot_wait` seconds (8: an ESP32's TLS
     handshake, a login hash, STAT and QUIT take a few; a mail client waits far longer for a
     greeting), holding only its socket: no greeting, no TLS, no buffer, no task but its own.
     First come, first served: a slot that frees (release) is handed at once to the oldest
     waiting connection it can admit (one whose address is below max_sessions_per_addr: a
     freed slot of address A goes past a waiting connection of B at its own cap), so a newcomer
     finds free only a slot that no waiting connection could take. A waiting connection looks
     every slotwait._WAIT_STEP_MS for the slot handed to it (a hand-over that failed for want of heap
     is tried again there) and for its peer's close (then it is let go at once;
     ServerConn.gone says what each runtime can see). Thunderbird checking two accounts at
     start-up opens two connections from one address at once: at max_sessions_per_addr 1 (the
     ESP32's) the second waits while the first logs in, reads and quits, then gets its greeting
     (it used to evict the first, not yet logged in: an error on one account at every
     start-up); a third waits behind the second, and when its wait runs out it may not evict
     a slot handed since it came (to a connection ahead of it). At most _WAITING_MAX connections of a service
     (both POP3 ports; all SMTP ports) wait at a time. With the room full, a newcomer from an
     address that holds no place takes the newest place of an address that holds more than one
     (that connection gets the rule below at once): one host cannot turn the wait off for the
     others. Any other newcomer skips the wait.
  2. then takes the slot of the oldest pre-auth connection it may take, which is closed at once
     ("evicted" in the log; told -ERR [SYS/TEMP] / 421):
     - its address at max_sessions_per_addr: the oldest pre-auth connection of that address
       (one address churning connections only ever evicts its own);
     - else the listener at max_sessions: the oldest pre-auth connection of any address;
     but not one of its own address that is getting somewhere (a command answered, or its TLS
     handshake done, in the last _FRESH_MS) while young (admitted less than slotwait._YOUNG_MS ago): a
     client's connection that is logging in is not cut by its sibling.
  3. Only when no slot is left to take is it refused (-ERR [SYS/TEMP], SMTP 421).
The SMTP receiver's listeners (listen(..., slots)) go further: while Slots.busy() (every slot
taken or the waiting room full, each slot past pre-auth or admitted or answered in the last
_FRESH_MS) a new connection is not accepted at all (one from another host too, though a slot may
be free for it: its address is known only once accepted). It waits in the listen backlog, holding no socket (an ESP32's lwIP: a PCB and a
netconn from its own heap; at most CONFIG_LWIP_TCP_ACCEPTMBOX_SIZE, 6, per port, the next one
reset), and a sender waits minutes for its greeting (RFC 5321 4.5.3.2): a camera's burst at one
session is served in turn, not evicting itself. A slot quiet for longer (a device that delivered
and sits without QUIT, a silent peer) lets the next connection in, which then waits or evicts as
above. The POP3 listeners accept at once, as before (their waiting room serves a mail client's
second connection in turn).
So silent peers, garbage ClientHellos and failed-login delays hold a slot only until a newer
connection has waited `slot_wait` for it (and never past their deadline); a session past
pre-auth is never evicted. What remains: connections beyond the _WAITING_MAX waiting skip the
wait, so a flood (connections opened faster than a login takes: one TLS handshake and one
hash) can still evict a user who is logging in, from other addresses only once the listener is
full: a flood, not a camp. `slot_wait` is each connection's own budget from its arrival: a
client checking three accounts at once needs the two sessions ahead of its third within it. A
peer's close is looked for (ServerConn.gone) at each step of its wait and before it evicts,
also behind an implicit-TLS peer's unread ClientHello (poll's POLLRDHUP): on the unix port it is
let go at once and evicts no one. An ESP32 cannot see such a close without reading the hello
(MicroPython's esp32 socket: recv() takes no flags, its poll reports lwIP's select only): there it
holds its place until its wait ends and may evict or be handed a slot, its handshake failing
then (POP3S logs the certificate hint). A waiting connection costs its task, its handler's frame,
its connection object and socket (~0.9 KB on the 64-bit host, measured) and its place, a Slot
(~100 B); the POP3 shell has loaded pop3cmd.py before it asks for a slot, as for any connection.
"""

import asyncio

from pocketpost import log
from pocketpost.compat import IS_MICROPYTHON, TIMEOUT_ERRNOS, const, errno_of, release_cold, ticks_add, ticks_diff, ticks_ms
from pocketpost.transport import Timeout

from pocketpost.transport import Conn  # (hostconn.Conn on CPython)

# The names of the deadlines, as the log lines and the tests see them: "tls-handshake",
# "authorization" (set by server.py and smtpserver.py) and "idle", each a literal where used (a
# module-level name would be one more interned name).
_LISTEN_BACKLOG = const(4)  # pending connections the kernel/lwIP queues per listener (copied where listened)
# The same for a listener that leaves connections there while its slots are busy (Slots.busy:
# SMTP's). Linux answers SYNs beyond it at once with SYN cookies, and a cookie's connection that
# finds the accept queue full is dropped without a word: its sender (who waits for the greeting)
# hangs until its own timeout (20 smtplib senders at once, one session: 4 delivered 11, 8 19,
# 16 20). lwIP counts only half-open connections in it (tcp_backlog_accepted), and queues at most
# CONFIG_LWIP_TCP_ACCEPTMBOX_SIZE (6) established ones per port, resetting the next.
_HELD_BACKLOG = const(16)
# How often a listener holding a connection back looks whether a slot freed: the next sender is
# greeted within it of a session's end (at 100 ms 20 senders 30 ms apart took 1.7 s, not 0.6 s:
# the step, not the session, set the pace). A wake-up per step only while both last.
_HOLD_STEP_MS = const(20)
# Plaintext a client pipelined after STLS that is read off the socket and dropped before the +OK
# (RFC 2595 section 4): at most this much; beyond it the TLS handshake fails on the rest.
_STLS_DRAIN_MAX = const(4096)
# The drain reads in pieces this big: a small buffer made only at STLS (pipelined plaintext is a
# few commands; the heap is not spent on a buffer as big as all of _STLS_DRAIN_MAX).
_STLS_DRAIN_BLOCK = const(256)
# Connections of one service that wait at a time (each holds a socket: an ESP32 has 10 in all,
# boardstart.check counts these as _WAITING, boards/esp32/BUDGET.md "Sockets"); one more
# skips the wait, unless it takes a place from an address holding more than one (slotwait.wait).
# Two: a mail client's second connection and one more, say a second client.
_WAITING_MAX = const(2)
# A pre-auth session that got somewhere (a command answered, its TLS handshake done) this
# recently is not evicted by a connection from its own address while young (slotwait.evict) and
# keeps a new connection in the listen backlog (Slots.busy).
_FRESH_MS = const(3000)
# After a failed accept (MicroPython): the accept loop's pause before it polls again. Out of file
# descriptors (EMFILE) the connection stays queued and the socket readable: without it, a spin.
# (An ESP32 out of lwIP sockets, ENFILE, closes that connection itself: the next one may fit.)
_ACCEPT_RETRY_MS = const(100)
# poll()'s flag for a peer that closed its side, also with octets still unread (Linux's value;
# MicroPython's select module names none): ServerConn.gone.
_POLLRDHUP = const(0x2000)


# setsockopt(IPPROTO_TCP, TCP_NODELAY): the same numbers in Linux and lwIP (the unix port's socket
# module names neither). A reply's short last segment would wait, by Nagle's rule, for the ACK of
# the data before it, which the client delays (~40 ms on Linux): every RETR ended with that stall.
# So a server turns Nagle off for the last write of a multi-line reply only (both stacks then send
# all that is queued at once), and on again for the bulk, where it merges 1 KiB writes into full
# segments. (Here, not in transport.py, which a fetch loads: 128 B of its heap for a server's
# function.)
_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)


def nodelay(conn, on):
    """TCP_NODELAY on (1) or off (0) for conn: MicroPython only (CPython's asyncio sets it on
    every socket itself); best effort."""
    if IS_MICROPYTHON:
        try:
            conn.raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, on)
        except Exception:  # a port without the option keeps Nagle (and the stall)
            pass


def peer_ip(writer):
    """The peer address as a string, from what a handler was given (listen(): MicroPython's
    accept() address, asyncio's stream on CPython): MicroPython's unix port gives a raw sockaddr,
    the ESP32 a tuple, CPython a tuple."""
    try:
        peer = writer if IS_MICROPYTHON else writer.get_extra_info("peername")
        if isinstance(peer, tuple):
            return str(peer[0])
        b = bytes(peer)
        # sockaddr_in: family 2 (Linux: 16-bit little-endian; BSD: length byte, then family)
        if len(b) >= 8 and ((b[0] == 2 and b[1] == 0) or b[1] == 2):
            return "%d.%d.%d.%d" % (b[4], b[5], b[6], b[7])
    except Exception:  # no peername (a closed socket), or a form not parsed above
        pass
    return "?"


async def listen(cb, host, port, slots=None):
    """Accept connections on host:port; cb(reader, writer) hands back the coroutine that runs as
    the connection's task. Returns the listener for close() and listener_tasks(). slots: a
    connection is not accepted while slots.busy() (MicroPython; see Slots.busy). CPython:
    asyncio.start_server (reader and writer its streams). MicroPython: asyncio.start_server's
    work without its Server and Stream objects (per listener an object and a larger coroutine,
    per connection a stream, its attribute table and an extra-info dict: ~1 KB in bench_heap c):
    the listener is (its accept task, the listening socket), a connection's handler gets the socket and the peer's
    address (ServerConn.from_stream and peer_ip take those)."""
    if not IS_MICROPYTHON:
        return await asyncio.start_server(cb, host, port, backlog=_LISTEN_BACKLOG)
    import socket

    a = socket.getaddrinfo(host, port)[0][-1]
    s = socket.socket()
    try:
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(a)
        s.listen(_LISTEN_BACKLOG if slots is None else _HELD_BACKLOG)
    except Exception:  # (the port in use...): the socket is not left open
        s.close()
        raise
    return asyncio.create_task(_serve(s, cb, slots)), s


def close(listeners):
    """Stop listening. MicroPython: the accept task is cancelled and its socket closed here (a
    task cancelled before it first ran never reaches its finally: a second port failing right
    after the first was listened on left the first bound)."""
    for s in listeners:
        if IS_MICROPYTHON:
            s[0].cancel()
            s[1].close()
        else:
            s.close()


def listener_tasks(listeners):
    """The accept tasks (MicroPython; CPython's servers close by themselves): for board.main to
    cancel after Ctrl-C."""
    return [s[0] for s in listeners] if IS_MICROPYTHON else []


class ServerConn(Conn):
    """A server's connection: transport's, its waits bounded by the named deadlines (pass no
    `ms`). Make one with ServerConn.from_stream(reader, writer), then set `idle`."""

    idle = None  # seconds per wait without a deadline (the idle timeout)
    until = None  # ticks_ms of the absolute deadline, or None: idle timeout only
    name = "idle"
    _saved = None  # the deadline a handshake interrupted

    def limit(self, name, seconds):
        """Set an absolute deadline `seconds` from now (replaces the current one)."""
        self.until = ticks_add(ticks_ms(), int(seconds * 1000))
        self.name = name

    def no_limit(self):
        """Authenticated: from now on only the idle timeout bounds a wait."""
        self.until = None
        self.name = "idle"
        self._saved = None

    def _hs(self, ms):
        self._saved = (self.until, self.name)
        until = ticks_add(ticks_ms(), int(ms))
        if self.until is None or ticks_diff(self.until, until) > 0:
            self.until = until
            self.name = "tls-handshake"
        return None  # the handshake's waits: bounded by the deadlines

    def _through(self):
        self.handshaking = False
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
        if ms is None:
            return self.budget()
        if ms <= 0:
            raise Timeout()
        return ms / 1000

    def _expired(self, ms):
        # While a deadline is set, every wait was bounded by it (budget()): it is what ran out
        # (so a wait cut a millisecond early by rounding is still named right).
        if ms is None and self.until is not None:
            return Timeout(self.name)
        return Timeout("idle")

    async def pause(self, seconds):
        """The failed-login delay, cut short (Timeout) at the deadline."""
        b = self.budget()
        if seconds > b:
            await asyncio.sleep(b)
            raise self._expired(None)
        await asyncio.sleep(seconds)

    if IS_MICROPYTHON:

        def __init__(self, stream):
            # transport.Conn's, for listen()'s socket as the stream too (from_stream(reader,
            # writer) hands over the reader: asyncio's stream, or that socket), which start_tls
            # then updates on the connection itself ("s", as a stream's socket is named).
            s = getattr(stream, "s", stream)
            self.stream = self if s is stream else stream
            self.raw = s
            self.sock = s
            self.handshaking = False

        async def _wait(self, write, ms):
            # transport.Conn._wait without its alarm task and the poller coroutine: the task parks
            # on the poller here, and one timer for every server connection (_expire) wakes it
            # with Timeout once its bound has run out, as Conn's alarm does (see transport._alarm:
            # only while it is still parked there, so an outside cancel stays a cancel and a
            # socket that became ready first wins). Per waiting connection that is an alarm task,
            # its coroutine and the poller's coroutine less (~290 B on the 64-bit host), and no
            # task made per wait (a RETR to a slow reader waits once per block).
            due = ticks_add(ticks_ms(), int(self._bound(ms) * 1000))
            t = asyncio.current_task()
            _waits[t] = due
            w = _timer[0]
            q = asyncio.core._task_queue  # type: ignore[attr-defined]
            if w is None or _timer[2] is not q:  # (a new event loop gets a timer of its own)
                _timer[1] = due
                _timer[2] = q
                _timer[0] = asyncio.create_task(_expire())
            elif ticks_diff(due, _timer[1]) < 0:  # sooner than the timer wakes: it wakes sooner
                _timer[1] = due
                q.remove(w)
                q.push(w, due)
            try:
                q = asyncio.core._io_queue  # type: ignore[attr-defined]
                # The raw socket, also under TLS (transport.Conn._wait: the poller holds file
                # descriptors only).
                yield q.queue_write(self.raw) if write else q.queue_read(self.raw)
            except Timeout:  # the timer's: the Timeout named by the deadline that ran out
                raise self._expired(ms)
            finally:
                _waits.pop(t, None)

        def before_tls(self):
            """Before the +OK to STLS. A client starts its handshake only once it has that +OK,
            so whatever is in the socket now is plaintext pipelined after STLS (a command
            injection, RFC 2595 section 4): drop it, or it would reach TLS as a broken
            ClientHello."""
            buf = bytearray(_STLS_DRAIN_BLOCK)
            for _ in range(_STLS_DRAIN_MAX // _STLS_DRAIN_BLOCK):
                try:
                    n = self.raw.readinto(buf)
                except OSError:
                    return
                if not n:  # None: nothing more waiting (non-blocking socket); 0: EOF
                    return

        def gone(self, implicit):
            """Whether the peer of a connection waiting for a slot (Slots.wait) has closed: never
            waits, never takes an octet a TLS handshake needs. A 1-octet MSG_PEEK (the unix port;
            a port whose recv() takes no flags, or without MSG_PEEK, raises TypeError or
            AttributeError): nothing left, or with octets there (an implicit-TLS port's
            ClientHello) poll's POLLRDHUP, the peer's close behind them (Linux's; a port that does
            not pass the flag on never reports it), through one poll object for every connection
            (_timer[3], made at the first look: before, one per step of each wait, every 100 ms),
            the socket registered for the look alone (no await in between). Without MSG_PEEK a plain port's octet is read
            (a POP3 or SMTP client speaks only after its greeting: an octet now is its close, or a
            client that does not wait, let go too), an implicit-TLS port's is left for the
            handshake (an ESP32's lwIP: a close behind a ClientHello is seen at the handshake).
            (CPython's: hostconn.Conn.gone.)"""
            import socket

            s = self.raw
            try:
                try:
                    if s.recv(1, socket.MSG_PEEK) == b"":
                        return True
                except (AttributeError, TypeError):
                    return not implicit and s.readinto(bytearray(1)) is not None
                p = _timer[3]
                if p is None:
                    import select  # (asyncio's: loaded)

                    p = _timer[3] = select.poll()
                p.register(s, _POLLRDHUP)
                try:
                    for _ in p.ipoll(0):  # (no list made: a tuple the poll object reuses)
                        return True
                    return False
                finally:
                    p.unregister(s)
            except OSError as e:  # a reset: gone; nothing there yet: still waiting
                return errno_of(e) not in TIMEOUT_ERRNOS

        def send_nowait(self, data):
            """Best effort, never waits: a last word to a peer that may not be reading."""
            self.sock.write(data)

        def send_some(self, mv):
            """One socket write of mv, no wait: the octets taken (0 when it would block or a TLS
            handshake is under way; `await send()` then does the rest). The RETR loop's block
            write: a coroutine per block (send) cost more CPU than the write itself."""
            if self.handshaking:
                return 0
            try:
                r = self.sock.write(mv)
            except OSError as e:
                if errno_of(e) not in TIMEOUT_ERRNOS:
                    raise
                return 0
            return r or 0



if IS_MICROPYTHON:

    async def _serve(s, cb, slots):
        # listen()'s accept loop (asyncio.start_server's, as MicroPython's asyncio runs it); the
        # work per connection in _accept, a plain function: this coroutine's frame, kept for as
        # long as the port listens, stays small. ok: the last accept() worked. While slots are
        # busy a connection stays in the listen backlog, looked at again every _HOLD_STEP_MS.
        ok = True
        try:
            while True:
                yield asyncio.core._io_queue.queue_read(s)  # type: ignore[attr-defined]
                if slots is not None and slots.busy():
                    await asyncio.sleep_ms(_HOLD_STEP_MS)
                    continue
                ok = _accept(s, cb, ok)
                if not ok:  # (out of descriptors: the connection stays queued, the
                    await asyncio.sleep_ms(_ACCEPT_RETRY_MS)  # socket readable: no spin on it)
        finally:
            s.close()

    def _accept(s, cb, ok):
        # Whether accept() took a connection off the queue. One that cannot be served (a
        # MemoryError making its task) is closed, and the loop goes on: asyncio's ended there,
        # and the port stayed deaf until a restart. When accept() itself fails (no socket free:
        # the unix port's EMFILE/ENFILE, the connection left queued; an ESP32's ENFILE past
        # lwIP's CONFIG_LWIP_MAX_SOCKETS, ENOBUFS/ENOMEM, or ECONNABORTED with no TCP PCB left,
        # lwIP closing the connection; no heap: MemoryError; or the peer left before its
        # accept) the open sessions go on and _serve polls again after _ACCEPT_RETRY_MS. Either
        # is logged, accept()'s failure only when the one before worked (ok): one line for a run
        # of them, not one per poll. One line for both: no text of its own in the heap.
        c = None
        try:
            c, a = s.accept()
            c.setblocking(False)
            asyncio.create_task(cb(c, a))
            return True
        except Exception as e:
            ok = ok or c
            if c:  # (a socket object is true)
                c.close()
            if ok:
                try:  # (the log line needs heap too)
                    log.warning("%r: a connection dropped at its accept", e)
                except Exception:
                    pass
            return c is not None

    # The timer of the server connections' waits (ServerConn._wait): the parked tasks and when
    # each wait's bound runs out (ticks_ms), and the one task that wakes them, sleeping until the
    # earliest (_timer: the task, or None when no wait is parked; when it wakes; the event loop's
    # run queue it was made on: a new loop, asyncio.new_event_loop(), gets a timer of its own;
    # and the poll object ServerConn.gone looks through, made at its first look: a slot in this
    # list, not a module name of its own, which would be one more interned name of the server).
    _waits = {}  # type: dict
    _timer = [None, 0, None, None]  # type: list

    async def _expire():
        # Allocates nothing (a full heap cannot stop it): one wait that ran out per scan.
        q = asyncio.core._io_queue  # type: ignore[attr-defined]
        try:
            while _waits:
                now = ticks_ms()
                soon = None
                late = None
                for t in _waits:
                    due = _waits[t]
                    if ticks_diff(due, now) <= 0:
                        late = t
                        break
                    if soon is None or ticks_diff(due, soon) < 0:
                        soon = due
                if late is not None:
                    del _waits[late]
                    if late.data is q:  # still parked (see transport._alarm)
                        q.remove(late)
                        asyncio.core._task_queue.push(late)  # type: ignore[attr-defined]
                        late.data = Timeout
                    continue
                _timer[1] = soon
                await asyncio.sleep_ms(ticks_diff(soon, now))
        finally:  # also when cancelled or unwound (Ctrl-C): the next wait makes a new timer
            _timer[0] = None


# Connections running slotwait.py's code (Slots.wait): the last one out drops it (release_cold).
_held = [0]


class Slot:
    """One admitted connection: its task (to evict it), whether it is still pre-auth, when it
    was admitted and when it last got somewhere while pre-auth (its shell sets `seen`). Also a
    place in the waiting room (Slots.wait): sid 0 until release() hands it a slot (Slots.reserve
    sets sid and born), `released` once a newcomer took the place (Slots.wait)."""

    # Set once each, when they change: until then the class's (fewer attributes, a smaller table).
    preauth = True
    seen = None  # ticks_ms of its last command answered (or TLS handshake done) while pre-auth

    def __init__(self, ip, task):
        self.sid = 0
        self.ip = ip
        self.task = task
        self.born = ticks_ms()
        # Its own from the start: setting it later needs no heap (Slots.release, at a session's
        # end on a full heap, where a new attribute's larger table raised MemoryError).
        self.released = False


class Slots:
    """The slots of one service. caps: its config section (max_sessions, max_sessions_per_addr,
    slot_wait, read at each admission); proto: the log lines' prefix ("pop3", "smtp"). A shell
    asks admit(ip, task) for a Slot and, at a full cap (None), awaits wait(ip, task, conn,
    implicit); it sets slot.seen when the session gets somewhere, slot.preauth = False once
    past pre-auth, and release(slot) at its end."""

    def __init__(self, caps, proto):
        self.caps = caps
        self.proto = proto
        self.sessions = 0
        self.per_addr = {}
        self.slots = {}  # sid -> Slot
        # The waiting room (wait), in arrival order: a Slot per waiting connection, sid 0 until
        # release() hands it a slot; at most _WAITING_MAX.
        self.waiting = []
        self._next_id = 0

    def admit(self, ip, task):
        """A Slot for a new connection from ip while the caps allow one; at a full cap None (the
        shell then awaits wait()). (A free slot that a waiting connection can take is never left
        free: release() hands it over, so a newcomer finds only the slots that no waiting
        connection could take.)"""
        c = self.caps
        if self.per_addr.get(ip, 0) >= c["max_sessions_per_addr"] or self.sessions >= c["max_sessions"]:
            return None
        return self.reserve(Slot(ip, task))

    def busy(self):
        """Whether a new connection is left in the listen backlog (the SMTP receiver's listeners:
        listen(..., slots)): every slot is taken, or the waiting room is full (a newcomer would
        skip the wait: one host's burst past its max_sessions_per_addr), and each slot is held by
        a session past pre-auth or one that got somewhere (admitted, or a command answered) in
        the last _FRESH_MS. It holds no socket there (lwIP: a PCB), and a sender waits minutes
        for its greeting (RFC 5321 4.5.3.2): a camera's burst is served in turn instead of
        evicting itself. A pre-auth slot quiet for longer (a device that delivered and sits
        without QUIT) lets the next one in to evict it."""
        if self.sessions < self.caps["max_sessions"] and len(self.waiting) < _WAITING_MAX:
            return False
        now = ticks_ms()
        for slot in self.slots.values():
            if slot.preauth and ticks_diff(now, slot.born if slot.seen is None else slot.seen) >= _FRESH_MS:
                return False
        return True

    def reserve(self, slot):
        """Admit slot (a new connection's, or a waiting one's: release): a new sid, counted in the
        caps from now. A MemoryError leaves the counts as they were."""
        sid = self._next_id + 1
        self.slots[sid] = slot
        ip = slot.ip
        try:
            self.per_addr[ip] = self.per_addr.get(ip, 0) + 1
        except MemoryError:  # (a new key: the dict may grow)
            del self.slots[sid]
            raise
        self._next_id = sid
        self.sessions += 1
        slot.sid = sid
        slot.born = ticks_ms()
        return slot

    async def wait(self, ip, task, conn, implicit):
        """After admit's None: the waiting room, then the eviction of a pre-auth connection
        (slotwait.wait; its doc says what it answers). slotwait.py is cold: loaded while a
        connection waits, dropped after the last (_held), so a server whose caps are not full
        holds none of it."""
        from pocketpost import slotwait

        _held[0] += 1
        try:
            return await slotwait.wait(self, ip, task, conn, implicit)
        finally:
            release_cold(_held, ("slotwait",))

    def release(self, slot):
        """slot's session ended (None: none did): its slot goes to the oldest waiting connection
        it can admit (under both caps), if any; a MemoryError there leaves the waiting ones to
        ask again at their next step (wait). The rest needs no heap: the shells call it last in
        their clean-up, on a full heap too."""
        if slot is not None:
            if self.slots.get(slot.sid) is not slot:  # released already (evicted, or never admitted)
                return
            self.slots.pop(slot.sid)
            self.sessions -= 1
            k = self.per_addr.get(slot.ip, 1) - 1
            if k <= 0:
                self.per_addr.pop(slot.ip, None)
            else:
                self.per_addr[slot.ip] = k
            slot.released = True  # (no heap: its attribute since __init__)
        w = self.waiting
        c = self.caps
        i = 0
        while i < len(w) and self.sessions < c["max_sessions"]:
            e = w[i]
            if self.per_addr.get(e.ip, 0) < c["max_sessions_per_addr"]:
                try:
                    self.reserve(e)
                except MemoryError:
                    return
                w.pop(i)
            else:
                i += 1
