"""Host admin tool for a pocketpost flash image (or a plain config file).

    ppadmin.py adduser IMAGE-or-CONFIG USER [--password PW] [--iterations N] [--apop-secret S]
    ppadmin.py deliver IMAGE MAILBOX FILE.eml [FILE.eml ...]
    ppadmin.py ls IMAGE
    ppadmin.py check IMAGE [--repair]    # every mailbox: index, files, every message read; exit 1 if
                                         # problems are left (found without --repair)

On an image, the work runs under micropython with the image mounted at /flash (tools/hostflash.py),
so the password hashing and the store code are the very ones the board runs. The config inside
the image is /flash/config.json. Do not run it while a server has the same image mounted.
Without --password, the password is asked for (not echoed). It reaches micropython through the
environment, never the command line.
"""

import argparse
import getpass
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
HOSTFLASH = os.path.join(ROOT, "tools", "hostflash.py")
IMAGE_CONFIG = "/flash/config.json"


def micropython():
    p = os.path.join(ROOT, ".venv", "bin", "micropython")
    return p if os.path.exists(p) else "micropython"


def on_image(image, code, env=None, mkfs=False, check=True):
    """Run micropython CODE with IMAGE mounted at /flash; returns its stdout (str)."""
    e = dict(os.environ)
    e["MICROPYPATH"] = FIRMWARE + ":" + os.path.join(ROOT, "tools") + ":.frozen"
    if env:
        e.update(env)
    fd, script = tempfile.mkstemp(suffix=".py", prefix="ppadmin-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(code)
        cmd = [micropython(), HOSTFLASH, image] + (["--mkfs"] if mkfs else []) + ["-f", script]
        r = subprocess.run(cmd, capture_output=True, text=True, env=e)
    finally:
        os.unlink(script)
    if check and r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        raise SystemExit("ppadmin: micropython failed (exit %d)" % r.returncode)
    return r.stdout


ADDUSER = r"""
import os
from pocketpost import config
cfg = config.load_raw(%r)
it = os.getenv("PP_ITER")
config.add_user(cfg, os.getenv("PP_USER"), os.getenv("PP_PASSWORD"), int(it) if it else None,
                apop_secret=os.getenv("PP_APOP") or None)
config.check(cfg)
config.save(%r, cfg)
print("user", os.getenv("PP_USER"), "saved")
""" % (IMAGE_CONFIG, IMAGE_CONFIG)

DELIVER = r"""
import os
from pocketpost import config
from pocketpost.config import open_store
cfg = config.load(%r)
st = open_store(cfg)
box = os.getenv("PP_MAILBOX")
for path in os.getenv("PP_FILES").split("\n"):
    print(box, st.deliver_file(box, path))
""" % IMAGE_CONFIG

LS = r"""
from pocketpost import config
from pocketpost.config import open_store
cfg = config.load(%r)
st = open_store(cfg)
print("users:", " ".join(sorted(cfg["users"])))
for name in st.mailboxes():
    n, size = st.usage(name)
    print("mailbox %%s: %%d messages, %%d octets" %% (name, n, size))
""" % IMAGE_CONFIG

CHECK = r"""
import os
from pocketpost import config, store
from pocketpost.config import open_store
st = open_store(config.load(%r))
rep = st.check(repair=os.getenv("PP_REPAIR") == "1", deep=True)
for name in sorted(rep["mailboxes"]):
    print(store.describe(name, rep["mailboxes"][name]))
print("problems:", rep["problems"])
""" % IMAGE_CONFIG


def check(image, repair=False):
    """Run the store check on an image; returns (output, exit status: 1 if problems are left)."""
    out = on_image(image, CHECK, {"PP_REPAIR": "1" if repair else ""})
    found = [ln for ln in out.splitlines() if ln.startswith("problems:")]
    left = bool(found) and found[-1] != "problems: 0" and not repair
    return out, 1 if left or not found else 0


def adduser(target, user, password, iterations=None, apop_secret=None):
    if target.endswith(".json"):
        sys.path.insert(0, FIRMWARE)
        from pocketpost import config

        cfg = config.load_raw(target)
        config.add_user(cfg, user, password, iterations, apop_secret=apop_secret)
        config.check(cfg)
        config.save(target, cfg)
        return
    env = {"PP_USER": user, "PP_PASSWORD": password, "PP_ITER": str(iterations or ""), "PP_APOP": apop_secret or ""}
    sys.stdout.write(on_image(target, ADDUSER, env))


def deliver(image, mailbox, files):
    env = {"PP_MAILBOX": mailbox, "PP_FILES": "\n".join(os.path.abspath(f) for f in files)}
    return on_image(image, DELIVER, env)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("adduser")
    a.add_argument("target")
    a.add_argument("user")
    a.add_argument("--password")
    a.add_argument("--iterations", type=int)
    a.add_argument("--apop-secret", help="opt in to APOP (stored in clear: weaker than PBKDF2)")
    d = sub.add_parser("deliver")
    d.add_argument("image")
    d.add_argument("mailbox")
    d.add_argument("files", nargs="+")
    ls = sub.add_parser("ls")
    ls.add_argument("image")
    c = sub.add_parser("check")
    c.add_argument("image")
    c.add_argument("--repair", action="store_true", help="fix what is found (damaged messages go to damaged/)")
    args = ap.parse_args(argv)
    if args.cmd == "adduser":
        pw = args.password if args.password is not None else getpass.getpass("password for %s: " % args.user)
        adduser(args.target, args.user, pw, args.iterations, args.apop_secret)
    elif args.cmd == "deliver":
        sys.stdout.write(deliver(args.image, args.mailbox, args.files))
    elif args.cmd == "check":
        out, status = check(args.image, args.repair)
        sys.stdout.write(out)
        sys.exit(status)
    else:
        sys.stdout.write(on_image(args.image, LS))


if __name__ == "__main__":
    main()
