"""Review w22: loose ends users hit, each reproduced first and failing without its fix.

- ppadmin options anywhere: `export IMG --mbox F alice` (the mailbox after the option) and
  `deliver IMG box a.eml --create-mailbox b.eml` were refused by argparse.
- one exit status scheme for every ppadmin command (ppadmin.EXIT_STATUS, in --help and the
  README): an image in use by a running server made `ls` exit 1 and `export` exit 3.
- a killed `export --dovecot` left dovecot-uidlist.lock: the next export waited, then refused;
  now a stale lock is taken over as Dovecot's file-dotlock.c does, a live one still refused.
- run_host.py on SIGTERM said "server stopped (Ctrl-C)".
- deploy.py --config DIR/config.json took the CA, cert, key and secrets from boards/B/ or build/B/.
- hostflash.py -c with a long program: MicroPython's own argv limit; -f - reads one from stdin.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers import FIRMWARE, MICROPYTHON, ROOT, free_port
from mailimage import run_ppadmin, serve_locked

sys.path.insert(0, os.path.join(ROOT, "tools"))
import deploy  # noqa: E402,F401
import ppadmin  # noqa: E402

TOOLS = os.path.join(ROOT, "tools")
MSG = b"Subject: one\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An image with user alice (mailbox alice, one message) and a config with a free POP3 port."""
    d = tmp_path_factory.mktemp("loose")
    with open(os.path.join(ROOT, "boards", "host", "config.json")) as f:
        cfg = json.load(f)
    port = free_port()
    cfg["server"].update({"port": port, "pop3s_port": 0, "cert": "", "key": "", "pbkdf2_iterations": 100,
                          "auth_delays": [0.2]})
    cfg.pop("smtp", None)
    (d / "cfg.json").write_text(json.dumps(cfg))
    img = str(d / "base.img")
    for args in (("create", img, "--size", "256K", "--config", d / "cfg.json"),
                 ("adduser", img, "alice", "--password", "pw", "--iterations", "10")):
        r = run_ppadmin(*args)
        assert r.returncode == 0, r.stderr
    (d / "m.eml").write_bytes(MSG)
    r = run_ppadmin("deliver", img, "alice", d / "m.eml")
    assert r.returncode == 0, r.stderr
    return {"image": img, "port": port, "msg": str(d / "m.eml")}


@pytest.fixture
def img(base, tmp_path):
    p = str(tmp_path / "flash.img")
    with open(base["image"], "rb") as src, open(p, "wb") as dst:
        dst.write(src.read())
    return p


def test_options_may_come_before_the_positional_arguments(img, base, tmp_path):
    mbox = tmp_path / "alice.mbox"
    r = run_ppadmin("export", img, "--mbox", mbox, "alice")  # was: unrecognized arguments: alice
    assert r.returncode == 0 and "exported alice: 1 messages" in r.stdout, r.stderr
    assert b"Subject: one" in mbox.read_bytes()
    r = run_ppadmin("export", "--maildir", tmp_path / "md", img, "alice")
    assert r.returncode == 0 and os.listdir(tmp_path / "md" / "alice" / "cur"), r.stderr
    r = run_ppadmin("deliver", img, "bob", base["msg"], "--create-mailbox", base["msg"])  # was: unrecognized b.eml
    assert r.returncode == 0 and r.stdout.count("bob ") == 2, r.stderr
    r = run_ppadmin("import", img, "--create-mailbox", "carol", tmp_path / "md" / "alice")
    assert r.returncode == 0 and "import carol: 1 added" in r.stdout, r.stderr
    r = run_ppadmin("adduser", "--password", "pw2", img, "dave", "--iterations", "10")
    assert r.returncode == 0, r.stderr
    r = run_ppadmin("check", "--repair", img)
    assert r.returncode == 0 and "problems: 0" in r.stdout, r.stdout + r.stderr
    r = run_ppadmin("backup", "--progress", img, tmp_path / "b.pp")
    assert r.returncode == 0, r.stderr
    r = run_ppadmin("restore", "--size", "512K", tmp_path / "b.pp", tmp_path / "r.img")
    assert r.returncode == 0, r.stderr
    r = run_ppadmin("ls", tmp_path / "r.img")
    assert "mailbox bob: 2 messages" in r.stdout and "mailbox carol: 1 messages" in r.stdout, r.stdout + r.stderr



def test_an_image_in_use_is_the_same_exit_status_for_every_command(img, base, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.eml").write_bytes(MSG)
    proc = serve_locked(img, base["port"])
    try:
        for args in (["ls", img], ["export", img, "--mbox", tmp_path / "x.mbox"], ["deliver", img, "alice", base["msg"]],
                     ["backup", img, tmp_path / "b.pp"], ["import", img, "alice", tmp_path / "src"],
                     ["check", img], ["run", img, script], ["adduser", img, "bob", "--password", "pw"],
                     ["passwd", img, "alice", "--password", "pw"], ["deluser", img, "alice"]):
            r = run_ppadmin(*args)
            assert r.returncode == ppadmin.EXIT_REFUSED == 3, (args, r.returncode, r.stderr)
            assert "in use by pid %d" % proc.pid in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert not os.path.exists(tmp_path / "b.pp") and not os.path.exists(tmp_path / "x.mbox")


def test_exit_status_scheme_is_in_help_and_readme(img, base, tmp_path):
    r = run_ppadmin("--help")
    assert ppadmin.EXIT_STATUS in r.stdout, r.stdout
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert ppadmin.EXIT_STATUS in readme
    # a name refused is 2 for every command, as the scheme says (deliver and adduser said 1)
    for args in (["deliver", img, "Bad/Name", base["msg"]], ["adduser", img, "Bad/Name", "--password", "pw"],
                 ["export", img, "Bad/Name", "--maildir", tmp_path / "md"]):
        r = run_ppadmin(*args)
        assert r.returncode == ppadmin.EXIT_USAGE == 2, (args, r.returncode, r.stderr)
    # no room is "stopped", 2, for deliver as for import and restore (deliver said 1)
    big = tmp_path / "big.eml"
    big.write_bytes(b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 5000)
    r = run_ppadmin("deliver", img, "alice", big)
    assert r.returncode == 2 and "message too large for the space left" in r.stderr, (r.returncode, r.stderr)


# Holds dovecot-uidlist.lock until killed: the real export, paused where it has the lock.
HOLD_LOCK = r"""
import sys, time
sys.path.insert(0, %r)
import mailport, ppadmin
real = mailport.DovecotWriter._uidlist
def held(self, path):
    print("HOLDING", flush=True)
    time.sleep(60)
    return real(self, path)
mailport.DovecotWriter._uidlist = held
sys.exit(ppadmin.main(sys.argv[1:]))
""" % TOOLS


def _uidlist(out):
    with open(os.path.join(out, "alice", "dovecot-uidlist")) as f:
        return f.read().splitlines()


def test_a_killed_dovecot_export_leaves_a_lock_the_next_export_takes_over(img, tmp_path):
    out = str(tmp_path / "dovecot")
    p = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, "export", img, "--dovecot", out], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert p.stdout.readline() == "HOLDING\n", p.stderr.read()
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # as `kill -9` of the job: the tool and its micropython
        p.wait(10)
    lock = os.path.join(out, "alice", "dovecot-uidlist.lock")
    assert os.path.exists(lock)
    t = time.monotonic()
    r = run_ppadmin("export", img, "--dovecot", out)  # was: waited 10 s, then refused (exit 3)
    assert r.returncode == 0 and "exported alice: 1 messages" in r.stdout, r.stdout + r.stderr
    assert time.monotonic() - t < 8, "waited for a lock whose holder is gone"
    assert "%s: a stale lock (its holder, pid %d, is gone): taken over" % (lock, p.pid) in r.stderr, r.stderr
    assert not os.path.exists(lock)
    lines = _uidlist(out)
    assert lines[0].startswith("3 V") and len(lines) == 2 and " P" in lines[1], lines


def test_a_live_uidlist_lock_is_refused_and_an_old_one_taken_over(img, tmp_path, monkeypatch, capsys):
    import mailport

    out = str(tmp_path / "dovecot")
    assert ppadmin.main(["export", img, "--dovecot", out]) == 0
    box = os.path.join(out, "alice")
    lock = os.path.join(box, "dovecot-uidlist.lock")
    before = _uidlist(out)
    monkeypatch.setattr(mailport.DovecotWriter, "LOCK_WAIT_S", 1)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        import socket

        for text in ("%d:%s" % (holder.pid, socket.gethostname()), "3 V1 N2 G0\n1 P"):  # a live export, a Dovecot
            with open(lock, "w") as f:
                f.write(text)
            capsys.readouterr()
            assert ppadmin.main(["export", img, "--dovecot", out]) == ppadmin.EXIT_REFUSED
            err = capsys.readouterr().err
            assert "dovecot-uidlist.lock is held" in err and "taken over" not in err.split("(")[0], err
            assert open(lock).read() == text and _uidlist(out) == before
    finally:
        holder.kill()
        holder.wait()
    old = time.time() - mailport.DovecotWriter.STALE_S - 5  # neither the lock nor the list changed since
    os.utime(lock, (old, old))
    os.utime(os.path.join(box, "dovecot-uidlist"), (old, old))
    assert ppadmin.main(["export", img, "--dovecot", out]) == 0
    err = capsys.readouterr().err
    assert re.search(r"a stale lock \(unchanged for 12[5-9] s\): taken over", err), err
    assert not os.path.exists(lock) and _uidlist(out) == before


def test_make_run_stopped_by_sigterm_says_so_and_exits_0(tmp_path):
    # run_host.py on SIGTERM said "server stopped (Ctrl-C)": a service manager's stop is named as such.
    from helpers import start_run_host

    ports = ["--port", str(free_port()), "--pop3s-port", str(free_port()), "--smtp-port", str(free_port()),
             "--smtps-port", str(free_port())]
    p, out = start_run_host(["--dir", str(tmp_path / "run")] + ports, "pop3 listening")
    try:
        p.send_signal(signal.SIGTERM)  # to run_host.py alone, as systemd's stop (KillMode=mixed) or kill PID
        rest, _ = p.communicate(timeout=30)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()
    assert p.returncode == 0, out + rest
    assert rest.rstrip().splitlines()[-1] == "pocketpost: server stopped (SIGTERM). Bye.", rest
    assert "Traceback" not in rest, rest


def test_deploy_takes_ca_cert_key_and_secrets_from_beside_the_given_config(tmp_path, capsys):
    # `deploy.py --config ~/x/config.json` looked for them only in boards/B/ and build/B/.
    import argparse

    import deploy

    mine = tmp_path / "x"
    mine.mkdir()
    for name, data in (("cert.der", b"\x30\x82c"), ("key.der", b"\x30\x82k"), ("isp-root.der", b"\x30\x82ca"),
                       ("secrets.json", b'{"ssid": "home"}')):
        (mine / name).write_bytes(data)
    (mine / "config.json").write_text(json.dumps({"server": {"cert": "tls/cert.der", "key": "tls/key.der"},
                                                  "accounts": [{"name": "isp", "ca": "isp-root.der"}]}))
    build = tmp_path / "build"
    build.mkdir()
    (build / "cert.der").write_bytes(b"\x30\x82old")  # an older pair in build/: beside the config comes first
    args = argparse.Namespace(board="esp32", port="x", build=str(build), timeout=60, config=str(mine / "config.json"),
                              cert=None, key=None, make_cert=False, force_config=True, update_config=False,
                              secrets=None)
    d = deploy.Deploy(args)
    d.board_dir = str(tmp_path / "boards-esp32")  # boards/esp32/ as a fresh checkout has it: no cert, no secrets
    d.board_has = lambda path: False
    got = dict((remote, local) for local, remote in d.extras({"has_config": False, "platform": "esp32"}))
    assert got == {"config.json": str(mine / "config.json"), "tls/cert.der": str(mine / "cert.der"),
                   "tls/key.der": str(mine / "key.der"), "isp-root.der": str(mine / "isp-root.der"),
                   "secrets.json": str(mine / "secrets.json")}, got
    out = capsys.readouterr().out
    for line in ("cert: %s" % (mine / "cert.der"), "key: %s" % (mine / "key.der"),
                 "account isp: ca %s" % (mine / "isp-root.der"), "secrets: %s" % (mine / "secrets.json")):
        assert line in out.splitlines(), out
    (mine / "cert.der").unlink()  # then the old places, as before
    got = dict((remote, local) for local, remote in d.extras({"has_config": False, "platform": "esp32"}))
    assert got["tls/cert.der"] == str(build / "cert.der") and "cert: %s" % (build / "cert.der") in capsys.readouterr().out


def test_hostflash_takes_a_long_program_from_stdin_and_the_argv_limit_is_micropythons(img):
    """`hostflash.py IMG -c PROGRAM` with a long program died with "FATAL: uncaught NLR": the unix
    port interns each sys.argv string as a qstr (length byte: < 256) before any Python runs, so
    hostflash cannot refuse it. A long program goes in through `-f -` (stdin) or `-f FILE`."""
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":" + TOOLS + ":.frozen")
    hostflash = [MICROPYTHON, os.path.join(TOOLS, "hostflash.py"), img]

    def program(n):  # exactly n bytes, printing what /flash holds
        head, tail = "import os\n", "\nprint(sorted(os.listdir('/flash')))"
        return head + "#" * (n - len(head) - len(tail)) + tail

    r = subprocess.run(hostflash + ["-f", "-"], input=program(4000), capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout == "['config.json', 'mail']\n", r.stdout + r.stderr
    r = subprocess.run(hostflash + ["-c", program(255)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout == "['config.json', 'mail']\n", r.stdout + r.stderr
    # the interpreter's own limit, as hostflash's docstring says it (this fails if a port lifts it)
    r = subprocess.run(hostflash + ["-c", program(256)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and r.stdout == "" and r.stderr.startswith("FATAL: uncaught NLR"), r.stdout + r.stderr
    r = subprocess.run([MICROPYTHON, "-c", "import sys; print(len(sys.argv[1]))", "x" * 300], capture_output=True,
                       text=True, timeout=60)  # not hostflash's: any script's argument does it (-c's own CODE does not)
    assert r.returncode == 1 and r.stderr.startswith("FATAL: uncaught NLR"), r.stdout + r.stderr
