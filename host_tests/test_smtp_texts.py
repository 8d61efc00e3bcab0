"""The SMTP receiver's refusal texts live in one cold module (firmware/pocketpost/smtptext.py,
loaded per refusal by smtp.reply(n)), named in each caller by a private `_T_NAME = const(n)`.
These tests read the sources: each caller's numbers are the entries their names say (a
mismatch would answer with another refusal's text), every entry is a well-formed reply, and no
session module holds a refusal text of its own (issue 12: those texts were a third of the
envelope's code in the heap)."""

import os
import re

from helpers import ROOT

PKG = os.path.join(ROOT, "firmware", "pocketpost")
CALLERS = ("smtp", "smtpenv", "smtpdata", "smtpauth")


def _read(name):
    with open(os.path.join(PKG, name + ".py")) as f:
        return f.read()


def _entries():
    """[(number, name, reply bytes)] from smtptext.py's table, in order (sixteen to a literal),
    each as smtp.reply(number) answers it."""
    from pocketpost import smtp, smtptext

    src = _read("smtptext")
    tags = re.findall(r"^\s+b\".*\",?\s+# (\d+) (_T_\w+)", src, re.M)
    lines = [ln + b"\n" for t in smtptext.text for ln in t.split(b"\n")[:-1]]
    assert len(tags) == len(lines)
    assert all(len(t.split(b"\n")) == 17 for t in smtptext.text[:-1]), "sixteen to a literal"
    out = [(int(n), name, lines[i]) for i, (n, name) in enumerate(tags)]
    for n, _, r in out:
        assert smtp.reply(n) == r, (n, smtp.reply(n), r)
    return out


def test_each_callers_numbers_name_the_entries_they_mean():
    entries = _entries()
    assert [n for n, _, _ in entries] == list(range(len(entries)))
    by_name = dict((name, n) for n, name, _ in entries)
    assert len(by_name) == len(entries), "a name given twice"
    used = set()
    for mod in CALLERS:
        src = _read(mod)
        decl = dict((k, int(v)) for k, v in re.findall(r"^(_T_\w+) = const\((\d+)\)", src, re.M))
        for k, v in decl.items():
            assert by_name.get(k) == v, (mod, k, v, by_name.get(k))
        for k in re.findall(r"\breply\((_T_\w+)[,)]", src):
            assert k in decl, (mod, k)
            used.add(k)
    assert used == set(by_name), "entries no caller uses: %s" % sorted(set(by_name) - used)


def test_every_entry_is_a_refusal_reply_line():
    for n, name, r in _entries():
        m = re.match(rb"^([45])\d\d ([45])\.\d{1,3}\.\d{1,3} [\x20-\x7e]+\r\n$", r)
        assert m and m.group(1) == m.group(2), (n, name, r)


def test_no_session_module_holds_a_refusal_text_of_its_own():
    # The resident exceptions: the 451 smtp.reply gives when smtptext.py cannot load, the
    # timeout's 421 (it names the host), and the shell's refusal of a connection past the caps
    # (made before any session code is loaded).
    allowed = {b"451 4.3.0 local error, try again later", b"4.4.2 %s timeout, closing",
               b"421 4.7.0 %s too many connections, try later"}
    for mod in CALLERS + ("smtpserver",):
        src = _read(mod)
        found = re.findall(r"reply\([45]\d\d,\s*\"([^\"]*)\"", src)
        found += [t for t in re.findall(r"b\"([45]\d\d [^\"]*?)(?:\\r\\n)?\"", src)]
        bad = [t for t in found if t.encode() not in allowed]
        assert not bad, (mod, bad)
