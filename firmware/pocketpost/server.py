"""The asyncio POP3 server shell: POP3 with STLS on one port, POP3S (implicit TLS) on another.

Theory of operation
-------------------
The protocol lives in pop3server.Session (sans-I/O); this module only moves bytes. Per
connection it allocates, once: a wire.LineReader (commands), one out buffer (block_size) that
RETR/TOP/LIST/UIDL replies are produced into, and the BodyProducer's file block. It reads
straight into the LineReader's buffer and writes straight to the socket, so a 10 MiB RETR costs
the same heap as a 1 KiB one. A client that stops reading blocks only its own task (its writes
wait for the socket to become writable, bounded by the idle timeout).

MicroPython specifics (see the host notes): asyncio's StreamWriter.write copies unsent data
into a new bytes object, so on MicroPython we write to the raw socket and wait for
writability through asyncio's I/O queue ourselves. TLS is never handed to start_server
(a failed handshake would leak the socket): the handler wraps the socket itself, keeps the raw
one, and closes both in its finally. STLS swaps the stream's socket for the wrapped one.
A non-blocking TLS socket answers None while its handshake waits for the peer, so until the
first byte has gone through, a stalled write waits for readability instead of writability.

Deadlines (config "server"): three, each named in the log line that closes the connection.
    tls-handshake  tls_handshake_timeout s for a TLS handshake (POP3S and after STLS), the
                   whole handshake however the peer trickles it (a ClientHello that claims 8 MB
                   and sends nothing more is cut here)
    authorization  auth_timeout s from connect until a successful login, whatever is sent
                   (failed-login delays included)
    idle           idle_timeout s per wait once logged in (RFC 1939's autologout timer)
Before login a wait is bounded by its deadline only, after login by the idle timeout only.

Every handler body runs under try/finally: the maildrop lock, the session counts and the
sockets are released however the session ends (QUIT, drop, timeout, error, MemoryError).
"""

import sys

import asyncio

from pocketpost import config as config_mod
from pocketpost.config import open_store
from pocketpost import heapmark, log, tls
from pocketpost.compat import IS_MICROPYTHON, TIMEOUT_ERRNOS, const, errno_of, ticks_add, ticks_diff, ticks_ms
from pocketpost.pop3 import reply
from pocketpost.pop3server import TRANSACTION, Service, Session
from pocketpost.wire import LineReader

# Room for pipelined commands beyond one maximal line (RFC 2449 PIPELINING): a client may send
# a whole batch at once; lines are taken out of this buffer in order, nothing is lost.
READ_EXTRA = 256
LISTEN_BACKLOG = 4  # pending connections the kernel/lwIP queues per listener
# Plaintext a client pipelined after STLS that is read off the socket and dropped before the +OK
# (RFC 2595 section 4): at most this much; beyond it the TLS handshake fails on the rest.
STLS_DRAIN_MAX = 4096
# setsockopt(IPPROTO_TCP, TCP_NODELAY): the same numbers in Linux and lwIP (the unix port's socket
# module names neither). A reply's short last segment would wait, by Nagle's rule, for the ACK of
# the data before it, which the client delays (~40 ms on Linux): every RETR ended with that stall.
# So Nagle is off for the last write of a multi-line reply only (both stacks then send all that is
# queued at once) and on again for the bulk, where it merges the 1 KiB writes into full segments.
_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)


def _nodelay(conn, on):
    """MicroPython only (CPython's asyncio sets TCP_NODELAY itself); best effort."""
    if IS_MICROPYTHON:
        try:
            conn.raw.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, on)
        except Exception:  # a port without the option keeps Nagle (and the stall)
            pass

if IS_MICROPYTHON:
    from asyncio import core as _core  # type: ignore[attr-defined]  # MicroPython asyncio internals

    async def _wait_io(sock, write):
        # MicroPython's asyncio: park this task on the poller until sock is ready.
        if write:
            yield _core._io_queue.queue_write(sock)
        else:
            yield _core._io_queue.queue_read(sock)


# The names of the deadlines, as the log lines and the tests see them.
DEADLINE_HANDSHAKE = "tls-handshake"
DEADLINE_AUTH = "authorization"
DEADLINE_IDLE = "idle"


class _Timeout(Exception):
    def __init__(self, name):
        super().__init__(name)
        self.name = name


def _peer_ip(peer):
    """The peer address as a string: MicroPython's unix port gives a raw sockaddr, the ESP32 a
    tuple, CPython a tuple."""
    try:
        if isinstance(peer, tuple):
            return str(peer[0])
        b = bytes(peer)
        # sockaddr_in: family 2 (Linux: 16-bit little-endian; BSD: length byte, then family)
        if len(b) >= 8 and ((b[0] == 2 and b[1] == 0) or b[1] == 2):
            return "%d.%d.%d.%d" % (b[4], b[5], b[6], b[7])
    except (TypeError, ValueError, IndexError):
        pass
    return "?"


class _Deadlines:
    """The named deadlines of one connection (see the module docstring).

    Every wait of the connection is bounded by the idle timeout or, while one is set, by an
    absolute deadline with a name: "authorization" from connect until login, "tls-handshake"
    while a handshake runs (the earlier of the two wins). A wait past its deadline raises
    _Timeout(name)."""

    def __init__(self, idle):
        self.idle = idle
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

    def handshake_begins(self, seconds):
        self._saved = (self.until, self.name)
        until = ticks_add(ticks_ms(), int(seconds * 1000))
        if self.until is None or ticks_diff(self.until, until) > 0:
            self.until = until
            self.name = DEADLINE_HANDSHAKE

    def handshake_done(self):
        if self._saved is not None:
            self.until, self.name = self._saved
            self._saved = None

    def budget(self):
        """Seconds the next wait may take; raises _Timeout once the deadline has passed."""
        if self.until is None:
            return self.idle
        left = ticks_diff(self.until, ticks_ms())
        if left <= 0:
            raise _Timeout(self.name)
        return left / 1000

    async def pause(self, seconds):
        """The failed-login delay, cut short (and the connection closed) at the deadline."""
        b = self.budget()
        if seconds > b:
            await asyncio.sleep(b)
            raise self.timeout()
        await asyncio.sleep(seconds)

    def timeout(self):
        """The _Timeout for a wait that ran out of budget."""
        if self.until is not None and ticks_diff(self.until, ticks_ms()) <= 0:
            return _Timeout(self.name)
        return _Timeout(DEADLINE_IDLE)


class _Conn(_Deadlines):
    """One connection's I/O on MicroPython: raw socket reads/writes through asyncio's poller.

    The handshake: MicroPython's TLS socket has no do_handshake(); with
    do_handshake_on_connect=False the handshake runs inside the first reads and writes, which
    answer None while it waits for the peer (a ClientHello that claims 8 MB waits for the rest
    forever). Each of those waits is bounded by the handshake deadline; the first byte of
    application data through the socket ends it (implicit TLS: the greeting is written; after
    STLS: the first command is read, so there the handshake deadline also covers the wait
    for that first command)."""

    def __init__(self, stream, idle, handshake_s):
        super().__init__(idle)
        self.stream = stream
        self.raw = stream.s
        self.sock = stream.s
        self.handshake_s = handshake_s
        self.handshaking = False

    def before_tls(self):
        # Called before the +OK to STLS goes out. A client starts its handshake only once it has
        # that +OK, so whatever is in the socket now is plaintext pipelined after STLS (a command
        # injection, RFC 2595 section 4): drop it, or it would reach TLS as a broken ClientHello.
        buf = bytearray(256)
        for _ in range(STLS_DRAIN_MAX // 256):
            try:
                n = self.raw.readinto(buf)
            except OSError:
                return
            if not n:  # None: nothing more waiting (non-blocking socket); 0: EOF
                return

    def start_tls(self, ctx):
        self.handshake_begins(self.handshake_s)
        self.sock = ctx.wrap_socket(self.raw, server_side=True, do_handshake_on_connect=False)
        self.stream.s = self.sock
        self.handshaking = True

    def _through(self):
        if self.handshaking:
            self.handshaking = False
            self.handshake_done()

    async def _wait(self, write):
        # The raw socket, also under TLS: the poller then holds file descriptors only. An SSL
        # socket has none, and the unix port's select.poll, mixing the two, crashed (SIGSEGV) or
        # lost the TLS session's wake-ups with 4+ connections (host_tests/test_server_poll.py).
        try:
            await asyncio.wait_for(_wait_io(self.raw, write), self.budget())
        except asyncio.TimeoutError:
            raise self.timeout()

    async def recv_into(self, mv):
        """Bytes read into mv (> 0), or 0 at EOF."""
        while True:
            try:
                n = self.sock.readinto(mv)
            except OSError as e:
                if errno_of(e) not in TIMEOUT_ERRNOS:
                    raise
                n = None
            if n is not None:
                if n:
                    self._through()
                return n
            await self._wait(False)

    async def send(self, data, n=None):
        mv = memoryview(data)
        if n is None:
            n = len(data)
        off = 0
        while off < n:
            try:
                r = self.sock.write(mv[off:n] if off or n < len(data) else mv)
            except OSError as e:
                if errno_of(e) not in TIMEOUT_ERRNOS:
                    raise
                r = None
            if r:
                off += r
                self._through()
                continue
            # The handshake waits for the peer's next flight; otherwise the send buffer is full.
            await self._wait(not self.handshaking)

    def send_nowait(self, data):
        """Best effort, never waits: for a last word to a peer that may not be reading."""
        self.sock.write(data)

    def close(self):
        for s in (self.sock, self.raw):
            try:
                s.close()
            except Exception:
                pass


class _CConn(_Deadlines):
    """CPython asyncio streams (for host debugging; the tests run the MicroPython path)."""

    def __init__(self, reader, writer, idle, handshake_s):
        super().__init__(idle)
        self.r = reader
        self.w = writer
        self.handshake_s = handshake_s

    def before_tls(self):
        # Called before the +OK to STLS goes out. Stop reading, so what the client sends after
        # the +OK (its ClientHello) stays in the socket for TLS instead of landing in the
        # plaintext reader; what that reader already holds was pipelined after STLS and is
        # discarded (RFC 2595 section 4), as the LineReader's share is. asyncio has no public
        # call for the latter: its StreamReader keeps them in `_buffer`.
        self.w.transport.pause_reading()
        held = getattr(self.r, "_buffer", None)
        if held:
            del held[:]

    async def start_tls(self, ctx):
        # CPython does the whole handshake here (and resumes reading once TLS is in place).
        # Its own handshake timeout, not wait_for: a start_tls run as wait_for's task left the
        # next POP3S handshake of the server hanging (CPython 3.11).
        self.handshake_begins(self.handshake_s)
        try:
            await self.w.start_tls(ctx, ssl_handshake_timeout=self.budget())
        except (ConnectionAbortedError, asyncio.TimeoutError):
            t = self.timeout()
            if t.name == DEADLINE_IDLE:
                raise
            raise t
        self.handshake_done()

    async def recv_into(self, mv):
        try:
            data = await asyncio.wait_for(self.r.read(len(mv)), self.budget())
        except asyncio.TimeoutError:
            raise self.timeout()
        mv[: len(data)] = data
        return len(data)

    async def send(self, data, n=None):
        self.w.write(bytes(data) if n is None else bytes(data[:n]))
        try:
            await asyncio.wait_for(self.w.drain(), self.budget())
        except asyncio.TimeoutError:
            raise self.timeout()

    def send_nowait(self, data):
        self.w.write(data)  # asyncio buffers it; the transport sends what the peer accepts

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


def _cap_reached(sv, open_all, open_here):
    """Which session limit refuses one more connection (named as in the config), or None."""
    if open_here >= sv["max_sessions_per_addr"]:
        return "per-address cap max_sessions_per_addr=%d reached" % sv["max_sessions_per_addr"]
    if open_all >= sv["max_sessions"]:
        return "global session cap max_sessions=%d reached" % sv["max_sessions"]
    return None


def _listener_tasks(listeners):
    out = []
    for s in listeners:
        t = getattr(s, "task", None)  # MicroPython's asyncio Server; CPython's closes by itself
        if t is not None:
            out.append(t)
    return out


class _Slot:
    """One admitted connection: its task (to evict it) and whether it has logged in yet."""

    def __init__(self, sid, ip, task):
        self.sid = sid
        self.ip = ip
        self.task = task
        self.preauth = True
        self.released = False


class Server:
    """Sessions and admission.

    Fairness: connections not yet logged in (TLS handshake, AUTHORIZATION, a failed-login
    delay: all "pre-auth") can never keep a user out. When a new connection finds a cap full
    it takes the slot of the oldest pre-auth connection there, which is closed at once
    ("evicted" in the log):
      - its address at max_sessions_per_addr: the oldest pre-auth connection of that address
        (one address churning connections only ever evicts its own);
      - else the server at max_sessions: the oldest pre-auth connection of any address.
    Only when every slot it could take is logged in is the new connection refused. The caps
    are applied when the connection is accepted, before any TLS handshake is spent on it.
    So silent peers, garbage ClientHellos and failed-login delays hold a slot only until a
    newer connection needs it (and never past their deadline); a logged-in session is never
    evicted. What remains: a peer that opens connections faster than a login takes (one TLS
    handshake and one hash) can still evict a user who is logging in, and only from addresses
    other than its own once the server is full: a flood, not a camp."""

    def __init__(self, cfg, store, config_path=None):
        self.cfg = cfg
        sv = cfg["server"]
        self.sv = sv
        self.ctx = None
        if sv["cert"] and sv["key"]:
            self.ctx = tls.server_context(sv["cert"], sv["key"])
        self.svc = Service(sv, cfg["users"], store, tls_available=self.ctx is not None)
        self.config_path = config_path
        if config_path:
            self.svc.on_rehash = self._save_hash
        self.sessions = 0
        self.per_addr = {}
        self.slots = {}  # sid -> _Slot
        self._listeners = []
        self._next_id = 0

    def _save_hash(self, name, new_hash):
        """A login rehashed a password to the board's count: write it to the config file as
        written (defaults not baked in), atomically (config.save: temp file, then rename)."""
        raw = config_mod.load_raw(self.config_path)
        users = raw.get("users")
        if not isinstance(users, dict) or not isinstance(users.get(name), dict):
            return
        users[name]["password"] = new_hash
        config_mod.save(self.config_path, raw)

    async def _listen(self):
        host = self.sv["host"]
        if self.sv["port"]:
            self._listeners.append(await asyncio.start_server(self._plain, host, self.sv["port"], backlog=LISTEN_BACKLOG))
            log.info("pop3 listening on %s:%d (STLS %s)", host, self.sv["port"], "on" if self.ctx else "off")
        if self.sv["pop3s_port"] and self.ctx is not None:
            self._listeners.append(await asyncio.start_server(self._implicit, host, self.sv["pop3s_port"], backlog=LISTEN_BACKLOG))
            log.info("pop3s listening on %s:%d", host, self.sv["pop3s_port"])

    def close(self):
        for s in self._listeners:
            s.close()
        self._listeners = []

    def tasks(self):
        """The session tasks and (MicroPython) the listeners' accept tasks, which close their
        socket when cancelled: for board.main to cancel and wait for after Ctrl-C."""
        return [s.task for s in self.slots.values()] + _listener_tasks(self._listeners)

    async def _plain(self, reader, writer):
        await self._handle(reader, writer, False)

    async def _implicit(self, reader, writer):
        await self._handle(reader, writer, True)

    def _oldest_preauth(self, ip):
        best = None
        for slot in self.slots.values():
            if slot.preauth and (ip is None or slot.ip == ip) and (best is None or slot.sid < best.sid):
                best = slot
        return best

    def _admit(self, ip):
        """None if a new connection from ip may have a slot (evicting the oldest pre-auth one of
        that address, or of any address, when a cap is reached), else the limit that refuses it."""
        here = self.per_addr.get(ip, 0)
        cap = _cap_reached(self.sv, self.sessions, here)
        if cap is None:
            return None
        victim = self._oldest_preauth(ip if here >= self.sv["max_sessions_per_addr"] else None)
        if victim is None:
            return cap
        log.info("pop3 #%d %s evicted: its pre-auth slot goes to a new connection (%s)", victim.sid, victim.ip, cap)
        self._release(victim)
        victim.task.cancel()
        return None

    def _release(self, slot):
        if slot.released:
            return
        slot.released = True
        self.slots.pop(slot.sid, None)
        self.sessions -= 1
        k = self.per_addr.get(slot.ip, 1) - 1
        if k <= 0:
            self.per_addr.pop(slot.ip, None)
        else:
            self.per_addr[slot.ip] = k

    async def _handle(self, reader, writer, implicit):
        conn = None
        session = None
        ip = "?"
        slot = None
        sid = 0
        try:
            try:
                ip = _peer_ip(writer.get_extra_info("peername"))
            except Exception:
                pass
            idle = self.sv["idle_timeout"]
            hs = self.sv["tls_handshake_timeout"]
            conn = _Conn(reader, idle, hs) if IS_MICROPYTHON else _CConn(reader, writer, idle, hs)
            conn.limit(DEADLINE_AUTH, self.sv["auth_timeout"])
            cap = self._admit(ip)
            if cap is not None:
                log.warning("pop3 %s refused: %s, every slot logged in (open: %d in all, %d from %s)", ip, cap,
                            self.sessions, self.per_addr.get(ip, 0), ip)
                if not implicit:  # POP3S: no handshake is spent on a refused peer
                    await conn.send(reply(False, "too many sessions, try later", "SYS/TEMP"))
                return
            self._next_id += 1
            sid = self._next_id
            slot = _Slot(sid, ip, asyncio.current_task())
            self.slots[sid] = slot
            self.sessions += 1
            self.per_addr[ip] = self.per_addr.get(ip, 0) + 1
            if implicit:
                r = conn.start_tls(self.ctx)
                if r is not None:
                    await r
            session = Session(self.svc, ip, implicit, sid)
            log.info("pop3 #%d %s connect tls=%d sessions=%d", sid, ip, int(implicit), self.sessions)
            await self._run(conn, session, slot)
        except _Timeout as e:
            log.info("pop3 #%d %s %s deadline passed, closing", sid, ip, e.name)
            if conn is not None and e.name != DEADLINE_HANDSHAKE:
                try:  # best effort, never waits: the peer may not be reading
                    conn.send_nowait(reply(False, "%s timeout, closing" % e.name))
                except Exception:
                    pass
        except Exception as e:  # a peer's reset, a TLS failure, MemoryError...: end this session only
            log.info("pop3 #%d %s closed: %s %r", sid, ip, type(e).__name__, e)
        finally:
            if session is not None:
                session.close()
            if conn is not None:
                conn.close()
            if slot is not None:
                self._release(slot)
                log.info("pop3 #%d %s disconnect sessions=%d", sid, ip, self.sessions)

    async def _run(self, conn, session, slot):
        sid = slot.sid
        lines = LineReader(self.sv["max_command_line"], self.sv["max_command_line"] + READ_EXTRA)
        out = bytearray(self.sv["block_size"])
        await conn.send(session.greeting())
        while True:
            line = lines.next_line()
            if line is None:
                n = await conn.recv_into(lines.space())
                if not n:
                    log.info("pop3 #%d %s dropped by peer", sid, session.peer)
                    return
                lines.commit(n)
                continue
            if isinstance(line, int):
                resp = session.handle_bad(line)
            else:
                resp = session.handle(line)
            while resp is None:  # a login hash, in slices: other sessions run in between
                await asyncio.sleep(0)
                resp = session.resume()
            if session.delay:
                await conn.pause(session.delay)
            if session.starttls:
                conn.before_tls()
            await conn.send(resp)  # a failure here leaves the producer to session.close()
            heapmark.sample("pop3")  # after a reply: its producer (file, block) is allocated
            p = session.producer
            if p is not None:
                try:
                    while True:
                        k = p.fill(out)
                        if not k:
                            break
                        if getattr(p, "done", False):  # the last write: out at once, not after a delayed ACK
                            _nodelay(conn, 1)
                            await conn.send(out, k)
                            _nodelay(conn, 0)
                        else:
                            await conn.send(out, k)
                finally:
                    session.producer = None
                    p.close()
            if session.starttls:
                lines.clear()  # RFC 2595: plaintext sent after STLS is not trusted
                r = conn.start_tls(self.ctx)
                if r is not None:
                    await r
                session.tls_active = True
                log.info("pop3 #%d %s STLS", sid, session.peer)
            if session.state == TRANSACTION and slot.preauth:
                slot.preauth = False  # logged in: never evicted, the idle timeout alone
                conn.no_limit()
            if session.closing:
                return


async def start(cfg, store, config_path=None):
    """config_path: where cfg was loaded from, so that rehashed passwords are saved there."""
    srv = Server(cfg, store, config_path)
    await srv._listen()
    return srv


async def _forever(cfg, config_path=None):
    srv = await start(cfg, open_store(cfg), config_path)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        srv.close()


def main(config_path):
    cfg = config_mod.load(config_path)
    log.set_level(cfg["log"]["level"])
    asyncio.run(_forever(cfg, config_path))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: micropython -m pocketpost.server config.json")
        sys.exit(2)
    main(sys.argv[1])
