"""Property tests of the shared core (CPython only: hypothesis does not run on MicroPython).

- stuffing then un-stuffing gives back any byte string (with the final line end the wire adds),
  whatever the chunk and buffer sizes;
- any input to the line reader + command parser is either parsed or rejected with the core's
  ProtocolError, never any other exception; the same holds for the reply parser.
"""

from hypothesis import given, settings, strategies as st

from pocketpost.pop3 import ProtocolError, parse_command, parse_listing, parse_reply
from pocketpost.wire import BAD_LINE, OVERLONG
from wirefeed import MAX_COMMAND_LINE, lines_of, stuff, unstuff

# Bodies biased towards the bytes that matter: dots, CR, LF.
special = st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"\r\n.\r\n", b"..", b"a", b"\xff", b"\x00"])
bodies = st.one_of(st.binary(max_size=300), st.lists(special, max_size=60).map(b"".join))


def crlf_body(b):
    """The store's form of a body: every line end CRLF (lone CR/LF made CRLF)."""
    return b.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


@settings(max_examples=400, deadline=None)
@given(bodies, st.integers(1, 64), st.integers(1, 64), st.integers(1, 64))
def test_stuff_unstuff_roundtrip(raw, chunk, outsize, wire_chunk):
    body = crlf_body(raw)
    wire = stuff(body, chunk, outsize)
    # The wire form never contains a premature terminator.
    assert wire.find(b"\r\n.\r\n") in (-1, len(wire) - 5)
    tail = b"+OK next\r\n"
    got, rest, done = unstuff(wire + tail, wire_chunk, outsize)
    expect = body if (not body or body.endswith(b"\r\n")) else body + b"\r\n"
    assert done and got == expect and rest == tail


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=700), st.integers(1, 300))
def test_arbitrary_input_parsed_or_protocol_error(data, chunk):
    for line in lines_of(data, range(chunk, len(data), chunk)):
        if line in (OVERLONG, BAD_LINE):
            continue
        assert isinstance(line, bytes) and len(line) < MAX_COMMAND_LINE
        assert b"\n" not in line and b"\x00" not in line
        try:
            kw, args = parse_command(line)
        except ProtocolError:
            continue
        assert kw.isupper() and isinstance(args, tuple)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_reply_parsed_or_protocol_error(line):
    for fn in (parse_reply, parse_listing):
        try:
            fn(line)
        except ProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"STAT", b"LIST", b"LIST 2", b"RETR 1", b"NOOP", b"UIDL 3", b"TOP 1 5",
                                 b"X" * 300, b"BAD\x00", b""]), max_size=20),
       st.lists(st.integers(0, 400), max_size=6), st.sampled_from([b"\r\n", b"\n"]))
def test_same_events_at_any_split(cmds, cuts, eol):
    stream = b"".join(c + eol for c in cmds)

    def events(splits):
        return lines_of(stream, sorted(set(min(x, len(stream)) for x in splits)))

    whole = events([])
    assert events(cuts) == whole
    assert len(whole) == len(cmds)
