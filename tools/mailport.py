"""Host side of export, import, backup and restore for a pocketpost flash image (CPython).

The store is only ever read and written by the firmware's own code: this module starts
`micropython tools/hostflash.py IMAGE -m pocketpost.mailport ...` (firmware/pocketpost/mailport.py)
and streams messages through its stdin/stdout. No message is held whole in RAM here either:
every message goes from the pipe to its file (or from its file to the pipe) in blocks.

Formats
- Maildir: DIR/<mailbox>/{cur,new,tmp}; one file per message in cur/, named
  "<arrival>.P<epoch>Q<seq>.pocketpost,S=<size>,W=<size>:2," (the UID is in the name), the exact
  stored bytes (CRLF line ends).
- mbox (mboxrd): a "From <envelope sender> <arrival, asctime UTC>" line (the sender from the
  message's Return-Path, MAILER-DAEMON without one), the message with every line
  matching /^>*From / given one more ">", then an empty line. A reader that strips one ">" from
  /^>+From / (mboxrd) gets the exact stored bytes back. Python's `mailbox.mbox` does not strip it.
- Dovecot (--dovecot): the Maildir plus `dovecot-uidlist` (version 3) giving each message its
  POP3 UIDL (P) and POP3 order (O), see docs/MIGRATE.md.
- Backup archive: see BACKUP_FORMAT below.

Import idempotency: the key of a message is the SHA-1 of its bytes as the store keeps them
(lone LF -> CRLF, a final CRLF added), computed here before sending and again on the image;
the image keeps a per-mailbox journal of the keys it committed (firmware/pocketpost/mailport.py).
A message whose key is in the journal, or seen earlier in the same run, is skipped: importing the
same source again, or after an interruption at any point, adds nothing twice. Two byte-identical
messages in one source are imported once.
"""

import calendar
import fcntl
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zlib

import hostimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
HOSTFLASH = os.path.join(ROOT, "tools", "hostflash.py")
IMAGE_CONFIG = "/flash/config.json"
CHUNK = 4096  # = pocketpost.mailport.CHUNK: the most the board side takes per chunk
READ = 65536  # host-side file reads
# Where micropython finds pocketpost: the sources, or a folder of .mpy files (the benchmark's
# heap figures are for .mpy, as on a board: compiling .py costs heap that a board never spends).
CODE_PATH = [FIRMWARE]


def micropython():
    p = os.path.join(ROOT, ".venv", "bin", "micropython")
    return p if os.path.exists(p) else "micropython"


class PortError(Exception):
    pass


class NoSuchMailbox(Exception):
    """Import into a mailbox that does not exist and that no user reads (a typo?), without
    create_mailbox: refused before anything is sent or made (ppadmin: one line, exit 2)."""


# --- the link to the board side ----------------------------------------------------------------


def board_log(line):
    """A "#" record (pocketpost.mailport.run): one log line of the board side, shown on stderr."""
    if line[:1] != b"#":
        return False
    sys.stderr.write("board: %s\n" % line[1:].rstrip(b"\r\n").decode(errors="replace"))
    return True


class Link:
    """micropython with the image mounted, running pocketpost.mailport.main(cmd, ...) (in /flash,
    config.json's folder, as a board runs in its flash root: a relative store root, the board
    templates' "mail", is the image's /flash/mail)."""

    def __init__(self, image, cmd, *args, heapsize=None):
        # One owner at a time, and only a littlefs image (never a file handed in by mistake):
        # the lock's descriptor goes to micropython, so it holds as long as either process lives.
        self.lock = hostimage.ImageLock(image)
        try:
            hostimage.check(image)
        except BaseException:
            self.lock.release()
            raise
        env = dict(os.environ)
        env["MICROPYPATH"] = CODE_PATH[0] + ":" + os.path.join(ROOT, "tools") + ":.frozen"
        argv = [micropython()]
        if heapsize:
            argv += ["-X", "heapsize=%s" % heapsize]
        argv += [HOSTFLASH, image, "-m", "pocketpost.mailport", cmd, IMAGE_CONFIG] + list(args)
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         env=env, pass_fds=(self.lock.fd,))
        finally:
            self.lock.release()  # the child holds it now
        self.r = self.proc.stdout
        self.w = self.proc.stdin

    def line(self):
        while True:
            ln = self.r.readline(1024)
            if not ln.endswith(b"\n"):
                raise PortError("board side ended: %s" % self.error())
            if ln.startswith(b"Traceback (most recent call last):"):
                self._crashed(ln)
            if not board_log(ln):
                return ln[:-1].decode()

    def _crashed(self, first):
        """The child's uncaught exception (micropython prints it on stdout), where a reply was due:
        a Ctrl-C that reached the child before this process (one terminal, one process group) is
        this process's interruption too, not an unexpected reply; anything else, its last line."""
        rest = first + self.r.read(8192)  # (it has ended: bounded, it is a traceback)
        err = self.error()
        if b"KeyboardInterrupt" in rest:
            raise KeyboardInterrupt
        last = rest.decode(errors="replace").strip().split("\n")[-1]
        raise PortError("board side failed: %s %s" % (last, err))

    def copy(self, n, write):
        """Pass exactly n bytes from the pipe to write(), a block at a time."""
        while n:
            b = self.r.read(min(n, READ))
            if not b:
                raise PortError("board side ended mid-message: %s" % self.error())
            write(b)
            n -= len(b)

    def read(self, n):
        parts = []
        self.copy(n, parts.append)
        return b"".join(parts)

    def send(self, data):
        try:
            self.w.write(data)
        except BrokenPipeError:
            raise PortError("board side ended: %s" % self.error())

    def flush(self):
        try:
            self.w.flush()
        except BrokenPipeError:
            raise PortError("board side ended: %s" % self.error())

    def error(self):
        try:
            self.w.close()
        except OSError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return (self.proc.stderr.read() or b"").decode(errors="replace").strip()[-2000:]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.w.write(b"Q\n")
                self.w.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass
        err = self.error()
        rc = self.proc.returncode
        if rc != 0:
            raise PortError("board side failed (exit %s): %s" % (rc, err))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    # -- commands of the serve loop ---------------------------------------------------------

    def listing(self, cmd, mailbox):
        self.send(b"%s %s\n" % (cmd.encode(), mailbox.encode()))
        self.flush()
        head = self.line()
        if head.startswith("R "):
            raise PortError("%s: %s" % (mailbox, head[2:]))
        if not head.startswith("K "):
            raise PortError("unexpected reply %r" % head)
        return self.read(int(head[2:]))

    def journal(self, mailbox):
        """The keys of the messages already imported into mailbox (see the module docstring)."""
        keys = set()
        for ln in self.listing("J", mailbox).split(b"\n"):
            if ln[:1] == b"+":
                keys.add(ln[1:].split(b" ")[0].decode())
            elif ln[:1] == b"-":
                keys.discard(ln[1:].decode())
        return keys

    def mailbox_state(self, mailbox):
        """C: ("exists" | "read" | "new", [the config's users when "new"]); nothing is made."""
        self.send(b"C %s\n" % mailbox.encode())
        self.flush()
        reply = self.line()
        if reply == "R unknown command":
            raise PortError("the board's pocketpost.mailport is older than this tool (it cannot say whether mailbox"
                            " %s exists): deploy it again, or pass --create-mailbox" % mailbox)
        if reply.startswith("R "):
            raise PortError("%s: %s" % (mailbox, reply[2:]))
        words = reply.split(" ")
        if words[0] != "A" or len(words) < 2 or words[1] not in ("exists", "read", "new"):
            self.garbled(reply)
        return words[1], words[2:]

    def uids(self, mailbox):
        out = {}
        for ln in self.listing("U", mailbox).split(b"\n"):
            if ln:
                uid, size = ln.decode().split(" ")
                out[uid] = int(size)
        return out

    def message(self, mailbox, arrival, sha1, uid, chunks):
        """Send one message (chunks: an iterable of bytes); returns the reply line."""
        self.send(b"M %s %d %s %s\n" % (mailbox.encode(), arrival, sha1.encode(), (uid or "-").encode()))
        for c in chunks:
            for i in range(0, len(c), CHUNK):
                piece = c[i : i + CHUNK]
                self.send(b"%d\n" % len(piece))
                self.send(piece)
        self.send(b"0\n")
        self.flush()
        reply = self.line()
        if reply[:2] not in ("A ", "F ", "R "):
            self.garbled(reply)
        return reply

    def garbled(self, line):
        """The board side wrote something that is not the protocol (a traceback, say)."""
        rest = b""
        try:
            self.w.close()
        except OSError:
            pass
        try:
            rest = self.r.read(4000)
        except OSError:
            pass
        raise PortError("board side failed: %s\n%s%s" % (line, rest.decode(errors="replace"), self.error()))

    def write_file(self, path, size, chunks):
        self.send(b"W %d %s\n" % (size, path.encode()))
        for c in chunks:
            self.send(c)
        self.flush()
        reply = self.line()
        if not reply.startswith("A "):
            raise PortError("writing %s: %s" % (path, reply))


_RECORD = re.compile(r"(E|B [a-z0-9._-]+ \d+ \d+|[LN] [a-z0-9._-]+|M [0-9a-f]{8}\.\d+ \d+ \d+|F \d+ [^/ ].*)\Z")


def is_serial(path):
    """A board's serial port (or the pseudo-board's pty), as opposed to an image file."""
    import stat

    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


class UsbLink(Link):
    """The same conversation with a live board over mpremote's raw REPL (no soft reset, like
    `mpremote resume`; connecting interrupts main.py, as every mpremote command does, and the
    board closes every session cleanly first: pocketpost.board; at the end `restart` starts the
    services again):
    pocketpost.mailport.repl() writes base64 lines, decoded here a line at a time, and reads
    our writes as base64 lines of at most USB_LINE bytes, each acknowledged with a "~" line
    before the next goes out (a board's UART has no handshake)."""

    USB_LINE = 1536
    # After the transfer (done or failed), start the board's services again:
    # pocketpost.mailport.restart() (a board resets; the unix pseudo-board runs main.py again).
    # ppadmin's --no-restart clears it (the board then stays at the REPL).
    restart = True

    def __init__(self, port, cmd, mailboxes=(), config_path="config.json", timeout=30):
        from mpremote.transport_serial import SerialTransport

        # the raw REPL's prompt comes within CONNECT_S (main.py's shutdown takes at most 2 s);
        # the transfer's reads then wait up to `timeout`
        self.t = SerialTransport(port, baudrate=115200, timeout=CONNECT_S)
        self.timeout = timeout
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # mpremote prints what it read when it fails
            self.t.enter_raw_repl(soft_reset=False)
        self.t.serial.timeout = timeout
        code = "from pocketpost import mailport\nmailport.repl(%r, %r, %r)\n" % (cmd, config_path, tuple(mailboxes))
        self.t.exec_raw_no_follow(code)
        self._fresh()

    def _fresh(self):
        """Nothing read or sent yet: raw link bytes, decoded data in, data to send out, counts."""
        self.raw = bytearray()
        self.buf = bytearray()
        self.out = bytearray()
        self.ended = False
        self.acks = 0
        self.killed = False

    def _read(self):
        ser = self.t.serial
        b = ser.read(1)
        if not b:
            raise PortError("board link: no data for %d s" % self.timeout)
        n = ser.in_waiting
        return b + (ser.read(min(n, READ)) if n else b"")

    def _raw_line(self):
        """The next whole line read off the link (CR dropped), or None until one has come."""
        i = self.raw.find(b"\n")
        if i < 0:
            return None
        line = bytes(self.raw[:i]).strip(b"\r")
        del self.raw[: i + 1]
        return line

    def _data(self, line):
        """A data line: its base64 decoded into buf; anything else is the board side failing."""
        import binascii

        try:
            self.buf += binascii.a2b_base64(line)
        except binascii.Error:
            self.garbled(line.decode(errors="replace"))

    def _more(self):
        """Take one line off the link: decoded data into buf, or an ack counted."""
        while True:
            line = self._raw_line()
            if line is not None:
                if line == b"~":
                    self.acks += 1
                    return
                self._data(line)
                return
            j = self.raw.find(b"\x04")
            if j >= 0:  # the program ended before its records did
                text = bytes(self.raw[:j]).decode(errors="replace")
                self.raw = self.raw[j + 1 :]
                self.ended = True
                self.garbled(text)
            self.raw += self._read()

    def line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                ln = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                if not board_log(ln):
                    return ln[:-1].decode()
                continue
            self._more()

    def copy(self, n, write):
        while n:
            if not self.buf:
                self._more()
            k = min(n, len(self.buf))
            write(bytes(self.buf[:k]))
            del self.buf[:k]
            n -= k

    def send(self, data):
        self.out += data
        while len(self.out) >= self.USB_LINE:
            self._send_line(bytes(self.out[: self.USB_LINE]))
            del self.out[: self.USB_LINE]

    def flush(self):
        if self.out:
            self._send_line(bytes(self.out))
            self.out = bytearray()

    def _send_line(self, data):
        import binascii

        want = self.acks + 1
        enc = binascii.b2a_base64(data)
        self.t.serial.write(b"%04x" % len(enc) + enc)
        while self.acks < want:
            self._more()

    def _error_output(self):
        """What the board printed after the first 0x04 (a traceback), up to the second."""
        if not self.ended:
            j = self.raw.find(b"\x04")
            while j < 0:
                self.raw += self._read()
                j = self.raw.find(b"\x04")
            self.raw = self.raw[j + 1 :]
            self.ended = True
        while self.raw.find(b"\x04") < 0:
            self.raw += self._read()
        return bytes(self.raw[: self.raw.find(b"\x04")]).decode(errors="replace").strip()

    def error(self):
        try:
            return self._error_output()
        except Exception as e:
            return "(%s)" % e

    def garbled(self, line):
        err = self.error()
        self.kill()
        raise PortError("board side failed: %s %s" % (line, err))

    def close(self):
        if not self.ended:
            try:
                self.send(b"Q\n")
                self.flush()
            except PortError:
                pass
        err = self.error()
        self.kill()
        if err:
            raise PortError("board side failed: %s" % err)

    def kill(self):
        if self.killed:
            return
        self.killed = True
        try:
            if self.restart:
                self._restart()
            else:
                self.t.exit_raw_repl()
        except Exception as e:
            sys.stderr.write("board: could not restart the services (%s): reset the board\n" % e)
        try:
            self.t.close()
        except Exception:
            pass

    def _restart(self):
        """Back to the raw REPL prompt (Ctrl-C stops the board side if it still runs), out to the
        friendly REPL, and start main.py there without waiting for it: it runs until the next
        connection interrupts it. Not from the raw REPL: the unix port (pseudo-board) keeps its
        terminal raw while running raw-REPL code, so the next Ctrl-C would not interrupt it."""
        self.t.enter_raw_repl(soft_reset=False)
        self.t.exit_raw_repl()
        self.t.serial.write(b"from pocketpost import mailport; mailport.restart()\r")
        self.t.read_until(1, b"mailport.restart()", timeout=self.timeout)  # the REPL echoed it: taken
        sys.stderr.write("board: services restarted (main.py)\n")


class LiveLink(UsbLink):
    """The same conversation with a board that goes on serving (`--live`): no REPL, no Ctrl-C.
    board.Runner.usb_link (then pocketpost.mailport.live_session) reads the port while main.py
    runs; we write its start line and it answers with the records as UsbLink gets them, each
    line marked "@" (the board's log shares the port: unmarked lines are passed to stderr).
    Nothing sent here contains 0x03 (start line and base64 lines are printable ASCII)."""

    MAGIC = b"pocketpost-live"
    HELLO_S = 5  # the service answers at once; a board at the REPL (or not serving) never does
    restart = False

    def __init__(self, port, cmd, mailboxes=(), timeout=30):
        # mpremote's transport only opens the port (exclusively, with its DTR/RTS handling, which
        # keeps an ESP32's auto-reset circuit from resetting the board); no raw REPL, no Ctrl-C.
        from mpremote.transport_serial import SerialTransport

        self.cmd = cmd
        self.timeout = timeout
        self.t = SerialTransport(port, baudrate=115200, timeout=timeout)
        self._fresh()
        self.failed = None
        ser = self.t.serial
        ser.reset_input_buffer()
        ser.write(b"\n%s 1 %s\n" % (self.MAGIC, " ".join((cmd,) + tuple(mailboxes)).encode()))
        deadline = time.monotonic() + self.HELLO_S
        ser.timeout = 0.2
        while True:
            line = self._raw_line()
            if line is not None:
                if line == b"@" + self.MAGIC + b" ok":
                    break
                if line.startswith(b"@!"):
                    self.kill()
                    raise PortError("board refused the live link: %s" % line[2:].decode(errors="replace"))
                continue
            if time.monotonic() > deadline:
                self.kill()
                raise PortError("no answer from the board's live link in %d s: is main.py running with "
                                "\"services\": {\"usb_link\": true}? (without --live the transfer pauses serving)" % self.HELLO_S)
            self.raw += ser.read(max(1, min(ser.in_waiting, READ)))
        ser.timeout = timeout

    def _more(self):
        while True:
            line = self._raw_line()
            if line is not None:
                if line[:1] != b"@":  # the board's log
                    sys.stderr.write("board: %s\n" % line.decode(errors="replace"))
                    continue
                line = line[1:]
                if line == b"~":
                    self.acks += 1
                    return
                if line == b".":
                    self.ended = True
                    return
                if line[:1] == b"!":
                    self.ended = True
                    self.failed = line[1:].decode(errors="replace")
                    raise PortError("board side failed: %s" % self.failed)
                self._data(line)
                if self.cmd != "serve":
                    self.t.serial.write(b"~\n")  # the board keeps a few lines in flight, no more
                return
            if self.ended:
                raise PortError("board side ended early")
            self.raw += self._read()

    def error(self):
        return self.failed or ""

    def garbled(self, line):
        self.kill()
        raise PortError("board side failed: %s" % line)

    def close(self):
        """serve: Q, then the board's "bye" and end mark; export/backup: the end mark."""
        try:
            if not self.ended and self.cmd == "serve":
                self.send(b"Q\n")
                self.flush()
            while not self.ended:
                self._more()
            if self.buf and self.buf.strip() != b"bye":
                raise PortError("board sent more than expected: %r" % bytes(self.buf[:80]))
        finally:
            self.kill()

    def kill(self):
        if self.killed:
            return
        self.killed = True
        try:
            self.t.close()
        except Exception:
            pass


def is_dir_store(target):
    """A host's own store (the fetch CLI's, README "Fetching mail"): its config.json, or the
    folder that holds it, as opposed to an image file or a serial port."""
    if os.path.isdir(target):
        return os.path.isfile(os.path.join(target, "config.json"))
    if not os.path.isfile(target):
        return False
    with open(target, "rb") as f:
        return f.read(1) == b"{"  # a JSON config (an image begins with littlefs' superblock)


class DirLink(Link):
    """The same conversation with a store in a host folder (the fetch CLI's directory store):
    micropython runs pocketpost.mailport in config.json's folder, as the fetch CLI runs there,
    so relative paths in the config mean what they mean to the fetch CLI.

    One process at a time uses such a store: the fetch CLI takes <store root>.fetch-lock (the
    folder holding its pid; fetchload.lock), and so does this link's child, through the same
    fetchload.lock, before anything else: the pid in the lock is always the child's, whose
    command line says "fetch" (a fetch takes a lock whose pid's command line lacks it for a
    killed run's, and takes it over), and a killed child's lock is taken over by the next run
    as a killed fetch's is (guarded: fetchload.lock). The child says LOCKED once it holds the
    lock, or prints fetchload's refusal and ends: a fetch, rename, export or import holding the
    store refuses this one in one line, nothing done. The child releases it on every exit (the
    end of its input, an error, Ctrl-C; kill() closes its pipes first, for that)."""

    CODE = ("# holds the store's fetch lock as a fetch does (fetchload.lock; tools/mailport.py DirLink)\n"
            "import os, sys\n"
            "from pocketpost import compat, fetchload\n"
            "lk = fetchload.lock(%r)\n"
            "fetchload = None\n"
            "compat.forget(('fetchload',))\n"
            "if lk == 1:\n"
            "    sys.exit(3)\n"
            "try:\n"
            "    sys.stdout.write('LOCKED\\n')\n"
            "    hold = os.getenv('PP_TEST_HOLD_DIRLINK')\n"
            "    if hold:  # tests only\n"
            "        open(hold + '.held', 'w').close()\n"
            "        import time\n"
            "        for _ in range(600):\n"
            "            try:\n"
            "                os.stat(hold)\n"
            "                break\n"
            "            except OSError:\n"
            "                time.sleep(0.1)\n"
            "    from pocketpost import mailport\n"
            "    mailport.main(%r, %r, *%r)\n"
            "finally:\n"
            "    if lk:\n"
            "        try:\n"
            "            os.remove(lk + '/pid')\n"
            "            os.rmdir(lk)\n"
            "        except OSError:\n"
            "            pass\n")
    LOCKED = b"LOCKED\n"  # the child's first line once it holds the lock
    INTERRUPT_S = 5  # kill(): the child ends and releases the lock within this (else interrupted, then killed)

    def __init__(self, target, cmd, *args, heapsize=None):
        config = os.path.join(target, "config.json") if os.path.isdir(target) else target
        cdir = os.path.dirname(os.path.abspath(config))
        try:
            with open(config) as f:
                root = (json.load(f).get("store") or {}).get("root", "/flash/mail")
        except (OSError, ValueError, AttributeError) as e:
            raise PortError("%s: not a config this tool can read (%s)" % (config, e))
        root = os.path.join(cdir, str(root))  # (an absolute root stays as it is)
        if not os.path.isdir(os.path.dirname(root.rstrip("/"))):
            raise PortError("%s: its store %s is not there (no fetch has run with this config)" % (config, root))
        lockdir = root.rstrip("/") + ".fetch-lock"
        env = dict(os.environ)
        env["MICROPYPATH"] = CODE_PATH[0] + ":" + os.path.join(ROOT, "tools") + ":.frozen"
        argv = [micropython()]
        if heapsize:
            argv += ["-X", "heapsize=%s" % heapsize]
        argv += ["-c", self.CODE % (root, cmd, os.path.basename(config), tuple(args))]
        # (restore_signals=False: SIGPIPE stays ignored, so a write to a closed pipe is an error the
        # child's release outlives, not its death)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=cdir, restore_signals=False)
        self.r = self.proc.stdout
        self.w = self.proc.stdin
        try:
            first = self.r.readline(1024)
        except BaseException:
            self.kill()
            raise
        if first == self.LOCKED:
            return
        err = self.error()  # (refused: the child has ended)
        said = first.decode(errors="replace").strip()
        held = re.match(r"fetch: another fetch \(pid (\S+)\)", said)
        if held:
            raise PortError("the store is in use: %s is held by pid %s (a fetch, or an export, import or rename of "
                            "this store): nothing done; run again once it has ended (if none is running, delete "
                            "that directory)" % (lockdir, held.group(1)))
        guarded = guarded_lock(said, lockdir)
        if guarded:
            raise PortError(guarded)
        raise PortError("board side failed: %s %s" % (said, err))

    def kill(self):
        """End the child so that it releases the lock: its pipes closed (it reads the end of its
        input, or its next write fails), interrupted (SIGINT) if it goes on, killed at last (its
        lock then taken over by the next run). (A terminal's Ctrl-C has reached it already: a
        second SIGINT at once could cut its release short.)"""
        for f in (self.w, self.r):
            try:
                f.close()
            except OSError:
                pass
        for stop in (None, signal.SIGINT):
            if stop:
                self.proc.send_signal(stop)
            try:
                self.proc.wait(self.INTERRUPT_S)
                return
            except subprocess.TimeoutExpired:
                pass
        Link.kill(self)


def guarded_lock(said, lockdir):
    """fetchload.lock's refusal of a dead run's lock behind a takeover guard younger than
    fetchload's _GUARD_STALE_S (`said`: its line, in a fetch's words, "nothing fetched by this run") in
    the words of an export, import or rename (DirLink, ppadmin rename-account): one line naming the
    lock, its guard and what to do; None for any other line. Read here, on the host: fetchload is
    the fetch CLI's cold code, every name it holds is heap on each fetch."""
    m = re.search(r"no longer running \(pid (\S+)\).* less than (\d+) s ago", said)
    if not m:
        return None
    return ("the store's lock %s was left by a run that is no longer running (pid %s), and %s.takeover says another "
            "run began taking it over less than %s s ago (it was killed then, or still is at it): nothing done; run "
            "again after that minute (the dead lock is then taken over), or, if no fetch, export, import or rename of "
            "this store is running, delete both directories" % (lockdir, m.group(1), lockdir, m.group(2)))


# ppadmin's --live: LiveLink instead of UsbLink for a serial port.
LIVE = [False]


CONNECT_S = 10  # a board's raw REPL answers within this after the Ctrl-C (else: no board there)


def open_link(target, cmd, *mailboxes, heapsize=None, dir_store=False):
    """A Link to an image file, or a UsbLink (LiveLink with --live) to a board's serial port
    (or the pseudo-board). A port where no board answers, or that cannot be opened, is one
    PortError line (it was mpremote's traceback)."""
    if is_serial(target):
        from mpremote.transport import TransportError

        try:
            if LIVE[0]:
                return LiveLink(target, cmd, mailboxes)
            return UsbLink(target, cmd, mailboxes)
        except TransportError as e:
            raise PortError("%s: no MicroPython board answers there (%s): is the board plugged in on this port "
                            "(ls /dev/ttyUSB* /dev/ttyACM*), and no other program (mpremote repl, a terminal) "
                            "holding it?" % (target, e)) from None
    _no_board(target)
    if is_dir_store(target):
        if cmd != "export" and not dir_store:  # (import passes dir_store=True)
            raise PortError("%s: a store in a host folder: backup and restore are for an image or a board (its "
                            "files are on this machine already: copy the folder; export --maildir or --mbox, and "
                            "import, work on it)" % target)
        return DirLink(target, cmd, *mailboxes, heapsize=heapsize)
    if os.path.isdir(target):
        raise PortError("%s: a folder, not an image file (nor a serial port)" % target)
    if not os.path.isfile(target):
        raise PortError("%s: no such image file (nor a serial port)" % target)
    return Link(target, cmd, *mailboxes, heapsize=heapsize)


def _no_board(target):
    """A serial port's name (/dev/ttyUSB0) where no port is: the board is not plugged in. Said so
    (restore made a new image file there: a 2 MiB regular file in /dev, as root, where the
    board's port would appear)."""
    if os.path.abspath(target).startswith("/dev/") and not os.path.exists(target):
        raise PortError("%s: no such serial port: is the board plugged in (ls /dev/ttyUSB* /dev/ttyACM*)?" % target)


def read_records(link, on_mailbox, on_message, on_file=None, on_locked=None, on_missing=None):
    """Walk an export/backup stream; on_message(uid, arrival, size, copy) must call copy(write)."""
    while True:
        head = link.line()
        if not _RECORD.match(head):
            link.garbled(head)
        kind = head[:1]
        if kind == "E":
            return
        if kind == "B":
            _, name, count, total = head.split(" ")
            on_mailbox(name, int(count), int(total))
        elif kind == "L":
            if on_locked:
                on_locked(head[2:])
        elif kind == "N":
            if on_missing:
                on_missing(head[2:])
        elif kind == "M":
            _, uid, arrival, size = head.split(" ")
            size = int(size)
            done = [False]

            def copy(write, size=size):
                link.copy(size, write)
                done[0] = True

            on_message(uid, int(arrival), size, copy)
            if not done[0]:
                link.copy(size, lambda b: None)
        elif kind == "F":
            _, size, path = head.split(" ", 2)
            size = int(size)
            if on_file:
                on_file(path, size, lambda write, size=size: link.copy(size, write))
            else:
                link.copy(size, lambda b: None)
        else:
            raise PortError("unexpected record %r" % head[:80])


class Progress:
    """'messages and bytes done / total' on stderr, at most a few times a second."""

    def __init__(self, what, enabled):
        self.what = what
        self.on = enabled
        self.n = self.b = 0
        self.total_n = self.total_b = 0
        self.t = 0.0

    def add_total(self, n, b):
        self.total_n += n
        self.total_b += b

    def step(self, nbytes, force=False):
        self.n += 1
        self.b += nbytes
        now = time.monotonic()
        if self.on and (force or now - self.t > 0.5):
            self.t = now
            self._show()

    def _show(self):
        tn = "/%d" % self.total_n if self.total_n else ""
        tb = "/%.1f" % (self.total_b / 1048576) if self.total_b else ""
        sys.stderr.write("\r%s: %d%s messages, %.1f%s MiB" % (self.what, self.n, tn, self.b / 1048576, tb))
        sys.stderr.flush()

    def done(self):
        if self.on and self.n:
            self._show()
            sys.stderr.write("\n")
        self.on = False  # once


# --- export ----------------------------------------------------------------------------------


def maildir_name(uid, arrival, size):
    epoch, seq = uid.split(".")
    return "%d.P%sQ%s.pocketpost,S=%d,W=%d" % (arrival, epoch, seq, size, size)


class MaildirWriter:
    def __init__(self, top):
        self.top = top
        self.box = None
        self.written = []  # (basename, uid, size) of the current mailbox, in order
        self.kept = {}  # {mailbox: messages already in the folder, left as they were}

    def mailbox(self, name, count, total):
        self.finish_mailbox()
        self.box = os.path.join(self.top, name)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(self.box, sub), exist_ok=True)
        self.written = []
        # A message an earlier export put here is left as it is: a mail reader or Dovecot may
        # have renamed it since (flags after ":2,", S in Dovecot's POP3 once retrieved; new/ ->
        # cur/), and a copy under the bare name again would be a second message. (A message's
        # name is fixed by its UID, arrival and size, and its bytes never change on the board.)
        self.present = set()
        for sub in ("cur", "new"):
            for n in os.listdir(os.path.join(self.box, sub)):
                self.present.add(n.split(":")[0])
        self.kept.setdefault(name, 0)
        self.name = name

    def message(self, uid, arrival, size, copy):
        base = maildir_name(uid, arrival, size)
        if base in self.present:
            self.kept[self.name] += 1
            self.written.append((base, uid, size))
            return
        tmp = os.path.join(self.box, "tmp", base)
        with open(tmp, "wb") as f:
            copy(f.write)
            f.flush()
            os.fsync(f.fileno())
        os.utime(tmp, (arrival, arrival))
        os.rename(tmp, os.path.join(self.box, "cur", base + ":2,"))
        self.written.append((base, uid, size))

    def finish_mailbox(self):
        pass

    def close(self):
        self.finish_mailbox()


class DovecotWriter(MaildirWriter):
    """A Maildir per mailbox plus dovecot-uidlist with each message's POP3 UIDL and order.

    Into a folder that is already a Dovecot mailbox (the user's mail there, or an earlier export
    that Dovecot has served), the board's messages are added to its dovecot-uidlist: every line
    already there stays as it is (Dovecot's UIDs, and with them the UIDLs its POP3 clients
    know, live in that file and its UIDVALIDITY), and a board message not listed yet gets the next
    UID and its P (POP3 UIDL). Dovecot's own dotlock (dovecot-uidlist.lock, O_EXCL, then renamed
    over the list, as Dovecot writes it) keeps a Dovecot that is running from writing it meanwhile.

    A stale lock is taken over as Dovecot's file-dotlock.c takes one over, with a line on stderr:
    one holding "PID:HOST" of this host whose process is gone (what an export killed while it held
    the lock leaves: it writes that first, as Dovecot's dotlocks do, then the list), or one that
    neither it nor dovecot-uidlist has changed for STALE_S. A live one is waited for LOCK_WAIT_S,
    then refused: nothing is taken from under a running Dovecot or export.

    `pocketpost-exported` in the Maildir lists the UIDs exported into it: a message deleted in
    Dovecot since (a POP3 client that fetched and deleted it there) is not written again by a
    later export (the move's second export, for mail that reached the board meanwhile), so it is
    not downloaded a second time. Dovecot ignores the file."""

    LOCK_WAIT_S = 10  # a Dovecot holds the lock for one rewrite: we wait this long for it, then refuse
    STALE_S = 120  # unchanged this long, lock and list: stale (Dovecot's own bound for dovecot-uidlist.lock)
    HOLDER_MAX = 512  # octets of the lock read for its holder (Dovecot's read_local_pid reads as much)
    EXPORTED = "pocketpost-exported"

    def __init__(self, top):
        MaildirWriter.__init__(self, top)
        self.gone = {}  # {mailbox: messages an earlier export wrote that were deleted there since}

    def mailbox(self, name, count, total):
        MaildirWriter.mailbox(self, name, count, total)
        self.gone.setdefault(name, 0)
        try:
            with open(os.path.join(self.box, self.EXPORTED)) as f:
                self.exported = set(f.read().split())
        except FileNotFoundError:
            self.exported = set()

    def message(self, uid, arrival, size, copy):
        if uid in self.exported and maildir_name(uid, arrival, size) not in self.present:
            self.gone[self.name] += 1
            return
        MaildirWriter.message(self, uid, arrival, size, copy)

    def finish_mailbox(self):
        if self.box is None:
            return
        path = os.path.join(self.box, "dovecot-uidlist")
        lock = path + ".lock"
        fd = self._take_lock(lock, path)
        try:
            with os.fdopen(fd, "w") as f:
                f.write("%d:%s" % (os.getpid(), socket.gethostname()))  # the holder, until the list replaces it
                f.flush()
                text = "".join(self._uidlist(path))
                f.seek(0)
                f.truncate()
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.rename(lock, path)
        except BaseException:
            try:
                os.remove(lock)
            except OSError:
                pass
            raise
        done = os.path.join(self.box, self.EXPORTED)
        with open(done + ".tmp", "w") as f:
            f.write("".join(u + "\n" for u in sorted(self.exported.union(w[1] for w in self.written))))
            f.flush()
            os.fsync(f.fileno())
        os.rename(done + ".tmp", done)
        self.box = None

    def _take_lock(self, lock, path):
        """Create LOCK (O_EXCL) -> its descriptor; a stale one is taken over, a live one refused."""
        deadline = time.time() + self.LOCK_WAIT_S
        while True:
            try:
                return os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                why = self._stale(lock, path)
                if why:
                    sys.stderr.write("ppadmin export: %s: a stale lock (%s): taken over\n" % (lock, why))
                    try:
                        os.remove(lock)
                    except FileNotFoundError:
                        pass
                    continue
                if time.time() > deadline:
                    raise PortError("%s is held (Dovecot is writing it, or another export): export again once it "
                                    "has ended (a lock left unchanged for %d s, or by a process that is gone, is "
                                    "taken over; what is exported so far stays)" % (lock, self.STALE_S))
                time.sleep(0.1)

    def _stale(self, lock, path):
        """Why LOCK is stale (a reason to log), or None while its holder may be alive."""
        try:
            with open(lock, "rb") as f:
                holder = f.read(self.HOLDER_MAX)
            changed = os.stat(lock).st_mtime
        except FileNotFoundError:
            return None  # released meanwhile: try again
        pid, _, host = holder.decode("latin-1").partition(":")
        if pid.isdigit() and host.strip() == socket.gethostname():
            if int(pid) == os.getpid():  # as Dovecot: never ours while we wait, so one left with a reused pid
                return "it names this process, pid %s" % pid
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return "its holder, pid %s, is gone" % pid
            except PermissionError:  # another user's live process
                pass
            return None
        try:
            changed = max(changed, os.stat(path).st_mtime)
        except FileNotFoundError:
            pass
        idle = time.time() - changed
        return "unchanged for %d s" % idle if idle > self.STALE_S else None

    def _uidlist(self, path):
        try:
            with open(path) as f:
                old = f.read().splitlines()
        except FileNotFoundError:
            old = []
        if not old:  # a new mailbox: the board's order is the POP3 order
            lines = ["3 V%d N%d G%s\n" % (int(time.time()), len(self.written) + 1, os.urandom(16).hex())]
            for i, (base, uid, size) in enumerate(self.written):
                lines.append("%d P%s O%d W%d :%s\n" % (i + 1, uid, i + 1, size, base))
            return lines
        head = old[0].split(" ")
        if head[0] != "3":
            raise PortError("%s is a version %s dovecot-uidlist (only version 3 is added to): let Dovecot "
                            "rewrite it (open the mailbox once with Dovecot 2.x), or export into a new folder" % (path, head[0]))
        listed = set()
        nxt = 1
        for ln in old[1:]:
            uid, sep, name = ln.partition(" :")
            if not sep:  # "uid :name" with no extension fields: partition on the first space
                uid, _, name = ln.partition(" ")
                name = name[1:] if name.startswith(":") else name
            listed.add(name.split(":")[0])
            n = uid.split(" ")[0]
            if n.isdigit():
                nxt = max(nxt, int(n) + 1)
        for f in head[1:]:
            if f[:1] == "N" and f[1:].isdigit():
                nxt = max(nxt, int(f[1:]))
        # No O (POP3 order) for the added lines: the mailbox's mail keeps its order, the board's follows.
        added = ["%d P%s W%d :%s\n" % (nxt + i, uid, size, base)
                 for i, (base, uid, size) in enumerate(w for w in self.written if w[0] not in listed)]
        head = [f for f in head if f[:1] != "N"]
        head.insert(2 if len(head) > 1 else 1, "N%d" % (nxt + len(added)))
        return [" ".join(head) + "\n"] + [ln + "\n" for ln in old[1:]] + added


_QUOTE = re.compile(rb"^(?=>*From )", re.M)
_PREFIX = re.compile(rb">*(?:F(?:r(?:o(?:m)?)?)?)?")


_QUOTE_O = re.compile(rb"^(?=From )", re.M)
_PREFIX_O = re.compile(rb"(?:F(?:r(?:o(?:m)?)?)?)?")


class MboxrdQuoter:
    """mboxrd quoting as a stream: one more '>' before every line matching /^>*From /.
    Keeps back at most a short partial line that could still become such a line.
    quoting="o" (mboxo): only /^From / gets a '>' (readers that never remove one, as neomutt and
    Dovecot's mbox, then show a '>From ' line of the message as it is)."""

    def __init__(self, write, quoting="rd"):
        self.w = write
        self.pending = b""
        self.bol = True
        self.quote, self.prefix = (_QUOTE, _PREFIX) if quoting == "rd" else (_QUOTE_O, _PREFIX_O)

    def feed(self, chunk):
        data = self.pending + chunk if self.pending else chunk
        self.pending = b""
        if not self.bol:
            nl = data.find(b"\n")
            if nl < 0:
                self.w(data)
                return
            self.w(data[: nl + 1])
            data = data[nl + 1 :]
        last = data.rfind(b"\n") + 1
        tail = data[last:]
        if tail and len(tail) < HEAD_MAX and self.prefix.fullmatch(tail):  # (bounded: a line of 64 KiB of '>')
            self.pending = tail
            data = data[:last]
        if data:
            self.w(self.quote.sub(b">", data))
        self.bol = bool(self.pending) or not data or data.endswith(b"\n")

    def finish(self):
        if self.pending:
            self.w(self.pending)
        self.pending = b""
        self.bol = True


_RETURN_PATH = re.compile(rb"(?im)^Return-Path:[ \t]*(?:\r?\n[ \t]+)?<([^<>\s]{0,255})>")
_HEAD_END = re.compile(rb"\A\r?\n|\n\r?\n")
HEAD_MAX = 65536  # header bytes looked through for Return-Path before the From_ line is written


def envelope_sender(head):
    """The envelope sender as the message's header keeps it: its first Return-Path field (the
    board's SMTP receiver writes it from MAIL FROM; mail fetched from a server has the one that
    server wrote), only up to the header's end. MAILER-DAEMON for the null sender <>, for none,
    and for an address a From_ line cannot carry (with spaces: a quoted local part)."""
    end = _HEAD_END.search(head)
    m = _RETURN_PATH.search(head, 0, end.start() if end else len(head))
    return m.group(1) if m and m.group(1) else b"MAILER-DAEMON"


def from_line(arrival, sender=b"MAILER-DAEMON"):
    return b"From %s %s\n" % (sender, time.asctime(time.gmtime(arrival)).encode())


class _HeadFirst:
    """Holds a message's first bytes back until its header has ended (or HEAD_MAX bytes), calls
    start(head) (which writes the From_ line), then passes everything on to feed."""

    def __init__(self, start, feed):
        self.start = start
        self.feed_on = feed
        self.head = b""

    def feed(self, chunk):
        if self.head is None:
            self.feed_on(chunk)
            return
        self.head += chunk
        if len(self.head) >= HEAD_MAX or _HEAD_END.search(self.head):
            self.finish()

    def finish(self):
        if self.head is not None:
            head, self.head = self.head, None
            self.start(head)
            if head:
                self.feed_on(head)


def open_part(final):
    """FILE.part, open for writing FILE (renamed over it once complete), empty, and locked (flock)
    while this process writes it. A FILE.part that no run holds was left by one that was killed
    (SIGKILL, a power cut: nothing could remove it): replaced, and said on stderr; one that another
    run is writing (a second backup or export to the same file) is refused, never truncated under it."""
    part = final + ".part"
    for _ in range(5):  # (another run may rename its finished FILE.part between our open and lock)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT, 0o644)  # not truncated: it may be another run's
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PortError("%s is being written by another run (a backup or export to the same file): let it "
                            "finish, or give another file" % part)
        st = os.fstat(fd)
        try:
            same = os.stat(part).st_ino == st.st_ino
        except FileNotFoundError:
            same = False
        if not same:  # that run renamed it to its FILE meanwhile: ours is a new FILE.part
            os.close(fd)
            continue
        if st.st_size:
            sys.stderr.write("%s: left by a run that was stopped before it finished (it is never a whole "
                             "archive or file): replaced\n" % part)
        os.ftruncate(fd, 0)
        return os.fdopen(fd, "wb")
    raise PortError("%s keeps being replaced by another run: give another file" % part)


class MboxWriter:
    """One mbox file, or (several mailboxes) a directory of <mailbox>.mbox files. Each file is
    written as FILE.part and renamed over FILE once complete: an export that fails or is killed
    midway leaves the earlier FILE whole (it was truncated, then cut short) and no part of a new
    one."""

    def __init__(self, path, single, quoting="rd"):
        self.path = path
        self.single = single
        self.quoting = quoting
        self.f = None
        self.final = None

    def _finish(self):
        self.f.flush()
        if self.final is not None:
            os.fsync(self.f.fileno())
            os.replace(self.final + ".part", self.final)  # while still locked (open_part)
        self.f.close()
        self.f = None

    def mailbox(self, name, count, total):
        if self.f is not None and not self.single:
            self._finish()
        if self.f is None:
            if self.single:
                p = self.path
            else:
                os.makedirs(self.path, exist_ok=True)
                p = os.path.join(self.path, name + ".mbox")
            if os.path.exists(p) and not os.path.isfile(p):  # a pipe, /dev/stdout: written as it goes
                self.final = None
                self.f = open(p, "wb")
            else:
                self.final = p
                self.f = open_part(p)

    def message(self, uid, arrival, size, copy):
        q = MboxrdQuoter(self.f.write, self.quoting)
        h = _HeadFirst(lambda head: self.f.write(from_line(arrival, envelope_sender(head))), q.feed)
        copy(h.feed)
        h.finish()
        q.finish()
        self.f.write(b"\n")

    def close(self):
        if self.f is not None:
            self._finish()

    def abort(self):
        if self.f is not None:
            if self.final is not None:
                try:
                    os.unlink(self.final + ".part")  # while still locked (open_part)
                except OSError:
                    pass
            self.f.close()
            self.f = None


def export(image, mailboxes, writer, progress=False, heapsize=None, missing=None, locked=None):
    """Export mailboxes (all when empty) of image through writer; returns {mailbox: count}.
    image may be a board's serial port (or the pseudo-board's pty): see UsbLink. A mailbox named
    that does not exist is reported on stderr and appended to `missing` (a list) if given; one
    that a POP3 session holds (an "L" record: not exported, the others are) is reported on
    stderr and appended to `locked` (a list) if given, so the caller can end incomplete."""
    link = open_link(image, "export", *mailboxes, heapsize=heapsize)
    counts = {}
    held = []
    absent = []
    prog = Progress("export", progress)
    cur = [None]

    def on_mailbox(name, count, total):
        cur[0] = name
        counts[name] = 0
        prog.add_total(count, total)
        writer.mailbox(name, count, total)

    def on_message(uid, arrival, size, copy):
        writer.message(uid, arrival, size, copy)
        counts[cur[0]] += 1
        prog.step(size)

    try:
        read_records(link, on_mailbox, on_message, on_locked=held.append, on_missing=absent.append)
        writer.close()
        prog.done()  # the progress line ends before the board's restart says so
        link.close()
    except BaseException:
        link.kill()
        abort = getattr(writer, "abort", None)
        if abort is not None:
            abort()
        raise
    prog.done()
    for name in held:
        sys.stderr.write("export: mailbox %s is in use (a POP3 session holds it): not exported\n" % name)
    for name in absent:
        sys.stderr.write("export: no mailbox %s on %s: nothing exported for it\n" % (name, image))
    if missing is not None:
        missing.extend(absent)
    if locked is not None:
        locked.extend(held)
    return counts


# --- import sources ----------------------------------------------------------------------------

_LONE_LF = re.compile(rb"(?<!\r)\n")


def normalized(chunks):
    """The bytes as the store keeps them: lone LF -> CRLF, a final line end added (Delivery.finish)."""
    last = None  # last byte seen, as an int
    for c in chunks:
        if not c:
            continue
        if c[0] == 10 and last == 13:
            out = b"\n" + _LONE_LF.sub(b"\r\n", c[1:]) if len(c) > 1 else b"\n"
            # c[1:] begins after an LF, so a LF there is lone: the lookbehind sees nothing -> lone
        else:
            out = _LONE_LF.sub(b"\r\n", c)
        last = c[-1]
        yield out
    if last is not None and last != 10:
        yield b"\n" if last == 13 else b"\r\n"


class Inspector:
    """Notes on a message as it goes by: header/body separator, 8-bit headers, line ends."""

    HEAD_MAX = 65536

    def __init__(self):
        self.head = bytearray()
        self.head_done = False
        self.crlf = 0
        self.lf = 0
        self.size = 0

    def feed(self, c):
        self.size += len(c)
        self.crlf += c.count(b"\r\n")
        self.lf += c.count(b"\n")
        if not self.head_done:
            self.head += c[: self.HEAD_MAX - len(self.head)]
            if len(self.head) >= self.HEAD_MAX or self._sep() >= 0:
                self.head_done = True

    def _sep(self):
        h = bytes(self.head)
        if h.startswith(b"\n") or h.startswith(b"\r\n"):
            return 0
        i = h.find(b"\n\n")
        j = h.find(b"\n\r\n")
        c = [k for k in (i, j) if k >= 0]
        return min(c) if c else -1

    def notes(self):
        out = []
        sep = self._sep()
        head = bytes(self.head[:sep]) if sep >= 0 else bytes(self.head)
        if sep < 0:
            out.append("no empty line between header and body (stored as it is)")
        elif sep == 0:
            out.append("no header fields (starts with an empty line)")
        if head and not re.match(rb"[!-9;-~]+:", head):
            out.append("does not start with a header field")
        if any(b > 127 for b in head):
            try:
                head.decode("utf-8")
                out.append("8-bit (UTF-8) header bytes")
            except UnicodeDecodeError:
                out.append("8-bit header bytes that are not UTF-8 (kept as they are)")
        lone = self.lf - self.crlf
        if lone and self.crlf:
            out.append("mixed CRLF and LF line ends (stored with CRLF)")
        return out


class Source:
    """One message of an import source: label, arrival (or None), chunks() -> bytes blocks."""

    def __init__(self, label, arrival, chunks, notes=()):
        self.label = label
        self.arrival = arrival
        self.chunks = chunks
        self.notes = list(notes)


def _file_chunks(path):
    def gen():
        with open(path, "rb") as f:
            while True:
                b = f.read(READ)
                if not b:
                    return
                yield b

    return gen


def _name_time(name, path):
    m = re.match(r"(\d{9,10})\.", name)
    if m:
        return int(m.group(1))
    try:
        return int(os.stat(path).st_mtime)
    except OSError:
        return None


def maildir_source(top):
    """Messages of a Maildir (cur/ and new/; tmp/ and dot files ignored), oldest first."""
    items = []
    notes = []
    for sub in ("cur", "new"):
        d = os.path.join(top, sub)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if name.startswith("."):
                continue
            if not os.path.isfile(p):
                notes.append("%s/%s: not a regular file, skipped" % (sub, name))
                continue
            items.append((_name_time(name, p) or 0, sub + "/" + name, p))
    items.sort()
    return [Source(label, t or None, _file_chunks(p)) for t, label, p in items], notes


def eml_source(path):
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(".eml") and os.path.isfile(os.path.join(path, n)))
        return [Source(n, _name_time("", os.path.join(path, n)), _file_chunks(os.path.join(path, n))) for n in names], []
    return [Source(os.path.basename(path), _name_time("", path), _file_chunks(path))], []


_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_FROM_ = re.compile(rb"From \S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
                    rb" +(\d{1,2}) +(\d{1,2}):(\d\d)(?::(\d\d))?(?: +[^ \r\n]+)? +(\d{4})")


def _from_time(line):
    m = _FROM_.match(line)
    if not m:
        return None
    mon, day, hh, mm, ss, year = m.groups()
    try:
        return calendar.timegm((int(year), _MONTHS.index(mon.decode()) + 1, int(day), int(hh), int(mm), int(ss or 0)))
    except (ValueError, OverflowError):
        return None


def _lines(f, start, end):
    """(offset, line) of f in [start, end), lines cut at READ bytes (a long line is not read whole)."""
    f.seek(start)
    pos = start
    while pos < end:
        ln = f.readline(min(READ, end - pos))
        if not ln:
            return
        yield pos, ln
        pos += len(ln)


def mbox_source(path, quoting="rd"):
    """Messages of an mbox. A message starts at a line that looks like a real From_ line (sender,
    weekday, month, day, time, year) at the start of the file or after an empty line; any other
    line starting with "From " is body text (reported, kept). One empty line before the next
    From_ line belongs to the mbox, not the message. quoting: "rd" (mboxrd: /^>+From / loses one
    ">") or "o" (mboxo: /^>From / -> "From "; deeper quoting is left alone)."""
    msgs = []  # [label, arrival, start, end, notes]
    size = os.path.getsize(path)
    prev_empty = True
    bol = True
    last_line_len = 0
    last_empty_len = 0
    with open(path, "rb") as f:
        for pos, ln in _lines(f, 0, size):
            line_start = bol
            bol = ln.endswith(b"\n")
            if not line_start:
                continue
            if ln.startswith(b"From "):
                t = _from_time(ln)
                if (t is not None and prev_empty) or pos == 0:
                    if msgs:
                        msgs[-1][3] = pos - (last_empty_len if prev_empty else 0)
                    msgs.append(["message %d (offset %d)" % (len(msgs) + 1, pos), t, pos + len(ln), size, []])
                    prev_empty = False
                    continue
                if msgs:
                    msgs[-1][4].append("unescaped 'From ' line inside the body (kept)")
            empty = ln in (b"\n", b"\r\n")
            if empty:
                last_empty_len = len(ln)
            prev_empty = empty and bol
            last_line_len = len(ln)
    del last_line_len
    if msgs and prev_empty:
        msgs[-1][3] -= last_empty_len
    rd = quoting == "rd"
    unq = re.compile(rb">(>*From )") if rd else re.compile(rb">(From )")

    def chunks_of(start, end):
        def gen():
            with open(path, "rb") as f:
                at_bol = True
                for _, ln in _lines(f, start, end):
                    if at_bol and ln[:1] == b">":
                        m = unq.match(ln)
                        if m:
                            ln = ln[1:]
                    at_bol = ln.endswith(b"\n")
                    yield ln

        return gen

    out = []
    notes = []
    if size and not msgs:
        notes.append("%s: no From_ line at the start: not an mbox" % path)
    for label, t, start, end, n in msgs:
        counts = {}
        for x in n:
            counts[x] = counts.get(x, 0) + 1
        n = [("%s (%d lines)" % (k, v) if v > 1 else k) for k, v in counts.items()]
        out.append(Source(label, t, chunks_of(start, end), n))
    return out, notes


def check_source(image, path):
    """PortError for a SOURCE that is no mail: missing (a typo, or arguments in the wrong order),
    or a flash image (the target itself, say): it was imported as one huge message."""
    order = "(order: import IMAGE MAILBOX SOURCE)"
    if not os.path.exists(path):
        raise PortError("%s: no such file or folder; give a Maildir, an mbox, a .eml file or a folder of them %s"
                        % (path, order))
    if os.path.isfile(path):
        try:
            hostimage.check(path)
        except hostimage.ImageError:
            return
        what = "the image itself" if os.path.exists(image) and os.path.samefile(path, image) else "a flash image"
        raise PortError("%s is %s, not mail %s" % (path, what, order))


def open_source(path, mbox_quoting="rd"):
    """(list of Source, notes) for a Maildir, a directory of .eml files, an mbox or one .eml."""
    if os.path.isdir(path):
        if os.path.isdir(os.path.join(path, "cur")) or os.path.isdir(os.path.join(path, "new")):
            return maildir_source(path)
        return eml_source(path)
    with open(path, "rb") as f:
        head = f.read(5)
    if not head:
        return [], ["%s: empty file, no messages" % path]
    if head == b"From ":
        return mbox_source(path, mbox_quoting)
    return eml_source(path)


def message_key(src):
    """(sha1 hex, stored size, notes) of a Source, streamed."""
    h = hashlib.sha1()
    insp = Inspector()
    size = 0
    for c in src.chunks():
        insp.feed(c)
    for c in normalized(src.chunks()):
        h.update(c)
        size += len(c)
    return h.hexdigest(), size, insp.notes() if size else []


def import_messages(image, mailbox, path, report=print, mbox_quoting="rd", progress=False, heapsize=None,
                    create_mailbox=False):
    """Import SOURCE into mailbox; returns a dict of counts (added, skipped, refused, full).
    A mailbox that does not exist yet and that no user of the image's config reads (a typo:
    mail nobody could fetch) raises NoSuchMailbox, nothing made, unless create_mailbox (as
    `ppadmin deliver --create-mailbox`)."""
    check_source(image, path)
    sources, notes = open_source(path, mbox_quoting)
    for n in notes:
        report("note: " + n)
    res = {"added": 0, "skipped": 0, "refused": 0, "full": False, "missing": 0, "left": 0}
    link = open_link(image, "serve", heapsize=heapsize, dir_store=True)
    prog = Progress("import", progress)
    prog.add_total(len(sources), 0)
    users = None
    try:
        if not create_mailbox:
            state, names = link.mailbox_state(mailbox)
            if state == "new":
                users = names
                sources = []  # nothing is sent: the link closes below (a board restarts as after any import)
        known = set() if users is not None else link.journal(mailbox)
        for i, src in enumerate(sources):
            sha, size, mnotes = message_key(src)
            for n in src.notes + mnotes:
                report("%s: note: %s" % (src.label, n))
            if not size:
                report("%s: refused: empty message" % src.label)
                res["refused"] += 1
                continue
            if sha in known:
                res["skipped"] += 1
                continue
            arrival = src.arrival if src.arrival is not None else int(time.time())
            reply = link.message(mailbox, arrival, sha, None, normalized(src.chunks()))
            prog.step(size)
            if reply.startswith("A "):
                known.add(sha)
                res["added"] += 1
            elif reply.startswith("F "):
                free, why = reply[2:].split(" ", 1)
                rest = sum(message_key(s)[1] for s in sources[i + 1 :])
                res.update(full=True, missing=size - int(free), left=len(sources) - i)
                report("%s: no room (%s): %d messages went in; this one needs %d bytes, %d are free"
                       " (%d bytes missing); %d messages (%d bytes) not imported"
                       % (src.label, why, res["added"], size, int(free), size - int(free), len(sources) - i, size + rest))
                break
            else:
                report("%s: refused: %s" % (src.label, reply[2:]))
                res["refused"] += 1
        prog.done()  # the progress line ends before the board's restart says so
        link.close()
    except BaseException:
        link.kill()
        raise
    prog.done()
    if users is not None:
        raise NoSuchMailbox("no mailbox %s on %s and no user reads it (users: %s): add the user first, or pass "
                            "--create-mailbox" % (mailbox, image, ", ".join(users) or "none"))
    return res


# --- backup and restore ------------------------------------------------------------------------

BACKUP_FORMAT = """\
pocketpost backup archive, format 1. A first line "pocketpost-backup 1 <id>\\n", then records:

    @pp <id> <kind> <metalen> <datalen> <crc>\\n   <meta: JSON, metalen bytes>\\n   <data: datalen bytes>\\n#<sha256 of data>\\n

<id>: 16 hex digits, the same in every record of one archive (a backup stored inside a message
of another backup is not mistaken for its records). <crc>: CRC-32 (8 hex digits) of the header
line up to the space before it, then the meta bytes. kind: "info" (format, created, tool,
config path), "file" (meta: path; data: the file), "mailbox" (meta: name, count, total),
"msg" (meta: mailbox, uid, arrival, size; data: the stored bytes), "end" (meta: counts per
mailbox and every (mailbox, uid) listed, so a restore can name messages whose records are lost).
restore reads the whole archive first and refuses one with any fault (verify); with --salvage a reader
that meets a damaged header searches forward for the next "\\n@pp <id> " line whose
CRC holds; a record whose data fails its SHA-256 is named and skipped.
"""


def _hdr(aid, kind, meta, datalen):
    m = json.dumps(meta, sort_keys=True).encode()
    head = b"@pp %s %s %d %d" % (aid, kind.encode(), len(m), datalen)
    crc = zlib.crc32(head + b" " + m) & 0xFFFFFFFF
    return head + b" %08x\n" % crc + m + b"\n"


class ArchiveWriter:
    def __init__(self, f):
        self.f = f
        self.aid = os.urandom(8).hex().encode()
        f.write(b"pocketpost-backup 1 %s\n" % self.aid)

    def record(self, kind, meta, datalen, copy=None):
        self.f.write(_hdr(self.aid, kind, meta, datalen))
        h = hashlib.sha256()
        n = [0]

        def write(b):
            h.update(b)
            n[0] += len(b)
            self.f.write(b)

        if copy is not None:
            copy(write)
        if n[0] != datalen:
            raise PortError("record %s: %d bytes, header said %d" % (kind, n[0], datalen))
        self.f.write(b"\n#%s\n" % h.hexdigest().encode())


def backup(image, path, progress=False):
    """Write a backup archive of the whole image (every mailbox, config and other files): as
    FILE.part (open_part), renamed to FILE once complete, while still locked."""
    tmp = path + ".part"
    if os.path.isdir(path):  # (found before the transfer, not at its final rename)
        raise PortError("%s is a folder: give the archive's file name, e.g. %s" % (path, os.path.join(path, "board.pp")))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise PortError("%s: there is no folder %s to write it in" % (path, folder))
    counts = {}
    toc = []
    link = open_link(image, "backup")
    try:
        f = open_part(path)
    except BaseException:  # (another run's FILE.part: left to it)
        link.kill()
        raise
    prog = Progress("backup", progress)
    try:
        aw = ArchiveWriter(f)
        aw.record("info", {"format": 1, "created": int(time.time()), "tool": "pocketpost ppadmin backup",
                           "config": IMAGE_CONFIG}, 0)
        cur = [None]

        def on_file(p, size, copy):
            aw.record("file", {"path": p}, size, copy)

        def on_mailbox(name, count, total):
            cur[0] = name
            counts[name] = 0
            prog.add_total(count, total)
            aw.record("mailbox", {"name": name, "count": count, "total": total}, 0)

        def on_message(uid, arrival, size, copy):
            aw.record("msg", {"mailbox": cur[0], "uid": uid, "arrival": arrival, "size": size}, size, copy)
            counts[cur[0]] += 1
            toc.append([cur[0], uid])
            prog.step(size)

        def on_locked(name):
            raise PortError("mailbox %s is in use (a POP3 session holds it): a backup needs every mailbox; "
                            "run it again once that session has ended" % name)

        read_records(link, on_mailbox, on_message, on_file, on_locked)
        aw.record("end", {"counts": counts, "messages": toc}, 0)
        f.flush()
        os.fsync(f.fileno())
        prog.done()  # the progress line ends before the board's restart says so
        link.close()
        os.rename(tmp, path)  # (before the lock goes with the close: no other run finds it complete as .part)
    except BaseException:
        link.kill()
        try:
            os.unlink(tmp)  # no half archive left beside the one asked for
        except OSError:
            pass
        raise
    finally:
        f.close()
    prog.done()
    return counts


_TRAILER = 67  # "\n#" + 64 hex digits + "\n"
_HEAD = re.compile(rb"@pp ([0-9a-f]{16}) ([a-z]+) (\d{1,9}) (\d{1,12}) ([0-9a-f]{8})\n")


class ArchiveReader:
    """Records of an archive, resyncing past damage; see BACKUP_FORMAT."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "rb")
        self.size = os.path.getsize(path)
        first = self.f.readline(200)
        m = re.match(rb"pocketpost-backup (\d+) ([0-9a-f]{16})\n", first)
        if not m:
            self.f.seek(0)
            head = self.f.read(4096 + 16)
            if b"littlefs" in (head[8:16], head[4096 + 8 : 4096 + 16]):  # a superblock (hostimage._MAGIC)
                # the arguments the wrong way round (backup takes IMAGE ARCHIVE, restore ARCHIVE IMAGE)
                raise PortError("%s: a flash image, not a backup archive: restore reads the archive first, "
                                "then the image (tools/ppadmin.py restore ARCHIVE IMAGE)" % path)
            raise PortError("%s: not a pocketpost backup archive" % path)
        if m.group(1) != b"1":
            raise PortError("%s: archive format %s, this tool reads 1 (made by a newer pocketpost: restore it with "
                            "that version's tools/ppadmin.py); nothing restored" % (path, m.group(1).decode()))
        self.aid = m.group(2)
        self.damage = []  # (offset, what)

    def _resync(self, pos):
        """Offset of the next header line after pos that parses and whose CRC holds, or None."""
        marker = b"\n@pp " + self.aid + b" "
        carry = b""
        at = pos
        while at < self.size:
            self.f.seek(at)
            block = carry + self.f.read(READ)
            base = at - len(carry)
            i = block.find(marker)
            while i >= 0:
                rec = self._head_at(base + i + 1)
                if rec is not None:
                    return base + i + 1
                i = block.find(marker, i + 1)
            carry = block[-(len(marker) - 1):]
            at = base + len(block)
        return None

    def _head_at(self, pos):
        self.f.seek(pos)
        line = self.f.readline(200)
        m = _HEAD.match(line)
        if not m or m.group(1) != self.aid:
            return None
        kind, mlen, dlen, crc = m.group(2).decode(), int(m.group(3)), int(m.group(4)), int(m.group(5), 16)
        meta = self.f.read(mlen)
        if len(meta) != mlen or zlib.crc32(line[: line.rindex(b" ")] + b" " + meta) & 0xFFFFFFFF != crc:
            return None
        try:
            meta = json.loads(meta)
        except ValueError:
            return None
        data_at = pos + len(line) + mlen + 1
        return kind, meta, data_at, dlen

    def records(self):
        """Yield (kind, meta, data_offset, data_len, ok) with ok False when the data's SHA-256
        fails (or the record is cut off)."""
        pos = self.f.tell()
        while pos < self.size:
            rec = self._head_at(pos)
            if rec is None:
                nxt = self._resync(pos)
                self.damage.append((pos, "damaged record header: %d bytes skipped" % ((nxt or self.size) - pos)))
                if nxt is None:
                    return
                pos = nxt
                continue
            kind, meta, data_at, dlen = rec
            end = data_at + dlen
            ok = end + _TRAILER <= self.size and self._check(data_at, dlen)
            yield kind, meta, data_at, dlen, ok
            if ok:
                pos = end + _TRAILER
            else:
                nxt = self._resync(data_at - 1)
                if nxt is None:
                    return
                pos = nxt

    def _check(self, at, n):
        h = hashlib.sha256()
        for b in self.chunks(at, n)():
            h.update(b)
        self.f.seek(at + n)
        trailer = self.f.read(_TRAILER)
        return trailer == b"\n#" + h.hexdigest().encode() + b"\n"

    def chunks(self, at, n):
        def gen():
            with open(self.path, "rb") as f:
                f.seek(at)
                left = n
                while left:
                    b = f.read(min(READ, left))
                    if not b:
                        return
                    left -= len(b)
                    yield b

        return gen

    def close(self):
        self.f.close()


def _check_image_root(raw):
    """An image is mounted at /flash and host paths stay reachable from micropython: a config
    whose store lives elsewhere (a board's, say "/mail") would restore mail onto the host. A
    relative root (the board templates' "mail") is taken from /flash, config.json's folder (Link)."""
    try:
        root = str((json.loads(raw).get("store") or {}).get("root", "/flash/mail"))
    except ValueError:
        return
    inside = root.startswith("/flash/") if root.startswith("/") else ".." not in root.split("/")
    if not inside:
        raise PortError("the archive's config keeps mail in %r, outside the image's /flash: restore it onto a "
                        "board (--port), or change store.root in a copy of the archive's config" % root)


def _record_name(kind, meta):
    if kind == "msg":
        return "message %s %s" % (meta.get("mailbox"), meta.get("uid"))
    if kind == "file":
        return "file %s" % meta.get("path")
    return "%s record" % kind


def verify(ar, image=None):
    """Read the whole archive before anything is touched: PortError naming the first fault in one
    line (cut short at byte N, a checksum mismatch in a named record, a garbled header, a message
    the end record lists without its record), or None when every record is whole. An archive whose
    config keeps mail outside /flash is refused here too when image is an image file."""
    f = ar.f
    f.seek(0)
    pos = len(f.readline(200))
    end = None
    seen = set()
    what = "%s: damaged archive, nothing restored (--salvage restores what is intact): " % ar.path
    while pos < ar.size:
        if end is not None:
            raise PortError(what + "%d bytes after the end record, from byte %d" % (ar.size - pos, pos))
        rec = ar._head_at(pos)
        if rec is None:
            f.seek(pos)
            line = f.readline(200)
            m = _HEAD.match(line)
            if pos + len(line) >= ar.size and not line.endswith(b"\n") or \
                    m and pos + len(line) + int(m.group(3)) + 1 > ar.size:
                raise PortError(what + "cut short at byte %d (inside a record header at byte %d)" % (ar.size, pos))
            raise PortError(what + "garbled record header at byte %d" % pos)
        kind, meta, at, n = rec
        name = _record_name(kind, meta)
        if at + n + _TRAILER > ar.size:
            raise PortError(what + "cut short at byte %d (inside %s, which starts at byte %d and needs %d)"
                            % (ar.size, name, pos, at + n + _TRAILER))
        if not ar._check(at, n):
            raise PortError(what + "checksum mismatch in %s (record at byte %d)" % (name, pos))
        if kind == "msg":
            if not isinstance(meta.get("mailbox"), str) or not isinstance(meta.get("uid"), str) or \
                    not isinstance(meta.get("arrival"), int):
                raise PortError(what + "%s at byte %d lacks its mailbox, uid or arrival" % (name, pos))
            seen.add((meta["mailbox"], meta["uid"]))
        elif kind == "file":
            if not isinstance(meta.get("path"), str):
                raise PortError(what + "a file record at byte %d names no path" % pos)
            if meta["path"] == "config.json" and image is not None and not is_serial(image):
                _check_image_root(b"".join(ar.chunks(at, n)()))
        elif kind == "end":
            end = meta
        pos = at + n + _TRAILER
    if end is None:
        raise PortError(what + "cut short at byte %d (no end record: the archive's last record is missing)" % ar.size)
    for box, uid in end.get("messages") or ():
        if (box, uid) not in seen:
            raise PortError(what + "message %s %s, listed in the end record, has no record" % (box, uid))
    f.seek(0)
    f.readline(200)  # where records() starts


def restore(path, image, report=print, progress=False, heapsize=None, size=None, salvage=False):
    """Restore an archive onto image (made if missing). The whole archive is checked first
    (verify): a cut or damaged one is refused in one line (PortError) before any image is made,
    formatted or written, or the board's filesystem is touched. salvage=True (ppadmin --salvage)
    restores what is intact of a damaged archive instead: then every message whose record is
    damaged is reported by mailbox and UID (or by offset when its header is lost), and a damaged
    record header and a missing end record count as damage too (res["damaged"]): what they held
    (a file, a message the end record would have named) is not restored.
    A file that is not an archive is refused before any image is made."""
    ar = ArchiveReader(path)
    try:
        if not salvage:
            verify(ar, image)
        return _restore(ar, image, report, progress, heapsize, size)
    finally:
        ar.close()


def _hashes(image, later, heapsize):
    """{(mailbox, sha1)} of the messages on image, in the mailboxes of `later` ((name, mailbox,
    arrival, sha1, at, size) each), whose size one of those has: read through an export link."""
    sizes = {(box, n) for _, box, _, _, _, n in later}
    have = set()
    cur = [None]

    def on_mailbox(name, count, total):
        cur[0] = name

    def on_message(uid, arrival, size, copy):
        if (cur[0], size) in sizes:
            h = hashlib.sha1()
            copy(h.update)
            have.add((cur[0], h.hexdigest()))

    link = open_link(image, "export", *sorted({box for _, box, _, _, _, _ in later}), heapsize=heapsize)
    try:
        read_records(link, on_mailbox, on_message)
        link.close()
    except BaseException:
        link.kill()
        raise
    return have


# The store's refusal of a restored UID whose seq is not above the mailbox's last
# (firmware/pocketpost/storerare.py restore_seal): restore then puts the message in with a new UID.
_BELOW = "is not above the mailbox's last"


def _restore(ar, image, report, progress, heapsize, size):
    path = ar.path
    _no_board(image)  # never a new image in /dev
    if not os.path.exists(image) and not is_serial(image):
        # Made under another name and renamed when formatted: a restore killed here leaves no
        # half-made image behind to be mistaken for a real one.
        want = size or max(2 * 1024 * 1024, (os.path.getsize(path) * 2 // 4096 + 64) * 4096)
        part = image + ".part"
        with open(part, "wb") as f:
            blank = b"\xff" * 4096
            for _ in range(want // 4096):
                f.write(blank)
        fmt = subprocess.run([micropython(), HOSTFLASH, part, "--mkfs", "-c", "pass"], capture_output=True,
                             env=dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen"))
        if fmt.returncode:
            raise PortError("formatting %s failed: %s" % (part, fmt.stderr.decode(errors="replace")))
        os.rename(part, image)
    res = {"restored": 0, "present": 0, "damaged": [], "refused": 0, "files": 0, "missing": [], "full": False,
           "renumbered": 0}
    link = open_link(image, "serve", heapsize=heapsize)
    prog = Progress("restore", progress)
    present = {}
    journals = {}  # {mailbox: import journal keys}, read once a message of it needed a new UID
    later = []  # (name, mailbox, arrival, sha1, at, size) of those messages, put in at the end
    have = set()  # (mailbox, sha1) of the messages there with a size one of those has (_hashes)
    seen = set()
    toc = None
    try:
        for kind, meta, at, n, ok in ar.records():
            if kind == "msg":
                name = "%s %s" % (meta.get("mailbox"), meta.get("uid"))
                seen.add((meta.get("mailbox"), meta.get("uid")))
                if not ok:
                    res["damaged"].append(name)
                    report("damaged: message %s (checksum fails): not restored" % name)
                    continue
                box = meta["mailbox"]
                if box not in present:
                    present[box] = link.uids(box)
                if meta["uid"] in present[box]:
                    res["present"] += 1
                    continue
                h = hashlib.sha1()
                for b in ar.chunks(at, n)():
                    h.update(b)
                sha = h.hexdigest()
                if sha in journals.get(box, ()):  # put in under a new UID by an earlier run (below)
                    res["present"] += 1
                    continue
                reply = link.message(box, meta["arrival"], sha, meta["uid"], ar.chunks(at, n)())
                if reply.startswith("R ") and _BELOW in reply:
                    # The mailbox already has mail numbered above this UID (the board took mail
                    # before the restore, or deleted some since the backup): the store keeps its
                    # seqs ascending, so this UID cannot go in. It goes in at the end as an import
                    # (the next UID, journaled by its SHA-1: a rerun finds it in the journal and
                    # adds nothing twice), after the messages that keep their UIDs: put in now,
                    # it would push the mailbox's next seq above all of those.
                    if box not in journals:
                        journals[box] = link.journal(box)
                    if sha in journals[box]:
                        res["present"] += 1
                    else:
                        later.append((name, box, meta["arrival"], sha, at, n))
                    continue
                prog.step(n)
                if reply.startswith("A "):
                    res["restored"] += 1
                elif reply.startswith("F "):
                    report("no room on %s for message %s (%s): stopping" % (image, name, reply[2:]))
                    res["refused"] += 1
                    res["full"] = True  # the rest of the archive was not read: nothing to say of its end
                    break
                else:
                    report("refused: message %s: %s" % (name, reply[2:]))
                    res["refused"] += 1
            elif kind == "file":
                if not ok:
                    res["damaged"].append("file " + meta.get("path", "?"))
                    report("damaged: file %s: not restored" % meta.get("path"))
                    continue
                if meta["path"] == "config.json" and not is_serial(image):
                    _check_image_root(b"".join(ar.chunks(at, n)()))
                link.write_file(meta["path"], n, ar.chunks(at, n)())
                res["files"] += 1
            elif kind == "mailbox" and ok:
                prog.add_total(meta.get("count", 0), meta.get("total", 0))
            elif kind == "end" and ok:
                toc = meta
        if later and not res["full"]:
            # The same bytes may be there under another UID (the board fetched the same mail from
            # the same account before the restore; or run/flash.img's demo mail): those count as
            # there, not added twice. The serve link cannot read messages: an export link hashes
            # the messages of those mailboxes whose sizes match, then the serve link again.
            link.close()
            have = _hashes(image, later, heapsize)
            link = open_link(image, "serve", heapsize=heapsize)
        for name, box, arrival, sha, at, n in later if not res["full"] else ():
            if (box, sha) in have:
                res["present"] += 1
                continue
            reply = link.message(box, arrival, sha, None, ar.chunks(at, n)())
            prog.step(n)
            if reply.startswith("A "):
                res["restored"] += 1
                res["renumbered"] += 1
                report("message %s restored as %s: %s already holds mail numbered above it, so it gets a new "
                       "UIDL (a POP3 client that kept it downloads it once more)" % (name, reply[2:], box))
            elif reply.startswith("F "):
                report("no room on %s for message %s (%s): stopping" % (image, name, reply[2:]))
                res["refused"] += 1
                res["full"] = True
                break
            else:
                report("refused: message %s: %s" % (name, reply[2:]))
                res["refused"] += 1
        prog.done()  # the progress line ends before the board's restart says so
        link.close()
    except BaseException:
        link.kill()
        for off, what in ar.damage:  # what was found before the stop (a damaged config.json record, say)
            report("damaged: at offset %d: %s" % (off, what))
        raise
    prog.done()
    for off, what in ar.damage:
        res["damaged"].append("offset %d" % off)
        report("damaged: at offset %d: %s" % (off, what))
    if res["full"]:
        report("restore stopped: %s is full; the messages after that one were not restored (restore onto a "
               "larger new image with --size, or make room and run it again: what is there already is skipped)" % image)
    elif toc is None:
        res["damaged"].append("end record")
        report("damaged: the archive's end record is missing (archive cut short?): messages after the cut are lost")
    else:
        for box, uid in toc["messages"]:
            if (box, uid) not in seen:
                res["missing"].append("%s %s" % (box, uid))
                report("damaged: message %s %s: its record is unreadable: not restored" % (box, uid))
    return res
