# A measurement aid for tools/heapwork.py (not part of the benchmark's figures): `heapwork ... prof`
# imports this module, whose task collects every 2 ms and, at each new peak of the live heap
# (1 KiB past the last printed), prints "PROF <live bytes> <free bytes>" and
# micropython.mem_info (its "max free sz" is the largest free block, in 32 B blocks on the
# 64-bit unix port); with "map" as well, the heap's block map (tools/heapmap.py reads it).
import gc
import sys

import asyncio
import micropython


async def _run(full):
    top = 0
    while True:
        gc.collect()
        a = gc.mem_alloc()
        if a > top + 1024:
            top = a
            print("PROF", a, gc.mem_free(), " ".join(sorted(k[11:] for k in sys.modules if k.startswith("pocketpost."))))
            micropython.mem_info(full)
        await asyncio.sleep_ms(2)


def start():
    asyncio.create_task(_run("map" in sys.argv))
