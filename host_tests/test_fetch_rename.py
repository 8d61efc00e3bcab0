"""A fetch account renamed in config.json: its UIDL state's files follow it, or the fetch is
refused (fetchload.renamed), against a private Dovecot through the fetch CLI under micropython.

The state of account `isp` is `isp.uidl`, `isp.who` and the slot files `isp.uidl0` ...
`isp.uidl7` (uidstate.py's pending paragraph: a download a power cut stopped after its store
commit is recorded only there until the next journal write). A rename that moves `isp.uidl` and
`isp.who` but leaves the slot files behind loses that record: the message is stored a second
time. The rename tool (fetchrename.py: admin.rename_account, ppadmin rename-account) moves them
all; a rename left half done is refused until it is finished. On a host, the rename holds the
store's fetch lock (as a fetch does): a fetch and a rename never run at once."""

import json
import os
import signal
import subprocess
import sys
import time

from helpers import FIRMWARE, MICROPYTHON, ROOT, run_micropython
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


# --- the rename and a fetch (cron) at once: the store's fetch lock --------------------------------
WAIT_S = 30  # for a step of another process (a crash point, a held lock)


def _host_config(tmp, acct):
    """config.json naming `acct`, its password in secrets.json as a host keeps it: the path."""
    a = dict(acct)
    (tmp / "secrets.json").write_text(json.dumps({"accounts": {a["name"]: {"password": a.pop("password")}}}))
    (tmp / "config.json").write_text(json.dumps({"store": {"root": str(tmp / "store"), "quota": 0}, "accounts": [a]}))
    return tmp / "config.json"


def _fetch(cfg, *crash, **kw):
    """The real fetch CLI (micropython) on cfg; with a crash point (crashfetch.py): it stops there."""
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":.frozen"
    cmd = [MICROPYTHON, os.path.join(ROOT, "host_tests", "crashfetch.py"), crash[0]] if crash else \
        [MICROPYTHON, "-m", "pocketpost.fetch"]
    return subprocess.Popen(cmd + [str(cfg)], cwd=str(cfg.parent), env=env, **kw)


def _fetch_now(cfg):
    p = _fetch(cfg, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.communicate(timeout=120)[0].decode(errors="replace")
    return p.returncode, out


def _rename(cfg, old, new, hold=None):
    """`ppadmin rename-account cfg old new` started; with `hold` (a path, ppadmin.HOLD_RENAME) it
    waits, lock held, until that file is made."""
    env = dict(os.environ)
    if hold:
        env["PP_TEST_HOLD_RENAME"] = str(hold)
    return subprocess.Popen([sys.executable, PPADMIN, "rename-account", str(cfg), old, new], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_file(path, has=b""):
    """path's bytes once it exists and holds `has` (a bounded wait)."""
    deadline = time.time() + WAIT_S
    while True:
        data = path.read_bytes() if path.exists() else None
        if data is not None and has in data:
            return data
        assert time.time() < deadline, "waited in vain for %s" % path
        time.sleep(0.05)


def _files(tmp):
    """config.json, secrets.json and the state files, by name: their bytes."""
    return {p.relative_to(tmp).as_posix(): p.read_bytes() for p in
            [tmp / "config.json", tmp / "secrets.json"] + sorted((tmp / "state").glob("*"))}


def test_a_rename_while_a_fetch_runs_is_refused_and_changes_nothing(dc, tmp_path):
    """A fetch (cron) stopped after its second message's commit, holding the store's lock: the
    rename is refused in one line naming its pid, and config.json, secrets.json and every state
    file stay byte for byte (before: the rename moved the state under the running fetch, which
    went on writing the old name's). The fetch killed, the rename takes its lock over and the
    next fetch stores only the third message: each once."""
    dc.seed("alice", MESSAGES[:3])
    cfg = _host_config(tmp_path, account(dc, tmp_path))
    with open(tmp_path / "fetch.out", "wb") as out:
        fetch = _fetch(cfg, "committed#2", stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_file(tmp_path / "fetch.out", b"CRASHPOINT")
        before = _files(tmp_path)
        assert "state/isp.uidl1" in before, sorted(before)
        r = _rename(cfg, "isp", "home")
        out, err = r.communicate(timeout=60)
        assert r.returncode == 3 and out == "", out + err
        assert err == ("ppadmin: rename account isp to home: the store %s is in use by pid %d (a fetch, or an export, "
                       "import or rename, holding %s.fetch-lock): nothing changed; run again once it has ended (if none "
                       "is running, delete that directory)\n" % (tmp_path / "store", fetch.pid, tmp_path / "store")), err
        assert _files(tmp_path) == before
    finally:
        fetch.kill()
        fetch.wait(10)
    r = _rename(cfg, "isp", "home")
    out, err = r.communicate(timeout=60)
    assert r.returncode == 0 and "account isp renamed to home" in out, out + err
    rc, out = _fetch_now(cfg)
    assert rc == 0 and "fetch home" in out and "1 fetched" in out, out
    assert sorted(local_messages(tmp_path / "store")) == sorted(MESSAGES[:3])
    assert not (tmp_path / "store.fetch-lock").exists()


def test_a_fetch_started_while_the_rename_holds_the_lock_refuses_and_stores_nothing(dc, tmp_path):
    """The rename held with the lock taken (ppadmin's test hook): a fetch started then (cron) is
    refused as for another fetch and stores nothing (before: it fetched as the old account while
    the rename moved its state). The rename goes on, the lock is gone, and the fetch after it
    takes the new message only."""
    dc.seed("alice", MESSAGES[:2])
    cfg = _host_config(tmp_path, account(dc, tmp_path))
    rc, out = _fetch_now(cfg)
    assert rc == 0 and "2 fetched" in out, out
    dc.seed("alice", MESSAGES[2:3], clear=False)
    hold = tmp_path / "go"
    ren = _rename(cfg, "isp", "home", hold)
    try:
        pid = int(_wait_file(tmp_path / "go.held"))
        assert (tmp_path / "store.fetch-lock" / "pid").read_text() == str(pid)
        rc, out = _fetch_now(cfg)
        assert rc == 1 and "another fetch (pid %d) is using the store %s" % (pid, tmp_path / "store") in out, out
        assert len(local_messages(tmp_path / "store")) == 2
        hold.touch()
        out, err = ren.communicate(timeout=60)
    finally:
        if ren.poll() is None:
            ren.kill()
            ren.wait(10)
    assert ren.returncode == 0 and "account isp renamed to home" in out, out + err
    assert not (tmp_path / "store.fetch-lock").exists()
    rc, out = _fetch_now(cfg)
    assert rc == 0 and "fetch home" in out and "1 fetched" in out, out
    assert sorted(local_messages(tmp_path / "store")) == sorted(MESSAGES[:3])


def test_a_killed_renames_lock_is_taken_over_and_a_refused_rename_leaves_none(tmp_path):
    """A rename SIGKILLed with the lock held leaves it behind (its pid gone): the next rename
    takes it over as a fetch does, holds it (its own pid), and, refused (ConfigError: a bad
    name), removes it; the files are as they were."""
    cfg = _host_config(tmp_path, {"name": "isp", "host": "localhost", "user": "alice", "password": "pw",
                                  "state_dir": "state"})
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "isp.uidl").write_bytes(b"1 a\n")
    before = _files(tmp_path)
    lock = tmp_path / "store.fetch-lock"
    ren = _rename(cfg, "isp", "home", tmp_path / "go")
    try:
        pid = int(_wait_file(tmp_path / "go.held"))
        os.kill(pid, signal.SIGKILL)
        out, err = ren.communicate(timeout=60)
    finally:
        if ren.poll() is None:
            ren.kill()
            ren.wait(10)
    assert ren.returncode == 3 and (lock / "pid").read_text() == str(pid), out + err
    (tmp_path / "go.held").unlink()
    ren = _rename(cfg, "isp", "bad name", tmp_path / "go")
    try:
        pid2 = int(_wait_file(tmp_path / "go.held"))
        assert pid2 != pid and (lock / "pid").read_text() == str(pid2)
        (tmp_path / "go").touch()
        out, err = ren.communicate(timeout=60)
    finally:
        if ren.poll() is None:
            ren.kill()
            ren.wait(10)
    assert ren.returncode == 3 and err.startswith("ppadmin: account name 'bad name': ") and err.count("\n") == 1, err
    assert not lock.exists()
    assert _files(tmp_path) == before


def test_a_rename_run_from_the_configs_folder_makes_no_store_folder(tmp_path):
    """`ppadmin rename-account config.json isp home` run in the config's folder, its store root
    "store" (no folder named: the current one): the rename holds the fetch lock store.fetch-lock
    beside where the store goes, and leaves no store folder behind, renamed or refused (the lock
    made the root itself, taking it for its parent folder: an empty store left)."""
    (tmp_path / "secrets.json").write_text(json.dumps({"accounts": {"isp": {"password": "pw"}}}))
    (tmp_path / "config.json").write_text(json.dumps({"store": {"root": "store", "quota": 0}, "accounts": [
        {"name": "isp", "host": "localhost", "user": "alice", "state_dir": "state"}]}))
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "isp.uidl").write_bytes(b"1 a\n")
    for new, status in (("bad name", 3), ("home", 0)):
        r = subprocess.run([sys.executable, PPADMIN, "rename-account", "config.json", "isp", new], cwd=str(tmp_path),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == status, r.stdout + r.stderr
        assert not (tmp_path / "store").exists() and not (tmp_path / "store.fetch-lock").exists(), new
    assert (tmp_path / "state" / "home.uidl").read_bytes() == b"1 a\n"
