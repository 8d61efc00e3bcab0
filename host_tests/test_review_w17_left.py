"""Defects left open by stop 25's reviews (wave 17), as users meet them: the fetch CLI run from a
shell against a private Dovecot, the SMTP receiver through smtplib, the board's config written
back by the REPL admin under both interpreters."""

import json
import os
import poplib
import re
import smtplib
import subprocess
import time

import pytest
from helpers import FIRMWARE, MICROPYTHON
from test_client_dovecot import account, dc, local_messages  # noqa: F401 (dc: a fixture)

RUN_TIMEOUT = 120  # seconds for one CLI run
HERE = os.path.dirname(os.path.abspath(__file__))
RACERS = 5  # runs at once against a killed run's lock (one of them late: fetchlate.py)
ROUNDS = 3


def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_runs_started_together_after_a_killed_run_take_its_lock_over_once(dc, tmp_path):
    """A fetch SIGKILLed (its lock <root>.fetch-lock left with its pid), then several cron-like runs
    started at the same moment, from a shell: one takes the dead lock over and fetches, the others
    say another fetch uses the store (or, started after it ended, find nothing new). Each message
    is stored once, every round. One of the runs is preempted between reading the dead pid and
    acting on it until another has taken the lock over (fetchlate.py: what a loaded machine does
    now and then; the same code, only its timing forced). Before: that run removed the other's
    new lock as "the dead lock" and both fetched: the messages twice, or "storage error 17"."""
    n = 20
    msgs = [b"Subject: r%d\r\n\r\n" % i + b"z" * 60 + b"\r\n" for i in range(n)]
    dc.seed("alice", msgs)
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen")
    for rnd in range(ROUNDS):
        tmp = tmp_path / ("r%d" % rnd)
        tmp.mkdir()
        acct = account(dc, tmp)
        (tmp / "config.json").write_text(json.dumps({"store": {"root": str(tmp / "store"), "quota": 0},
                                                    "accounts": [acct]}))
        lock = tmp / "store.fetch-lock"
        lock.mkdir()
        (lock / "pid").write_text(str(_dead_pid()))
        # The late run first, until it has read the dead pid; then the others, each shell waiting
        # for its line on stdin before it execs the CLI: all released at once.
        mark = tmp / "late"
        late = subprocess.Popen([MICROPYTHON, os.path.join(HERE, "fetchlate.py"), str(tmp / "config.json"), str(lock),
                                 str(mark)], cwd=str(tmp), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        cmd = "read go && exec %s -m pocketpost.fetch %s" % (MICROPYTHON, tmp / "config.json")
        ps = [late] + [subprocess.Popen(["sh", "-c", cmd], cwd=str(tmp), env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(RACERS - 1)]
        outs = []
        try:
            t0 = time.time()
            while not mark.exists() and time.time() - t0 < 30:
                time.sleep(0.01)
            for p in ps[1:]:
                p.stdin.write(b"go\n")
            for p in ps[1:]:
                p.stdin.flush()
            for p in ps[1:]:
                p.stdin.close()
            for p in ps:
                outs.append((p.wait(RUN_TIMEOUT), p.stdout.read().decode(errors="replace")))
        finally:
            for p in ps:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
                p.stdout.close()
        fetched = [int(m) for _, out in outs for m in re.findall(r"fetch isp: (\d+) fetched", out)]
        refused = [out for rc, out in outs if rc == 1 and "another fetch (pid " in out]
        assert sum(fetched) == n and len(fetched) + len(refused) == RACERS, (rnd, outs)
        assert "FAILED" not in "".join(out for _, out in outs), (rnd, outs)
        assert sorted(local_messages(tmp / "store")) == sorted(msgs), (rnd, outs)
        assert not lock.exists() and not (tmp / "store.fetch-lock.takeover").exists(), (rnd, outs)


def test_a_guard_left_by_a_run_killed_while_taking_over_is_said_with_what_to_delete(tmp_path):
    """A run killed in the moment it took a dead lock over leaves <root>.fetch-lock.takeover: the
    next run does not fetch, and says which directories to delete if no fetch runs."""
    lock = tmp_path / "store.fetch-lock"
    lock.mkdir()
    (lock / "pid").write_text(str(_dead_pid()))
    (tmp_path / "store.fetch-lock.takeover").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"store": {"root": str(tmp_path / "store"), "quota": 0},
                                                      "accounts": []}))
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen")
    r = subprocess.run([MICROPYTHON, "-m", "pocketpost.fetch", str(tmp_path / "config.json")], cwd=str(tmp_path),
                       env=env, capture_output=True, timeout=RUN_TIMEOUT)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 1 and "nothing fetched by this run" in out, out
    assert "delete the directory %s and the directory %s.takeover" % (lock, lock) in out, out


def _fetch_cli(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"store": {"root": str(tmp_path / "store"), "quota": 0},
                                                      "accounts": []}))
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen")
    r = subprocess.run([MICROPYTHON, "-m", "pocketpost.fetch", str(tmp_path / "config.json")], cwd=str(tmp_path),
                       env=env, capture_output=True, timeout=RUN_TIMEOUT)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def test_a_stale_guard_left_with_a_dead_lock_does_not_stop_every_later_run(tmp_path):
    """The guard is held for milliseconds: one older than a minute was left by a killed run, and
    with a dead run's lock beside it every later cron run would fail until someone deleted it by
    hand. The next run takes the lock over (and leaves neither the guard nor its renamed copy)."""
    lock = tmp_path / "store.fetch-lock"
    lock.mkdir()
    (lock / "pid").write_text(str(_dead_pid()))
    guard = tmp_path / "store.fetch-lock.takeover"
    guard.mkdir()
    old = time.time() - 120
    os.utime(str(guard), (old, old))
    rc, out = _fetch_cli(tmp_path)
    assert rc == 0 and "nothing fetched by this run" not in out, out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("store.")) == [], out


def test_a_pid_less_lock_is_said_while_young_and_taken_over_once_stale(tmp_path):
    """A run killed between its release's two steps (the pid removed, the folder not yet: a
    MemoryError or Ctrl-C there, test_fetch_memoryerror's full sweep found it) or between the
    lock's mkdir and its pid leaves the lock without a pid. Before, every later run was refused
    until someone deleted it by hand. A young one may be a run still writing its pid: refused,
    said with what to delete; one older than a minute is taken over, nothing left behind."""
    lock = tmp_path / "store.fetch-lock"
    lock.mkdir()
    rc, out = _fetch_cli(tmp_path)
    assert rc == 1 and "nothing fetched by this run" in out and "delete the directory %s" % lock in out, out
    assert lock.exists() and not list(lock.iterdir()), out
    old = time.time() - 120
    os.utime(str(lock), (old, old))
    rc, out = _fetch_cli(tmp_path)
    assert rc == 0 and "nothing fetched by this run" not in out, out
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("store.")) == [], out


def test_a_guard_left_while_the_lock_was_free_is_removed_by_the_next_run(tmp_path):
    """A guard left behind while no lock was dead (the run killed in its takeover, the lock since
    taken and released) must not wait for the next killed run to stop every run after it: the
    next run that holds the lock removes it."""
    (tmp_path / "store.fetch-lock.takeover").mkdir()
    rc, out = _fetch_cli(tmp_path)
    assert rc == 0, out
    assert not (tmp_path / "store.fetch-lock.takeover").exists(), out
    assert not (tmp_path / "store.fetch-lock").exists(), out


def test_a_delete_backlog_past_the_runs_sessions_is_said_as_a_failure_with_what_to_do(dc, tmp_path):
    """Policy delete, max_entries 1 and 66 messages waiting: a run starts its most sessions (64, one
    message each), then says as a FAILED line that they ran out, how many messages are still on
    the server and to run the fetch again; exit 1. The next run fetches the rest, exit 0. Before:
    exit 1 after an info line like every session's, nothing saying the run failed or why."""
    from test_client_dovecot import run_cli

    from pocketpost import clientfail, fetch

    n = fetch._SESSIONS + 2
    msgs = [b"Subject: s%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(n)]
    dc.seed("alice", msgs)
    acct = account(dc, tmp_path, policy="delete", max_entries=1)
    rc, out = run_cli(tmp_path, acct, timeout=300)
    line = "fetch isp: FAILED: %d sessions in a row each filled the UIDL state (max_entries)" % fetch._SESSIONS
    assert rc == 1 and line in out and "2 messages are still on the server: run the fetch again" in out, out
    assert out.count("1 fetched") == fetch._SESSIONS and len(dc.messages("alice")) == 2, out
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "FAILED" not in out, out
    assert sorted(local_messages(tmp_path / "store")) == sorted(msgs) and dc.messages("alice") == [], out
    assert "sessions in a row" in clientfail.TEXTS[fetch._T_SESSIONS]  # (its number names its text)


# --- the SMTP receiver and the POP3 server's other logins, with real clients ---------------------

@pytest.fixture(scope="module")
def smtp_srv(tmp_path_factory):
    from smtpharness import SmtpPop3Server

    s = SmtpPop3Server(str(tmp_path_factory.mktemp("w17smtp")), messages={"alice": [], "carol": []},
                       apop={"alice": "apop secret"})
    s.start()
    try:
        yield s
    finally:
        s.stop()


MSG = b"From: carol@example.org\r\nTo: alice@example.org\r\nSubject: w17\r\n\r\nbody\r\n"


@pytest.mark.parametrize("typed", ["Carol@example.org", "CAROL"])
def test_smtp_auth_plain_and_login_take_the_name_as_pop3_does(smtp_srv, typed):
    """smtplib on the submission port, the user name as mail clients fill it in (the e-mail
    address, or capitalised): AUTH PLAIN and AUTH LOGIN log in as carol, as POP3 USER/PASS does
    (auth.user_of, one function for both). Before: 535 after the failure delay. A wrong password
    and a name that is no user's still fail."""
    for mech in ("PLAIN", "LOGIN"):
        with smtplib.SMTP("127.0.0.1", smtp_srv.submission_port, timeout=20) as s:
            s.ehlo("client.example")
            s.user, s.password = typed, "carolpw"
            code, _ = s.auth(mech, s.auth_plain if mech == "PLAIN" else s.auth_login)
            assert code == 235, (mech, code)
            assert s.sendmail("carol@example.org", ["alice@example.org"], MSG) == {}
    log = smtp_srv.log()
    assert "AUTH user=carol method=PLAIN" in log and "AUTH user=carol method=LOGIN" in log, log
    for name, pw in ((typed, "wrong"), ("nobody@example.org", "carolpw")):
        with smtplib.SMTP("127.0.0.1", smtp_srv.submission_port, timeout=20) as s:
            s.ehlo("client.example")
            with pytest.raises(smtplib.SMTPAuthenticationError):
                s.login(name, pw)


def test_pop3_apop_takes_the_name_as_user_pass_does(smtp_srv):
    """poplib's APOP with the e-mail address as the user name (any case): alice, as USER/PASS.
    Before: -ERR [AUTH] authentication failed."""
    p = poplib.POP3("127.0.0.1", smtp_srv.port, timeout=10)
    try:
        assert p.apop("Alice@Example.org", "apop secret").startswith(b"+OK")
    finally:
        p.quit()
    assert "login user=alice method=APOP" in smtp_srv.log()
    p = poplib.POP3("127.0.0.1", smtp_srv.port, timeout=10)
    with pytest.raises(poplib.error_proto):
        p.apop("Alice@Example.org", "wrong")
    p.quit()


def test_scram_takes_the_name_as_user_pass_does_on_pop3_and_smtp(smtp_srv, tmp_path):
    """SCRAM-SHA-256 with the e-mail address as the user name: mpop (POP3) and msmtp (SMTP
    submission, without TLS: SCRAM sends no password) log in as carol. Before: both refused."""
    md = tmp_path / "md"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    env = dict(os.environ, HOME=str(tmp_path))
    r = subprocess.run(["mpop", "--host=127.0.0.1", "--port=%d" % smtp_srv.port, "--auth=scram-sha-256",
                        "--user=Carol@example.org", "--passwordeval=echo carolpw", "--tls=off", "--timeout=20",
                        "--delivery=maildir,%s" % md, "--keep=on", "--uidls-file=%s" % (tmp_path / "uidls"), "-d"],
                       capture_output=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout.decode(errors="replace")[-2000:] + r.stderr.decode(errors="replace")
    rc = tmp_path / "msmtprc"
    rc.write_text("account plain\nhost 127.0.0.1\nport %d\ntls off\nauth scram-sha-256\nuser Carol@example.org\n"
                  "password carolpw\nfrom carol@example.org\n" % smtp_srv.submission_port)
    os.chmod(str(rc), 0o600)
    r = subprocess.run(["msmtp", "-d", "-C", str(rc), "-a", "plain", "alice@example.org"],
                       input=MSG.replace(b"\r\n", b"\n"), capture_output=True, timeout=60, env=env)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "<-- 235 2.7.0" in out, out[-3000:]
    log = smtp_srv.log()
    assert "login user=carol method=AUTH SCRAM-SHA-256" in log and "AUTH user=carol method=SCRAM-SHA-256" in log, log


def test_smtp_size_of_more_digits_than_any_limit_is_552(smtp_srv):
    """RFC 1870: MAIL FROM with a SIZE the server will not take is 552 5.3.4, also one of more
    digits than any limit (smtplib, as a sender declaring a huge message). Before: 501 (syntax),
    which tells the sender its software is wrong, not that the message is too big. A SIZE that is
    no number stays 501."""
    with smtplib.SMTP("127.0.0.1", smtp_srv.smtp_port, timeout=20) as s:
        s.ehlo("client.example")
        code, text = s.mail("a@example.net", ["SIZE=99999999999"])
        assert code == 552 and text.startswith(b"5.3.4 "), (code, text)
        assert s.mail("a@example.net", ["SIZE=1x"])[0] == 501
        assert s.mail("a@example.net", ["SIZE=100"])[0] == 250


def test_a_config_saved_readable_by_the_host_loads_on_the_board_and_back(tmp_path):
    """config.save's readable file (one key per line, written a piece at a time): written by the
    host tools (CPython), read and saved again by the board's admin (micropython: admin.passwd),
    read back by CPython: the same config, the board's new password record included, and still
    one key per line."""
    from helpers import run_micropython

    from pocketpost import config

    cfg = {"store": {"root": str(tmp_path / "mail"), "quota": 0, "reserve": 0},
           "server": {"trusted_networks": ["127.0.0.0/8"], "auth_delays": [2, 4, 8], "pbkdf2_iterations": 200},
           "smtp": {"domains": ["example.org"], "aliases": {"postmaster": "bob"}},
           "accounts": [{"name": "isp", "host": "pop.example.net", "user": "me", "tls": "none", "allow_plaintext": True,
                         "mailbox": "bob", "timeouts": {"read_timeout": 10}}],
           "log": {"level": "info"}, "wifi": {"ssid": "home", "hostname": "caf\u00e9"}}
    config.add_user(cfg, "bob", "old pw", 200)
    path = str(tmp_path / "config.json")
    config.save(path, cfg)
    r = run_micropython(["-c", "from pocketpost import admin\nadmin.passwd('bob', 'new pw', %r, )\nprint('done')" % path],
                        cwd=str(tmp_path))
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0 and "password replaced" in out and "done" in out, out
    got = config.load_raw(path)
    assert got["users"]["bob"]["password"] != cfg["users"]["bob"]["password"]
    got["users"]["bob"]["password"] = cfg["users"]["bob"]["password"]
    assert got == cfg
    with open(path) as f:
        assert f.read().count("\n") > 30


def test_an_admin_refusal_at_the_repl_is_its_sentence_alone(tmp_path):
    """admin at the board's prompt (micropython running the helpers as `mpremote exec` does): a bad
    user name, an empty password, a user that is not there print the sentence that says what to do,
    alone, and return False (a script's signal); before: a traceback above it (File ... line ...,
    ConfigError: ...). The config is left as it was."""
    from helpers import run_micropython

    from pocketpost import config

    cfg = {"store": {"root": str(tmp_path / "mail"), "quota": 0, "reserve": 0}, "server": {"pbkdf2_iterations": 200}}
    config.add_user(cfg, "alice", "pw", 200)
    path = str(tmp_path / "config.json")
    config.save(path, cfg)
    before = open(path).read()
    for call, said in (("add_user('Bad Name!', 'x', %r)", "bad user name 'Bad Name!' (a-z 0-9 . _ -"),
                       ("add_user('carol', '', %r)", "empty password for user 'carol': give one"),
                       ("passwd('alcie', 'x', %r)", "no user 'alcie' (users: alice): admin.add_user makes one"),
                       ("del_user('carol', %r)", "no user 'carol' (users: alice)"),
                       ("deliver('alcie', config_path=%r)", "no user 'alcie' (users: alice): admin.add_user first")):
        r = run_micropython(["-c", "from pocketpost import admin\nprint(admin.%s)" % (call % path)], cwd=str(tmp_path))
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        assert r.returncode == 0 and out.splitlines()[0].startswith(said) and out.splitlines()[1:] == ["False"], out
    assert open(path).read() == before


def test_a_refused_config_is_not_written_by_add_user_and_mailboxes_says_it_alone(tmp_path):
    """admin.add_user checked the config only after saving it: a config refused for another
    mistake (an unknown key) was written with the new user in it while the helper said False,
    "refused". admin.mailboxes, wrapped like the others, went on to loop over mailbox_list's False
    (TypeError and a traceback under the sentence)."""
    from helpers import run_micropython

    from pocketpost import config

    cfg = {"store": {"root": str(tmp_path / "mail"), "quota": 0, "reserve": 0},
           "server": {"pbkdf2_iterations": 200, "bogus": 1}}
    config.add_user(cfg, "alice", "pw", 200)
    path = str(tmp_path / "config.json")
    config.save(path, cfg)
    before = open(path).read()
    for call in ("add_user('bob', 'pw', %r)", "mailboxes(%r)"):
        r = run_micropython(["-c", "from pocketpost import admin\nprint(admin.%s)" % (call % path)], cwd=str(tmp_path))
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        assert r.returncode == 0 and "server.bogus" in out.splitlines()[0] and out.splitlines()[1:] == ["False"], out
    assert open(path).read() == before
