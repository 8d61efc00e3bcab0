"""Board side of export, import, backup and restore: the store streamed over a byte pipe.

The host tool (tools/mailport.py, CPython) runs this under micropython with the flash image
mounted (tools/hostflash.py -m pocketpost.mailport ...: `main`, binary over stdin/stdout), on
a board through mpremote's raw REPL (`repl`: the same bytes as base64 lines, see _Base64In), or
on a serving board as an asyncio task (`live_session`, see "the live link" below): the same
step generators (export_steps, serve_steps) driven blocking (`drain`) or by the event loop.
Nothing here holds a whole message: messages go out of a file and into a Delivery a block at a
time through one preallocated buffer.

Out (export/backup), one stream of records, each a header line then exactly <size> bytes:
    B <mailbox> <count> <total>         a mailbox follows (snapshot taken under its lock)
    L <mailbox>                         mailbox locked by a session: skipped (nothing read)
    N <mailbox>                         a mailbox asked for by name that does not exist (not made)
    M <uid> <arrival> <size>            one message, then its <size> stored bytes
    F <size> <path>                     a non-mail file (config, certificates, UIDL state), then its bytes
    E                                   end
    #<text>                             a log line of the board side (a store repair, say), between
                                        records or before a reply line: the host shows it, skips it

In (import/restore), a command loop; every command gets one reply line:
    C <mailbox>        -> A exists  |  A read (not made yet; a user reads it)  |  A new [<user>...]
                       (neither: the config's users follow); nothing is made. Import asks this
                       first and refuses "new" unless told to create the mailbox (a typo)
    J <mailbox>        -> K <n> then n bytes: the import journal of the mailbox (see below); makes it
    U <mailbox>        -> K <n> then n bytes: "<uid> <size>\\n" per message present
    M <mailbox> <arrival> <sha1hex> <uid|->   then chunks "<n>\\n" + n bytes (n <= CHUNK), "0\\n":
                       -> A <uid>  added  |  R <reason>  refused  |  F <free> <reason>  no room
    W <size> <path>    then <size> bytes: write a non-mail file (tmp + rename) -> A <path>
    Q                  -> bye
A command with the wrong number of arguments or a bad number in them gets "R malformed command"
(nothing after it is read for it: the host tool sends none).

Import journal (idempotent import): <store root>/.import/<mailbox>, one line per message,
"+<sha1> <uid>" appended and flushed *before* the commit, "-<sha1>" appended if that commit
fails. The key is the SHA-1 of the message as stored (CRLF line ends, final CRLF), which the
host computes before sending and the Delivery computes again (a mismatch refuses the message).
A process killed between the "+" line and the commit leaves that line last in the journal; the
next J checks whether its UID is in the mailbox and cancels it if not. The host keeps the set
of hashes (the board streams the file; its RAM does not grow with the journal).
Restore passes the UID instead: the UID itself is the key (U lists what is there).
"""

import binascii
import sys

from pocketpost import compat
from pocketpost.compat import const
from pocketpost.store import MailboxLocked, QuotaExceeded, StoreError, StoreFull

# Message bytes per chunk on the pipe and per file read: one buffer of this size is all a
# transfer allocates (a flash sector; the host sends chunks no bigger than this).
CHUNK = const(4096)
# A command or header line: a mailbox name (32), a UID, numbers, a path; far below this.
_MAX_LINE = const(512)
JOURNAL_DIR = ".import"


# What a step generator (export, serve) yields to its driver: nothing to wait for (a block is
# done: let other tasks run), input wanted (the stream's readinto returned None), or a mailbox
# is locked by a session (wait a little, then try again). A blocking driver ignores them all.
_STEP = const(0)
_NEED = const(1)
_WAIT = const(2)


def drain(steps):
    """Run a step generator to its end with blocking streams (image, REPL link)."""
    for _ in steps:
        pass


class _Pipe:
    """Lines and exact byte counts from a stream. A stream's readinto fills the whole buffer
    before it returns (unix port: it loops like fread), so nothing is read ahead: a line is
    read a byte at a time (lines are short: one per message and per chunk), a chunk in one
    call of exactly its length. Both are generators (`yield from`): a stream whose readinto
    returns None (the live link, nothing buffered yet) makes them yield _NEED until it has data."""

    def __init__(self, stream):
        self.s = stream
        self.line_buf = bytearray(_MAX_LINE)
        self.one = memoryview(self.line_buf)

    def line(self):
        n = 0
        while True:
            if n == _MAX_LINE:
                raise ValueError("line too long")
            k = self.s.readinto(self.one[n : n + 1])
            if k is None:
                yield _NEED
                continue
            if not k:
                raise EOFError("pipe closed")
            if self.line_buf[n] == 10:
                return bytes(self.line_buf[:n]).decode()
            n += 1

    def read_into(self, out, n):
        """Exactly n (<= len(out)) bytes into out[:n]."""
        omv = memoryview(out)
        got = 0
        while got < n:
            k = self.s.readinto(omv[got:n])
            if k is None:
                yield _NEED
                continue
            if not k:
                raise EOFError("pipe closed")
            got += k


def _send_steps(out, f, size, buf):
    mv = memoryview(buf)
    step = len(buf)
    left = size
    while left:
        n = f.readinto(buf if left >= step else mv[:left])
        if not n:
            raise StoreError("file shorter than its index record")
        out.write(buf if n == step else mv[:n])
        left -= n
        yield _STEP


def _send_file(out, f, size, buf):
    drain(_send_steps(out, f, size, buf))


def _file_len(f):
    n = f.seek(0, 2)
    f.seek(0)
    return n


def export(store, names, out, buf=None):
    """Write every message of the mailboxes `names` (all when empty) to out, record by record."""
    drain(export_steps(store, names, out, buf))


def export_steps(store, names, out, buf=None, lock_waits=0):
    """export as a step generator. lock_waits: how many times to yield _WAIT (the live link
    sleeps LIVE_LOCK_POLL_MS each) for a mailbox a session holds before reporting it locked."""
    buf = buf or bytearray(CHUNK)
    for name in names or store.mailboxes():
        if names and not store.exists(name):  # a typo: say so; store.lock would make it
            out.write(b"N %s\n" % name.encode())
            continue
        mb = None
        waits = 0
        while mb is None:
            try:
                mb = store.lock(name)
            except MailboxLocked:
                if waits >= lock_waits:
                    break
                waits += 1
                yield _WAIT
        if mb is None:
            out.write(b"L %s\n" % name.encode())
            continue
        try:
            out.write(b"B %s %d %d\n" % (name.encode(), mb.count, mb.total_size))
            for i in range(mb.count):
                f = mb.open(i)  # the message (a stuffed file un-stuffed as it is read)
                try:
                    size = mb.size(i)
                    out.write(b"M %s %d %d\n" % (mb.uid(i).encode(), mb.arrival(i), size))
                    yield from _send_steps(out, f, size, buf)
                finally:
                    f.close()
        finally:
            mb.release()


def _walk(top, skip):
    """Paths of the files under top (depth first), leaving out the directory `skip`."""
    for name, is_dir, _ in compat.listdir_stat(top):
        p = compat.join(top, name)
        if p == skip:
            continue
        if is_dir:
            for q in _walk(p, skip):
                yield q
        else:
            yield p


def export_files(top, skip, out, buf=None):
    """Every file under top except the store root `skip` and code (config, TLS, UIDL state),
    named by its path relative to top (a restore puts it under its own config's folder)."""
    drain(export_files_steps(top, skip, out, buf))


def export_files_steps(top, skip, out, buf=None):
    buf = buf or bytearray(CHUNK)
    for p in _walk(top, skip):
        if p.endswith(".py") or p.endswith(".mpy"):
            continue  # code is deployed, not backed up
        f = open(p, "rb")
        try:
            size = _file_len(f)
            out.write(b"F %d %s\n" % (size, p[len(top) :].lstrip("/").encode()))
            yield from _send_steps(out, f, size, buf)
        finally:
            f.close()


def config_dir(config_path):
    """The absolute folder of the config file: the top of what a backup holds besides mail."""
    import os

    i = config_path.rfind("/")
    d = config_path[:i] if i > 0 else ("/" if i == 0 else "")
    if not d.startswith("/"):
        cwd = os.getcwd()
        d = compat.join(cwd, d) if d else cwd
    return d.rstrip("/") or "/"


def _journal_path(store, name):
    return compat.join(store.root, JOURNAL_DIR, name)


def _has_uid(store, name, uid):
    mb = store.lock(name)
    try:
        for i in range(mb.count):
            if mb.uid(i) == uid:
                return True
        return False
    finally:
        mb.release()


def _last_line(path, buf):
    """The last line of a file (without its LF), reading only its tail, or None."""
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        size = f.seek(0, 2)
        k = min(size, 128)  # "+<40 hex> <uid>" is < 80 bytes
        f.seek(size - k)
        n = f.readinto(memoryview(buf)[:k])
        tail = bytes(buf[:n]).rstrip(b"\n")
        i = tail.rfind(b"\n")
        return tail[i + 1 :] if i >= 0 else tail
    finally:
        f.close()


def _journal_add(path, line):
    f = open(path, "ab")
    try:
        f.write(line)
        compat.sync_file(f)
    finally:
        f.close()


def _send_listing_file(out, path, buf):
    try:
        f = open(path, "rb")
    except OSError:
        out.write(b"K 0\n")
        return
    try:
        size = _file_len(f)
        out.write(b"K %d\n" % size)
        _send_file(out, f, size, buf)
    finally:
        f.close()


def _journal(store, name, out, buf):
    if not store.exists(name):
        store.create(name)
    path = _journal_path(store, name)
    last = _last_line(path, buf)
    if last and last[:1] == b"+":
        parts = last[1:].split(b" ")
        if len(parts) == 2 and not _has_uid(store, name, parts[1].decode()):
            _journal_add(path, b"-%s\n" % parts[0])  # killed before that commit: cancel it
    _send_listing_file(out, path, buf)


def _mailbox_state(store, name, config_path):
    """The C reply: does mailbox `name` exist, or does a user of the config read it. Reads the
    config as written (load_raw: no checks, no serverconf import); a user's mailbox defaults to
    the user's name, as config.check has it."""
    if store.exists(name):
        return b"A exists\n"
    if config_path is None:
        raise StoreError("no config to check the mailbox's users against")
    from pocketpost import config

    try:
        users = config.load_raw(config_path).get("users") or {}
    except (OSError, ValueError, compat.ConfigError) as e:  # an R reply naming it, the loop goes on
        raise StoreError("config %s unreadable: %s" % (config_path, e))
    for u in users:
        if (users[u] or {}).get("mailbox", u) == name:
            return b"A read\n"
    return b"A new%s\n" % "".join(" " + u for u in sorted(users)).encode()


def _uids(store, name, out):
    """K <n>, then "<uid> <size>\\n" per message. Two passes over the locked snapshot (the reply
    needs its length first): the first sums the line lengths, the second writes the lines, so
    RAM stays the same at any message count (records are read a block at a time)."""
    if not store.exists(name):
        out.write(b"K 0\n")
        return
    mb = store.lock(name)
    try:
        n = 0
        for i in range(mb.count):
            n += len(mb.uid(i)) + len(str(mb.size(i))) + 2  # "<uid> <size>\n"
        out.write(b"K %d\n" % n)
        for i in range(mb.count):
            out.write(b"%s %d\n" % (mb.uid(i).encode(), mb.size(i)))
    finally:
        mb.release()


def _receive(store, pipe, out, args, buf):
    name, arrival, sha, uid = args[0], int(args[1]), args[2], args[3]
    jpath = None
    if uid == "-":
        uid = None
        jpath = _journal_path(store, name)
        compat.makedirs(compat.join(store.root, JOURNAL_DIR))
    d = None
    err = None
    try:
        d = store.begin(name, arrival, digest=True, uid=uid)
    except StoreError as e:
        err = e
    try:
        while True:  # take every chunk, even after a failure, to stay in step with the host
            n = int((yield from pipe.line()))
            if not n:
                break
            if n > CHUNK:
                raise ValueError("chunk too big")
            yield from pipe.read_into(buf, n)
            if d is not None:
                try:
                    d.write(buf if n == CHUNK else memoryview(buf)[:n])
                except StoreError as e:  # the Delivery aborted itself
                    err = e
                    d = None
    except BaseException:  # the link failed or the live session was closed mid-message
        if d is not None:
            d.abort()
        raise
    if d is not None:
        try:
            try:  # (not committed yet: a failure here, the journal line's too, throws it away)
                got = d.digest()
                if got != sha:
                    d.abort()
                    return b"R checksum mismatch (stored %s)\n" % got.encode()
                if jpath:
                    _journal_add(jpath, b"+%s %s\n" % (sha.encode(), d.uid_on_commit().encode()))
            except BaseException:  # flash full, MemoryError: no temp file or busy mailbox left
                d.abort()
                raise
            try:
                return b"A %s\n" % d.commit().encode()
            except BaseException:
                if jpath:
                    _journal_add(jpath, b"-%s\n" % sha.encode())
                raise
        except StoreError as e:
            err = e
    if isinstance(err, (StoreFull, QuotaExceeded)):
        free = -1
        try:  # what the store's own check allowed (reserve, index copy, spare blocks off)
            free = max(0, store.room(name)[0])
        except (OSError, AttributeError, StoreError):
            pass
        if isinstance(err, QuotaExceeded):
            free = max(0, store.quota - store.usage(name)[1])
        return b"F %d %s\n" % (free, str(err).encode())
    return b"R %s\n" % str(err).encode()


def _write_file(pipe, out, size, path, buf, top):
    """A restored file: `path` is relative to the config's folder `top`; tmp + rename."""
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "" in parts:
        raise StoreError("bad file path in archive", "SYS/PERM")
    path = compat.join(top, path)
    i = path.rfind("/")
    if i > 0:
        compat.makedirs(path[:i])
    tmp = path + ".restore"
    f = open(tmp, "wb")
    try:
        left = size
        while left:
            n = min(left, CHUNK)
            yield from pipe.read_into(buf, n)
            f.write(buf if n == CHUNK else memoryview(buf)[:n])
            left -= n
        compat.sync_file(f)
    finally:
        f.close()
    compat.rename(tmp, path)


def _malformed(args):
    """True if a command's arguments are not what it takes (checked before anything else is read,
    so the reply is one R line and the loop goes on)."""
    cmd = args[0]
    n = len(args)
    try:
        if cmd == "J" or cmd == "U" or cmd == "C":
            return n != 2
        if cmd == "M":
            return n != 5 or int(args[2]) < 0
        if cmd == "W":
            return n < 3 or int(args[1]) < 0
    except ValueError:
        return True
    return False


def serve(store, inp, out, top="/flash", config_path=None):
    """The import/restore command loop (see the module docstring) until Q or end of input.
    store: a Store, or a function that makes one, called at the first mailbox command (a
    restore writes the config with W first). top: the config's folder (W paths are relative).
    config_path: the config whose users C checks (without it, C is refused)."""
    drain(serve_steps(store, inp, out, top, None, config_path))


def serve_steps(store, inp, out, top="/flash", buf=None, config_path=None):
    """serve as a step generator (see drain)."""
    pipe = _Pipe(inp)
    buf = buf or bytearray(CHUNK)
    while True:
        try:
            ln = yield from pipe.line()
        except EOFError:
            return
        args = ln.split(" ")
        cmd = args[0]
        try:
            if cmd == "Q":
                out.write(b"bye\n")
                return
            if _malformed(args):
                raise StoreError("malformed command")
            if cmd in ("C", "J", "U", "M") and not hasattr(store, "begin"):
                store = _open_store(store)
            if cmd == "C":
                out.write(_mailbox_state(store, args[1], config_path))
            elif cmd == "J":
                _journal(store, args[1], out, buf)
            elif cmd == "U":
                _uids(store, args[1], out)
            elif cmd == "M":
                out.write((yield from _receive(store, pipe, out, args[1:], buf)))
            elif cmd == "W":
                size = int(args[1])
                path = ln[len(args[0]) + len(args[1]) + 2 :]
                try:
                    yield from _write_file(pipe, out, size, path, buf, top)
                except StoreError:
                    yield from pipe_skip(pipe, size, buf)
                    raise
                out.write(b"A %s\n" % path.encode())
            else:
                out.write(b"R unknown command\n")
        except StoreError as e:  # MailboxLocked ('IN-USE'), bad mailbox name, flash errors
            out.write(b"R %s\n" % str(e).encode())
        _flush(out)
        yield _STEP


def _open_store(make):
    """make(): a Store. No readable config (a restore whose config.json record was damaged, onto a
    new image) is an R reply naming it, not a traceback that ends the loop."""
    try:
        return make()
    except (OSError, ValueError, compat.ConfigError) as e:  # no config.json, bad JSON, a bad config
        raise StoreError("no store: cannot read the config: %s" % e)


def pipe_skip(pipe, n, buf):
    while n:
        k = min(n, CHUNK)
        yield from pipe.read_into(buf, k)
        n -= k


def _flush(out):
    try:
        out.flush()
    except AttributeError:
        pass


# Block size over a REPL link: base64 makes a 1536-byte block one 2,049-byte line, kept small
# for a board's heap (the encoded line is garbage after each write).
_USB_CHUNK = const(1536)


class _Base64Lines:
    """Output for mpremote's raw REPL, which ends at byte 0x04 and may turn LF into CRLF:
    every write goes out as one base64 line (the host decodes and reads the same records).
    prefix: the live link marks its lines (the board's log shares the port)."""

    def __init__(self, stream, prefix=""):
        self.s = stream
        self.prefix = prefix
        self.lines = 0  # written (the live link counts the host's acks against it)

    def write(self, data):
        self.s.write(self.prefix + binascii.b2a_base64(data).decode())
        self.lines += 1


# The longest line the host sends: 4 hex digits of length, base64 of 1536 bytes, LF.
_IN_LINE = const(2053)


class _Base64In:
    """Input from the host over the REPL link: one line per write of the host, "<4 hex digits:
    length of the rest><base64>\n", each answered with a raw "~" line once read (flow control:
    a board's UART has a small buffer and no handshake, so the host sends the next line only
    after that ack). The length lets one readinto take the line (stdin readline costs a system
    call per byte on the unix port)."""

    def __init__(self, stream, ack):
        self.s = getattr(stream, "buffer", stream)
        self.ack = ack
        self.line = bytearray(_IN_LINE)
        self.mv = memoryview(self.line)
        self.data = b""
        self.pos = 0

    def _exact(self, n):
        got = 0
        while got < n:
            k = self.s.readinto(self.mv[got:n])
            if not k:
                return False
            got += k
        return True

    def readinto(self, buf):
        if self.pos == len(self.data):
            if not self._exact(4):
                return 0
            n = int(bytes(self.mv[:4]), 16)
            if not 0 < n <= _IN_LINE - 4 or not self._exact(n):
                return 0
            self.ack.write("~\n")
            self.data = binascii.a2b_base64(bytes(self.mv[: n - 1]))
            self.pos = 0
        n = min(len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


# --- the live link: the same records while main.py serves --------------------------------------
#
# While main.py runs its event loop nobody reads the USB serial (the REPL is not running), so a
# task can (board.Runner.usb_link, config "services": {"usb_link": true}). The host
# (tools/mailport.py LiveLink, `ppadmin ... --live`) writes the start line
#     pocketpost-live 1 <export|backup|serve> [MAILBOX...]\n
# which Runner.usb_link waits for; live_session then answers "@pocketpost-live ok" (anything
# else on the port is ignored: stray input, or the board's log on the host side). Then the
# records above go out as base64 lines marked "@" and come in as _Base64In's length-prefixed
# lines, each acknowledged with "@~";
# an export's lines are acknowledged by the host with "~" lines, at most _LIVE_WINDOW in flight;
# "@." ends the session, "@!<reason>" reports a failure. Only printable ASCII travels towards
# the board: no 0x03 (Ctrl-C) byte, so the board's keyboard interrupt stays armed. Between
# blocks the session yields to the event loop, so POP3 and SMTP sessions go on being served; a
# mailbox a session holds is waited for (LIVE_LOCK_WAIT_MS) and then reported locked (L), never
# read half-committed; an import's M into it is a delivery, which the store allows anyway.

# A session holds its mailbox until QUIT; an export waits this long for it, polling.
LIVE_LOCK_WAIT_MS = const(10000)
LIVE_LOCK_POLL_MS = const(100)
# export/backup: lines out not yet acknowledged by the host ("~" each) before the session waits
# (in the event loop, not in a blocking write): 4 lines of <= 2,050 bytes fit the pty's buffers
# (pseudo-board), so a host that stops reading does not stall the other sessions. A board's
# USB-CDC buffer may be smaller: a write may then wait for the host (not tried on hardware).
_LIVE_WINDOW = const(4)
# The host sends its next line at once after an ack; silence this long means it is gone: the
# session ends (a message half-received is aborted: its temp file removed).
LIVE_IDLE_MS = const(30000)


class _LiveIn:
    """Input of a live session: one host line (_Base64In's framing) at a time, read by fill()
    from the serial port; readinto returns None when nothing is left (the pipe yields _NEED).

    The port is a blocking stream: readexactly(n) or readline() after asyncio's poll blocked the
    whole event loop until the rest came, so a host that died mid-line (or a stray partial line)
    stopped POP3 and SMTP, and LIVE_IDLE_MS (asyncio.wait_for, in that same loop) never fired; a
    board's watchdog reset it. Now a byte is read only once a poll of the port (its own poller:
    no allocation per byte) says one is there, into the line's buffer; with none there the wait
    is asyncio's, LIVE_IDLE_MS at most (then the session ends: board.Runner.usb_link logs it)."""

    def __init__(self, reader, ack):
        import select

        self.r = reader
        self.ack = ack
        self.s = getattr(reader, "s", reader)  # the port (MicroPython's StreamReader keeps it as .s)
        p = select.poll()
        p.register(self.s, select.POLLIN)
        # ipoll: an iterator over the poller's own tuple, allocation-free (CPython has only poll,
        # which makes a list: it never runs a live link)
        self.poll = getattr(p, "ipoll", p.poll)
        self.line = bytearray(_IN_LINE)
        self.mv = memoryview(self.line)
        self.one = bytearray(1)
        self.data = b""
        self.pos = 0

    async def _read(self, n, lf):
        """Bytes of the port into self.line until n of them, or (lf) a line feed; returns how
        many (EOFError when the port closes, OSError after LIVE_IDLE_MS without a byte)."""
        import asyncio

        line = self.line
        one = self.one
        got = 0
        while got < n:
            ready = False
            for _ in self.poll(0):
                ready = True
            if ready:  # a byte the poll announced is there: a one-byte read returns at once
                if not self.s.readinto(one):
                    raise EOFError("port closed")
                c = one[0]
            else:  # none yet: wait in the event loop (other tasks run), bounded
                try:
                    b = await asyncio.wait_for(self.r.read(1), LIVE_IDLE_MS / 1000)
                except asyncio.TimeoutError:
                    raise OSError("the host sent nothing for %d s" % (LIVE_IDLE_MS // 1000))
                if not b:
                    raise EOFError("port closed")
                c = b[0]
            line[got] = c
            got += 1
            if lf and c == 10:
                break
        return got

    async def fill(self):
        await self._read(4, False)
        n = int(bytes(self.mv[:4]), 16)
        if not 0 < n <= _IN_LINE - 4:
            raise ValueError("bad line length")
        await self._read(n, False)
        self.ack.write("@~\n")
        self.data = binascii.a2b_base64(self.mv[: n - 1])  # type: ignore[arg-type]  # stub: any buffer is taken
        self.pos = 0

    async def acked(self):
        """One line from the host (read as fill's): True if it is an ack ("~")."""
        k = await self._read(_IN_LINE, True)
        return bytes(self.mv[:k]).strip() == b"~"

    def readinto(self, buf):
        if self.pos == len(self.data):
            return None
        n = min(len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


async def _drive(steps, inp, out=None):
    """Run a step generator in the event loop. out: count its lines against the host's acks."""
    import asyncio

    acked = 0
    for want in steps:
        if want == _NEED:
            await inp.fill()
        elif want == _WAIT:
            await asyncio.sleep(LIVE_LOCK_POLL_MS / 1000)
        else:
            await asyncio.sleep(0)
        while out is not None and out.lines - acked > _LIVE_WINDOW:
            if await inp.acked():
                acked += 1


def _backup_steps(top, store, out, buf, waits):
    yield from export_files_steps(top, store.root, out, buf)
    yield from export_steps(store, [], out, buf, waits)


async def live_session(store, config_path, args, reader, out_stream):
    """One session after the start line (board.Runner.usb_link waits for it, so this module is
    only imported once a host asks): args = [cmd, mailbox...]."""
    top = config_dir(config_path)
    out = _Base64Lines(out_stream, "@")
    buf = bytearray(_USB_CHUNK)
    inp = _LiveIn(reader, out_stream)
    cmd = args[0] if args else ""
    steps = None
    try:
        waits = LIVE_LOCK_WAIT_MS // LIVE_LOCK_POLL_MS
        if cmd == "export":
            steps = export_steps(store, args[1:], out, buf, waits)
        elif cmd == "backup":
            steps = _backup_steps(top, store, out, buf, waits)
        elif cmd == "serve":
            steps = serve_steps(store, inp, out, top, bytearray(CHUNK), config_path)
        else:
            out_stream.write("@!unknown command %s\n" % cmd)
            return
        out_stream.write("@pocketpost-live ok\n")
        await _drive(steps, inp, None if cmd == "serve" else out)
        if cmd != "serve":
            out.write(b"E\n")
        out_stream.write("@.\n")
    except Exception as e:
        out_stream.write("@!%s %s\n" % (type(e).__name__, str(e).replace("\n", " ")))
        raise
    finally:
        if steps is not None:
            steps.close()  # a half-received message aborts (see _receive)


def run(cmd, config_path, names, inp, out, buf=None):
    """export / backup (record stream to out) or serve (command loop on inp). Log lines (the
    store's repairs, say) go into out as "#" records: printed, they would break the stream."""
    from pocketpost import log

    log.set_sink(lambda line: out.write(b"#" + line.encode() + b"\n"))
    try:
        _run(cmd, config_path, names, inp, out, buf)
    finally:
        log.set_sink(None)


def _run(cmd, config_path, names, inp, out, buf):
    from pocketpost import config

    def open_store():  # (the store's sections only: the server's checks, serverconf.py, are
        # ~30 KiB of heap that no transfer needs; C reads the users as written: _mailbox_state)
        return config.open_store(config.load(config_path, False))

    top = config_dir(config_path)
    if cmd == "serve":
        serve(open_store, inp, out, top, config_path)
        _flush(out)
        return
    store = open_store()
    if cmd == "export":
        export(store, list(names), out, buf)
    elif cmd == "backup":
        export_files(top, store.root, out, buf)
        export(store, [], out, buf)
    else:
        raise ValueError("unknown command " + cmd)
    out.write(b"E\n")
    _flush(out)


def repl(cmd, config_path="config.json", names=()):
    """On a board, through `mpremote exec` (the host's UsbLink): `run` with every write as a
    base64 line and, for serve, the input read the same way. A mailbox a POP3 session holds is
    reported (export) or refused (import/restore), never read half-committed."""
    out = _Base64Lines(sys.stdout)
    run(cmd, config_path, names, _Base64In(sys.stdin, sys.stdout), out, bytearray(_USB_CHUNK))


def restart(main_py="main.py"):
    """After a transfer over USB (the host's UsbLink runs this unless --no-restart): start the
    services again. A board resets (machine.reset(): what starts main.py after any interrupt,
    with a fresh heap and the watchdog armed anew); the unix port (pseudo-board), where a reset
    ends the process, runs main.py again in this interpreter (board.main starts from a fresh
    event loop; the interrupted one has released everything, see pocketpost.board)."""
    if sys.platform != "linux":
        import machine

        machine.reset()
    from pocketpost import store

    store.reboot()  # as the reset would: a transfer cut by Ctrl-C left nothing in RAM to trust
    try:
        f = open(main_py)
    except OSError:
        print("mailport: no %s here: nothing to start" % main_py)
        return
    try:
        code = f.read()
    finally:
        f.close()
    exec(code, {"__name__": "__main__"})


def main(cmd, config_path, *names):
    """hostflash entry: `export CONFIG [MAILBOX...]`, `backup CONFIG`, `serve CONFIG`; run in
    CONFIG's folder (an image's /flash), as a board runs in its flash root: a relative store root
    (the board templates' "mail") is the image's."""
    import os

    os.chdir(config_dir(config_path))
    run(cmd, config_path, names, sys.stdin.buffer, sys.stdout.buffer)
