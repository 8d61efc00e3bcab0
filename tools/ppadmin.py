#!/usr/bin/env python3
"""Host admin tool for a pocketpost flash image (or a plain config file).

    tools/ppadmin.py create IMAGE [--size 2M] [--config FILE]     a new image: littlefs + config
    tools/ppadmin.py adduser IMAGE-or-CONFIG USER [--password PW] [--iterations N]
                     [--apop-secret S] [--force]                   --force replaces an existing user
    tools/ppadmin.py passwd IMAGE-or-CONFIG USER [--password PW]   a new password for an existing user
    tools/ppadmin.py deluser IMAGE-or-CONFIG USER                  the user can no longer log in; the
                     mailbox and its mail stay (export it first, or keep it for a user of that name)
    tools/ppadmin.py rename-account IMAGE-or-CONFIG OLD NEW      a fetch account: config.json, secrets.json
                     and its UIDL state files (run again, it finishes a rename a power cut stopped);
                     on a host config it holds the store's fetch lock: refused while a fetch runs
    tools/ppadmin.py deliver IMAGE MAILBOX FILE.eml [FILE.eml ...] [--create-mailbox]
    tools/ppadmin.py ls IMAGE
    tools/ppadmin.py check IMAGE [--repair]    every mailbox: index, files, every message read; exit 1 if
                     problems are left (found without --repair); damaged messages go to damaged/
    tools/ppadmin.py run IMAGE SCRIPT.py                          MicroPython, image at /flash (cwd)
    tools/ppadmin.py export IMAGE [MAILBOX ...] (--maildir DIR | --mbox FILE | --dovecot DIR)
                     exit 4 (incomplete) when a mailbox a POP3 session held was skipped: run again
    tools/ppadmin.py import IMAGE MAILBOX SOURCE [--create-mailbox]   (a Maildir, an mbox, a .eml file or a
                     folder of them; a new mailbox no user reads is refused, exit 2, unless --create-mailbox)
    tools/ppadmin.py backup IMAGE FILE  /  tools/ppadmin.py restore FILE IMAGE
    (export/import/backup/restore: tools/mailport.py, docs/MIGRATE.md; IMAGE may also be a
    board's serial port, e.g. /dev/ttyUSB0, reached through mpremote; with --live the board
    keeps serving: its usb_link service, docs/MIGRATE.md)
    (--debug before the command: show tracebacks)

Only `create` formats, and only a file it makes itself; every other command refuses a file that is
not a littlefs image of 4 KiB blocks, checked from CPython before micropython opens it
(tools/hostimage.py). One process owns an image at a time: an image that a server (make run) or
another tool has open is refused, naming who holds it. Every refusal is one line on stderr with a
non-zero exit (the exit status scheme below, the same for every command), and leaves the files it
was given as they were. Options may come anywhere after the command. `deliver` checks every file, the
mailbox and the space left before it delivers any; a mailbox no user reads is refused unless
--create-mailbox.

On an image, the work runs under micropython with the image mounted at /flash (tools/hostflash.py),
so the password hashing and the store code are the very ones the board runs. The config inside the
image is /flash/config.json. Without --password, the password is asked for (not echoed); it
reaches micropython through the environment, never the command line. On a terminal it is typed twice;
from a pipe (`printf 'pw\n' | ppadmin adduser ...`) it is the first line.
"""

import argparse
import contextlib
import getpass
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
HOSTFLASH = os.path.join(ROOT, "tools", "hostflash.py")
IMAGE_CONFIG = "/flash/config.json"
DEFAULT_SIZE = "2M"  # the vfs partition of a 4 MiB ESP32
# Exit status, the same for every command (EXIT_STATUS says it in --help; README "ppadmin").
EXIT_PARTLY = 1  # done, but with problems the output names
EXIT_USAGE = 2  # not started (the command line, a name, a new mailbox), or stopped: no room on the flash
EXIT_REFUSED = 3  # refused or failed in one line on stderr, nothing changed (e.g. the image is in use)
EXIT_INCOMPLETE = 4  # export skipped a mailbox a POP3 session held: run again
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_STATUS = """exit status, every command:
  0  done
  1  done, with problems the output names: check found problems (left without --repair); export: a
     mailbox named does not exist; import, restore: messages refused or damaged
  2  not started: the command line, a bad user or mailbox name, a new mailbox no user reads without
     --create-mailbox, restore --size on an existing image; or stopped: no room on the flash
     (deliver, import, restore)
  3  refused or failed, one line on stderr, the image and files as they were: not an image, in use
     by another process (a running server, another ppadmin), no such user or file, a board error
  4  incomplete: export skipped a mailbox a POP3 session held (the others were exported): run again
  130  interrupted (Ctrl-C)
  `run` exits with its script's status."""

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, FIRMWARE)
import hostimage  # noqa: E402
from hostimage import ImageError  # noqa: E402
from pocketpost import config as ppconfig  # noqa: E402

NAME_RULE = "1 to %d characters of a-z 0-9 . _ -, not starting with '.'" % ppconfig.MAX_NAME


class Refused(Exception):
    """A one-line refusal: the file/mailbox/user and what is allowed; status is the exit status."""

    def __init__(self, message, status=EXIT_REFUSED):
        Exception.__init__(self, message)
        self.status = status


def micropython():
    p = os.path.join(ROOT, ".venv", "bin", "micropython")
    return p if os.path.exists(p) else "micropython"


# Runs first in every script under micropython: one-line refusals, tracebacks only with PP_DEBUG.
PRELUDE = r"""
import os, sys
IMAGE = os.getenv("PP_IMAGE")
PARTLY, STOPPED, REFUSED = %d, %d, %d  # ppadmin's EXIT_PARTLY, EXIT_USAGE, EXIT_REFUSED
os.chdir("/flash")  # config.json's folder, as a board's: its relative paths (store root "mail") stay in the image
def refuse(msg, status=REFUSED):
    sys.stderr.write("ppadmin: " + msg + "\n")
    sys.exit(status)
def enospc(e):
    return isinstance(e, OSError) and e.args and e.args[0] == 28
def run(body):
    try:
        body()
    except SystemExit:
        raise
    except Exception as e:
        if os.getenv("PP_DEBUG"):
            sys.print_exception(e)
        if enospc(e):
            refuse("%%s is full (no space left on the flash image)" %% IMAGE, STOPPED)
        refuse("%%s: %%s: %%s" %% (IMAGE, type(e).__name__, e))
CONFIG = %r
def image_config(load):
    # the image's config, by config.load (or load_raw, to edit it); refused if it has none
    try:
        return load(CONFIG)
    except OSError:
        refuse("%%s has no /flash/config.json (images come from tools/ppadmin.py create or make run)" %% IMAGE)
""" % (EXIT_PARTLY, EXIT_USAGE, EXIT_REFUSED, IMAGE_CONFIG)


def on_image(image, code, env=None, mkfs=False, lock=None, debug=False):
    """Run micropython CODE with IMAGE mounted at /flash; returns its stdout (str).

    Takes the image's lock (or uses LOCK, e.g. from hostimage.create) and checks it is a littlefs
    image (unless mkfs: a blank image just created). The lock's descriptor goes to the child, so
    the image stays locked as long as either process lives. Refused on any failure."""
    own = lock is None
    if own:
        lock = hostimage.ImageLock(image)
    try:
        if not mkfs:
            hostimage.check(image)
        e = dict(os.environ)
        e["MICROPYPATH"] = FIRMWARE + ":" + os.path.join(ROOT, "tools") + ":.frozen"
        e["PP_IMAGE"] = image
        if debug:
            e["PP_DEBUG"] = "1"
        if env:
            e.update(env)
        fd, script = tempfile.mkstemp(suffix=".py", prefix="ppadmin-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(PRELUDE + code)
            cmd = [micropython(), HOSTFLASH, image] + (["--mkfs"] if mkfs else []) + ["-f", script]
            r = subprocess.run(cmd, capture_output=True, text=True, env=e, pass_fds=(lock.fd,))
        finally:
            os.unlink(script)
    finally:
        if own:
            lock.release()
    return _output(r, image, "micropython", debug)


def _output(r, target, program, debug):
    """A child's stdout (str), or its failure as Refused: a script's refuse() with its status."""
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        if debug or r.returncode not in (EXIT_PARTLY, EXIT_USAGE, EXIT_REFUSED):
            sys.stderr.write(r.stdout + r.stderr)
        last = lines[-1] if lines else "exit status %d" % r.returncode
        if last.startswith("ppadmin: "):  # a script's refuse(): its status
            raise Refused(last[9:], r.returncode if r.returncode in (EXIT_PARTLY, EXIT_USAGE) else EXIT_REFUSED)
        if last.startswith("hostflash: "):  # hostflash's own refusal (exit 2): the image is not one it mounts
            raise Refused(last[11:])
        raise Refused("%s: %s failed (exit %d): %s" % (target, program, r.returncode, last))
    return r.stdout


CREATE = r"""
def body():
    src = open(os.getenv("PP_CONFIG")); raw = src.read(); src.close()
    dst = open("/flash/config.json", "w"); dst.write(raw); dst.close()
    print("created %s: %s bytes of littlefs, /flash/config.json" % (IMAGE, os.getenv("PP_SIZE")))
run(body)
"""

ADDUSER = r"""
def body():
    from pocketpost import config
    cfg = image_config(config.load_raw)
    user = os.getenv("PP_USER")
    old = (cfg.get("users") or {}).get(user)
    if old is not None and not os.getenv("PP_FORCE"):
        refuse("user %s already exists in %s: ppadmin passwd gives it a new password (or adduser --force)" % (user, IMAGE))
    if old is None and os.getenv("PP_EXISTING"):
        refuse("no user %s in %s (users: %s): adduser makes one" % (user, IMAGE, ", ".join(sorted(cfg.get("users") or {})) or "none"))
    it = os.getenv("PP_ITER")
    config.add_user(cfg, user, os.getenv("PP_PASSWORD"), int(it) if it else None,
                    mailbox=(old or {}).get("mailbox"), apop_secret=os.getenv("PP_APOP") or (old or {}).get("apop_secret"))
    config.check(cfg)
    config.save(CONFIG, cfg)
    print("user", user, "saved")
run(body)
"""

DELUSER = r"""
def body():
    from pocketpost import config
    cfg = image_config(config.load_raw)
    user = os.getenv("PP_USER")
    users = cfg.get("users") or {}
    if user not in users:
        refuse("no user %s in %s (users: %s)" % (user, IMAGE, ", ".join(sorted(users)) or "none"))
    box = (users[user] or {}).get("mailbox") or user
    del users[user]
    config.save(CONFIG, cfg)
    print("user %s removed; mailbox %s and its mail stay on %s" % (user, box, IMAGE))
run(body)
"""

RENAME = r"""
def body():
    from pocketpost import fetchrename
    from pocketpost.compat import ConfigError
    try:
        print(fetchrename.rename(os.getenv("PP_OLD"), os.getenv("PP_NEW"), CONFIG))
    except ConfigError as e:
        refuse(str(e))
run(body)
"""

DELIVER = r"""
def body():
    from pocketpost import config
    from pocketpost.config import open_store
    from pocketpost.store import QuotaExceeded
    cfg = image_config(config.load)
    box = os.getenv("PP_MAILBOX")
    users = cfg["users"]
    readers = [u for u in users if users[u].get("mailbox") == box]
    if not readers and not os.getenv("PP_CREATE"):
        refuse("mailbox %s has no user in %s (users: %s): add the user first, or pass --create-mailbox"
               % (box, IMAGE, ", ".join(sorted(users)) or "none"), STOPPED)
    st = open_store(cfg)
    files = os.getenv("PP_FILES").split("\n")
    names = os.getenv("PP_NAMES").split("\n")  # as the user gave them, for messages
    sizes = [int(n) for n in os.getenv("PP_SIZES").split()]
    limit, exc = st.room(box)
    what = "mailbox %s has reached its quota of %d octets" % (box, st.quota) if exc is QuotaExceeded else "%s is full" % IMAGE
    if limit == 0:
        refuse(what + ": no message can be delivered to mailbox " + box, STOPPED)
    need = int(os.getenv("PP_NEED"))
    if limit > 0 and need > limit:
        big = [i for i in range(len(files)) if sizes[i] > limit]
        free = "%d octets free for mailbox %s in %s" % (limit, box, IMAGE)
        if exc is QuotaExceeded:
            free += " (quota %d)" % st.quota
        if big:
            refuse("message too large for the space left: %s is %d octets, %s" % (names[big[0]], sizes[big[0]], free), STOPPED)
        refuse("messages too large for the space left: %d files need %d octets, %s" % (len(files), need, free), STOPPED)
    done = 0
    for i in range(len(files)):
        path = names[i]
        try:
            print(box, st.deliver_file(box, files[i]))
        except Exception as e:
            if os.getenv("PP_DEBUG"):
                sys.print_exception(e)
            refuse("%s not delivered (%s: %s); %d of %d files were delivered to %s before it" % (
                path, type(e).__name__, e, done, len(files), box), STOPPED if enospc(e) else PARTLY if done else REFUSED)
        done += 1
run(body)
"""

USERS = r"""
def body():
    from pocketpost import config
    print(" ".join(sorted(image_config(config.load_raw).get("users") or {})))
run(body)
"""

LS = r"""
def body():
    from pocketpost import config
    from pocketpost.config import open_store
    cfg = image_config(config.load)
    st = open_store(cfg)
    print("users:", " ".join(sorted(cfg["users"])) or "none (tools/ppadmin.py adduser IMAGE NAME adds one)")
    names = st.mailboxes()
    for name in names:
        n, size = st.usage(name)
        print("mailbox %s: %d messages, %d octets" % (name, n, size))
    if not names:
        print("no mailboxes")
run(body)
"""

CHECK = r"""
import os
from pocketpost import config, store
from pocketpost.config import open_store
st = open_store(config.load(CONFIG))
rep = st.check(repair=os.getenv("PP_REPAIR") == "1", deep=True)
for name in sorted(rep["mailboxes"]):
    print(store.describe(name, rep["mailboxes"][name]))
print("problems:", rep["problems"])
"""


def check(image, repair=False, debug=False):
    """Run the store check on an image; returns (output, exit status: 1 if problems are left)."""
    out = on_image(image, CHECK, {"PP_REPAIR": "1" if repair else ""}, debug=debug)
    found = [ln for ln in out.splitlines() if ln.startswith("problems:")]
    left = bool(found) and found[-1] != "problems: 0" and not repair
    return out, EXIT_PARTLY if left or not found else 0


# `run`: the user's script, read from the host, then run with /flash as the current directory
# (as a board runs from its flash root), so the same file works with `mpremote run`.
RUNNER = r"""
import os, sys
_p = os.getenv("PP_SCRIPT")
_f = open(_p)
_code = _f.read()
_f.close()
os.chdir("/flash")
sys.argv[:] = [_p]
exec(_code, {"__name__": "__main__"})
"""


def run_script(image, script, debug=False):
    """Run SCRIPT (a host file) under micropython with IMAGE mounted at /flash and as the current
    directory, output straight through; the image is locked and checked first. -> exit status."""
    if not os.path.isfile(script):
        raise Refused("%s: no such file; give a MicroPython script to run on the image" % script)
    with hostimage.ImageLock(image) as lock:
        hostimage.check(image)
        e = dict(os.environ)
        e["MICROPYPATH"] = FIRMWARE + ":" + os.path.join(ROOT, "tools") + ":.frozen"
        e["PP_SCRIPT"] = os.path.abspath(script)
        fd, runner = tempfile.mkstemp(suffix=".py", prefix="ppadmin-run-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(RUNNER)
            sys.stdout.flush()
            child = subprocess.Popen([micropython(), HOSTFLASH, image, "-f", runner], env=e, pass_fds=(lock.fd,))
            try:
                return child.wait()
            except KeyboardInterrupt:  # Ctrl-C: the terminal sent it to the child too; make sure it ends
                try:
                    child.send_signal(2)
                    return child.wait(5) or EXIT_INTERRUPTED
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                    return EXIT_INTERRUPTED
        finally:
            os.unlink(runner)


def check_name(kind, name):
    if not ppconfig.valid_name(name):
        raise Refused("bad %s name %r: %s" % (kind, name, NAME_RULE), EXIT_USAGE)


def stored_size(path):
    """Octets the store keeps for the file: each lone LF becomes CRLF, a final line end is added."""
    size = lone = 0
    prev = b"\n"
    last = b""
    with open(path, "rb") as f:
        while True:
            b = f.read(65536)
            if not b:
                break
            size += len(b)
            lone += b.count(b"\n") - b.count(b"\r\n") - (1 if b[:1] == b"\n" and prev == b"\r" else 0)
            prev = last = b[-1:]
    return size + lone + (0 if last == b"\n" else 2)


def check_messages(image, files):
    """Check every message file before any is delivered -> [(abspath, stored size)]."""
    out = []
    for path in files:
        if "\n" in path:
            raise Refused("%r: a file name with a line break is not supported; rename it" % path)
        try:
            if not os.path.isfile(path):
                raise Refused("%s: %s; give a message file (RFC 5322, .eml)"
                              % (path, "no such file" if not os.path.exists(path) else "not a regular file"))
            if os.path.exists(image) and os.path.samefile(path, image):
                raise Refused("%s is the image itself, not a message (order: deliver IMAGE MAILBOX FILE.eml ...)" % path)
            if os.path.getsize(path) == 0:
                raise Refused("%s is empty: a message needs at least a header line" % path)
            out.append((os.path.abspath(path), stored_size(path)))
        except OSError as e:
            raise Refused("%s: cannot read: %s" % (path, e.strerror)) from None
    return out


def load_raw(path):
    """A JSON config file on the host, as written (to edit or copy); refused if unreadable."""
    try:
        return ppconfig.load_raw(path)
    except OSError as e:
        raise Refused("%s: cannot read: %s" % (path, e.strerror)) from None
    except ValueError as e:
        raise Refused("%s: not a JSON config: %s" % (path, e)) from None


def create(image, size_text=DEFAULT_SIZE, config_path=None, debug=False):
    size = hostimage.parse_size(size_text)
    if config_path:
        cfg = load_raw(config_path)
    else:
        with open(os.path.join(ROOT, "boards", "host", "config.json")) as f:
            cfg = json.load(f)
        cfg["server"]["cert"] = cfg["server"]["key"] = ""  # no certificate yet: plain POP3 only
    ppconfig.check(json.loads(json.dumps(cfg)))
    fd, tmpcfg = tempfile.mkstemp(suffix=".json", prefix="ppadmin-")
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f)
    try:
        lock = hostimage.create(image, size)
        try:
            return on_image(image, CREATE, {"PP_CONFIG": tmpcfg, "PP_SIZE": str(size)}, mkfs=True, lock=lock, debug=debug)
        except BaseException:
            lock.release()
            os.unlink(image)  # ours: made above, never anyone else's file
            raise
        finally:
            lock.release()
    finally:
        os.unlink(tmpcfg)


def _user_list(cfg):
    return ", ".join(sorted(cfg.get("users") or {})) or "none"


def ask_password(target, user, existing, force, debug=False):
    """The password for adduser/passwd, asked once the user is known to be addable (adduser: a new
    name or --force; passwd: an existing one): the refusal used to come after the typing. On a
    terminal typed twice, not echoed (a typo would lock the user out); from a pipe, its first line."""
    users = sorted(load_raw(target).get("users") or {}) if target.endswith(".json") else \
        on_image(target, USERS, debug=debug).split()
    if user in users and not force:
        raise Refused("user %s already exists in %s: ppadmin passwd gives it a new password (or adduser --force)"
                      % (user, target))
    if user not in users and existing:
        raise Refused("no user %s in %s (users: %s): adduser makes one" % (user, target, ", ".join(users) or "none"))
    if not sys.stdin.isatty():  # piped: its first line (getpass would warn that it cannot hide it)
        return sys.stdin.readline().rstrip("\r\n")
    pw = getpass.getpass("%spassword for %s: " % ("new " if existing else "", user))
    if getpass.getpass("the same again: ") != pw:
        raise Refused("the two passwords differ; nothing was changed")
    return pw


def adduser(target, user, password, iterations=None, apop_secret=None, force=False, debug=False, existing=False):
    """Add USER (force: or replace its password); existing (passwd): only replace, refuse a new name."""
    check_name("user", user)
    if not password:
        raise Refused("empty password for user %s: give a non-empty --password (or type one)" % user)
    if target.endswith(".json"):
        cfg = load_raw(target)
        old = (cfg.get("users") or {}).get(user)
        if old is not None and not force:
            raise Refused("user %s already exists in %s: ppadmin passwd gives it a new password (or adduser --force)"
                      % (user, target))
        if old is None and existing:
            raise Refused("no user %s in %s (users: %s): adduser makes one" % (user, target, _user_list(cfg)))
        ppconfig.add_user(cfg, user, password, iterations, mailbox=(old or {}).get("mailbox"),
                          apop_secret=apop_secret or (old or {}).get("apop_secret"))  # --force: the password only
        ppconfig.check(cfg)
        ppconfig.save(target, cfg)
        return "user %s saved\n" % user
    env = {"PP_USER": user, "PP_PASSWORD": password, "PP_ITER": str(iterations or ""), "PP_APOP": apop_secret or "",
           "PP_FORCE": "1" if force else "", "PP_EXISTING": "1" if existing else ""}
    return on_image(target, ADDUSER, env, debug=debug)


def deluser(target, user, debug=False):
    """Remove USER from the config: no more logins; the mailbox and its mail are left as they are."""
    check_name("user", user)
    if target.endswith(".json"):
        cfg = load_raw(target)
        users = cfg.get("users") or {}
        if user not in users:
            raise Refused("no user %s in %s (users: %s)" % (user, target, _user_list(cfg)))
        box = (users[user] or {}).get("mailbox") or user
        del users[user]
        ppconfig.save(target, cfg)
        return "user %s removed from %s; its mailbox %s is not touched\n" % (user, target, box)
    return on_image(target, DELUSER, {"PP_USER": user}, debug=debug)


# rename-account on a host config runs in a child process that holds the store's fetch lock for the
# whole rename: a fetch (cron) running meanwhile wrote the UIDL state under the old name after the
# rename moved it, or met it half moved, and fetched the mail kept on the server again. A fetch
# takes a lock's holder for alive only while the pid's command line has "fetch" in it (else for a
# killed run's, and takes it over): this code is on the child's command line, and says so.
RENAME_CHILD = ("# ppadmin rename-account: holds the store's fetch lock (fetchload.lock)\n"
                "import sys; sys.path.insert(0, sys.argv[1]); import ppadmin; "
                "sys.exit(ppadmin.rename_holding_lock(*sys.argv[2:]))\n")
HOLD_RENAME = "PP_TEST_HOLD_RENAME"  # tests only: a path; the child waits for it with the lock held


def rename_account(target, old, new, debug=False):
    """Rename fetch account OLD to NEW, its secrets and state files with it (fetchrename.py: on a
    host config under CPython, holding the store's fetch lock; on an image under micropython, the
    board's code either way)."""
    if target.endswith(".json"):
        e = dict(os.environ)
        if debug:
            e["PP_DEBUG"] = "1"
        r = subprocess.run([sys.executable, "-c", RENAME_CHILD, os.path.dirname(os.path.abspath(__file__)), target,
                            old, new], capture_output=True, text=True, env=e)
        return _output(r, target, "python", debug)
    return on_image(target, RENAME, {"PP_OLD": old, "PP_NEW": new}, debug=debug)


def rename_holding_lock(target, old, new):
    """rename_account's child: the rename with the store's fetch lock held (fetchload.lock, the
    fetch CLI's own code: the same folder <store root>.fetch-lock holding this pid; a killed
    holder's lock taken over) and released on every exit; refused in one line while a fetch, an
    export or an import holds it. Its exit status; its output, or the refusal on stderr."""
    from pocketpost import compat, fetchload, fetchrename

    try:
        store = load_raw(target).get("store")
        root = store.get("root") if isinstance(store, dict) else None
        root = root if isinstance(root, str) and root else ppconfig.STORE_DEFAULTS["root"]
        i = target.rfind("/")
        if i >= 0:  # relative to the config's folder, as fetchload.load takes it
            root = compat.join(target[:i + 1], root)
        said = io.StringIO()
        with contextlib.redirect_stdout(said):  # (its refusal is a fetch's words)
            lk = fetchload.lock(root)
        if lk == 1:
            path = root.rstrip("/") + ".fetch-lock"
            import mailport

            guarded = mailport.guarded_lock(said.getvalue(), path)
            if guarded:  # (no pid holds it: a dead run's, being taken over)
                raise Refused("rename account %s to %s: %s" % (old, new, guarded))
            try:
                with open(path + "/pid") as f:
                    pid = f.read().strip() or "?"
            except OSError:
                pid = "?"
            raise Refused("rename account %s to %s: the store %s is in use by pid %s (a fetch, or an export, import or "
                          "rename, holding %s): nothing changed; run again once it has ended (if none is running, delete "
                          "that directory)" % (old, new, root, pid, path))
        try:
            if os.getenv(HOLD_RENAME):
                _hold(os.getenv(HOLD_RENAME))
            sys.stdout.write(fetchrename.rename(old, new, target) + "\n")
        finally:
            if lk:  # (as fetch.main releases it)
                try:
                    os.remove(lk + "/pid")
                    os.rmdir(lk)
                except OSError:
                    pass
    except (Refused, ppconfig.ConfigError) as e:
        if os.getenv("PP_DEBUG"):
            traceback.print_exc()
        sys.stderr.write("ppadmin: %s\n" % e)
        return getattr(e, "status", EXIT_REFUSED)
    return 0


def _hold(path):
    """Tests only: say the lock is held (<path>.held, this pid), then wait (60 s at most) for <path>."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(path + ".tmp", path + ".held")
    for _ in range(600):
        if os.path.exists(path):
            return
        time.sleep(0.1)


def deliver(image, mailbox, files, create_mailbox=False, debug=False):
    check_name("mailbox", mailbox)
    msgs = check_messages(image, files)
    need = sum(-(-n // hostimage.BLOCK_SIZE) * hostimage.BLOCK_SIZE for _p, n in msgs)  # whole blocks each
    env = {"PP_MAILBOX": mailbox, "PP_FILES": "\n".join(p for p, _n in msgs), "PP_NAMES": "\n".join(files), "PP_SIZES": " ".join(str(n) for _p, n in msgs),
           "PP_NEED": str(need), "PP_CREATE": "1" if create_mailbox else ""}
    return on_image(image, DELIVER, env, debug=debug)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        sys.stderr.write("ppadmin: %s (tools/ppadmin.py --help shows the commands)\n" % message)
        sys.exit(EXIT_USAGE)


class _CommandParser(_Parser):
    """A subcommand's parser: options anywhere among its arguments. Plain argparse takes every
    positional it can at the first one, so in `export IMG --mbox F alice` the mailboxes (nargs *)
    were already matched, empty, and `alice` was refused; intermixed parsing takes the options
    out first. (argparse's parse_intermixed_args refuses a parser with subcommands, hence here.)"""

    _intermixed = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixed:  # parse_known_intermixed_args calls back in: plain parsing then
            return _Parser.parse_known_args(self, args, namespace)
        self._intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixed = False


def main(argv=None):
    ap = _Parser(description=__doc__, epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_CommandParser)
    c = sub.add_parser("create", help="make a new formatted image (refuses an existing file)")
    c.add_argument("image")
    c.add_argument("--size", default=DEFAULT_SIZE, help="bytes, or with K/M (default %s)" % DEFAULT_SIZE)
    c.add_argument("--config", help="config.json to put in the image (default boards/host/config.json, no users)")
    a = sub.add_parser("adduser")
    a.add_argument("target")
    a.add_argument("user")
    a.add_argument("--password")
    a.add_argument("--iterations", type=int)
    a.add_argument("--apop-secret", help="opt in to APOP (stored in clear: weaker than PBKDF2)")
    a.add_argument("--force", action="store_true", help="replace an existing user's password")
    pw = sub.add_parser("passwd", help="a new password for an existing user")
    pw.add_argument("target")
    pw.add_argument("user")
    pw.add_argument("--password")
    pw.add_argument("--iterations", type=int)
    du = sub.add_parser("deluser", help="remove a user (the mailbox and its mail stay)")
    du.add_argument("target")
    du.add_argument("user")
    ra = sub.add_parser("rename-account", help="rename a fetch account, its secrets and UIDL state files with it")
    ra.add_argument("target")
    ra.add_argument("old")
    ra.add_argument("new")
    d = sub.add_parser("deliver")
    d.add_argument("image")
    d.add_argument("mailbox")
    d.add_argument("files", nargs="+")
    d.add_argument("--create-mailbox", action="store_true", help="deliver to a mailbox no user reads")
    ls = sub.add_parser("ls")
    ls.add_argument("image")
    rn = sub.add_parser("run", help="run a MicroPython script with the image at /flash (its current directory)")
    rn.add_argument("image")
    rn.add_argument("script")
    c = sub.add_parser("check")
    c.add_argument("image")
    c.add_argument("--repair", action="store_true", help="fix what is found (damaged messages go to damaged/)")
    import mailport_cli  # export/import/backup/restore (tools/mailport_cli.py)

    mailport_cli.add_parsers(sub)
    args = ap.parse_args(argv)
    if args.cmd in mailport_cli.COMMANDS:
        try:
            return mailport_cli.run(args)
        except KeyboardInterrupt:
            sys.stderr.write("ppadmin: interrupted\n")
            return EXIT_INTERRUPTED
    try:
        if args.cmd == "create":
            out = create(args.image, args.size, args.config, debug=args.debug)
        elif args.cmd == "adduser":
            check_name("user", args.user)
            pw = args.password if args.password is not None else ask_password(args.target, args.user, False, args.force,
                                                                                   args.debug)
            out = adduser(args.target, args.user, pw, args.iterations, args.apop_secret, args.force, debug=args.debug)
        elif args.cmd == "passwd":
            check_name("user", args.user)
            pw = args.password if args.password is not None else ask_password(args.target, args.user, True, True,
                                                                                   args.debug)
            out = adduser(args.target, args.user, pw, args.iterations, force=True, debug=args.debug, existing=True)
        elif args.cmd == "deluser":
            out = deluser(args.target, args.user, debug=args.debug)
        elif args.cmd == "rename-account":
            out = rename_account(args.target, args.old, args.new, debug=args.debug)
        elif args.cmd == "deliver":
            out = deliver(args.image, args.mailbox, args.files, args.create_mailbox, debug=args.debug)
        elif args.cmd == "check":
            out, status = check(args.image, args.repair, debug=args.debug)
            sys.stdout.write(out)
            return status
        elif args.cmd == "run":
            sys.stdout.flush()
            return run_script(args.image, args.script, debug=args.debug)
        else:
            out = on_image(args.image, LS, debug=args.debug)
    except (Refused, ImageError, ppconfig.ConfigError) as e:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write("ppadmin: %s\n" % e)
        return getattr(e, "status", EXIT_REFUSED)
    except KeyboardInterrupt:
        sys.stderr.write("ppadmin: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug: still one line unless asked
        if args.debug:
            raise
        sys.stderr.write("ppadmin: unexpected %s: %s (--debug shows the traceback)\n" % (type(e).__name__, e))
        return EXIT_REFUSED
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
