"""The server under micropython with POP3S and plain sessions in progress at once.

MicroPython's unix `select.poll` keeps a pollfd array for objects with a file descriptor and
polls other objects (an SSL socket has none) through their ioctl; when a new registration grows
that array while asyncio walks `ipoll()`'s results, the walk reads freed memory and the process
dies with SIGSEGV (seen: one POP3S session and three plain ones streaming RETRs at once, every
time once the fetcher's connection joined them; micropython/micropython#12887 is the same
family). The server therefore waits on the raw socket under TLS, so only file descriptors are
ever registered. This test holds several sessions, two of them POP3S, in the middle of their
RETRs at once, then lets them finish and checks every byte.
"""

import socket
import ssl
import threading

from serverharness import Pop3Server

HOLD = 64 * 1024  # each client reads this much, then waits until every session has
MSG = b"From: a@example.org\r\nSubject: poll\r\n\r\n" + b".dot\r\n" + (b"z" * 1022 + b"\r\n") * 1024
HELD = 3  # sessions held mid-RETR; of them TLS are POP3S
TLS = (1,)
LATE = 3  # plain sessions that come and go while the held ones wait


def _client(port, user, ca, barrier, out, i, release=None):
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the server's writes stay pending
        s.settimeout(30)
        s.connect(("127.0.0.1", port))
        if ca:
            s = ssl.create_default_context(cafile=ca).wrap_socket(s, server_hostname="localhost")
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        s.sendall(b"USER %s\r\nPASS pw\r\nRETR 1\r\n" % user.encode())
        assert f.readline().startswith(b"+OK")
        assert f.readline().startswith(b"+OK")
        assert f.readline().startswith(b"+OK")
        got = f.read(HOLD) if release is not None else b""
        if release is not None:
            barrier.wait(30)
            if not release.wait(30):
                raise RuntimeError("never released")
        lines = []
        data = got + b""
        while not data.endswith(b"\r\n.\r\n"):
            d = f.read1(65536)
            if not d:
                raise EOFError("closed mid-RETR")
            data += d
        for ln in data[:-3].split(b"\r\n"):
            lines.append(ln[1:] if ln.startswith(b".") else ln)
        out[i] = b"\r\n".join(lines) == MSG
        s.sendall(b"QUIT\r\n")
        f.readline()
        s.close()
    except Exception as e:  # noqa: BLE001 - reported by the assertion below
        out[i] = e
        barrier.abort()


def test_tls_and_plain_sessions_streaming_at_once(tmp_path):
    """HELD sessions (two POP3S) hold their RETRs half-read; meanwhile LATE plain sessions connect,
    log in and read a whole message one after the other (a new socket registered each time while
    the held ones are being polled); then the held ones finish. Three rounds."""
    users = dict(("u%d" % i, "pw") for i in range(HELD + LATE))
    srv = Pop3Server(str(tmp_path), dict((u, [MSG]) for u in users), users=users, heapsize="1024k",
                     server={"idle_timeout": 60, "max_sessions": HELD + 1, "max_sessions_per_addr": HELD + 1})
    srv.start()
    try:
        for _ in range(3):
            barrier = threading.Barrier(HELD + 1)
            release = threading.Event()
            out = [None] * (HELD + LATE)
            ts = [threading.Thread(target=_client, args=(srv.pop3s_port if i in TLS else srv.port, "u%d" % i,
                                                         srv.ca if i in TLS else None, barrier, out, i, release))
                  for i in range(HELD)]
            for t in ts:
                t.start()
            try:
                barrier.wait(30)  # every held session is in the middle of its RETR
            except threading.BrokenBarrierError:
                pass
            for i in range(HELD, HELD + LATE):
                _client(srv.port, "u%d" % i, None, None, out, i)
            release.set()
            for t in ts:
                t.join(60)
            assert srv.alive(), "server died (exit %s): %s" % (srv.proc.poll(), srv.log()[-1500:])
            assert out == [True] * (HELD + LATE), out
    finally:
        srv.stop()
