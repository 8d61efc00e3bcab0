# Reads the log of `heapwork ... prof map` (tools/heapprof.py): the last heap map at the peak,
# summed per block type (mem_info letters: h untyped, B bytecode function, S str, D dict...), the
# allocations of 512 B and more, and the free runs (fragmentation).  python3 tools/heapmap.py LOG
import sys, re, collections
txt = open(sys.argv[1]).read().splitlines()
# take the last map
starts = [i for i, l in enumerate(txt) if l.startswith("GC memory layout")]
i = starts[-1]
prof = [l for l in txt[:i] if l.startswith("PROF")][-1]
print(prof)
cells = []
for l in txt[i+1:]:
    m = re.match(r"^([0-9a-f]{8}): (.*)$", l)
    if m:
        addr = int(m.group(1), 16) // 32
        while len(cells) < addr: cells.append(".")
        cells.extend(m.group(2))
    elif "lines all free" in l:
        n = int(re.search(r"\((\d+) lines", l).group(1))
        cells.extend("." * 64 * n)
    elif l.strip() == "" or l.startswith(("PROF", "mem:", "GC:", " No.", "stack", "2026", "READY", "qstr")):
        if len(cells) > 0 and l.startswith(("PROF","2026")): break
allocs = []
j = 0
while j < len(cells):
    c = cells[j]
    if c not in ".=":
        k = j + 1
        while k < len(cells) and cells[k] == "=": k += 1
        allocs.append((c, (k - j) * 32, j))
        j = k
    else:
        j += 1
by = collections.defaultdict(lambda: [0, 0])
for c, n, _ in allocs:
    by[c][0] += 1; by[c][1] += n
tot = sum(n for _, n, _ in allocs)
print("total", tot, "allocs", len(allocs))
for c, (k, n) in sorted(by.items(), key=lambda x: -x[1][1]):
    print("  %s %6d allocs %8d B" % (c, k, n))
sz = collections.Counter()
for c, n, _ in allocs:
    if n >= 512: sz[(c, n)] += 1
print("big (>=512 B):")
for (c, n), k in sorted(sz.items(), key=lambda x: -x[0][1] * x[1]):
    print("  %s %6d x%d" % (c, n, k))
# free runs
free = []; j = 0
while j < len(cells):
    if cells[j] == ".":
        k = j
        while k < len(cells) and cells[k] == ".": k += 1
        free.append((k - j) * 32); j = k
    else: j += 1
free.sort(reverse=True)
print("free runs top:", free[:10], "sum", sum(free), "n", len(free))
