"""The asyncio SMTP receiver shell: port 25 style (STARTTLS), submission (STARTTLS, AUTH
required) and submission over implicit TLS (RFC 8314).

Theory of operation
-------------------
The protocol lives in smtp.Session (sans-I/O); this module only moves bytes, through
listener.ServerConn (transport.py's connection, as for POP3: raw-socket reads into the
LineReader's buffer, TLS wrapped inside the handler, STARTTLS by swapping the socket).
Admission is listener.Slots, as for POP3: a new connection that finds the caps full waits for a
slot (smtp.slot_wait seconds, no greeting yet), then a connection still pre-auth (before MAIL on
port 25, before AUTH on submission, or again once idle after a stored message) is evicted,
oldest first; one past pre-auth otherwise never is. Unlike POP3's, the listeners leave a new
connection in the listen backlog while every slot is busy (listener.Slots.busy): a camera's
burst is delivered in turn. Per
connection it allocates, once: a wire.LineReader whose buffer holds one maximal line or one
block, the larger (commands and message text are both read into it); the session's DATA output block is made per message (smtp.Session.handle). smtp.pump() runs everything
buffered through the session; its replies go out as one write (RFC 2920), after the failed-AUTH
delay if any.

Deadlines (listener.ServerConn's named deadlines; RFC 5321 4.5.3.2): until the session has got somewhere
(MAIL accepted on port 25, AUTH succeeded on submission) the whole session has
`smtp.preauth_timeout` from admission ("authorization"), a TLS handshake also
`server.tls_handshake_timeout`; after that each read waits at most `command_timeout` for a
command and `data_timeout` inside DATA ("idle"). A timeout gets a best-effort 421 and the
connection closes; a message without its final dot is thrown away (session.close()).
An AUTH's password hash runs in ~10 ms slices (smtpauth.resume), other sessions in between;
the failed-AUTH delay is cut short at the deadline (conn.pause).

Every handler body runs under try/finally: the session counts, a message in flight and the
sockets are released however the session ends.

Session code on demand: smtp.py (the protocol) is imported by the first session and dropped
(compat.forget) when the last one ends (SmtpServer.hold/release), so a receiver that is only
listening keeps none of it: POP3 + SMTP listening, live heap 133.3 -> 112.7 KB from `.mpy`,
81.2 -> 71.6 KB from ROMFS (64-bit host). The
smtp.Service that sessions share goes with it (nothing else refers to smtp.py's code); the next
session imports the module again and builds a new one from the same settings. A refused
connection's one reply is made here, without loading smtp.py.
smtpauth.py, which binds smtp.py's reply, is dropped with it (else it kept the old copy alive), and so
are smtpenv.py and smtpdata.py (each session phase's code: smtp.py loads and drops them as sessions
move between their command phase and DATA), and groupcommit.py (only the session code uses it; it
keeps no state). The start-up (settings, size cap, listeners) is smtpstart.py's, dropped once the
listeners are up: a listening receiver keeps none of its code (bench_heap c median 179 -> 178 KiB).

Host: `micropython -m pocketpost.smtpserver config.json` runs the POP3 server and the SMTP
receiver together (one login service: one failed-login throttle for both).
"""

import sys

import asyncio

from pocketpost import heapmark, log
from pocketpost.compat import forget, ticks_ms
from pocketpost import listener
from pocketpost.listener import ServerConn, listener_tasks, peer_ip
from pocketpost.transport import Timeout
from pocketpost.wire import LineReader


# The session code, loaded while a session exists (see the module doc), and groupcommit.py, which
# smtpenv.py and smtpdata.py import (nothing else: no state of its own). smtpauth.py goes too (no
# SMTP session uses it then): it binds smtp's reply and text, and kept loaded by a POP3
# session before its login (pop3server.LOGIN_MODULES) it would keep the dropped smtp.py alive
# while the next session loads a second copy. smtpenv.py (the envelope's code) and smtpdata.py
# (the message phase's) bind smtp's too.
# (Inlined where forgotten: a module-level tuple would be one more interned name.)


class SmtpServer:
    def __init__(self, cfg, store, logins=None):
        from pocketpost import smtpstart  # start-up only: dropped by start()

        self.sm, self.handshake_s, self.host, self.ctx, self._svc_args, self.slots = smtpstart.build(cfg, store, logins)
        self.svc = None  # the smtp.Service while a session holds smtp.py (hold/release)
        self.holds = 0
        self._listeners = []

    def update(self, logins):
        """Share a restarted POP3 server's login service and TLS context: without this the
        receiver kept the old ones (two failed-login throttles again, and the old service's
        heap held). Sessions holding the current smtp.Service keep its service to their end;
        the next Service is built with this one. ("update": a name the runtime has built in.)"""
        users, store, _, hostname = self._svc_args
        self._svc_args = (users, store, logins, hostname)
        ctx = getattr(logins, "tls_ctx", None)
        if ctx is not None:
            self.ctx = ctx

    def hold(self):
        """smtp.py for one more session (imported, and its Service built, by the first)."""
        from pocketpost import smtp

        if self.svc is None:
            from pocketpost import smtpstart  # (cold: dropped by _handle once its session is made)

            users, store, logins, hostname = self._svc_args
            self.svc = smtpstart.service(self.sm, users, store, logins, self.ctx is not None, hostname)
        self.holds += 1
        return smtp

    def release(self):
        """One session less; the last one drops smtp.py and its Service (see the module doc)."""
        self.holds -= 1
        if self.holds <= 0:
            self.holds = 0
            self.svc = None
            forget(("smtp", "smtpauth", "smtpenv", "smtpdata", "groupcommit"))  # the session code, see above

    def accept(self, mode, implicit):
        """listener.listen's callback for one listener (smtpstart.listen): a plain function handing
        back _handle's coroutine, which asyncio runs as the session's task (no coroutine frame of
        its own kept per session). Made here, not in smtpstart: a function keeps its module's
        globals, so one made there would keep the dropped start-up code alive."""

        def accept(r, w, m=mode, i=implicit):
            return self._handle(r, w, m, i)

        return accept

    def close(self):
        listener.close(self._listeners)
        self._listeners = []

    def tasks(self):
        """As server.Server.tasks: the sessions' tasks (from their slots), those waiting for a
        slot and the listeners', for board.main to cancel and wait for after Ctrl-C."""
        return [s.task for s in list(self.slots.slots.values()) + self.slots.waiting] + listener_tasks(self._listeners)

    async def _handle(self, reader, writer, mode, implicit):
        conn = None
        session = None
        ip = "?"
        slot = None
        sid = 0
        sm = self.sm
        mod = None
        told = 0  # the session's stored messages whose 250 went out (fewer: one is owed, see below)
        # No 421 of ours may go out now: not yet admitted, a reply or a TLS handshake under way
        # (it would land inside them), or refused on SMTPS (no handshake spent on it).
        hush = True
        try:
            ip = peer_ip(writer)
            conn = ServerConn.from_stream(reader, writer)
            slot = self.slots.admit(ip, asyncio.current_task())
            if slot is None:  # a cap is full: it waits for a slot first, holding only its socket (listener)
                slot = await self.slots.wait(ip, asyncio.current_task(), conn, implicit)
            conn.idle = sm["command_timeout"]
            conn.limit("authorization", sm["preauth_timeout"])  # from admission; listener's deadline names
            if slot is None:  # its peer left while it waited: nothing to say
                return
            if isinstance(slot, str) or slot.released:  # refused (or evicted as soon as a slot was handed
                # to it: listener.Slots.wait): its one reply (the 421 below), no Session built for it
                slot = None
                hush = implicit
                return
            hush = False
            sid = slot.sid
            mod = self.hold()
            # The Service (hold, the first session's) and the Session are made by smtpstart.py,
            # loaded for it and dropped: neither phase holds their constructors' code.
            from pocketpost import smtpstart

            session, hello = smtpstart.session(self.svc, ip, mode, implicit)
            smtpstart = None
            forget(("smtpstart",))
            if implicit:
                hush = True
                await conn.start_tls(self.ctx, None, True, self.handshake_s * 1000)
            log.info("smtp #%d %s connect %s tls=%d sessions=%d", sid, ip, mode, int(implicit), self.slots.sessions)
            # The session's loop, inline: in a coroutine of its own it was one more generator (288 B
            # on the 64-bit host) per session.
            # One maximal line or one block, whichever is larger (1,024 B by default), made at
            # connect: message text is read a block at a time, all of it un-stuffed before the next
            # read. (It held a line plus a block, 2 KB: w15-smtpheap's bench_smtp runs, 10 MiB in
            # 8 pairs, found no CPU cost for the 1 KB less in both phases; 17% more was measured
            # in an earlier tree, before the per-chunk garbage went, w12-chunkalloc.)
            lines = LineReader(sm["max_line"], sm["block_size"])
            hush = True
            await conn.send(hello)
            hello = None
            hush = False
            if implicit:  # its TLS handshake is done: it got somewhere (listener: not evicted by its sibling)
                slot.seen = ticks_ms()
            while True:
                replies = mod.pump(session, lines)
                if session._check is not None:  # an AUTH's hash, in slices: other sessions run in between
                    r = None
                    while r is None:
                        await asyncio.sleep(0)
                        from pocketpost import smtpauth  # (the AUTH's code, loaded: not smtp.py's)

                        r = smtpauth.resume(session)
                        smtpauth = None
                    replies.append(r)
                # Between messages, one stored and no MAIL under way: the slot may be taken again
                # as a pre-auth one's (listener.Slots.admit), so a device that delivers and then
                # sits on its connection without QUIT until command_timeout (some cameras and
                # printers) keeps no other sender out at an ESP32's one session; it is told 421.
                if session.stored and session.sender is None:  # (sender is set all through DATA)
                    if not slot.preauth:
                        slot.preauth = True
                        slot.seen = ticks_ms()  # (getting somewhere: its own address waits _FRESH_MS)
                elif slot.preauth and session.passed:
                    conn.no_limit()  # from now on the idle timeouts bound each wait
                    slot.preauth = False  # and the slot is not evicted
                if replies:
                    if slot.preauth:  # commands answered before MAIL / AUTH: it gets somewhere (listener.Slots)
                        slot.seen = ticks_ms()
                    if session.delay:
                        await conn.pause(session.delay)
                    if session.starttls:
                        conn.before_tls()
                    hush = True
                    await conn.send(replies[0] if len(replies) == 1 else b"".join(replies))
                    told = session.stored
                    if session.starttls:
                        lines.clear()  # RFC 3207 4.2: nothing sent before the handshake is kept
                        session.starttls = False
                        await conn.start_tls(self.ctx, None, True, self.handshake_s * 1000)
                        session.tls_active = True
                        log.info("smtp #%d %s STARTTLS", sid, session.peer)
                    hush = False
                    if session.closing:
                        return
                    continue
                conn.idle = sm["data_timeout"] if session.in_data else sm["command_timeout"]
                n = await conn.recv_into(lines.space())
                if not n:
                    log.info("smtp #%d %s dropped by peer%s", sid, session.peer, " mid-DATA" if session.in_data else "")
                    return
                lines.commit(n)
                heapmark.sample("smtp")  # mid-DATA too: the delivery's file and buffers are open
        except Timeout as e:
            log.info("smtp #%d %s timeout (%s)", sid, ip, e.name)
            if conn is not None and session is not None and not hush:  # (not inside a reply)
                try:  # best effort, never waits: the peer may not be reading
                    conn.send_nowait(session.timeout_reply())
                except Exception:
                    pass
        except Exception as e:  # a peer's reset, a TLS failure, MemoryError...: end this session only
            if session is not None and session.stored != told:
                # A message stored and its 250 not written: something between the commit and the
                # write raised (MemoryError: its text, a log line, the clean-up, pump, the send's
                # own coroutine). A constant 250 (no heap) in one socket write, then the close: a
                # sender told nothing sends the message again, and it is stored twice.
                try:
                    conn.send_nowait(b"250 2.0.0 stored\r\n")
                except Exception:
                    pass
            try:  # (the call's argument tuple: a full heap fails it, and the clean-up below must run)
                log.info("smtp #%d %s closed: %s %r", sid, ip, type(e).__name__, e)
            except MemoryError:
                pass
        finally:
            lines = None  # the reader's buffer: its room is free before close() needs any
            smtpauth = None  # (a resume that raised: a finished task's frame keeps its locals)
            if session is not None:
                try:
                    session.close()  # a message without its final dot is thrown away here
                except Exception as e:  # MemoryError: the code, socket and slot are released all the same
                    try:  # (the call's argument tuple is made before log's own guard: a full heap fails it)
                        log.error("smtp #%d %s close failed: %r", sid, ip, e)
                    except MemoryError:
                        pass
                session = None
            if mod is not None:
                mod = None
                try:  # (forget's module names are made on the heap: a full one fails them, and
                    self.release()  # the socket and slot below stayed held: the sender hung)
                except MemoryError:
                    pass
            if conn is not None:
                if not hush and not conn.handshaking and (slot is None or slot.released):
                    # Refused at the caps, or evicted (listener.Slots.admit: its pre-auth slot
                    # went to a newer connection): told why (RFC 5321 3.8: 421 and close), not
                    # dropped without a word. (A session that ended otherwise holds its slot here.)
                    try:  # best effort, never waits: the peer may not be reading
                        conn.send_nowait(b"421 4.7.0 %s too many connections, try later\r\n" % self._svc_args[3].encode())
                    except Exception:
                        pass
                conn.close(True)
            else:  # failed before adopting the stream (a MemoryError making it): its socket
                try:
                    getattr(reader, "close", writer.close)()  # (MicroPython: the socket; CPython: the writer)
                except Exception:
                    pass
            if slot is not None:
                self.slots.release(slot)  # (needs no heap: a MemoryError is its hand-over's, caught there)
                log.info("smtp #%d %s disconnect sessions=%d", sid, ip, self.slots.sessions)

async def start(cfg, store, logins=None):
    """Listeners up (none while smtp.domains is empty); returns the SmtpServer. `logins` is the
    POP3 server's pop3server.Service when both run (one throttle), else one is made. The start-up
    code (the settings, the size cap, the listeners) is smtpstart.py's, dropped after."""
    from pocketpost import smtpstart  # start-up only: dropped below

    srv = SmtpServer(cfg, store, logins)
    await smtpstart.listen(srv, store)
    smtpstart = None
    forget(("smtpstart",))
    heapmark.forget()  # config.py: nothing running needs it now
    return srv


def main(config_path):
    """Serve the POP3 server and this receiver until stopped (servermain.main with smtp, loaded
    for it: a board, which starts the services itself, keeps none of that code)."""
    from pocketpost import servermain

    servermain.main(config_path, None, True)


if __name__ == "__main__":  # (the POP3 server and this receiver: servermain.pop3)
    from pocketpost import servermain

    servermain.run(sys.argv, True)
