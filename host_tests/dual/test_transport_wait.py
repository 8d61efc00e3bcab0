"""MicroPython's transport.Conn bounds each wait on asyncio's poller with an alarm task (not
asyncio.wait_for): a wait that runs out of its bound raises transport.Timeout and leaves nothing
on the poller; a cancel from outside (the board's per-account deadline: asyncio.wait_for around
the fetch) goes on as a cancel, not as a Timeout; a wait that ends with data cancels its alarm,
which then never fires into the task later. A UDP socket on loopback is the peer (readable only
when a datagram is sent to it). Runs under CPython (pytest: skipped, CConn is asyncio's streams)
and MicroPython (host_tests/dual/run.py)."""

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
        skip("transport.Conn is MicroPython's (CPython's CConn waits through asyncio's streams)")
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
