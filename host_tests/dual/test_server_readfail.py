"""A message file that cannot be read while RETR/TOP sends it (the asyncio shell,
pocketpost.server.Server._handle's session loop, against a fake connection): the file is cut short after RETR
opened it (its size checked against LIST), as a flash read error would leave the read.
  - nothing of the reply sent yet: the client gets -ERR [SYS/PERM] instead of the +OK, and the
    session goes on;
  - part of the message sent: the connection closes, no terminator after the partial message
    (which would make it look complete), nothing deleted;
  - either way the next lock sets the file aside (Mailbox.unreadable), the others stay.
Runs under CPython (pytest) and MicroPython (host_tests/dual/run.py)."""

import asyncio
import os
import sys

from pocketpost import config, log, server
from pocketpost.pop3cmd import Session
from pocketpost.store import Store
from shellconn import ShellConn
from test_pop3server import _rmtree, tmpdir

IS_MP = sys.implementation.name == "micropython"
log.set_sink(lambda line: None)

PLAIN_BIG = b"Subject: four\r\n\r\n" + b"plain line without a leading dot\r\n" * 200
MSGS = [
    b"From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n",
    b"Subject: two\r\n\r\nshort\r\n",
    b"Subject: three\r\n\r\n" + b"x" * 5000 + b"\r\n.\r\nend\r\n",  # dot-stuffed: BodyProducer
    PLAIN_BIG,  # plain: PlainProducer
]


class FakeConn(ShellConn):
    """One command per read; `hooks[k]` runs before command k is handed over; every write kept."""

    def __init__(self, commands, hooks):
        self.cmds = list(commands)
        self.hooks = hooks
        self.k = 0
        self.wire = bytearray()

    async def recv_into(self, mv, ms=None):
        if self.k >= len(self.cmds):
            return 0
        h = self.hooks.get(self.k)
        if h is not None:
            h()
        c = self.cmds[self.k] + b"\r\n"
        self.k += 1
        mv[: len(c)] = c
        return len(c)

    async def send(self, data, ms=None):
        self.wire += bytes(data)


def _cut_after_open(srv, session, i, keep):
    """From now on, mailbox.open(i) truncates the file to `keep` octets right after opening it."""

    def hook():
        mb = session.mb
        real = mb.open

        def open_then_cut(j, stored=False):
            f = real(j, stored)
            if j == i:
                path = mb._box.msg_path(*(mb._rec(j)[:4] + (mb.size(j),)))
                with open(path, "rb") as g:
                    data = g.read(keep)
                with open(path, "wb") as g:  # same file (inode): the open one sees it shorter
                    g.write(data)
            return f

        mb.open = open_then_cut

    return hook


def _run(commands, hooks, d, st):
    cfg = config.check({"store": {"root": d + "/mail"},
                        "server": {"pbkdf2_iterations": 5, "block_size": 256, "cert": "", "key": ""}})
    config.add_user(cfg, "alice", "pw", 5)
    cfg = config.check(cfg)
    srv = server.Server(cfg, st)
    session = Session(srv.svc, "127.0.0.1", False)
    conn = FakeConn(commands, {})
    for k, (i, keep) in hooks.items():
        conn.hooks[k] = _cut_after_open(srv, session, i, keep)
    if IS_MP:
        asyncio.new_event_loop()
    asyncio.run(srv._handle(None, None, False, conn, session))
    return bytes(conn.wire)


def _env():
    d = tmpdir()
    st = Store(d + "/mail", quota=0, reserve=0)
    for m in MSGS:
        dl = st.begin("alice")
        dl.write(m)
        dl.commit()
    mb = st.lock("alice")
    uids = [mb.uid(i) for i in range(mb.count)]
    mb.release()
    return d, st, uids


def _after(st, d):
    mb = st.lock("alice")
    try:
        return [mb.uid(i) for i in range(mb.count)], os.listdir(d + "/mail/alice/damaged")
    finally:
        mb.release()


def _replies(wire):
    return [ln for ln in wire.split(b"\r\n") if ln.startswith(b"+OK") or ln.startswith(b"-ERR")]


def test_unreadable_before_anything_is_sent_gets_err_and_the_session_goes_on():
    d, st, uids = _env()
    try:
        # LIST, then message 2's file is cut to nothing behind the open: -ERR, then RETR 1 works
        wire = _run([b"USER alice", b"PASS pw", b"LIST", b"RETR 2", b"RETR 1", b"DELE 1", b"QUIT"],
                    {3: (1, 0)}, d, st)
        r = _replies(wire)
        assert r[4].startswith(b"-ERR [SYS/PERM] "), r
        assert r[5] == b"+OK %d octets" % len(MSGS[0]) and MSGS[0] + b".\r\n" in wire, r
        assert r[6].startswith(b"+OK") and r[7].startswith(b"+OK"), r  # DELE, QUIT: the session went on
        assert b"short" not in wire  # nothing of message 2
        got, aside = _after(st, d)
        assert got == [uids[2], uids[3]], got  # 1 deleted, 2 set aside at this lock
        assert len(aside) == 1
    finally:
        _rmtree(d)


def _mid_reply(i, cmd):
    d, st, uids = _env()
    try:
        keep = len(MSGS[i]) // 2
        wire = _run([b"USER alice", b"PASS pw", b"LIST", cmd, b"DELE 1", b"QUIT"], {3: (i, keep)}, d, st)
        r = _replies(wire)
        assert r[4].startswith(b"+OK"), r  # the reply had begun
        body = wire.split(r[4] + b"\r\n", 1)[1]
        assert 0 < len(body) <= keep + 1 + keep // 50  # what the file held (dot-stuffed), then nothing
        assert not body.endswith(b"\r\n.\r\n"), body[-20:]  # no terminator: the client sees a cut
        assert len(r) == 5, r  # closed: DELE and QUIT never answered
        got, aside = _after(st, d)
        assert got == uids[:i] + uids[i + 1:], got  # nothing deleted; the cut message set aside
        assert len(aside) == 1
    finally:
        _rmtree(d)


def test_unreadable_mid_retr_closes_without_terminator_dot_stuffed():
    _mid_reply(2, b"RETR 3")


def test_unreadable_mid_retr_closes_without_terminator_plain():
    _mid_reply(3, b"RETR 4")


def test_unreadable_mid_top_closes_without_terminator():
    _mid_reply(2, b"TOP 3 100")
