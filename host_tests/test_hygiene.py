"""The repository carries only what a fresh clone needs, and nothing of the machine it was made on.

- No tracked file is one that .gitignore names (a tracked .venv once named its maker's interpreter
  in every script and broke every other clone).
- No tracked text file names an absolute path of a developer's machine: a `#!` line must use
  /usr/bin/env or a system interpreter; elsewhere, home and work folders (/home/NAME, /Users/NAME,
  /root/, /work/), macOS temp folders, pytest/mkdtemp temp dirs, and this checkout's own path are
  leaks. Plain /tmp/ is allowed (tests under micropython, which has no tempfile, build names there).
- A host tool the docs show run directly (`tools/ppadmin.py ...`) has `#!/usr/bin/env python3`
  and the execute bit in git; a tool with a `#!` line has the bit, and the other way round.

Outside a git checkout (a tarball, an sdist) these checks are skipped, and pytest reports the skip.
"""

import os
import re
import shutil
import subprocess

import pytest

from helpers import ROOT


def _git(*args):
    return subprocess.run(["git", "-C", ROOT] + list(args), capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def checkout():
    if shutil.which("git") is None:
        pytest.skip("git is not installed: repository hygiene not checked")
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if r.returncode != 0 or os.path.realpath(r.stdout.strip()) != os.path.realpath(ROOT):
        pytest.skip("%s is not a git checkout: repository hygiene not checked" % ROOT)
    return ROOT


def tracked(checkout):
    """[(mode, path)] of every tracked file."""
    out = []
    for line in _git("ls-files", "-s", "-z").split(b"\0"):
        if line:
            meta, path = line.split(b"\t", 1)
            out.append((meta.split()[0].decode(), path.decode("utf-8", "surrogateescape")))
    return out


def text_of(path):
    """The file's text, or None for a binary file (a NUL in its first 8 KiB) or a symlink."""
    full = os.path.join(ROOT, path)
    if os.path.islink(full) or not os.path.isfile(full):
        return None
    with open(full, "rb") as f:
        data = f.read()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


# A `#!` line may name only a system interpreter: /usr/bin/env X, /bin/X, /usr/bin/X.
_GOOD_SHEBANG = re.compile(r"^#!\s*(/usr/bin/env\s+\S+|/bin/\w+|/usr/bin/[\w.]+)(\s.*)?$")

# Absolute paths of a developer's machine. The left boundary keeps "<root>/x" and "a/home/b" out.
_LEAKS = [
    r"/home/[A-Za-z0-9_.-]+",
    r"/Users/[A-Za-z0-9_.-]+",
    r"/root/",
    r"/work/",
    r"/var/folders/",
    r"/private/var/",
    r"/tmp/pytest-of-",
    r"/tmp/tmp[a-z0-9_]{6,}",
    r"[A-Za-z]:\\Users\\",
]


def leak_pattern(root=ROOT):
    alts = list(_LEAKS)
    if root.count("/") >= 2:  # this checkout's own path, wherever it is (not a bare /x)
        alts.append(re.escape(root.rstrip("/")) + r"(?![\w.-])")
    return re.compile(r"(?:^|(?<=[\s'\"`=(:,\[]))(?:%s)" % "|".join(alts))


def leaks_in(text, pattern):
    """[(line number, line)] naming a machine's absolute path (the #! line by the stricter rule)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if n == 1 and line.startswith("#!"):
            if not _GOOD_SHEBANG.match(line):
                out.append((n, line))
            continue
        if pattern.search(line):
            out.append((n, line))
    return out


def test_nothing_tracked_is_ignored(checkout):
    ignored = _git("ls-files", "-ci", "--exclude-standard").decode().split()
    assert not ignored, "tracked but named by .gitignore (git rm --cached them): %s" % " ".join(ignored[:20])


def test_no_tracked_file_names_a_machine_path(checkout):
    pattern = leak_pattern()
    found = []
    for _mode, path in tracked(checkout):
        text = text_of(path)
        if text is None or path == "host_tests/test_hygiene.py":  # this file: the rule and its samples
            continue
        for n, line in leaks_in(text, pattern):
            found.append("%s:%d: %s" % (path, n, line.strip()[:120]))
    assert not found, "absolute paths of a developer's machine:\n" + "\n".join(found[:30])


def test_leak_rule_catches_leaks_and_passes_clean_lines():
    """The rule itself, on lines that are and are not leaks (so the scan above cannot pass vacuously)."""
    pattern = leak_pattern("/srv/checkouts/pocketpost")
    bad = [
        "#!/work/main/.venv/bin/python3",
        "#!/home/ada/pocketpost/.venv/bin/python",
        "#!/tmp/x/bin/python",
        "x\nROOT = '/home/ada/pocketpost'",
        "x\nsee /Users/ada/src/pocketpost/run",
        "x\ncd /work/main && make",
        "x\nsys.path.insert(0, \"/root/pp/firmware\")",
        "x\nimage: /tmp/pytest-of-root/pytest-3/test_x0/flash.img",
        "x\n/tmp/tmpa8x_3kqz/config.json",
        "x\nC:\\Users\\ada\\pp",
        "x\nsaved in /srv/checkouts/pocketpost/run/flash.img",
    ]
    good = [
        "#!/usr/bin/env python3",
        "#!/bin/sh",
        "#!/usr/bin/python3 -u",
        "x\n<root>/<name>/tmp/  deliveries being written",
        "x\np = \"/tmp/pp-t-%s-%d\" % (a, b)",
        "x\nmount the image at /flash and chdir there",
        "x\n/srv/checkouts/pocketpost-other is another checkout",
        "x\nhttps://example.org/home/page",
    ]
    for text in bad:
        assert leaks_in(text, pattern), text
    for text in good:
        assert not leaks_in(text, pattern), text


# A command in a code span or block that runs a tool directly: `tools/x.py ARGS` or `./tools/x.py`,
# at the start of the span/line or after a shell separator; not after python / micropython.
_DIRECT = re.compile(r"(?:^|[;&|]\s*|\$\s+)(?:\./)?tools/(\w+\.py)(?=\s+\S)")


def direct_commands(markdown):
    """Names of tools/*.py that the markdown shows run directly (not through an interpreter)."""
    names = set()
    chunks = re.findall(r"```.*?```", markdown, re.S)
    rest = re.sub(r"```.*?```", "", markdown, flags=re.S)
    chunks += re.findall(r"`([^`\n]+)`", rest)
    for chunk in chunks:
        for line in chunk.strip("`").splitlines():
            for m in _DIRECT.finditer(line.strip()):
                names.add(m.group(1))
    return names


def test_direct_command_parser():
    md = ("Run `tools/ppadmin.py ls run/flash.img`; `.venv/bin/python tools/run_host.py --fresh`;\n"
          "`tools/deploy.py` (a mention, no arguments)\n```sh\n$ ./tools/pseudoboard.py --dir x\n"
          "micropython tools/hostflash.py img -c x\ncd run && tools/bench_core.py --x\n```\n")
    assert direct_commands(md) == {"ppadmin.py", "pseudoboard.py", "bench_core.py"}


def test_tools_shown_run_directly_are_executable(checkout):
    modes = dict((path, mode) for mode, path in tracked(checkout))
    shown = set()
    for doc in ["README.md"] + ["docs/" + n for n in sorted(os.listdir(os.path.join(ROOT, "docs")))]:
        if doc.endswith(".md") and doc in modes:
            with open(os.path.join(ROOT, doc)) as f:
                shown |= set((doc, name) for name in direct_commands(f.read()))
    assert any(name == "ppadmin.py" for _doc, name in shown), "the README no longer shows tools/ppadmin.py run"
    bad = []
    for doc, name in sorted(shown):
        path = "tools/" + name
        if path not in modes:
            bad.append("%s shows %s, which is not tracked" % (doc, path))
            continue
        with open(os.path.join(ROOT, path)) as f:
            first = f.readline().rstrip("\n")
        if first != "#!/usr/bin/env python3" or modes[path] != "100755":
            bad.append("%s shows %s run directly: it has %r and mode %s (want #!/usr/bin/env python3, 100755)"
                       % (doc, path, first, modes[path]))
    assert not bad, "\n".join(bad)


def test_shebang_and_execute_bit_go_together(checkout):
    bad = []
    for mode, path in tracked(checkout):
        if not path.startswith("tools/") or not path.endswith((".py", ".sh")):
            continue
        with open(os.path.join(ROOT, path), "rb") as f:
            has = f.read(2) == b"#!"
        if has != (mode == "100755"):
            bad.append("%s: %s, mode %s" % (path, "#! line" if has else "no #! line", mode))
    assert not bad, "a #! line without the execute bit, or the bit without one (git update-index --chmod):\n" + "\n".join(bad)


def _py_sources(d):
    """(file name, text) of each .py file in d, sorted by name."""
    for name in sorted(os.listdir(d)):
        if name.endswith(".py"):
            with open(os.path.join(d, name)) as f:
                yield name, f.read()


def test_private_const_copies_match_their_source():
    """`_NAME = const(v)  # mod's (a private copy)`: a bound kept private in each module that uses it
    (a public one is an interned name at run time) must equal mod's own _NAME."""
    pkg = os.path.join(ROOT, "firmware", "pocketpost")
    pat = re.compile(r"^(_\w+) = const\(([^)]*)\)  # (\w+)'s \(a private copy\)", re.M)
    seen = 0
    for name, src in _py_sources(pkg):
        for const_name, value, mod in pat.findall(src):
            with open(os.path.join(pkg, mod + ".py")) as f:
                home = f.read()
            m = re.search(r"^%s = const\(([^)]*)\)" % re.escape(const_name), home, re.M)
            assert m and m.group(1) == value, (name, const_name, value, mod)
            seen += 1
    assert seen >= 7


def test_tools_read_no_private_const_of_the_firmware():
    """A firmware module's `_NAME = const(v)` is folded by MicroPython's compiler: no module
    attribute there, so a tool that reads `mod._NAME` works under CPython and raises
    AttributeError under micropython (tools/bench_store.py runs itself there). A tool keeps its
    own copy, `_NAME = v  # mod's (a private copy)`, which must equal the firmware's."""
    pkg = os.path.join(ROOT, "firmware", "pocketpost")
    private = {}  # _NAME -> {module: value}
    for name, src in _py_sources(pkg):
        for const_name, value in re.findall(r"^(_[A-Z][A-Z0-9_]*) = const\(([^)]*)\)", src, re.M):
            private.setdefault(const_name, {})[name[:-3]] = value
    assert "_MERGE_AFTER" in private  # the scan sees them
    tools = os.path.join(ROOT, "tools")
    reads = []
    copies = 0
    for name, src in _py_sources(tools):
        for n in re.findall(r"\b[A-Za-z_]\w*\.(_[A-Z][A-Z0-9_]*)\b", src):
            if n in private:
                reads.append("%s: .%s" % (name, n))
        for const_name, value, mod in re.findall(r"^(_[A-Z][A-Z0-9_]*) = (\S+)  # (\w+)'s \(a private copy\)", src, re.M):
            assert private.get(const_name, {}).get(mod) == value, (name, const_name, value, mod)
            copies += 1
    assert not reads, "tools reading a firmware module's private const (no attribute on MicroPython):\n" + "\n".join(reads)
