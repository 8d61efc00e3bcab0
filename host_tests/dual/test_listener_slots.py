"""listener.Slots' admission at a full cap (listener.py's theory of operation), both runtimes: a
new connection first waits (the section's slot_wait) for a slot to free, and gets one freed
meanwhile without evicting anyone; only when the wait runs out does it evict the oldest pre-auth
slot it may take, but not one of its own address that is getting somewhere while young; at most
_WAITING_MAX wait at a time (one more gets the rule at once, unless it takes the newest place of
an address holding more than one); a freed slot goes to the oldest waiting connection it can
admit, at the release (first come, first served; never to a newcomer); a waiting connection whose
peer closes is let go, and one cancelled (shutdown) leaves the waiting room (and a slot handed to
it frees again). Fake tasks and
connections: the real peers are host_tests/test_server_slots.py's."""

import asyncio

from pocketpost.compat import ticks_add, ticks_diff, ticks_ms
from pocketpost.listener import Slot, Slots

WAIT = 0.3  # slot_wait (seconds)


class _Task:
    cancelled = False

    def cancel(self):
        self.cancelled = True


class _Conn:
    """A waiting connection as Slots.wait asks it (listener.ServerConn.gone): has its peer closed?"""

    closed = False

    def gone(self, implicit):
        return self.closed


def _slots(max_sessions=2, per_addr=1, wait=WAIT):
    return Slots({"max_sessions": max_sessions, "max_sessions_per_addr": per_addr, "slot_wait": wait}, "pop3")


async def _enter(slots, ip, conn=None):
    """As a shell asks for a slot: admit, and at a full cap wait."""
    task = _Task()
    r = slots.admit(ip, task)
    if r is None:
        r = await slots.wait(ip, task, conn or _Conn(), False)
    return r


def _admit(slots, ip):
    """(the shell's answer, the milliseconds it took) for a connection from ip."""
    t0 = ticks_ms()
    r = asyncio.run(_enter(slots, ip))
    return r, ticks_diff(ticks_ms(), t0)


def _logged_in(slots, ip):
    s = slots.admit(ip, _Task())
    s.preauth = False
    return s


def test_below_the_caps_a_slot_at_once():
    slots = _slots()
    a, ms = _admit(slots, "10.0.0.1")
    b, ms2 = _admit(slots, "10.0.0.2")
    assert isinstance(a, Slot) and isinstance(b, Slot) and a.sid != b.sid
    assert ms < 50 and ms2 < 50, (ms, ms2)
    assert slots.sessions == 2 and not slots.waiting


def test_a_slot_freed_while_waiting_goes_to_the_waiting_connection():
    # Thunderbird's two accounts: the first connection logs in and quits while the second waits.
    slots = _slots()
    first = _logged_in(slots, "10.0.0.1")

    async def main():
        t0 = ticks_ms()
        t = asyncio.create_task(_enter(slots, "10.0.0.1"))
        await asyncio.sleep(0.1)
        assert len(slots.waiting) == 1 and slots.sessions == 1
        slots.release(first)  # its QUIT
        r = await t
        return r, ticks_diff(ticks_ms(), t0)

    r, ms = asyncio.run(main())
    assert isinstance(r, Slot) and not first.task.cancelled
    assert 100 <= ms < WAIT * 1000, ms  # in the next step after the release, before the wait ran out
    assert slots.sessions == 1 and slots.per_addr == {"10.0.0.1": 1} and not slots.waiting


def test_a_silent_pre_auth_slot_is_evicted_once_the_wait_runs_out():
    slots = _slots()
    silent = slots.admit("10.0.0.1", _Task())
    r, ms = _admit(slots, "10.0.0.1")
    assert isinstance(r, Slot) and silent.released and silent.task.cancelled
    assert WAIT * 1000 * 0.9 <= ms < WAIT * 1000 + 300, ms
    assert slots.sessions == 1 and slots.per_addr == {"10.0.0.1": 1}


def test_logged_in_slots_are_waited_for_then_the_newcomer_is_refused():
    slots = _slots()
    _logged_in(slots, "10.0.0.1")
    r, ms = _admit(slots, "10.0.0.1")
    assert r == "per-address cap max_sessions_per_addr=1 reached", r
    assert WAIT * 1000 * 0.9 <= ms < WAIT * 1000 + 300, ms
    _logged_in(slots, "10.0.0.2")
    r, ms = _admit(slots, "10.0.0.3")
    assert r == "global session cap max_sessions=2 reached", r


def test_a_young_slot_getting_somewhere_is_not_evicted_by_its_own_address():
    # A mail client's first connection answered a command just now (CAPA, USER): its second
    # connection, once its wait runs out, is refused rather than cut the first.
    slots = _slots()
    busy = slots.admit("10.0.0.1", _Task())
    busy.seen = ticks_ms()
    r, ms = _admit(slots, "10.0.0.1")
    assert r == "per-address cap max_sessions_per_addr=1 reached" and not busy.task.cancelled, r
    assert WAIT * 1000 * 0.9 <= ms, ms
    # From another address at the global cap it is the oldest pre-auth slot as before.
    _logged_in(slots, "10.0.0.2")
    busy.seen = ticks_ms()
    r, ms = _admit(slots, "10.0.0.3")
    assert isinstance(r, Slot) and busy.task.cancelled and busy.released


def test_protection_ends_when_it_stops_getting_somewhere_or_is_no_longer_young():
    now = ticks_ms()
    for seen, born in ((ticks_add(now, -3100), now), (now, ticks_add(now, -15100))):
        slots = _slots(wait=0)  # no wait: the rule at once
        s = slots.admit("10.0.0.1", _Task())
        s.seen = seen
        s.born = born
        r, ms = _admit(slots, "10.0.0.1")
        assert isinstance(r, Slot) and s.task.cancelled, (seen, born, r)
        assert ms < 50, ms


def test_the_waiting_room_is_bounded():
    # Two wait; a third gets the rule at once (here refused: the one slot is logged in); then the
    # two are refused when their wait runs out. slot_wait 0: nobody waits.
    slots = _slots()
    _logged_in(slots, "10.0.0.1")

    async def main():
        ws = [asyncio.create_task(_enter(slots, "10.0.0.1")) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert len(slots.waiting) == 2
        t0 = ticks_ms()
        third = await _enter(slots, "10.0.0.1")
        ms = ticks_diff(ticks_ms(), t0)
        rs = []
        for w in ws:  # (no await inside a comprehension on MicroPython)
            rs.append(await w)
        return third, ms, rs

    third, ms, rs = asyncio.run(main())
    assert third == "per-address cap max_sessions_per_addr=1 reached" and ms < 50, (third, ms)
    assert rs == [third, third] and not slots.waiting and slots.sessions == 1
    slots = _slots(wait=0)
    _logged_in(slots, "10.0.0.1")
    r, ms = _admit(slots, "10.0.0.1")
    assert isinstance(r, str) and ms < 50, (r, ms)


def test_a_waiting_connection_whose_peer_leaves_is_let_go():
    slots = _slots(wait=5)
    _logged_in(slots, "10.0.0.1")
    conn = _Conn()

    async def main():
        t0 = ticks_ms()
        t = asyncio.create_task(_enter(slots, "10.0.0.1", conn))
        await asyncio.sleep(0.15)
        conn.closed = True
        r = await t
        return r, ticks_diff(ticks_ms(), t0)

    r, ms = asyncio.run(main())
    assert r is None and ms < 500, (r, ms)  # within a step or two, not at the end of its 5 s
    assert not slots.waiting and slots.sessions == 1


def test_a_cancelled_waiting_connection_leaves_the_waiting_room():
    # board.main cancels Server.tasks() after Ctrl-C: the waiting ones are among them.
    slots = _slots(wait=5)
    _logged_in(slots, "10.0.0.1")

    async def main():
        t = asyncio.create_task(_enter(slots, "10.0.0.1"))
        await asyncio.sleep(0.05)
        assert len(slots.waiting) == 1
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())
    assert not slots.waiting and slots.sessions == 1


class _Raw:
    """A socket as ServerConn.gone (MicroPython) sees it: `peek` what recv(1, MSG_PEEK) answers
    (bytes, an OSError to raise, or TypeError: a port whose recv() takes no flags), `read` what
    readinto answers (None: nothing there; 0: closed; 1: an octet)."""

    def __init__(self, peek, read=None):
        self.peek = peek
        self.read = read
        self.reads = 0

    def recv(self, n, flags):
        if isinstance(self.peek, BaseException) or self.peek is TypeError:
            raise self.peek
        return self.peek

    def readinto(self, buf):
        self.reads += 1
        return self.read


def test_micropython_gone_peeks_and_never_takes_a_tls_octet():
    import sys

    from dualtest import skip

    if sys.implementation.name != "micropython":
        skip("ServerConn.gone is MicroPython's here (CPython's: hostconn.Conn.gone, below)")
    from pocketpost.listener import ServerConn

    def gone(raw, implicit):
        return ServerConn(raw).gone(implicit)

    for implicit in (False, True):
        assert gone(_Raw(b""), implicit)  # closed
        assert not gone(_Raw(OSError(11)), implicit)  # EAGAIN: nothing yet
        assert gone(_Raw(OSError(104)), implicit)  # reset
    # A recv() without flags (an older ESP32 port): a plain port's octet is read (a client speaks
    # after its greeting only: 0 its close, 1 one that did not wait); an implicit-TLS port's never.
    assert not gone(_Raw(TypeError, None), False)
    assert gone(_Raw(TypeError, 0), False) and gone(_Raw(TypeError, 1), False)
    r = _Raw(TypeError, 0)
    assert not gone(r, True) and r.reads == 0


def _tcp_pair():
    """A connected loopback TCP pair (the server's side non-blocking), on the first port of a few
    that binds (MicroPython's sockets cannot tell the port bound to 0)."""
    import socket

    srv = socket.socket()
    try:
        for port in range(47611, 47711):
            try:
                srv.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
                break
            except OSError:
                pass
        srv.listen(1)
        c = socket.socket()
        c.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        s, _ = srv.accept()
    finally:
        srv.close()
    s.setblocking(False)
    return c, s


def test_micropython_gone_sees_a_close_behind_a_clienthello_left_unread():
    """A POP3S/SMTPS peer that sends its ClientHello and hangs up while it waits for a slot: its
    close (behind the hello, which stays unread for the handshake) is seen while it waits, by
    poll's POLLRDHUP (it was seen only when the wait ended, and could evict a session then)."""
    import sys
    import time

    from dualtest import skip

    if sys.implementation.name != "micropython":
        skip("ServerConn.gone is MicroPython's here (CPython's: hostconn.Conn.gone, below)")
    from pocketpost.listener import ServerConn

    c, s = _tcp_pair()
    try:
        g = ServerConn(s)
        hello = b"\x16\x03\x01\x00\x05hello"
        c.write(hello)
        time.sleep_ms(50)
        assert not g.gone(True) and not g.gone(False)  # a ClientHello (or a command) waiting: left there
        c.close()
        time.sleep_ms(50)
        assert g.gone(True) and g.gone(False)
        assert s.recv(64) == hello  # not one octet taken
    finally:
        c.close()
        s.close()


def test_micropython_gone_makes_no_poll_object_per_look():
    """A waiting POP3S/SMTPS peer's ClientHello left unread: each look of its wait (every
    _WAIT_STEP_MS) made a poll object of its own, 288 bytes of heap per look on the 64-bit host;
    one poll object serves every look now (its socket registered for the look alone): what is
    left is the 1-octet peek and the registration's entry, 96 bytes."""
    import gc
    import sys
    import time

    from dualtest import skip

    if sys.implementation.name != "micropython":
        skip("ServerConn.gone is MicroPython's here (CPython's: hostconn.Conn.gone, above)")
    from pocketpost.listener import ServerConn

    c, s = _tcp_pair()
    try:
        g = ServerConn(s)
        c.write(b"\x16\x03\x01\x00\x05hello")
        time.sleep_ms(50)
        assert not g.gone(True)  # (the first look makes the poll object)
        gc.collect()
        gc.disable()
        try:
            before = gc.mem_alloc()
            for _ in range(50):
                assert not g.gone(True)
            per_look = (gc.mem_alloc() - before) // 50
        finally:
            gc.enable()
        assert per_look <= 128, per_look
        c.close()
        time.sleep_ms(50)
        assert g.gone(True)  # (the shared poll object still sees the close)
    finally:
        c.close()
        s.close()


def test_cpython_gone_is_the_streams_end_and_stops_reading_a_tls_port():
    import sys

    from dualtest import skip

    if sys.implementation.name == "micropython":
        skip("hostconn is CPython's")
    from pocketpost.hostconn import Conn

    class R:
        end = False

        def at_eof(self):
            return self.end

    class T:
        paused = 0

        def pause_reading(self):
            self.paused += 1

    import socket

    a, b = socket.socketpair()

    class W:
        transport = T()

        def get_extra_info(self, name):
            return b if name == "socket" else None

    try:
        r, w = R(), W()
        c = Conn(r, w)
        assert not c.gone(False)
        r.end = True
        assert c.gone(False) and w.transport.paused == 0
        a.sendall(b"\x16\x03\x01")
        assert not c.gone(True) and w.transport.paused == 1  # the ClientHello stays in the socket for TLS
        a.close()  # its peer's close behind it is seen
        assert c.gone(True) and b.recv(8) == b"\x16\x03\x01"
    finally:
        a.close()
        b.close()


def test_a_failing_log_line_does_not_keep_a_waiter_in_the_waiting_room():
    """The "waits for a slot" log line ran between the append to the waiting room and the try
    that takes the task out again: a MemoryError formatting it (or a failing log sink) left the
    task there for good, and after _WAITING_MAX such failures no connection ever waited again."""
    from pocketpost import log

    slots = _slots(max_sessions=1)
    _logged_in(slots, "10.0.0.1")
    real = log.info

    def boom(msg, *args):
        if "waits for a slot" in msg:
            raise MemoryError("memory allocation failed")
        real(msg, *args)

    log.info = boom
    try:
        for i in range(3):
            try:
                _admit(slots, "10.0.0.%d" % (i + 2))
            except MemoryError:
                pass
    finally:
        log.info = real
    assert slots.waiting == []


def _waiter(slots, ip, log, wait=None):
    """A task entering as _enter does; it appends (ip, what it got, ms from its start) to log."""

    async def go():
        t0 = ticks_ms()
        r = await _enter(slots, ip)
        log.append((ip, r, ticks_diff(ticks_ms(), t0)))

    return asyncio.create_task(go())


def test_waiting_connections_are_served_first_come_first_served():
    """One PC checking three accounts (per-address cap 1): the second connection waits from 0 ms,
    the third from 50 ms; the first quits at ~110 ms, when the third's 100 ms step comes before
    the second's. The slot goes to the second (it went to whichever stepped first: the third),
    at the release itself, and the third is served when the second ends."""
    slots = _slots(wait=2)
    first = _logged_in(slots, "10.0.0.1")
    got = []

    async def main():
        second = _waiter(slots, "10.0.0.1", got)
        await asyncio.sleep(0.05)
        third = _waiter(slots, "10.0.0.1", got)
        await asyncio.sleep(0.06)
        assert len(slots.waiting) == 2
        slots.release(first)
        assert len(slots.waiting) == 1 and slots.sessions == 1  # handed over at once
        await second
        assert got[0][0] == "10.0.0.1" and isinstance(got[0][1], Slot) and len(got) == 1, got
        assert slots.waiting and slots.waiting[0].task is not None  # the third still waits
        slots.release(got[0][1])
        await third
        return got

    got = asyncio.run(main())
    assert isinstance(got[1][1], Slot) and got[1][1].sid > got[0][1].sid, got
    assert not slots.waiting and slots.sessions == 1 and not first.task.cancelled


def test_a_newcomer_does_not_take_a_slot_a_waiting_connection_can_take():
    # At the global cap a connection from 10.0.0.3 waits; a slot frees (10.0.0.1's session ends)
    # and a connection from 10.0.0.4 arrives in the same instant: it finds no slot free (it took
    # the freed one at once, the waiting connection then waited on and got the rule).
    slots = _slots(wait=2)
    a = _logged_in(slots, "10.0.0.1")
    _logged_in(slots, "10.0.0.2")
    got = []

    async def main():
        w = _waiter(slots, "10.0.0.3", got)
        await asyncio.sleep(0.05)
        slots.release(a)
        late = slots.admit("10.0.0.4", _Task())
        await w
        return late

    late = asyncio.run(main())
    assert late is None, late  # it would wait in turn
    assert isinstance(got[0][1], Slot) and got[0][2] < 300, got
    assert slots.per_addr == {"10.0.0.2": 1, "10.0.0.3": 1} and slots.sessions == 2


def test_a_freed_slot_goes_to_the_oldest_waiting_connection_it_can_admit():
    # 10.0.0.2 waits first, but at its own cap (its session holds its one slot); 10.0.0.3 waits
    # next. 10.0.0.1's slot frees: 10.0.0.3 gets it; 10.0.0.2 gets its own address's, later.
    slots = _slots(wait=2)
    a = _logged_in(slots, "10.0.0.1")
    b = _logged_in(slots, "10.0.0.2")
    got = []

    async def main():
        w2 = _waiter(slots, "10.0.0.2", got)
        await asyncio.sleep(0.02)
        w3 = _waiter(slots, "10.0.0.3", got)
        await asyncio.sleep(0.02)
        slots.release(a)
        await w3
        assert len(got) == 1 and got[0][0] == "10.0.0.3" and isinstance(got[0][1], Slot), got
        slots.release(b)
        await w2
        return got

    got = asyncio.run(main())
    assert got[1][0] == "10.0.0.2" and isinstance(got[1][1], Slot), got
    assert slots.per_addr == {"10.0.0.2": 1, "10.0.0.3": 1} and not slots.waiting


def test_a_slot_handed_to_a_cancelled_waiting_connection_frees_again():
    slots = _slots(wait=5)
    a = _logged_in(slots, "10.0.0.1")

    async def main():
        t = asyncio.create_task(_enter(slots, "10.0.0.1"))
        await asyncio.sleep(0.05)
        slots.release(a)  # handed over; the waiter has not taken it up yet
        assert slots.sessions == 1
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())
    assert slots.sessions == 0 and not slots.slots and not slots.per_addr and not slots.waiting


def test_one_address_cannot_fill_the_waiting_room():
    """An attacker (10.0.0.9) holds a silent slot and both waiting places. A user's PC
    (10.0.0.2), its first connection logged in, opens a second: it takes the attacker's newest
    place (it was refused at once: the room was full, its own slot logged in), and is served when
    its first ends; the attacker's displaced connection gets the rule at once (here it evicts the
    attacker's own silent slot). A third address finds no address holding two places: the rule
    at once, as before, and so does one more of the attacker's."""
    slots = _slots(wait=2)
    silent = slots.admit("10.0.0.9", _Task())
    user = _logged_in(slots, "10.0.0.2")
    got = []

    async def main():
        _waiter(slots, "10.0.0.9", got)
        await asyncio.sleep(0.01)
        _waiter(slots, "10.0.0.9", got)
        await asyncio.sleep(0.02)
        assert len(slots.waiting) == 2
        mine = _waiter(slots, "10.0.0.2", got)
        await asyncio.sleep(0.15)  # the displaced one's next step
        assert [e.ip for e in slots.waiting] == ["10.0.0.9", "10.0.0.2"], [e.ip for e in slots.waiting]
        assert len(got) == 1 and got[0][0] == "10.0.0.9" and got[0][2] < 150, got
        assert silent.task.cancelled  # the displaced one took its address's silent slot
        got[0][1].preauth = False  # (and logged in: nothing left to evict below)
        t0 = ticks_ms()
        r = await _enter(slots, "10.0.0.3")  # no place to take: the rule at once
        assert ticks_diff(ticks_ms(), t0) < 50 and isinstance(r, str), r
        r = await _enter(slots, "10.0.0.9")
        assert ticks_diff(ticks_ms(), t0) < 100 and isinstance(r, str), r
        slots.release(user)  # the user's first connection quits
        await mine
        return got

    got = asyncio.run(main())
    mine = [g for g in got if g[0] == "10.0.0.2"]
    assert len(mine) == 1 and isinstance(mine[0][1], Slot) and mine[0][2] < 1000, got


def test_a_slot_handed_to_a_connection_ahead_is_not_evicted_by_a_later_one():
    """Caps 1 / 1: X is logged in; W1 (10.0.0.1) waits from 0 ms, W2 (10.0.0.2) from 150 ms; X
    quits at 400 ms and its slot is handed to W1, which is then in its TLS handshake (pre-auth)
    when W2's wait runs out at 650 ms. W2 took W1's slot, evicting the connection that had waited
    longest (last read of w17-evict2). Now the slot handed since W2 came is not W2's to evict:
    W2 is refused."""
    slots = _slots(max_sessions=1, wait=0.5)
    x = _logged_in(slots, "10.0.0.9")
    got = []

    async def main():
        w1 = _waiter(slots, "10.0.0.1", got)
        await asyncio.sleep(0.15)
        w2 = _waiter(slots, "10.0.0.2", got)
        await asyncio.sleep(0.25)
        slots.release(x)
        await w1
        await w2

    asyncio.run(main())
    assert got[0][0] == "10.0.0.1" and isinstance(got[0][1], Slot), got
    assert got[1][0] == "10.0.0.2" and isinstance(got[1][1], str), got
    assert not got[0][1].task.cancelled and not got[0][1].released and slots.sessions == 1


def test_busy_holds_new_connections_back_while_every_slot_is_getting_somewhere():
    """Slots.busy (the SMTP listeners leave a connection in the listen backlog while it holds): a
    free slot with room to wait, or a pre-auth slot quiet for _FRESH_MS (admitted or last answered
    that long ago), lets the next connection in; slots past pre-auth, or pre-auth and getting
    somewhere, hold it, when every slot is taken or the waiting room is full."""
    import sys

    from pocketpost import listener

    _FRESH_MS = 3000  # listener's (a const(): no module attribute under MicroPython)
    if sys.implementation.name != "micropython":
        assert listener._FRESH_MS == _FRESH_MS
    slots = _slots(max_sessions=2, per_addr=2)
    assert not slots.busy()  # a slot free
    a = _logged_in(slots, "10.0.0.1")
    assert not slots.busy()
    b = slots.admit("10.0.0.2", _Task())  # just admitted: getting somewhere
    assert slots.busy()
    b.born = ticks_add(ticks_ms(), -_FRESH_MS)  # admitted long ago, nothing answered since
    assert not slots.busy()
    b.seen = ticks_ms()  # a command answered just now
    assert slots.busy()
    b.seen = ticks_add(ticks_ms(), -_FRESH_MS)  # quiet since (a device sitting after delivering)
    assert not slots.busy()
    b.preauth = False  # in a transaction: never evicted, and nothing let in
    assert slots.busy()
    slots.release(a)
    assert not slots.busy()
    # A slot free, but the waiting room full (a newcomer would skip the wait): held back too.
    slots.waiting = [Slot("10.0.0.2", _Task()), Slot("10.0.0.2", _Task())]
    assert slots.busy()
    slots.waiting.pop()
    assert not slots.busy()


def test_a_slots_release_needs_no_heap():
    # A session's end on a full heap: release() sets the slot's `released`, which used to be the
    # Slot's first attribute past __init__'s and needed a larger attribute table (MemoryError after
    # the counts; the shells caught it, and the hand-over to a waiting connection was skipped).
    # micropython.heap_lock makes every allocation fail, as an exhausted heap does.
    from dualtest import skip

    try:
        from micropython import heap_lock, heap_unlock
    except (ImportError, AttributeError):
        skip("heap_lock is MicroPython's")
    slots = _slots()
    s, _ = _admit(slots, "10.0.0.1")
    s.seen = ticks_ms()  # what its shell sets through a session
    s.preauth = False
    heap_lock()
    try:
        slots.release(s)
    finally:
        heap_unlock()
    assert s.released and slots.sessions == 0 and not slots.per_addr and not slots.slots
    a, _ = _admit(slots, "10.0.0.1")
    b, _ = _admit(slots, "10.0.0.2")
    assert isinstance(a, Slot) and isinstance(b, Slot) and slots.sessions == 2
