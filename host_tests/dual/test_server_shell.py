"""The asyncio shell's write path (pocketpost.server.Server._handle's session loop) against a fake connection:
Nagle is turned off for the last write of each multi-line reply only (so a reply's tail is not
held until the client's delayed ACK, ~40 ms on Linux: every RETR used to end with that stall),
and on again after it; no other write touches it. On CPython the shell leaves TCP_NODELAY to
asyncio (it sets it on every socket): no call there.
Runs under CPython (pytest) and MicroPython (host_tests/dual/run.py)."""

import asyncio
import sys

from pocketpost import config, log, server
from pocketpost.pop3cmd import Session
from shellconn import ShellConn
from test_pop3server import MSGS, _rmtree, tmpdir

from pocketpost.store import Store

IS_MP = sys.implementation.name == "micropython"
log.set_sink(lambda line: None)


class FakeRaw:
    def __init__(self, events):
        self.events = events

    def setsockopt(self, level, opt, value):
        if (level, opt) == (6, 1):  # IPPROTO_TCP, TCP_NODELAY
            self.events.append(("nodelay", value))


class FakeConn(ShellConn):
    """What the shell uses of a connection: commands in, every write recorded."""

    def __init__(self, commands):
        self.events = []
        self.raw = FakeRaw(self.events)
        self.inp = commands

    async def recv_into(self, mv):
        n = min(len(mv), len(self.inp))
        mv[:n] = self.inp[:n]
        self.inp = self.inp[n:]
        return n

    async def send(self, data, ms=None):
        self.events.append(("send", bytes(data)))


def test_nagle_off_for_the_last_write_of_a_multiline_reply_only():
    d = tmpdir()
    try:
        st = Store(d + "/mail", quota=0, reserve=0)
        for m in MSGS:
            dl = st.begin("alice")
            dl.write(m)
            dl.commit()
        cfg = config.check({"store": {"root": d + "/mail"},
                            "server": {"pbkdf2_iterations": 5, "block_size": 256, "cert": "", "key": ""}})
        config.add_user(cfg, "alice", "pw", 5)
        cfg = config.check(cfg)
        srv = server.Server(cfg, st)
        conn = FakeConn(b"USER alice\r\nPASS pw\r\nRETR 3\r\nLIST\r\nRETR 1\r\nNOOP\r\nQUIT\r\n")
        if IS_MP:
            asyncio.new_event_loop()
        asyncio.run(srv._handle(None, None, False, conn, Session(srv.svc, "127.0.0.1", False)))
        ev = conn.events
        wire = b"".join(e[1] for e in ev if e[0] == "send")
        assert wire.count(b"\r\n.\r\n") == 3  # RETR 3, LIST, RETR 1 all complete
        toggles = [i for i, e in enumerate(ev) if e[0] == "nodelay"]
        if not IS_MP:
            assert toggles == []
            return
        # three multi-line replies: on, their last write, off; nothing else
        assert [ev[i][1] for i in toggles] == [1, 0, 1, 0, 1, 0], ev
        for k in range(0, 6, 2):
            on, off = toggles[k], toggles[k + 1]
            assert off == on + 2 and ev[on + 1][0] == "send"
            assert ev[on + 1][1].endswith(b".\r\n")  # the write that ends the reply
        # RETR 3 is 5 KiB, sent in RETR's 4 KiB copy unit (block_size 256): its first block
        # went with Nagle on
        first = toggles[0]
        assert 4096 in [len(e[1]) for e in ev[:first] if e[0] == "send"]
    finally:
        _rmtree(d)


class KeepConn(FakeConn):
    """FakeConn that keeps each object handed to send (so no two can share an id)."""

    def __init__(self, commands):
        FakeConn.__init__(self, commands)
        self.objs = []

    async def send(self, data, ms=None):
        self.objs.append(data)
        self.events.append(("send", bytes(data)))


def test_full_retr_blocks_go_as_the_one_preallocated_view():
    # Every RETR block used to be sent as a new slice of the out buffer (garbage per block):
    # a full block must go as the view made once per connection; only a short last one is sliced.
    d = tmpdir()
    try:
        st = Store(d + "/mail", quota=0, reserve=0)
        for m in MSGS + [b"Subject: big\r\n\r\n" + b"z" * 78 + b"\r\n" + b".x\r\n" * 30000]:
            dl = st.begin("alice")
            dl.write(m)
            dl.commit()
        for block, unit in ((256, 4096), (4096, 4096), (8192, 8192)):  # RETR's own unit below 4 KiB
            cfg = config.check({"store": {"root": d + "/mail"},
                                "server": {"pbkdf2_iterations": 5, "block_size": block, "cert": "", "key": ""}})
            config.add_user(cfg, "alice", "pw", 5)
            cfg = config.check(cfg)
            srv = server.Server(cfg, st)
            conn = KeepConn(b"USER alice\r\nPASS pw\r\nRETR %d\r\nQUIT\r\n" % (len(MSGS) + 1))
            if IS_MP:
                asyncio.new_event_loop()
            asyncio.run(srv._handle(None, None, False, conn, Session(srv.svc, "127.0.0.1", False)))
            full = [o for o in conn.objs if len(o) == unit]
            assert len(full) > 10, (block, len(full))  # RETR of 150 KB (stuffed on flash)
            assert all(o is full[0] for o in full)
            assert isinstance(full[0], memoryview)
            wire = b"".join(e[1] for e in conn.events if e[0] == "send")
            assert wire.count(b"\r\n.\r\n") == 1 and wire.count(b"..x\r\n") == 30000
    finally:
        _rmtree(d)


class _RecSock:
    def __init__(self):
        self.got = []

    def write(self, mv):
        self.got.append(mv)
        return len(mv)


class _Stream:
    def __init__(self, s):
        self.s = s


def test_conn_send_passes_a_memoryview_through():
    # MicroPython's Conn.send wrapped every block in another memoryview (garbage per block).
    if not IS_MP:
        from dualtest import skip

        skip("transport.Conn is MicroPython's (CPython's, hostconn.Conn, copies through asyncio's writer)")
    from pocketpost.transport import Conn

    sock = _RecSock()
    c = Conn(_Stream(sock))
    mv = memoryview(bytearray(b"x" * 64))
    asyncio.new_event_loop()
    asyncio.run(c.send(mv))
    asyncio.run(c.send(b"+OK\r\n"))
    assert sock.got[0] is mv and bytes(sock.got[1]) == b"+OK\r\n"


class _ScriptSock:
    def __init__(self, results):
        self.results = list(results)
        self.calls = 0

    def write(self, mv):
        self.calls += 1
        r = self.results.pop(0)
        if isinstance(r, Exception):
            raise r
        return r


def test_send_some_is_one_write_that_never_waits():
    # The RETR loop's block write (listener.ServerConn.send_some): what the socket took, 0 when it
    # would block (None, EAGAIN) or a TLS handshake is under way; a real error propagates.
    if not IS_MP:
        from dualtest import skip

        skip("ServerConn.send_some writes to MicroPython's socket (CPython's answers 0: send() does it)")
    from pocketpost.listener import ServerConn

    sock = _ScriptSock([7, None, OSError(11), OSError(104)])
    c = ServerConn(_Stream(sock))
    mv = memoryview(bytearray(16))
    assert c.send_some(mv) == 7
    assert c.send_some(mv) == 0
    assert c.send_some(mv) == 0
    try:
        c.send_some(mv)
        assert False, "a reset was swallowed"
    except OSError as e:
        assert e.args[0] == 104
    c.handshaking = True
    assert c.send_some(mv) == 0 and sock.calls == 4


class _ClosingEnd:
    """A stream end of a connection as start_server hands it over (reader: its socket `s`; writer):
    counts the closes of its socket (MicroPython's Conn closes `s`, CPython's the writer)."""

    def __init__(self, counts):
        self.s = self
        self.counts = counts

    def close(self):
        self.counts.append(1)


class _NoSessionCode:
    """pocketpost.pop3cmd in sys.modules whose import fails as on a full heap."""

    def __getattr__(self, name):
        raise MemoryError("injected")


def test_a_connection_whose_session_code_cannot_load_is_closed():
    # server.py imports the session code (pop3cmd.py) per connection, before it adopts the
    # stream: a MemoryError there (where the heap runs out) must still close the socket, not
    # leave the peer waiting on it.
    d = tmpdir()
    real = sys.modules.get("pocketpost.pop3cmd")
    try:
        st = Store(d + "/mail", quota=0, reserve=0)
        cfg = config.check({"store": {"root": d + "/mail"},
                            "server": {"pbkdf2_iterations": 5, "cert": "", "key": ""}})
        srv = server.Server(cfg, st)
        closes = []
        end = _ClosingEnd(closes)
        sys.modules["pocketpost.pop3cmd"] = _NoSessionCode()
        if IS_MP:
            asyncio.new_event_loop()
        asyncio.run(srv._handle(end, end, False))
        assert closes, "the connection's socket was left open"
        assert srv.slots.sessions == 0
    finally:
        if real is not None:
            sys.modules["pocketpost.pop3cmd"] = real
        else:
            sys.modules.pop("pocketpost.pop3cmd", None)
        _rmtree(d)


def test_a_pipelined_batch_larger_than_the_command_buffer_is_answered_in_order():
    # The command buffer holds one maximal line and an octet (server._READ_EXTRA): a batch of
    # commands sent at once (RFC 2449 PIPELINING), here 1.5 KB, an overlong line among them,
    # comes in over several reads and is answered in order, every command once.
    d = tmpdir()
    try:
        st = Store(d + "/mail", quota=0, reserve=0)
        for m in MSGS:
            dl = st.begin("alice")
            dl.write(m)
            dl.commit()
        cfg = config.check({"store": {"root": d + "/mail"},
                            "server": {"pbkdf2_iterations": 5, "cert": "", "key": ""}})
        config.add_user(cfg, "alice", "pw", 5)
        cfg = config.check(cfg)
        srv = server.Server(cfg, st)
        cmds = b"USER alice\r\nPASS pw\r\n" + b"".join(b"LIST %d\r\nNOOP\r\n" % (1 + k % 3) for k in range(60))
        cmds += b"X" * 300 + b"\r\nSTAT\r\nQUIT\r\n"
        conn = FakeConn(cmds)
        if IS_MP:
            asyncio.new_event_loop()
        asyncio.run(srv._handle(None, None, False, conn, Session(srv.svc, "127.0.0.1", False)))
        lines = b"".join(e[1] for e in conn.events if e[0] == "send").split(b"\r\n")
        assert lines[1:3] == [b"+OK send PASS", b"+OK 3 messages (%d octets)" % sum(len(m) for m in MSGS)]
        for k in range(60):
            assert lines[3 + 2 * k].startswith(b"+OK %d " % (1 + k % 3)) and lines[4 + 2 * k] == b"+OK", k
        assert lines[123:] == [b"-ERR line too long", b"+OK 3 %d" % sum(len(m) for m in MSGS), b"+OK bye (0 deleted)", b""]
    finally:
        _rmtree(d)


class _StallConn(FakeConn):
    """A client that stops reading: its send() raises the idle Timeout at write number `at`
    (the wait for a writable socket running out); send_nowait (the shell's best-effort last
    word) is recorded."""

    handshaking = False

    def __init__(self, commands, at):
        FakeConn.__init__(self, commands)
        self.at = at
        self.sends = 0

    async def send(self, data, ms=None):
        self.sends += 1
        if self.sends >= self.at:
            from pocketpost.transport import Timeout

            raise Timeout("idle")
        self.events.append(("send", bytes(data)))

    async def recv_into(self, mv):
        if not self.inp:  # no more commands: the client is idle
            from pocketpost.transport import Timeout

            raise Timeout("idle")
        return await FakeConn.recv_into(self, mv)

    def send_nowait(self, data):
        self.events.append(("nowait", bytes(data)))


def _stalled_session(at, commands):
    d = tmpdir()
    try:
        st = Store(d + "/mail", quota=0, reserve=0)
        dl = st.begin("alice")
        dl.write(b"Subject: big\r\n\r\n" + b"z" * 78 + b"\r\n" * 6000)
        dl.commit()
        cfg = config.check({"store": {"root": d + "/mail"},
                            "server": {"pbkdf2_iterations": 5, "block_size": 256, "cert": "", "key": ""}})
        config.add_user(cfg, "alice", "pw", 5)
        cfg = config.check(cfg)
        srv = server.Server(cfg, st)
        conn = _StallConn(commands, at)
        if IS_MP:
            asyncio.new_event_loop()
        asyncio.run(srv._handle(None, None, False, conn, Session(srv.svc, "127.0.0.1", False)))
        return conn.events
    finally:
        _rmtree(d)


def test_no_timeout_line_inside_a_reply():
    # A RETR whose reader stalled past the idle timeout (here: the 6th write of the reply never
    # goes out) is closed without "-ERR idle timeout" after the part of the message sent: a
    # client that resumes reading would find that line in the message's text.
    ev = _stalled_session(6, b"USER alice\r\nPASS pw\r\nRETR 1\r\n")
    sent = [e for e in ev if e[0] == "send"]
    assert len(sent) == 5 and sent[3][1].startswith(b"+OK ")  # greeting, USER, PASS, +OK of RETR, a block
    assert [e for e in ev if e[0] == "nowait"] == [], [e[0] for e in ev]
    # between replies (the timeout while the reply to PASS was the last thing sent) it is said
    ev = _stalled_session(99, b"USER alice\r\nPASS pw\r\n")
    assert ev[-1] == ("nowait", b"-ERR idle timeout, closing\r\n"), ev[-2:]
