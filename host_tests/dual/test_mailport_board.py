"""pocketpost.mailport (the board side of export/import/backup/restore) under both runtimes, with
in-memory streams: export records, restore under given UIDs across a bucket gap, the import
journal and its cancelled entry, refusals (checksum, quota) that keep the stream in step."""

import gc
import io

try:
    import tracemalloc  # CPython: the live heap is what tracemalloc counts
except ImportError:
    tracemalloc = None  # MicroPython: gc.mem_alloc() after a collection

from flashdev import fresh_root
from pocketpost import mailport
from pocketpost import store as store_mod
from pocketpost.store import Store
from portcmd import msg_cmd, serve, sha1hex

MSGS = [b"Subject: a\r\n\r\nhello\r\n.dot\r\n", b"Subject: b\r\n\r\n" + b"x" * 5000 + b"\r\n", b"Subject: c\r\n\r\nc\r\n"]


def _records(data):
    """[(kind, fields, payload)] of an export stream."""
    out = []
    i = 0
    while i < len(data):
        j = data.find(b"\n", i)
        head = data[i:j].decode().split(" ")
        i = j + 1
        payload = b""
        if head[0] == "M":
            n = int(head[3])
            payload = data[i : i + n]
            i += n
        out.append((head[0], head[1:], payload))
    return out


def _with_stores(fn, **kw):
    root, cleanup = fresh_root(200)
    store_mod.reboot()
    try:
        fn(Store(root + "/a", quota=0, reserve=0), Store(root + "/b", **kw))
    finally:
        store_mod.reboot()
        cleanup()


def test_export_then_restore_under_the_same_uids():
    def body(a, b):
        all_msgs = [b"Subject: t%d\r\n\r\n" % k for k in range(140)] + MSGS * 2
        uids = [a.deliver_stream("alice", io.BytesIO(m).readinto, 1000 + k) for k, m in enumerate(all_msgs)]
        mb = a.lock("alice")
        mb.commit([k for k in range(140) if k != 3])  # a gap of whole buckets before the rest
        out = io.BytesIO()
        mailport.export(a, [], out)
        recs = _records(out.getvalue())
        idx = [3] + list(range(140, 146))
        kept = [uids[k] for k in idx]
        assert recs[0] == ("B", ["alice", "7", str(sum(len(all_msgs[k]) for k in idx))], b"")
        assert [r[1][0] for r in recs[1:]] == kept
        assert [r[2] for r in recs[1:]] == [all_msgs[k] for k in idx]
        cmds = b"".join(msg_cmd("alice", int(r[1][1]), r[2], r[1][0]) for r in recs[1:])
        replies = serve(b, cmds + b"U alice\nQ\n").split(b"\n")
        assert replies[:7] == [b"A " + u.encode() for u in kept]
        listing = b"\n".join(replies[8:15])
        assert listing == b"\n".join(b"%s %d" % (u.encode(), len(all_msgs[k])) for u, k in zip(kept, idx))
        store_mod.reboot()  # the index, read again from flash, holds every restored message
        mb = Store(b.root, quota=0, reserve=0).lock("alice")
        assert [mb.uid(k) for k in range(mb.count)] == kept
        assert mb.arrival(0) == 1003
        mb.release()
        # a UID at or below the mailbox's last is refused, the stream stays in step
        r = serve(b, msg_cmd("alice", 1, b"Subject: late\r\n\r\n", kept[0]) + b"Q\n")
        assert r.startswith(b"R ") and r.endswith(b"bye\n")

    _with_stores(body)


def test_import_journal_refusals_and_cancelled_entry():
    def body(a, b):
        m = b"Subject: j\r\n\r\nbody\r\n"
        r = serve(a, b"J bob\n" + msg_cmd("bob", 5, m) + b"J bob\nQ\n")
        lines = r.split(b"\n")
        assert lines[0] == b"K 0" and lines[1].startswith(b"A ")
        uid = lines[1][2:]
        assert lines[2] == b"K %d" % (len(uid) + 43) and lines[3] == b"+%s %s" % (sha1hex(m).encode(), uid)
        # a journal line whose message never arrived (killed before the commit) is cancelled
        f = open(a.root + "/.import/bob", "ab")
        f.write(b"+%s %s\n" % (b"0" * 40, b"0badc0de.99"))
        f.close()
        r = serve(a, b"J bob\nQ\n")
        assert r.endswith(b"-" + b"0" * 40 + b"\nbye\n")
        # a checksum that does not match the stored bytes: refused, nothing stored
        r = serve(a, msg_cmd("bob", 5, b"Subject: x\r\n\r\n", sha="1" * 40) + b"Q\n")
        assert r.startswith(b"R checksum mismatch") and a.usage("bob")[0] == 1
        # no room: F with the room left, the rest of the message still read off the pipe
        r = serve(b, msg_cmd("carol", 5, b"Subject: big\r\n\r\n" + b"y" * 9000) + b"J carol\nQ\n")
        assert r.startswith(b"F 100 ") and r.endswith(b"K 0\nbye\n"), r
        assert b.usage("carol") == (0, 0)

    _with_stores(body, quota=100, reserve=0)


def test_mailbox_state_says_whether_a_user_reads_a_new_mailbox_and_makes_nothing():
    def body(a, b):
        a.deliver_stream("alice", io.BytesIO(MSGS[0]).readinto, 1)
        cfg = a.root + "/../config.json"
        f = open(cfg, "w")
        f.write('{"users": {"zoe": {"password": "x"}, "carol": {"password": "x", "mailbox": "shared"}}}')
        f.close()
        r = serve(a, b"C alice\nC zoe\nC shared\nC carol\nC alcie\nQ\n", cfg)
        # alice exists (no user needed); zoe's mailbox is her name; carol reads "shared", not "carol"
        assert r == b"A exists\nA read\nA read\nA new carol zoe\nA new carol zoe\nbye\n", r
        assert a.mailboxes() == ["alice"]  # nothing made
        # no config to check against, or an unreadable one: an R reply, the loop goes on
        r = serve(a, b"C alcie\nC\nQ\n")
        assert r.startswith(b"R no config") and r.endswith(b"\nR malformed command\nbye\n"), r
        r = serve(a, b"C alcie\nQ\n", a.root + "/../nope.json")
        assert r.startswith(b"R config ") and r.endswith(b"\nbye\n") and a.mailboxes() == ["alice"], r

    _with_stores(body)


def test_malformed_commands_get_one_reply_each():
    def body(a, b):
        bad = [b"U", b"J", b"U a b", b"M alice", b"M alice x " + b"0" * 40 + b" -", b"W", b"W x p", b"W -3 p"]
        r = serve(a, b"\n".join(bad) + b"\nU alice\nQ\n")
        assert r == b"R malformed command\n" * len(bad) + b"K 0\nbye\n", r
        assert a.mailboxes() == []  # nothing made, nothing written

    _with_stores(body)


class _UidBox:
    """A locked mailbox of n messages, made up as they are read (no flash: the heap is _uids')."""

    def __init__(self, n):
        self.count = n

    def uid(self, i):
        return "%08x.%d" % (0x1234ABCD, i + 1)

    def size(self, i):
        return 1000 + i

    def release(self):
        pass


class _UidStore:
    def __init__(self, n):
        self.n = n

    def exists(self, name):
        return True

    def lock(self, name):
        return _UidBox(self.n)


def _heap_now():
    if tracemalloc is not None:
        return tracemalloc.get_traced_memory()[0]  # refcounting frees the garbage at once
    gc.collect()
    return gc.mem_alloc()


class _HeapOut:
    """An output stream that keeps only the size of what it got and the live heap at each write."""

    def __init__(self):
        self.first = None
        self.n = 0
        self.lines = 0
        self.peak = 0

    def write(self, data):
        if self.first is None:
            self.first = bytes(data)
        self.n += len(data)
        self.lines += 1
        h = _heap_now()
        if h > self.peak:
            self.peak = h


def _uids_peak(n):
    out = _HeapOut()
    base = _heap_now()
    mailport._uids(_UidStore(n), "alice", out)
    return out, out.peak - base


def test_uid_listing_heap_does_not_grow_with_the_message_count():
    # The least growth of 3 tries each: under CPython tracemalloc counts every thread's allocations,
    # and a pytest-xdist worker's messaging thread once added ~2 KB to one try (noise only adds).
    if tracemalloc is not None:
        tracemalloc.start()
    try:
        small, grow_small = _uids_peak(20)
        big, grow_big = _uids_peak(2000)
        for _ in range(2):
            grow_small = min(grow_small, _uids_peak(20)[1])
            grow_big = min(grow_big, _uids_peak(2000)[1])
    finally:
        if tracemalloc is not None:
            tracemalloc.stop()
    # the K line gives the length of what follows it: one line per message
    assert big.lines == 2001 and big.first == b"K %d\n" % (big.n - len(big.first)), (big.lines, big.first, big.n)
    assert small.lines == 21 and small.first == b"K %d\n" % (small.n - len(small.first))
    # a list of 2,000 lines would hold > 60 KB; a stream holds the same few hundred bytes at any n
    assert grow_big < grow_small + 1024, (grow_small, grow_big)


def test_a_failed_journal_line_leaves_no_busy_mailbox_or_temp_file():
    # An import's journal line ("+<sha> <uid>", written before the commit) that cannot be
    # written (flash full, a MemoryError) ends the import; its delivery is thrown away with it.
    # It used to stay open: its temp file and handle left, the mailbox counted busy for the
    # process's life (never merged, its orphans never removed, a check refused).
    import storeread

    def body(a, b):
        real = mailport._journal_add

        def full(path, line):
            raise OSError(28)  # ENOSPC

        mailport._journal_add = full
        try:
            try:
                serve(b, msg_cmd("bob", 5, b"Subject: x\r\n\r\nbody\r\n") + b"Q\n")
            except OSError:
                pass
        finally:
            mailport._journal_add = real
        assert store_mod._BOXES[b.root + "/bob"].busy == 0
        assert storeread.temp_files(b.root + "/bob") == []

    _with_stores(body, quota=0, reserve=0)
