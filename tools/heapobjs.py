# Names what the heap holds at a peak, from the log of `bench_heap.py --prof LOG` (heapwork with
# "prof map objs": tools/heapprof.py prints, at each new peak, the block map, then the first 8 words
# of every block and the addresses of the loaded modules' types and functions). Each allocation is
# named by its first word (its type: a class's instance, a generator frame by its function, a closure
# or bound method by its function, a C type), or else by the object that points to it (an instance's
# attribute table, a dict's table, a list's items, a bytearray's data, a str's text); the rest by its
# map letter and size (code, names, tables no object here points to).
#     python3 tools/heapobjs.py LOG [--peak N] [--top K] [--grep WORD]
import collections
import re
import sys


def last_peak(lines, which=-1):
    starts = [i for i, l in enumerate(lines) if l.startswith("GC memory layout")]
    return starts[which]


def parse(lines, i):
    pool = int(lines[i].split("from ")[1].rstrip(":"), 16)
    cells = []
    j = i + 1
    while j < len(lines):
        l = lines[j]
        m = re.match(r"^([0-9a-f]{8}): (.*)$", l)
        if m:
            addr = int(m.group(1), 16) // 32
            while len(cells) < addr:
                cells.append(".")
            cells.extend(m.group(2))
        elif "lines all free" in l:
            n = int(re.search(r"\((\d+) lines", l).group(1))
            cells.extend("." * 64 * n)
        elif l.startswith(("TY ", "FN ", "MD ", "WORDS", "BASE")):
            break
        j += 1
    types, fns, mdicts, words = {}, {}, {}, {}
    base = None
    while j < len(lines):
        l = lines[j]
        if l.startswith("TY "):
            _, a, n = l.split(" ", 2)
            types[int(a, 16)] = n
        elif l.startswith("FN "):
            _, a, n = l.split(" ", 2)
            fns[int(a, 16)] = n
        elif l.startswith("MD "):
            _, a, n = l.split(" ", 2)
            mdicts[int(a, 16)] = n
        elif l.startswith("BASE "):
            base = int(l.split()[1], 16)
        elif l.startswith("W "):
            p = l.split()
            words[base + int(p[1], 16)] = [int(x, 16) for x in p[2:]]
        elif l.startswith("WORDS END"):
            break
        j += 1
    allocs = []  # (addr, letter, bytes)
    k = 0
    while k < len(cells):
        c = cells[k]
        if c not in ".=":
            e = k + 1
            while e < len(cells) and cells[e] == "=":
                e += 1
            allocs.append((pool + 32 * k, c, (e - k) * 32))
            k = e
        else:
            k += 1
    return pool, allocs, types, fns, mdicts, words


def name_all(allocs, types, fns, mdicts, words):
    head = dict((a, (c, n)) for a, c, n in allocs)
    t_gen = [a for a, n in types.items() if n == "generator"]
    byname = dict((n, a) for a, n in types.items())
    names = {}
    fun_ctx = {}  # fun_bc address -> module (by its context pointer, shared per module)
    ctx_mod = {}
    for a, n in fns.items():
        w = words.get(a)
        if w:
            ctx_mod.setdefault(w[1], n.split(".")[0])
    for a, (c, n) in head.items():
        w = words.get(a)
        if not w:
            continue
        t = w[0]
        tn = types.get(t)
        if tn is None:
            continue
        if tn == "generator":
            f = w[2]
            names[a] = "gen " + fns.get(f, "?fun@" + ctx_mod.get(words.get(f, [0, 0])[1], "?"))
        elif tn == "closure":
            f = w[1]
            names[a] = "closure " + fns.get(f, "fun@" + ctx_mod.get(words.get(f, [0, 0])[1], "?"))
        elif tn == "bound_method":
            f = w[1]
            s = words.get(w[2])
            names[a] = "bound " + fns.get(f, "?") + (" of " + types.get(s[0], "?") if s else "")
        elif tn in ("function", "generator_function"):
            names[a] = "fun " + fns.get(a, "nested@" + ctx_mod.get(w[1], "?"))
        else:
            names[a] = tn if not tn.startswith(("module:",)) else tn
        # what it points to
        owned = None
        if tn in ("dict",) or (tn not in ("generator", "closure", "bound_method", "function", "tuple", "str", "bytes",
                                          "list", "bytearray", "memoryview", "bigint", "float") and not tn.startswith("module:")
                               and "." in tn):
            owned = w[3]  # mp_map_t's table (after its used/flags and alloc words): an instance's attributes, a dict's table
            label = ("table of " + ("globals " + mdicts[a] if a in mdicts else tn)) if tn == "dict" else "attrs of " + tn
        elif tn in ("list",):
            owned, label = w[3], "items of list"
        elif tn in ("bytearray", "memoryview"):
            owned, label = w[3], "data of " + tn
        elif tn in ("str", "bytes"):
            owned, label = w[3], "text of " + tn
        if owned in head and owned not in names:
            names[owned] = label
    # The rest by what points to it: "<- holder" (a class's dict, a closure's cell, a tuple's items...).
    back = {}
    for a in head:
        for x in words.get(a, ())[1:]:
            if x in head and x != a and x not in names and x not in back:
                back[x] = a
    for _ in range(3):
        for x, a in list(back.items()):
            if x not in names and a in names:
                names[x] = "<- " + names[a].split(" <- ")[0] + " (%s %d)" % (head[x][0], head[x][1] if head[x][1] < 512 else 512)
    return names


def main():
    args = sys.argv[1:]
    peak = -1
    top = 60
    grep = None
    if "--peak" in args:
        peak = int(args[args.index("--peak") + 1])
    if "--top" in args:
        top = int(args[args.index("--top") + 1])
    if "--grep" in args:
        grep = args[args.index("--grep") + 1]
    lines = open(args[0]).read().splitlines()
    i = last_peak(lines, peak)
    prof = [l for l in lines[:i] if l.startswith("PROF")][-1]
    print(prof[:200])
    pool, allocs, types, fns, mdicts, words = parse(lines, i)
    names = name_all(allocs, types, fns, mdicts, words)
    tot = collections.defaultdict(lambda: [0, 0])
    for a, c, n in allocs:
        nm = names.get(a)
        if nm is None:
            nm = "? %s %s" % (c, n if n < 512 else ">=512")
        if grep and grep not in nm:
            continue
        tot[nm][0] += 1
        tot[nm][1] += n
    allb = sum(n for _, _, n in allocs)
    named = sum(n for a, _, n in allocs if a in names)
    print("allocations %d, %d B; named %d B" % (len(allocs), allb, named))
    for nm, (k, n) in sorted(tot.items(), key=lambda x: -x[1][1])[:top]:
        print("  %7d B %5d  %s" % (n, k, nm))


if __name__ == "__main__":
    main()
