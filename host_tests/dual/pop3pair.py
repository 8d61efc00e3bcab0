"""A POP3 client session wired to the server session in one process (h11's ConnectionPair):
no sockets, no sleeps, under CPython and MicroPython.

Pop3Pair(server_session, split=0, tamper=None): bytes the client sends are framed and handled
by the server session as server.py does (status line, then the producer's output); the server's
bytes wait in `to_client` and reach the client `split` octets at a time (0: all at once).
`tamper(bytes) -> bytes` rewrites every piece of server output (a misbehaving server).
`conn()` gives a transport-shaped connection (recv_into/send/close/shutdown) over the pair, for
driving the whole client (client.Pop3Client / fetch_account); a read with nothing left to come
raises transport.Timeout at once: a stalled server, without waiting.
"""

from pocketpost import transport
from pocketpost.wire import LineReader


class Pop3Pair:
    def __init__(self, server, split=0, tamper=None, block=256):
        self.srv = server
        self.split = split
        self.tamper = tamper
        self.lines = LineReader(255, 1024)
        self.out = bytearray(block)
        self.to_client = bytearray()
        self.pos = 0
        self.closed = False
        self.sent = []  # every command line the server received
        self._emit(server.greeting())

    def _emit(self, data):
        data = bytes(data)
        if self.tamper is not None:
            data = self.tamper(data)
        self.to_client += data

    def client_sent(self, data):
        data = bytes(data)
        while data:
            k = self.lines.feed(data)
            data = data[k:]
            while True:
                ln = self.lines.next_line()
                if ln is None:
                    break
                if isinstance(ln, int):
                    resp = self.srv.handle_bad(ln)
                else:
                    self.sent.append(ln)
                    resp = self.srv.handle(ln)
                while resp is None:  # a login hashing in slices: the shell yields, then resumes
                    resp = self.srv.resume()
                reply = bytearray(resp)
                p = self.srv.producer
                if p is not None:
                    while True:
                        k = p.fill(self.out)
                        if not k:
                            break
                        reply += self.out[:k]
                    self.srv.producer = None
                    p.close()
                self._emit(reply)  # tamper sees one whole reply
                if self.srv.closing:
                    self.closed = True
                    self.srv.close()
                    return

    def take(self, n):
        """Up to n octets of server output (limited by split)."""
        left = len(self.to_client) - self.pos
        if self.split and n > self.split:
            n = self.split
        if n > left:
            n = left
        b = bytes(self.to_client[self.pos:self.pos + n])
        self.pos += n
        if self.pos == len(self.to_client):
            self.to_client = bytearray()
            self.pos = 0
        return b

    def pump(self, session):
        """Move server output into a ClientSession; False when none is waiting."""
        b = self.take(len(session.space()))
        if not b:
            return False
        session.feed(b)
        return True

    def event(self, session):
        """The client session's next event, feeding it server output as needed (0: none)."""
        while True:
            ev = session.next_event()
            if ev:
                return ev
            if not self.pump(session):
                return 0

    def conn(self):
        return _PairConn(self)


class _PairConn:
    def __init__(self, pair):
        self.p = pair

    async def recv_into(self, mv, ms):
        b = self.p.take(len(mv))
        if not b:
            if self.p.closed:
                return 0
            raise transport.Timeout()
        mv[:len(b)] = b
        return len(b)

    async def send(self, data, ms):
        if self.p.closed:
            raise OSError(32, "closed")
        self.p.client_sent(data)

    async def start_tls(self, ctx, hostname=None, server_side=False, ms=0):
        raise OSError(95, "no TLS on a pair")

    def close(self):
        if not self.p.closed:
            self.p.closed = True
            self.p.srv.close()

    async def shutdown(self, ms):
        self.close()


class Scripted:
    """A scripted server session for the pair (the shape of pop3cmd.Session): serves `msgs`, a
    list of (uid or None, body); with no UIDL when the first uid is None. `replies` maps a
    keyword to the whole reply it gets instead (bytes; None: hang up without a word). Every
    command line lands in `seen`. Stateless, like a server whose DELEs never commit."""

    def __init__(self, msgs, replies=None, greeting=b"+OK hi\r\n", capa=b"+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n",
                 dele=b"+OK\r\n"):
        self.msgs = msgs
        self.replies = replies or {}
        self._greeting = greeting
        self.capa = capa
        self.dele = dele
        self.seen = []
        self.producer = None
        self.closing = False

    def greeting(self):
        return self._greeting

    def handle_bad(self, kind):
        return b"-ERR bad line\r\n"

    def close(self):
        pass

    def handle(self, line):
        line = bytes(line)
        self.seen.append(line)
        w = line.split(b" ")
        k = w[0].upper().decode()
        if k in self.replies:
            r = self.replies[k]
            if r is None:
                self.closing = True
                return b""
            return r
        m = self.msgs
        if k == "CAPA":
            return self.capa
        if k in ("USER", "PASS", "NOOP"):
            return b"+OK\r\n"
        if k == "STAT":
            return b"+OK %d %d\r\n" % (len(m), sum(len(b) for _, b in m))
        if k == "UIDL":
            if m and m[0][0] is None:
                return b"-ERR no UIDL here\r\n"
            return b"+OK\r\n" + b"".join(b"%d %s\r\n" % (i + 1, u) for i, (u, _) in enumerate(m)) + b".\r\n"
        if k == "LIST":
            return b"+OK\r\n" + b"".join(b"%d %d\r\n" % (i + 1, len(b)) for i, (_, b) in enumerate(m)) + b".\r\n"
        if k in ("RETR", "TOP"):
            return b"+OK\r\n" + m[int(w[1]) - 1][1] + b".\r\n"
        if k == "DELE":
            return self.dele
        if k == "QUIT":
            self.closing = True
            return b"+OK bye\r\n"
        return b"-ERR unknown\r\n"
