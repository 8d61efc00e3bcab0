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
            micropython.qstr_info(1)  # the interned names' pools (each twice the last: a cliff when one fills)
            if full and "objs" in sys.argv:
                _names()
                print("WORDS")
                _words(id(sys.path) - 1024, gc.mem_alloc() + gc.mem_free())
                print("WORDS END")
        await asyncio.sleep_ms(2)


def start():
    asyncio.create_task(_run("map" in sys.argv))


# "objs" (with "map"): after each map, the first 8 words of every block of the pool
# ("W <offset> <hex words>") and the addresses of the types and functions every loaded module
# holds ("TY" / "FN"): tools/heapobjs.py names each allocation by its type (a class's
# instances, a function's generator frames, closures, bound methods) and what points to it.
def _names():
    seen = {}

    def ty(t, name):
        if id(t) not in seen:
            seen[id(t)] = 1
            print("TY %x %s" % (id(t), name))

    def fn(f, name):
        if id(f) not in seen:
            seen[id(f)] = 1
            print("FN %x %s" % (id(f), name))

    def gen():
        yield 1

    def outer():
        x = 1

        def inner():
            return x

        return inner

    class K:
        def m(self):
            pass

    g = gen()
    for o, n in ((g, "generator"), (outer(), "closure"), (K().m, "bound_method"), (gen, "generator_function"), (outer, "function"), ({}, "dict"),
                 ([], "list"), ((1, 2), "tuple"), ("a%d" % 1, "str"), (b"a%d" % 1, "bytes"), (bytearray(1), "bytearray"),
                 (memoryview(b"a"), "memoryview"), (set(), "set"), (1 << 70, "bigint"), (1.5, "float"),
                 (sys, "module"), (KeyError(), "KeyError"), (OSError(), "OSError"), (range(1), "range"),
                 (iter([]), "list_iterator"), (map(len, []), "map"), (zip(), "zip"), (frozenset(), "frozenset"),
                 (len, "builtin_function"), (object(), "object"), (property(lambda s: 0), "property"),
                 (staticmethod(gen), "staticmethod"), (classmethod(gen), "classmethod")):
        ty(type(o), n)
    for mname in list(sys.modules):
        m = sys.modules[mname]
        try:
            d = m.__dict__
        except AttributeError:
            continue
        print("MD %x %s" % (id(d), mname))
        for k in list(d):
            v = d[k]
            if type(v) is type:
                ty(v, mname + "." + k)
                for kk in list(v.__dict__) if hasattr(v, "__dict__") else ():
                    vv = v.__dict__[kk]
                    t = type(vv)
                    if t in (type(gen), type(outer), type(outer())):
                        fn(vv, mname + "." + k + "." + kk)
                    elif t in (staticmethod, classmethod):
                        fn(vv.__func__ if hasattr(vv, "__func__") else vv, mname + "." + k + "." + kk)
            elif type(v) in (type(gen), type(outer), type(outer())):
                fn(v, mname + "." + k)
    g = None


def _words(base, nbytes):
    # From a little below sys.path's list (made a few blocks into the pool at start-up; the
    # pool's start is only in mem_info's header): the range stays inside the heap's memory.
    import uctypes

    w = uctypes.struct(base, {"w": (uctypes.ARRAY | 0, uctypes.UINT64 | (nbytes // 8))}).w
    print("BASE %x" % base)
    for k in range(0, nbytes // 8 - 8, 4):
        if w[k]:  # 8 words from each block's start (the next block's too)
            print("W %x %x %x %x %x %x %x %x %x" % (k * 8, w[k], w[k + 1], w[k + 2], w[k + 3], w[k + 4], w[k + 5], w[k + 6], w[k + 7]))
