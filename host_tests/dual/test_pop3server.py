"""The sans-I/O POP3 server session against a real store in a temp directory.
Runs under CPython (pytest) and MicroPython (host_tests/dual/run.py)."""

import binascii
import os

import oldrecord
from dualtest import skip

from pocketpost import auth, config, log, loginsvc, scram
from pocketpost.pop3cmd import Session
from pocketpost.pop3server import Service
from pocketpost.pop3body import BodyProducer
from pocketpost.pop3trans import PlainProducer
from pocketpost.store import Store
from pocketpost.wire import BAD_LINE, OVERLONG, DotUnstuffer, LineReader

log.set_sink(lambda line: None)

_n = [0]


def _rmtree(p):
    try:
        names = os.listdir(p)
    except OSError:
        try:
            os.remove(p)
        except OSError:
            pass
        return
    for n in names:
        q = p + "/" + n
        st = os.stat(q)
        if st[0] & 0o170000 == 0o040000:
            _rmtree(q)
        else:
            os.remove(q)
    os.rmdir(p)


def tmpdir():
    _n[0] += 1
    p = "/tmp/pp-t-%s-%d" % (binascii.hexlify(os.urandom(4)).decode(), _n[0])
    os.mkdir(p)
    return p


MSGS = [
    b"From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n",
    b"From: b@example.org\r\nSubject: two\r\n\r\n.leading dot\r\nline2\r\n..two dots\r\nline4\r\n",
    b"Subject: three\r\n\r\n" + b"x" * 5000 + b"\r\n.\r\nend\r\n",
]


class Env:
    def __init__(self, policy="local", tls=False, delays=None, apop=False, msgs=MSGS):
        self.dir = tmpdir()
        self.store = Store(self.dir + "/mail", quota=0, reserve=0)
        for m in msgs:
            d = self.store.begin("alice")
            d.write(m)
            d.commit()
        self.store.create("bob")
        cfg = config.check({"server": {"pbkdf2_iterations": 5, "plaintext_auth": policy,
                                       "auth_delays": delays or [1, 2, 4], "block_size": 256}})
        config.add_user(cfg, "alice", "pass word", 5, apop_secret="tanstaaf" if apop else None)
        config.add_user(cfg, "bob", "bobpw", 5)
        cfg = config.check(cfg)
        self.svc = Service(cfg["server"], cfg["users"], self.store, tls_available=tls)

    def session(self, peer="127.0.0.1", tls_active=False):
        return Session(self.svc, peer, tls_active)

    def done(self):
        _rmtree(self.dir)


def run(s, line):
    """One command -> everything sent back (status line + producer output)."""
    out = s.handle(line)
    for _ in range(100000):  # a login answers None until its hash is done (Session.resume)
        if out is not None:
            break
        out = s.resume()
    if s.producer is not None:
        buf = bytearray(64)
        for _ in range(100000):
            n = s.producer.fill(buf)
            if not n:
                break
            out += bytes(buf[:n])
    return out


def login(s, user=b"alice", pw=b"pass word"):
    assert run(s, b"USER " + user).startswith(b"+OK")
    r = run(s, b"PASS " + pw)
    assert r.startswith(b"+OK"), r
    return r


def unstuff(block):
    u = DotUnstuffer()
    out = bytearray(len(block) + 8)
    p = u.unstuff_into(block, 0, len(block), out)
    c, done = u.consumed, u.done
    assert done and c == len(block)
    return bytes(out[:p])


def test_greeting_and_capa_in_both_states():
    e = Env(tls=True)
    try:
        s = e.session()
        g = s.greeting()
        # no user has APOP: no timestamp, so no client is tempted into an APOP that must fail
        assert g == b"+OK pocketpost ready\r\n"
        assert run(s, b"APOP alice 0123456789abcdef0123456789abcdef").startswith(b"-ERR [AUTH]")
        capa = run(s, b"CAPA").split(b"\r\n")
        assert capa[0].startswith(b"+OK") and capa[-2] == b"." and capa[-1] == b""
        for c in (b"TOP", b"UIDL", b"USER", b"SASL PLAIN LOGIN SCRAM-SHA-256", b"RESP-CODES", b"AUTH-RESP-CODE",
                  b"PIPELINING", b"STLS"):
            assert c in capa, c
        assert b"IMPLEMENTATION pocketpost" in capa
        assert b"EXPIRE" not in b" ".join(capa) and b"LOGIN-DELAY" not in b" ".join(capa)
        login(s)
        capa = run(s, b"capa").split(b"\r\n")
        for c in (b"USER", b"SASL PLAIN LOGIN SCRAM-SHA-256", b"STLS", b"AUTH-RESP-CODE"):
            assert c not in capa
        for c in (b"TOP", b"UIDL", b"PIPELINING", b"RESP-CODES"):
            assert c in capa
        s.close()
        # TLS active: no STLS; no TLS configured: no STLS
        s = e.session(tls_active=True)
        assert b"STLS" not in run(s, b"CAPA")
        s.close()
    finally:
        e.done()


def test_no_stls_without_tls_config():
    e = Env(tls=False)
    try:
        s = e.session()
        assert b"STLS" not in run(s, b"CAPA")
        assert run(s, b"STLS").startswith(b"-ERR")
        assert not s.starttls
    finally:
        e.done()


def test_transaction_commands():
    e = Env()
    try:
        s = e.session()
        r = login(s)
        assert r.startswith(b"+OK 3 messages")
        total = sum(len(m) for m in MSGS)
        assert run(s, b"STAT") == b"+OK 3 %d\r\n" % total
        lst = run(s, b"LIST")
        assert lst.split(b"\r\n", 1)[1] == b"".join(b"%d %d\r\n" % (i + 1, len(m)) for i, m in enumerate(MSGS)) + b".\r\n"
        assert run(s, b"LIST 2") == b"+OK 2 %d\r\n" % len(MSGS[1])
        assert run(s, b"LIST 4").startswith(b"-ERR")
        assert run(s, b"LIST 0").startswith(b"-ERR")
        assert run(s, b"LIST 4294967297").startswith(b"-ERR")
        u = run(s, b"UIDL").split(b"\r\n")
        assert u[0].startswith(b"+OK") and len(u) == 6 and u[-2] == b"."
        uids = [x.split(b" ")[1] for x in u[1:4]]
        assert len(set(uids)) == 3
        assert run(s, b"UIDL 3") == b"+OK 3 " + uids[2] + b"\r\n"
        for i, m in enumerate(MSGS):
            r = run(s, b"RETR %d" % (i + 1))
            head, block = r.split(b"\r\n", 1)
            assert head == b"+OK %d octets" % len(m)
            assert unstuff(block) == m
        # dot-stuffing on the wire
        r = run(s, b"RETR 2")
        assert b"\r\n..leading dot\r\n" in r and b"\r\n...two dots\r\n" in r
        assert run(s, b"DELE 1") == b"+OK message 1 deleted\r\n"
        assert run(s, b"DELE 1").startswith(b"-ERR")
        assert run(s, b"RETR 1").startswith(b"-ERR")
        assert run(s, b"STAT") == b"+OK 2 %d\r\n" % (total - len(MSGS[0]))
        assert b"\r\n1 " not in run(s, b"LIST")
        assert run(s, b"NOOP") == b"+OK\r\n"
        assert run(s, b"RSET").startswith(b"+OK 3 ")
        assert run(s, b"STAT") == b"+OK 3 %d\r\n" % total
        assert run(s, b"DELE 2").startswith(b"+OK")
        assert run(s, b"QUIT").startswith(b"+OK")
        assert s.closing
        s.close()
        s = e.session()
        login(s)
        assert run(s, b"STAT") == b"+OK 2 %d\r\n" % (len(MSGS[0]) + len(MSGS[2]))
        # numbers are renumbered only in a new session; UIDs are kept
        assert run(s, b"UIDL 2") == b"+OK 2 " + uids[2] + b"\r\n"
        s.close()
    finally:
        e.done()


def test_top():
    e = Env()
    try:
        s = e.session()
        login(s)
        r = run(s, b"TOP 2 0")
        assert r.split(b"\r\n", 1)[1] == b"From: b@example.org\r\nSubject: two\r\n\r\n.\r\n"
        r = run(s, b"TOP 2 1")
        assert unstuff(r.split(b"\r\n", 1)[1]) == b"From: b@example.org\r\nSubject: two\r\n\r\n.leading dot\r\n"
        r = run(s, b"TOP 2 3")
        assert unstuff(r.split(b"\r\n", 1)[1]) == MSGS[1][: MSGS[1].index(b"line4")]
        r = run(s, b"TOP 2 100")
        assert unstuff(r.split(b"\r\n", 1)[1]) == MSGS[1]
        r = run(s, b"TOP 3 1")  # a 5000-byte body line straddles many blocks
        assert unstuff(r.split(b"\r\n", 1)[1]) == b"Subject: three\r\n\r\n" + b"x" * 5000 + b"\r\n"
        assert run(s, b"TOP 2").startswith(b"-ERR")
        assert run(s, b"TOP 9 1").startswith(b"-ERR")
        s.close()
    finally:
        e.done()


class _F:
    def __init__(self, data, step):
        self.data = data
        self.pos = 0
        self.step = step

    def readinto(self, buf):
        n = min(len(buf), self.step, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n

    def close(self):
        pass


def test_top_every_block_split():
    msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n"
    for lines in range(0, 5):
        want = msg[: msg.index(b"\r\n\r\n") + 4]
        rest = msg[len(want):].split(b"\r\n")
        want += b"".join(x + b"\r\n" for x in rest[:lines] if x or False)
        for step in range(1, len(msg) + 1):
            p = BodyProducer(_F(msg, step), 64, lines)
            out = b""
            buf = bytearray(7)
            for _ in range(1000):
                n = p.fill(buf)
                if not n:
                    break
                out += bytes(buf[:n])
            assert unstuff(out) == want, (lines, step, out)


def test_body_without_final_crlf_and_empty():
    for msg, wire in ((b"abc", b"abc\r\n.\r\n"), (b"", b".\r\n"), (b".\r\n", b"..\r\n.\r\n")):
        p = BodyProducer(_F(msg, 2), 16, -1)
        out = b""
        buf = bytearray(5)
        for _ in range(100):
            n = p.fill(buf)
            if not n:
                break
            out += bytes(buf[:n])
        assert out == wire, (msg, out)


def test_commands_out_of_state_and_garbage():
    e = Env()
    try:
        s = e.session()
        for bad in (b"STAT", b"LIST", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"TOP 1 1", b"UIDL"):
            r = run(s, bad)
            assert r.startswith(b"-ERR") and r.count(b"\r\n") == 1, (bad, r)
        for bad in (b"", b"XYZZY", b"\xff\xfe", b"RETR", b"USER", b"PASS", b"LIST 1 2", b"USER a b",
                    b"\x00", b"LIST ", b"RETR -1", b"RETR 01"):
            r = run(s, bad)
            assert r.startswith(b"-ERR") and r.count(b"\r\n") == 1, (bad, r)
        assert s.handle_bad(OVERLONG).startswith(b"-ERR")
        assert s.handle_bad(BAD_LINE).startswith(b"-ERR")
        assert run(s, b"PASS nouser").startswith(b"-ERR")
        login(s)
        for bad in (b"USER alice", b"PASS x", b"APOP a b", b"AUTH PLAIN", b"STLS"):
            r = run(s, bad)
            assert r.startswith(b"-ERR"), bad
        assert run(s, b"STAT").startswith(b"+OK")
        s.close()
    finally:
        e.done()


def test_wrong_password_same_answer_and_growing_delay():
    e = Env(delays=[1, 2, 4])
    try:
        s = e.session(peer="127.0.0.5")
        answers = []
        delays = []
        for user in (b"alice", b"nosuchuser"):
            run(s, b"USER " + user)
            answers.append(run(s, b"PASS wrong"))
            delays.append(s.delay)
        assert answers[0] == answers[1] and answers[0].startswith(b"-ERR [AUTH]")
        assert delays == [1, 2]
        assert not s.closing
        run(s, b"USER alice")
        r = run(s, b"PASS wrong")
        assert r.startswith(b"-ERR [AUTH]") and s.closing and s.delay == 4
        # another session from the same address keeps the grown delay
        s2 = e.session(peer="127.0.0.5")
        run(s2, b"USER alice")
        run(s2, b"PASS still wrong")
        assert s2.delay == 4
        # ...but another address starts low
        s3 = e.session(peer="127.0.0.6")
        run(s3, b"USER alice")
        run(s3, b"PASS wrong")
        assert s3.delay == 1
        login(s3)  # and the right password works
        s3.close()
    finally:
        e.done()


def test_success_resets_only_its_own_address():
    e = Env(delays=[1, 2, 4, 8])
    try:
        for peer in ("127.0.0.7", "127.0.0.8"):
            s = e.session(peer=peer)
            for _ in range(2):
                run(s, b"USER alice")
                run(s, b"PASS wrong")
            assert s.delay == 2
        s = e.session(peer="127.0.0.7")
        login(s)  # the right password: 127.0.0.7's failures are forgotten
        s.close()
        assert loginsvc.failures(e.svc, "127.0.0.7") == 0
        assert loginsvc.failures(e.svc, "127.0.0.8") == 2
        s = e.session(peer="127.0.0.7")
        run(s, b"USER alice")
        run(s, b"PASS wrong")
        assert s.delay == 1  # back to the first delay
        s = e.session(peer="127.0.0.8")
        run(s, b"USER alice")
        run(s, b"PASS wrong")
        assert s.delay == 4  # the other address is not affected
    finally:
        e.done()


class _ThrottleState:
    """What loginsvc's throttle reads and keeps on a pop3server.Service."""

    def __init__(self, delays, window_s):
        self.cfg = {"auth_delays": delays, "auth_fail_window": window_s}
        self.fails = {}


def test_throttle_window_and_bound():
    t = _ThrottleState([2, 4, 8, 15], 10)
    f = loginsvc.fail
    assert [f(t, "a", 0), f(t, "a", 1000), f(t, "a", 2000), f(t, "a", 3000), f(t, "a", 4000)] == [2, 4, 8, 15, 15]
    assert loginsvc.failures(t, "a", 5000) == 5
    assert f(t, "a", 20000) == 2  # forgotten after the window
    for i in range(200):
        f(t, "h%d" % i, 21000 + i)
    assert len(t.fails) <= 32  # loginsvc._MAX_THROTTLE_ENTRIES


def test_plaintext_policy():
    e = Env(policy="local", tls=True)
    try:
        s = e.session(peer="192.0.2.1")
        capa = run(s, b"CAPA")
        assert b"USER" not in capa and b"PLAIN" not in capa and b"STLS" in capa
        assert b"\r\nSASL SCRAM-SHA-256\r\n" in capa  # no password crosses: offered without TLS
        r = run(s, b"USER alice")
        assert r.startswith(b"-ERR [AUTH]")
        assert run(s, b"PASS pass word").startswith(b"-ERR [AUTH]")
        assert run(s, b"AUTH PLAIN").startswith(b"-ERR [AUTH]")
        # after STLS the same peer may log in
        assert run(s, b"STLS").startswith(b"+OK") and s.starttls
        s.tls_active = True
        assert b"STLS" not in run(s, b"CAPA")
        login(s)
        s.close()
        e.svc.policy = "never"
        s = e.session(peer="127.0.0.1")
        assert run(s, b"USER alice").startswith(b"-ERR [AUTH]")
        e.svc.policy = "always"
        s = e.session(peer="192.0.2.1")
        login(s)
        s.close()
    finally:
        e.done()


def plain(authz, authc, pw):
    return binascii.b2a_base64(authz + b"\x00" + authc + b"\x00" + pw).rstrip(b"\n")


def test_auth_plain():
    e = Env()
    try:
        s = e.session()
        assert b"PLAIN" in run(s, b"AUTH")
        assert run(s, b"AUTH CRAM-MD5").startswith(b"-ERR")
        r = run(s, b"AUTH PLAIN " + plain(b"", b"alice", b"pass word"))
        assert r.startswith(b"+OK"), r
        s.close()
        s = e.session()
        assert run(s, b"AUTH PLAIN") == b"+ \r\n"
        assert run(s, b"*").startswith(b"-ERR")
        assert run(s, b"AUTH PLAIN") == b"+ \r\n"
        assert run(s, b"=").startswith(b"-ERR [AUTH]")
        assert run(s, b"AUTH PLAIN") == b"+ \r\n"
        assert run(s, b"not base64 !!").startswith(b"-ERR [AUTH]")
        assert run(s, b"AUTH PLAIN " + plain(b"bob", b"alice", b"pass word")).startswith(b"-ERR [AUTH]")
        assert run(s, b"AUTH PLAIN") == b"+ \r\n"
        assert run(s, plain(b"alice", b"alice", b"pass word")).startswith(b"+OK")
        s.close()
    finally:
        e.done()


def _b64(b):
    return binascii.b2a_base64(b).rstrip(b"\n")


def test_auth_login():
    # draft-murchison-sasl-login, as Outlook speaks it: the user name, then the password, each
    # base64 after a base64 prompt; or the user name as an initial response.
    e = Env(delays=[0.5, 1])
    try:
        s = e.session()
        assert b"LOGIN" in run(s, b"AUTH")
        assert run(s, b"AUTH LOGIN") == b"+ VXNlcm5hbWU6\r\n"  # "Username:"
        assert run(s, _b64(b"alice")) == b"+ UGFzc3dvcmQ6\r\n"  # "Password:"
        r = run(s, _b64(b"pass word"))
        assert r.startswith(b"+OK") and s.state == 1, r
        s.close()
        s = e.session()
        assert run(s, b"AUTH LOGIN " + _b64(b"bob")) == b"+ UGFzc3dvcmQ6\r\n"
        assert run(s, _b64(b"bobpw")).startswith(b"+OK")
        s.close()
        s = e.session()
        assert run(s, b"auth login") == b"+ VXNlcm5hbWU6\r\n"
        assert run(s, b"*").startswith(b"-ERR")  # cancelled
        assert run(s, b"AUTH LOGIN " + _b64(b"alice")).startswith(b"+ ")
        r = run(s, _b64(b"wrong"))
        assert r.startswith(b"-ERR [AUTH]") and s.delay == 0.5
        assert run(s, b"AUTH LOGIN") == b"+ VXNlcm5hbWU6\r\n"
        assert run(s, b"not base64 !!").startswith(b"-ERR [AUTH]")
        assert run(s, b"AUTH LOGIN " + _b64(b"\xff\xfe")).startswith(b"+ ")  # not UTF-8: no such user
        assert run(s, _b64(b"pass word")).startswith(b"-ERR [AUTH]")
        s.close()
        # same policy as PLAIN: not offered, not accepted in the clear from outside
        s = e.session(peer="192.0.2.1")
        assert b"LOGIN" not in run(s, b"CAPA") and run(s, b"AUTH LOGIN").startswith(b"-ERR [AUTH]")
        s.close()
    finally:
        e.done()


def test_apop_opt_in():
    e = Env(apop=True)
    s0 = e.session()
    g = s0.greeting()
    assert g.startswith(b"+OK ") and b"<" in g and g.endswith(b">\r\n")  # RFC 1939 timestamp
    try:
        s = e.session()
        ts = s.timestamp
        d = auth.apop_digest(ts, "tanstaaf")
        assert run(s, b"APOP alice " + d).startswith(b"+OK")
        s.close()
        s = e.session()
        assert run(s, b"APOP alice " + auth.apop_digest("<other@x>", "tanstaaf")).startswith(b"-ERR [AUTH]")
        # bob has no APOP secret: refused even with the "right" empty-secret digest
        assert run(s, b"APOP bob " + auth.apop_digest(s.timestamp, "")).startswith(b"-ERR [AUTH]")
        s.close()
    finally:
        e.done()


def test_in_use_and_lock_released_on_close():
    e = Env()
    try:
        s1 = e.session()
        login(s1)
        assert run(s1, b"DELE 1").startswith(b"+OK")
        s2 = e.session()
        run(s2, b"USER alice")
        r = run(s2, b"PASS pass word")
        assert r.startswith(b"-ERR [IN-USE]"), r
        assert s2.failures == 0
        s1.close()  # a drop: nothing deleted, lock freed
        login(s2)
        assert run(s2, b"STAT").startswith(b"+OK 3 ")
        s2.close()
        s2.close()  # idempotent
    finally:
        e.done()


def test_pipelined_batch_any_split():
    """A pipelined batch fed through a LineReader at every split point gives the same replies."""
    e = Env()
    try:
        batch = b"CAPA\r\nUSER alice\r\nPASS pass word\r\nSTAT\nLIST\r\nUIDL 1\r\nTOP 1 0\r\nRETR 2\r\nNOOP\r\nRSET\r\nQUIT\r\n"
        ref = None
        for cut in list(range(0, len(batch) + 1, 3)) + [1, len(batch) - 1]:
            s = e.session()
            r = LineReader(255)
            out = b""
            for piece in (batch[:cut], batch[cut:]):
                while piece:
                    n = r.feed(piece)
                    piece = piece[n:]
                    for _ in range(100):
                        ln = r.next_line()
                        if ln is None:
                            break
                        out += run(s, ln)
            s.close()
            if ref is None:
                ref = out
                assert out.count(b"+OK") >= 11 and b"-ERR" not in out
            # the timestamp differs per session but is not echoed: replies are identical
            assert out == ref, cut
    finally:
        e.done()


def test_pass_keeps_spaces():
    e = Env()
    try:
        s = e.session()
        run(s, b"USER alice")
        assert run(s, b"PASS pass  word").startswith(b"-ERR")  # two spaces: a different password
        run(s, b"USER alice")
        assert run(s, b"PASS pass word").startswith(b"+OK")
        s.close()
    finally:
        e.done()


def _drain(p, bufsize):
    out = b""
    buf = bytearray(bufsize)
    for _ in range(100000):
        n = p.fill(buf)
        if not n:
            break
        out += bytes(buf[:n])
    return out


def test_retr_plain_path_same_bytes():
    """Every message is sent straight from its file (PlainProducer: the store keeps the wire
    form, dot lines stuffed); the bytes on the wire are exactly what the dot-stuffing path makes
    of the message, and TOP of the stored wire form equals TOP through the stuffing path."""
    msgs = [b"Subject: plain\r\n\r\nno dot lines. none.\r\n",
            b"",
            b"Subject: big\r\n\r\n" + b"y" * 3000 + b"\r\n" + b"z.\r\n" * 700,
            b"Subject: lf\nsloppy\nline ends.\n",  # stored with CRLF, still plain
            MSGS[1],  # dot lines: stored stuffed
            b".Subject: dots\r\n\r\n.\r\n..\r\n.x\r\n" + b"a\r\n.b\r\n" * 300 + b".",  # no final CRLF
            ]
    e = Env(msgs=msgs)
    try:
        s = e.session()
        login(s)
        for i, m in enumerate(msgs):
            stored = m.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            if stored and not stored.endswith(b"\n"):
                stored += b"\r\n"
            assert s.mb.stuffed(i) == (i >= 4) and not s.mb.needs_stuffing(i)
            r = s.handle(b"RETR %d" % (i + 1))
            assert r == b"+OK %d octets\r\n" % len(stored)
            p = s.producer
            s.producer = None
            assert type(p).__name__ == "PlainProducer", (i, p)  # (pop3trans may be a later copy on MicroPython)
            wire = _drain(p, 256)
            p.close()
            f = s.mb.open(i)  # the message, un-stuffed
            ref = _drain(BodyProducer(f, 256, -1), 256)  # the stuffing path on the message
            assert wire == ref, i
            assert unstuff(wire) == stored, i
            if i == 1:
                assert wire == b".\r\n"
            for bufsize in (5, 7, 1024):  # any buffer the shell may use
                f = s.mb.open(i, True)
                assert _drain(PlainProducer(f), bufsize) == wire
            for n in (0, 1, 2, 5, 1000):
                r = s.handle(b"TOP %d %d" % (i + 1, n))
                assert r.startswith(b"+OK"), r
                p = s.producer
                s.producer = None
                top = _drain(p, 7)
                p.close()
                f = s.mb.open(i)
                assert top == _drain(BodyProducer(f, 64, n), 256), (i, n)
        s.close()
    finally:
        e.done()


def test_plain_producer_file_without_final_crlf():
    # The store never writes such a file; if one appears anyway, the reply still ends framed.
    for data, wire in ((b"abc", b"abc\r\n.\r\n"), (b"abc\r\n", b"abc\r\n.\r\n"), (b"", b".\r\n")):
        assert _drain(PlainProducer(_F(data, 2)), 5) == wire
        # With the size known, the terminator rides in the last block when it fits (a copy unit).
        for bufsize in (5, 6, 8, 64):
            assert _drain(PlainProducer(_F(data, 64), len(data), 64), bufsize) == wire, (data, bufsize)


def test_close_mid_retr_closes_the_message_file():
    # The shell may fail to send the +OK of RETR/TOP (peer reset) before it runs the producer:
    # the session's close() must close the message file the producer holds, for both producers.
    e = Env()
    try:
        for cmd in (b"RETR 1", b"RETR 2", b"TOP 3 1"):  # plain file, dot-stuffed, TOP
            s = e.session()
            login(s)
            assert s.handle(cmd).startswith(b"+OK")
            p = s.producer
            assert p is not None and p.f is not None
            s.close()
            assert p.f is None and s.producer is None
    finally:
        e.done()


def test_a_command_failing_after_making_its_reply_body_sends_the_err_alone():
    # LIST, RETR and TOP make their producer before their status line: a failure between the two
    # (a MemoryError building the +OK on a full heap) is answered -ERR by Session.handle, and no
    # body may follow that -ERR (the shell sends whatever producer the session holds: a client
    # would take the message's lines for the replies to its next commands). The message file goes.
    def patch(s, cmd):
        from pocketpost import pop3trans  # the copy the logged-in session holds (MicroPython)

        real_reply = pop3trans.reply
        if cmd.startswith(b"RETR"):
            s.mb.size = _oom  # RETR's "+OK n octets"
        else:
            pop3trans.reply = lambda ok, *a: _oom() if ok else real_reply(ok, *a)

        def undo():
            pop3trans.reply = real_reply

        return undo

    for cmd in (b"LIST", b"RETR 2", b"TOP 3 1"):
        _fails_alone(cmd, patch)


def test_a_retr_or_top_failing_before_its_reply_body_exists_closes_the_message_file():
    # The file is open before the producer that would close it exists: a failure in between (the
    # import of pop3body, the session's file block, the stuffer: allocations on a full heap) left
    # it open until a collection found it (MicroPython: a littlefs file holds its cache till then).
    def patch(s, cmd):
        s.mb.needs_stuffing = _oom  # asked right after the open, by RETR and by pop3body.producer
        return lambda: None

    for cmd in (b"RETR 2", b"TOP 3 1"):
        _fails_alone(cmd, patch)


def test_a_retr_failing_as_it_takes_the_copy_unit_hands_the_unit_back():
    # RETR counts its own copy unit out (Service.units) and then ties it to the producer whose
    # close() hands it back: a failure in between (the producer's new attribute, an allocation
    # on a full heap) must not leave the unit counted out for ever (every later RETR would copy
    # through its session's small block).
    big = b"Subject: u\r\n\r\n" + b"x" * 78 + b"\r\n" + (b"y" * 98 + b"\r\n") * 60
    e = Env(msgs=[big])
    try:
        s = e.session()
        login(s)
        assert run(s, b"NOOP") == b"+OK\r\n"  # pop3trans loaded and held: the copy patched
        from pocketpost import pop3trans

        real = pop3trans.PlainProducer

        class Failing(real):
            def _get(self):
                return None

            def _set(self, v):
                if v is not None:
                    _oom()

            svc = property(_get, _set)

        pop3trans.PlainProducer = Failing
        try:
            r = run(s, b"RETR 1")
        finally:
            pop3trans.PlainProducer = real
        assert r == b"-ERR [SYS/TEMP] internal error\r\n", r
        assert e.svc.units == 0, "the copy unit stays counted out"
        assert s.handle(b"RETR 1").startswith(b"+OK")
        assert s.producer.unit is not None and e.svc.units == 1
        s.close()
        assert e.svc.units == 0
    finally:
        e.done()


def _oom(*a):
    raise MemoryError("memory allocation failed")


def _fails_alone(cmd, patch):
    """cmd, with patch(session, cmd) making it fail (returns its undo), is answered -ERR alone,
    every message file it opened is closed, and the session goes on."""
    e = Env()
    try:
        s = e.session()
        login(s)
        assert run(s, b"NOOP") == b"+OK\r\n"  # pop3trans loaded and held: the copy patched
        opened = []
        real_open = s.mb.open

        def tracked(i, stored=False):
            opened.append(real_open(i, stored))
            return opened[-1]

        s.mb.open = tracked
        undo = patch(s, cmd)
        try:
            r = run(s, cmd)
        finally:
            undo()
        assert r == b"-ERR [SYS/TEMP] internal error\r\n", (cmd, r)
        assert s.producer is None
        for f in opened:  # closed: reading it raises
            try:
                f.read(1)
                assert False, (cmd, "message file left open")
            except ValueError:  # CPython: I/O operation on closed file
                pass
            except OSError:  # MicroPython: EBADF
                pass
        assert run(s, b"NOOP") == b"+OK\r\n"
        s.close()
    finally:
        e.done()


def _steps(w):
    n = 0
    while not w.step(1):
        n += 1
    return n


def test_service_has_at_most_17_attributes():
    # One Service per server: its instance table holds 17 entries in 288 B on the 64-bit host, the
    # next size (23 entries) 384 B. Everything set: TLS, the server's context and rehash hook, an
    # APOP user, trusted networks (the hostname, the throttle's delays and window stay in cfg).
    e = Env(tls=True, apop=True)
    try:
        e.svc.tls_ctx = object()  # as serverstart.build sets them
        e.svc.on_rehash = print
        n = len(e.svc.__dict__)
        assert n <= 17, sorted(e.svc.__dict__)
        assert e.svc.nets and e.svc.apop_enabled
        s = e.session()
        assert s.timestamp.endswith("@%s>" % e.svc.cfg["hostname"]), s.timestamp  # APOP's banner
    finally:
        e.done()


def test_every_check_costs_the_board_count():
    # The dummy hash of unknown users has the board's count, not the slowest stored one; a
    # stored hash with fewer iterations is padded up to it: the same work for every answer.
    e = Env()
    try:
        users = dict(e.svc.users)
        users["carol"] = {"password": auth.hash_password("x", 40), "mailbox": "carol"}
        users["dave"] = {"password": auth.hash_password("y", 2), "mailbox": "dave"}
        svc = Service(config.check({"server": {"pbkdf2_iterations": 5}})["server"], users, e.store)
        assert auth.parse_hash(svc._dummy)[0] == 5
        known = _steps(auth.LoginCheck(svc, "alice", b"wrong"))
        assert known == _steps(auth.LoginCheck(svc, "nobody", b"wrong"))
        assert known == _steps(auth.LoginCheck(svc, "dave", b"wrong"))
        assert _steps(auth.LoginCheck(svc, "carol", b"wrong")) > known  # until its first login
    finally:
        e.done()


def test_rehash_to_the_board_count_at_login():
    e = Env()
    try:
        users = dict(e.svc.users)
        users["alice"] = {"password": auth.hash_password("pass word", 7), "mailbox": "alice"}
        svc = Service(config.check({"server": {"pbkdf2_iterations": 5}})["server"], users, e.store)
        saved = []
        svc.on_rehash = lambda name, h: saved.append((name, h))
        s = Session(svc, "127.0.0.1")
        run(s, b"USER alice")
        assert run(s, b"PASS wrong").startswith(b"-ERR")
        assert saved == [] and auth.parse_hash(users["alice"]["password"])[0] == 7
        login(s)
        s.close()
        assert len(saved) == 1 and saved[0][0] == "alice"
        h = users["alice"]["password"]
        assert h == saved[0][1] and auth.parse_hash(h)[0] == 5
        assert auth.verify_password("pass word", h) and not auth.verify_password("pass wore", h)
        s = Session(svc, "127.0.0.1")
        login(s)  # already at the board's count: no second rehash
        s.close()
        assert len(saved) == 1
    finally:
        e.done()


def test_login_hash_runs_in_slices():
    e = Env()
    try:
        svc = Service(config.check({"server": {"pbkdf2_iterations": 40000}})["server"], e.svc.users, e.store)
        s = Session(svc, "127.0.0.1")
        run(s, b"USER bob")
        assert s.handle(b"PASS bobpw") is None  # the hash has not started yet
        slices = 1
        r = s.resume()
        while r is None:
            slices += 1
            r = s.resume()
        assert r.startswith(b"+OK") and slices >= 2, slices
        s.close()
    finally:
        e.done()


def test_log_lines_carry_the_session_number_method_and_delay():
    e = Env(apop=True, delays=[1, 2, 4])
    lines = []
    log.set_sink(lines.append)
    try:
        s = Session(e.svc, "10.0.0.7", True, 42)  # over TLS: plain-text logins allowed
        run(s, b"APOP alice " + auth.apop_digest("<other@x>", "tanstaaf"))
        run(s, b"AUTH PLAIN " + binascii.b2a_base64(b"\x00alice\x00wrong").strip())
        run(s, b"USER alice")
        run(s, b"PASS pass word")
        run(s, b"DELE 2")
        run(s, b"QUIT")
        s.close()
    finally:
        log.set_sink(lambda line: None)
        e.done()
    body = [ln.split(" INFO ", 1)[1] for ln in lines]
    assert body == ["pop3 #42 10.0.0.7 login failed user=alice method=APOP failures=1 delay=1s",
                    "pop3 #42 10.0.0.7 login failed user=alice method=AUTH PLAIN failures=2 delay=2s",
                    "pop3 #42 10.0.0.7 login user=alice method=USER/PASS tls=1 messages=3",
                    "pop3 #42 10.0.0.7 quit user=alice deleted=1"], lines


# --- AUTH SCRAM-SHA-256 ------------------------------------------------------------------------
def b64(raw):
    return binascii.b2a_base64(raw).rstrip(b"\n")


def unb64(line):
    assert line.startswith(b"+ ") and line.endswith(b"\r\n"), line
    return binascii.a2b_base64(line[2:-2])


def scram_login(s, user="alice", pw="pass word", initial=True, header=b"n,,"):
    """A SCRAM-SHA-256 exchange through the session, with scram.ScramClient (checked against
    the RFC 7677 vector in test_scram, and against independent code in test_server_scram.py).
    -> (final status line, the client, the server-first message or None)."""
    c = scram.ScramClient(user, pw)
    cf = header + c.bare
    if initial:
        r = run(s, b"AUTH SCRAM-SHA-256 " + b64(cf))
    else:
        assert run(s, b"AUTH scram-sha-256") == b"+ \r\n"
        r = run(s, b64(cf))
    if not r.startswith(b"+ "):
        return r, c, None
    sf = unb64(r)
    c.server_first(sf)
    r = run(s, b64(c.final()))
    if not r.startswith(b"+ "):
        return r, c, sf
    c.server_final(unb64(r))  # the server proved it holds ServerKey
    return run(s, b""), c, sf


def test_scram_login_without_tls_from_anywhere():
    e = Env(policy="never", delays=[3])
    try:
        for initial in (True, False):
            s = e.session(peer="192.0.2.1")
            r, c, sf = scram_login(s, initial=initial)
            assert r.startswith(b"+OK 3 messages"), r
            assert s.state == 1 and s.user == "alice" and s.delay == 0
            assert sf.endswith(b",i=5") and c.iterations == 5
            assert run(s, b"STAT").startswith(b"+OK 3 ")
            s.close()
        assert run(e.session(), b"AUTH").endswith(b"\r\nSCRAM-SHA-256\r\n.\r\n")
    finally:
        e.done()


def test_scram_wrong_password_fails_like_any_login():
    e = Env(delays=[1, 2, 4])
    try:
        s = e.session()
        r, c, sf = scram_login(s, pw="pass wore")
        assert r.startswith(b"-ERR [AUTH] authentication failed") and s.delay == 1 and s.state == 0
        assert sf is not None  # the server answered the first message as for the right password
        r, c, sf = scram_login(s, user="bob", pw="pass word")  # another user's password
        assert r.startswith(b"-ERR [AUTH]") and s.delay == 2
        r, c, sf = scram_login(s, pw="pass wore")
        assert r.startswith(b"-ERR [AUTH]") and s.closing and s.failures == 3  # max_auth_failures
        # a success resets the address's delay (the throttle), as for USER/PASS
        s = e.session()
        assert scram_login(s)[0].startswith(b"+OK")
        s.close()
        s = e.session()
        assert scram_login(s, pw="x")[0].startswith(b"-ERR") and s.delay == 1
    finally:
        e.done()


def test_scram_unknown_user_looks_like_a_known_one():
    e = Env()
    try:
        known = scram_login(e.session(), pw="wrong")
        firsts = []
        for _ in range(2):
            s = e.session()
            r, c, sf = scram_login(s, user="nobody", pw="pass word")
            assert r == known[0] and s.delay > 0, r  # same answer as a wrong password
            firsts.append(sf)
        # same shape as a known user's challenge: board count, 16-octet salt, stable per name
        salts = [f.split(b",")[1] for f in firsts]
        assert salts[0] == salts[1] and firsts[0].endswith(b",i=5")
        assert len(auth.b64decode(salts[0][2:])) == len(auth.b64decode(known[2].split(b",")[1][2:])) == 16
        other = scram_login(e.session(), user="nobody2")[2].split(b",")[1]
        assert other != salts[0]
        # a second Service over the same users (a reboot) gives the same fake salt
        svc2 = Service(e.svc.cfg, e.svc.users, e.store)
        assert scram_login(Session(svc2, "127.0.0.1"), user="nobody")[2].split(b",")[1] == salts[0]
    finally:
        e.done()


def test_scram_refuses_other_authzid_malformed_and_cancel():
    e = Env(delays=[1, 1, 1, 1, 1, 1], )
    e.svc.max_failures = 10
    try:
        s = e.session()
        r = scram_login(s, header=b"n,a=bob,")[0]  # right password, but asks to be bob
        assert r.startswith(b"-ERR [AUTH]") and s.state == 0
        r = scram_login(s, header=b"n,a=alice,")[0]  # as oneself, but ScramClient signs c=biws:
        assert r.startswith(b"-ERR [AUTH]")  # the channel binding does not match the header
        c = scram.ScramClient("alice", "pass word")
        for bad in (b"!!!", b"p=tls-unique,,n=alice,r=x", b"n,,n=alice"):
            assert run(s, b"AUTH SCRAM-SHA-256 " + (bad if bad == b"!!!" else b64(bad))).startswith(b"-ERR [AUTH]")
        assert run(s, b"AUTH SCRAM-SHA-256") == b"+ \r\n"
        assert run(s, b"*").startswith(b"-ERR authentication cancelled")
        r = run(s, b"AUTH SCRAM-SHA-256 " + b64(c.first()))
        assert r.startswith(b"+ ")
        assert run(s, b"*").startswith(b"-ERR authentication cancelled")
        # a non-empty answer to server-final
        c = scram.ScramClient("alice", "pass word")
        c.server_first(unb64(run(s, b"AUTH SCRAM-SHA-256 " + b64(c.first()))))
        assert run(s, b64(c.final())).startswith(b"+ ")
        assert run(s, b"Zm9v").startswith(b"-ERR [AUTH]") and s.state == 0
        assert scram_login(s)[0].startswith(b"+OK")
    finally:
        e.done()


def _legacy(svc, name, pw, its):
    salt = os.urandom(16)
    svc.users[name]["password"] = oldrecord.format_hash(its, salt, auth.pbkdf2_sha256(pw, salt, its))
    return salt


def test_old_records_upgraded_at_next_login_by_any_mechanism():
    e = Env()
    saved = []
    e.svc.on_rehash = lambda name, h: saved.append((name, h))
    try:
        users = e.svc.users
        # SCRAM against an old record: works at once (it is SaltedPassword), then only keys stay
        salt = _legacy(e.svc, "alice", "pass word", 5)
        old = users["alice"]["password"]
        assert scram_login(e.session())[0].startswith(b"+OK")
        new = users["alice"]["password"]
        assert saved == [("alice", new)] and new.startswith("scram-sha-256$5$")
        it, s2, sk, svk, legacy = auth.parse_hash(new)
        assert s2 == salt and not legacy and auth.parse_hash(old)[2:4] == (sk, svk)
        assert old.split("$")[3] not in new  # SaltedPassword dropped
        e.session().close()
        # USER/PASS against an old record at the board's count: same salt and keys, new form
        salt = _legacy(e.svc, "bob", b"bobpw", 5)
        s = e.session()
        login(s, b"bob", b"bobpw")
        assert saved[-1][0] == "bob" and auth.parse_hash(users["bob"]["password"])[1] == salt
        assert users["bob"]["password"].startswith("scram-sha-256$5$")
        s.close()
        # an old record with another count: USER/PASS rehashes to the board's, in the new form
        _legacy(e.svc, "bob", b"bobpw", 3)
        s = e.session()
        login(s, b"bob", b"bobpw")
        assert users["bob"]["password"].startswith("scram-sha-256$5$") and auth.verify_password("bobpw", users["bob"]["password"])
        s.close()
        n = len(saved)
        for _ in range(2):  # nothing more to upgrade: no more saves, by either mechanism
            s = e.session()
            login(s, b"bob", b"bobpw")
            s.close()
            s = e.session()
            assert scram_login(s, "bob", "bobpw")[0].startswith(b"+OK")
            s.close()
        assert len(saved) == n
        # a failed SCRAM login upgrades nothing
        _legacy(e.svc, "alice", "pass word", 5)
        assert scram_login(e.session(), pw="nope")[0].startswith(b"-ERR") and len(saved) == n
    finally:
        e.done()


def _loaded(name):
    import sys

    return ("pocketpost." + name) in sys.modules


def test_login_code_loaded_only_while_a_session_can_log_in():
    # pop3login.py, auth.py and scram.py (pop3server.LOGIN_MODULES) are held by sessions before their login
    # (Service.hold/release); with none left they are dropped (MicroPython: heapmark.forget;
    # CPython keeps modules) and a later login imports them again and still works.
    import sys

    from pocketpost import pop3server

    mp = sys.implementation.name == "micropython"
    pop3server.holds[0] = 0  # sessions other tests left unclosed are garbage now
    e = Env()
    try:
        if mp:
            assert not _loaded("auth") and not _loaded("scram")  # dropped once the Service was built
            assert not _loaded("pop3login")
        a = e.session()
        b = e.session()
        assert pop3server.holds[0] == 2
        login(a)  # a LoginCheck: auth imported again
        assert pop3server.holds[0] == 1 and _loaded("auth") and _loaded("pop3login")  # b may still log in: kept
        r = run(b, b"AUTH SCRAM-SHA-256 " + binascii.b2a_base64(b"n,,n=bob,r=abcdefgh").strip())
        assert r.startswith(b"+ ") and _loaded("scram"), r
        b.close()  # mid-SCRAM: the exchange is abandoned with the session
        assert pop3server.holds[0] == 0
        if mp:
            assert not _loaded("auth") and not _loaded("scram") and not _loaded("pop3login")
        c = e.session()
        assert run(c, b"PASS x").startswith(b"-ERR")
        login(c, b"bob", b"bobpw")  # the login code imported once more: the same answers
        assert pop3server.holds[0] == 0
        if mp:
            assert not _loaded("auth") and not _loaded("pop3login")
        assert run(c, b"STAT").startswith(b"+OK 0 0")
        a.close()
        c.close()
        assert pop3server.holds[0] == 0  # closing after the login releases nothing twice
    finally:
        e.done()


def test_a_login_with_no_failure_on_record_loads_no_throttle_code():
    # loginsvc.py (the failed-login throttle) is loaded by a failed login, and by a success only
    # from an address with failures on record (to forget them); a clean login and a plain-text
    # one under the "local" policy (pop3server.Service.trusted) never load it.
    import sys

    from pocketpost import heapmark, pop3server

    if sys.implementation.name != "micropython":
        skip("CPython keeps every module loaded (compat.forget)")
    pop3server.holds[0] = 0  # sessions other tests left unclosed are garbage now
    heapmark.forget(pop3server.LOGIN_MODULES)
    e = Env()
    try:
        a = e.session()
        b = e.session("127.0.0.9")  # before its login: the login code stays loaded (Service.hold)
        login(a)
        assert _loaded("pop3login") and not _loaded("loginsvc")
        a.close()  # (alice's mailbox free for b)
        assert run(b, b"USER alice").startswith(b"+OK") and run(b, b"PASS wrong").startswith(b"-ERR")
        assert _loaded("loginsvc") and e.svc.fails.get("127.0.0.9")
        login(b)  # a success after a failure: the record forgotten
        assert "127.0.0.9" not in e.svc.fails
        b.close()
    finally:
        e.done()


def test_one_retr_copy_unit_at_once_handed_back_at_close():
    """At most _RETR_UNITS RETRs stream through a 4 KiB unit of their own at once: a concurrent
    RETR copies through its session's block (the same bytes), and a RETR after the first one's
    end gets the unit again, however its reply ended (drained, or cut by the session's close)."""
    big = b"Subject: u\r\n\r\n" + b"x" * 78 + b"\r\n" + (b"y" * 98 + b"\r\n") * 60
    e = Env(msgs=[big])
    try:
        d = e.store.begin("bob")
        d.write(big)
        d.commit()
        a = e.session()
        login(a)
        b = e.session()
        login(b, b"bob", b"bobpw")
        assert e.svc.units == 0
        assert a.handle(b"RETR 1").startswith(b"+OK")
        pa = a.producer
        assert pa.unit is not None and len(pa.unit) == 4096 and e.svc.units == 1
        assert b.handle(b"RETR 1").startswith(b"+OK")
        pb = b.producer
        assert pb.unit is None and e.svc.units == 1  # the block instead
        wa = _drain(pa, len(pa.unit))
        wb = _drain(pb, 256)
        assert wa == wb and unstuff(wa) == big
        pa.close()
        a.producer = None
        assert e.svc.units == 0
        assert b.handle(b"RETR 1").startswith(b"+OK")
        assert b.producer.unit is not None and e.svc.units == 1
        b.close()  # mid-reply: the session's close hands the unit back
        assert e.svc.units == 0
        pa.close()
        assert e.svc.units == 0  # a producer closed twice hands its unit back once
        a.close()
    finally:
        e.done()


def test_transaction_code_loaded_only_while_a_session_is_logged_in():
    # pop3trans.py (pop3server.TRANS_MODULES: the TRANSACTION commands and the producers) is held
    # by logged-in sessions until their close(); with none left it is dropped (MicroPython:
    # heapmark.forget; CPython keeps modules) and the next logged-in session imports it again.
    import sys

    from pocketpost import pop3server

    mp = sys.implementation.name == "micropython"
    pop3server.trans[0] = 0  # sessions other tests left unclosed are garbage now
    if mp:
        from pocketpost import heapmark

        heapmark.forget(pop3server.TRANS_MODULES)
    e = Env()
    try:
        a = e.session()
        b = e.session()
        assert run(a, b"USER alice").startswith(b"+OK")
        assert pop3server.trans[0] == 0 and (not mp or not _loaded("pop3trans"))  # no session logged in yet
        login(a)
        login(b, b"bob", b"bobpw")
        r = run(a, b"STAT")
        assert r.startswith(b"+OK") and _loaded("pop3trans") and pop3server.trans[0] == 1, r
        assert run(b, b"LIST") == b"+OK 0 messages (0 octets)\r\n.\r\n" and pop3server.trans[0] == 2
        first = run(a, b"RETR 1")
        a.close()
        assert pop3server.trans[0] == 1 and _loaded("pop3trans")  # b still holds it
        b.close()
        assert pop3server.trans[0] == 0
        if mp:
            assert not _loaded("pop3trans")
        c = e.session()
        login(c)
        assert run(c, b"RETR 1") == first and first.startswith(b"+OK")  # imported again: the same reply
        assert pop3server.trans[0] == 1 and _loaded("pop3trans")
        run(c, b"QUIT")
        c.close()
        c.close()
        assert pop3server.trans[0] == 0  # closed twice: released once
    finally:
        e.done()


def test_plain_retr_loads_no_stuffing_code_top_does_until_the_last_logout():
    # A RETR of a wire-form file (every file the store writes) is a copy (pop3trans.PlainProducer):
    # pop3body.py (BodyProducer) and wirestuff.py (DotStuffer) load only at a TOP or the RETR of
    # a file from before the wire form, and are dropped with pop3trans.py (TRANS_MODULES).
    # The module check is MicroPython's (CPython keeps every module); the replies are both's.
    import sys

    from pocketpost import heapmark, pop3server

    mp = sys.implementation.name == "micropython"
    pop3server.trans[0] = 0  # sessions other tests left unclosed are garbage now
    heapmark.forget(pop3server.TRANS_MODULES)
    e = Env()
    try:
        a = e.session()
        login(a)
        r = run(a, b"RETR 2")
        assert unstuff(r[r.index(b"\r\n") + 2:]) == MSGS[1], r  # dot lines, stuffed in the store
        assert not mp or (_loaded("pop3trans") and not _loaded("pop3body") and not _loaded("wirestuff"))
        r = run(a, b"TOP 2 1")
        assert r == b"+OK top of message follows\r\nFrom: b@example.org\r\nSubject: two\r\n\r\n..leading dot\r\n.\r\n", r
        assert not mp or (_loaded("pop3body") and _loaded("wirestuff"))
        a.close()
        assert pop3server.trans[0] == 0
        assert not mp or not (_loaded("pop3trans") or _loaded("pop3body") or _loaded("wirestuff"))
        b = e.session()
        login(b)
        assert run(b, b"TOP 2 1") == r  # imported again: the same reply
        b.close()
    finally:
        e.done()


def test_login_check_loads_no_authsetup():
    # auth.py's start-up half (authsetup.py: hash_password, scram_secret, parse_cidr) is dropped
    # with the login code once the Service is built; a USER/PASS login (LoginCheck) never loads it.
    import sys

    from pocketpost import pop3server

    mp = sys.implementation.name == "micropython"
    pop3server.holds[0] = 0  # sessions other tests left unclosed are garbage now
    e = Env()
    try:
        assert not mp or not (_loaded("auth") or _loaded("authsetup"))
        a = e.session()
        login(a)
        assert not mp or not _loaded("authsetup")
        b = e.session()
        assert run(b, b"USER bob").startswith(b"+OK") and run(b, b"PASS nope").startswith(b"-ERR [AUTH]")
        assert not mp or (_loaded("auth") and not _loaded("authsetup"))
        if mp:  # the loaded auth.py holds no code of its start-up half
            held = sys.modules["pocketpost.auth"].__dict__
            assert "LoginCheck" in held and not ("hash_password" in held or "scram_secret" in held)
        b.close()
        a.close()
    finally:
        e.done()


def test_retr_copy_unit_counted_until_the_shell_closes_the_reply():
    """The shell sends a RETR's last block (the terminator with it) from the unit after fill()
    made it, and closes the reply after that send: the unit stays counted until then, so a RETR
    in between copies through its session's block (two 4 KiB units are never live at once)."""
    big = b"Subject: u\r\n\r\n" + (b"y" * 98 + b"\r\n") * 60
    e = Env(msgs=[big])
    try:
        d = e.store.begin("bob")
        d.write(big)
        d.commit()
        a = e.session()
        login(a)
        b = e.session()
        login(b, b"bob", b"bobpw")
        for unit_end in (True, False):  # terminator in the file's last block, or after it
            assert a.handle(b"RETR 1").startswith(b"+OK")
            pa = a.producer
            unit = pa.unit
            assert unit is not None and e.svc.units == 1
            got = b""
            while True:
                n = pa.fill(unit if unit_end else memoryview(unit)[:len(big)])
                if not n:
                    break
                got += bytes(unit[:n])  # the shell sends from the unit after fill() returned
                assert e.svc.units == 1, "unit handed back while the shell still sends from it"
                assert b.handle(b"RETR 1").startswith(b"+OK") and b.producer.unit is None
                b.producer.close()
                b.producer = None
            assert unstuff(got) == big
            pa.close()
            a.producer = None
            assert e.svc.units == 0
        a.close()
        b.close()
    finally:
        e.done()


def test_rehash_save_writes_the_record_and_drops_config():
    # server.Server's on_rehash (loginsvc.save_hash): the new record in the config file as
    # written, other users and sections untouched; config.py (start-up code, ~17 KB) is not kept
    # loaded after such a rare save (MicroPython).
    import json
    import sys

    from pocketpost import loginsvc

    d = tmpdir()
    path = d + "/config.json"
    with open(path, "w") as f:
        f.write(json.dumps({"users": {"alice": {"password": "old"}, "bob": {"password": "b"}}, "log": {"level": "info"}}))
    try:
        loginsvc.save_hash(path, "alice", "new")
        loginsvc.save_hash(path, "nobody", "x")  # not in the file: nothing written for it
        with open(path) as f:
            raw = json.loads(f.read())
        assert raw == {"users": {"alice": {"password": "new"}, "bob": {"password": "b"}}, "log": {"level": "info"}}, raw
        if sys.implementation.name == "micropython":
            assert not _loaded("config")
    finally:
        for n in os.listdir(d):
            os.remove(d + "/" + n)
        os.rmdir(d)


def test_a_logged_in_session_keeps_its_attribute_table_small():
    # Each attribute an instance sets is a slot in its table, which grows 12 -> 17 -> 23 slots
    # (192 -> 288 -> 384 B on the 64-bit host): a USER/PASS session through LIST and RETR sets
    # 10 (the defaults a command resets are set only when they change), 11 over TLS, two more
    # with a DELE; it set 18-19 when every command reset delay, producer and starttls, and the
    # login kept three.
    e = Env()
    try:
        for tls in (False, True):
            s = e.session(tls_active=tls)
            login(s)
            for c in (b"STAT", b"LIST", b"RETR 1", b"UIDL", b"RETR 3", b"NOOP"):
                assert run(s, c).startswith(b"+OK"), c
            assert len(s.__dict__) <= 10 + tls, sorted(s.__dict__)
            assert run(s, b"DELE 2").startswith(b"+OK")
            assert len(s.__dict__) <= 12 + tls, sorted(s.__dict__)
            s.close()
    finally:
        e.done()
