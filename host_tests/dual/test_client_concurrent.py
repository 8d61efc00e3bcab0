"""Two accounts fetching at the same time in one event loop (board.py's fetch tasks), each from
its own scripted server over an in-process pair whose reads yield to the loop, so the sessions
interleave: one account's cold modules (clientauth, clientplan, clientget, store.py, clientend,
uidcompact) are loaded and dropped (MicroPython) while the other is inside them. Every message of
both accounts must be stored exactly once and recorded, in both runs of the pair.
Runs under CPython (pytest) and MicroPython (host_tests/dual/run.py)."""

import asyncio

from pocketpost import client, log
from pocketpost.store import Store

from pop3pair import Pop3Pair, Scripted
from test_pop3server import _rmtree, tmpdir
import storeread

log.set_sink(lambda line: None)


class _Yielding:
    """A pair connection whose every read and write yields to the loop first."""

    def __init__(self, conn):
        self.c = conn

    async def recv_into(self, mv, ms):
        await asyncio.sleep(0)
        return await self.c.recv_into(mv, ms)

    async def send(self, data, ms):
        await asyncio.sleep(0)
        return await self.c.send(data, ms)

    async def start_tls(self, ctx, hostname=None, server_side=False, ms=0):
        return await self.c.start_tls(ctx, hostname, server_side, ms)

    def close(self):
        self.c.close()

    async def shutdown(self, ms):
        await self.c.shutdown(ms)


def _acct(d, name, policy):
    return {"name": name, "host": "script", "port": 110, "tls": "none", "user": "u", "password": "p",
            "mailbox": name, "state_dir": d + "/state", "policy": policy}


def _opener_for(msgs):
    async def opener(host, port, ms, ctx):
        return _Yielding(Pop3Pair(Scripted(msgs)).conn())

    return opener


def _fetch_both(d, boxes, policy, wrap_b=None):
    """Accounts "a" and "b" fetching boxes["a"] and boxes["b"] at once in one loop, into one store
    (account b's seen through wrap_b(store) when given): their stats."""

    async def main():
        store = Store(d + "/mail")
        return await asyncio.gather(
            client.fetch_account(_acct(d, "a", policy), store, None, _opener_for(boxes["a"])),
            client.fetch_account(_acct(d, "b", policy), wrap_b(store) if wrap_b else store, None,
                                 _opener_for(boxes["b"])))

    return asyncio.run(main())


def test_two_accounts_fetch_concurrently_each_message_once():
    d = tmpdir()
    try:
        # 70 and 90 messages: 5 and 6 batches (clientplan._NEW_BATCH 16), unequal so the
        # accounts' steps do not stay in lockstep
        boxes = {"a": [(b"a%d" % i, b"Subject: a%d\r\n\r\nx\r\n" % i) for i in range(1, 71)],
                 "b": [(b"b%d" % i, b"Subject: b%d\r\n\r\ny\r\n" % i) for i in range(1, 91)]}
        for policy in ("keep", "delete"):
            for name in ("a", "b"):
                try:
                    Store(d + "/mail").create(name)
                except Exception:
                    pass

            sa, sb = _fetch_both(d, boxes, policy)
            if policy == "keep":
                assert sa["fetched"] == 70 and sb["fetched"] == 90, (sa, sb)
            else:  # all stored already: the first pass deletes them, nothing fetched again
                assert sa["fetched"] == 0 and sb["fetched"] == 0, (sa, sb)
                assert sa["deleted"] == 70 and sb["deleted"] == 90, (sa, sb)
            for name, n in (("a", 70), ("b", 90)):
                got = storeread.messages(Store(d + "/mail"), name)
                assert len(got) == n and sorted(got) == sorted(m[1] for m in boxes[name]), (policy, name, len(got))
    finally:
        _rmtree(d)


class _Watch:
    """A Store that notes, at each delivery's begin, the download code's module object."""

    def __init__(self, store, seen):
        self._s = store
        self._seen = seen

    def begin(self, *args, **kw):
        import sys

        self._seen.append(sys.modules.get("pocketpost.clientget"))
        return self._s.begin(*args, **kw)

    def __getattr__(self, name):
        return getattr(self._s, name)


def test_download_code_is_not_loaded_again_per_message_after_another_account_ends():
    """Account "a" (one new message) ends its session while "b" (30) is downloading: its end
    drops the download code (clientget.py) from sys.modules on MicroPython. b's next downloads
    load it again once and hold it for the rest of the batch, not once per message (a module
    load per message: its compile or its objects, on top of the session's heap, each time)."""
    d = tmpdir()
    try:
        boxes = {"a": [(b"a1", b"Subject: a1\r\n\r\nx\r\n")],
                 "b": [(b"b%d" % i, b"Subject: b%d\r\n\r\ny\r\n" % i) for i in range(1, 31)]}
        for name in ("a", "b"):
            Store(d + "/mail").create(name)
        seen = []

        sa, sb = _fetch_both(d, boxes, "keep", lambda store: _Watch(store, seen))
        assert sa["fetched"] == 1 and sb["fetched"] == 30, (sa, sb)
        copies = []
        for m in seen:
            if m not in copies:
                copies.append(m)
        # One per batch (30 new messages: 2 batches of clientplan._NEW_BATCH, 16) and one after
        # each of a's two drops (its batch's end, its session's end): the message indexes where
        # a copy was first seen say which (seen: [0, 1, 2, 16])
        assert len(seen) == 30 and len(copies) <= 4, [seen.index(m) for m in copies]
    finally:
        _rmtree(d)
