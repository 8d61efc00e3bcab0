"""A fetch account renamed in config.json: its UIDL state's files follow it, or the fetch is
refused (fetchload.renamed), against a private Dovecot through the fetch CLI under micropython.

The state of account `isp` is `isp.uidl`, `isp.who` and the slot files `isp.uidl0` ...
`isp.uidl7` (uidstate.py's pending paragraph: a download a power cut stopped after its store
commit is recorded only there until the next journal write). A rename that moves `isp.uidl` and
`isp.who` but leaves the slot files behind loses that record: the message is stored a second
time. The rename tool (fetchrename.py: admin.rename_account, ppadmin rename-account) moves them
all; a rename left half done is refused until it is finished."""

import json
import os
import subprocess
import sys

from helpers import ROOT, run_micropython
from test_client_dovecot import MESSAGES, account, dc, local_messages, run_cli  # noqa: F401 (dc: a fixture)

PPADMIN = os.path.join(ROOT, "tools", "ppadmin.py")


def _cut_after_two_commits(dc, tmp_path):
    """Three messages on the server; a fetch killed after its second message's commit (both
    pending entries only in the slot files isp.uidl0 and isp.uidl1) -> the account."""
    dc.seed("alice", MESSAGES[:3])
    acct = account(dc, tmp_path)
    rc, out = run_cli(tmp_path, acct, crash="committed#2")
    assert rc == -9, out
    state = tmp_path / "state"
    assert (state / "isp.uidl1").stat().st_size, sorted(p.name for p in state.iterdir())
    return acct, state


def test_a_rename_that_left_the_slot_files_behind_is_refused(dc, tmp_path):
    """isp renamed to home in config.json, isp.uidl and isp.who moved by hand, the slot files
    not: the fetch is refused, naming the slot files to move (before: home had a .uidl, so the
    check passed, and the two messages the slots held were stored a second time, 5 for 3).
    Moved as told, the next fetch stores only the third."""
    acct, state = _cut_after_two_commits(dc, tmp_path)
    acct["name"] = "home"
    for ext in (".uidl", ".who"):
        (state / ("isp" + ext)).rename(state / ("home" + ext))
    rc, out = run_cli(tmp_path, acct)
    assert rc == 1 and "fetch home: FAILED" in out, out
    assert "rename each isp.uidl<k> file to home.uidl<k>" in out, out
    assert len(local_messages(tmp_path / "store")) == 2
    for k in range(8):
        (state / ("isp.uidl%d" % k)).rename(state / ("home.uidl%d" % k))
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "1 fetched" in out, out
    assert sorted(local_messages(tmp_path / "store")) == sorted(MESSAGES[:3])


def test_the_rename_tool_takes_a_pending_slot_entry_along(dc, tmp_path):
    """The same cut, then `tools/ppadmin.py rename-account config.json isp home`: config.json
    names home, every state file moved (slot files included), and the next fetch finds both
    messages the slots held in the store and stores only the third: each message once."""
    acct, state = _cut_after_two_commits(dc, tmp_path)
    cfg = tmp_path / "config.json"
    r = subprocess.run([sys.executable, PPADMIN, "rename-account", str(cfg), "isp", "home"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [a["name"] for a in json.loads(cfg.read_text())["accounts"]] == ["home"]
    acct["name"] = "home"
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "1 fetched" in out, out
    assert sorted(local_messages(tmp_path / "store")) == sorted(MESSAGES[:3])
    assert not list(state.glob("isp*")), sorted(p.name for p in state.iterdir())
    assert "home.uidl0" in r.stdout and "home.oauth" not in r.stdout, r.stdout
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "0 fetched" in out, out


def test_admin_rename_account_at_the_repl_finishes_a_half_done_rename(dc, tmp_path):
    """admin.rename_account (the board's REPL, under micropython) run on a rename done half by
    hand (config.json names home, isp.uidl and isp.who moved, the slot files not: refused, the
    first test): it moves what is left, and the next fetch stores each message once."""
    acct, state = _cut_after_two_commits(dc, tmp_path)
    acct["name"] = "home"
    for ext in (".uidl", ".who"):
        (state / ("isp" + ext)).rename(state / ("home" + ext))
    rc, out = run_cli(tmp_path, acct)  # (writes config.json naming home)
    assert rc == 1 and "admin.rename_account" in out, out
    r = run_micropython(["-c", "from pocketpost import admin\nprint(admin.rename_account('isp', 'home', %r))"
                         % str(tmp_path / "config.json")], cwd=str(tmp_path))
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0 and "account isp renamed to home" in out, out
    rc, out2 = run_cli(tmp_path, acct)
    assert rc == 0 and "1 fetched" in out2, out2
    assert sorted(local_messages(tmp_path / "store")) == sorted(MESSAGES[:3])
    assert not list(state.glob("isp*")), sorted(p.name for p in state.iterdir())
    assert "home.uidl7" in out, out
