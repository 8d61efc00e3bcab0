"""Delivery's scans of a chunk written without the caller's hint (store.py's theory of operation):
Delivery.write(data) with crlf False. One walk over the chunk's LFs finds whether any is lone (not
after a CR) and whether a line starts with "."; a chunk without either goes to the file as given,
one with dot lines in pieces (Delivery._dots), one with a lone LF through the per-line conversion
(_lines). A memoryview (which has no find or count) is copied through the Delivery's input buffer
first.

The POP3 client and the SMTP receiver give the hint for the text they un-stuffed (they counted
the line ends themselves), so a fetch never loads this module; the SMTP receiver's trace fields
(smtpdata.begin) and a delivery without the hint (a restore, Store.deliver_stream, the host
tools) import it, and the store drops it with its other cold code (storecore._COLD) once no
call into that is under way.
Functions of a store.Delivery, whose state (_last, dots, size, the buffers) they carry on.
"""

from pocketpost.compat import const

# The output buffer of a lone LF's conversion (Delivery._out, made at the first one).
_OUT_BUF = const(512)
# A chunk is walked LF by LF while its lines average at least this many bytes, and by C count
# passes over the rest of the chunk once they are denser (see _scan).
_WALK_BYTES = const(32)
_LF = const(10)
_CR = const(13)
_DOT = const(46)


def write(d, data):
    """Delivery.write(data) without the hint: bytes or bytearray scanned as they are, a
    memoryview through the Delivery's input buffer (Delivery.copy, which calls _scan)."""
    if isinstance(data, memoryview):
        d.copy(data, False)
    else:
        _scan(d, data, len(data), data)


def _scan(d, buf, end, view):
    """buf[:end] (bytes or bytearray) into the message; `view` is that range as one object
    (None: buf is the input buffer, _mv[:end] is made only for the fast path).

    One walk over the LFs (a C find from each to the next) checks that each follows a CR and
    whether the byte after it is "."; it measured cheaper than C count passes on mail-like
    lines (two counts plus a find: ~2x). Lines denser than one per _WALK_BYTES bytes on
    average switch to those passes for the rest of the chunk, which bounds the walk."""
    if not end:
        return
    last = d._last
    dotted = buf[0] == _DOT and last == _LF  # a line of this chunk starts with "."
    i = 0
    left = end // _WALK_BYTES
    lone = False
    scan = -1  # where the walk stopped short: "\n." from here on is left to a C find
    while True:
        j = buf.find(b"\n", i, end)
        if j < 0:
            break
        if (buf[j - 1] if j else last) != _CR:
            lone = True  # _lines walks every LF anyway and checks the rest for dots
            break
        i = j + 1
        if i < end and buf[i] == _DOT:
            dotted = True
        left -= 1
        if not left:
            lone = buf.count(b"\n", i, end) != buf.count(b"\r\n", i, end)
            scan = i
            break
    if not dotted and scan >= 0 and not lone and buf.find(b"\n.", scan, end) >= 0:
        dotted = True
    if lone:
        _lines(d, buf, end)
    elif dotted:
        d._dots(buf, end, -2)
    else:
        d._put(view if view is not None else d._mv[:end], end)


def _lines(d, buf, end):
    if d._out is None:
        d._out = bytearray(_OUT_BUF)
        d._omv = memoryview(d._out)
    mv = memoryview(buf)
    run = 0
    i = 0
    at = 0 if end and buf[0] == _DOT and d._last == _LF else -1  # where a dot line starts
    while True:
        if at >= 0:
            if at > run:
                _emit(d, mv[run:at])
            run = at
            # the stuffing dot: written past the digest (which is of the message)
            d._room(1)
            flush(d)
            d.file.write(b".")
            d.dots += 1
        j = buf.find(b"\n", i, end)
        if j < 0:
            break
        prev = buf[j - 1] if j > 0 else d._last
        if prev != _CR:
            if j > run:
                _emit(d, mv[run:j])
            _emit(d, b"\r\n")
            run = j + 1
        i = j + 1
        at = i if i < end and buf[i] == _DOT else -1
    if end > run:
        _emit(d, mv[run:end])
    if end:
        d._last = buf[end - 1]
    flush(d)  # nothing left waiting between writes (Delivery.finish counts on it)


def _emit(d, data):
    """data into the message through the output buffer (a piece of _OUT_BUF or more goes as is)."""
    n = len(data)
    d._room(n)
    d.size += n
    if d._out is None or d._count + n > _OUT_BUF:
        flush(d)
    if n >= _OUT_BUF or d._out is None:
        d._sink(data)
    else:
        d._out[d._count : d._count + n] = data
        d._count += n


def flush(d):
    """What waits in the output buffer, into the message (a name the runtime has: file.flush)."""
    if d._count:
        d._sink(d._omv[: d._count])
        d._count = 0
