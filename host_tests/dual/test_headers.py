"""Streaming header extraction and RFC 2047 decoding; runs under CPython and MicroPython."""

from pocketpost.headers import MAX_VALUE, HeaderParser, decode

MSG = (
    b"Received: from x\r\n\tby y\r\n"
    b"From: =?utf-8?Q?J=C3=BCrgen_M=C3=BCller?= <j@example.org>\r\n"
    b"To: a@example.org,\r\n b@example.org\r\n"
    b"Subject: =?ISO-8859-1?B?Y2Fm6Q==?= =?windows-1252?Q?=80_5?= and more\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <abc@example.org>\r\n"
    b"\r\n"
    b"Subject: not a header\r\n" + b"x" * 5000 + b"\r\n"
)


def parse(data, step):
    p = HeaderParser()
    for i in range(0, len(data), step):
        p.feed(data[i : i + step])
    return p.close()


def test_fields_at_every_chunk_size():
    want = {
        "from": "J\u00fcrgen M\u00fcller <j@example.org>",
        "to": "a@example.org, b@example.org",
        "subject": "caf\u00e9\u20ac 5 and more",
        "date": "Mon, 1 Jan 2024 10:00:00 +0000",
        "message-id": "<abc@example.org>",
    }
    for step in (1, 2, 3, 7, 64, 4096):
        assert parse(MSG, step) == want, step


def test_stops_at_body_and_bounds_values():
    p = HeaderParser()
    p.feed(b"Subject: " + b"s" * 900 + b"\r\n" + b" " + b"t" * 900 + b"\r\n\r\nFrom: body\r\n")
    assert p.done
    f = p.close()
    assert "from" not in f and len(f["subject"]) <= MAX_VALUE


def test_overlong_line_dropped_and_no_blank_line():
    f = parse(b"X-Long: " + b"a" * 3000 + b"\r\nSubject: ok\r\n", 100)
    assert f == {"subject": "ok"}


def test_decode_charsets():
    assert decode(b"=?utf-8?B?w6l0w6k=?=") == "\u00e9t\u00e9"
    assert decode(b"=?iso-8859-1?q?=E9t=E9?=") == "\u00e9t\u00e9"
    assert decode(b"=?Windows-1252?Q?=93hi=94?=") == "\u201chi\u201d"
    assert decode(b"=?us-ascii?Q?a_b?= =?us-ascii?Q?c?=") == "a bc"  # RFC 2047 6.2
    assert decode(b"=?x-unknown?Q?abc?=") == "=?x-unknown?Q?abc?="
    assert decode(b"plain \xe9") == "plain \u00e9"  # raw 8-bit, not UTF-8: Windows-1252
    assert decode(b"=?utf-8?B?!!!?=") == "=?utf-8?B?!!!?="
