"""A MemoryError at each line a fetch runs: exactly once still holds, and the run ends cleanly.

On a board's ~100 KiB heap any allocation may fail, so any line of a fetch session may raise
MemoryError. Under CPython, against a private Dovecot, a line-event trace (sys.settrace, only in
firmware/pocketpost frames) raises MemoryError at one chosen line event of the fetch CLI's main
(pocketpost.fetch.main, in-process), one run per injection point; then a clean fetch runs in the
same interpreter (as a board's next fetch would: no reboot in between) and the test checks:
  - the failing run ended (bounded): status 1 and a line naming the MemoryError, quoting it or
    saying "no heap" (the UID table's refusal), or
    the MemoryError raised out of main (the CLI's traceback, status 1), or 0 when a best-effort step
    swallowed it; a fetch lock left (by a MemoryError in main's finally, before or in the release)
    holds this run's pid, taken over by the next run once this one's process has ended (the test
    writes an ended process's pid in it), or none, taken over once a minute old (the test ages
    it); the lock's own tests below want none left;
  - after the clean fetch: every message in the store exactly once (bodies), no delivery temp file,
    nothing deleted on the server that is not stored, everything deleted that the policy says,
    and the UIDL state naming exactly the server's UIDs still to be remembered, none pending.
Injection points: for each firmware line the fetch runs, its first and its last line event (the
first message's and the last one's); not a line `try:` (CPython's NOP ahead of the block, outside
its handlers' range: an exception raised there skips them, where no MemoryError can arise on either
runtime, nothing allocating there). The fresh modules of a CLI run (each cold module imported anew,
as MicroPython does after compat.forget) are had by dropping pocketpost.* from sys.modules before
each failing run (the clean fetch uses the same ones; the test's own are put back after). Two policies: delete, and
keep_days 1 with the run before's two messages aged 3 days (the failing run's first pass deletes
them, then downloads the two new ones, which stay on the server).
By default an even sample of the points (MAX_POINTS per policy: ~20 s of CPU each); POCKETPOST_FULL=1:
all of them (~3,600 per policy, ~0.3 s each: ~20 min per policy on an idle core).
"""

import contextlib
import io
import json
import os
import poplib
import subprocess
import sys
import threading
import time

import pytest
import lineinject
import storeread
from dovecot import Dovecot
from lineinject import FW, INJECTED, Injector
from uidtool import entries as state_entries

PASSWORD = "heap full"
MAX_POINTS = 60  # per policy by default (~0.3 s each)
RUN_TIMEOUT = 30  # seconds: a fetch that has not returned by then hangs

# Two stored by the run before the failing one, two new for it (one with dot lines).
MESSAGES = [
    b"From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n",
    b"From: b@example.org\r\nSubject: two\r\n\r\nsecond\r\n",
    b"From: c@example.org\r\nSubject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n",
    b"From: d@example.org\r\nSubject: four\r\n\r\n" + b"a longer line of the fourth message\r\n" * 200,
]


@pytest.fixture(autouse=True)
def _log_level_kept():
    """fetch.main sets the log module's level (here "warning") for the rest of the process: put back
    after each test, or a later test in this worker that waits for an info line sees none."""
    from pocketpost import log

    before = log.level
    yield
    log.set_level(before)


@pytest.fixture(scope="module")
def dc():
    with Dovecot(users={"alice": PASSWORD}) as d:
        yield d


def _fetch(cfg_path, tracer=None):
    """fetch.main(cfg_path) in a thread (a hang is seen, not waited out) -> (status or the
    exception it raised, its output)."""
    from pocketpost import fetch

    out = io.StringIO()
    got = []

    def run():
        if tracer is not None:
            sys.settrace(tracer.call)
        try:
            got.append(fetch.main(cfg_path, None, "warning"))
        except BaseException as e:  # (reported by the test)
            got.append(e)
        finally:
            sys.settrace(None)

    with contextlib.redirect_stdout(out):
        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(RUN_TIMEOUT)
    assert got, "the fetch hangs (%d s): %s" % (RUN_TIMEOUT, out.getvalue()[-2000:])
    return got[0], out.getvalue()


@contextlib.contextmanager
def _fresh_modules():
    """The firmware's modules imported anew inside (a CLI run's), the test's own put back after."""
    mine = {k: v for k, v in sys.modules.items() if k == "pocketpost" or k.startswith("pocketpost.")}
    for k in mine:
        del sys.modules[k]
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k == "pocketpost" or k.startswith("pocketpost.")]:
            del sys.modules[k]
        sys.modules.update(mine)


def _dead_pid():
    """The pid of a process that has ended (a fetch lock holding it is a killed run's: taken over)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _server_uidls(dc):
    p = poplib.POP3("127.0.0.1", dc.port, timeout=10)
    try:
        p.user("alice")
        p.pass_(PASSWORD)
        return [ln.split()[1].decode() for ln in p.uidl()[1]]
    finally:
        p.quit()


class Case:
    """One trial's folder: its config (policy), the server seeded, the run before the failing one."""

    def __init__(self, dc, work, policy):
        self.dc, self.work, self.policy = dc, work, policy
        work.mkdir()
        acct = {"name": "acct", "host": "127.0.0.1", "port": dc.port, "tls": "none", "allow_plaintext": True,
                "user": "alice", "password": PASSWORD, "auth": "user", "mailbox": "alice", "state_dir": "state",
                "policy": policy, "timeouts": {"connect_timeout": 5, "read_timeout": 5}}
        if policy == "keep_days":
            acct["keep_days"] = 1
        self.cfg = str(work / "config.json")
        with open(self.cfg, "w") as f:
            json.dump({"store": {"root": "mail", "quota": 0}, "accounts": [acct], "log": {"level": "warning"}}, f)
        dc.seed("alice", MESSAGES[:2])
        rc, out = _fetch(self.cfg)
        assert rc == 0, out
        if policy == "keep_days":  # the two stored 3 days ago: due for deletion by the failing run
            from pocketpost import uidstate

            st = uidstate.UidState(str(work / "state"), "acct").load()
            for uid, first_seen, flag in state_entries(st):
                st.add(uid, first_seen - 3 * 86400, flag)
            st.save()
        dc.seed("alice", MESSAGES[2:], clear=False)

    def check(self, what):
        """The clean fetch after the failing run and the exactly-once checks; `what` names the trial."""
        from pocketpost import store as storemod, uidstate
        from pocketpost.store import Store

        lock = str(self.work / "mail.fetch-lock")
        lock_left = os.path.exists(lock)
        if lock_left:  # (a MemoryError in main's finally, before its release: nothing can free it then)
            try:
                with open(lock + "/pid") as f:
                    pid = f.read().strip()
            except OSError:
                pid = ""
            if pid:
                assert pid == str(os.getpid()), (what, "a lock with another run's pid", pid)
                with open(lock + "/pid", "w") as f:  # the failing run's process has ended, as a CLI run's does
                    f.write(str(_dead_pid()))
            else:  # (between the release's two steps: pid-less, taken over once a minute old)
                old = time.time() - 120
                os.utime(lock, (old, old))
        # The clean fetch's arrivals a later second than the failing run's: a message stored twice
        # is two files (in the same second the second rename would replace the first: CI once saw
        # a duplicate that a faster run hid).
        from pocketpost import compat

        now = compat.now
        compat.now = lambda: now() + 2
        try:
            rc, out = _fetch(self.cfg)
        finally:
            compat.now = now
        assert rc == 0, (what, out)
        on_server = self.dc.messages("alice")
        storemod.reboot()
        root = str(self.work / "mail")
        got = storeread.messages(Store(root), "alice")
        assert sorted(got) == sorted(MESSAGES), (what, "the store", got)
        assert storeread.temp_files(root + "/alice") == [], what
        # (delete: all of them deleted; keep_days 1: the two of 3 days ago, the two new ones kept)
        assert on_server == ([] if self.policy == "delete" else MESSAGES[2:]), (what, "on the server", on_server)
        st = uidstate.UidState(str(self.work / "state"), "acct").load()
        assert st.pending is None, (what, "a pending entry")
        assert sorted(e[0].decode() for e in state_entries(st)) == sorted(_server_uidls(self.dc)), (what, "the UIDL state")
        return lock_left


def _trial(dc, work, policy, at):
    """The run before, the failing run (injected at `at`; None: the recording run) and the clean
    fetches, with the failing run's modules (a CLI run's: fresh) -> (its status, its output, the
    Injector)."""
    case = Case(dc, work, policy)
    inj = Injector(at)
    with _fresh_modules():
        rc, out = _fetch(case.cfg, inj)
        lock_left = case.check("%s: %s" % (at, out[-3000:]))
    return rc, out, inj, lock_left


def _points(dc, tmp_path, policy):
    """The injection points: (path, line, k) for each firmware line the failing run runs, its first
    and last time (k)."""
    rc, out, rec, lock_left = _trial(dc, tmp_path / "record", policy, None)
    assert rc == 0 and not lock_left, out
    return lineinject.points(rec)


def _sample(points):
    if os.getenv("POCKETPOST_FULL") == "1" or len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    return [points[int(i * step)] for i in range(MAX_POINTS)]


@pytest.mark.parametrize("policy", ["delete", "keep_days"])
def test_a_memoryerror_at_each_line_of_a_fetch(dc, tmp_path, policy):
    points = _points(dc, tmp_path, policy)
    tried = _sample(points)
    swallowed = missed = locks = 0
    for i, at in enumerate(tried):
        rc, out, inj, lock_left = _trial(dc, tmp_path / ("p%d" % i), policy, at)
        locks += lock_left
        what = "MemoryError at %s:%d (its run %d)" % (at[0][len(FW):], at[1], at[2])
        if inj.seen.get(at[:2], 0) < at[2]:  # a loop that ran fewer times (the bytes came in fewer reads)
            missed += 1
            continue
        assert not isinstance(rc, BaseException) or isinstance(rc, MemoryError), (what, rc, out)
        if rc == 0:
            swallowed += 1  # (a best-effort step's: the checks say whether it cost anything)
        elif not isinstance(rc, MemoryError):
            # (or the refusal that says it: uidstate's table, "no heap for its UID table")
            assert rc == 1 and ("MemoryError" in out or INJECTED in out or "no heap" in out), (what, rc, out)
    assert missed * 10 < len(tried), (missed, len(tried))
    print("%s: %d injection points of %d covered, %d swallowed, %d locks left (with the pid)" % (
        policy, len(tried) - missed, len(points), swallowed, locks))


# --- the fetch lock (fetchload.lock) on a MemoryError: found by the sweep above -------------------
def _lock_config(tmp_path):
    acct = {"name": "acct", "host": "127.0.0.1", "port": 1, "tls": "none", "allow_plaintext": True,
            "user": "alice", "password": PASSWORD, "mailbox": "alice"}
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"store": {"root": "mail", "quota": 0}, "accounts": [acct]}))
    return str(cfg), str(tmp_path / "mail.fetch-lock")


def _no_heap(*args, **kw):
    raise MemoryError(INJECTED)


@pytest.mark.parametrize("where", ["pid", "open_store", "forget"])
def test_a_memoryerror_while_the_fetch_lock_is_held_releases_it(tmp_path, monkeypatch, where):
    # Taken by fetchload.load, released by fetch.main's finally: a MemoryError in between (writing
    # the lock's pid, opening the store, or dropping fetchload.py's code after the load: compat.forget
    # makes module names on MicroPython's heap) left the lock, pid-less or not. A pid-less one stops
    # every later run ("another fetch (pid ?) is using the store": delete it by hand); one with the
    # pid of the run that ended is taken over by the next run, or stops a board's next fetch in the
    # same process.
    from pocketpost import compat, config, fetch, fetchload

    cfg, lock = _lock_config(tmp_path)
    if where == "pid":
        real = open
        monkeypatch.setattr(fetchload, "open", lambda p, m="r": _no_heap() if m == "w" else real(p, m), raising=False)
    elif where == "open_store":
        monkeypatch.setattr(config, "open_store", _no_heap)
    else:
        monkeypatch.setattr(compat, "forget", lambda names: _no_heap() if names == ("fetchload",) else None)
    with pytest.raises(MemoryError):
        fetch.main(cfg, None, "warning")
    assert not os.path.exists(lock), os.listdir(str(tmp_path))
