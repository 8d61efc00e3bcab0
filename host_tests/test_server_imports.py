"""A server-only board keeps no client code in its heap: loading the config, opening the store and
starting the POP3 server (under micropython, as main.py does) imports none of the client's
modules. Each one loaded from `.mpy` costs heap a board without PSRAM does not have (uidstate
alone ~11 KiB on the 64-bit host; docs/FIGURES.md "Heap")."""

import os
import subprocess

from helpers import FIRMWARE, MICROPYTHON, ROOT, free_port
from serverharness import Pop3Server

# transport is not here: its connection class is the servers' too (listener.ServerConn).
CLIENT_ONLY = ("client", "clientconf", "clientauth", "clientget", "clientfail", "clientrecover", "clientstls", "clientend", "clientplan", "uidcompact",
               "fetch", "fetchload", "pop3client", "pop3listing", "uidstate", "headers", "oauth2", "nativescan")

SCRIPT = r"""
import sys, asyncio
from pocketpost import config, server
cfg = config.load(sys.argv[1])
st = config.open_store(cfg)

async def main():
    srv = await server.start(cfg, st)
    srv.close()

asyncio.run(main())
print("MODULES", " ".join(sorted(k for k in sys.modules if k.startswith("pocketpost."))))
from pocketpost import storecore
print("LOADED", " ".join(sorted(p.rsplit("/", 1)[1] for p, b in storecore._BOXES.items() if b.loaded)))
from pocketpost import smtpserver
print("RUN", " ".join(n for n in ("main", "open_store", "_forever") if hasattr(server, n) or hasattr(smtpserver, n)))
"""


def test_server_imports_no_client_module(tmp_path):
    srv = Pop3Server(str(tmp_path), {"alice": [b"Subject: x\r\n\r\nx\r\n"]}, users={"alice": "pw"})
    cfg = srv.read_config()
    # An account to fetch: config.open_store sizes its UIDL state's flash (uidstate.flash_need)
    # and drops uidstate again; the client loads it when a fetch runs.
    cfg["accounts"] = [{"name": "a", "host": "127.0.0.1", "port": 1, "tls": "none", "allow_plaintext": True,
                        "user": "u", "password": "p", "state_dir": str(tmp_path / "state")}]
    srv.write_config(cfg)
    script = tmp_path / "s.py"
    script.write_text(SCRIPT)
    r = subprocess.run([MICROPYTHON, str(script), srv.config_path], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"))
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("MODULES")]
    assert r.returncode == 0 and line, r.stdout + r.stderr
    loaded = set(m.split(".", 1)[1] for m in line[0].split()[1:])
    # The store's core only: a server that receives no mail never loads Delivery (store.py).
    assert "server" in loaded and "storecore" in loaded and "store" not in loaded, sorted(loaded)
    assert not loaded & set(CLIENT_ONLY), sorted(loaded & set(CLIENT_ONLY))
    # Starting the server recovers each mailbox (serverstart.recover: at start, not at a first lock
    # during other sessions' work) and drops the store's cold code (storemerge.py, storescan.py)
    # again; the session side (storesession.py, ~7 KB) waits for a session's lock (kept from the
    # start, it cost a server that only listens or receives SMTP ~5 KiB: bench_smtp 116 -> 122).
    assert not loaded & {"storescan", "storecheck", "storemerge", "storesession"}, sorted(loaded)
    boxes = [ln for ln in r.stdout.splitlines() if ln.startswith("LOADED")]
    assert boxes and boxes[0].split()[1:] == ["alice"], r.stdout
    # The client's halves of the shared core (pop3client.py: reply parsing; unstuffer.py: DotUnstuffer)
    # are loaded by their first use only; the start-up code (serverstart.py, tls.py) and the login
    # code (loginsvc.py, auth.py, pop3login.py) are dropped once the server is up with no session.
    assert not loaded & {"pop3client", "unstuffer"}, sorted(loaded)
    assert not loaded & {"serverstart", "tls", "loginsvc", "auth", "pop3login", "pop3trans"}, sorted(loaded)
    # The session code (pop3cmd.py: Session and the command grammar) waits for a connection.
    assert "pop3cmd" not in loaded, sorted(loaded)
    # The command line's runs (config load, store, serve forever, usage) are servermain.py's: a
    # board starts the services itself (server.start), and a module's functions stay in the heap
    # with it. server.main and smtpserver.main stay, stubs (README's example; tools/hostflash.py -m).
    assert "pocketpost.servermain" not in line[0]
    run = [ln for ln in r.stdout.splitlines() if ln.startswith("RUN")]
    assert run == ["RUN main"], r.stdout


# The services started as board.main starts them (config.py imported inside a function, as
# board.load_config does); "keep" makes heapmark.forget a no-op, to compare.
DROP_SCRIPT = r"""
import gc, sys, asyncio
from pocketpost import heapmark, server, smtpserver
if "keep" in sys.argv:
    heapmark.forget = lambda names=None: None

def load(path):
    from pocketpost import config
    c = config.load(path)
    return c, config.open_store(c)

cfg, st = load(sys.argv[1])

def scrub(n):
    # The GC scans the C stack conservatively: a stale word left there by the start-up can keep
    # the dropped module alive by chance (seen: depends on the environment's size). Overwrite it.
    a = b = c = d = e = f = g = h = 0
    return scrub(n - 1) if n else a + b + c + d + e + f + g + h

async def main():
    srv = await server.start(cfg, st)
    sm = await smtpserver.start(cfg, st, srv.svc)
    scrub(100)
    gc.collect()
    print("LIVE", gc.mem_alloc())
    print("CONFIG", int("pocketpost.config" in sys.modules), int(hasattr(sys.modules["pocketpost"], "config")),
          int("pocketpost.serverconf" in sys.modules), int(hasattr(sys.modules["pocketpost"], "serverconf")))
    print("SAMECTX", int(sm.ctx is not None and sm.ctx is srv.ctx))
    sm.close()
    srv.close()

asyncio.run(main())
"""


def test_config_dropped_after_start_and_tls_context_shared(tmp_path):
    """Once the POP3 server and the SMTP receiver are up, config.py (and serverconf.py, its server
    side) is out of sys.modules and the package, and nothing else keeps it: the live heap is >8 KiB below the same start with the
    drop disabled. The SMTP receiver uses the POP3 server's TLS context (one, not two)."""
    srv = Pop3Server(str(tmp_path), {"alice": [b"Subject: x\r\n\r\nx\r\n"]}, users={"alice": "pw"})
    cfg = srv.read_config()
    cfg["smtp"] = {"port": free_port(), "submission_port": 0, "smtps_port": 0, "domains": ["example.org"]}
    srv.write_config(cfg)
    script = tmp_path / "d.py"
    script.write_text(DROP_SCRIPT)
    out = {}
    for mode in ("drop", "keep"):
        r = subprocess.run([MICROPYTHON, str(script), srv.config_path, mode], capture_output=True, text=True,
                           timeout=60, cwd=ROOT, env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"))
        assert r.returncode == 0, r.stdout + r.stderr
        out[mode] = dict(ln.split(" ", 1) for ln in r.stdout.splitlines() if ln[:1].isupper() and " " in ln)
    assert out["drop"]["CONFIG"] == "0 0 0 0" and out["keep"]["CONFIG"] == "1 1 1 1", out
    assert out["drop"]["SAMECTX"] == "1", out
    freed = int(out["keep"]["LIVE"]) - int(out["drop"]["LIVE"])
    assert freed > 8000, out


# What the session-code scripts below share: the services' start as board.main loads them, the
# live heap (after a scrub, as DROP_SCRIPT), and whether a module is loaded.
SESSION_HEAD = r"""
import gc, sys, asyncio
from pocketpost import server, smtpserver

def load(path):
    from pocketpost import config
    c = config.load(path)
    return c, config.open_store(c)

cfg, st = load(sys.argv[1])

def scrub(n):  # as DROP_SCRIPT: no stale word on the C stack keeps a dropped module alive
    a = b = c = d = e = f = g = h = 0
    return scrub(n - 1) if n else a + b + c + d + e + f + g + h

def live():
    scrub(100)
    gc.collect()
    return gc.mem_alloc()

def loaded(name=SESSION_MODULE):
    return int("pocketpost." + name in sys.modules)
"""

def _session_script(tmp_path, text, config_path):
    """Run one of the session-code scripts under micropython: its "NAME value" lines, after
    checking that it ran and that the listening service had its session code unloaded."""
    script = tmp_path / "s.py"
    script.write_text(text)
    r = subprocess.run([MICROPYTHON, str(script), config_path], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = dict(ln.split(" ", 1) for ln in r.stdout.splitlines() if ln[:1].isupper() and " " in ln)
    assert out["LISTENING"] == "0", out
    return out


# The SMTP receiver listening keeps no session code: smtp.py is loaded by a session and dropped
# by the last one to end (smtpserver.SmtpServer.hold/release), and loaded again by the next.
SMTP_DROP_SCRIPT = 'SESSION_MODULE = "smtp"\n' + SESSION_HEAD + r"""

async def reply(r):
    while True:
        ln = await r.readline()
        if len(ln) < 4 or ln[3:4] != b"-":
            return ln

async def deliver(port, n):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await reply(r)
    print("DURING%d" % n, loaded())
    print("OPENED%d" % n, loaded("smtpstart"))  # the Session made and greeted: its maker dropped
    for cmd in (b"EHLO t", b"MAIL FROM:<a@example.com>", b"RCPT TO:<alice@example.org>", b"DATA"):
        w.write(cmd + b"\r\n")
        await w.drain()
        await reply(r)
    w.write(b"Subject: %d\r\n\r\nbody %d\r\n.\r\nQUIT\r\n" % (n, n))
    await w.drain()
    print("STORED%d" % n, (await reply(r))[:3].decode())
    await reply(r)
    w.close()

async def main():
    srv = await server.start(cfg, st)
    sm = await smtpserver.start(cfg, st, srv.svc)
    port = cfg["smtp"]["port"]
    print("LISTENING", loaded())
    print("STARTUP", loaded("smtpstart"))
    a0 = live()
    sm.hold()
    a1 = live()
    sm.release()
    a2 = live()
    print("HELD", a1 - a0, "AFTER", a2 - a0, loaded())
    for n in (1, 2):
        await deliver(port, n)
        for _ in range(500):  # the handler's finally runs once the peer has gone: bounded wait
            if not sm.holds:
                break
            await asyncio.sleep_ms(10)
        print("AFTER%d" % n, sm.holds, loaded())
        print("GROUP%d" % n, loaded("groupcommit"))
    mb = st.lock("alice")
    print("COUNT", mb.count)
    mb.release()
    sm.close()
    srv.close()

asyncio.run(main())
"""


def test_smtp_session_code_loaded_per_session_and_dropped(tmp_path):
    """Listening, the SMTP receiver has no smtp.py (nor its start-up's smtpstart.py) in
    sys.modules; a session loads it, the end of the last session drops it (the heap it held is
    free again: > 4 KB) with groupcommit.py, and the next session loads it again and delivers
    (both messages stored)."""
    srv = Pop3Server(str(tmp_path), {"alice": []}, users={"alice": "pw"})
    port = free_port()
    cfg = srv.read_config()
    cfg["smtp"] = {"port": port, "submission_port": 0, "smtps_port": 0, "domains": ["example.org"]}
    srv.write_config(cfg)
    out = _session_script(tmp_path, SMTP_DROP_SCRIPT, srv.config_path)
    held, after = int(out["HELD"].split()[0]), int(out["HELD"].split()[2])
    assert held - after > 4000 and out["HELD"].endswith(" 0"), out
    assert out["DURING1"] == "1" and out["DURING2"] == "1", out
    assert out["STORED1"] == "250" and out["STORED2"] == "250", out
    assert out["AFTER1"] == "0 0" and out["AFTER2"] == "0 0", out
    assert out["COUNT"] == "2", out
    # The start-up code (smtpstart.py) is gone once listening, and groupcommit.py (only the
    # session code uses it) with the last session: neither is held by a receiver between sessions.
    assert out["STARTUP"] == "0", out
    assert out["GROUP1"] == "0" and out["GROUP2"] == "0", out
    # smtpstart.py (the Service's and the Session's construction) is loaded for a connection's
    # start only: a greeted session holds none of it.
    assert out["OPENED1"] == "0" and out["OPENED2"] == "0", out


# The POP3 server listening keeps no session code: pop3cmd.py (Session, the grammar) is loaded by
# a connection and dropped when the last session ends, its heap free again (server.Server._handle).
POP3_DROP_SCRIPT = 'SESSION_MODULE = "pop3cmd"\n' + SESSION_HEAD + r"""

async def session(port, n, srv):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    print("GREETING%d" % n, (await r.readline())[:3].decode())
    print("DURING%d" % n, loaded(), live())
    w.write(b"QUIT\r\n")
    await w.drain()
    print("QUIT%d" % n, (await r.readline())[:3].decode())
    w.close()
    for _ in range(500):  # the handler's finally runs once the peer has gone: bounded wait
        if not srv.sessions:
            break
        await asyncio.sleep_ms(10)
    await asyncio.sleep_ms(50)
    print("AFTER%d" % n, srv.sessions, loaded(), live())

async def main():
    srv = await server.start(cfg, st)
    print("LISTENING", loaded())
    for n in (1, 2):
        await session(cfg["server"]["port"], n, srv)
    srv.close()

asyncio.run(main())
"""


def test_pop3_session_code_loaded_per_session_and_dropped(tmp_path):
    """Listening, the POP3 server has no pop3cmd.py in sys.modules; a connection loads it, the end
    of the last session drops it and frees its heap (> 4 KB below the heap during the session:
    nothing of the ended session keeps it), and the next connection loads it again."""
    srv = Pop3Server(str(tmp_path), {"alice": []}, users={"alice": "pw"})
    out = _session_script(tmp_path, POP3_DROP_SCRIPT, srv.config_path)
    for n in ("1", "2"):
        assert out["GREETING" + n] == "+OK" and out["QUIT" + n] == "+OK", out
        during, after = out["DURING" + n].split(), out["AFTER" + n].split()
        assert during[0] == "1" and after[:2] == ["0", "0"], out
        assert int(during[1]) - int(after[2]) > 4000, out


# An SMTP session's command phase (EHLO, MAIL, RCPT) under micropython, then its DATA.
SMTP_SCRIPT = r"""
import sys
from pocketpost import config, log, smtp, smtpstart
from pocketpost.pop3server import Service as LoginService
from pocketpost.storecore import Store
from pocketpost.wire import LineReader
log.set_sink(lambda line: None)
raw = {"server": {"pbkdf2_iterations": 5}, "smtp": {"domains": ["example.org"]}}
config.add_user(raw, "alice", "pw", 5)
cfg = config.check(raw)
st = Store(sys.argv[1])
svc = smtpstart.service(cfg["smtp"], cfg["users"], st, LoginService(cfg["server"], cfg["users"], st))
s = smtpstart.session(svc, "127.0.0.1", smtp.MX)[0]
lines = LineReader(1000, 1256)

def send(data):
    out = []
    mv = memoryview(data)
    pos = 0
    while pos < len(data):
        pos += lines.feed(mv[pos:])
        out.extend(smtp.pump(s, lines))
    return b"".join(out)

sys.modules.pop("pocketpost.smtpstart")  # (as smtpserver drops it once the session is made)
r = send(b"EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=20\r\nRCPT TO:<alice@example.org>\r\n")
print("ENVELOPE", len([ln for ln in r.split(b"\r\n") if ln[:4] == b"250 "]), "pocketpost.store" in sys.modules,
      "pocketpost.groupcommit" in sys.modules, "pocketpost.smtpstart" in sys.modules)
r = send(b"DATA\r\n") + send(b"Subject: x\r\n\r\nhi\r\n.\r\n")
print("DATA", r.split(b"\r\n")[-2][:3].decode(), "pocketpost.store" in sys.modules)
"""


def test_smtp_command_phase_loads_no_delivery_code(tmp_path):
    # store.py (Delivery, ~7 KB of heap on the 64-bit host) is loaded by the message's first delivery
    # (Store.begin at DATA), not with smtp.py: in bench_heap c the SMTP command phase meets the
    # fetcher's login, the heap's peak.
    script = tmp_path / "s.py"
    script.write_text(SMTP_SCRIPT)
    (tmp_path / "mail").mkdir()
    r = subprocess.run([MICROPYTHON, str(script), str(tmp_path / "mail")], capture_output=True, text=True, timeout=60,
                       cwd=ROOT, env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"))
    out = dict((ln.split(" ", 1)[0], ln.split(" ", 1)[1]) for ln in r.stdout.splitlines() if " " in ln)
    assert r.returncode == 0 and "ENVELOPE" in out and "DATA" in out, r.stdout + r.stderr
    # EHLO, MAIL with SIZE=, RCPT accepted; no Delivery code yet, and no group-commit code: the
    # SIZE checks' room is smtpenv's (bench_heap c's edge is this phase meeting the fetch's login).
    assert out["ENVELOPE"] == "3 False False False", out
    assert out["DATA"] == "250 True", out  # the message stored: Store.begin loaded it


# A connection waiting for a slot (listener.Slots.wait, slotwait.wait) is handed the slot at the session's end
# (release): the session code is not dropped and loaded again in between (sessions never reach
# 0), and the waiter, which let go of pop3cmd.py while it waited, uses the one copy loaded.
POP3_WAIT_SCRIPT = 'SESSION_MODULE = "pop3cmd"\n' + SESSION_HEAD + r"""

async def main():
    srv = await server.start(cfg, st)
    port = cfg["server"]["port"]
    print("LISTENING", loaded())
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await r.readline()
    r2, w2 = await asyncio.open_connection("127.0.0.1", port)  # the one slot is taken: it waits
    for _ in range(200):
        if srv.slots.waiting:
            break
        await asyncio.sleep_ms(10)
    print("WAITING", len(srv.slots.waiting), loaded("slotwait"))
    w.write(b"QUIT\r\n")
    await w.drain()
    await r.readline()
    await r.read(10)  # the end of the stream: the session's finally has run (no await in it)
    print("HANDED", len(srv.slots.waiting), srv.slots.sessions, loaded())
    w.close()
    print("WAITER", (await r2.readline())[:3].decode(), loaded())
    print("WAITED", loaded("slotwait"))  # (greeted: its wait is over)
    w2.write(b"QUIT\r\n")
    await w2.drain()
    await r2.readline()
    w2.close()
    srv.close()

asyncio.run(main())
"""


def test_a_connection_waiting_for_a_slot_is_handed_it_with_the_session_code_loaded(tmp_path):
    srv = Pop3Server(str(tmp_path), {"alice": []}, users={"alice": "pw"},
                     server={"max_sessions": 1, "max_sessions_per_addr": 1, "slot_wait": 5})
    out = _session_script(tmp_path, POP3_WAIT_SCRIPT, srv.config_path)
    # The waiting room's code (slotwait.py) is loaded while a connection waits, dropped once
    # none does: a server whose caps are not full holds none of it.
    assert out["WAITING"] == "1 1", out
    assert out["WAITED"] == "0", out
    assert out["HANDED"] == "0 1 1", out  # the slot went to the waiter at the QUIT: pop3cmd.py kept
    assert out["WAITER"] == "+OK 1", out  # then greeted, with that copy
