"""Defects found by using pocketpost as its users do (review w14): each test fails without its fix.

ppadmin restore --salvage (damage that loses unknown records, no config to open a store with), a
non-archive, ppadmin export (a mailbox that does not exist, a bad mailbox name) and adduser --force,
make run (the banner's certificate after a restore, SIGTERM), the pseudo-board as deployed
(--live), a redeploy after make clean. admin.add_user's is in host_tests/dual/test_board.py.
"""

import os

from mailimage import contents, make_image, run_ppadmin

MSGS = [b"Subject: one\r\n\r\nhello\r\n", b"Subject: two\r\n\r\nworld\r\n", b"Subject: three\r\n\r\n.dot\r\n"]


def _backup(tmp_path):
    img = str(tmp_path / "a.img")
    make_image(img, {"alice": MSGS}, tmpdir=str(tmp_path / "src"))
    arc = tmp_path / "b.pp"
    r = run_ppadmin("backup", img, arc)
    assert r.returncode == 0, r.stdout + r.stderr
    return img, arc


def test_restore_of_an_archive_cut_short_fails(tmp_path):
    img, arc = _backup(tmp_path)
    data = arc.read_bytes()
    cut = tmp_path / "cut.pp"
    k = data.rindex(b"@pp ", 0, data.index(b"Subject: two"))  # cut at a record boundary:
    cut.write_bytes(data[:k])  # alice's 2nd and 3rd messages and the end record are gone
    r = run_ppadmin("restore", cut, tmp_path / "c.img", "--salvage")
    assert "end record is missing" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 1, r.stdout + r.stderr
    assert "0 damaged" not in r.stdout, r.stdout
    assert [m for _u, _a, m in contents(str(tmp_path / "c.img"))["alice"]] == [MSGS[0]]


def _garbled_config_record(tmp_path, arc):
    data = bytearray(arc.read_bytes())
    k = data.rindex(b"@pp ", 0, data.index(b'"path": "config.json"'))
    data[k + 1] = ord("q")
    bad = tmp_path / "bad.pp"
    bad.write_bytes(bytes(data))
    return bad


def test_restore_with_a_damaged_file_record_header_fails(tmp_path):
    # the header of config.json's record garbled: the config (users, password hashes) is not
    # restored; the end record lists messages only, so only the header damage can tell
    img, arc = _backup(tmp_path)
    bad = _garbled_config_record(tmp_path, arc)
    target = str(tmp_path / "r.img")
    make_image(target, {"bob": MSGS[:1]}, tmpdir=str(tmp_path / "src2"))  # a target with a config
    r = run_ppadmin("restore", bad, target, "--salvage")
    assert "damaged: at offset" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 1, r.stdout + r.stderr
    assert "0 damaged" not in r.stdout, r.stdout
    assert len(contents(target)["alice"]) == 3


def test_restore_without_any_config_says_so_in_one_line(tmp_path):
    # the same archive onto a new image: no config.json to open a store with. The board side
    # died with a traceback ("unexpected reply 'Traceback (most recent call last):'"); now one line
    img, arc = _backup(tmp_path)
    bad = _garbled_config_record(tmp_path, arc)
    r = run_ppadmin("restore", bad, tmp_path / "new.img", "--salvage")
    assert r.returncode != 0, r.stdout + r.stderr
    assert "damaged: at offset" in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr and "cannot read the config" in r.stderr, r.stdout + r.stderr


def test_restore_of_a_non_archive_makes_no_image(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(5000))
    target = tmp_path / "new.img"
    r = run_ppadmin("restore", junk, target)
    assert r.returncode != 0 and "not a pocketpost backup archive" in r.stderr, r.stdout + r.stderr
    assert not target.exists() and not (tmp_path / "new.img.part").exists()


def test_live_export_works_on_the_pseudo_board_as_deployed(tmp_path):
    # docs/MIGRATE.md: "the pseudo-board's config turns it on" (the usb_link service that
    # `ppadmin ... --live` talks to). The config `make deploy BOARD=host` copies is
    # boards/host/config.json; it had no "services", the unix port's default is off, so
    # `ppadmin export run/pb/tty --live ...` after BOARD.md's pseudo-board steps said "no answer
    # from the board's live link in 5 s".
    import json
    import sys

    from helpers import FIRMWARE, ROOT, free_port

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import ppadmin
    import pseudoboard
    from helpers import build_mpy
    from test_mailport_live import BOOT_FILES, HEAP, wait_port
    from test_mailport_usb import COPY

    sys.path.insert(0, FIRMWARE)
    from pocketpost import config as ppconfig

    with open(os.path.join(ROOT, "boards", "host", "config.json")) as f:
        cfg = json.load(f)
    pop_port = free_port()
    cfg["server"].update({"port": pop_port, "pop3s_port": 0, "cert": "", "key": ""})  # deploy copies a cert: none here
    ppconfig.add_user(cfg, "alice", "secret", 200)
    img = str(tmp_path / "flash.img")
    make_image(img, {"alice": MSGS}, cfg=cfg, tmpdir=str(tmp_path / "s"))
    build_mpy(str(tmp_path / "mpy"))
    ppadmin.on_image(img, COPY, {"PP_MPY": str(tmp_path / "mpy" / "pocketpost")})
    ppadmin.on_image(img, BOOT_FILES, {"PP_FW": FIRMWARE})
    with pseudoboard.PseudoBoard(str(tmp_path / "pb"), image=img, boot=True, heapsize=HEAP) as pb:
        wait_port(pop_port, pb.alive)
        r = run_ppadmin("export", pb.tty, "--live", "--maildir", tmp_path / "md", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "exported alice: 3 messages" in r.stdout, r.stdout + r.stderr
        assert pb.alive()
        # and with the service on, the REPL path (mpremote's Ctrl-C, then main.py again) still works
        r = run_ppadmin("export", pb.tty, "--maildir", tmp_path / "md2", timeout=60)
        assert r.returncode == 0 and "exported alice: 3 messages" in r.stdout, r.stdout + r.stderr
        assert "services restarted" in r.stderr, r.stderr
        wait_port(pop_port, pb.alive)


def test_make_run_banner_cert_verifies_the_image_after_a_restore(tmp_path):
    # `make run`'s banner gives `curl --cacert run/tls/cert.pem ... pop3s://localhost:...`. After
    # `ppadmin restore BACKUP run/flash.img` the image holds the archive's TLS key and
    # certificate; run/tls/cert.pem stayed the one made with the first image, so every TLS
    # command of the banner failed ("SSL certificate problem: self-signed certificate").
    import subprocess
    import sys

    from helpers import ROOT, demo_stat, free_port

    run_host = os.path.join(ROOT, "tools", "run_host.py")
    ports = lambda: ["--port", str(free_port()), "--pop3s-port", str(free_port()), "--smtp-port", str(free_port()),
                     "--smtps-port", str(free_port())]
    dirs = [str(tmp_path / "run"), str(tmp_path / "other")]
    for d in dirs:
        r = subprocess.run([sys.executable, run_host, "--dir", d, "--no-serve"] + ports(), capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    r = run_ppadmin("backup", os.path.join(dirs[1], "flash.img"), tmp_path / "other.pp")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_ppadmin("restore", tmp_path / "other.pp", os.path.join(dirs[0], "flash.img"))
    assert "3 files" in r.stdout, r.stdout + r.stderr  # config, cert, key (its 3 demo messages: the same bytes there)
    args = ports()
    assert demo_stat(["--dir", dirs[0]] + args, pop3s_port=int(args[3])) == 3


def test_export_of_a_mailbox_that_does_not_exist_says_so_and_makes_none(tmp_path):
    # `ppadmin export IMAGE alcie --mbox alice.mbox` (a typo) said "exported alcie: 0 messages",
    # exit 0, wrote an empty alice.mbox, and made an empty mailbox "alcie" on the image (the
    # board side's store.lock creates a mailbox): an export wrote to the image it read.
    img = str(tmp_path / "a.img")
    make_image(img, {"alice": MSGS}, tmpdir=str(tmp_path / "src"))
    before = contents(img)
    r = run_ppadmin("export", img, "alcie", "--mbox", tmp_path / "alice.mbox")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no mailbox alcie" in r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "alice.mbox").exists()
    r = run_ppadmin("export", img, "alcie", "alice", "--maildir", tmp_path / "md")
    assert r.returncode == 1 and "exported alice: 3 messages" in r.stdout, r.stdout + r.stderr
    assert sorted(os.listdir(tmp_path / "md")) == ["alice"]
    assert contents(img) == before  # no mailbox "alcie" made


def test_export_of_a_bad_mailbox_name_is_one_line(tmp_path):
    # `ppadmin export IMAGE Alice ...` (upper case: not a mailbox name) ended in the board side's
    # traceback (StoreError: bad mailbox name) printed by the host
    img = str(tmp_path / "a.img")
    make_image(img, {"alice": MSGS}, tmpdir=str(tmp_path / "src"))
    for args in (("export", img, "Alice", "--maildir", tmp_path / "md"), ("import", img, "Alice", tmp_path / "a.img")):
        r = run_ppadmin(*args)
        assert r.returncode != 0, r.stdout + r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "bad mailbox name 'Alice'" in r.stderr, r.stderr
    assert not (tmp_path / "md").exists()


def test_make_run_stopped_by_sigterm_leaves_no_server_behind(tmp_path):
    # `kill PID` / timeout(1) / a service manager send SIGTERM to run_host.py only: it died and
    # its micropython server went on serving, holding the ports and the image ("in use by pid
    # N (micropython ...)" for every later make run and ppadmin).
    import signal
    import socket
    import time

    from helpers import free_port, start_run_host

    port = free_port()
    args = ["--port", str(port), "--pop3s-port", str(free_port()), "--smtp-port", str(free_port()),
            "--smtps-port", str(free_port())]
    d = str(tmp_path / "run")
    p, out = start_run_host(["--dir", d] + args, "pop3 listening")
    try:
        p.send_signal(signal.SIGTERM)  # to run_host.py alone, not its process group
        p.wait(30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the server still listens on %d after run_host.py ended" % port)
        r = run_ppadmin("ls", os.path.join(d, "flash.img"))
        assert r.returncode == 0, r.stdout + r.stderr  # nobody holds the image
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # an orphaned server is still in this group
        except OSError:
            pass
        p.wait()


def test_adduser_force_replaces_the_password_only(tmp_path):
    # "--force replaces an existing user's password": it also dropped the user's apop_secret (the
    # user's APOP login stopped working after a password change), on an image and on a config file
    import json
    import sys

    from helpers import ROOT

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import ppadmin

    img = str(tmp_path / "a.img")
    make_image(img, {"alice": MSGS}, tmpdir=str(tmp_path / "src"))
    plain = tmp_path / "config.json"
    plain.write_text(json.dumps({"users": {}}))
    for target in (img, str(plain)):
        r = run_ppadmin("adduser", target, "carol", "--password", "one", "--apop-secret", "apop-s")
        assert r.returncode == 0, r.stdout + r.stderr
        r = run_ppadmin("adduser", target, "carol", "--password", "two", "--force")
        assert r.returncode == 0, r.stdout + r.stderr
        if target == img:
            raw = ppadmin.on_image(img, "print(open('/flash/config.json').read())")
        else:
            raw = plain.read_text()
        carol = json.loads(raw)["users"]["carol"]
        assert carol.get("apop_secret") == "apop-s" and carol.get("mailbox") == "carol", (target, carol)


def test_redeploy_after_make_clean_keeps_the_boards_certificate(tmp_path):
    # `make clean` removes build/, where `--make-cert` keeps the board's certificate and key.
    # A later `make deploy` (new code) was refused ("config names cert ... but there is no
    # build/<board>/cert.der (give --cert, or --make-cert)") although the board keeps its config
    # and has both files; --make-cert then made a new certificate every client must trust again.
    import shutil
    import subprocess
    import sys

    from helpers import ROOT

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import pseudoboard

    build = str(tmp_path / "build")
    deploy = [sys.executable, os.path.join(ROOT, "tools", "deploy.py"), "--board", "host", "--build", build,
              "--no-reset"]
    with pseudoboard.PseudoBoard(str(tmp_path / "pb")) as pb:
        r = subprocess.run(deploy + ["--port", pb.tty, "--make-cert"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        with open(os.path.join(build, "cert.der"), "rb") as f:
            cert = f.read()
        shutil.rmtree(build)  # make clean
        r = subprocess.run(deploy + ["--port", pb.tty], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "cert: the board has /flash/tls/cert.der: kept" in r.stdout, r.stdout
    files = pseudoboard.read_image(pb.image)
    assert files["/tls/cert.der"] == cert and "/tls/key.der" in files, sorted(files)
