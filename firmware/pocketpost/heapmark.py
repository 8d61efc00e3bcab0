"""Heap figures for admin.status(): per-service high-water marks, so a user can see the budget
being kept on the board (the free heap, its largest free block and the ESP32's IDF heap are
admin.py's, asked at the REPL only); the GC threshold; forget() for code no longer needed; the
POP3 server's TLS context made before the config loads (reserve).

A mark is the live heap (gc.mem_alloc() right after gc.collect()) at a service's sample points
(the POP3 server: each command's reply; SMTP: each read; the fetcher: each stored message). Without the collection
the figure would count garbage not yet collected and climb to the heap size; the collection is
paid at most once per _SAMPLE_MS for the whole process, so a busy service pays a few ms a second
on an ESP32 at most. The heap is shared: a mark is the heap in use while that service was at one
of its points, everything else running included. CPython has no gc.mem_alloc: no marks there.
"""

import gc

from pocketpost import compat
from pocketpost.compat import const, ticks_diff, ticks_ms

# One collection a second at most: an ESP32 collects a 100 KiB heap in a few ms.
_SAMPLE_MS = const(1000)
# Collect after this many bytes allocated, not only when the heap is full: the sessions' garbage
# is then freed while it sits low in the heap, so long-lived objects stay packed and the large
# buffers a later session or fetch needs (1-8 KB in one block) still find room. Measured
# (docs/FIGURES.md "Heap", 64-bit host): everything at once ~290 -> ~270 KiB at 32 KiB; 16 KiB
# (w4-serverheap3, bench_heap c, 3 runs each): 233-236 against 238-239 KiB, c without SMTP
# 202-206 against 211, RETR CPU unchanged (bench_server 9 runs: 1.86/1.92 against 1.86/2.18 of
# the copy); 8 KiB: c 228 but RETR 2.54x the copy (its sends' garbage collected 4x as often).
_GC_THRESHOLD = const(16384)
# A heap larger than 16 x _GC_THRESHOLD (the host's 2 MiB default; a board's is ~56-112 KiB)
# collects every 1/16 of its size instead: a collection sweeps the whole heap, so with a fixed
# 32 KiB the fetch CLI swept a 2 MiB heap 48 times per 10 MiB fetched (1.038 -> 0.981 G host
# instructions without it, docs/FIGURES.md), and with that much room packing buys nothing. The
# smallest-heap figures (all under 256 KiB) and a board's are unchanged.
_HEAP_SHARE = const(16)

peaks = {}  # service name -> highest live heap seen (bytes)
_last = [None]  # type: list  # ticks_ms of the last sample


def sample(name, ms=_SAMPLE_MS):
    """Record the live heap for `name` if the last sample is older than ms."""
    alloc = getattr(gc, "mem_alloc", None)
    if alloc is None:
        return
    now = ticks_ms()
    if _last[0] is not None and ticks_diff(now, _last[0]) < ms:
        return
    _last[0] = now
    gc.collect()
    a = alloc()
    if a > peaks.get(name, 0):
        peaks[name] = a


def compact_gc():
    """Make the GC collect every _GC_THRESHOLD bytes, or every 1/_HEAP_SHARE of a larger heap
    (MicroPython; CPython has no gc.threshold). Called once by each long-running entry point
    (board.main, the fetch CLI) before it imports the services."""
    t = getattr(gc, "threshold", None)
    if t is not None:
        t(threshold())


def threshold():
    """The GC threshold compact_gc sets for this heap (MicroPython), in whole KiB (gc.threshold
    keeps it in GC blocks)."""
    return max(_GC_THRESHOLD, (gc.mem_free() + gc.mem_alloc()) // _HEAP_SHARE // 1024 * 1024)


# The POP3 server's TLS context (ssl.SSLContext, PROTOCOL_TLS_SERVER), made empty before the
# config loads (reserve) and taken by its start-up (serverstart.build, which loads the certificate
# into it and empties this; boardstart.start empties it for a board without the POP3 server).
# Names the runtime interns already (no new interned name: issue 12).
tls = [None]  # type: list


def reserve():
    """Make the server's TLS context now, right after a collection, before the config loads
    (board.main, server.main). The context is one large block (3,048 B on the 64-bit unix port:
    mbedTLS's state) that lives as long as the server: made here it lands low in a heap not yet
    scattered; made after the config's load (what that leaves behind, interned-name pools and
    the store's objects, is spread through the heap the config's code held) no hole was large
    enough below the heap's top (bench_heap a: 92 -> 86 KiB). Without the ssl module, or
    without the heap, nothing: the start-up makes it as before."""
    try:
        import ssl

        gc.collect()
        tls[0] = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    except (ImportError, MemoryError):
        pass


# Modules only the start-up uses: once the services are built, nothing running refers to them
# (config.py and serverconf.py: loading, checking, open_store, ~14 KiB of heap on the 64-bit host; tls.py: the
# server's TLS context, ~2.5 KiB; docs/FIGURES.md "Server heap"; serverstart.py: the POP3
# server's and its login Service's set-up). A later user (a service restart, admin.py, a rehashed
# password saved by server.py, a TLS fetch) imports them again.


def forget(names=("config", "serverconf", "tls", "serverstart")):  # the start-up-only modules above
    """compat.forget, by default of the start-up-only modules."""
    compat.forget(names)
