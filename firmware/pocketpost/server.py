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

Every handler body runs under try/finally: the maildrop lock, the session counts and the
sockets are released however the session ends (QUIT, drop, timeout, error, MemoryError).
"""

import sys

import asyncio

from pocketpost import config as config_mod
from pocketpost.config import open_store
from pocketpost import heapmark, log, tls
from pocketpost.compat import IS_MICROPYTHON, TIMEOUT_ERRNOS, const, errno_of
from pocketpost.pop3 import reply
from pocketpost.pop3server import Service, Session
from pocketpost.wire import LineReader

# Room for pipelined commands beyond one maximal line (RFC 2449 PIPELINING): a client may send
# a whole batch at once; lines are taken out of this buffer in order, nothing is lost.
READ_EXTRA = 256
LISTEN_BACKLOG = 4  # pending connections the kernel/lwIP queues per listener
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


class _Timeout(Exception):
    pass


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


class _Conn:
    """One connection's I/O on MicroPython: raw socket reads/writes through asyncio's poller."""

    def __init__(self, stream, timeout):
        self.stream = stream
        self.raw = stream.s
        self.sock = stream.s
        self.timeout = timeout
        self.handshaking = False

    def before_tls(self):
        pass  # we read only when asked: bytes after the +OK stay in the socket for TLS

    def start_tls(self, ctx):
        self.sock = ctx.wrap_socket(self.raw, server_side=True, do_handshake_on_connect=False)
        self.stream.s = self.sock
        self.handshaking = True

    async def _wait(self, write):
        # The raw socket, also under TLS: the poller then holds file descriptors only. An SSL
        # socket has none, and the unix port's select.poll, mixing the two, crashed (SIGSEGV) or
        # lost the TLS session's wake-ups with 4+ connections (host_tests/test_server_poll.py).
        try:
            await asyncio.wait_for(_wait_io(self.raw, write), self.timeout)
        except asyncio.TimeoutError:
            raise _Timeout()

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
                    self.handshaking = False
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
                self.handshaking = False
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


class _CConn:
    """CPython asyncio streams (for host debugging; the tests run the MicroPython path)."""

    def __init__(self, reader, writer, timeout):
        self.r = reader
        self.w = writer
        self.timeout = timeout

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
        await self.w.start_tls(ctx)  # resumes reading once TLS is in place

    async def recv_into(self, mv):
        try:
            data = await asyncio.wait_for(self.r.read(len(mv)), self.timeout)
        except asyncio.TimeoutError:
            raise _Timeout()
        mv[: len(data)] = data
        return len(data)

    async def send(self, data, n=None):
        self.w.write(bytes(data) if n is None else bytes(data[:n]))
        try:
            await asyncio.wait_for(self.w.drain(), self.timeout)
        except asyncio.TimeoutError:
            raise _Timeout()

    def send_nowait(self, data):
        self.w.write(data)  # asyncio buffers it; the transport sends what the peer accepts

    def close(self):
        try:
            self.w.close()
        except Exception:
            pass


class Server:
    def __init__(self, cfg, store):
        self.cfg = cfg
        sv = cfg["server"]
        self.sv = sv
        self.ctx = None
        if sv["cert"] and sv["key"]:
            self.ctx = tls.server_context(sv["cert"], sv["key"])
        self.svc = Service(sv, cfg["users"], store, tls_available=self.ctx is not None)
        self.sessions = 0
        self.per_addr = {}
        self._listeners = []
        self._next_id = 0

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

    async def _plain(self, reader, writer):
        await self._handle(reader, writer, False)

    async def _implicit(self, reader, writer):
        await self._handle(reader, writer, True)

    async def _handle(self, reader, writer, implicit):
        conn = None
        session = None
        ip = "?"
        counted = False
        sid = 0
        try:
            try:
                ip = _peer_ip(writer.get_extra_info("peername"))
            except Exception:
                pass
            timeout = self.sv["idle_timeout"]
            conn = _Conn(reader, timeout) if IS_MICROPYTHON else _CConn(reader, writer, timeout)
            if self.sessions >= self.sv["max_sessions"] or self.per_addr.get(ip, 0) >= self.sv["max_sessions_per_addr"]:
                log.warning("pop3 %s refused: too many sessions (%d)", ip, self.sessions)
                if not implicit:  # POP3S: no handshake is spent on a refused peer
                    await conn.send(reply(False, "too many sessions, try later", "SYS/TEMP"))
                return
            self.sessions += 1
            self.per_addr[ip] = self.per_addr.get(ip, 0) + 1
            counted = True
            self._next_id += 1
            sid = self._next_id
            if implicit:
                r = conn.start_tls(self.ctx)
                if r is not None:
                    await r
            session = Session(self.svc, ip, implicit)
            log.info("pop3 #%d %s connect tls=%d sessions=%d", sid, ip, int(implicit), self.sessions)
            await self._run(conn, session, sid)
        except _Timeout:
            log.info("pop3 #%d %s idle timeout", sid, ip)
            if conn is not None:
                try:  # best effort, never waits: the peer may not be reading
                    conn.send_nowait(reply(False, "idle timeout, closing"))
                except Exception:
                    pass
        except Exception as e:  # a peer's reset, a TLS failure, MemoryError...: end this session only
            log.info("pop3 #%d %s closed: %s %r", sid, ip, type(e).__name__, e)
        finally:
            if session is not None:
                session.close()
            if conn is not None:
                conn.close()
            if counted:
                self.sessions -= 1
                k = self.per_addr.get(ip, 1) - 1
                if k <= 0:
                    self.per_addr.pop(ip, None)
                else:
                    self.per_addr[ip] = k
                log.info("pop3 #%d %s disconnect sessions=%d", sid, ip, self.sessions)

    async def _run(self, conn, session, sid):
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
            if session.delay:
                await asyncio.sleep(session.delay)
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
            if session.closing:
                return


async def start(cfg, store):
    srv = Server(cfg, store)
    await srv._listen()
    return srv


async def _forever(cfg):
    srv = await start(cfg, open_store(cfg))
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        srv.close()


def main(config_path):
    cfg = config_mod.load(config_path)
    log.set_level(cfg["log"]["level"])
    asyncio.run(_forever(cfg))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: micropython -m pocketpost.server config.json")
        sys.exit(2)
    main(sys.argv[1])
