"""Hostile SMTP senders against the receiver under micropython (pocketpost.smtpserver), with a
bounded heap: every SMTP-smuggling variant, overlong lines, NUL, garbage, a 10,000-command
pipeline, DATA without RCPT, relay attempts, too many recipients, SIZE over the limit and an
undeclared oversize body, stalls and drops mid-DATA, a peer that never QUITs, too many sessions,
silent connections above the cap while a real sender delivers.
Each gets a clear reply or a close, nothing partial is stored (checked over POP3 and on the
store's files), and another session is served meanwhile."""

import os
import smtplib
import socket
import time

import pytest
import storeread

from smtpharness import UNTRUSTED, Peer, SmtpPop3Server, body_of

LIMIT = 64 * 1024  # max_message_size for these tests
# The heap the server process gets (code loaded from source, so most of it is bytecode): the
# oversize-body test streams 20x LIMIT (1.25 MiB, more than the heap) through it.
HEAP = "512k"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # loopback untrusted: the smuggling rule is the one for peers outside trusted_networks
    s = SmtpPop3Server(str(tmp_path_factory.mktemp("smtph")), messages={"alice": [], "bob": []}, server=UNTRUSTED,
                       smtp={"max_message_size": LIMIT, "max_sessions": 3, "max_sessions_per_addr": 3}, heapsize=HEAP)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def greeted(srv, port=None):
    p = Peer(port or srv.smtp_port)
    assert p.reply().startswith(b"220 ")
    assert p.cmd(b"EHLO hostile.example").startswith(b"250 ")
    return p


def count(srv, user="alice", pw="alice pass"):
    return len(srv.pop3_messages(user, pw))


def served(srv):
    """Another session gets its mail through (and the message is stored once)."""
    n = count(srv, "bob", "bobpw")
    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=15) as s:
        s.sendmail("ok@example.net", ["bob@example.org"], b"Subject: meanwhile\r\n\r\nserved\r\n")
    got = srv.pop3_messages("bob", "bobpw")
    assert len(got) == n + 1 and body_of(got[-1]) == b"Subject: meanwhile\r\n\r\nserved\r\n"


SMUGGLE_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n", b"\r\n.\r", b"\n.\r", b"\r\n.\r\r\n",
                b"\r\n\r.\r\n", b"\r\n.\r\x00\n", b"\n\r.\r\n"]


def test_every_smuggling_variant(srv):
    # Each look-alike is message text: one message per variant (its 250 is the only reply before
    # the NOOP's), the smuggled lines inside it, no second message (they used to be refused with
    # 554 5.6.0; the stored bytes: host_tests/dual/test_smtp.py).
    before = count(srv)
    p = greeted(srv)
    for end in SMUGGLE_ENDS:
        assert p.cmd(b"MAIL FROM:<a@b.example>").startswith(b"250 ")
        assert p.cmd(b"RCPT TO:<alice@example.org>").startswith(b"250 ")
        assert p.cmd(b"DATA").startswith(b"354 ")
        p.s.sendall(b"Subject: one\r\n\r\nfirst" + end + b"MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<alice@example.org>\r\n"
                    b"DATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\nNOOP\r\n")
        r = p.reply()
        assert r.startswith(b"250 2.0.0 stored"), (end, r)
        assert p.reply().startswith(b"250 2.0.0 OK"), end  # the NOOP: no reply to any smuggled command
    assert p.cmd(b"QUIT").startswith(b"221 ")
    p.close()
    got = srv.pop3_messages("alice", "alice pass")[before:]
    assert len(got) == len(SMUGGLE_ENDS)
    for m in got:
        assert b"MAIL FROM:<ceo@victim.example>\r\n" in m and m.count(b"Subject: smuggled") == 1, m


def test_overlong_nul_garbage_then_close(srv):
    p = greeted(srv)
    assert p.cmd(b"NOOP " + b"A" * 5000).startswith(b"500 5.5.2")
    assert p.cmd(b"NO\x00OP").startswith(b"500 5.5.2")
    assert p.cmd(b"NOOP").startswith(b"250 ")
    p.s.sendall(os.urandom(3000).replace(b"\n", b"") + b"\r\n")  # one overlong garbage line
    assert p.reply().startswith(b"500 ")
    p.s.sendall(b"\xff\xfe\x00garbage\r\n" * 40)
    codes = []
    while True:
        try:
            codes.append(p.reply()[:3])
        except EOFError:
            break
    assert codes[-1] == b"421" and len(codes) < 25, codes  # too many errors: 421 and close
    p.close()
    served(srv)


def test_ten_thousand_command_pipeline(srv):
    p = greeted(srv)
    p.s.sendall(b"NOOP\r\nRSET\r\n" * 5000 + b"QUIT\r\n")
    n = 0
    while True:
        r = p.reply()
        if r.startswith(b"221"):
            break
        assert r.startswith(b"250 "), r
        n += 1
    assert n == 10000 and p.eof(5)
    p.close()


def test_sequence_relay_and_recipient_limits(srv):
    p = greeted(srv)
    assert p.cmd(b"DATA").startswith(b"503 ")
    assert p.cmd(b"MAIL FROM:<a@b.example>").startswith(b"250 ")
    assert p.cmd(b"DATA").startswith(b"554 ")  # no recipients
    assert p.cmd(b"RCPT TO:<victim@gmail.example>").startswith(b"550 5.7.1 ")
    assert p.cmd(b"RCPT TO:<alice@example.org.gmail.example>").startswith(b"550 5.7.1 ")
    assert p.cmd(b"RCPT TO:<alice%gmail.example@example.org>").startswith(b"550 ")
    p.s.sendall(b"".join(b"RCPT TO:<alice+%d@example.org>\r\n" % i for i in range(101)))
    codes = [p.reply()[:3] for _ in range(101)]
    assert codes == [b"250"] * 100 + [b"452"], codes[-3:]
    assert p.cmd(b"RSET").startswith(b"250 ")
    assert p.cmd(b"QUIT").startswith(b"221 ")
    p.close()


def test_size_declared_and_undeclared_oversize(srv):
    before = count(srv)
    p = greeted(srv)
    assert p.cmd(b"MAIL FROM:<a@b.example> SIZE=%d" % (LIMIT + 1)).startswith(b"552 5.3.4 ")
    assert p.cmd(b"MAIL FROM:<a@b.example>").startswith(b"250 ")
    assert p.cmd(b"RCPT TO:<alice@example.org>").startswith(b"250 ")
    assert p.cmd(b"DATA").startswith(b"354 ")
    line = b"x" * 78 + b"\r\n"
    chunk = line * 400
    for _ in range(LIMIT * 20 // len(chunk)):  # twenty times the limit, more than the whole heap
        p.s.sendall(chunk)
    p.s.sendall(b".\r\n")
    assert p.reply().startswith(b"552 5.3.4 ")
    assert p.cmd(b"NOOP").startswith(b"250 ")  # the session goes on
    p.close()
    assert count(srv) == before
    served(srv)


def test_stall_mid_data_times_out_nothing_stored(srv):
    before = count(srv)
    p = greeted(srv)
    for c in (b"MAIL FROM:<a@b.example>", b"RCPT TO:<alice@example.org>", b"DATA"):
        p.cmd(c)
    p.s.sendall(b"Subject: stalled\r\n\r\n" + b"y" * 5000)
    served(srv)  # meanwhile another session is served
    t0 = time.time()
    assert p.eof(15)  # data_timeout is 3 s
    assert time.time() - t0 < 10
    assert p.buf.startswith(b"421 4.4.2 "), p.buf
    p.close()
    assert count(srv) == before


def test_drop_mid_data_nothing_stored(srv):
    before = count(srv)
    for cut in (b"", b"Subject: dropped\r\n\r\n" + b"z" * 20000, b"Subject: x\r\n\r\nalmost\r\n.\r"):
        p = greeted(srv)
        for c in (b"MAIL FROM:<a@b.example>", b"RCPT TO:<alice@example.org>", b"RCPT TO:<bob@example.org>", b"DATA"):
            p.cmd(c)
        p.s.sendall(cut)
        p.s.shutdown(socket.SHUT_RDWR)
        p.close()
    served(srv)
    assert count(srv) == before


def test_never_quits_and_preauth_deadline(srv):
    before = count(srv)
    p = greeted(srv)
    for c in (b"MAIL FROM:<a@b.example>", b"RCPT TO:<alice@example.org>", b"DATA"):
        p.cmd(c)
    p.s.sendall(b"Subject: no quit\r\n\r\nbody\r\n.\r\n")
    assert p.reply().startswith(b"250 ")
    assert p.eof(15) and b"421 4.4.2" in p.buf  # command_timeout (5 s) ends it; the mail stays
    p.close()
    got = srv.pop3_messages("alice", "alice pass")
    assert len(got) == before + 1 and body_of(got[-1]) == b"Subject: no quit\r\n\r\nbody\r\n"
    # a peer that keeps talking without ever starting a transaction: the pre-auth deadline (4 s)
    p = greeted(srv)
    t0 = time.time()
    closed = False
    while time.time() - t0 < 12:
        try:
            p.s.sendall(b"NOOP\r\n")
            r = p.reply()
        except (EOFError, OSError):
            closed = True
            break
        if r.startswith(b"421"):
            closed = p.eof(5)
            break
        time.sleep(0.5)  # pacing the peer, not synchronisation
    assert closed and time.time() - t0 < 9
    p.close()


def test_too_many_sessions(srv):
    """Sessions past pre-auth (MAIL accepted) keep their slots: one more is not accepted while
    they last (no greeting, no 421: it waits in the listen backlog, listener.Slots.busy), and is
    greeted as soon as one of them ends."""
    peers = [greeted(srv) for _ in range(3)]
    for p in peers:
        assert p.cmd(b"MAIL FROM:<busy@example.net>").startswith(b"250 ")
    extra = Peer(srv.smtp_port)
    extra.s.settimeout(1)
    with pytest.raises(socket.timeout):
        extra.s.recv(100)
    extra.s.settimeout(10)
    assert peers[0].cmd(b"QUIT").startswith(b"221 ")
    assert extra.reply().startswith(b"220 "), srv.log()[-3000:]
    extra.cmd(b"QUIT")
    extra.close()
    for p in peers:
        if p is not peers[0]:
            p.cmd(b"QUIT")
        p.close()
    deadline = time.time() + 10
    while True:  # the slots come back once the server has seen the QUITs
        try:
            served(srv)
            break
        except smtplib.SMTPConnectError:
            assert time.time() < deadline
            time.sleep(0.1)


def _smtp_sessions(srv):
    """The session count of the last SMTP connect/disconnect line in the server's log."""
    n = 0
    for ln in srv.log().splitlines():
        if "smtp #" in ln and " sessions=" in ln:
            n = int(ln.rsplit("sessions=", 1)[1].split()[0])
    return n


def test_silent_peers_never_keep_a_sender_out(srv):
    """Twice the cap of silent connections (pre-auth: greeted, then nothing): each one above the
    cap is left in the listen backlog until the silent ones have been quiet 3 s (_FRESH_MS), then
    waits slot_wait (0.3 s here) for a slot and takes the slot of the oldest pre-auth one, which
    is closed; a real sender (smtplib) is served meanwhile, its connection waiting and then
    evicting one more, and not refused (421) as before slots."""
    deadline = time.time() + 15
    while _smtp_sessions(srv) != 0:  # bounded poll: the earlier tests' sessions have ended
        assert time.time() < deadline, srv.log()[-2000:]
        time.sleep(0.1)
    cap = srv.sm["max_sessions"]
    before = srv.log().count("evicted")
    refused = srv.log().count("smtp 127.0.0.1 refused")
    silent = []
    for _ in range(2 * cap):
        p = Peer(srv.smtp_port)
        assert p.reply().startswith(b"220 ")  # admitted (greeted), never refused
        silent.append(p)
    served(srv)
    try:
        for p in silent[: cap + 1]:  # the oldest: evicted by the newer ones and by the sender
            assert p.eof(10)
            # told why (RFC 5321 3.8), as a refused one is; it was dropped without a word
            assert p.buf.startswith(b"421 4.7.0 ") and p.buf.endswith(b" too many connections, try later\r\n"), p.buf
        for p in silent[cap + 1:]:  # (nothing said to those still admitted)
            assert p.buf == b"", p.buf
        assert srv.log().count("evicted") - before == cap + 1, srv.log()[-3000:]
        assert srv.log().count("smtp 127.0.0.1 refused") == refused
    finally:
        for p in silent:
            p.close()


def test_nothing_left_in_temp_dirs(srv):
    root = srv.store_root
    for box in os.listdir(root):
        if os.path.isdir(os.path.join(root, box)):
            assert storeread.temp_files(os.path.join(root, box)) == [], box
    assert not os.path.exists(os.path.join(root, "group")) and srv.alive()


def test_silent_tls_peers_are_let_go(srv):
    """A peer that opens the SMTPS port, or says STARTTLS, and then sends nothing: the pre-auth
    deadline (4 s here) ends the stalled handshake; nothing leaks, others are served meanwhile."""
    fds = srv.fds()
    p = Peer(srv.smtps_port)
    q = greeted(srv)
    assert q.cmd(b"STARTTLS").startswith(b"220 ")
    served(srv)
    t0 = time.time()
    assert p.eof(15) and q.eof(15)
    assert time.time() - t0 < 10
    p.close()
    q.close()
    deadline = time.time() + 10
    while srv.fds() > fds:  # bounded poll: the server closes its side
        assert time.time() < deadline, (srv.fds(), fds)
        time.sleep(0.1)


def test_refused_peer_gets_421_without_a_session_and_tasks_are_the_slots(tmp_path, monkeypatch):
    """In-process (CPython): the shell builds no smtp.Session for a connection refused at the cap
    (its 421 comes from the Service), and tasks() is the admitted sessions' tasks (their slots)."""
    import asyncio

    from helpers import free_port
    from pocketpost import config as config_mod
    from pocketpost import smtpserver, smtpstart
    from pocketpost.store import Store

    port = free_port()
    raw = {"store": {"root": str(tmp_path / "mail")},
           "server": {"host": "127.0.0.1", "port": 0, "pop3s_port": 0, "pbkdf2_iterations": 5, "cert": "", "key": ""},
           "smtp": {"port": port, "submission_port": 0, "smtps_port": 0, "domains": ["example.org"],
                    "max_sessions": 1, "max_sessions_per_addr": 1, "slot_wait": 0.3}}
    config_mod.add_user(raw, "alice", "pw", 5)
    cfg = config_mod.check(raw)
    st = Store(cfg["store"]["root"])
    built = []
    real = smtpstart.session  # (the Session's maker: forget() keeps modules on CPython)

    def counting(*a):
        built.append(a[1])
        return real(*a)

    monkeypatch.setattr(smtpstart, "session", counting)

    async def until(cond):
        for _ in range(500):  # bounded: 5 s
            if cond():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("condition not reached")

    async def main():
        srv = await smtpserver.start(cfg, st)
        try:
            base = len(srv.tasks())
            r1, w1 = await asyncio.open_connection("127.0.0.1", port)
            assert (await r1.readline()).startswith(b"220 ")
            w1.write(b"HELO x\r\nMAIL FROM:<a@example.net>\r\n")  # past pre-auth: never evicted
            assert (await r1.readline()).startswith(b"250 ")
            assert (await r1.readline()).startswith(b"250 ")
            assert len(srv.tasks()) == base + 1 and srv.slots.sessions == 1
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)  # waits 0.3 s for a slot, then refused
            assert (await asyncio.wait_for(r2.readline(), 5)).startswith(b"421 4.7.0 ")
            w2.close()
            assert len(built) == 1  # the refused connection got its 421 without a Session
            w1.write(b"QUIT\r\n")
            assert (await r1.readline()).startswith(b"221 ")
            w1.close()
            await until(lambda: len(srv.tasks()) == base and srv.slots.sessions == 0)
        finally:
            srv.close()

    asyncio.run(main())


def test_evicted_peer_is_told_why_in_process(tmp_path):
    """In-process (CPython; the micropython run is test_silent_peers_never_keep_a_sender_out): three
    connections from one address, two per address allowed: the third waits for a slot (0.3 s),
    then the oldest, greeted and silent, is evicted with a 421 naming the host (it got a bare
    EOF), the one that got past pre-auth is never evicted, and a refused connection gets its 421
    too."""
    import asyncio

    from helpers import free_port
    from pocketpost import config as config_mod
    from pocketpost import smtpserver
    from pocketpost.store import Store

    port = free_port()
    raw = {"store": {"root": str(tmp_path / "mail")},
           "server": {"host": "127.0.0.1", "hostname": "mx.example.org", "port": 0, "pop3s_port": 0,
                      "pbkdf2_iterations": 5, "cert": "", "key": ""},
           "smtp": {"port": port, "submission_port": 0, "smtps_port": 0, "domains": ["example.org"],
                    "max_sessions": 4, "max_sessions_per_addr": 2, "slot_wait": 0.3}}
    config_mod.add_user(raw, "alice", "pw", 5)
    cfg = config_mod.check(raw)
    st = Store(cfg["store"]["root"])
    busy = b"421 4.7.0 mx.example.org too many connections, try later\r\n"

    async def main():
        srv = await smtpserver.start(cfg, st)
        try:
            r1, w1 = await asyncio.open_connection("127.0.0.1", port)
            assert (await r1.readline()).startswith(b"220 ")
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            assert (await r2.readline()).startswith(b"220 ")
            w2.write(b"HELO x\r\nMAIL FROM:<a@example.net>\r\n")  # past pre-auth: never evicted
            assert (await r2.readline()).startswith(b"250 ")
            assert (await r2.readline()).startswith(b"250 ")
            r3, w3 = await asyncio.open_connection("127.0.0.1", port)
            assert (await asyncio.wait_for(r3.readline(), 5)).startswith(b"220 ")
            # the first: its slot went to the third, and it is told so before the close
            assert await asyncio.wait_for(r1.read(1000), 5) == busy
            assert await asyncio.wait_for(r1.read(1000), 5) == b""
            # two from this address now, neither pre-auth... the third is: a fourth evicts it
            r4, w4 = await asyncio.open_connection("127.0.0.1", port)
            assert (await asyncio.wait_for(r4.readline(), 5)).startswith(b"220 ")
            assert await asyncio.wait_for(r3.read(1000), 5) == busy
            w4.write(b"HELO x\r\nMAIL FROM:<a@example.net>\r\n")
            assert (await r4.readline()).startswith(b"250 ")
            assert (await r4.readline()).startswith(b"250 ")
            # both slots past pre-auth: a fifth is refused, with the same words
            r5, w5 = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(r5.read(1000), 5) == busy
            assert await asyncio.wait_for(r5.read(1000), 5) == b""
            for r, w in ((r2, w2), (r4, w4)):
                w.write(b"QUIT\r\n")
                assert (await r.readline()).startswith(b"221 ")
            for w in (w1, w2, w3, w4, w5):
                w.close()
        finally:
            srv.close()

    asyncio.run(main())


def test_no_421_inside_a_reply_an_evicted_peer_left_half_read(tmp_path, monkeypatch):
    """In-process (CPython): a pre-auth peer evicted while its reply is half-sent (the peer stopped
    reading: here the connection's send() stalls after half the reply) gets no 421 after that
    half: it would read it as the rest of the reply. It only sees the close."""
    import asyncio

    from helpers import free_port
    from pocketpost import config as config_mod
    from pocketpost import smtpserver
    from pocketpost.store import Store

    port = free_port()
    raw = {"store": {"root": str(tmp_path / "mail")},
           "server": {"host": "127.0.0.1", "port": 0, "pop3s_port": 0, "pbkdf2_iterations": 5, "cert": "", "key": ""},
           "smtp": {"port": port, "submission_port": 0, "smtps_port": 0, "domains": ["example.org"],
                    "max_sessions": 1, "max_sessions_per_addr": 1, "slot_wait": 0.3}}
    config_mod.add_user(raw, "alice", "pw", 5)
    cfg = config_mod.check(raw)
    st = Store(cfg["store"]["root"])

    # The connection class the shell uses (its module's global, read where _handle reads it):
    # its send() stalls after half of the NOOP's reply.
    cls = smtpserver.SmtpServer._handle.__globals__["ServerConn"]
    real_send = cls.send
    sent = []

    async def send(self, data, ms=None):
        sent.append(bytes(data))
        if bytes(data).startswith(b"250 2.0.0"):  # the NOOP's reply: half of it, then no progress
            self.send_nowait(bytes(data)[:5])
            await asyncio.Event().wait()  # (never set: cancelled by the eviction)
        await real_send(self, data, ms)

    monkeypatch.setattr(cls, "send", send)

    async def main():
        srv = await smtpserver.start(cfg, st)
        try:
            r1, w1 = await asyncio.open_connection("127.0.0.1", port)
            assert (await r1.readline()).startswith(b"220 ")
            w1.write(b"NOOP\r\n")
            assert await asyncio.wait_for(r1.readexactly(5), 5) == b"250 2"
            # From another address (the first, its NOOP just answered, is getting somewhere: one of
            # its own address would not evict it while young): at the global cap, after the wait.
            r2, w2 = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
            assert (await asyncio.wait_for(r2.readline(), 5)).startswith(b"220 ")
            assert await asyncio.wait_for(r1.read(1000), 5) == b"", sent  # the close, and nothing else
            w2.write(b"QUIT\r\n")
            assert (await r2.readline()).startswith(b"221 ")
            w1.close()
            w2.close()
        finally:
            srv.close()

    asyncio.run(main())
