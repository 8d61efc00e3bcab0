"""Benchmark login cost and fairness of the POP3 server under micropython (not a test: prints figures).

0. Event-loop stall in-process under micropython (no sockets: the login loop of server.py next
   to a ticker task; the longest gap between the ticker's wake-ups during ten logins).
1. Event-loop stall during logins over sockets: one session streams a large RETR (read in 16 KiB recv calls)
   while another thread does ten logins (USER/PASS, right password); the figure is the longest
   gap between two recv calls that returned data during the logins, next to the same gap with no
   login running (the baseline), and the time of one login.
2. Known vs unknown user: wrong-password logins (no failure delay) for a known user and for an
   unknown one, alternating, `--tries` each; median and spread of each. Twice: every hash at the
   board's count, and a config moved from elsewhere (the known user's stored hash has a tenth of
   the board's count: the check is padded up to it).
3. Pre-auth peers: N silent / garbage-TLS / failed-login connections above the board's caps,
   held open, while poplib logs in and reads its mail; how many were held, how long the user
   waited. For the ESP32's caps (2, 1 per address) and the host's (8, 4).

    .venv/bin/python tools/bench_auth.py [--iterations 20000] [--tries 30]
"""

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
sys.path.insert(0, os.path.join(ROOT, "firmware"))
from serverharness import Pop3Server, Raw, msg, user_reads_all  # noqa: E402
from pocketpost import auth  # noqa: E402

# In-process under micropython: the server's login loop (Session.handle, then resume() after
# each asyncio.sleep(0), as server.py runs it) next to a ticker task that records the longest
# gap between its own wake-ups: the event-loop stall a login causes, without sockets or clients.
LOOP_STALL = r"""
import asyncio, sys, time, os
from pocketpost import config, log
from pocketpost.pop3cmd import Session
from pocketpost.pop3server import Service
log.set_sink(lambda line: None)
its, us, n_logins = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
cfg = config.check({"server": {"pbkdf2_iterations": its, "pbkdf2_iteration_us": us, "auth_delays": [0]}})
config.add_user(cfg, "alice", "pw", its)
cfg = config.check(cfg)
svc = Service(cfg["server"], cfg["users"], None)
state = {"run": True, "worst": 0, "ticks": 0}

async def ticker():
    last = time.ticks_us()
    while state["run"]:
        await asyncio.sleep(0)
        now = time.ticks_us()
        g = time.ticks_diff(now, last)
        if g > state["worst"]:
            state["worst"] = g
        state["ticks"] += 1
        last = now

async def logins():
    times = []
    for i in range(n_logins):
        s = Session(svc, "127.0.0.1")
        s.handle(b"USER " + (b"alice" if i % 2 else b"nobody"))
        t = time.ticks_us()
        r = s.handle(b"PASS wrong")
        while r is None:
            await asyncio.sleep(0)
            r = s.resume()
        times.append(time.ticks_diff(time.ticks_us(), t))
        s.close()
    state["run"] = False
    times.sort()
    return times[len(times) // 2]

async def main():
    t = asyncio.create_task(ticker())
    med = await logins()
    await t
    print(state["worst"], med, state["ticks"])

asyncio.run(main())
"""

GARBAGE_HELLO = b"\x16\x03\x01\x40\x00" + b"\x01\x80\x00\x00" + b"\x03\x03" + b"\x00" * 40


def login_once(port, user=b"alice", pw=b"alice pass"):
    c = Raw(port)
    c.line()
    c.cmd(b"USER " + user)
    t = time.perf_counter()
    r = c.cmd(b"PASS " + pw)
    took = time.perf_counter() - t
    c.send(b"QUIT\r\n")
    c.close()
    return r, took


def stall(iterations):
    big = msg(1, 1) + b"".join(b"%07d " % i + b"z" * 100 + b"\r\n" for i in range(20000))  # ~2 MB
    d = tempfile.mkdtemp()
    s = Pop3Server(d, {"alice": [msg(2)], "bob": [big]}, server={
        "pbkdf2_iterations": iterations, "pbkdf2_iteration_us": 2, "auth_delays": [0], "idle_timeout": 600})
    s.start()
    try:
        login_once(s.port)  # rehash alice to the board's count first
        b = Raw(s.port)
        b.line()
        b.cmd(b"USER bob")
        b.cmd(b"PASS bobpw")
        b.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        b.send(b"RETR 1\r\n")
        gaps = []
        logging = [False]
        times = []

        def logins():
            time.sleep(0.5)
            logging[0] = True
            for _ in range(10):
                r, took = login_once(s.port)
                assert r.startswith(b"+OK"), r
                times.append(took)
            logging[0] = False

        th = threading.Thread(target=logins)
        th.start()
        base = []
        tail = b""
        last = time.perf_counter()
        while True:
            d2 = b.s.recv(16384)
            now = time.perf_counter()
            if not d2:
                break
            (gaps if logging[0] else base).append(now - last)
            last = now
            tail = (tail + d2)[-5:]
            if tail == b"\r\n.\r\n":
                if not th.is_alive():
                    break
                b.send(b"RETR 1\r\n")  # keep streaming until the logins are done
        th.join()
        b.close()
        return max(gaps) if gaps else None, max(base[50:]) if len(base) > 50 else None, statistics.median(times), len(gaps)
    finally:
        s.stop()


def known_unknown(iterations, tries, known_its=None):
    d = tempfile.mkdtemp()
    s = Pop3Server(d, {"alice": [msg(1)]}, server={
        "pbkdf2_iterations": iterations, "pbkdf2_iteration_us": 2, "auth_delays": [0], "max_auth_failures": 100})
    if known_its:
        with open(s.config_path) as f:
            cfg = json.load(f)
        cfg["users"]["alice"]["password"] = auth.hash_password("alice pass", known_its)
        with open(s.config_path, "w") as f:
            json.dump(cfg, f)
    s.start()
    try:
        k, u = [], []
        for _ in range(tries):
            k.append(login_once(s.port, b"alice", b"wrong")[1])
            u.append(login_once(s.port, b"nobody", b"wrong")[1])
        return statistics.median(k), statistics.median(u), statistics.pstdev(k), statistics.pstdev(u)
    finally:
        s.stop()


def preauth(caps, addrs):
    max_sessions, per_addr = caps
    d = tempfile.mkdtemp()
    mail = [msg(1), msg(2, 200)]
    s = Pop3Server(d, {"alice": mail}, server={"max_sessions": max_sessions, "max_sessions_per_addr": per_addr,
                                               "tls_handshake_timeout": 20, "auth_timeout": 60, "auth_delays": [30]})
    s.start()
    held = []
    try:
        kinds = ("silent", "garbage-tls", "silent-tls", "failed-login")
        n = 0
        for rnd in range(per_addr + 1):
            for a in addrs:
                for k in kinds:
                    c = socket.socket()
                    c.settimeout(10)
                    c.bind((a, 0))
                    c.connect(("127.0.0.1", s.port if k in ("silent", "failed-login") else s.pop3s_port))
                    if k == "garbage-tls":
                        c.sendall(GARBAGE_HELLO)
                    elif k == "failed-login":
                        c.sendall(b"USER alice\r\nPASS wrong\r\n")
                    held.append(c)
                    n += 1
                    time.sleep(0.05)
        time.sleep(0.5)

        got, waited = user_reads_all(s.port, len(mail))
        assert got == mail
        open_now = 0
        for c in held:
            c.setblocking(False)
            try:
                while True:
                    x = c.recv(4096)
                    if not x:
                        break
            except BlockingIOError:
                open_now += 1
            except OSError:
                pass
        return n, open_now, waited
    finally:
        for c in held:
            c.close()
        s.stop()


def loop_stall(its, us, logins=10):
    import subprocess

    from helpers import MICROPYTHON

    env = dict(os.environ)
    env["MICROPYPATH"] = os.path.join(ROOT, "firmware") + ":.frozen"
    r = subprocess.run([MICROPYTHON, "-c", LOOP_STALL, str(its), str(us), str(logins)], capture_output=True,
                       env=env, cwd=ROOT, timeout=600)
    if r.returncode:
        raise RuntimeError(r.stderr.decode() + r.stdout.decode())
    worst, med, ticks = (int(x) for x in r.stdout.split())
    return worst / 1000, med / 1000, ticks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=20000, help="the board's count (host profile: 20000)")
    ap.add_argument("--tries", type=int, default=30)
    a = ap.parse_args()
    for its, us in ((a.iterations, 2), (auth.MAX_ITERATIONS, 2), (a.iterations, 300)):
        worst, med, ticks = loop_stall(its, us)
        print("loop stall (in-process, micropython): %d iterations, chunk for %s us/iteration: longest gap of the"
              " event loop during 10 logins %.2f ms; one login %.1f ms (median); %d ticker wake-ups"
              % (its, us, worst, med, ticks))
    for its in (a.iterations, auth.MAX_ITERATIONS):
        worst, base, one, n = stall(its)
        print("stall: %d iterations: longest recv gap of a streaming RETR during 10 logins %.1f ms (%d gaps;"
              " without logins %.1f ms); one login %.1f ms"
              % (its, worst * 1000, n, (base or 0) * 1000, one * 1000))
    k, u, sk, su = known_unknown(a.iterations, a.tries)
    print("known vs unknown, %d iterations, %d tries each: known %.1f ms (sd %.1f), unknown %.1f ms (sd %.1f),"
          " difference %+.1f ms" % (a.iterations, a.tries, k * 1000, sk * 1000, u * 1000, su * 1000, (k - u) * 1000))
    k, u, sk, su = known_unknown(a.iterations, a.tries, a.iterations // 10)
    print("known (stored at %d, padded) vs unknown, %d tries each: known %.1f ms (sd %.1f), unknown %.1f ms (sd %.1f),"
          " difference %+.1f ms" % (a.iterations // 10, a.tries, k * 1000, sk * 1000, u * 1000, su * 1000, (k - u) * 1000))
    for name, caps, addrs in (("esp32", (2, 1), ("127.0.0.2", "127.0.0.3")),
                              ("host", (8, 4), ("127.0.0.2", "127.0.0.3", "127.0.0.4"))):
        n, open_now, waited = preauth(caps, addrs)
        print("pre-auth (%s caps %d/%d per address): %d silent/garbage-TLS/failed-login connections opened,"
              " %d still held open after the user logged in, read 2 messages and quit; the user waited %.3f s"
              % (name, caps[0], caps[1], n, open_now, waited))


if __name__ == "__main__":
    main()
