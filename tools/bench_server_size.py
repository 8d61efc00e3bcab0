#!/usr/bin/env python3
"""Figures (not a test): where the server side's heap goes, code loaded from `.mpy`, micropython
unix port (64-bit), live heap = `gc.mem_alloc()` after `gc.collect()`:

  per module: the heap each one adds when the server path is imported one module at a time in
      dependency order (each delta: the module's dict, functions, bytecode, constants, qstrs);
  stages: the live heap after each start-up step as board.main / tools/heapwork.py run them
      (tools/heapstages.py: import config, config.load, open_store, import server, server.start,
      smtpserver.start, the cold modules dropped), then per connected peer: a plain POP3
      session after its greeting, the same logged in, a POP3S session after its greeting and
      logged in, an SMTP session after EHLO, after MAIL/RCPT, in DATA (smtpenv.py dropped;
      smtpdata.py, store.py, unstuffer.py, the Delivery and the output block in) and once the
      message is stored. Here the names cross 620 in DATA (609 after EHLO, 638 in DATA: the
      probe's and the POP3S session's names come first), so DATA's step carries a 7.1 KB
      pool of names that `-m pocketpost.smtpserver` does not allocate
      (host_tests/test_smtp_names.py: 606 after a whole session); bench_heap c is past that
      pool already (~950 names, the next at 1,260).

Run: .venv/bin/python tools/bench_server_size.py [--no-smtp]   (the working tree; another tree's
firmware with BENCH_FIRMWARE=/path/to/firmware, as for every tools/bench_*.py)
"""

import os
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import build_mpy  # noqa: E402
from helpers import MICROPYTHON, free_port  # noqa: E402
from serverharness import Pop3Server  # noqa: E402

ORDER = ("compat", "log", "wire", "pop3", "auth", "config", "storecore", "store", "storeindex", "storesession",
         "storemerge", "storecommit", "storescan", "storecheck", "storeopen", "storerare", "storewalk", "heapmark", "tls",
         "transport", "listener", "pop3server", "pop3cmd", "server", "groupcommit", "smtp", "smtpserver")
STEP = benchlib.IMPORT_STEPS


def steps(mpy, tmp):
    probe = os.path.join(tmp, "steps.py")
    with open(probe, "w") as f:
        f.write(STEP % (ORDER,))
    env = dict(os.environ, MICROPYPATH=mpy + ":.frozen")
    r = subprocess.run([MICROPYTHON, probe], capture_output=True, env=env, cwd=tmp, check=True)
    return [ln.split()[1:] for ln in r.stdout.decode().splitlines() if ln.startswith("STEP")]


class Prober:
    def __init__(self, srv, pdir):
        self.srv = srv
        self.pdir = pdir
        self.n = 0

    def probe(self):
        p = os.path.join(self.pdir, str(self.n))
        open(p, "w").close()
        want = "PROBE %d " % self.n
        deadline = time.time() + 20
        while time.time() < deadline:
            for ln in self.srv.log().splitlines():
                if ln.startswith(want):
                    self.n += 1
                    return int(ln.split()[2])
            time.sleep(0.02)
        raise RuntimeError("no probe: " + self.srv.log()[-2000:])


def line(s):
    b = b""
    while not b.endswith(b"\r\n"):
        d = s.recv(1)
        if not d:
            raise EOFError
        b += d
    return b


def sessions(srv, pr, smtp_port):
    out = []
    base = pr.probe()
    out.append(("nothing connected", base, 0))
    last = base
    socks = []

    def step(name):
        nonlocal last
        v = pr.probe()
        out.append((name, v, v - last))
        last = v

    s = socket.create_connection(("127.0.0.1", srv.port), 10)
    socks.append(s)
    line(s)
    step("POP3 session, greeted")
    s.sendall(b"USER u0\r\n")
    line(s)
    s.sendall(b"PASS pw\r\n")
    if not line(s).startswith(b"+OK"):
        raise RuntimeError("login")
    step("  + logged in")
    if srv.pop3s_on:
        t = socket.create_connection(("127.0.0.1", srv.pop3s_port), 10)
        ctx = ssl.create_default_context(cafile=srv.ca)
        t = ctx.wrap_socket(t, server_hostname="localhost")
        socks.append(t)
        line(t)
        step("POP3S session, greeted")
        t.sendall(b"USER u1\r\nPASS pw\r\n")
        line(t)
        if not line(t).startswith(b"+OK"):
            raise RuntimeError("login")
        step("  + logged in")
    if smtp_port:
        c = smtplib.SMTP("127.0.0.1", smtp_port, timeout=20)
        c.ehlo("probe")
        step("SMTP session after EHLO")
        c.mail("probe@example.org")
        c.rcpt("u0@example.org")
        step("  + MAIL FROM, RCPT TO")
        # The message phase: smtpenv.py dropped, smtpdata.py, the store's Delivery and the
        # session's output block in (what bench_heap c's SMTP session holds while it receives)
        c.putcmd("data")
        if c.getreply()[0] != 354:
            raise RuntimeError("DATA")
        c.send(b"Subject: probe\r\n\r\n" + b"x" * 2000 + b"\r\n")
        step("  + in DATA (2 KB of text)")
        c.send(b".\r\n")
        if c.getreply()[0] != 250:
            raise RuntimeError("DATA's end")
        step("  + stored, before QUIT")
        socks.append(c)
    for s in socks:
        try:
            s.close()
        except Exception:
            pass
    return out


def main(argv):
    smtp = "--no-smtp" not in argv
    with tempfile.TemporaryDirectory() as tmp:
        mpy = build_mpy(os.path.join(tmp, "mpy"), extra=(os.path.join(HERE, "heapstages.py"),))
        st = steps(mpy, tmp)
        print("heap per module (imported one by one, bytes): " + ", ".join("%s %s" % (m, b) for m, b in st)
              + "; sum %d" % sum(int(b) for _, b in st))
        d = os.path.join(tmp, "srv")
        os.makedirs(d)
        pdir = os.path.join(tmp, "probe")
        os.makedirs(pdir)
        msg = b"From: a@example.org\r\nSubject: x\r\n\r\nhello\r\n"
        srv = Pop3Server(d, {"u0": [msg], "u1": [msg]}, users={"u0": "pw", "u1": "pw"},
                         server={"idle_timeout": 120, "max_sessions": 4, "max_sessions_per_addr": 4})
        import json

        with open(srv.config_path) as f:
            cfg = json.load(f)
        smtp_port = 0
        if smtp:
            smtp_port = free_port()
            cfg["smtp"] = {"port": smtp_port, "submission_port": 0, "smtps_port": 0, "domains": ["example.org"]}
        cfg["log"] = {"level": "info"}
        with open(srv.config_path, "w") as f:
            json.dump(cfg, f)
        flags = ["smtp"] if smtp else []
        srv.start(args=["-m", "heapstages", srv.config_path, pdir] + flags, micropypath=mpy)
        try:
            deadline = time.time() + 20
            while "READY" not in srv.log() and time.time() < deadline:
                time.sleep(0.02)
            prev = 0
            for ln in srv.log().splitlines():
                if ln.startswith("STAGE"):
                    _, name, v = ln.split()
                    print("stage %-18s %7d B  (+%d)" % (name, int(v), int(v) - prev))
                    prev = int(v)
                elif ln.startswith("MODS"):
                    print("loaded:", ln[5:])
            for name, v, dv in sessions(srv, Prober(srv, pdir), smtp_port):
                print("peer  %-28s %7d B  (+%d)" % (name, v, dv))
        finally:
            srv.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
