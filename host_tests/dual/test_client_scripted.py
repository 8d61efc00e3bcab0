"""The whole client (fetch_account) against scripted misbehaving servers over an in-process
connection pair (host_tests/dual/pop3pair.py): deterministic, no sockets, no sleeps, under
CPython and MicroPython. Scenarios that need real sockets, TLS or the clock (stalls, trickles,
handshakes, crash points) stay in host_tests/test_client_hostile.py.
Each failed session must leave nothing stored, nothing recorded, and no QUIT sent."""

import asyncio

from pocketpost import client, log, uidstate
from pocketpost.pop3 import ProtocolError
from pocketpost.store import Store

import uidtool
from pop3pair import Pop3Pair, Scripted
from test_pop3server import _rmtree, tmpdir
import storeread

log.set_sink(lambda line: None)

GOOD = b"Subject: hi\r\n\r\nbody\r\n"
TWO = b"Subject: two\r\n\r\nx\r\n"
THREE = b"Subject: three\r\n\r\nz\r\n"


class Box:
    """One local side (store + state) fetching from scripted servers over a pair."""

    def __init__(self, quota=0):
        self.dir = tmpdir()
        self.quota = quota
        self.srv = None
        self.pair = None  # the last session's connection pair

    def fetch(self, srv, on_message=None, **kw):
        self.srv = srv
        a = {"name": "h", "host": "script", "port": 110, "tls": "none", "user": "u", "password": "p",
             "mailbox": "m", "state_dir": self.dir + "/state"}
        a.update(kw)

        async def opener(host, port, ms, ctx):
            self.pair = Pop3Pair(srv)
            return self.pair.conn()

        st = Store(self.dir + "/mail", quota=self.quota)
        if self.quota:
            # Store.room gives no figure short of "full" (0): the room the store has left is not
            # known to be smaller than a message (a server whose LIST sizes understate what is
            # stored, a flash another writer fills meanwhile), so the client asks for it and the
            # store refuses it mid-message or at its begin, the paths these tests exercise.
            # (Known smaller, the message is not asked for at all: test_review_w18_fetch.py.)
            real = st.room

            def room(name):
                r = real(name)
                return (-1, r[1]) if r[0] > 0 else r

            st.room = room
        return asyncio.run(client.fetch_account(a, st, on_message, opener))

    def fails(self, srv, exc, text, **kw):
        try:
            self.fetch(srv, **kw)
        except exc as e:
            assert text in str(e), str(e)
            return e
        raise AssertionError("no %s (%s)" % (exc.__name__, text))

    def stored(self):
        return storeread.messages(Store(self.dir + "/mail"), "m")

    def store_fails(self, srv, why, **kw):
        """The session ends on the store's error (`why` in its text): the commands the server saw."""
        e = self.fails(srv, client.ClientError, "store: ", **kw)
        assert why in e.msg, e.msg
        return srv.seen

    def entries(self):
        """[(full key, first_seen, flag)] of the account's state, read back through uidtool."""
        return uidtool.entries(uidstate.UidState(self.dir + "/state", "h").load())

    def uids(self):
        return [k[1:] if uidstate.is_hash_key(k) else k for k, _, _ in self.entries()]

    def nothing_kept(self):
        return self.stored() == [] and self.uids() == [] and b"QUIT" not in self.srv.seen

    def done(self):
        _rmtree(self.dir)


def case(fn):
    def run():
        b = Box()
        try:
            fn(b)
        finally:
            b.done()

    return run


@case
def _overlong_greeting(b):
    b.fails(Scripted([], greeting=b"+OK " + b"x" * 5000 + b"\r\n"), ProtocolError, "longer than")
    assert b.nothing_kept()


@case
def _capa_never_ends(b):
    b.fails(Scripted([], capa=b"+OK\r\n" + b"".join(b"X-CAP-%d\r\n" % i for i in range(1000))),
            ProtocolError, "does not end")
    assert b.nothing_kept()


@case
def _listing_never_ends(b):
    uidl = b"+OK\r\n" + b"".join(b"%d u%d\r\n" % (i, i) for i in range(1, 50)) + b".\r\n"
    b.fails(Scripted([(b"u1", GOOD)], {"UIDL": uidl}), ProtocolError, "does not end")
    assert b.nothing_kept()


@case
def _stat_claims_a_huge_mailbox(b):
    b.fails(Scripted([], {"STAT": b"+OK 2000000000 1\r\n"}), ProtocolError, "more than")
    assert b.nothing_kept()


@case
def _size_lies(b):
    huge = b"+OK\r\n" + b"y" * 200 + b"\r\n" + b"z" * 100000 + b"\r\n.\r\n"
    b.fails(Scripted([(b"u1", GOOD)], {"RETR": huge}), ProtocolError, "larger than the server said")
    assert b.nothing_kept()


@case
def _noop_refused_after_a_body(b):
    # not a refused message (skipped quietly): a broken server, and the session ends loudly
    srv = Scripted([(b"u1", GOOD), (b"u2", TWO)], {"NOOP": b"-ERR no\r\n"})
    b.fails(srv, ProtocolError, "NOOP after RETR 1 answered -ERR")
    assert b.nothing_kept() and b"RETR 2" not in srv.seen, srv.seen


@case
def _unsolicited_reply(b):
    e = b.fails(Scripted([(b"u1", GOOD)], {"STAT": b"+OK 1 21\r\n+OK extra\r\n"}), ProtocolError, "nobody asked")
    assert "h script:110" in str(e) and b.nothing_kept()


test_overlong_greeting = _overlong_greeting
test_capa_never_ends = _capa_never_ends
test_listing_never_ends = _listing_never_ends
test_stat_claims_a_huge_mailbox = _stat_claims_a_huge_mailbox
test_size_lies = _size_lies
test_unsolicited_reply = _unsolicited_reply
test_noop_refused_after_a_body = _noop_refused_after_a_body


def _unusable(policy):
    b = Box()
    try:
        msgs = [(b"u" * 71, GOOD), (b"same", TWO), (b"same", THREE), (b"ok", b"Subject: ok\r\n\r\nk\r\n"),
                (b"bad\x7f", b"Subject: del\r\n\r\nd\r\n")]
        srv = Scripted(msgs)
        st = b.fetch(srv, policy=policy)
        assert st["fetched"] == 5 and st["by_content"] == 4 and srv.seen[-1] == b"QUIT"
        want = sorted(x for _, x in msgs)
        assert sorted(b.stored()) == want
        if policy == "delete":
            assert st["deleted"] == 5 and b.uids() == []
            return
        srv = Scripted(msgs)
        st = b.fetch(srv, policy=policy)
        assert st["fetched"] == 0 and st["duplicates"] == 4 and sorted(b.stored()) == want
        assert b"RETR 4" not in srv.seen and len(b.uids()) == 5
        assert b.fetch(Scripted(msgs), policy=policy)["duplicates"] == 4  # the content keys were kept
    finally:
        b.done()


def test_unusable_uidls_still_fetched_keep():
    """UIDLs over 70 octets, with an invalid octet, or listed twice: the mailbox is not refused;
    those messages are keyed by content (stored once, never twice), the good one by its UID;
    under keep the next sessions download them again and drop them as duplicates."""
    _unusable("keep")


def test_unusable_uidls_still_fetched_delete():
    _unusable("delete")


@case
def test_stored_uid_listed_twice_is_never_deleted_by_uid(b):
    """u1 was stored; now u1 is listed for two messages: neither is deleted on the strength of
    the UID (which copy it named is unknowable): both go by content."""
    assert b.fetch(Scripted([(b"u1", GOOD)]))["fetched"] == 1
    srv = Scripted([(b"u1", TWO), (b"u1", GOOD)])
    st = b.fetch(srv, policy="delete")
    assert b"RETR 1" in srv.seen and b"RETR 2" in srv.seen and st["by_content"] == 2
    assert sorted(b.stored()) == sorted([GOOD, GOOD, TWO])  # GOOD again: a duplicate, not a loss


@case
def test_no_uidl_keep_refused_delete_best_effort(b):
    srv = Scripted([(None, GOOD)], capa=b"-ERR\r\n")
    b.fails(srv, client.ClientError, "no UIDL")
    assert b.nothing_kept() or (b.stored() == [] and b.uids() == [])  # (a clean QUIT is fine here)
    srv = Scripted([(None, GOOD)], capa=b"-ERR\r\n")
    st = b.fetch(srv, policy="delete")
    assert st["fetched"] == 1 and st["deleted"] == 1 and b.stored() == [GOOD] and srv.seen[-1] == b"QUIT"


@case
def test_refused_dele_does_not_end_the_session(b):
    """A read-only maildrop answers DELE with -ERR: logged, not counted, the session goes on
    and ends with QUIT; a later session deletes both."""
    b.fetch(Scripted([(b"u1", GOOD)]))
    srv = Scripted([(b"u1", GOOD), (b"u2", TWO)], dele=b"-ERR read-only\r\n")
    st = b.fetch(srv, policy="delete")
    assert st["fetched"] == 1 and st["deleted"] == 0 and srv.seen[-1] == b"QUIT"
    assert b.stored() == [GOOD, TWO] and sorted(b.uids()) == [b"u1", b"u2"]
    srv = Scripted([(b"u1", GOOD), (b"u2", TWO)])
    st = b.fetch(srv, policy="delete")
    assert st["fetched"] == 0 and st["deleted"] == 2 and b"DELE 1" in srv.seen and b"DELE 2" in srv.seen
    assert b.stored() == [GOOD, TWO] and b.uids() == []


class _RefusesRetr(Scripted):
    """Answers RETR with -ERR [SYS/PERM] for the message numbers in `bad` (a file it cannot
    read, as pocketpost's own server does for a damaged one), and serves the others."""

    def __init__(self, msgs, bad, capa=None):
        if capa is None:
            Scripted.__init__(self, msgs)
        else:
            Scripted.__init__(self, msgs, capa=capa)
        self.bad = bad

    def handle(self, line):
        w = bytes(line).split(b" ")
        if w[0] == b"RETR" and int(w[1]) in self.bad:
            self.seen.append(bytes(line))
            return b"-ERR [SYS/PERM] cannot read message %s\r\n" % w[1]
        return Scripted.handle(self, line)


def _refused_retr(policy, capa):
    """RETR 2 of 3 is refused: 1 and 3 are stored (and deleted under delete) in the same session,
    which ends with QUIT; 2 is neither stored, recorded nor deleted, and the next session, whose
    server can read it again, fetches it, each message stored once."""
    b = Box()
    try:
        box = [(b"u1", GOOD), (b"u2", TWO), (b"u3", THREE)]
        srv = _RefusesRetr(box, (2,), capa)
        st = b.fetch(srv, policy=policy)
        assert st["fetched"] == 2 and st["skipped"] == 1, st
        assert srv.seen[-1] == b"QUIT" and b"DELE 2" not in srv.seen, srv.seen
        assert b.stored() == [GOOD, THREE]
        if policy == "delete":  # deleted at QUIT: their records go
            assert b"DELE 1" in srv.seen and b"DELE 3" in srv.seen and b.uids() == []
            box = [(b"u2", TWO)]  # what the server has left
        else:
            assert b"DELE 1" not in srv.seen and sorted(b.uids()) == [b"u1", b"u3"]
        srv = Scripted(box)
        st = b.fetch(srv, policy=policy)
        assert st["fetched"] == 1 and srv.seen[-1] == b"QUIT", st
        assert sorted(b.stored()) == sorted([GOOD, TWO, THREE])
    finally:
        b.done()


def test_refused_retr_keeps_the_others_keep_pipelined():
    _refused_retr("keep", None)  # RETR 2 asked for ahead (at message 1's end): its -ERR, then NOOP's +OK


def test_refused_retr_keeps_the_others_delete_pipelined():
    _refused_retr("delete", None)


def test_refused_retr_keeps_the_others_without_pipelining():
    _refused_retr("keep", b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")


def test_refused_first_retr_asked_for_before_the_download_code_loads():
    """The batch's first message, asked for as soon as the listing is read, is the refused one."""
    b = Box()
    try:
        srv = _RefusesRetr([(b"u1", GOOD), (b"u2", TWO)], (1,))
        st = b.fetch(srv, policy="keep")
        assert st["fetched"] == 1 and st["skipped"] == 1 and srv.seen[-1] == b"QUIT", (st, srv.seen)
        assert b.stored() == [TWO] and b.uids() == [b"u2"]
    finally:
        b.done()


def test_full_store_at_begin_ends_cleanly_with_quit():
    """The quota is reached before the second message: DELE 1 goes out alone (nothing is asked for
    into a store the first message filled), the second is not downloaded, not deleted, the session
    ends with QUIT (the first message's DELE commits) and the error is reported."""
    b = Box(quota=len(GOOD))
    try:
        srv = Scripted([(b"u1", GOOD), (b"u2", TWO)])
        s = b.store_fails(srv, "quota", policy="delete")
        assert b"DELE 1" in s and b"RETR 2" not in s and b"DELE 2" not in s and s[-1] == b"QUIT"
        assert b.stored() == [GOOD] and b.uids() == []
    finally:
        b.done()


def _second_begin_fails(why, exc=None):
    """Store.begin raises exc(why) (StoreFull by default) at its second call (the second
    message's delivery); returns the real one, for the caller to put back."""
    from pocketpost.storecore import StoreFull

    exc = exc or StoreFull
    real = Store.begin
    calls = []

    def begin(self, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise exc(why)
        return real(self, *args, **kw)

    Store.begin = begin
    return real


@case
def test_store_error_at_begin_reads_off_the_message_asked_for_with_dele(b):
    """Under delete the second message went out with DELE 1 (the store had room); its begin is then
    refused (the flash filled meanwhile): it is read off the wire (dropped: QUIT's reply is QUIT's),
    not stored, not deleted, the session ends with QUIT (DELE 1 commits), the error is reported."""
    big = b"Subject: big\r\n\r\n" + b"line of the big message\r\n" * 800  # more than a read takes
    srv = Scripted([(b"u1", GOOD), (b"u2", big), (b"u3", THREE)])
    real = _second_begin_fails("flash full")
    try:
        b.fails(srv, client.ClientError, "flash full", policy="delete")
    finally:
        Store.begin = real
    s = srv.seen
    assert s[-4:] == [b"DELE 1", b"RETR 2", b"NOOP", b"QUIT"], s
    assert b"RETR 3" not in s and b"DELE 2" not in s
    assert not b.pair.to_client  # every reply read, QUIT's last (not RETR 2's taken for it)
    assert b.stored() == [GOOD] and b.uids() == []


def test_a_store_error_names_the_message_and_hints_at_room_only_when_room_was_short():
    """The store's error names the message and its size; "make room, or set max_size" only for a
    full store or quota: a MemoryError or a flash error is cured by neither."""
    for exc, hint in ((None, True), (MemoryError, False), (OSError, False)):
        b = Box()
        srv = Scripted([(b"u1", GOOD), (b"u2", THREE)])
        real = _second_begin_fails("why not", exc)
        try:
            e = b.fails(srv, client.ClientError, "store: ", policy="keep")
        finally:
            Store.begin = real
            b.done()
        assert "message 2 (%d octets)" % len(THREE) in e.msg and "why not" in e.msg, e.msg
        assert ("make room" in e.msg) == hint, (exc, e.msg)


def test_full_store_mid_message_reads_it_to_the_end_and_quits():
    """The quota runs out inside the second message (the store refuses a body chunk): the rest of
    the message is still read off the wire, so the session stays in step and ends with QUIT (the
    first message's DELE commits); the second is neither stored, nor recorded, nor deleted."""
    big = b"Subject: big\r\n\r\n" + b"line of the big message\r\n" * 400
    b = Box(quota=len(GOOD) + 100)
    try:
        srv = Scripted([(b"u1", GOOD), (b"u2", big)])
        s = b.store_fails(srv, "too large", policy="delete")
        assert b"DELE 1" in s and b"RETR 2" in s and b"DELE 2" not in s and s[-1] == b"QUIT", s
        assert b.stored() == [GOOD] and b.uids() == []
    finally:
        b.done()


@case
def test_keep_asks_for_the_next_message_before_committing_this_one(b):
    """Under keep, with PIPELINING, the next message's RETR (and NOOP) goes out as soon as this
    one has proved complete, before this one is committed and recorded (the server streams it
    meanwhile); the last one asks for nothing more. Under delete (a DELE follows each message)
    nothing is asked ahead."""
    srv = Scripted([(b"u1", GOOD), (b"u2", TWO), (b"u3", THREE)])
    asked = []
    b.fetch(srv, lambda info: asked.append([x for x in srv.seen if x.startswith(b"RETR")]), policy="keep")
    r12, r123 = [b"RETR 1", b"RETR 2"], [b"RETR 1", b"RETR 2", b"RETR 3"]
    assert asked == [r12, r123, r123], asked
    assert srv.seen[-7:] == [b"RETR 1", b"NOOP", b"RETR 2", b"NOOP", b"RETR 3", b"NOOP", b"QUIT"]
    assert b.stored() == [GOOD, TWO, THREE] and sorted(b.uids()) == [b"u1", b"u2", b"u3"]
    b2 = Box()
    try:
        srv = Scripted([(b"u1", GOOD), (b"u2", TWO)])
        asked = []
        b2.fetch(srv, lambda info: asked.append(srv.seen.count(b"RETR 2")), policy="delete")
        assert asked == [0, 1] and b2.stored() == [GOOD, TWO]
    finally:
        b2.done()


@case
def test_the_first_download_is_asked_for_before_its_delivery_begins(b):
    """With PIPELINING the batch's first download is asked for as soon as the listing is read (before
    the state's compaction and the delivery's begin); the next ones at the end of the one before."""
    srv = Scripted([(b"u1", GOOD), (b"u2", TWO)])
    at_begin = []
    real = Store.begin

    def begin(self, *args, **kw):
        at_begin.append([x for x in srv.seen if x.startswith(b"RETR")])
        return real(self, *args, **kw)

    Store.begin = begin
    try:
        b.fetch(srv, policy="delete")
    finally:
        Store.begin = real
    # (under delete: RETR 2 goes out with DELE 1, after message 1 is committed)
    assert at_begin == [[b"RETR 1"], [b"RETR 1", b"RETR 2"]], at_begin
    assert srv.seen.index(b"DELE 1") + 1 == srv.seen.index(b"RETR 2")
    assert b.stored() == [GOOD, TWO]


def test_full_store_before_the_session_asks_for_nothing_and_quits():
    """The store is full before the session: the first new message is not asked for early (its
    begin would refuse it: it would be downloaded only to be dropped, every run), its begin is
    refused, nothing is downloaded, and QUIT ends the session."""
    big = b"Subject: big\r\n\r\n" + b"line of the big message\r\n" * 800  # more than a read takes
    b = Box(quota=len(GOOD))
    try:
        b.fetch(Scripted([(b"u1", GOOD)]), policy="keep")
        srv = Scripted([(b"u1", GOOD), (b"u2", big), (b"u3", THREE)])
        s = b.store_fails(srv, "quota", policy="keep")
        assert b"RETR 2" not in s and b"RETR 3" not in s and s[-1] == b"QUIT", s
        assert not b.pair.to_client  # every reply read, QUIT's last
        assert b.stored() == [GOOD] and b.uids() == [b"u1"]
    finally:
        b.done()


def _writes(b, srv, **kw):
    """Fetch recording each write the client makes: (its command lines, messages in the store then)."""
    from pop3pair import Pop3Pair

    log = []
    real = Pop3Pair.client_sent

    def sent(self, data):
        log.append((bytes(data).split(b"\r\n")[:-1], len(b.stored())))
        return real(self, data)

    Pop3Pair.client_sent = sent
    try:
        st = b.fetch(srv, **kw)
    finally:
        Pop3Pair.client_sent = real
    return st, [w for w in log if w[0][0] not in (b"CAPA", b"USER u", b"PASS p", b"STAT", b"UIDL", b"LIST")]


@case
def test_delete_sends_dele_and_the_next_retr_in_one_write_after_the_commit(b):
    """Under delete with PIPELINING, message n's DELE and message n+1's RETR and NOOP go out in one
    write, only once n is in the store; the last DELE goes alone. One write (a round trip) per
    message instead of two."""
    srv = Scripted([(b"u1", GOOD), (b"u2", TWO), (b"u3", THREE)])
    st, w = _writes(b, srv, policy="delete")
    assert w == [([b"RETR 1", b"NOOP"], 0), ([b"DELE 1", b"RETR 2", b"NOOP"], 1),
                 ([b"DELE 2", b"RETR 3", b"NOOP"], 2), ([b"DELE 3"], 3), ([b"QUIT"], 3)], w
    assert st["fetched"] == 3 and st["deleted"] == 3 and not b.pair.to_client
    assert b.stored() == [GOOD, TWO, THREE] and b.uids() == []


@case
def test_delete_without_pipelining_keeps_the_old_sequence(b):
    """No PIPELINING: each command in its own write, its reply read before the next (RETR, NOOP, DELE)."""
    srv = Scripted([(b"u1", GOOD), (b"u2", TWO)], capa=b"+OK\r\nUSER\r\nUIDL\r\n.\r\n")
    st, w = _writes(b, srv, policy="delete")
    assert w == [([b"RETR 1"], 0), ([b"NOOP"], 0), ([b"DELE 1"], 1), ([b"RETR 2"], 1), ([b"NOOP"], 1),
                 ([b"DELE 2"], 2), ([b"QUIT"], 2)], w
    assert st["fetched"] == 2 and st["deleted"] == 2 and b.stored() == [GOOD, TWO] and b.uids() == []


@case
def test_refused_dele_with_the_next_retr_in_flight(b):
    """DELE n refused (-ERR) while RETR n+1 went out in the same write: logged, not counted; n+1
    is still read as its RETR's reply and stored; each message stored exactly once, every reply
    read in order, QUIT last."""
    srv = Scripted([(b"u1", GOOD), (b"u2", TWO), (b"u3", THREE)], dele=b"-ERR read-only\r\n")
    st, w = _writes(b, srv, policy="delete")
    assert [x[0] for x in w] == [[b"RETR 1", b"NOOP"], [b"DELE 1", b"RETR 2", b"NOOP"],
                                 [b"DELE 2", b"RETR 3", b"NOOP"], [b"DELE 3"], [b"QUIT"]], w
    assert st["fetched"] == 3 and st["deleted"] == 0 and not b.pair.to_client
    assert b.stored() == [GOOD, TWO, THREE] and sorted(b.uids()) == [b"u1", b"u2", b"u3"]
    st = b.fetch(Scripted([(b"u1", GOOD), (b"u2", TWO), (b"u3", THREE)]), policy="delete")
    assert st["fetched"] == 0 and st["deleted"] == 3 and b.stored() == [GOOD, TWO, THREE]


@case
def test_keep_days_content_keyed_duplicate_deleted_with_the_next_retr(b):
    """keep_days: a content-keyed message (UIDL over 70 octets) seen again after keep_days is a
    duplicate deleted at once: its DELE and the next new message's RETR go out in one write."""
    import time

    t0 = int(time.time())
    real = client.compat.now
    try:
        client.compat.now = lambda: t0
        b.fetch(Scripted([(b"u" * 71, GOOD)]), policy="keep_days", keep_days=7)
        client.compat.now = lambda: t0 + 8 * 86400
        srv = Scripted([(b"u" * 71, GOOD), (b"u2", TWO)])
        st, w = _writes(b, srv, policy="keep_days", keep_days=7)
    finally:
        client.compat.now = real
    assert [x[0] for x in w] == [[b"RETR 1", b"NOOP"], [b"DELE 1", b"RETR 2", b"NOOP"], [b"QUIT"]], w
    assert st["duplicates"] == 1 and st["deleted"] == 1 and st["fetched"] == 1 and not b.pair.to_client
    assert b.stored() == [GOOD, TWO] and b.uids() == [b"u2"]


class _HangsUpAfterNoop(Scripted):
    """Answers the first NOOP, then hangs up: the next message's RETR, asked for ahead, cannot go out."""

    def handle(self, line):
        r = Scripted.handle(self, line)
        if bytes(line) == b"NOOP":
            self.closing = True
        return r


@case
def test_keep_a_failed_ask_ahead_does_not_cost_the_message_just_proved(b):
    """The connection dies once message 1 has proved complete, as RETR 2 is asked for ahead: message 1
    is still committed and recorded; the session then fails on message 2 (nothing of it kept)."""
    srv = _HangsUpAfterNoop([(b"u1", GOOD), (b"u2", TWO)])
    b.fails(srv, client.ConnectionLost, "closed", policy="keep")
    assert b.stored() == [GOOD] and b.uids() == [b"u1"] and b"QUIT" not in srv.seen


def test_keep_full_store_at_begin_reads_off_the_message_asked_ahead_and_quits():
    """Under keep the second message was asked for at the end of the first; the quota refuses it
    at its begin: its reply is read off the wire (dropped) so that QUIT's reply is QUIT's (the
    session ends cleanly); it is neither stored nor recorded."""
    big = b"Subject: big\r\n\r\n" + b"line of the big message\r\n" * 800  # more than a read takes
    b = Box(quota=len(GOOD))
    try:
        srv = Scripted([(b"u1", GOOD), (b"u2", big), (b"u3", THREE)])
        s = b.store_fails(srv, "quota", policy="keep")
        assert b"RETR 2" in s and b"RETR 3" not in s and s[-1] == b"QUIT", s
        assert not b.pair.to_client  # every reply read, QUIT's last (not RETR 2's taken for it)
        assert b.stored() == [GOOD] and b.uids() == [b"u1"]
    finally:
        b.done()


def test_keep_full_store_mid_message_asks_for_nothing_more_and_quits():
    """The quota runs out inside the first message (its rest is still read): the second is not
    asked for ahead (the batch stops), QUIT ends the session, nothing is kept."""
    big = b"Subject: big\r\n\r\n" + b"line of the big message\r\n" * 800  # more than a read takes
    b = Box(quota=100)
    try:
        srv = Scripted([(b"u1", big), (b"u2", big)])
        s = b.store_fails(srv, "too large", policy="keep")
        assert b"RETR 2" not in s and s[-1] == b"QUIT", s
        assert not b.pair.to_client  # every reply read, QUIT's last
        assert b.stored() == [] and b.uids() == []
    finally:
        b.done()


class _DropsDownloadCode(Scripted):
    """As the RETR asked for ahead arrives, clientget leaves sys.modules: what another account's
    fetch (board.py runs them at once) does on MicroPython when its batch or session ends
    (compat.forget; on CPython, where forget does nothing, the same done by hand)."""

    def handle(self, line):
        if bytes(line) == b"RETR 2":
            import sys

            sys.modules.pop("pocketpost.clientget", None)
            import pocketpost

            try:
                delattr(pocketpost, "clientget")
            except (AttributeError, KeyError):
                pass
        return Scripted.handle(self, line)


def test_keep_full_store_reads_off_the_ahead_message_when_another_fetch_dropped_the_download_code():
    """Message 1 fills the quota after message 2 was asked for ahead, and meanwhile another
    account's fetch dropped the download code: message 2, refused at its begin, is still read off
    (the code loaded again) and QUIT ends the session; the error is the store's, not a KeyError."""
    import sys

    import pocketpost
    from pocketpost import clientget as real
    from pocketpost import compat

    big = b"Subject: big\r\n\r\n" + b"line of the big message\r\n" * 800
    b = Box(quota=len(GOOD))
    try:
        srv = _DropsDownloadCode([(b"u1", GOOD), (b"u2", big)])
        s = b.store_fails(srv, "quota", policy="keep")
        assert b"RETR 2" in s and s[-1] == b"QUIT", s
        assert not b.pair.to_client
        assert b.stored() == [GOOD] and b.uids() == [b"u1"]
    finally:
        if not compat.IS_MICROPYTHON:  # one copy of the module (its classes) for the other tests
            sys.modules["pocketpost.clientget"] = real
            pocketpost.clientget = real
        b.done()


@case
def test_real_uid_starting_with_hash_is_a_uid(b):
    """'#abc' is a valid UID, not a synthetic key: it stays recorded while it is on the server,
    however old, and is never fetched twice."""
    import time

    assert b.fetch(Scripted([(b"#abc", GOOD)]))["fetched"] == 1
    real = client.compat.now
    later = int(time.time()) + 31 * 86400
    client.compat.now = lambda: later
    try:
        for _ in range(2):
            assert b.fetch(Scripted([(b"#abc", GOOD)]))["fetched"] == 0
    finally:
        client.compat.now = real
    assert b.stored() == [GOOD] and b.uids() == [b"#abc"]


@case
def test_no_uidl_quit_lost_then_duplicate_dropped(b):
    """No UIDL, policy delete: the QUIT reply is lost (the DELE never commits), so the next
    session is offered the message again; its content key says it is here already."""
    srv = Scripted([(None, GOOD)], {"QUIT": None})
    b.fails(srv, client.ConnectionLost, "QUIT", policy="delete")
    keys = [k for k, _, _ in b.entries()]
    assert len(keys) == 1 and uidstate.is_hash_key(keys[0])
    srv = Scripted([(None, GOOD)])
    st = b.fetch(srv, policy="delete")
    assert st["duplicates"] == 1 and st["fetched"] == 0 and st["deleted"] == 1 and srv.seen[-1] == b"QUIT"
    assert b.stored() == [GOOD] and b.uids() == []


@case
def test_keep_days_clock_unset_at_first_sight(b):
    """Fetched before NTP set the clock: first_seen is unknown (0), stamped by the first session
    with a set clock, and the message is deleted keep_days after that, not at once."""
    import time

    t0 = int(time.time())
    real = client.compat.now

    def at(t, msgs_seen=None, **kw):
        client.compat.now = lambda: t
        try:
            srv = Scripted([(b"u1", GOOD)])
            st = b.fetch(srv, policy="keep_days", keep_days=7)
            return st, srv.seen
        finally:
            client.compat.now = real

    def times():
        return [fs for k, fs, _ in b.entries() if not uidstate.is_hash_key(k)]

    # (the state keeps first_seen in days, rounded up: uidstate's theory)
    day = 1577836800 + (t0 - 1577836800 + 86399) // 86400 * 86400
    assert at(1000)[0]["fetched"] == 1 and times() == [0]
    st, seen = at(t0)
    assert st["deleted"] == 0 and not [l for l in seen if l.startswith(b"DELE")] and times() == [day]
    assert at(1000)[0]["deleted"] == 0 and times() == [day]  # the clock is lost again
    # never deleted before keep_days from the exact first sight (at most a day after it)
    st, seen = at(t0 + 7 * 86400 - 1)
    assert st["deleted"] == 0 and not [l for l in seen if l.startswith(b"DELE")] and times() == [day]
    st, seen = at(t0 + 8 * 86400)
    assert st["deleted"] == 1 and b"DELE 1" in seen and b.stored() == [GOOD] and b.uids() == []


def test_headers_without_empty_line():
    """A message (or a TOP n 0 reply) that is all header, with no empty line: its fields still
    reach on_message."""
    msg = b"From: a@example.org\r\nSubject: only a header\r\n"
    for kw in ({}, {"max_size": 10, "oversize": "headers"}):
        b = Box()
        try:
            got = []
            b.fetch(Scripted([(b"u1", msg)]), got.append, **kw)
            assert got[0]["headers"] == {"from": "a@example.org", "subject": "only a header"}
            assert got[0]["headers_only"] == bool(kw)
        finally:
            b.done()


@case
def test_max_entries_per_account(b):
    """The UIDL state holds at most max_entries: further new messages wait (state_full) until
    deletions make room."""
    msgs = [(b"u%d" % i, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(1, 5)]
    st = b.fetch(Scripted(msgs), max_entries=2)
    assert st["fetched"] == 2 and st["state_full"] and sorted(b.uids()) == [b"u1", b"u2"]
    st = b.fetch(Scripted(msgs), max_entries=2, policy="delete")  # deletes u1, u2; u3, u4 still wait
    assert st["fetched"] == 0 and st["deleted"] == 2 and b.uids() == []
    st = b.fetch(Scripted(msgs[2:]), max_entries=2)
    assert st["fetched"] == 2 and not st["state_full"] and len(b.stored()) == 4


def test_new_messages_in_batches():
    """More new messages than clientplan._NEW_BATCH (16): UIDL is read again per batch and all are
    fetched; a UID listed twice sends both copies by content; max_entries still bounds the state."""
    msgs = [(b"u%d" % i, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(1, 151)]
    b = Box()
    try:
        srv = Scripted(msgs)
        st = b.fetch(srv)
        assert st["fetched"] == 150 and not st["state_full"] and len(b.uids()) == 150
        assert srv.seen.count(b"UIDL") == 10 and srv.seen[-1] == b"QUIT"  # (150 new, 16 a pass)
        srv = Scripted(msgs + [(b"u151", GOOD)])
        st = b.fetch(srv)
        assert st["fetched"] == 1 and srv.seen.count(b"UIDL") == 1 and len(b.uids()) == 151
    finally:
        b.done()
    for extra, fetched, by_content, kw in (([], 100, 0, {"max_entries": 100}),
                                          ([(b"u80", TWO)], 101, 2, {})):
        b = Box()
        try:
            st = b.fetch(Scripted((msgs[:100] if extra else msgs) + extra), **kw)
            assert st["fetched"] == fetched and st["by_content"] == by_content, st
            assert st["state_full"] == bool(kw)
        finally:
            b.done()


def test_a_first_fetch_compacts_its_state_between_batches():
    """A new account's first fetch of 100 messages (16-octet UIDs, Dovecot's length): the
    state's compactions come between batches (uidstate.due with the batch: the entries on file
    a multiple of clientplan._NEW_BATCH, 16), not between two downloads of a batch, where the
    download code is dropped and placed again (tools/bench_heap.py dfirst: docs/FIGURES.md)."""
    at = []
    real = uidstate.UidState.compact

    def compact(st):
        at.append(len(st))
        real(st)

    uidstate.UidState.compact = compact
    b = Box()
    try:
        msgs = [(b"%016x" % (i * 7919), b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(1, 101)]
        st = b.fetch(Scripted(msgs))
        assert st["fetched"] == 100 and len(b.uids()) == 100, st
    finally:
        uidstate.UidState.compact = real
        b.done()
    # (2 since stop 31: the journal takes a message's S record only, its P goes to a slot file)
    assert len(at) >= 2 and [n for n in at if n % 16] == [], at


def test_settle_at_boot_records_a_message_stored_before_the_cut():
    # What a power cut right after a commit leaves: the message in the store, only its pending
    # entry in the state. client.settle (board boot, before any local session) records it, so a
    # user deleting it locally before the next fetch cannot make that fetch download it again;
    # a pending entry whose message never landed is dropped (fetched again, nothing lost).
    b = Box()
    try:
        acct = {"name": "h", "host": "script", "user": "u", "password": "p", "tls": "none",
                "allow_plaintext": True, "mailbox": "m", "state_dir": b.dir + "/state"}
        st_store = Store(b.dir + "/mail")
        d = st_store.begin("m", digest=True)
        d.write(b"Subject: cut\r\n\r\n.dot line\r\n")
        digest = d.digest()
        local = d.uid_on_commit()
        st = uidstate.UidState(b.dir + "/state", "h").load()
        st.set_pending(d.size, digest, local, 1700000000, "f", b"uid-cut")
        st.save()
        d.commit()
        assert b.uids() == []  # only pending on flash
        assert client.settle(acct, Store(b.dir + "/mail")) is True
        assert b.uids() == [b"uid-cut"]
        assert uidstate.UidState(b.dir + "/state", "h").load().pending is None
        assert client.settle(acct, Store(b.dir + "/mail")) is False  # nothing left to settle
        # never committed: a pending entry naming a local UID the store does not hold
        st = uidstate.UidState(b.dir + "/state", "h").load()
        st.set_pending(10, digest, local + "0", 1700000000, "f", b"uid-lost")
        st.save()
        assert client.settle(acct, Store(b.dir + "/mail")) is True
        assert b.uids() == [b"uid-cut"]  # not recorded: the next fetch takes it again
    finally:
        b.done()


class _Committing(Scripted):
    """A server whose DELEs commit at QUIT (RFC 1939 UPDATE state): `box` is the mailbox it
    serves, shared across sessions. `cut`: (keyword, nth) hangs up at the nth such command
    (its answer never sent: for QUIT the DELEs are not committed), or with "QUIT+" after
    committing them (the +OK lost)."""

    def __init__(self, box, cut=None):
        Scripted.__init__(self, list(box))
        self.box = box
        self.cut = cut
        self.marked = []
        self.n = 0

    def handle(self, line):
        w = bytes(line).split(b" ")
        k = w[0].upper()
        cut = self.cut
        if cut is not None and k == cut[0].rstrip(b"+"):
            self.n += 1
            if self.n == cut[1]:
                self.seen.append(bytes(line))
                if cut[0] == b"QUIT+":
                    self._commit()
                self.closing = True
                return b""
        if k == b"DELE":
            self.marked.append(int(w[1]))
        if k == b"QUIT":
            self._commit()
        return Scripted.handle(self, line)

    def _commit(self):
        self.box[:] = [m for i, m in enumerate(self.msgs) if i + 1 not in self.marked]


def test_cut_in_each_cold_step_keeps_each_message_once():
    """A session cut inside the listing pass of its second batch (clientplan.py), in its
    first-pass DELEs or at its QUIT (clientend.py: both cold modules, dropped after each use on
    MicroPython, the exception crossing them), then sessions to the end, policy delete, a server
    whose DELEs commit at QUIT: every message stored exactly once, every DELE sent names a
    stored message, the server emptied."""
    msgs = [(b"u%d" % i, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(1, 71)]  # two batches
    for cuts in ([(b"UIDL", 2)], [(b"LIST", 2)], [(b"QUIT", 1), (b"DELE", 2)], [(b"QUIT+", 1)]):
        b = Box()
        try:
            box = list(msgs)
            for s in range(5):
                srv = _Committing(box, cuts[s] if s < len(cuts) else None)
                if srv.cut is not None:
                    b.fails(srv, Exception, "", policy="delete")
                else:
                    b.fetch(srv, policy="delete")
                stored = b.stored()
                assert len(stored) == len(set(stored)), (cuts, s)
                for n in srv.marked:
                    assert srv.msgs[n - 1][1] in stored, (cuts, s, n)
                if not box:
                    break
            assert sorted(stored) == sorted(m[1] for m in msgs) and box == [], (cuts, s, len(stored), len(box))
        finally:
            b.done()


@case
def test_refused_deles_load_the_table_code_once(b):
    """A read-only maildrop refuses every DELE of the messages stored earlier (policy delete):
    at the session's end each refused record is cleared again (uidcompact.clear_deleted). The
    table code is loaded once for them, not once per refused message (on MicroPython a module
    load each: its compile or its objects, every session, for every message of the mailbox)."""
    import sys

    from pocketpost import compat

    msgs = [(b"u%d" % i, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(1, 21)]
    b.fetch(Scripted(msgs))
    loads = [0]
    real = compat.forget

    def counting(names):
        if compat.IS_MICROPYTHON and "uidcompact" in names and "pocketpost.uidcompact" in sys.modules:
            loads[0] += 1  # dropped: the next use loads it again
        real(names)

    compat.forget = counting
    try:
        srv = Scripted(msgs, dele=b"-ERR read-only\r\n")
        st = b.fetch(srv, policy="delete")
    finally:
        compat.forget = real
    assert st["deleted"] == 0 and srv.seen.count(b"QUIT") == 1 and len(b.uids()) == 20
    assert loads[0] <= 4, loads[0]  # the load, a compaction, the retain after QUIT, ...


def test_refused_retr_takes_no_place_under_the_cap():
    """max_messages 1 and the first new message always refused (RETR -ERR): it is skipped and the
    next one is fetched in the same session, run after run; a refused message downloaded nothing,
    so it does not count as a download (else it used the whole cap, every run, and blocked the
    mailbox behind it)."""
    b = Box()
    try:
        box = [(b"u1", GOOD), (b"u2", TWO), (b"u3", THREE)]
        srv = _RefusesRetr(box, (1,))
        st = b.fetch(srv, policy="keep", max_messages=1)
        assert st["fetched"] == 1 and st["skipped"] == 1, st
        assert b"RETR 3" not in srv.seen and srv.seen[-1] == b"QUIT" and not b.pair.to_client, srv.seen
        assert b.stored() == [TWO] and b.uids() == [b"u2"]
        srv = _RefusesRetr(box, (1,))
        st = b.fetch(srv, policy="delete", max_messages=1)  # DELE 2 (stored earlier), then 3
        assert st["fetched"] == 1 and st["skipped"] == 1 and st["deleted"] == 2, st
        assert b"DELE 1" not in srv.seen and srv.seen[-1] == b"QUIT" and not b.pair.to_client, srv.seen
        assert b.stored() == [TWO, THREE] and b.uids() == []
    finally:
        b.done()


def test_store_error_then_the_message_asked_ahead_refused_still_quits():
    """Under keep message 1 fills the quota after message 2 was asked for ahead, and the server
    refuses message 2 (RETR -ERR): its replies are read off and the session still ends with QUIT,
    the error reported the store's (not the refusal's, raised out of the read-off without QUIT:
    no DELE of the session would commit)."""
    b = Box(quota=len(GOOD))
    try:
        srv = _RefusesRetr([(b"u1", GOOD), (b"u2", TWO)], (2,))
        b.fails(srv, client.ClientError, "quota", policy="keep")
        assert srv.seen[-3:] == [b"RETR 2", b"NOOP", b"QUIT"] and not b.pair.to_client, srv.seen
        assert b.stored() == [GOOD] and b.uids() == [b"u1"]
    finally:
        b.done()


class _HangsUpOn(Scripted):
    """Hangs up on the command `word` ("RETR 2", "QUIT", ...): with part of a message first for
    a RETR (its +OK and `part` octets of the body), else without a word."""

    def __init__(self, msgs, word, part=0):
        Scripted.__init__(self, msgs)
        self.word = word
        self.part = part

    def handle(self, line):
        if bytes(line) != self.word:
            return Scripted.handle(self, line)
        self.seen.append(bytes(line))
        self.closing = True
        if self.part:
            return b"+OK\r\n" + self.msgs[int(self.word[5:]) - 1][1][:self.part]
        return b""


def _store_error_then_lost(srv, policy, quota=len(GOOD)):
    """The session against srv ends on the store's error (the quota) even though the connection
    is lost after it: the store's error is raised, the loss only logged. Returns the log lines."""
    lines = []
    b = Box(quota=quota)
    log.set_sink(lines.append)
    try:
        b.store_fails(srv, "quota", policy=policy)
        assert b.stored() == [GOOD], b.stored()
        return b, lines
    finally:
        log.set_sink(lambda line: None)


BIG = b"Subject: big\r\n\r\n" + b"line of the big message\r\n" * 800  # more than a read takes


def test_store_error_then_the_connection_lost_in_the_read_off_reports_the_store_error():
    """Under keep message 1 fills the quota after message 2 was asked for ahead; the connection
    drops while message 2 is read off (part of its body came): the user is told the store's error
    (the one to act on), the loss is logged; no QUIT, so nothing of the session commits on the
    server, and message 1 is recorded (not fetched again)."""
    srv = _HangsUpOn([(b"u1", GOOD), (b"u2", BIG)], b"RETR 2", 300)
    b, lines = _store_error_then_lost(srv, "keep")
    try:
        assert srv.seen[-2:] == [b"NOOP", b"RETR 2"], srv.seen  # (hung up there: no QUIT)
        assert b.uids() == [b"u1"]
        assert [x for x in lines if "closed the connection" in x], lines
    finally:
        b.done()


def test_store_error_then_the_connection_lost_in_the_read_off_under_delete():
    """Under delete message 2 went out with DELE 1 (the store had room) and its begin is refused (the
    flash filled meanwhile); the connection drops as it is read off: the store's error is reported,
    and with no QUIT DELE 1 does not commit (message 1 stays on the server, recorded: deleted by a
    later session, never stored twice)."""
    srv = _HangsUpOn([(b"u1", GOOD), (b"u2", BIG)], b"RETR 2", 300)
    real = _second_begin_fails("flash full: quota")
    try:
        b, lines = _store_error_then_lost(srv, "delete", 0)
    finally:
        Store.begin = real
    try:
        assert srv.seen[-2:] == [b"DELE 1", b"RETR 2"], srv.seen  # (hung up there: no QUIT)
        assert [x for x in lines if "closed the connection" in x], lines
        st = b.fetch(Scripted([(b"u1", GOOD)]), policy="delete")
        assert st["fetched"] == 0 and st["deleted"] == 1 and b.stored() == [GOOD] and b.uids() == []
    finally:
        b.done()


def test_store_error_after_a_failed_ask_ahead_reports_the_store_error():
    """The connection dies once message 1 has proved complete, as message 2 is asked for ahead (the
    send fails, quietly: message 1 is still stored); the quota then refuses message 2 at its begin
    and its read-off finds the connection gone: the store's error is reported, not the loss."""
    srv = _HangsUpAfterNoop([(b"u1", GOOD), (b"u2", TWO)])
    b, lines = _store_error_then_lost(srv, "keep")
    try:
        assert b"QUIT" not in srv.seen and b.uids() == [b"u1"], srv.seen
    finally:
        b.done()


def test_store_error_then_quit_unanswered_reports_the_store_error():
    """The store's error stops the batch, the read-off goes well, and the server hangs up on QUIT
    without a word: the store's error is still the one reported (QUIT's loss logged)."""
    srv = _HangsUpOn([(b"u1", GOOD), (b"u2", BIG)], b"QUIT")
    b, lines = _store_error_then_lost(srv, "keep")
    try:
        assert srv.seen[-3:] == [b"RETR 2", b"NOOP", b"QUIT"] and b.uids() == [b"u1"], srv.seen
        assert [x for x in lines if "QUIT" in x and "closed the connection" in x], lines
    finally:
        b.done()


@case
def test_a_refused_content_keyed_message_is_not_counted_by_content(b):
    """A message keyed by content (its UIDL over 70 octets) that the server refuses (RETR -ERR) was
    not downloaded: it counts as skipped, not under by_content (nor fetched); the next session,
    whose server reads it, fetches and counts it."""
    msgs = [(b"u" * 71, GOOD), (b"u2", TWO)]
    st = b.fetch(_RefusesRetr(msgs, (1,)), policy="keep")
    assert (st["fetched"], st["skipped"], st["by_content"]) == (1, 1, 0), st
    st = b.fetch(Scripted(msgs), policy="keep")
    assert (st["fetched"], st["skipped"], st["by_content"]) == (1, 0, 1), st
    assert sorted(b.stored()) == sorted([GOOD, TWO])


def _commit_lands_but_reports_no_heap(reboot):
    """Delivery.commit's no-heap fallback: the rename happened but raised, and the
    store's rare-path code could not be loaded (MemoryError): the commit reports the MemoryError
    although the message is on flash. The client must not drop its pending entry: the next
    session reconciles it (found: recorded as stored) instead of downloading it a second time:
    in a new process (the fetch CLI run again) and in the same one (the board's next scheduled
    fetch, the message unindexed in the store's RAM state)."""
    from pocketpost import compat, store as storemod

    b = Box()
    real_rename, real_cold = compat.rename, storemod._cold
    fired = []

    def rename(src, dst):
        real_rename(src, dst)
        if not fired and "/mail/" in dst and ".t" in src.split("/")[-1]:  # a message's temp file
            fired.append(1)
            raise OSError(5)  # EIO after the rename: the message landed

    def cold(name, *args):
        if name == "storerare" and len(fired) == 1:
            fired.append(2)
            raise MemoryError()
        return real_cold(name, *args)

    try:
        compat.rename, storemod._cold = rename, cold
        try:
            e = b.fails(Scripted([(b"u1", GOOD), (b"u2", TWO)]), client.ClientError, "store: ")
        finally:
            compat.rename, storemod._cold = real_rename, real_cold
        assert fired == [1, 2] and "MemoryError" in e.msg, (fired, e.msg)
        if reboot:
            storemod.reboot()  # a new process
        st = b.fetch(Scripted([(b"u1", GOOD), (b"u2", TWO)]))
        assert sorted(b.stored()) == sorted([GOOD, TWO]), b.stored()  # each once
        assert st["fetched"] == 1 and sorted(b.uids()) == [b"u1", b"u2"], (st, b.uids())
    finally:
        b.done()


def test_a_commit_that_lands_but_reports_no_heap_is_reconciled_not_fetched_again():
    _commit_lands_but_reports_no_heap(True)
    _commit_lands_but_reports_no_heap(False)


def test_a_login_refused_for_a_locked_mailbox_or_a_server_failure_says_so():
    """PASS answered -ERR [IN-USE] (another session holds the mailbox), [SYS/TEMP], [SYS/PERM],
    [LOGIN-DELAY]: the error names the code and what to do; only a refusal without such a code
    ([AUTH], none) says to check the user name and password."""
    for code, words in ((b"[IN-USE] ", "in use by another session"), (b"[SYS/TEMP] ", "try again later"),
                        (b"[SYS/PERM] ", "ask its administrator"), (b"[LOGIN-DELAY] ", "fetch less often"),
                        (b"[AUTH] ", "check the user name and password"), (b"", "check the user name and password")):
        b = Box()
        try:
            e = b.fails(Scripted([(b"u1", GOOD)], {"PASS": b"-ERR " + code + b"no\r\n"}), client.AuthFailed,
                        "h script:110: PASS: -ERR \"no\"; ")  # (the server's text quoted: review w19)
            assert words in e.msg, e.msg
            assert code in (b"", b"[AUTH] ") or code.strip().decode() in e.msg, e.msg
            assert b.nothing_kept()
        finally:
            b.done()


def test_uidl_refused_for_now_is_not_a_server_without_uidl():
    """UIDL answered -ERR [SYS/TEMP] (or [IN-USE]) by a server that has UIDL: an error saying to
    try again later; not "the server has no UIDL: set policy delete" (keep), nor (delete) a
    session keyed by content that downloads again a message stored before (its UID in the state)."""
    for policy in ("keep", "delete"):
        b = Box()
        try:
            b.fetch(Scripted([(b"u1", GOOD)]), policy="keep")  # stored, left on the server
            srv = Scripted([(b"u1", GOOD), (b"u2", TWO)], {"UIDL": b"-ERR [SYS/TEMP] index busy\r\n"})
            e = b.fails(srv, client.ErrReply, "h script:110: UIDL: -ERR index busy", policy=policy)
            assert "SYS/TEMP" in e.msg and "try again later" in e.msg, e.msg
            assert b"RETR 1" not in srv.seen and b.stored() == [GOOD], (srv.seen, b.stored())
            # the same refusal without a response code: this server listed UIDs before
            srv = Scripted([(b"u1", GOOD), (b"u2", TWO)], {"UIDL": b"-ERR busy\r\n"})
            e = b.fails(srv, client.ClientError, "h script:110: UIDL refused", policy=policy)
            assert "try again later" in e.msg and b"RETR 1" not in srv.seen and b.stored() == [GOOD], e.msg
        finally:
            b.done()


def test_a_crash_left_pending_entry_that_cannot_be_checked_yet_is_said_in_words():
    """A power cut left a pending entry; at the next fetch a local POP3 session holds the mailbox
    (MailboxLocked): the error names the account and the mailbox and says to try again, nothing is
    fetched; once the mailbox is free the entry reconciles (stored) and nothing is fetched twice."""
    from pocketpost.store import Store

    b = Box()
    try:
        s = Store(b.dir + "/mail")
        d = s.begin("m", digest=True)
        d.write(GOOD)
        digest = d.digest()
        st = uidstate.UidState(b.dir + "/state", "h").load()
        st.set_pending(d.size, digest, d.uid_on_commit(), 1700000000, "f", b"u1")
        st.save()
        d.commit()
        mb = s.lock("m")
        try:
            srv = Scripted([(b"u1", GOOD)])
            e = b.fails(srv, client.ClientError, "fetch h: ")
            assert "local mailbox m" in e.msg and "MailboxLocked" in e.msg and "try again" in e.msg, e.msg
            assert srv.seen == [], srv.seen  # never connected
        finally:
            mb.release()
        st = b.fetch(Scripted([(b"u1", GOOD)]))
        assert st["fetched"] == 0 and b.stored() == [GOOD] and b.uids() == [b"u1"], (st, b.stored())
    finally:
        b.done()


@case
def test_a_headers_only_uid_listed_twice_is_taken_by_content_not_by_its_uid(b):
    """u1 was stored as headers only; max_size now lets it through, but u1 is listed for two
    messages: which copy it named is unknowable, so neither is taken whole under the UID (both go
    by content, as any stored UID listed twice)."""
    big = b"Subject: big\r\n\r\n" + b"x" * 200 + b"\r\n"
    st = b.fetch(Scripted([(b"u1", big)]), max_size=100, oversize="headers")
    assert st["headers_only"] == 1
    st = b.fetch(Scripted([(b"u1", TWO), (b"u1", big)]))
    assert st["by_content"] == 2 and st["fetched"] == 2, st


def test_uid_table_made_for_the_session_before_any_download_and_never_grown():
    """Stop 29 (issue 10's heap): the session's UID table holds the entries on file + one per
    message STAT counts, at most max_entries: the one made at the start (as many again as on
    file + 16) when that is room enough, else made again once after STAT; never after a
    download. A state of 20 entries and a server of 30 (10 new): one table of 56 records; then a
    server of 90 (60 new): made again after STAT for 30 + 90 = 120. Every message stored once."""
    msgs = [(b"u%d" % i, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(1, 91)]
    b = Box()
    real_load, real_add = uidstate.UidState.load, uidstate.UidState.add
    loads = []
    tables = []

    def load(self, count=None, n=None):
        r = real_load(self, count, n)
        loads.append((count, len(self.buf) // 11))
        return r

    def add(self, uid, first_seen, flag="f"):
        tables.append(self.buf)
        return real_add(self, uid, first_seen, flag)

    try:
        assert b.fetch(Scripted(msgs[:20]))["fetched"] == 20
        uidstate.UidState.load, uidstate.UidState.add = load, add
        for srv, fetched, want in ((Scripted(msgs[:30]), 10, [(-1, 56)]),
                                   (Scripted(msgs), 60, [(-1, 76), (90, 120)])):
            del loads[:], tables[:]
            st = b.fetch(srv)
            assert st["fetched"] == fetched and not st["state_full"], st
            assert loads == want, loads
            assert len(tables) == fetched and all(t is tables[0] for t in tables)
        assert sorted(b.uids()) == sorted(u for u, _ in msgs)
        assert sorted(storeread.messages(Store(b.dir + "/mail"), "m")) == sorted(m for _, m in msgs)
    finally:
        uidstate.UidState.load, uidstate.UidState.add = real_load, real_add
        b.done()


def test_no_heap_for_the_sessions_uid_table_fails_at_its_start_nothing_fetched():
    """The table made again after STAT (more on the server than the start's table has room for)
    and no heap for it: the session fails there, before any RETR, naming the account, the entries
    and the server's count; nothing stored, the state as it was, no QUIT (nothing commits)."""
    msgs = [(b"u%d" % i, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(1, 41)]
    b = Box()

    def table(n):
        if n > 30 * 11:
            raise MemoryError("no heap (the test's)")
        return bytearray(n)

    try:
        assert b.fetch(Scripted(msgs[:3]))["fetched"] == 3
        before = b.entries()
        uidstate.bytearray = table  # (the module's global: before the builtin in both runtimes)
        srv = Scripted(msgs)
        e = b.fails(srv, uidstate.StateError, "account h: no heap for its UID table: 43 entries (3 on file, "
                    "40 messages on the server, max_entries 500) need 473 bytes in one block: nothing fetched")
        assert not [c for c in srv.seen if c[:4] in (b"RETR", b"QUIT")] and b"STAT" in srv.seen, srv.seen
        del uidstate.bytearray
        assert b.entries() == before and len(b.stored()) == 3
        assert b.fetch(Scripted(msgs))["fetched"] == 37 and len(b.stored()) == 40
    finally:
        try:
            del uidstate.bytearray
        except (AttributeError, KeyError, NameError):
            pass
        b.done()
