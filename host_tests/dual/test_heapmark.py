"""Heap figures for admin.status() (pocketpost.heapmark): per-service marks of the live heap,
rate-limited; the largest free block; admin.status_dict() reporting them. MicroPython has the
figures; CPython has no gc.mem_alloc, so there the same calls must answer "none" and not fail.
Runs under CPython (pytest) and MicroPython (host_tests/dual/run.py)."""

import gc
import sys

from pocketpost import admin, heapmark

IS_MP = sys.implementation.name == "micropython"


def _fresh():
    heapmark.peaks.clear()
    heapmark._last[0] = None


def test_mark_is_the_live_heap_not_the_garbage():
    _fresh()
    if not IS_MP:
        heapmark.sample("x", 0)
        assert heapmark.peaks == {}
        return
    gc.collect()
    base = gc.mem_alloc()
    junk = None
    for _ in range(32):
        junk = bytearray(1024)  # each one garbage once the next is made
    junk = None
    assert gc.mem_alloc() >= base + 30000  # the garbage is still counted before a collection
    heapmark.sample("svc", 0)
    assert 0 < heapmark.peaks["svc"] < base + 4096, (heapmark.peaks, base)


def test_mark_is_a_high_water_mark_and_rate_limited():
    _fresh()
    if not IS_MP:
        return
    heapmark.sample("svc", 0)
    low = heapmark.peaks["svc"]
    keep = bytearray(16384)
    heapmark.sample("other", 60000)  # within the interval of the last sample: nothing taken
    assert "other" not in heapmark.peaks
    heapmark.sample("svc", 0)
    high = heapmark.peaks["svc"]
    assert high >= low + 16000, (low, high)
    keep = None
    heapmark.sample("svc", 0)
    assert heapmark.peaks["svc"] == high  # a high-water mark does not come down
    assert keep is None


def test_largest_free_block():
    lf = admin.largest_free()
    if not IS_MP:
        assert lf is None
        return
    free = gc.mem_free()
    assert 0 < lf <= free + admin.GC_GRAIN
    b = bytearray(lf - admin.GC_GRAIN)  # a block that size can really be had
    assert len(b) == lf - admin.GC_GRAIN


def test_status_reports_heap_blocks_and_marks():
    _fresh()
    heapmark.sample("pop3", 0)
    st = admin.status_dict("/nonexistent/config.json")
    if not IS_MP:
        assert "heap" not in st and "idf_heap" not in st
        return
    h = st["heap"]
    assert 0 < h["largest_free"] <= h["free"] + admin.GC_GRAIN
    assert h["peaks"]["pop3"] > 0
    assert "idf_heap" not in st  # the unix port has no esp32 module


def test_compact_gc_collects_every_threshold_bytes():
    heapmark.compact_gc()  # CPython: no gc.threshold, nothing to do, no error
    if not IS_MP:
        return
    try:
        t = heapmark.threshold()
        heap = gc.mem_free() + gc.mem_alloc()
        # every 16 KiB in a board-sized heap, every 1/16 of a larger one (a collection sweeps it all)
        assert t == max(16384, heap // 16 // 1024 * 1024), (t, heap)
        assert gc.threshold() == t
        gc.collect()
        base = gc.mem_alloc()
        junk = None
        for _ in range(2 * t // 1024):
            junk = bytearray(1024)  # twice the threshold of garbage: collected on the way, unasked
        junk = None
        assert gc.mem_alloc() < base + t + 4096, (base, gc.mem_alloc())
        assert junk is None
    finally:
        gc.threshold(-1)  # the other tests here count garbage before a collection
