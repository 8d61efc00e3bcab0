"""MicroPython's listener.ServerConn waits on asyncio's poller without an alarm task per wait:
one timer for every server connection (listener._expire) wakes a parked task with Timeout once
its bound has run out. A wait past its bound raises Timeout named by what ran out (the idle
timeout, a named deadline); each of several waits ends at its own bound, also a shorter one parked
after a longer one (the timer is brought forward); a wait that ends with data, or with a cancel
from outside, leaves nothing parked and nothing to fire later, and the timer ends once nothing is
parked; a cancel from outside stays a cancel, also when it meets the bound in one scheduler pass.
A UDP socket on loopback is the peer (readable only when a datagram is sent to it). And
listener.listen's own accept loop. MicroPython only (CPython's ServerConn is hostconn's,
asyncio.wait_for, and listen is asyncio.start_server: skipped there)."""

import asyncio
import socket
import sys

from dualtest import skip
from test_transport_wait import _block, _io_map, _Stream, _udp

IS_MP = sys.implementation.name == "micropython"


def _conn(idle=0.06):
    if not IS_MP:
        skip("ServerConn's timer is MicroPython's (CPython's ServerConn waits through hostconn.Conn)")
    from pocketpost.listener import ServerConn

    s, addr = _udp()
    c = ServerConn(_Stream(s))
    c.idle = idle
    return c, s, addr


def _clean(ended=True):
    from pocketpost import listener

    assert not _io_map()
    assert not listener._waits
    if ended:  # the timer woke at the last bound and ended: nothing parked
        assert listener._timer[0] is None


def _ms(t0):
    from pocketpost.compat import ticks_diff, ticks_ms

    return ticks_diff(ticks_ms(), t0)


def test_a_wait_past_its_bound_raises_timeout_named_by_what_ran_out():
    from pocketpost import transport
    from pocketpost.compat import ticks_ms

    c, s, _ = _conn(0.06)
    try:
        for deadline in (None, "authorization"):
            if deadline:
                c.idle = 30
                c.limit(deadline, 0.06)
            asyncio.new_event_loop()
            t0 = ticks_ms()
            try:
                asyncio.run(c.recv_into(memoryview(bytearray(16))))
                raise AssertionError("no Timeout")
            except transport.Timeout as e:
                assert e.name == (deadline or "idle"), e.name
            assert 40 <= _ms(t0) < 3000, _ms(t0)
            _clean()  # (the timer's pass that threw the Timeout found nothing else and ended)
    finally:
        s.close()


def test_a_shorter_wait_parked_after_a_longer_one_ends_at_its_own_bound():
    from pocketpost import transport
    from pocketpost.compat import ticks_ms

    long_c, s1, _ = _conn(5)
    short_c, s2, _ = _conn(0.06)
    got = []

    async def wait(c):
        t0 = ticks_ms()
        try:
            await c.recv_into(memoryview(bytearray(16)))
        except transport.Timeout:
            got.append(_ms(t0))

    async def main():
        t = asyncio.create_task(wait(long_c))
        await asyncio.sleep_ms(20)  # the timer sleeps until the long wait's bound, 5 s
        await wait(short_c)  # parked after it, due sooner
        t.cancel()
        try:
            await t
        except asyncio.CancelledError:
            pass
        await asyncio.sleep_ms(10)

    try:
        asyncio.new_event_loop()
        asyncio.run(main())
        assert len(got) == 1 and 40 <= got[0] < 1500, got  # not the long wait's 5 s
        _clean(False)  # (the timer sleeps on until the cancelled wait's bound: it finds nothing then)
    finally:
        s1.close()
        s2.close()


def test_data_in_time_and_an_outside_cancel_leave_nothing_parked():
    from pocketpost import listener

    c, s, addr = _conn(0.1)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got = []

    async def sender():
        await asyncio.sleep_ms(20)
        out.sendto(b"hello", addr)

    async def main():
        asyncio.create_task(sender())
        mv = memoryview(bytearray(16))
        n = await c.recv_into(mv)
        got.append(bytes(mv[:n]))
        assert not listener._waits
        try:  # had the wait stayed parked, the timer would throw into this task within 100 ms
            await asyncio.sleep_ms(250)
        except Exception as e:  # noqa: BLE001
            got.append(repr(e))
        c.idle = 30
        t = asyncio.create_task(c.recv_into(mv))
        await asyncio.sleep_ms(30)
        t.cancel()  # what an eviction does (listener.Slots.admit)
        try:
            await t
        except asyncio.CancelledError:
            got.append("cancelled")
        await asyncio.sleep_ms(10)

    try:
        asyncio.new_event_loop()
        asyncio.run(main())
        assert got == [b"hello", "cancelled"], got
        _clean(False)
    finally:
        out.close()
        s.close()


def test_an_outside_cancel_in_the_bounds_pass_stays_a_cancel():
    """The bound and a canceller made due in one pass (the loop blocked past both), in either
    order: a CancelledError; the bound alone: Timeout; data there in that pass: the data."""
    from pocketpost import transport

    bound = 40

    async def canceller(t, ms):
        await asyncio.sleep_ms(ms)
        t.cancel()

    def race(cancel_at, poke=False):
        c, s, addr = _conn(bound / 1000)
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        async def main():
            mv = memoryview(bytearray(16))
            t = asyncio.create_task(c.recv_into(mv))
            for _ in range(10):
                await asyncio.sleep(0)
                if _io_map():
                    break
            assert _io_map()
            await asyncio.sleep_ms(2)
            if cancel_at is not None:
                asyncio.create_task(canceller(t, cancel_at))
                await asyncio.sleep_ms(2)
            if poke:
                out.sendto(b"hello", addr)
            _block(bound + 45)
            try:
                n = await t
            except asyncio.CancelledError:
                return "cancelled"
            except transport.Timeout:
                return "Timeout"
            return bytes(mv[:n])

        try:
            asyncio.new_event_loop()
            r = asyncio.run(main())
            _clean(False)
            return r
        finally:
            out.close()
            s.close()

    assert race(bound - 15) == "cancelled"
    assert race(bound + 15) == "cancelled"
    assert race(None) == "Timeout"
    assert race(None, poke=True) == b"hello"


async def _listen_free(cb):
    """listener.listen(cb) on a free loopback port (a few random tries): (listener, address)."""
    import os

    from pocketpost import listener

    base = 20000 + (os.urandom(2)[0] << 7) % 30000
    for port in range(base, base + 50):
        try:
            return await listener.listen(cb, "127.0.0.1", port), socket.getaddrinfo("127.0.0.1", port)[0][-1]
        except OSError:
            continue
    raise AssertionError("no free port")


def test_listen_hands_each_connection_its_socket_and_address_and_close_stops_it():
    """listener.listen on MicroPython: its own accept task (no asyncio Server or Stream objects);
    the handler gets the socket and the peer's address (peer_ip, ServerConn take those);
    close() ends the task and the listening socket (a later connect is refused)."""
    if not IS_MP:
        skip("listen() is asyncio.start_server on CPython")
    from pocketpost import listener

    got = []

    def cb(r, w):
        async def handle():
            c = listener.ServerConn.from_stream(r, w)
            got.append((listener.peer_ip(w), c.raw is r, c.sock is r))
            c.close()

        return handle()

    async def main():
        ls, addr = await _listen_free(cb)
        c = socket.socket()
        c.connect(addr)
        await asyncio.sleep_ms(50)
        c.close()
        assert got == [("127.0.0.1", True, True)], got
        assert listener.listener_tasks([ls]) == [ls[0]]
        listener.close([ls])
        await asyncio.sleep_ms(20)
        assert ls[0].done()
        c = socket.socket()
        try:
            c.connect(addr)
            refused = False
        except OSError:
            refused = True
        c.close()
        return refused

    asyncio.new_event_loop()
    assert asyncio.run(main())


def test_a_connection_that_cannot_be_served_leaves_the_listener_accepting():
    """listen()'s accept loop: a MemoryError making a connection's task (a full heap) closes
    that connection and goes on; asyncio's own loop ended there (the port deaf until a restart)."""
    if not IS_MP:
        skip("listen() is asyncio.start_server on CPython")
    from pocketpost import listener, log

    log.set_sink(lambda line: None)
    got = []

    def cb(r, w):
        if not got:
            got.append("refused")
            raise MemoryError("memory allocation failed")

        async def handle():
            got.append("served")
            r.close()

        return handle()

    async def main():
        ls, addr = await _listen_free(cb)
        for _ in range(2):
            c = socket.socket()
            c.connect(addr)
            await asyncio.sleep_ms(50)
            c.close()
        done = ls[0].done()
        listener.close([ls])
        await asyncio.sleep_ms(10)
        return done

    asyncio.new_event_loop()
    assert not asyncio.run(main())
    assert got == ["refused", "served"], got


def test_a_port_that_cannot_be_had_lets_go_of_the_ports_already_listening():
    """serverstart.listen: when the POP3S port is taken, the POP3 port it already listens on is
    let go too; kept, every restart of the service would find it taken by the dead server (and
    the supervisor does not reset the board for a failure there since boot)."""
    import os

    from pocketpost import serverstart

    def free_port():
        base = 20000 + (os.urandom(2)[0] << 7) % 30000
        for port in range(base, base + 50):
            s = socket.socket()
            try:
                s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
                return port
            except OSError:
                continue
            finally:
                s.close()
        raise AssertionError("no free port")

    class Srv:
        ctx = object()  # (a TLS context: the POP3S listener is tried)
        _listeners = []

        def __init__(self, sv):
            self.sv = sv

        def _plain(self, r, w):
            return None

        _implicit = _plain

        def close(self):
            from pocketpost import listener

            listener.close(self._listeners)
            self._listeners = []

    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken = free_port()
    held.bind(socket.getaddrinfo("127.0.0.1", taken)[0][-1])
    held.listen(1)
    port = free_port()
    srv = Srv({"host": "127.0.0.1", "port": port, "pop3s_port": taken})

    async def main():
        try:
            await serverstart.listen(srv)
            failed = False
        except OSError:
            failed = True
        await asyncio.sleep_ms(20) if IS_MP else await asyncio.sleep(0.02)  # the accept task ends
        return failed

    try:
        if IS_MP:
            asyncio.new_event_loop()
        assert asyncio.run(main())
        assert srv._listeners == []
        s = socket.socket()
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])  # free again
        finally:
            s.close()
    finally:
        held.close()
