"""A session whose close() raises (MemoryError near a full heap) must still give back its socket
and its session slot: a leaked slot per such session would, in the end, refuse every client.
In-process under CPython, real sockets on loopback (the servers' handlers are the same code on
MicroPython; only the failure is injected here)."""

import asyncio
import os
import shutil
import tempfile

import pytest

from helpers import free_port
from pocketpost import config, log, server, smtpserver
from pocketpost.store import Store

log.set_sink(lambda line: None)


def _cfg(root, pop3_port, smtp_port):
    cfg = config.check({"store": {"root": root, "quota": 0, "reserve": 0},
                        "server": {"host": "127.0.0.1", "port": pop3_port, "pop3s_port": 0, "cert": "", "key": "",
                                   "pbkdf2_iterations": 5},
                        "smtp": {"domains": ["home.example"], "port": smtp_port, "submission_port": 0,
                                 "smtps_port": 0}})
    config.add_user(cfg, "alice", "pw", 5)
    return config.check(cfg)


def _store_and_config(d):
    """A store with mailbox alice under d, two free ports (POP3, SMTP) and the config."""
    root = os.path.join(d, "mail")
    st = Store(root, quota=0, reserve=0)
    st.create("alice")
    pport, sport = free_port(), free_port()
    return st, pport, sport, _cfg(root, pport, sport)


async def _wait(pred, what):
    for _ in range(500):  # bounded: 5 s
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting for " + what)


def _failing_close(self):
    raise MemoryError("injected")


async def _session(port, say, expect):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        line = await asyncio.wait_for(r.readline(), 5)
        assert line.startswith(expect), line
        w.write(say)
        await w.drain()
        await asyncio.wait_for(r.readline(), 5)
    finally:
        w.close()


def _serve(cfg, st, body):
    """Run `await body(pop, smt)` with the POP3 server and the SMTP receiver listening (one loop),
    both closed after it however it ends."""
    async def run():
        pop = await server.start(cfg, st)
        smt = await smtpserver.start(cfg, st, pop.svc)
        try:
            await body(pop, smt)
        finally:
            smt.close()
            pop.close()

    asyncio.run(run())


def _failing_log(*args):
    raise MemoryError("injected")


@pytest.mark.parametrize("log_fails", [False, True], ids=["logged", "log-call-fails"])
def test_a_close_that_raises_still_frees_the_slot_and_socket(monkeypatch, log_fails):
    # log_fails: the "close failed" line's own call fails too, as on a full heap, where the call
    # makes its argument tuple before log.log's guard runs: the clean-up after it must still run.
    from pocketpost import pop3cmd, smtp

    d = tempfile.mkdtemp()
    try:
        st, pport, sport, cfg = _store_and_config(d)
        monkeypatch.setattr(pop3cmd.Session, "close", _failing_close)
        monkeypatch.setattr(smtp.Session, "close", _failing_close)
        if log_fails:
            monkeypatch.setattr(log, "error", _failing_log)

        async def body(pop, smt):
            for _ in range(3):  # more than once: nothing left over from the one before
                await _session(pport, b"USER alice\r\n", b"+OK")
                await _wait(lambda: pop.slots.sessions == 0, "the POP3 slot")
                await _session(sport, b"EHLO client.example\r\n", b"220")
                await _wait(lambda: smt.slots.sessions == 0, "the SMTP slot")

        _serve(cfg, st, body)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_an_smtp_session_end_with_no_heap_to_drop_its_code_still_closes_and_frees_the_slot(monkeypatch):
    # The last session out drops the SMTP session code (compat.forget, whose module names are
    # made on the heap): on a full heap that raised MemoryError in the session's finally before
    # its socket was closed and its slot released, so the sender waited out its own timeout
    # after QUIT and the slot stayed taken.
    d = tempfile.mkdtemp()
    try:
        st, pport, sport, cfg = _store_and_config(d)

        async def body(pop, smt):
            real = smtpserver.forget

            def forget(names):  # the session code's (the last one out): no heap
                if "smtp" in names:
                    raise MemoryError("injected")
                real(names)

            monkeypatch.setattr(smtpserver, "forget", forget)
            for _ in range(2):  # the second finds the slot free and the code still loaded
                r, w = await asyncio.open_connection("127.0.0.1", sport)
                try:
                    assert (await asyncio.wait_for(r.readline(), 5)).startswith(b"220")
                    w.write(b"QUIT\r\n")
                    await w.drain()
                    assert (await asyncio.wait_for(r.readline(), 5)).startswith(b"221")
                    assert await asyncio.wait_for(r.read(), 5) == b"", "the socket was not closed"
                finally:
                    w.close()
                await _wait(lambda: smt.slots.sessions == 0, "the SMTP slot")

        _serve(cfg, st, body)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# Each step between the group commit (the message on flash) and its 250 on the wire that needs the
# heap, with the step's MemoryError injected once, after the commit. (name, module or class, attribute)
_AFTER_COMMIT = [
    ("uid-text", "store.Delivery", "landed"),  # a copy's UID text (groupcommit.commit's last part)
    ("merge", "storecore._Box", "merge_due"),
    ("log-line", "log", "info"),  # smtpdata.finish's "stored" line (its argument tuple)
    ("reply-text", "smtpdata", "reply"),  # the 250's text
    ("forget-commit-code", "smtpdata", "forget"),
    ("session-abort", "smtp.Session", "abort"),
    ("session-reset", "smtp.Session", "reset"),
    ("session-forget", "smtp.Session", "forget"),
    ("pump", "smtp", "pump"),  # the rest of the batch (a pipelined command after the dot)
    ("send", "listener.ServerConn", "send"),  # the reply's write (MicroPython: its coroutine)
]


def _owner(path):
    import importlib

    mod, _, cls = path.partition(".")
    m = importlib.import_module("pocketpost." + mod)
    return getattr(m, cls) if cls else m


@pytest.mark.parametrize("where", [s[0] for s in _AFTER_COMMIT])
def test_a_stored_message_gets_its_250_whatever_fails_after_the_commit(monkeypatch, where):
    # "250 means stored", and the other way round: a stored message whose 250 never reached the
    # sender (the session closed on a MemoryError past the commit point) is sent again by it
    # (Postfix, a printer) and stored twice. The sender must read a 250, and the mailbox hold the
    # message once, whichever step after the commit finds no heap.
    from pocketpost import groupcommit

    _, path, attr = next(s for s in _AFTER_COMMIT if s[0] == where)
    owner = _owner(path)
    real = getattr(owner, attr)
    real_rename = groupcommit.compat.rename
    state = {"armed": False, "fired": False}

    def rename(src, dst):
        real_rename(src, dst)
        if dst.endswith("/group"):  # the commit point: stored from here on
            state["armed"] = True

    def injected(*a, **k):
        r = None
        if where in ("uid-text", "pump"):  # their work done, then no heap (for the text, the rest)
            r = real(*a, **k)
        if state["armed"] and not state["fired"]:
            state["fired"] = True
            raise MemoryError("injected")
        return r if where in ("uid-text", "pump") else real(*a, **k)

    monkeypatch.setattr(groupcommit.compat, "rename", rename)
    monkeypatch.setattr(owner, attr, injected)
    d = tempfile.mkdtemp()
    try:
        st, pport, sport, cfg = _store_and_config(d)

        async def body(pop, smt):
            r, w = await asyncio.open_connection("127.0.0.1", sport)
            try:
                async def say(line, expect):
                    if line:
                        w.write(line)
                        await w.drain()
                    got = await asyncio.wait_for(r.readline(), 5)
                    while got[3:4] == b"-":
                        got = await asyncio.wait_for(r.readline(), 5)
                    assert got.startswith(expect), (where, line, got)

                await say(None, b"220")
                await say(b"EHLO client.example\r\n", b"250")
                await say(b"MAIL FROM:<sender@client.example>\r\n", b"250")
                await say(b"RCPT TO:<alice@home.example>\r\n", b"250")
                await say(b"DATA\r\n", b"354")
                await say(b"Subject: once\r\n\r\nonly once\r\n.\r\n", b"250 2.0.0 stored")
                if where in ("uid-text", "merge", "log-line", "reply-text"):  # (smtpdata.finish's own guard)
                    await say(b"QUIT\r\n", b"221")  # the session goes on
            finally:
                w.close()
            await _wait(lambda: smt.slots.sessions == 0, "the SMTP slot")

        _serve(cfg, st, body)
        assert state["fired"], where
        mb = Store(os.path.join(d, "mail"), quota=0, reserve=0).lock("alice")
        try:
            assert mb.count == 1, (where, mb.count)
        finally:
            mb.release()
    finally:
        shutil.rmtree(d, ignore_errors=True)
