"""A private Dovecot POP3 server on loopback for the client's tests (see ../shared/DOVECOT.md).

`Dovecot(users).start()` makes a test CA and a server certificate with openssl, writes its own
dovecot.conf (no system service, nothing under /etc), starts the master on two free high ports
(plain + STLS, and POP3S) on 127.0.0.1 and 127.0.0.2 (its certificate names only localhost and
127.0.0.1: the second address is where a client meets a certificate for another name), waits
(bounded) until both accept, and makes one warm-up login so the auth process's one-time start
cost is not charged to a test. `stop()` sends TERM to the master pid and leaves the wait (bounded)
to a thread; call it from a `finally`/fixture teardown. Every file lives in one temporary folder
readable by Dovecot's unprivileged users.

Messages are seeded as Maildir files (`seed`) and read back (`messages`) for byte-exact checks of
what the server still holds after a fetch.
"""

import os
import poplib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from helpers import free_port

MAIL_UID = 5000  # Dovecot refuses uid 0 for mail processes (first_valid_uid = 1000)
START_TIMEOUT = 20.0  # seconds for the master to bind its listeners
STOP_TIMEOUT = 10.0

CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = pop3
listen = 127.0.0.1, 127.0.0.2
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1000
mail_location = maildir:~/Maildir
disable_plaintext_auth = no
auth_mechanisms = {mechs}
auth_failure_delay = 0
ssl = yes
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
ssl_dh = </usr/share/dovecot/dh.pem
ssl_min_protocol = TLSv1.2
pop3_uidl_format = %08Xu%08Xv
mail_max_userip_connections = 50
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/passwd
}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1, 127.0.0.2
    port = {port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1, 127.0.0.2
    port = {sport}
    ssl = yes
  }}
}}
{extra}
"""


def _run(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=60)


def _reap(pid, d):
    """The rest of Dovecot.stop(): wait (bounded) for the master to exit, else KILL it; remove d."""
    deadline = time.time() + STOP_TIMEOUT
    while pid and time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    shutil.rmtree(d, ignore_errors=True)


def make_ca(d, name="ca", cn="pocketpost test CA"):
    """A self-signed CA in d: name.key, name.pem, name.der."""
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj", "/CN=" + cn,
          "-keyout", name + ".key", "-out", name + ".pem"], d)
    _run(["openssl", "x509", "-in", name + ".pem", "-outform", "DER", "-out", name + ".der"], d)


def make_server_cert(d, ca="ca", name="server", host="localhost"):
    """A server certificate for `host` (and 127.0.0.1) signed by the CA `ca` in d."""
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" % host)
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + host,
          "-keyout", name + ".key", "-out", name + ".csr"], d)
    _run(["openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
          "-CAcreateserial", "-days", "3", "-extfile", name + ".ext", "-out", name + ".pem"], d)
    _run(["openssl", "x509", "-in", name + ".pem", "-outform", "DER", "-out", name + ".der"], d)
    _run(["openssl", "pkey", "-in", name + ".key", "-outform", "DER", "-out", name + ".key.der"], d)


class Dovecot:
    def __init__(self, users=None, mechs="plain login apop", extra="", prepare=None):
        self.users = users or {"alice": "wonder land"}
        self.mechs = mechs
        self.extra = extra  # more config; "{d}" stands for the instance's folder
        self.prepare = prepare  # called with self once the folder and certificates exist, before the start
        self.dir = None
        self.proc_pid = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self):
        self.dir = d = tempfile.mkdtemp(prefix="pp-dovecot-")
        os.chmod(d, 0o755)
        for sub in ("run", "state"):
            os.mkdir(os.path.join(d, sub))
        make_ca(d)
        make_ca(d, "otherca", "some other CA")
        make_server_cert(d)
        os.chmod(os.path.join(d, "server.key"), 0o644)
        with open(os.path.join(d, "passwd"), "w") as f:
            for u, p in self.users.items():
                home = os.path.join(d, "home", u)
                for sub in ("new", "cur", "tmp"):
                    os.makedirs(os.path.join(home, "Maildir", sub))
                scheme = "" if p.startswith("{") else "{PLAIN}"  # "{SCRAM-SHA-256}...": stored as given
                f.write("%s:%s%s:%d:%d::%s::\n" % (u, scheme, p, MAIL_UID, MAIL_UID, home))
        self._chown(os.path.join(d, "home"))
        self.port = free_port()
        self.sport = free_port()
        while self.sport == self.port:
            self.sport = free_port()
        self.conf = os.path.join(d, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(CONF.format(d=d, port=self.port, sport=self.sport, mechs=self.mechs,
                                extra=self.extra.replace("{d}", d)))
        if self.prepare is not None:
            self.prepare(self)
        subprocess.run(["dovecot", "-c", self.conf], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.time() + START_TIMEOUT
        while True:
            try:
                for p in (self.port, self.sport):
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError("dovecot did not start: " + self.log()[-2000:])
                time.sleep(0.05)
        self._warm_up()
        return self

    def _warm_up(self):
        u, p = next(iter(self.users.items()))
        c = poplib.POP3("127.0.0.1", self.port, timeout=30)
        try:
            c.user(u)
            c.pass_(p)
        finally:
            c.quit()

    def __enter__(self):
        """`with Dovecot(users) as d:` started, stopped on the way out (a module fixture's body)."""
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """TERM to the master; the wait for it to exit (bounded, then KILL) and the folder's removal
        go on in a thread: the master takes ~2.5 s to exit, and nothing after a stop needs it gone
        (a next start takes new ports and a new folder). The interpreter joins these threads
        before it exits, so no Dovecot outlives the test run."""
        if self.dir is None:
            return
        pidfile = os.path.join(self.dir, "run", "master.pid")
        pid = None
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            pass
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pid = None
        threading.Thread(target=_reap, args=(pid, self.dir), name="dovecot-stop").start()
        self.dir = None

    def log(self):
        try:
            with open(os.path.join(self.dir, "dovecot.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def path(self, name):
        return os.path.join(self.dir, name)

    # -- mailbox -----------------------------------------------------------------------
    def _chown(self, top):
        for root, dirs, files in os.walk(top):
            os.chown(root, MAIL_UID, MAIL_UID)
            for n in files:
                os.chown(os.path.join(root, n), MAIL_UID, MAIL_UID)

    def maildir(self, user):
        return os.path.join(self.dir, "home", user, "Maildir")

    def seed(self, user, messages, clear=True):
        """Replace (or extend) the user's mailbox with `messages` (bytes each), in order.
        Dovecot's index is dropped too, so UIDs start afresh."""
        md = self.maildir(user)
        if clear:
            home = os.path.dirname(md)
            shutil.rmtree(md)
            for sub in ("new", "cur", "tmp"):
                os.makedirs(os.path.join(md, sub))
            for n in os.listdir(home):
                if n != "Maildir":
                    p = os.path.join(home, n)
                    shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        base = int(time.time())
        start = len(self.messages(user))
        for i, m in enumerate(messages):
            name = "%d.M%06dP%d.pocketpost" % (base, start + i, os.getpid())
            tmp = os.path.join(md, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(m)
            os.rename(tmp, os.path.join(md, "new", name))
        self._chown(md)

    def messages(self, user):
        """The bytes of every message the user's mailbox holds, sorted by seed order."""
        md = self.maildir(user)
        names = []
        for sub in ("new", "cur"):
            for n in os.listdir(os.path.join(md, sub)):
                names.append((n.split(":")[0], os.path.join(md, sub, n)))
        out = []
        for _, p in sorted(names):
            with open(p, "rb") as f:
                out.append(f.read())
        return out
