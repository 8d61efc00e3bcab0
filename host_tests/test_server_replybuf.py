"""RETR's copy unit (pop3trans._RETR_UNIT) is counted out per RETR and handed back when the reply
ends: nothing of the session may keep it after that; nor the out buffer (block_size) a LIST/UIDL/
TOP reply is produced into (a logged-in session kept it from its first listing to its end). The shell's frame kept it (its views of the
unit lived until the next reply), so a logged-in session that had RETR'd held a unit the count
said was free, and the next RETR (any session's) made another: two units in the heap for one
counted (bench_heap c's peak). In-process under CPython, real sockets on loopback: the bytearrays
alive are found through gc's referents (the shell is the same code on MicroPython)."""

import asyncio
import gc
import os
import shutil
import tempfile

from feed import reader
from helpers import free_port
from pocketpost import config, log, pop3trans, server
from pocketpost.store import Store

log.set_sink(lambda line: None)

MESSAGE = b"Subject: unit\r\n\r\n" + b"0123456789abcdef0123456789abcdef0123456789abcdef012345678901234\r\n" * 256


def _held(size):
    """Bytearrays of `size` that something holds (CPython's collector tracks no bytearray
    itself: they are found among what the tracked objects, frames too, refer to)."""
    gc.collect()
    found = {}
    for o in gc.get_referents(*gc.get_objects()):
        if type(o) is bytearray and len(o) == size:
            found[id(o)] = o
    return len(found)


async def _reply(r, multi):
    line = await asyncio.wait_for(r.readline(), 5)
    assert line.startswith(b"+OK"), line
    while multi:
        line = await asyncio.wait_for(r.readline(), 5)
        if line == b".\r\n":
            break


def test_a_finished_reply_keeps_no_buffer():
    d = tempfile.mkdtemp()
    try:
        root = os.path.join(d, "mail")
        st = Store(root, quota=0, reserve=0)
        st.create("alice")
        st.deliver_stream("alice", reader(MESSAGE))
        port = free_port()
        cfg = config.check({"store": {"root": root, "quota": 0, "reserve": 0},
                            "server": {"host": "127.0.0.1", "port": port, "pop3s_port": 0, "cert": "", "key": "",
                                       "pbkdf2_iterations": 5}})
        config.add_user(cfg, "alice", "pw", 5)
        cfg = config.check(cfg)

        async def run():
            pop = await server.start(cfg, st)
            r, w = await asyncio.open_connection("127.0.0.1", port)
            try:
                await _reply(r, False)  # greeting
                for cmd in (b"USER alice\r\n", b"PASS pw\r\n"):
                    w.write(cmd)
                    await _reply(r, False)
                sizes = (pop3trans._RETR_UNIT, cfg["server"]["block_size"])
                before = [_held(n) for n in sizes]
                after = []
                for cmds in ((b"RETR 1\r\n",), (b"LIST\r\n", b"UIDL\r\n")):
                    for cmd in cmds:
                        w.write(cmd)
                        await _reply(r, True)
                    w.write(b"NOOP\r\n")  # the reply after them: they are over in the shell too
                    await _reply(r, False)
                    assert pop.svc.units == 0
                    after.append([_held(n) for n in sizes])
                return [before, before], after
            finally:
                w.close()
                pop.close()

        before, after = asyncio.run(run())
        assert after == before, "a reply's buffer (unit, block) is still held after it: %r -> %r" % (before, after)
    finally:
        shutil.rmtree(d, ignore_errors=True)
