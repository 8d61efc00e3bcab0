"""Wi-Fi drops and comes back while a real POP3 session runs: pocketpost.board.Runner under
micropython with a fake WLAN (host_tests/dual/test_board.FakeWLAN), the real server, and
Python's poplib as the client. The session must go on untouched, the keeper must notice the
drop, back off while the AP is away and reconnect when it returns."""

import json
import os
import poplib
import subprocess
import time

from helpers import FIRMWARE, MICROPYTHON, ROOT, free_port

from pocketpost import config as config_mod
from pocketpost.store import Store

SCRIPT = r'''
import asyncio, json, sys, time
from pocketpost import admin, board, log
from test_board import FakeWLAN, stop

CFG, SECRETS = sys.argv[1], sys.argv[2]
wlan = FakeWLAN(polls=1)
hw = board.Hardware(wlan=wlan)
r = board.Runner(board.load_config(CFG), hw)

def say(*a):
    print(*a)

async def until(cond, what, ms=30000):
    t0 = time.ticks_ms()
    while not cond():                # bounded: a hang ends the script, and the host test fails
        if time.ticks_diff(time.ticks_ms(), t0) > ms:
            say("TIMEOUT waiting for " + what)
            sys.exit(1)
        await asyncio.sleep(0.01)

async def weather():
    await until(lambda: admin.sessions(r) >= 1, "the client to connect")
    wlan.drop()                      # the client waits for DROPPED before its RETRs
    say("DROPPED")
    await until(lambda: r.wifi.attempts >= 3, "the keeper to retry with back-off")
    wlan.ap_up = True
    await until(lambda: r.wifi.up, "the reconnect")
    say("BACK")
    await until(lambda: admin.sessions(r) == 0, "the session to go on to its QUIT")
    say("RESULT " + json.dumps([admin.wifi_info(r.wifi), admin.services(r.supervisor)]))
    stop(r)

async def main():
    t = asyncio.create_task(weather())
    try:
        await r.run(SECRETS)
    except asyncio.CancelledError:
        pass
    await t

asyncio.run(main())
'''


def test_wifi_drop_and_return_during_a_real_pop3_session(tmp_path):
    port = free_port()
    root = str(tmp_path / "mail")
    raw = {"store": {"root": root}, "server": {"host": "127.0.0.1", "port": port, "pop3s_port": 0,
                                              "pbkdf2_iterations": 1000},
           "wifi": {"backoff_ms": 20, "backoff_max_ms": 40, "connect_timeout_ms": 30, "check_ms": 10}}
    config_mod.add_user(raw, "alice", "pw")
    cfg_path = str(tmp_path / "c.json")
    config_mod.save(cfg_path, raw)
    secrets = str(tmp_path / "secrets.json")
    with open(secrets, "w") as f:
        json.dump({"ssid": "testnet", "password": "pw"}, f)
    body = b"Subject: big\r\n\r\n" + b"".join(b"line %06d of a long message\r\n" % i for i in range(6000))
    st = Store(root)
    st.create("alice")
    for _ in range(2):
        d = st.begin("alice")
        d.write(body)
        d.commit()
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":" + os.path.join(ROOT, "host_tests", "dual") + ":.frozen")
    p = subprocess.Popen([MICROPYTHON, str(script), cfg_path, secrets], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    lines = []

    def until(tag):
        for ln in p.stdout:
            lines.append(ln)
            if ln.startswith(tag):
                return ln
        raise AssertionError("board ended before %s:\n%s" % (tag, "".join(lines)))

    try:
        until("")  # first output line: the board is up (wifi connected log)
        c = None
        for _ in range(200):
            try:
                c = poplib.POP3("127.0.0.1", port, timeout=20)
                break
            except OSError:
                time.sleep(0.02)
        assert c is not None
        c.user("alice")
        c.pass_("pw")
        assert c.stat()[0] == 2
        until("DROPPED")
        got1 = b"\r\n".join(c.retr(1)[1])  # while the link is down and the keeper retries
        until("BACK")
        got2 = b"\r\n".join(c.retr(2)[1])
        c.quit()
        result = until("RESULT")
        p.wait(20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = "".join(lines)
    assert got1 == body.rstrip(b"\r\n") and got2 == got1, out[-2000:]
    wifi_info, services = json.loads(result[len("RESULT "):])
    assert wifi_info["up"] and wifi_info["drops"] == 1 and wifi_info["connects"] == 2, wifi_info
    assert wifi_info["attempts"] >= 3
    assert services["server"]["starts"] == 1  # the server was never restarted
    assert "link lost (drop 1)" in out and "retry in" in out
