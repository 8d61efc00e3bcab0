"""A private Postfix on loopback, relaying one domain to the board's SMTP receiver (the SMTP tests).

`Postfix(relay_domain, board_port).start()` writes its own main.cf and master.cf into a temporary
config directory (no system service, nothing under /etc changed; queue, data and log in the same
folder), starts the master with `postfix -c DIR start` on a free loopback port, and waits (bounded)
until it accepts. The transport map sends every message for `relay_domain` to 127.0.0.1:board_port
(opportunistic STARTTLS); retries are fast (1-2 s back-off); `extra_main` is appended to main.cf
(a later line wins). `flush()` asks for an immediate retry; `log()` is the mail log; `stop()` runs
`postfix -c DIR stop` and kills what is left of the master (bounded); call it from a fixture
teardown.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from helpers import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.test
mydomain = relay.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = {domain}
transport_maps = inline:{{ {domain}=smtp:[127.0.0.1]:{board} }}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_tls_security_level = may
smtp_tls_loglevel = 1
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connect_timeout = 5s
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
"""

# Every service runs outside a chroot (column 5 "n"): the queue lives in a temp folder.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available():
    return shutil.which("postfix") is not None and os.geteuid() == 0


class Postfix:
    def __init__(self, domain, board_port, extra_main=""):
        self.dir = tempfile.mkdtemp(prefix="pp-postfix-")
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, "conf")
        os.makedirs(self.conf)
        self.port = free_port()
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(d=self.dir, domain=domain, board=board_port) + extra_main)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port))
        self.started = False

    def _run(self, *args, timeout=60):
        return subprocess.run(["postfix", "-c", self.conf] + list(args), capture_output=True, text=True, timeout=timeout)

    def start(self):
        # postfix start makes the queue's subdirectories; the two top folders must exist.
        os.makedirs(os.path.join(self.dir, "queue"))
        os.makedirs(os.path.join(self.dir, "data"))
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        r = self._run("start")
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: %s %s" % (r.stdout, r.stderr))
        self.started = True
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            try:
                s = socket.create_connection(("127.0.0.1", self.port), 1)
                s.settimeout(5)
                ok = s.recv(200).startswith(b"220")
                s.sendall(b"QUIT\r\n")
                s.close()
                if ok:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("postfix did not accept on %d: %s" % (self.port, self.log()))

    def flush(self):
        subprocess.run(["postqueue", "-c", self.conf, "-f"], capture_output=True, timeout=30)

    def queue_empty(self):
        r = subprocess.run(["postqueue", "-c", self.conf, "-j"], capture_output=True, text=True, timeout=30)
        return r.returncode == 0 and not r.stdout.strip()

    def log(self):
        try:
            with open(os.path.join(self.dir, "postfix.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_log(self, text, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log():
                return True
            time.sleep(0.1)
        return False

    def _master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        if self.started:
            pid = self._master_pid()
            try:
                self._run("stop", timeout=STOP_TIMEOUT + 5)
            except subprocess.TimeoutExpired:
                pass
            if pid:
                deadline = time.time() + STOP_TIMEOUT
                while time.time() < deadline:
                    try:
                        os.kill(pid, 0)
                    except OSError:
                        break
                    time.sleep(0.1)
                else:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)
