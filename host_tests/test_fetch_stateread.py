"""The UIDL state's files as a fetch reads them, counted (and what a renamed account's refusal
tells a user to move with them), against a private Dovecot through the fetch CLI under
micropython.

A session's start reads `<name>.uidl` twice: clientconf._state counts its records (by their first
bytes, before any code is loaded, so the UID table is made first and exactly sized), then
uidcompact.load replays it into that table. When STAT shows more mail than that table has room
for, the state is loaded again into a larger one (the old table freed first); the start's load
knows the entries on file, so that load reads the file once, without uidcompact.size's first
pass (until stop 32 it read it twice more: four reads in all)."""

import json
import os
import subprocess

from helpers import FIRMWARE, MICROPYTHON
from test_client_dovecot import MESSAGES, account, dc, local_messages, run_cli  # noqa: F401 (dc: a fixture)

HERE = os.path.dirname(os.path.abspath(__file__))

# The fetch CLI with each file of the state directory opened for reading counted (fileprobe.py):
# by name, with the bytes read from it before its close.
DRIVER = r"""
import sys
sys.path.append(%r)
import fileprobe

READS = []


def _closed(op, path, got):
    if op == "close":
        READS.append((path.rsplit("/", 1)[-1], got))


fileprobe.install(lambda path, mode: "/state/" in path and "r" in mode, _closed)
from pocketpost import fetch

print("RC", fetch.main(%r, None, "warning"))
for name, n in READS:
    print("READ", name, n)
"""


def _fetch(tmp, acct):
    """One fetch CLI run -> (its output, [(state file name, bytes read)] in the order closed)."""
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps({"store": {"root": str(tmp / "store"), "quota": 0}, "accounts": [acct],
                               "log": {"level": "warning"}}))
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen")
    r = subprocess.run([MICROPYTHON, "-c", DRIVER % (HERE, str(cfg))], capture_output=True, timeout=120, env=env, cwd=str(tmp))
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "RC 0" in out, out[-3000:]
    return out, [(ln.split()[1], int(ln.split()[2])) for ln in out.splitlines() if ln.startswith("READ ")]


def test_a_session_reads_the_state_file_once_more_only_when_stat_needs_a_larger_table(dc, tmp_path):
    """Policy keep, 10 entries on file. One new message: the start's count and load, two reads of
    the whole file, its slot 0's first line and the .who record. 40 new ones (50 on the server, a
    table for 36 at the start): the state loaded again after STAT into a table for 60, reading the
    file once more (before: twice more, uidcompact.size's pass and the load)."""
    msgs = [b"Subject: s%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(51)]
    dc.seed("alice", msgs[:10])
    acct = account(dc, tmp_path, tls="none", auth="user")
    uidl = tmp_path / "state" / "isp.uidl"
    out, _ = _fetch(tmp_path, acct)
    assert "10 fetched" in out, out
    dc.seed("alice", msgs[10:11], clear=False)
    size = uidl.stat().st_size
    out, reads = _fetch(tmp_path, acct)
    assert "1 fetched" in out, out
    assert reads == [("isp.uidl", size), ("isp.uidl", size), ("isp.uidl0", 24), ("isp.who", len("alice\nlocalhost"))], reads
    dc.seed("alice", msgs[11:], clear=False)
    size = uidl.stat().st_size
    out, reads = _fetch(tmp_path, acct)
    assert "40 fetched" in out, out
    assert [r for r in reads if r[0] == "isp.uidl"] == [("isp.uidl", size)] * 3, reads
    assert len(local_messages(tmp_path / "store")) == 51


def test_a_renamed_account_is_told_to_move_its_slot_files_too(dc, tmp_path):
    """A fetch cut after its second message's commit (both messages' pending entries only in the
    slot files isp.uidl0 and isp.uidl1: the batch's journal write had not come), then the account
    renamed in config.json (isp -> home): the refusal says to rename isp.who and each isp.uidl*
    file, the slot files with the state file (before: isp.uidl and isp.who only; moved as told
    then, the two messages the slots held were stored a second time, 5 messages in the store).
    Moved as told now, the next fetch finds both in the store and fetches only the third."""
    dc.seed("alice", MESSAGES[:3])
    acct = account(dc, tmp_path)
    rc, out = run_cli(tmp_path, acct, crash="committed#2")
    assert rc == -9, out
    acct["name"] = "home"
    rc, out = run_cli(tmp_path, acct)
    assert rc == 1 and "fetch home: FAILED" in out, out
    assert "rename isp.who and each isp.uidl* file to home.who and home.uidl*" in out, out
    state = tmp_path / "state"
    moved = sorted(p.name for p in state.glob("isp.uidl*")) + ["isp.who"]
    assert moved == sorted(["isp.uidl"] + ["isp.uidl%d" % k for k in range(8)]) + ["isp.who"], moved
    for name in moved:
        (state / name).rename(state / ("home" + name[3:]))
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "1 fetched" in out, out
    assert sorted(local_messages(tmp_path / "store")) == sorted(MESSAGES[:3])
