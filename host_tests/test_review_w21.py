"""Review w21: loose ends users hit, each reproduced first and failing without its fix.

- Relative paths in a config (the board templates' store root "mail", cert "cert.der", a fetch
  account's state_dir, ca) are config.json's folder's, as on a board, which runs in its flash
  root: the fetch CLI on a host took them from the current directory (cron, whose directory is
  $HOME, made a second store and UIDL state there and fetched every kept message again), and the
  image tools (ppadmin deliver/ls/check, export/backup/restore, `make run`'s server) took them
  from the host's current directory instead of the image's /flash.
- admin.add_user replaced an existing user's password (ppadmin adduser refuses it).
- a backup killed by SIGKILL leaves FILE.part: the next one replaces it and says so; one another
  run is writing is refused, not truncated under it.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

from helpers import FIRMWARE, MICROPYTHON, ROOT, demo_stat, free_port, run_micropython
from mailimage import contents, make_image, run_ppadmin
from serverharness import Pop3Server

PPADMIN = os.path.join(ROOT, "tools", "ppadmin.py")
MSG = b"Subject: one\r\n\r\nbody\r\n"


def run_fetch(cwd, config_path):
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen")
    env.pop("POCKETPOST_LOG", None)
    r = subprocess.run([MICROPYTHON, "-m", "pocketpost.fetch", str(config_path)], capture_output=True, timeout=60,
                       cwd=str(cwd), env=env)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def folder_config(folder, port):
    """config.json in folder with relative paths (store root "mail", the default state_dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "store": {"root": "mail", "quota": 0, "reserve": 0},
        "accounts": [{"name": "isp", "host": "127.0.0.1", "port": port, "tls": "none", "allow_plaintext": True,
                      "user": "m", "auth": "user", "mailbox": "alice", "policy": "keep",
                      "timeouts": {"connect_timeout": 5, "read_timeout": 10}}]}))
    (folder / "secrets.json").write_text(json.dumps({"accounts": {"isp": {"password": "pw"}}}))
    return folder / "config.json"


def test_the_fetch_cli_takes_relative_paths_from_the_configs_folder(tmp_path):
    """Run as cron runs it (from another directory, config.json named with its folder): the store
    and the UIDL state are config.json's folder's, so a run from anywhere finds what an earlier
    run stored and fetches nothing again. Before: each directory got its own store and state."""
    up_dir = tmp_path / "up"
    up_dir.mkdir()
    up = Pop3Server(str(up_dir), {"m": [MSG]}, users={"m": "pw"}, server={"pop3s_port": 0})
    up.start()
    try:
        cfg = folder_config(tmp_path / "pp", up.port)
        (tmp_path / "cron").mkdir()
        (tmp_path / "other").mkdir()
        rc, out = run_fetch(tmp_path, "pp/config.json")  # a relative config path
        assert rc == 0 and "1 fetched" in out, out
        rc, out = run_fetch(tmp_path / "cron", cfg)  # an absolute one, from elsewhere
        assert rc == 0 and "0 fetched" in out, out
        rc, out = run_fetch(tmp_path / "other", "../pp/config.json")
        assert rc == 0 and "0 fetched" in out, out
    finally:
        up.stop()
    assert sorted(os.listdir(tmp_path / "pp")) == ["config.json", "mail", "secrets.json", "state"]
    assert len(os.listdir(tmp_path / "pp" / "mail" / "alice" / "b0")) == 1
    for d in (tmp_path, tmp_path / "cron", tmp_path / "other"):
        assert not (d / "mail").exists() and not (d / "state").exists(), d


def test_a_store_an_older_fetch_made_in_the_current_directory_is_said_not_fetched_again(tmp_path):
    """Where an older version put the store and UIDL state (the current directory) and the
    config's folder has none: what to move, exit 2, and nothing fetched or made (a new UIDL state
    would fetch every message kept on the server a second time). Moved as said, nothing is
    fetched again."""
    up_dir = tmp_path / "up"
    up_dir.mkdir()
    up = Pop3Server(str(up_dir), {"m": [MSG]}, users={"m": "pw"}, server={"pop3s_port": 0})
    up.start()
    try:
        home = tmp_path / "home"
        folder_config(home, up.port)
        rc, out = run_fetch(home, home / "config.json")  # the layout an older version made from $HOME
        assert rc == 0 and "1 fetched" in out, out
        os.makedirs(home / "pp")
        for n in ("config.json", "secrets.json"):
            os.rename(home / n, home / "pp" / n)
        rc, out = run_fetch(home, "pp/config.json")
        assert rc == 2 and "an older version made mail/alice/index here: move store root \"mail\" and state_dir " \
            "\"state\" into pp/, or give absolute paths; nothing fetched" in out, out
        assert sorted(os.listdir(home / "pp")) == ["config.json", "secrets.json"]
        for n in ("mail", "state"):
            os.rename(home / n, home / "pp" / n)
        rc, out = run_fetch(home, "pp/config.json")
        assert rc == 0 and "0 fetched" in out, out
    finally:
        up.stop()


BOARD_CONFIG = {"store": {"root": "mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": []}


def test_image_tools_keep_a_relative_store_root_inside_the_image(tmp_path):
    """An image whose config has the board templates' relative root ("mail"): ppadmin deliver
    and ls ran with the host's current directory and wrote the mail there, outside the image."""
    img = str(tmp_path / "b.img")
    make_image(img, {}, cfg=BOARD_CONFIG, tmpdir=str(tmp_path / "src"))
    (tmp_path / "m.eml").write_bytes(MSG)
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([sys.executable, PPADMIN, "deliver", img, "alice", str(tmp_path / "m.eml"), "--create-mailbox"],
                       capture_output=True, text=True, cwd=str(work), timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, PPADMIN, "ls", img], capture_output=True, text=True, cwd=str(work), timeout=120)
    assert "mailbox alice: 1 messages" in r.stdout, r.stdout + r.stderr
    assert os.listdir(work) == []
    # the export reads it from the image too, and a backup of it restores onto a new image
    assert [m for _u, _a, m in contents(img)["alice"]] == [MSG]
    assert run_ppadmin("backup", img, tmp_path / "b.pp").returncode == 0
    r = run_ppadmin("restore", tmp_path / "b.pp", tmp_path / "new.img")  # was refused: "outside the image's /flash"
    assert r.returncode == 0, r.stdout + r.stderr
    assert [m for _u, _a, m in contents(str(tmp_path / "new.img"))["alice"]] == [MSG]


def test_make_run_serves_an_image_whose_config_has_relative_paths(tmp_path):
    """`make run` (tools/run_host.py, tools/hostserve.py) on an image with a board's relative
    paths (store root "mail", cert "tls/cert.der"): served from the image's /flash; before, the
    server looked for them in the host's current directory (no certificate: it did not start)."""
    d = str(tmp_path / "run")
    ports = [free_port() for _ in range(4)]
    args = [sys.executable, os.path.join(ROOT, "tools", "run_host.py"), "--dir", "run", "--port", str(ports[0]),
            "--pop3s-port", str(ports[1]), "--smtp-port", str(ports[2]), "--smtps-port", str(ports[3])]
    # (a relative --dir: its files reach micropython, which now runs in /flash)
    r = subprocess.run(args + ["--no-serve"], capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    edit = ("from pocketpost import config\nc = config.load_raw('/flash/config.json')\n"
            "c['store']['root'] = 'mail'\nc['server']['cert'] = 'tls/cert.der'\nc['server']['key'] = 'tls/key.der'\n"
            "config.save('/flash/config.json', c)\n")
    (tmp_path / "edit.py").write_text(edit)
    r = subprocess.run([sys.executable, PPADMIN, "run", os.path.join(d, "flash.img"), str(tmp_path / "edit.py")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert demo_stat(args[2:], cwd=str(tmp_path), pop3s_port=ports[1]) == 3
    assert not (tmp_path / "mail").exists()


def test_admin_add_user_refuses_an_existing_user_as_ppadmin_adduser_does(tmp_path):
    """admin.add_user('alice', ...) for an existing alice replaced her password ("password
    replaced"), where ppadmin adduser refuses: now refused in one sentence naming admin.passwd,
    the config unchanged; replace=True (and admin.passwd) still change it."""
    from pocketpost import auth, config

    cfg = {"store": {"root": str(tmp_path / "mail"), "quota": 0, "reserve": 0}, "server": {"pbkdf2_iterations": 200}}
    config.add_user(cfg, "alice", "pw", 200)
    path = str(tmp_path / "config.json")
    config.save(path, cfg)
    before = open(path).read()

    def admin(call):
        r = run_micropython(["-c", "from pocketpost import admin\nprint(admin.%s)" % call], cwd=str(tmp_path))
        return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")

    out = admin("add_user('alice', 'typed again', %r)" % path)
    assert out.splitlines() == ["user 'alice' already exists: admin.passwd('alice', ...) gives it a new password "
                                "(or add_user(..., replace=True))", "False"], out
    assert open(path).read() == before
    out = admin("add_user('alice', 'new pw', %r, replace=True)" % path)
    assert out.splitlines()[-1] == "None" and "password replaced" in out, out
    assert auth.verify_password("new pw", config.load_raw(path)["users"]["alice"]["password"])
    # ppadmin says what to use too
    r = run_ppadmin("adduser", path, "alice", "--password", "x")
    assert r.returncode != 0 and "ppadmin passwd gives it a new password (or adduser --force)" in r.stderr, r.stderr


def _big_image(tmp_path):
    img = str(tmp_path / "b.img")
    msgs = [b"Subject: big %d\r\n\r\n" % i + (b"x" * 76 + b"\r\n") * 12000 for i in range(6)]
    make_image(img, {"alice": msgs}, size=8 * 1024 * 1024, tmpdir=str(tmp_path / "src"))
    return img, msgs


def test_a_backup_killed_midway_leaves_a_part_that_the_next_backup_replaces_and_says(tmp_path):
    img, msgs = _big_image(tmp_path)
    out = tmp_path / "b.pp"
    part = tmp_path / "b.pp.part"
    p = subprocess.Popen([sys.executable, PPADMIN, "backup", img, str(out)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 100000):
        assert p.poll() is None and time.monotonic() < deadline, "the backup ended before it could be killed"
        time.sleep(0.002)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert part.exists() and not out.exists()  # what a SIGKILL leaves (README: FILE.part)
    r = run_ppadmin("backup", img, out)
    assert r.returncode == 0 and "b.pp.part: left by a run that was stopped before it finished" in r.stderr, \
        r.stdout + r.stderr
    assert not part.exists()
    r = run_ppadmin("restore", out, tmp_path / "r.img")
    assert r.returncode == 0, r.stdout + r.stderr
    assert [m for _u, _a, m in contents(str(tmp_path / "r.img"))["alice"]] == msgs


def test_a_part_another_run_is_writing_is_refused_not_truncated(tmp_path):
    img, _ = _big_image(tmp_path)
    part = tmp_path / "b.pp.part"
    with open(part, "wb") as f:  # another backup to the same file, still writing (it holds the lock)
        f.write(b"another run's archive so far")
        f.flush()
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        for args in (("backup", img, tmp_path / "b.pp"), ("export", img, "alice", "--mbox", tmp_path / "b.pp")):
            r = run_ppadmin(*args)
            assert r.returncode != 0 and "b.pp.part is being written by another run" in r.stderr, r.stdout + r.stderr
            assert part.read_bytes() == b"another run's archive so far"
    assert not (tmp_path / "b.pp").exists()


PROBE = ("import os, sys\nos.chdir('/flash')\nfrom pocketpost import mailport\nmailport.main(%r, '/flash/config.json')\n"
         "sys.stderr.write('serverconf loaded: %%s\\n' %% ('pocketpost.serverconf' in sys.modules))\n")


def test_export_and_import_do_not_load_the_server_config_checks(tmp_path):
    """The board side of export/import/backup/restore loaded the whole config, the server's
    checks too (serverconf.py and what it imports): export of one message needed -X heapsize
    109k (5/5, .mpy), import 107k; without them 96-98k and 100-101k (docs/MIGRATE.md). It needs
    the store's sections only."""
    img = str(tmp_path / "a.img")
    cfg = dict(BOARD_CONFIG, server={"pbkdf2_iterations": 200})
    make_image(img, {"alice": [MSG]}, cfg=cfg, tmpdir=str(tmp_path / "src"))
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":" + os.path.join(ROOT, "tools") + ":.frozen")
    for cmd, stdin, said in (("export", b"", b"B alice 1"), ("serve", b"U alice\nQ\n", b"bye")):
        r = subprocess.run([MICROPYTHON, os.path.join(ROOT, "tools", "hostflash.py"), img, "-c", PROBE % cmd],
                           input=stdin, capture_output=True, timeout=60, env=env)
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 0 and said in r.stdout, err
        assert "serverconf loaded: False" in err, (cmd, err)


def test_a_backup_to_a_folder_or_into_no_folder_is_said_before_the_transfer(tmp_path):
    """`ppadmin backup IMG DIR/` ran the whole transfer, then failed at the end with
    "[Errno 20] Not a directory: 'DIR/.part' -> 'DIR/'"; into a folder that is not there it
    started the board side first. Now one line each, before anything runs."""
    img = str(tmp_path / "a.img")
    make_image(img, {"alice": [MSG]}, tmpdir=str(tmp_path / "src"))
    out = tmp_path / "out"
    out.mkdir()
    r = run_ppadmin("backup", img, str(out) + "/")
    assert r.returncode == 3 and r.stderr == "ppadmin backup: %s/ is a folder: give the archive's file name, e.g. %s/board.pp\n" \
        % (out, out), r.stderr
    r = run_ppadmin("backup", img, tmp_path / "none" / "b.pp")
    assert r.returncode == 3 and r.stderr == "ppadmin backup: %s: there is no folder %s to write it in\n" % (
        tmp_path / "none" / "b.pp", tmp_path / "none"), r.stderr
    assert os.listdir(out) == [] and not (tmp_path / "none").exists()


def test_ls_of_a_new_image_says_none_rather_than_nothing(tmp_path):
    """`ppadmin ls` of a new image printed "users: " and nothing more."""
    img = str(tmp_path / "c.img")
    assert run_ppadmin("create", img, "--size", "1M").returncode == 0
    r = run_ppadmin("ls", img)
    assert r.stdout.splitlines() == ["users: none (tools/ppadmin.py adduser IMAGE NAME adds one)", "no mailboxes"], \
        r.stdout + r.stderr


def test_an_export_naming_many_mailboxes_of_an_image_with_a_relative_root(tmp_path):
    """The board side runs in /flash through `hostflash.py -m` (a `-c` program that did the same
    crashed micropython, "FATAL: uncaught NLR", once the mailbox names made it ~380 characters)."""
    img = str(tmp_path / "a.img")
    boxes = ["box-%026d" % i for i in range(12)]
    make_image(img, {b: [MSG] for b in boxes}, cfg=BOARD_CONFIG, tmpdir=str(tmp_path / "src"))
    r = run_ppadmin("export", img, *boxes, "--maildir", tmp_path / "md")
    assert r.returncode == 0 and r.stdout.count(": 1 messages") == 12, r.stdout + r.stderr
    assert sorted(os.listdir(tmp_path / "md")) == boxes
