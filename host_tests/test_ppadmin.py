"""tools/ppadmin.py (and the image rules of tools/hostimage.py / hostflash.py): no data lost, one-line errors.

Every bad input is refused with exactly one line on stderr naming the file/mailbox/user and what is
allowed, a non-zero exit and no traceback; after each refusal every file handed in is unchanged byte
for byte, and the image too (its hash, and `ls` still lists the same mail). One test serves the image
after a round of refusals and reads the mail with poplib; while it is served, every command is
refused naming the server's pid, and SIGKILL of the server frees the image.
"""

import hashlib
import json
import os
import poplib
import shutil
import signal
import subprocess
import sys

import pytest

from helpers import FIRMWARE, MICROPYTHON, ROOT, free_port
from mailimage import serve_locked

TOOLS = os.path.join(ROOT, "tools")
PPADMIN = os.path.join(TOOLS, "ppadmin.py")
sys.path.insert(0, TOOLS)
import hostimage  # noqa: E402

MSG = b"From: ada@example.org\r\nSubject: first\r\n\r\nhello\r\n.dot line\r\n"
REPORT = b"From: grace@example.org\r\nSubject: report\r\n\r\n" + b"quarterly figures line\r\n" * 3000  # ~75 KB
IMAGE_SIZE = "256K"


def ppadmin(*args, direct=False):
    """Run the tool as the README shows it (directly, by its #! line) or through this python."""
    cmd = [PPADMIN] if direct else [sys.executable, PPADMIN]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)


def digest(path):
    if not os.path.exists(path):
        return None
    if os.path.isdir(path):
        return "dir"
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def refused(args, must=(), files=(), image=None):
    """Run ppadmin ARGS, expecting a one-line refusal containing each of MUST; FILES and IMAGE unchanged."""
    watched = list(files) + ([image] if image else [])
    # ls first: the first open after a delivery may merge the mailbox index (the store's own work)
    listing = ppadmin("ls", image).stdout if image else None
    before = dict((p, digest(p)) for p in watched)
    r = ppadmin(*args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, (args, r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("ppadmin: "), r.stderr
    assert "Traceback" not in r.stderr
    for m in must:
        assert m in lines[0], (m, lines[0])
    for p in watched:
        assert digest(p) == before[p], "%s changed by a refused %s" % (p, " ".join(args))
    if image:
        after = ppadmin("ls", image)
        assert after.returncode == 0 and after.stdout == listing, after.stderr
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small image: user demo (mailbox demo) with one message; config with free ports, no TLS."""
    d = tmp_path_factory.mktemp("ppadmin")
    with open(os.path.join(ROOT, "boards", "host", "config.json")) as f:
        cfg = json.load(f)
    port = free_port()
    cfg["server"].update({"port": port, "pop3s_port": 0, "cert": "", "key": "", "pbkdf2_iterations": 100,
                          "auth_delays": [0.2]})
    cfgpath = str(d / "cfg.json")
    with open(cfgpath, "w") as f:
        json.dump(cfg, f)
    img = str(d / "base.img")
    r = ppadmin("create", img, "--size", IMAGE_SIZE, "--config", cfgpath)
    assert r.returncode == 0, r.stderr
    r = ppadmin("adduser", img, "demo", "--password", "demo pw")
    assert r.returncode == 0, r.stderr
    msg = d / "msg.eml"
    msg.write_bytes(MSG)
    r = ppadmin("deliver", img, "demo", str(msg))
    assert r.returncode == 0, r.stderr
    return {"image": img, "port": port, "config": cfgpath}


@pytest.fixture
def img(base, tmp_path):
    p = str(tmp_path / "flash.img")
    shutil.copyfile(base["image"], p)
    return p


@pytest.fixture
def report(tmp_path):
    p = tmp_path / "report.eml"
    p.write_bytes(REPORT)
    return str(p)


def test_create_makes_a_served_image_and_ls_lists_it(img):
    r = ppadmin("ls", img, direct=True)  # run as the README shows it
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["users: demo", "mailbox demo: 1 messages, %d octets" % len(MSG)]
    assert hostimage.check(img) == (4096, 64)


def test_swapped_arguments_leave_the_message_file_alone(img, report):
    """The reported data loss: `deliver report.eml demo run/flash.img` formatted the .eml."""
    line = refused(["deliver", report, "demo", img], ["report.eml", "littlefs"], files=[report], image=img)
    assert "4096-byte blocks" in line


@pytest.mark.parametrize("cmd", [["ls"], ["adduser", "X", "bob", "--password", "pw"], ["deliver", "X", "demo", "M"]])
def test_every_command_refuses_a_file_that_is_not_an_image(tmp_path, report, cmd):
    # a file the size of an image (whole blocks) but not littlefs, and a message file
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(64 * 4096))
    msg = tmp_path / "m.eml"
    msg.write_bytes(MSG)
    for target in (str(junk), report):
        args = [a.replace("X", target).replace("M", str(msg)) for a in cmd]
        if cmd == ["ls"]:
            args = ["ls", target]
        refused(args, [os.path.basename(target)], files=[str(junk), report, str(msg)])


@pytest.mark.parametrize("cmd", [["ls", "X"], ["check", "X"], ["adduser", "X", "bob", "--password", "pw"],
                                 ["deliver", "X", "demo", "M"]])
def test_a_serial_port_is_refused_pointing_to_the_repl(report, cmd):
    """ls / check / adduser / deliver on a board's port (what export and import take) said only
    'not a regular file; expected a littlefs flash image': now it says what to do on a board."""
    import pty

    master, slave = pty.openpty()
    try:
        port = os.ttyname(slave)
        args = [{"X": port, "M": report}.get(a, a) for a in cmd]
        refused(args, [port, "is a serial port", "mpremote connect", "admin."], files=[report])
    finally:
        os.close(master)
        os.close(slave)


def test_refuses_littlefs_of_another_geometry(tmp_path, img):
    from littlefs import LittleFS

    other = str(tmp_path / "small-blocks.img")
    fs = LittleFS(block_size=512, block_count=512)  # 256 KiB, but 512-byte blocks
    with open(other, "wb") as f:
        f.write(fs.context.buffer)
    refused(["ls", other], ["512", "4096"], files=[other])
    cut = str(tmp_path / "cut.img")  # a real image, truncated: block count no longer matches
    with open(img, "rb") as f:
        data = f.read()
    with open(cut, "wb") as f:
        f.write(data[: len(data) // 2])
    refused(["deliver", cut, "demo", img], ["cut.img", "64 blocks"], files=[cut, img])


def test_missing_image_is_not_created(tmp_path, report):
    missing = str(tmp_path / "nope.img")
    refused(["ls", missing], ["nope.img", "no such file"])
    refused(["deliver", missing, "demo", report], ["nope.img", "no such file"], files=[report])
    refused(["adduser", missing, "bob", "--password", "pw"], ["nope.img", "no such file"])
    assert not os.path.exists(missing)


def test_create_refuses_an_existing_file(report, tmp_path):
    refused(["create", report], ["report.eml", "already exists"], files=[report])
    refused(["create", str(tmp_path / "x.img"), "--size", "1000"], ["1000", "4096"])
    assert not os.path.exists(str(tmp_path / "x.img"))


def test_message_files_are_all_checked_before_any_is_delivered(img, report, tmp_path):
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.eml"
    folder.mkdir()
    refused(["deliver", img, "demo", report, str(tmp_path / "missing.eml")], ["missing.eml", "no such file"],
            files=[report], image=img)
    refused(["deliver", img, "demo", report, str(empty)], ["empty.eml", "empty"], files=[report, str(empty)], image=img)
    refused(["deliver", img, "demo", report, str(folder)], ["folder.eml", "not a regular file"], files=[report], image=img)
    refused(["deliver", img, "demo", img], ["image itself"], image=img)


@pytest.mark.parametrize("name", ["Demo", "../etc", ".hidden", "a" * 33, "sp ace", "é"])
def test_bad_mailbox_and_user_names(img, report, name):
    refused(["deliver", img, name, report], ["mailbox", "a-z 0-9 . _ -", "32"], files=[report], image=img)
    refused(["adduser", img, name, "--password", "pw"], ["user", "a-z 0-9 . _ -", "32"], image=img)


def test_mailbox_without_a_user_needs_create_mailbox(img, report):
    refused(["deliver", img, "nobody", report], ["nobody", "no user", "--create-mailbox"], files=[report], image=img)
    r = ppadmin("deliver", img, "nobody", report, "--create-mailbox")
    assert r.returncode == 0, r.stderr
    assert "mailbox nobody: 1 messages, %d octets" % len(REPORT) in ppadmin("ls", img).stdout


def test_adduser_of_an_existing_user_needs_force(img, tmp_path):
    refused(["adduser", img, "demo", "--password", "new pw"], ["demo", "already exists", "--force"], image=img)
    r = ppadmin("adduser", img, "demo", "--password", "new pw", "--force")
    assert r.returncode == 0, r.stderr
    # the same on a plain config file
    cfg = str(tmp_path / "c.json")
    with open(cfg, "w") as f:
        json.dump({"users": {}}, f)
    assert ppadmin("adduser", cfg, "ann", "--password", "pw", "--iterations", "10").returncode == 0
    refused(["adduser", cfg, "ann", "--password", "pw2"], ["ann", "already exists"], files=[cfg])


CHECK_PW = r"""
import os
from pocketpost import authsetup, config
users = config.load_raw("/flash/config.json")["users"]
for name in sorted(users):
    print(name, users[name]["mailbox"], authsetup.verify_password(os.getenv("PP_TRY"), users[name]["password"]))
"""


def _users(img, password, tmp_path):
    script = tmp_path / "users.py"
    script.write_text(CHECK_PW)
    r = subprocess.run([sys.executable, PPADMIN, "run", img, str(script)], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PP_TRY=password))
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_passwd_and_deluser(img, tmp_path, report):
    """A maker's user management: passwd (an existing user only), deluser (the mail stays)."""
    assert ppadmin("adduser", img, "bob", "--password", "bob pw").returncode == 0
    refused(["passwd", img, "zed", "--password", "x"], ["no user zed", "users: bob, demo", "adduser"], image=img)
    refused(["passwd", img, "demo", "--password", ""], ["demo", "empty password"], image=img)
    r = ppadmin("passwd", img, "demo", "--password", "new pw")
    assert r.returncode == 0, r.stderr
    assert _users(img, "new pw", tmp_path) == ["bob bob False", "demo demo True"]
    refused(["deluser", img, "zed"], ["no user zed", "users: bob, demo"], image=img)
    r = ppadmin("deluser", img, "demo")
    assert r.returncode == 0 and "mailbox demo" in r.stdout, r.stderr
    assert ppadmin("ls", img).stdout.splitlines() == ["users: bob", "mailbox demo: 1 messages, %d octets" % len(MSG)]
    # the same on a plain config file
    cfg = str(tmp_path / "c.json")
    with open(cfg, "w") as f:
        json.dump({"users": {}}, f)
    refused(["passwd", cfg, "ann", "--password", "pw"], ["no user ann"], files=[cfg])
    assert ppadmin("adduser", cfg, "ann", "--password", "pw", "--iterations", "10").returncode == 0
    assert ppadmin("passwd", cfg, "ann", "--password", "pw2", "--iterations", "10").returncode == 0
    assert ppadmin("deluser", cfg, "ann").returncode == 0
    with open(cfg) as f:
        assert json.load(f)["users"] == {}
    refused(["deluser", cfg, "ann"], ["no user ann"], files=[cfg])


def test_empty_password_is_refused(img, tmp_path):
    refused(["adduser", img, "bob", "--password", ""], ["bob", "empty password"], image=img)
    cfg = str(tmp_path / "c.json")
    with open(cfg, "w") as f:
        json.dump({"users": {}}, f)
    refused(["adduser", cfg, "bob", "--password", ""], ["bob", "empty password"], files=[cfg])


def test_message_too_large_for_the_space_left_says_how_much_is_free(img, tmp_path, report):
    big = tmp_path / "big.eml"
    big.write_bytes(b"Subject: big\r\n\r\n" + b"x" * 76 + b"\r\n" * 1 + (b"y" * 78 + b"\r\n") * 3000)  # ~240 KB
    line = refused(["deliver", img, "demo", str(big)], ["big.eml", "too large", "octets free", "mailbox demo"],
                   files=[str(big)], image=img)
    free = int(line.split(" octets free")[0].split()[-1])
    assert 0 < free < 256 * 1024
    # a batch that fits file by file but not together is refused whole
    n = free // len(REPORT) + 1
    files = []
    for i in range(n):
        p = tmp_path / ("r%d.eml" % i)
        p.write_bytes(REPORT)
        files.append(str(p))
    refused(["deliver", img, "demo"] + files, ["%d files" % n, "octets free"], files=files, image=img)


def test_image_full_is_refused(tmp_path, report, base):
    with open(base["config"]) as f:
        cfg = json.load(f)
    cfg["store"]["reserve"] = 1024 * 1024  # more than the image holds: no room for any message
    cfgpath = str(tmp_path / "full.json")
    with open(cfgpath, "w") as f:
        json.dump(cfg, f)
    full = str(tmp_path / "full.img")
    assert ppadmin("create", full, "--size", IMAGE_SIZE, "--config", cfgpath).returncode == 0
    assert ppadmin("adduser", full, "demo", "--password", "pw").returncode == 0
    refused(["deliver", full, "demo", report], ["full.img", "is full"], files=[report], image=full)


def test_usage_errors_are_one_line_and_debug_shows_the_traceback(img, report):
    refused(["deliver", img], ["required"], image=img)
    refused(["frobnicate", img], ["frobnicate"], image=img)
    r = ppadmin("--debug", "deliver", report, "demo", img)
    assert r.returncode != 0 and "Traceback" in r.stderr and "report.eml" in r.stderr.strip().splitlines()[-1]


def test_hostflash_never_formats_a_file_with_data(tmp_path, report):
    """The micropython side's own guard: --mkfs only on a blank image, a non-littlefs file is not formatted."""
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":" + TOOLS + ":.frozen")
    padded = str(tmp_path / "padded.eml")  # a message padded to whole blocks: mountable size, not littlefs
    with open(padded, "wb") as f:
        f.write(REPORT + b"\n" * (-len(REPORT) % 4096))
    for args in ([padded, "-c", "print(1)"], [padded, "--mkfs", "-c", "print(1)"]):
        before = digest(padded)
        r = subprocess.run([MICROPYTHON, os.path.join(TOOLS, "hostflash.py")] + args, capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "padded.eml" in r.stderr, r.stderr
        assert digest(padded) == before



def test_served_image_is_locked_until_the_server_dies_then_still_served(base, img, report):
    # a round of refusals first: the image must still be served exactly as before
    refused(["deliver", img, "nobody", report], ["no user"], files=[report], image=img)
    refused(["deliver", report, "demo", img], ["littlefs"], files=[report], image=img)
    proc = serve_locked(img, base["port"])
    try:
        p = poplib.POP3("127.0.0.1", base["port"], timeout=10)
        p.user("demo")
        p.pass_("demo pw")
        assert p.stat()[0] == 1
        assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == MSG
        p.quit()
        for args in (["ls", img], ["deliver", img, "demo", report], ["adduser", img, "bob", "--password", "pw"]):
            line = refused(args, [os.path.basename(img), "in use by pid %d" % proc.pid, "pocketpost.server"],
                           files=[report])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    r = ppadmin("ls", img)  # the kernel dropped the lock with the process
    assert r.returncode == 0 and "mailbox demo: 1 messages" in r.stdout, r.stderr
    assert line


def test_lock_is_released_when_a_tool_is_killed(img):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, %r); import hostimage; "
                               "lk = hostimage.ImageLock(%r); print('locked', flush=True); time.sleep(60)" % (TOOLS, img)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused(["ls", img], ["in use by pid %d" % holder.pid])
    finally:
        holder.kill()
        holder.wait(10)
    assert ppadmin("ls", img).returncode == 0


def test_refusal_on_a_fresh_image_writes_nothing(tmp_path, base, report):
    """Not even the store's root folder: refusals come before the store is opened."""
    fresh = str(tmp_path / "fresh.img")
    assert ppadmin("create", fresh, "--size", IMAGE_SIZE, "--config", base["config"]).returncode == 0
    refused(["deliver", fresh, "nobody", report], ["nobody", "no user", "users: none"], files=[fresh, report])


SETUP_ACCOUNT = r"""
import json, os


def put(path, text):  # (closed: littlefs keeps a file's data from its close on)
    with open(path, "w") as f:
        f.write(text)


with open("config.json") as f:
    cfg = json.load(f)
cfg["accounts"] = [{"name": "isp", "host": "pop.example.org", "user": "alice", "tls": "none",
                    "allow_plaintext": True, "mailbox": "demo"}]
put("config.json", json.dumps(cfg))
put("secrets.json", json.dumps({"accounts": {"isp": {"password": "pw"}}}))
os.mkdir("state")
for n in ["isp.uidl", "isp.who"] + ["isp.uidl%d" % k for k in range(8)]:
    put("state/" + n, "alice\npop.example.org" if n == "isp.who" else n)
"""

SHOW_ACCOUNT = r"""
import json, os
print([a["name"] for a in json.load(open("config.json"))["accounts"]], sorted(json.load(open("secrets.json"))["accounts"]))
print(" ".join(sorted(os.listdir("state"))))
print(open("state/home.uidl0").read())
"""


def test_rename_account_on_an_image(img, tmp_path):
    """rename-account on an image (under micropython, fetchrename.py, as on a board): config.json,
    secrets.json and every state file of the account; an account that is not there: one line."""
    for name, code in (("setup.py", SETUP_ACCOUNT), ("show.py", SHOW_ACCOUNT)):
        (tmp_path / name).write_text(code)
    r = subprocess.run([sys.executable, PPADMIN, "run", img, str(tmp_path / "setup.py")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    refused(["rename-account", img, "nosuch", "home"], ["nosuch", "neither is in the config", "isp"], image=img)
    r = ppadmin("rename-account", img, "isp", "home")
    assert r.returncode == 0 and "account isp renamed to home" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, PPADMIN, "run", img, str(tmp_path / "show.py")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["['home'] ['home']", " ".join(sorted(["home.uidl", "home.who"] + [
        "home.uidl%d" % k for k in range(8)])), "isp.uidl0"], r.stdout
