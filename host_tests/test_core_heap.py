"""The codec's heap need does not grow with the message: stream 4 MiB through the stuffer and
un-stuffer under micropython in a heap far smaller than the body (the benchmark bisects the
exact figure; this test only proves the bound holds)."""

from helpers import run_micropython

HEAP = 64 * 1024


def test_codec_streams_4mib_in_64k_heap():
    r = run_micropython(["tools/bench_core_inner.py", "heap", str(4 << 20), "512"], heapsize=HEAP, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout.startswith(b"peak")


def test_small_heap_really_is_small():
    # The same run with the whole body in RAM must not fit: the bound above is meaningful.
    code = "b = bytearray(%d)\nprint(len(b))\n" % (4 << 20)
    r = run_micropython(["-c", code], heapsize=HEAP, timeout=60)
    assert r.returncode != 0 and b"MemoryError" in r.stderr + r.stdout
