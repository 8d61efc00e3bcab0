# The fetch CLI for `tools/bench_heap.py --prof LOG --only d` (runs under micropython, loaded as .mpy):
# pocketpost.fetch.main, and at each drop of cold modules (compat.forget: the end of a phase) and at
# each stored message (on_message: the download), a collection, then the line "PHASE <what> <live
# bytes> <free bytes>" and the heap's block map (micropython.mem_info(1)); bench_heap sums each map's
# free runs, tools/heapmap.py reads the last one. A phase's figure is taken before its modules go.
# Few names of its own (the fetch ends ~3 names under a qstr pool's end, where one more costs ~7 KB:
# a probe's names past it would show a pool the real run never makes): the module's name and path,
# "PHASE"; its functions take names the fetch interns anyway (forget, on_message).
#     micropython -X heapsize=N -m fetchprof CONFIG
import gc
import sys

import micropython
from pocketpost import compat, fetch


def forget(names, f=compat.forget):
    gc.collect()
    print("PHASE", "+".join(names), gc.mem_alloc(), gc.mem_free())
    micropython.mem_info(1)
    f(names)


def on_message(info, f=fetch.on_message):
    gc.collect()
    print("PHASE", "download", gc.mem_alloc(), gc.mem_free())
    micropython.mem_info(1)
    f(info)


compat.forget = forget
fetch.on_message = on_message
sys.exit(fetch.main(sys.argv[1]))
