"""The asyncio POP3 server shell: POP3 with STLS on one port, POP3S (implicit TLS) on another.

Theory of operation
-------------------
The protocol lives in pop3cmd.Session (sans-I/O; pop3cmd.py is loaded with the first connection
and dropped when the last one ends); this module only moves bytes. Per
connection it allocates, once: a wire.LineReader (commands) and (TOP only) pop3body's file block;
per TOP/LIST/UIDL reply (and a RETR without a copy unit of its own) an out buffer (block_size) the
reply is produced into, let go when the reply ends (a session between replies holds none). It reads
straight into the LineReader's buffer and writes straight to the socket, so a 10 MiB RETR costs
the same heap as a 1 KiB one. A client that stops reading blocks only its own task (its writes
wait for the socket to become writable, bounded by the idle timeout).

Connections are listener.ServerConn, i.e. transport.py's (one class per runtime, shared with the
SMTP receiver and the client): raw-socket reads and writes through asyncio's poller on MicroPython, TLS wrapped inside
the handler (never by start_server), STLS by swapping the socket. The accept loop (listener.listen),
admission, caps, the wait for a slot and the eviction of pre-auth connections are listener.py's
(shared with the SMTP receiver).

Deadlines (config "server"; listener.ServerConn bounds the waits): three, each named in the log line
that closes the connection.
    tls-handshake  tls_handshake_timeout s for a TLS handshake (POP3S and after STLS), the
                   whole handshake however the peer trickles it (a ClientHello that claims 8 MB
                   and sends nothing more is cut here)
    authorization  auth_timeout s from admission (connect, or the end of its wait for a
                   slot) until a successful login, whatever is sent (failed-login delays included)
    idle           idle_timeout s per wait once logged in (RFC 1939's autologout timer)
Before login a wait is bounded by its deadline only, after login by the idle timeout only.

Every handler body runs under try/finally: the maildrop lock, the session counts and the
sockets are released however the session ends (QUIT, drop, timeout, error, MemoryError).
"""

import sys

import asyncio

from pocketpost import heapmark, log
from pocketpost.compat import const, forget, ticks_ms
from pocketpost import listener
from pocketpost.listener import ServerConn, listener_tasks, nodelay, peer_ip
from pocketpost.transport import Timeout
from pocketpost.wire import LineReader

# The command buffer's room beyond one maximal line: one octet (at the default 255-octet line,
# 256 B: 8 GC blocks on the 64-bit host, where it held 256 B more per session). A pipelined
# batch (RFC 2449 PIPELINING) larger than the buffer is read in as many reads as it takes; lines
# are taken out in order, nothing is lost.
_READ_EXTRA = const(1)
_TRANSACTION = const(1)  # pop3cmd's (a private copy)


class Server:
    """Sessions, admitted through listener.Slots (at a full cap a connection waits for a slot,
    then pre-auth connections are evicted oldest-first, so they can never keep a user out; see
    listener.py)."""

    def __init__(self, cfg, store, config_path=None):
        from pocketpost import serverstart  # start-up only: dropped after (heapmark.forget)

        self.cfg = cfg
        self.sv = cfg["server"]
        self.config_path = config_path
        self._listeners = []  # type: list
        self.ctx, self.svc, self.slots = serverstart.build(self, store)

    @property
    def sessions(self):
        return self.slots.sessions

    def save_hash(self, name, new_hash):
        """A login rehashed a password to the board's count: saved to the config file
        (loginsvc.save_hash)."""
        from pocketpost import loginsvc  # login code: loaded while this login runs

        loginsvc.save_hash(self.config_path, name, new_hash)

    def close(self):
        listener.close(self._listeners)
        self._listeners = []

    def tasks(self):
        """The session tasks, those waiting for a slot and (MicroPython) the listeners' accept
        tasks, which close their socket when cancelled: for board.main to cancel and wait for
        after Ctrl-C."""
        return [s.task for s in list(self.slots.slots.values()) + self.slots.waiting] + listener_tasks(self._listeners)

    # listener.listen's callbacks: plain functions handing back _handle's coroutine, which asyncio
    # runs as the session's task (no coroutine frame of their own kept per session).
    def _plain(self, reader, writer):
        return self._handle(reader, writer, False)

    def _implicit(self, reader, writer):
        return self._handle(reader, writer, True)

    async def _handle(self, reader, writer, implicit, conn=None, session=None):
        # (conn, session: a test's fake connection and its own Session, host_tests/dual/test_server_shell.py)
        ip = "?"
        slot = None
        sid = 0
        mid = False  # a reply is partly sent: no status line of ours may follow it
        tls_new = False
        try:
            # The session code (pop3cmd.py: Session and the grammar), dropped with the last
            # session (finally). Loaded first, after a collection: into the lowest free blocks,
            # not above this connection's objects (placed there, bench_heap e 104-106 -> 107-110).
            if "pocketpost.pop3cmd" not in sys.modules:
                import gc

                gc.collect()
            from pocketpost.pop3cmd import Session

            ip = peer_ip(writer)
            if conn is None:
                conn = ServerConn.from_stream(reader, writer)
            slot = self.slots.admit(ip, asyncio.current_task())
            if slot is None:  # a cap is full: it waits for a slot first, holding only its socket (listener)
                # Not holding pop3cmd.py meanwhile: the last session may drop it (finally), and the
                # next connection would load a second copy while this one kept the first.
                Session = None  # type: ignore[misc, assignment]
                slot = await self.slots.wait(ip, asyncio.current_task(), conn, implicit)
            conn.idle = self.sv["idle_timeout"]
            conn.limit("authorization", self.sv["auth_timeout"])  # from admission; listener's deadline names
            if slot is None or isinstance(slot, str) or slot.released:  # its peer left while it waited,
                # refused, or evicted as soon as a slot was handed to it (listener.Slots.wait)
                if slot is not None and not implicit:  # POP3S: no handshake is spent on a refused peer
                    await conn.send(b"-ERR [SYS/TEMP] too many sessions, try later\r\n")
                slot = None
                return
            sid = slot.sid
            tls_new = implicit
            if implicit:
                await conn.start_tls(self.ctx, None, True, self.sv["tls_handshake_timeout"] * 1000)
            if session is None:
                if Session is None:  # (let go while it waited for a slot)
                    from pocketpost.pop3cmd import Session
                session = Session(self.svc, ip, implicit, sid)
            log.info("pop3 #%d %s connect tls=%d sessions=%d", sid, ip, int(implicit), self.slots.sessions)
            # The session's loop, inline: in a coroutine of its own it was one more generator frame
            # (352 B on the 64-bit host) per session.
            sv = self.sv
            lines = LineReader(sv["max_command_line"], sv["max_command_line"] + _READ_EXTRA)
            await conn.send(session.greeting())
            if implicit:  # its TLS handshake is done: it got somewhere (listener: not evicted by its sibling)
                slot.seen = ticks_ms()
            while True:
                line = lines.next_line()
                if line is None:
                    n = await conn.recv_into(lines.space())
                    if not n:
                        log.info("pop3 #%d %s dropped by peer", sid, ip)
                        return
                    tls_new = False
                    lines.commit(n)
                    continue
                if isinstance(line, int):
                    resp = session.handle_bad(line)
                else:
                    resp = session.handle(line)
                line = None
                if slot.preauth:  # a command answered before login: it gets somewhere (listener.Slots)
                    slot.seen = ticks_ms()
                while resp is None:  # a login hash, in slices: other sessions run in between
                    await asyncio.sleep(0)
                    resp = session.resume()
                if session.state == _TRANSACTION and slot.preauth:
                    # logged in: never evicted, the idle timeout alone; from here, not after the
                    # reply: a right password may still wait out its address's failure delay
                    slot.preauth = False
                    conn.no_limit()
                if session.delay:
                    await conn.pause(session.delay)
                p = session.producer
                k = 0
                if p is not None:
                    o = getattr(p, "unit", None)  # RETR's own copy unit (pop3trans)
                    if o is None:  # the out buffer, this reply's only: an idle session holds none
                        o = bytearray(sv["block_size"])
                    omv = memoryview(o)
                    try:  # the first block before the +OK: a message that cannot be read gets -ERR instead
                        k = p.fill(o)
                    except OSError as e:
                        from pocketpost import pop3trans  # the producer's module: loaded

                        resp = pop3trans.read_failed(session, e, False)
                        p = None
                if session.starttls:
                    conn.before_tls()
                mid = True
                await conn.send(resp)  # a failure here leaves the producer to session.close()
                resp = None
                heapmark.sample("pop3")  # after a reply: its producer (file, block) is allocated
                if p is not None:
                    try:
                        while k:
                            # A full block goes as the view made once: a slice per block is garbage per block.
                            blk = omv if k == len(o) else omv[:k]
                            if p.done:  # the last write: out at once, not after the client's delayed ACK
                                nodelay(conn, 1)
                                await conn.send(blk)
                                nodelay(conn, 0)
                            else:
                                r = conn.send_some(blk)  # no coroutine per block while the socket takes it
                                if r != k:
                                    await conn.send(blk[r:] if r else blk)
                            try:
                                k = p.fill(o)
                            except OSError as e:  # mid-reply: no terminator may follow, close instead
                                from pocketpost import pop3trans

                                pop3trans.read_failed(session, e, True)
                                return
                    finally:
                        session.producer = None
                        p.close()
                # RETR's unit is handed back at its producer's close(), or when its first block failed:
                # no view of it may outlive that (the next RETR makes a unit of its own); the out
                # buffer goes with its reply too, and the closed producer with them.
                o = omv = blk = p = None
                mid = False
                if session.starttls:
                    lines.clear()  # RFC 2595: plaintext sent after STLS is not trusted
                    tls_new = True  # (a TLS 1.2 client's alert fails the handshake itself)
                    await conn.start_tls(self.ctx, None, True, sv["tls_handshake_timeout"] * 1000)
                    session.tls_active = True
                    log.info("pop3 #%d %s STLS", sid, ip)
                if session.closing:
                    return
        except Timeout as e:
            log.info("pop3 #%d %s %s deadline passed, closing", sid, ip, e.name)
            # Not inside a reply: a RETR's reader that stalled past the idle timeout would find the
            # line in the message it resumes reading (the missing terminator already tells it).
            if conn is not None and e.name != "tls-handshake" and not mid:
                try:  # best effort, never waits: the peer may not be reading
                    conn.send_nowait(("-ERR %s timeout, closing\r\n" % e.name).encode())
                except Exception:
                    pass
        except Exception as e:  # a peer's reset, a TLS failure, MemoryError...: end this session only
            why = type(e).__name__
            if tls_new:  # TLS up (or coming up), no command over it yet: words a user can act on,
                # serverstart.describe's (cold: loaded for this line; without the heap for it, the type)
                try:
                    from pocketpost import serverstart

                    why = serverstart.describe(e) or why
                except Exception:
                    pass
                serverstart = None  # type: ignore[assignment]  # (a finished task's frame keeps its locals)
                forget(("serverstart",))
            log.info("pop3 #%d %s closed: %s %r", sid, ip, why, e)
        finally:
            if session is not None:
                try:
                    session.close()
                except Exception as e:  # MemoryError: the socket and the slot are released all the same
                    try:  # (the call's argument tuple is made before log's own guard: a full heap fails it)
                        log.error("pop3 #%d %s close failed: %r", sid, ip, e)
                    except MemoryError:
                        pass
            if conn is None:  # failed before adopting the stream (pop3cmd's import: a full heap)
                try:
                    conn = ServerConn.from_stream(reader, writer)  # only to close its socket
                except Exception:
                    pass
            if conn is not None:
                if slot is not None and slot.released and not mid and not conn.handshaking:
                    # Evicted (listener.Slots.admit: its pre-auth slot went to a newer connection):
                    # told why, as a refused one is, not dropped without a word (a client then
                    # reports a lost connection; Dovecot says "Connection queue full").
                    try:
                        conn.send_nowait(b"-ERR [SYS/TEMP] too many sessions, closing\r\n")
                    except Exception:
                        pass
                conn.close(True)
            if slot is not None:
                self.slots.release(slot)  # (needs no heap: a MemoryError is its hand-over's, caught there)
                log.info("pop3 #%d %s disconnect sessions=%d", sid, ip, self.slots.sessions)
                if not self.slots.sessions:
                    # No session left: the session code goes (pop3cmd.py; pop3login.py, which
                    # binds pop3cmd's reply, though an SMTP session before its AUTH may hold the
                    # rest of the login code); the next connection imports it again. (A refused
                    # connection loads it too: a cap reached means sessions that drop it later.)
                    forget(("pop3cmd", "pop3login"))
            # A finished task's frame keeps its locals, and asyncio keeps the last finished
            # session's task referenced (measured: until the next connection): without this the
            # class, so all of pop3cmd.py, the session and its buffers would stay in the heap after it.
            session = lines = conn = p = o = omv = blk = resp = line = None
            Session = None  # type: ignore[misc, assignment]  # (assigned: unbound if its import failed)


async def start(cfg, store, config_path=None):
    """config_path: where cfg was loaded from, so that rehashed passwords are saved there."""
    from pocketpost import serverstart  # start-up only: dropped below

    srv = Server(cfg, store, config_path)
    await serverstart.listen(srv)
    heapmark.forget()  # config.py: nothing running needs it now
    # Last (this reference keeps the module for the call): with the start-up code dropped, the
    # recovery's code has the room it had at a first lock, and no session is running yet.
    serverstart.recover(store)
    return srv


def main(config_path, fn=None):
    """Serve until stopped: the POP3 server, or `fn(cfg, config_path)` (servermain.main, loaded
    for it: a board, which starts the server itself, keeps none of that code)."""
    from pocketpost import servermain

    servermain.main(config_path, fn)


if __name__ == "__main__":
    from pocketpost import servermain

    servermain.run(sys.argv)
