"""Inner loop of tools/bench_core.py; runs unchanged under micropython and CPython.

usage: <python> bench_core_inner.py speed TOTAL CHUNK  -> "copy_s stuff_s unstuff_s"
       <python> bench_core_inner.py heap TOTAL CHUNK   -> stuffs and un-stuffs TOTAL bytes, prints mem_peak
The body is generated from a 64 KiB corpus of mail-like lines (some starting with '.') sliced
in place, so producing it allocates nothing: only the codec's own allocations show.
"""

import sys

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, _HERE + "/../firmware")

from pocketpost.wire import DotStuffer, DotUnstuffer  # noqa: E402

try:
    import time

    ticks_us = time.ticks_us  # type: ignore[attr-defined]
    ticks_diff = time.ticks_diff  # type: ignore[attr-defined]

    def seconds(a, b):
        return ticks_diff(b, a) / 1e6

except AttributeError:
    import time

    ticks_us = time.perf_counter

    def seconds(a, b):
        return b - a


def corpus(limit):
    lines = []
    i = 0
    size = 0
    while size < limit:
        if i % 37 == 0:
            ln = b".dotted line %d, stuffed on the wire" % i
        else:
            ln = b"Line %d of a mail body, some text that looks like prose; 8-bit \xe9\xfc." % i
        lines.append(ln)
        size += len(ln) + 2
        i += 1
    return bytearray(b"\r\n".join(lines) + b"\r\n")


def stuffed(body):
    s = DotStuffer()
    out = bytearray(len(body) * 2 + 8)
    made = s.stuff_into(body, 0, len(body), out)
    return bytearray(out[:made])


def run(mode, total, chunk, src, out, work):
    """mode 0 copy, 1 stuff, 2 unstuff; streams `total` bytes of src in `chunk` pieces."""
    mv_out = memoryview(out)
    mv_src = memoryview(src)
    span = len(src) - chunk
    pos = 0
    done = 0
    s = DotStuffer()
    u = DotUnstuffer()
    while done < total:
        end = pos + chunk
        if mode == 0:
            mv_out[0:chunk] = mv_src[pos:end]
        elif mode == 1:
            p = pos
            while p < end:
                s.stuff_into(src, p, end, out)
                p += s.consumed
        else:
            p = pos
            while p < end:
                u.unstuff_into(src, p, end, out)
                p += u.consumed
        done += chunk
        pos = end if end < span else 0
    return done


def main():
    mode = sys.argv[1]
    total = int(sys.argv[2])
    chunk = int(sys.argv[3])
    if mode == "speed":
        body = corpus(65536)
    else:  # small corpus: the heap figure should show the codec, not the test data
        body = corpus(2 * chunk + 256)
    wire = stuffed(body)
    out = bytearray(chunk + chunk // 2 + 16)
    if mode == "speed":
        t0 = ticks_us()
        run(0, total, chunk, body, out, None)
        t1 = ticks_us()
        run(1, total, chunk, body, out, None)
        t2 = ticks_us()
        run(2, total, chunk, wire, out, None)
        t3 = ticks_us()
        print("%f %f %f" % (seconds(t0, t1), seconds(t1, t2), seconds(t2, t3)))
    else:
        import gc

        gc.collect()
        if hasattr(gc, "threshold"):
            gc.threshold(1024)  # collect often, so mem_peak is live data, not uncollected garbage
        run(1, total, chunk, body, out, None)
        run(2, total, chunk, wire, out, None)
        try:
            import micropython

            print("peak", micropython.mem_peak())  # type: ignore[attr-defined]
        except (ImportError, AttributeError):
            print("peak -1")


main()
