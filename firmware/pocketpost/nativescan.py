"""The body's clean-line walk (pop3client._body) as native code: MicroPython's viper emitter
(x64 on the host, xtensawin on an ESP32). Cold: pop3client compiles it once at import and drops
this module.

Why: the walk was half a fetch's CPU (callgrind, fetch CLI, 10 x 1 MiB from Dovecot): ~52 host
instructions per octet for the C find from LF to LF and the bytecode per line. This loop takes
~14: it checks four octets at a time for an LF (the "has a zero byte" test on word ^ 0x0a0a0a0a,
on word-aligned words only) and goes octet by octet around each LF. mpy-cross refuses a module
holding viper code unless given an architecture (the .mpy files here are built without one), so
the source is text, compiled at run time.

copy(buf, s, e, d) moves buf[s:e] to buf[d:] (d < s: a left move, as the receive buffer's
compaction makes, wire.LineReader): without it that copy takes a memoryview slice, a small heap
object per socket read (issue 12: garbage in proportion to the message).

scan(s, e, buf, s) (the start twice: the emitter keeps a function's first three locals in
registers, so the moving index and the end come first), buf[s:e] starting at a line start:
the run of whole lines ending with CRLF, each line after it not opening with "."; it stops at
a lone LF (the line holding it is not in the run), before a line opening with "." and at the
end of the data (an unfinished line is not in the run). Returns (lines << 17) | (65536 if it
ran to the end of the data) | (octets of the run). It reads only inside buf[s:e] (viper checks
no bounds: the caller passes 0 <= s <= e <= len(buf) < 16 KiB). `word ^ -1` is ~word (older
emitters have no unary ~ on native ints). Its identifiers are interned when it compiles: its
locals reuse names the client interns anyway (view, word, ok, mask) or the runtime's own (pos)
where that reads as well.
"""

_SRC = """
@micropython.viper
def scan(pos: int, e: int, p: ptr8, s: int) -> int:
    view = ptr32(p)
    mask = (0x808080 << 8) | 0x80
    n = 0
    k = pos
    ok = (int(p) & 3) == 0  # buf word-aligned: the word loop may run
    while pos < e:
        if ok and (pos & 3) == 0:
            while pos + 4 <= e:
                word = view[pos >> 2] ^ 0x0A0A0A0A
                if (word - 0x01010101) & (word ^ -1) & mask:
                    break
                pos += 4
            if pos >= e:
                break
        if p[pos] == 10:
            if pos == k or p[pos - 1] != 13:
                return (n << 17) | (k - s)
            n += 1
            k = pos + 1
            if k < e and p[k] == 46:
                return (n << 17) | (k - s)
        pos += 1
    return (n << 17) | 65536 | (k - s)


@micropython.viper
def copy(p: ptr8, pos: int, e: int, s: int):
    while pos < e:
        p[s] = p[pos]
        pos += 1
        s += 1
"""


def compile_scan():
    """(scan, copy) compiled, or None: CPython; a MicroPython built without the native emitter,
    or that cannot allocate executable memory; or code that answers a probe wrongly."""
    try:
        import micropython  # noqa: F401  (MicroPython only)

        import gc

        g = {"micropython": micropython}  # type: dict
        # The compiler's garbage, and the few objects kept (function, globals), then start from
        # a collected heap: fetch CLI smallest heap 140 -> 139 KiB (138 with the Python walk).
        gc.collect()
        exec(_SRC, g)
        scan = g["scan"]
        p = bytearray(b"0123456789ab\r\n" * 3 + b".x\r\nlone\nz")  # words, a dot line, a lone LF
        got = (scan(0, 52, p, 0), scan(42, 52, p, 42), scan(3, 30, p, 3), scan(0, 13, p, 0))
        copy = g["copy"]
        copy(p, 1, 4, 0)  # p[1:4] to p[0:3]: the left move the receive buffer's compaction makes
        if got == (393258, 131076, 327705, 65536) and p[:5] == b"12334":
            return scan, copy
    except Exception:
        pass
    return None
