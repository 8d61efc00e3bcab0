"""The fetcher as its users meet it (review, wave 16): against a private Dovecot on loopback, under
MicroPython through the CLI (`micropython -m pocketpost.fetch config.json`, as README "Fetching
mail" gives it): two runs at once on the same store (a cron run overlapping a slow one), ..."""

import json
import os
import subprocess
import sys

import pytest
from helpers import FIRMWARE, MICROPYTHON
from test_client_dovecot import PASSWORD, account, dc, local_messages, run_cli  # noqa: F401 (dc: a fixture)

RUN_TIMEOUT = 120  # seconds for one CLI run


def _popen(tmp, acct):
    (tmp / "config.json").write_text(json.dumps({"store": {"root": str(tmp / "store"), "quota": 0},
                                                 "accounts": [acct]}))
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":.frozen"
    return subprocess.Popen([MICROPYTHON, "-m", "pocketpost.fetch", str(tmp / "config.json")], cwd=str(tmp), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_two_fetches_at_once_on_one_store_the_second_says_so_and_each_message_is_stored_once(dc, tmp_path):
    """Two runs of the CLI started together (cron starting one while the last still runs): one
    fetches every message, the other stores nothing and says another fetch holds the store, with
    the lock's path to delete should no fetch run (before: it downloaded message 1 too and failed
    with "store: message 1 (96 octets): storage error 17"). The lock is gone after both."""
    n = 300
    dc.seed("alice", [b"Subject: x%d\r\n\r\n" % i + b"y" * 80 + b"\r\n" for i in range(n)])
    acct = account(dc, tmp_path)
    ps = [_popen(tmp_path, acct) for _ in range(2)]
    outs = []
    try:
        for p in ps:
            outs.append((p.wait(RUN_TIMEOUT), p.stdout.read().decode(errors="replace")))
    finally:
        for p in ps:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            p.stdout.close()
    outs.sort()
    assert outs[0][0] == 0 and "%d fetched" % n in outs[0][1], outs
    rc, out = outs[1]
    assert rc == 1 and "another fetch (pid " in out and "is using the store %s" % (tmp_path / "store") in out, outs
    assert "delete the directory %s.fetch-lock" % (tmp_path / "store") in out and "storage error" not in out, outs
    assert len(local_messages(tmp_path / "store")) == n
    assert not (tmp_path / "store.fetch-lock").exists()


def test_a_running_fetch_holds_the_lock_and_a_killed_ones_lock_is_taken_over(dc, tmp_path):
    """The lock of a fetch still running (its pid alive, running a fetch) refuses the run, exit 1;
    the lock a SIGKILLed run left behind (its pid gone) is taken over: the run fetches."""
    dc.seed("alice", [b"Subject: a\r\n\r\nbody\r\n"])
    acct = account(dc, tmp_path)
    lock = tmp_path / "store.fetch-lock"
    lock.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # pocketpost.fetch"])
    try:
        (lock / "pid").write_text(str(other.pid))
        rc, out = run_cli(tmp_path, acct)
        assert rc == 1 and "another fetch (pid %d)" % other.pid in out, out
        assert local_messages(tmp_path / "store") == []
    finally:
        other.kill()
        other.wait(10)
    rc, out = run_cli(tmp_path, acct)  # its pid is gone: a killed run's lock
    assert rc == 0 and "1 fetched" in out, out
    assert not lock.exists()


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs (a small flash that fills), mounted for the test and unmounted after it;
    skipped where this user may not mount one."""
    d = tmp_path / "flash"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True, timeout=30)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode(errors="replace").strip())
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], timeout=30, check=True)


def _fill(d, leave):
    """Fill filesystem d with 4 KiB files (tmpfs pages), then free `leave` of them."""
    i = 0
    try:
        while i < 1000:  # (64 KiB: 16 pages)
            with open(d / ("fill%d" % i), "wb") as f:
                f.write(b"x" * 4096)
            i += 1
    except OSError:
        pass
    for j in range(leave):
        (d / ("fill%d" % j)).unlink()
    return i


@pytest.mark.parametrize("leave", [0, 10])
def test_a_full_flash_under_the_uidl_state_is_said_and_nothing_is_lost_or_deleted_unfetched(dc, tmp_path, small_fs, leave):
    """The UIDL state's folder on a flash that is full (leave 0: at the first write, the account's
    .who record; leave 10: mid-session, after some messages, at a journal write: tmpfs gives each
    file a 4 KiB page, the .who, the state file and its 8 slot files, uidstate.py, since stop 31;
    leave 2 before): the run fails
    with a line saying the flash is full and what to do (before: "FAILED: OSError: 28"), no
    message is deleted on the server (policy delete) that is not stored, none is stored twice,
    and once there is room the next run fetches the rest."""
    n = 300
    dc.seed("alice", [b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(n)])
    acct = account(dc, tmp_path, state_dir=str(small_fs / "state"), policy="delete")
    (small_fs / "state").mkdir()
    filled = _fill(small_fs, leave)
    rc, out = run_cli(tmp_path, acct)
    assert rc == 1 and "fetch isp: FAILED: ClientError: fetch isp: the flash is full: the UIDL state in %s cannot be " \
        "written" % (small_fs / "state") in out and "OSError" not in out, out
    stored = len(local_messages(tmp_path / "store"))
    assert (stored == 0) if leave == 0 else (0 < stored < n), out
    assert len(dc.messages("alice")) == n  # nothing deleted: no QUIT after the failure
    for j in range(filled):
        if (small_fs / ("fill%d" % j)).exists():
            (small_fs / ("fill%d" % j)).unlink()
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "%d fetched" % (n - stored) in out and "%d deleted" % n in out, out
    assert len(local_messages(tmp_path / "store")) == n and dc.messages("alice") == []


def _mailbox_erring(at, reply):
    """A scripted server (test_client_hostile.mailbox) whose `at` command ("STAT", "QUIT") is
    answered `reply`."""
    from test_client_hostile import GOOD, login

    def script(c, rf):
        login(c, rf)
        while True:
            line = rf.readline()
            if not line:
                return
            k = line.strip().split(b" ")[0].upper()
            if k == at.encode():
                c.sendall(reply)
                if k == b"STAT" or k == b"QUIT":
                    return
            elif k == b"STAT":
                c.sendall(b"+OK 1 %d\r\n" % len(GOOD))
            elif k == b"UIDL":
                c.sendall(b"+OK\r\n1 u1\r\n.\r\n")
            elif k == b"LIST":
                c.sendall(b"+OK\r\n1 %d\r\n.\r\n" % len(GOOD))
            elif k == b"RETR":
                c.sendall(b"+OK\r\n" + GOOD + b".\r\n")
            elif k in (b"NOOP", b"DELE"):
                c.sendall(b"+OK\r\n")
            else:
                c.sendall(b"-ERR unknown\r\n")

    return script


@pytest.mark.parametrize("at", ["STAT", "QUIT"])
def test_stat_or_quit_refused_with_a_response_code_says_the_code_and_to_try_again(tmp_path, at):
    """STAT or QUIT answered "-ERR [SYS/TEMP] ..." (RFC 2449: a temporary failure of the server;
    QUIT refused: no DELE of the session committed). The line names the code and says to try
    again later, as a refused login or UIDL does (before: the code was dropped: "-ERR Internal
    error occurred"). After the refused QUIT the message stored stays recorded: the next run
    does not store it again."""
    from test_client_hostile import GOOD, Fetcher, Script, mailbox, stored

    fetch = Fetcher("micropython")
    s = Script(_mailbox_erring(at, b"-ERR [SYS/TEMP] Internal error occurred. Refer to server log.\r\n"))
    with pytest.raises(Exception) as ei:
        fetch(tmp_path, s.port, policy="delete")
    msg = str(ei.value)
    assert "%s: -ERR Internal error occurred. Refer to server log. ([SYS/TEMP]): try again later" % at in msg, msg
    assert stored(tmp_path) == ([] if at == "STAT" else [GOOD])
    seen = []
    s = Script(mailbox([(b"u1", GOOD)], seen))
    st = fetch(tmp_path, s.port, policy="delete")
    assert st["fetched"] == (1 if at == "STAT" else 0) and stored(tmp_path) == [GOOD], st
    assert b"DELE 1" in seen and seen[-1] == b"QUIT", seen


def test_policy_delete_with_more_messages_than_max_entries_fetches_them_all_in_one_run(dc, tmp_path):
    """Policy delete, a mailbox of 25 messages (a board back after a week away) and max_entries
    10: a session stores 10 (their entries stay until QUIT commits their deletions), then the CLI
    starts the next at once, exit 0, every message stored once and deleted on the server. Before:
    10 stored, "ERROR ... UIDL state full ...; raise max_entries or use policy keep_days" and exit
    1 at every run until the mailbox drained, 10 a run."""
    n = 25
    msgs = [b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(n)]
    dc.seed("alice", msgs)
    acct = account(dc, tmp_path, policy="delete", max_entries=10)
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and out.count("10 deleted") == 2 and "5 fetched" in out and "ERROR" not in out, out
    assert sorted(local_messages(tmp_path / "store")) == sorted(msgs) and dc.messages("alice") == []


def test_a_full_state_under_policy_keep_still_fails_the_run(dc, tmp_path):
    """Policy keep, more new messages than max_entries: nothing is deleted, so no session frees an
    entry: the run stops after one session, says the state is full (an ERROR line), exit 1."""
    dc.seed("alice", [b"Subject: k%d\r\n\r\nbody\r\n" % i for i in range(12)])
    acct = account(dc, tmp_path, policy="keep", max_entries=10)
    rc, out = run_cli(tmp_path, acct)
    assert rc == 1 and "ERROR fetch isp: UIDL state full (max_entries 10)" in out and out.count("10 fetched") == 1, out


def test_the_readme_fetch_command_works_as_written_from_the_checkout(dc, tmp_path):
    """README "Fetching mail": the host command, taken from the README as written (its `[isp]`
    dropped), run from the checkout with a shell, against a config.json and secrets.json made as
    that section says (the password in secrets.json, a local "store" root): it fetches. Before:
    `micropython -m pocketpost.fetch config.json` found no micropython on PATH, or (the venv's)
    "ImportError: no module named 'pocketpost'"; and a config without "store" put the mail in
    /flash/mail at the filesystem's root."""
    import re

    from helpers import ROOT

    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Fetching mail"):]
    cmd = re.search(r"`([^`]*-m pocketpost\.fetch config\.json)[^`]*`", section).group(1)
    root = re.search(r'`"store": \{"root": "([^"]+)"\}`', section).group(1)
    dc.seed("alice", [b"Subject: readme\r\n\r\nbody\r\n"])
    acct = account(dc, tmp_path)
    del acct["password"]
    (tmp_path / "config.json").write_text(json.dumps({"store": {"root": str(tmp_path / root)}, "accounts": [acct]}))
    (tmp_path / "secrets.json").write_text(json.dumps({"accounts": {"isp": {"password": PASSWORD}}}))
    cmd = cmd.replace("config.json", str(tmp_path / "config.json"))
    r = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, timeout=RUN_TIMEOUT)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "1 fetched" in out, (cmd, out)
    assert local_messages(tmp_path / root) == [b"Subject: readme\r\n\r\nbody\r\n"]


def test_a_login_held_back_by_a_locked_mailbox_past_read_timeout_says_so(tmp_path):
    """Dovecot with pop3_lock_session holds a login back up to 10 s while another session has the
    mailbox, then answers -ERR [IN-USE]. With read_timeout 5 (under those 10 s) the fetch times
    out waiting for the reply to AUTH PLAIN / PASS: the line says another session may hold the
    mailbox and to set read_timeout above 10 s (before: only "the server is stalled or too
    slow"), for both login commands."""
    import poplib

    from dovecot import Dovecot
    from test_client_review_w15 import LOCKED

    d = Dovecot(users={"alice": PASSWORD}, extra=LOCKED)
    d.start()
    try:
        d.seed("alice", [b"Subject: a\r\n\r\nb\r\n"])
        other = poplib.POP3("127.0.0.1", d.port, timeout=30)
        try:
            other.user("alice")
            other.pass_(PASSWORD)
            for auth, cmd in (("plain", "AUTH PLAIN"), ("user", "PASS")):
                rc, out = run_cli(tmp_path, account(d, tmp_path, auth=auth, timeouts={"read_timeout": 5}))
                assert rc == 1 and "waiting for the reply to %s: " % cmd in out, out
                assert "another session may hold the mailbox" in out and "read_timeout above 10 s" in out, out
        finally:
            other.quit()
    finally:
        d.stop()


def _no_uidl_any_more(c, rf):
    """A server that listed UIDL before and now offers none: CAPA without UIDL, UIDL -ERR."""
    from test_client_hostile import GOOD, login

    login(c, rf, capa=b"+OK\r\nUSER\r\n.\r\n")
    while True:
        line = rf.readline()
        if not line:
            return
        k = line.strip().split(b" ")[0].upper()
        if k == b"STAT":
            c.sendall(b"+OK 1 %d\r\n" % len(GOOD))
        elif k == b"UIDL":
            c.sendall(b"-ERR unknown command\r\n")
        elif k == b"QUIT":
            c.sendall(b"+OK\r\n")
            return
        else:
            c.sendall(b"+OK\r\n")


def test_a_server_that_dropped_uidl_for_good_is_told_apart_from_one_refusing_it_for_now(tmp_path):
    """A server that listed UIDL (the state holds its UIDs) and now answers UIDL -ERR: "try again
    later" as before; when its CAPA no longer lists UIDL, the line also says what to do if that
    is for good (before: "try again later" at every run, for ever): delete the state files and
    use policy delete. Nothing is stored or deleted."""
    from test_client_hostile import GOOD, Fetcher, Script, mailbox, stored

    fetch = Fetcher("micropython")
    s = Script(mailbox([(b"u1", GOOD)]))
    assert fetch(tmp_path, s.port)["fetched"] == 1
    s = Script(_no_uidl_any_more)
    with pytest.raises(Exception) as ei:
        fetch(tmp_path, s.port)
    msg = str(ei.value)
    path = tmp_path / "state" / "h.uidl"
    assert "UIDL refused (it listed this account's messages before): try again later; its CAPA no longer lists " \
        "UIDL: if that is for good, delete %s and %s.who" % (path, tmp_path / "state" / "h") in msg, msg
    assert 'set policy "delete"' in msg and not s.saw("DELE") and stored(tmp_path) == [GOOD], msg


def test_a_store_root_that_cannot_be_opened_is_said_in_one_line_and_leaves_no_lock(tmp_path):
    """A store root that is a file: one line naming the root, exit 2, and no fetch lock left behind
    (before: a traceback ending in OSError: 20, and <root>.fetch-lock stayed)."""
    (tmp_path / "store").write_text("x")
    acct = {"name": "a", "host": "127.0.0.1", "port": 1, "user": "u", "password": "p", "tls": "none",
            "allow_plaintext": True}
    p = _popen(tmp_path, acct)
    try:
        rc = p.wait(RUN_TIMEOUT)
        out = p.stdout.read().decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        p.stdout.close()
    assert rc == 2 and "fetch: store %s cannot be opened" % (tmp_path / "store") in out, out
    assert "Traceback" not in out, out
    assert not (tmp_path / "store.fetch-lock").exists()


def test_a_lock_deleted_by_hand_during_the_run_keeps_the_exit_status(tmp_path, monkeypatch):
    """The refusal line tells a user to delete the lock directory; one deleted while a fetch runs
    must not turn that fetch's exit status into a traceback (before: OSError from the release)."""
    monkeypatch.syspath_prepend(FIRMWARE)
    from pocketpost import client, fetch

    (tmp_path / "config.json").write_text(json.dumps({"store": {"root": str(tmp_path / "store"), "quota": 0},
                                                      "accounts": [{"name": "a", "host": "127.0.0.1", "port": 1,
                                                                    "user": "u", "password": "p", "tls": "none",
                                                                    "allow_plaintext": True}]}))
    lock = tmp_path / "store.fetch-lock"

    def deletes_the_lock(*args):
        assert lock.exists()
        (lock / "pid").unlink()
        lock.rmdir()
        raise OSError(111, "connection refused")

    monkeypatch.setattr(client, "fetch_account_sync", deletes_the_lock)
    assert fetch.main(str(tmp_path / "config.json")) == 1
    assert not lock.exists()
