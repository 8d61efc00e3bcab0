"""The wire core fed in pieces, for its tests (both runtimes): the line reader's lines, and a body
stuffed and un-stuffed in chunks through small output buffers; a codec that makes no progress
raises instead of spinning."""

from pocketpost.wire import DotStuffer, DotUnstuffer, LineReader

MAX_COMMAND_LINE = 255  # wire._MAX_COMMAND_LINE (RFC 1939's command line with CRLF)


def lines_of(data, splits, max_line=MAX_COMMAND_LINE, bufsize=0, via_space=False):
    """Feed `data` cut at the given positions; return every next_line() result."""
    r = LineReader(max_line, bufsize)
    out = []
    prev = 0
    for cut in list(splits) + [len(data)]:
        piece = data[prev:cut]
        prev = cut
        while piece:
            if via_space:
                sp = r.space()
                n = min(len(sp), len(piece))
                sp[:n] = piece[:n]
                r.commit(n)
            else:
                n = r.feed(piece)
            piece = piece[n:]
            while True:
                ln = r.next_line()
                if ln is None:
                    break
                out.append(ln)
    return out


def stuff(body, chunk, outsize):
    s = DotStuffer()
    out = bytearray(outsize)
    res = b""
    for i in range(0, len(body), chunk):
        piece = body[i : i + chunk]
        pos = 0
        while pos < len(piece):
            made = s.stuff_into(piece, pos, len(piece), out)
            used = s.consumed
            if used == 0 and made == 0:
                raise RuntimeError("no progress")
            res += bytes(out[:made])
            pos += used
    return res + s.finish()


def unstuff(wire, chunk, outsize, strict=False, got_bad=None):
    """Returns (body, bytes left after the terminator, done); got_bad (a list) gets u.bad."""
    u = DotUnstuffer(strict)
    out = bytearray(outsize)
    body = b""
    rest = b""
    done = False
    for i in range(0, len(wire), chunk):
        piece = wire[i : i + chunk]
        pos = 0
        while pos < len(piece):
            if done:
                rest += piece[pos:]
                break
            made = u.unstuff_into(piece, pos, len(piece), out)
            used, done = u.consumed, u.done
            body += bytes(out[:made])
            pos += used
            if used == 0 and made == 0 and not done:
                raise RuntimeError("no progress")
    if got_bad is not None:
        got_bad.append(u.bad)
    return body, rest, done
