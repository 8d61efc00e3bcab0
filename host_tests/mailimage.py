"""Flash images with mail for the export/import/backup tests, and a server that serves one.

Everything on an image goes through micropython with the image mounted (tools/hostflash.py):
the store code that writes and reads it is the board's.
"""

import json
import os
import poplib
import re
import subprocess
import sys
import time

from helpers import FIRMWARE, MICROPYTHON, ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
import hostimage  # noqa: E402
import mailport  # noqa: E402
import ppadmin  # noqa: E402

BLOCK = 4096

SETUP = r"""
import os
from pocketpost import config
f = open("/flash/config.json", "w"); f.write(os.getenv("PP_CFG")); f.close()
st = config.open_store(config.load("/flash/config.json"))
for line in os.getenv("PP_FILES").split("\n"):
    if line:
        box, arrival, path = line.split(" ", 2)
        print(box, st.deliver_file(box, path, int(arrival)))
"""

DELETE = r"""
import os
from pocketpost import config
st = config.open_store(config.load("/flash/config.json"))
mb = st.lock(os.getenv("PP_BOX"))
print(mb.commit([int(i) for i in os.getenv("PP_IDX").split()]))
"""

DELIVER = r"""
import os
from pocketpost import config
st = config.open_store(config.load("/flash/config.json"))
for line in os.getenv("PP_FILES").split("\n"):
    if line:
        box, arrival, path = line.split(" ", 2)
        print(box, st.deliver_file(box, path, int(arrival)))
"""


def stored_form(m):
    """The bytes the store keeps for message m: lone LF -> CRLF, a final line end."""
    m = re.sub(rb"(?<!\r)\n", b"\r\n", m)
    if m and not m.endswith(b"\n"):
        m += b"\n" if m.endswith(b"\r") else b"\r\n"
    return m


def _files(tmpdir, mail):
    """mail: {box: [bytes or (arrival, bytes)]} -> the PP_FILES lines (files written to tmpdir)."""
    lines = []
    os.makedirs(tmpdir, exist_ok=True)
    k = 0
    for box in sorted(mail):
        for m in mail[box]:
            arrival, data = m if isinstance(m, tuple) else (1700000000 + k, m)
            p = os.path.join(tmpdir, "m%d" % k)
            with open(p, "wb") as f:
                f.write(data)
            lines.append("%s %d %s" % (box, arrival, p))
            k += 1
    return "\n".join(lines)


def _uids(out):
    uids = {}
    for ln in out.splitlines():
        box, uid = ln.split(" ")
        uids.setdefault(box, []).append(uid)
    return uids


def make_image(path, mail, size=2 * 1024 * 1024, cfg=None, tmpdir=None):
    """A new formatted image with /flash/config.json and the mail; returns {box: [uid]}."""
    with open(path, "wb") as f:
        blank = b"\xff" * BLOCK
        for _ in range(size // BLOCK):
            f.write(blank)
    cfg = cfg or {"store": {"root": "/flash/mail", "quota": 0, "reserve": 0}, "users": {}, "accounts": []}
    out = ppadmin.on_image(path, SETUP, {"PP_CFG": json.dumps(cfg), "PP_FILES": _files(tmpdir or path + ".d", mail)}, mkfs=True)
    return _uids(out)


def deliver(path, mail, tmpdir=None):
    return _uids(ppadmin.on_image(path, DELIVER, {"PP_FILES": _files(tmpdir or path + ".d2", mail)}))


def delete(path, box, indices):
    ppadmin.on_image(path, DELETE, {"PP_BOX": box, "PP_IDX": " ".join(str(i) for i in indices)})


class Collect:
    """An export writer that keeps [(uid, arrival, bytes)] per mailbox (small test mail only)."""

    def __init__(self):
        self.boxes = {}
        self.cur = None

    def mailbox(self, name, count, total):
        self.cur = self.boxes.setdefault(name, [])

    def message(self, uid, arrival, size, copy):
        parts = []
        copy(parts.append)
        self.cur.append((uid, arrival, b"".join(parts)))

    def close(self):
        pass


def contents(path, boxes=()):
    """{box: [(uid, arrival, bytes)]} of an image, read through the board-side export."""
    c = Collect()
    mailport.export(path, list(boxes), c)
    return c.boxes


def run_ppadmin(*args, timeout=120):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "ppadmin.py")] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout)


def serve_image(srv, image, users):
    """Put a server config (ports, cert, users) for `srv` (a serverharness.Pop3Server made for
    its ports and certificate) into image, then start the real server on the image."""
    from pocketpost import config

    cfg = srv.read_config()
    cfg["store"] = {"root": "/flash/mail", "quota": 0, "reserve": 0}
    cfg["users"] = {}
    for name, pw in users.items():
        config.add_user(cfg, name, pw, 200)
    ppadmin.on_image(image, 'f = open("/flash/config.json", "w"); f.write(%r); f.close()\n' % json.dumps(cfg))
    srv.start(args=[os.path.join(ROOT, "tools", "hostflash.py"), image, "-m", "pocketpost.server", "/flash/config.json"],
              micropypath=FIRMWARE + ":" + os.path.join(ROOT, "tools"))
    return srv


def serve_locked(image, port):
    """The POP3 server on IMAGE under micropython, holding the image lock as run_host does (the
    lock passed on to the server, so only it holds it: ppadmin sees the image in use). Returns
    the process once a POP3 greeting came, the caller kills it."""
    lock = hostimage.ImageLock(image)
    tools = os.path.join(ROOT, "tools")
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":" + tools + ":.frozen")
    proc = subprocess.Popen([MICROPYTHON, os.path.join(tools, "hostflash.py"), image, "-m", "pocketpost.server",
                             "/flash/config.json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            pass_fds=(lock.fd,))
    lock.release()  # from here only the server holds it
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("server exited")
        try:
            poplib.POP3("127.0.0.1", port, timeout=5).quit()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError("server did not start")
