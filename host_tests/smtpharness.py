"""Start the POP3 server and the SMTP receiver together under micropython for the SMTP e2e tests
(`micropython -m pocketpost.smtpserver config.json`). Builds on serverharness.Pop3Server: the same
temp dir, store, users and certificate, plus an "smtp" config section on free ports."""

import poplib
import socket
import subprocess
import time

from helpers import free_port
from serverharness import Pop3Server, Raw, config
from smtptrace import body_of  # noqa: F401 - the SMTP tests take it from here

DOMAINS = ["example.org", "home.example"]
# A server (Pop3Server's `server=`) that trusts no network: a sender on loopback is one from afar
# (only <CRLF>.<CRLF> ends its DATA; a LAN device is so by default), and the tests' POP3 logins
# in plain text are allowed all the same.
UNTRUSTED = {"trusted_networks": [], "plaintext_auth": "always"}


class SmtpPop3Server(Pop3Server):
    def __init__(self, base, smtp=None, **kw):
        super().__init__(base, **kw)
        used = {self.port, self.pop3s_port}
        ports = []
        while len(ports) < 3:
            p = free_port()
            if p not in used:
                used.add(p)
                ports.append(p)
        self.smtp_port, self.submission_port, self.smtps_port = ports
        cfg = self.read_config()
        sm = {"port": self.smtp_port, "submission_port": self.submission_port, "smtps_port": self.smtps_port,
              "domains": DOMAINS, "aliases": {"postmaster": "alice", "info@home.example": "bob"},
              "command_timeout": 5, "data_timeout": 3, "preauth_timeout": 4, "max_sessions": 4,
              "max_sessions_per_addr": 4, "slot_wait": 0.3, "max_message_size": 4 * 1024 * 1024}
        sm.update(smtp or {})
        cfg["smtp"] = sm
        config.check(cfg)
        self.write_config(cfg)
        self.sm = sm
        self.tls_on = bool(cfg["server"]["cert"])

    def smtp_ports(self):
        """The SMTP ports that listen (SMTPS only with a certificate)."""
        sm = self.sm
        return [p for p in (sm["port"], sm["submission_port"], sm["smtps_port"] if self.tls_on else 0) if p]

    def start(self, args=None, **kw):
        super().start(args or ["-m", "pocketpost.smtpserver", self.config_path], **kw)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                for p in self.smtp_ports():
                    socket.create_connection(("127.0.0.1", p), 0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("smtp did not start: %s" % self.log())

    def pop3_messages(self, user, password):
        """Every message of the user's mailbox, fetched over POP3 with poplib (the server runs)."""
        p = poplib.POP3("127.0.0.1", self.port, timeout=10)
        try:
            p.user(user)
            p.pass_(password)
            n = len(p.list()[1])
            out = []
            for i in range(n):
                lines = p.retr(i + 1)[1]
                out.append(b"".join(ln + b"\r\n" for ln in lines))
            p.quit()
            return out
        finally:
            try:
                p.close()
            except Exception:
                pass


def last_reply_line(f):
    """The last line of one (possibly multi-line) SMTP reply read from the binary file `f`."""
    while True:
        ln = f.readline()
        if not ln:
            raise EOFError("closed")
        if ln[3:4] != b"-":
            return ln


class Peer(Raw):
    """A raw SMTP sender: a command's answer is a whole reply (the POP3 Raw's lines, eof, close)."""

    def __init__(self, port, timeout=15):
        Raw.__init__(self, port, timeout)

    def reply(self):
        """The last line of one (possibly multi-line) reply."""
        while True:
            ln = self.line()
            if ln[3:4] != b"-":
                return ln

    def cmd(self, c):
        self.send(c + b"\r\n")
        return self.reply()


def curl(*args):
    """curl (an SMTP sender: smtp://, smtps://, --upload-file), bounded in time."""
    return subprocess.run(["curl", "-s", "-S", "--max-time", "30"] + list(args), capture_output=True, timeout=40)


def template_smtp_caps(board="esp32"):
    """A board template's SMTP caps and timeouts, the defaults where it sets none (the ESP32's,
    boards/esp32/config.json: one session, no waiting room, for its 10 sockets; README "Sockets")."""
    import json
    import os

    from helpers import ROOT

    with open(os.path.join(ROOT, "boards", board, "config.json")) as f:
        sm = json.load(f)["smtp"]
    keys = ("max_sessions", "max_sessions_per_addr", "slot_wait", "command_timeout", "data_timeout", "preauth_timeout")
    return {k: sm[k] if sm.get(k) is not None else config.SMTP_DEFAULTS[k] for k in keys}


def burst(port, count, gap, timeout=120, rcpt="alice@example.org"):
    """A camera burst: `count` smtplib senders, each in its own thread started `gap` seconds after
    the one before, each delivering one message ("Subject: burst N") and quitting, with no retry.
    Returns ({N: "ok" or why it failed}, seconds until the last ended)."""
    import smtplib
    import threading

    got = {}

    def send(i):
        try:
            c = smtplib.SMTP("127.0.0.1", port, timeout=timeout)
            c.sendmail("cam%d@cam.lan" % i, [rcpt], b"Subject: burst %d\r\n\r\nframe %d\r\n" % (i, i))
            got[i] = "ok"
            try:
                c.quit()
            except Exception:  # (stored: its 250 came; a QUIT that fails loses nothing)
                pass
        except Exception as e:
            got.setdefault(i, "%s: %s" % (type(e).__name__, e))

    t0 = time.time()
    threads = []
    for i in range(count):
        t = threading.Thread(target=send, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(gap)
    for t in threads:
        t.join(timeout + 30)
    return got, time.time() - t0
