"""The wire-form store under random input, for both runtimes (a fixed-seed generator: the same cases
every run): messages made of ".", CR, LF and letters, written in random chunks (bytes, bytearray,
memoryview) with every truthful combination of Delivery.write's hints; the POP3 client session's
BODY chunks (`bare`, `dots` per chunk) fed straight into a Delivery at random read sizes; TOP of a
stuffed file (cut as it is) against TOP of the same message through the DotStuffer. Each file must
be the message's wire form, open() the message, LIST its octets."""

from flashdev import fresh_root
from pocketpost import store as store_mod
from pocketpost.pop3client import BODY, END, GREETING, ClientSession
from pocketpost.pop3body import BodyProducer
from pocketpost.store import Store

NEED_DATA = 0  # pop3client's _NEED_DATA (a private const; test_pop3client checks the value)


class _Rand:
    """A small LCG (MicroPython's random module differs): deterministic cases on both runtimes."""

    def __init__(self, seed):
        self.s = seed

    def n(self, a, b):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return a + (self.s >> 8) % (b - a + 1)

    def pick(self, seq):
        return seq[self.n(0, len(seq) - 1)]


def _wire(data):
    """(the message the store keeps, its file): lone LF -> CRLF, a final line end, dot-stuffed."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\n"):
        out += b"\n" if out.endswith(b"\r") else b"\r\n"
    return out, (b"." if out.startswith(b".") else b"") + out.replace(b"\n.", b"\n..")


def _read(f, rnd):
    got = b""
    try:
        while True:
            b = bytearray(rnd.n(1, 9))
            k = f.readinto(b)
            if not k:
                return got
            got += bytes(b[:k])
    finally:
        f.close()


def _drain(p, rnd):
    got = b""
    while not p.done:
        out = bytearray(rnd.n(3, 9))
        got += bytes(out[: p.fill(out)])
    return got


def _with_store(fn):
    root, cleanup = fresh_root(256)
    store_mod.reboot()
    try:
        fn(Store(root, quota=0, reserve=0))
    finally:
        store_mod.reboot()
        cleanup()


def _check(st, rnd, msgs, top=False):
    mb = st.lock("x")
    try:
        assert mb.count == len(msgs)
        for i, data in enumerate(msgs):
            msg, wire = _wire(data)
            assert _read(mb.open(i, True), rnd) == wire, (i, data)
            assert _read(mb.open(i), rnd) == msg, (i, data)
            assert mb.size(i) == len(msg) and mb.stored_size(i) == len(wire), (i, data)
            assert mb.stuffed(i) == (len(wire) != len(msg))
            for lines in (0, 1, 3) if top else ():
                cut = BodyProducer(mb.open(i, True), rnd.n(1, 8), lines, None, mb.stored_size(i), True)
                stuffed = BodyProducer(mb.open(i), rnd.n(1, 8), lines, None, mb.size(i), False)
                assert _drain(cut, rnd) == _drain(stuffed, rnd), (i, data, lines)
    finally:
        mb.release()


def test_random_chunks_and_write_hints():
    rnd = _Rand(7)

    def body(st):
        msgs = []
        for _ in range(150):
            data = bytes([rnd.pick(b"..\r\n\naX") for _ in range(rnd.n(0, 40))])
            d = st.begin("x", digest=True)
            i = 0
            while i < len(data):
                k = rnd.n(1, 9)
                piece = data[i : i + k]
                kind = rnd.n(0, 2)
                p = piece if kind == 0 else bytearray(piece) if kind == 1 else memoryview(piece)
                crlf = True  # every LF of the piece follows a CR (the one before it: the last written)
                for j in range(len(piece)):
                    if piece[j] == 10 and (piece[j - 1] if j else (data[i - 1] if i else 0)) != 13:
                        crlf = False
                dots = (piece[:1] == b"." and (not i or data[i - 1] == 10)) or b"\n." in piece
                mode = rnd.n(0, 2)
                if mode == 0 or not crlf:
                    d.write(p)
                elif mode == 1:
                    d.write(p, True)
                else:
                    d.write(p, True, dots)  # the fetcher's per-chunk hint
                i += k
            d.digest()
            d.commit()
            msgs.append(data)
        _check(st, rnd, msgs, True)

    _with_store(body)


def test_client_body_chunks_into_the_store():
    rnd = _Rand(11)

    def body(st):
        msgs = []
        for _ in range(60):
            alpha = rnd.pick([b"..\r\n\naX", b".\r\n" + b"a" * 40, b".\r\n\r\naaaaaaa"])
            data = bytes([rnd.pick(alpha) for _ in range(rnd.n(0, 2000))])
            # As a server sends it: stuffed, a line end before the terminator (the client cannot
            # tell whether that one is the message's, so the store keeps it).
            sent = data if not data or data.endswith(b"\n") else data + b"\r\n"
            stream = b"+OK\r\n" + (b"." if sent.startswith(b".") else b"") + sent.replace(b"\n.", b"\n..") + b".\r\n"
            cs = ClientSession()
            cs.feed(b"+OK ready\r\n")
            assert cs.next_event() == GREETING
            cs.send("RETR", 1)
            d = st.begin("x", digest=True)
            i = 0
            while True:
                ev = cs.next_event()
                if ev == NEED_DATA:
                    assert i < len(stream)
                    k = rnd.pick([1, 7, 64, 500, 3000])
                    cs.feed(stream[i : i + k])
                    i += k
                elif ev == BODY:
                    d.write(cs.chunk, cs.bare == 0, cs.dots)  # as clientget._StoreSink does
                elif ev == END:
                    break
            d.digest()
            d.commit()
            msgs.append(sent)
        _check(st, rnd, msgs)

    _with_store(body)
