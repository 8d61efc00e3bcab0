#!/usr/bin/env python3
"""Benchmark the server's AUTH SCRAM-SHA-256 under micropython (not a test: prints figures).

In-process (the sans-I/O session, no sockets): for a known user with the right proof, the same
user with a wrong proof, and an unknown user, alternating, `--tries` each, the time the server
spends on the two SCRAM steps (client-first -> server-first, client-final -> its answer), as
median and spread in microseconds. The client's proofs are computed beforehand (scram.ScramClient)
and are not timed; neither is the failure delay (the session only names it). Also the client's
PBKDF2 at the board's count, i.e. what SCRAM moves from the server to the client.

    .venv/bin/python tools/bench_scram.py [--iterations 1000] [--tries 200]
"""

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "host_tests"))
from helpers import MICROPYTHON  # noqa: E402

INNER = r"""
import binascii, time
from pocketpost import auth, config, log, scram
from pocketpost.pop3cmd import Session
from pocketpost.pop3server import Service
log.set_sink(lambda line: None)

class NoStore:
    def lock(self, name):
        raise OSError("not for a benchmark")

ITS = %d
TRIES = %d
cfg = config.check({"server": {"pbkdf2_iterations": ITS, "auth_delays": [0]}})
config.add_user(cfg, "alice", "pass word", ITS)
cfg = config.check(cfg)
svc = Service(cfg["server"], cfg["users"], NoStore())
svc.max_failures = 1 << 30

def b64(x):
    return binascii.b2a_base64(x).rstrip(b"\n")

def one(user, pw):
    # returns (us for step 1, us for step 2) for one exchange; the client's work is not timed
    s = Session(svc, "127.0.0.1")
    c = scram.ScramClient(user, pw)
    line = b"AUTH SCRAM-SHA-256 " + b64(c.first())
    t0 = time.ticks_us()
    r = s.handle(line)
    t1 = time.ticks_us()
    c.server_first(binascii.a2b_base64(r[2:-2]))
    while not c.step(100000):
        pass
    line = b64(c.final())
    t2 = time.ticks_us()
    r = s.handle(line)
    t3 = time.ticks_us()
    return time.ticks_diff(t1, t0), time.ticks_diff(t3, t2), r[:3]

cases = (("known, right proof", "alice", "pass word"), ("known, wrong proof", "alice", "pass wore"),
         ("unknown user", "nobody", "pass word"))
res = {}
for k in range(TRIES):
    for name, u, p in cases:
        a, b, r = one(u, p)
        res.setdefault(name, []).append((a, b, r))

def stats(xs):
    xs = sorted(xs)
    return "median %%6d us  p10 %%6d  p90 %%6d" %% (xs[len(xs) // 2], xs[len(xs) // 10], xs[len(xs) * 9 // 10])

for name, _, _ in cases:
    v = res[name]
    print("%%-20s first %%s | final %%s | answers %%s" %% (name, stats([x[0] for x in v]), stats([x[1] for x in v]),
          sorted(set(x[2] for x in v))))
t0 = time.ticks_ms()
p = auth.Pbkdf2(b"pass word", b"0123456789abcdef", ITS)
while not p.step(100000):
    pass
print("client PBKDF2 at %%d iterations: %%d ms (this host, micropython)" %% (ITS, time.ticks_diff(time.ticks_ms(), t0)))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--tries", type=int, default=200)
    a = ap.parse_args()
    env = dict(os.environ, MICROPYPATH=os.path.join(ROOT, "firmware") + ":.frozen")  # .frozen: asyncio
    r = subprocess.run([MICROPYTHON, "-c", INNER % (a.iterations, a.tries)], env=env, capture_output=True, timeout=600)
    sys.stdout.write(r.stdout.decode() + r.stderr.decode())
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
