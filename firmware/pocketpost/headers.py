"""Streaming RFC 5322 header extraction and RFC 2047 decoding, for the application.

Theory of operation
-------------------
`HeaderParser().feed(chunk)` takes a message in any chunks and keeps only From, To, Subject,
Date and Message-ID: lines are framed by the shared `wire.LineReader`, a continuation line
(starting with space or tab) is unfolded into the field before it (RFC 5322 section 2.2.3), and
the first empty line ends the header; everything after it is ignored without being buffered,
so memory does not depend on the message. Each kept value is bounded (MAX_VALUE); a header
line over _MAX_HEADER_LINE octets is dropped (RFC 5322 section 2.1.1 caps lines at 998).

`decode(raw_bytes) -> str` turns a field value into text: RFC 2047 encoded words (B and Q) in
UTF-8, US-ASCII, ISO-8859-1 and Windows-1252; whitespace between adjacent encoded words is
dropped (RFC 2047 section 6.2); unknown charsets are left as written. Raw 8-bit bytes are read as
UTF-8, else Windows-1252. MicroPython ignores codec names in str.decode, so Latin-1 and
Windows-1252 map bytes to code points here.
"""

import binascii

from pocketpost.compat import const
from pocketpost.wire import LineReader

WANTED = ("from", "to", "subject", "date", "message-id")
# RFC 5322 section 2.1.1: "Each line of characters MUST be no more than 998 characters ... excluding the CRLF".
_MAX_HEADER_LINE = const(1000)
# Octets kept per field after unfolding: enough for a subject or a long To list's start.
MAX_VALUE = const(512)
_BUF = const(1024)

# Windows-1252 0x80..0x9F (0 = undefined there: kept as the C1 control, like Latin-1).
_CP1252 = (
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
    0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
)


class HeaderParser:
    def __init__(self):
        self._r = LineReader(_MAX_HEADER_LINE, _BUF)
        self.done = False
        self.raw = {}  # field name -> unfolded raw value (bytes)
        self._cur = None  # field being continued, or None
        self.fields = {}  # decoded once done

    def feed(self, data):
        if self.done:
            return
        mv = memoryview(data)
        pos = 0
        n = len(mv)
        while pos < n and not self.done:
            pos += self._r.feed(mv[pos:])
            while not self.done:
                ln = self._r.next_line()
                if ln is None:
                    break
                self._line(ln)

    def close(self):
        """End of input: a header without a terminating empty line still counts."""
        if not self.done:
            self._finish()
        return self.fields

    def _line(self, ln):
        if isinstance(ln, int):  # overlong or NUL: drop it, and stop continuing a field
            self._cur = None
            return
        if not ln:
            self._finish()
            return
        if ln[0] in (32, 9):
            if self._cur is not None:
                v = self.raw[self._cur]
                if len(v) < MAX_VALUE:
                    self.raw[self._cur] = (v + ln)[:MAX_VALUE]  # unfold: drop only the CRLF
            return
        c = ln.find(b":")
        if c <= 0:
            self._cur = None
            return
        name = bytes(ln[:c]).strip().lower()
        try:
            name = name.decode()
        except UnicodeError:
            self._cur = None
            return
        if name in WANTED and name not in self.raw:
            self.raw[name] = bytes(ln[c + 1 :])[:MAX_VALUE]
            self._cur = name
        else:
            self._cur = None

    def _finish(self):
        self.done = True
        self._r = None
        for k in self.raw:
            self.fields[k] = decode(self.raw[k].strip())


def _bytes_to_str(b, charset):
    cs = charset.lower()
    if cs in ("utf-8", "utf8", "us-ascii", "ascii"):
        try:
            return bytes(b).decode()
        except UnicodeError:
            return _cp1252(b)
    if cs in ("iso-8859-1", "latin1", "latin-1", "iso8859-1", "l1"):
        return "".join([chr(c) for c in b])
    if cs in ("windows-1252", "cp1252"):
        return _cp1252(b)
    return None


def _cp1252(b):
    out = []
    for c in b:
        if 0x80 <= c <= 0x9F and _CP1252[c - 0x80]:
            out.append(chr(_CP1252[c - 0x80]))
        else:
            out.append(chr(c))
    return "".join(out)


def _decode_word(word):
    """One encoded word b'=?cs?E?text?=' -> str, or None if it is not a valid one."""
    parts = word[2:-2].split(b"?")
    if len(parts) != 3:
        return None
    cs, enc, text = parts
    cs = cs.split(b"*")[0]  # RFC 2231 language suffix
    try:
        cs = cs.decode()
    except UnicodeError:
        return None
    enc = enc.upper()
    try:
        if enc == b"B":
            for c in text:  # a2b_base64 skips junk on some ports: check the alphabet ourselves
                if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in (43, 47, 61)):
                    return None
            raw = binascii.a2b_base64(text + b"=" * (-len(text) % 4))
        elif enc == b"Q":
            raw = _q(text)
        else:
            return None
    except (ValueError, TypeError):
        return None
    return _bytes_to_str(raw, cs)


def _q(text):
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == 95:  # "_" is space in Q
            out.append(32)
        elif c == 61 and i + 2 < n:
            h = text[i + 1 : i + 3]
            try:
                out += binascii.unhexlify(h)
                i += 3
                continue
            except (ValueError, TypeError):
                out.append(c)
        else:
            out.append(c)
        i += 1
    return bytes(out)


def decode(raw):
    """A header value (bytes) -> str with RFC 2047 encoded words decoded."""
    raw = bytes(raw)
    out = []
    i = 0
    n = len(raw)
    prev_word = False  # the last thing appended was an encoded word
    pending_ws = b""
    while i < n:
        j = raw.find(b"=?", i)
        if j < 0:
            out.append(_plain(pending_ws + raw[i:]))
            pending_ws = b""
            break
        # find the end "?=" after charset?enc?
        q1 = raw.find(b"?", j + 2)
        q2 = raw.find(b"?", q1 + 1) if q1 >= 0 else -1
        end = raw.find(b"?=", q2 + 1) if q2 >= 0 else -1
        if end < 0:
            out.append(_plain(pending_ws + raw[i:]))
            pending_ws = b""
            break
        between = raw[i:j]
        word = raw[j : end + 2]
        text = _decode_word(word)
        if text is None:
            out.append(_plain(pending_ws + raw[i : end + 2]))
            pending_ws = b""
            prev_word = False
        else:
            if not (prev_word and not between.strip(b" \t\r\n")):
                out.append(_plain(pending_ws + between))
            out.append(text)
            pending_ws = b""
            prev_word = True
        i = end + 2
    return "".join(out)


def _plain(b):
    if not b:
        return ""
    try:
        return b.decode()
    except UnicodeError:
        return _cp1252(b)
