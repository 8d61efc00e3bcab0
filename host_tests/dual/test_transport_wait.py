"""MicroPython's transport.Conn bounds each wait on asyncio's poller with an alarm task (not
asyncio.wait_for): a wait that runs out of its bound raises transport.Timeout and leaves nothing
on the poller; a cancel from outside (the board's per-account deadline: asyncio.wait_for around
the fetch) goes on as a cancel, not as a Timeout; a wait that ends with data cancels its alarm,
which then never fires into the task later; and when the bound and an outside cancel (or the
socket's readiness) meet in one scheduler pass, the cancel stays a cancel (and the data is read).
A UDP socket on loopback is the peer (readable only when a datagram is sent to it). Runs under
CPython (pytest: the Conn tests skipped, hostconn.Conn is asyncio's streams; the same-pass tests run on
hostconn.Conn) and MicroPython (host_tests/dual/run.py)."""

import asyncio
import socket
import sys

from dualtest import skip

IS_MP = sys.implementation.name == "micropython"


class _Stream:
    def __init__(self, s):
        self.s = s


def _udp():
    """A non-blocking UDP socket bound on loopback and its address (MicroPython's sockets have no
    getsockname: a port is tried until one binds, bounded)."""
    import os

    base = 20000 + (os.urandom(2)[0] << 7) % 30000
    for i in range(50):
        addr = socket.getaddrinfo("127.0.0.1", base + i)[0][-1]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(addr)
        except OSError:
            s.close()
            continue
        s.setblocking(False)
        return s, addr
    raise OSError("no free UDP port")


def _conn():
    if not IS_MP:
        skip("transport.Conn is MicroPython's (CPython's, hostconn.Conn, waits through asyncio's streams)")
    from pocketpost.transport import Conn

    s, addr = _udp()
    return Conn(_Stream(s)), s, addr


def _io_map():
    from asyncio import core

    return core._io_queue.map


def test_a_wait_past_its_bound_raises_timeout_and_leaves_the_poller_clean():
    from pocketpost import transport
    from pocketpost.compat import ticks_diff, ticks_ms

    c, s, _ = _conn()
    try:
        asyncio.new_event_loop()
        t0 = ticks_ms()
        try:
            asyncio.run(c.recv_into(memoryview(bytearray(16)), 60))
            raise AssertionError("no Timeout")
        except transport.Timeout as e:
            assert e.name == "idle"
        took = ticks_diff(ticks_ms(), t0)
        assert 40 <= took < 3000, took
        assert not _io_map()
    finally:
        s.close()


def test_a_cancel_from_outside_stays_a_cancel():
    from pocketpost import transport

    c, s, _ = _conn()
    got = []

    async def main():
        t = asyncio.create_task(c.recv_into(memoryview(bytearray(16)), 30000))
        await asyncio.sleep_ms(50)
        t.cancel()  # what asyncio.wait_for (the board's per-account deadline) does at its timeout
        try:
            await t
        except asyncio.CancelledError:
            got.append("cancelled")
        except transport.Timeout:
            got.append("Timeout")

    try:
        asyncio.new_event_loop()
        asyncio.run(main())
        assert got == ["cancelled"], got
        assert not _io_map()
    finally:
        s.close()


def test_data_in_time_cancels_the_alarm():
    c, s, addr = _conn()
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def sender():
        await asyncio.sleep_ms(20)
        out.sendto(b"hello", addr)

    async def main():
        asyncio.create_task(sender())
        mv = memoryview(bytearray(16))
        n = await c.recv_into(mv, 100)
        try:
            # had the alarm outlived the wait, it would cancel this task within its 100 ms bound
            await asyncio.sleep_ms(250)
        except asyncio.CancelledError:
            return "cancelled after the wait"
        return bytes(mv[:n])

    try:
        asyncio.new_event_loop()
        assert asyncio.run(main()) == b"hello"
        assert not _io_map()
    finally:
        out.close()
        s.close()


# --- an outside cancel and the bound in the same scheduler pass (both runtimes) ---------------
# The loop is blocked (time.sleep, on purpose: not a wait for anything) until the wait's bound
# and a canceller's timer are both due, so that at the next pass the scheduler meets them
# together in a known order: timers run by due time, so a canceller due before the bound runs
# before the alarm, one due after it runs after the alarm and before the waiting task. On
# MicroPython the connection is transport.Conn on a UDP socket (readable only when a datagram
# comes); on CPython hostconn.Conn (asyncio.wait_for) on a TCP connection to a listening
# socket that never writes unless told.
_BOUND_MS = 40
_SKEW_MS = 15  # the canceller's timer: this much before or after the bound
_BLOCK_MS = _BOUND_MS + 3 * _SKEW_MS  # past both
_RACE_TRIES = 5
_LATE = "late: the set-up took longer than _SKEW_MS, every try"


def _block(ms):
    import time

    if IS_MP:
        time.sleep_ms(ms)
    else:
        time.sleep(ms / 1000)


async def _open_pair():
    """(connection, poke(): makes it readable, close())."""
    if IS_MP:
        from pocketpost.transport import Conn

        s, addr = _udp()
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def close():
            out.close()
            s.close()

        return Conn(_Stream(s)), lambda: out.sendto(b"hello", addr), close
    from pocketpost.transport import Conn as CConn  # hostconn.Conn on CPython

    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    r, w = await asyncio.open_connection("127.0.0.1", ls.getsockname()[1])
    peer = ls.accept()[0]  # already in the backlog

    def close():
        w.transport.abort()
        peer.close()
        ls.close()

    return CConn(r, w), lambda: peer.send(b"hello"), close


def _race(cancel_at_ms, poke=False):
    """A read bounded by _BOUND_MS, a canceller due at cancel_at_ms (None: none), both made due
    in one pass. Returns what the read ended with: "cancelled", "Timeout", or the bytes. A race
    whose set-up a loaded machine slowed past _SKEW_MS proves nothing (the canceller's timer may
    start after the bound ran): it is run again, up to _RACE_TRIES times."""
    for _ in range(_RACE_TRIES):
        got = _race_once(cancel_at_ms, poke)
        if got is not _LATE:
            return got
    return got


def _race_once(cancel_at_ms, poke):
    from pocketpost import transport
    from pocketpost.compat import ticks_diff, ticks_ms

    async def canceller(t, ms):
        await asyncio.sleep(ms / 1000)
        t.cancel()  # what asyncio.wait_for (the board's per-account deadline) does at its timeout

    async def main():
        c, poker, close = await _open_pair()
        try:
            mv = memoryview(bytearray(16))
            t = asyncio.create_task(c.recv_into(mv, _BOUND_MS))
            for _ in range(10):  # until t parks on the poller (CPython: in wait_for) and its bound runs
                await asyncio.sleep(0)
                if not IS_MP or _io_map():
                    break
            assert not IS_MP or _io_map()
            t0 = ticks_ms()
            # A task created just now (t's alarm, the canceller) runs its first step, which starts
            # its timer, before a task due later: this one, 2 ms on.
            await asyncio.sleep(0.002)
            tasks = [t]
            if cancel_at_ms is not None:
                tasks.append(asyncio.create_task(canceller(t, cancel_at_ms)))
                await asyncio.sleep(0.002)
            if ticks_diff(ticks_ms(), t0) > _SKEW_MS:
                for k in tasks:
                    k.cancel()
                    try:
                        await k
                    except (asyncio.CancelledError, transport.Timeout):
                        pass
                return _LATE
            if poke:
                poker()
            _block(_BLOCK_MS)
            try:
                n = await t
            except asyncio.CancelledError:
                return "cancelled"
            except transport.Timeout:
                return "Timeout"
            return bytes(mv[:n])
        finally:
            close()

    if IS_MP:
        asyncio.new_event_loop()
    got = asyncio.run(main())
    if IS_MP:
        assert not _io_map()
    return got


def test_an_outside_cancel_in_the_bounds_pass_stays_a_cancel():
    """Cancelled from outside before the alarm ran, the deadline then also past (the alarm
    cancelled too, and the task took the cancel for its own bound); and cancelled right after
    the alarm fired, before the task ran (the same): a CancelledError both times."""
    assert _race(_BOUND_MS - _SKEW_MS) == "cancelled"
    assert _race(_BOUND_MS + _SKEW_MS) == "cancelled"


def test_the_bound_alone_is_a_timeout_and_data_there_in_its_pass_is_read():
    assert _race(None) == "Timeout"
    assert _race(None, poke=True) == b"hello"  # readable before the alarm ran: the data wins
