"""Sans-I/O ESMTP receiver session (RFC 5321; SIZE 1870, PIPELINING 2920, 8BITMIME 6152,
ENHANCEDSTATUSCODES 2034/3463, STARTTLS 3207, AUTH 4954 with PLAIN 4616, LOGIN and
SCRAM-SHA-256 5802/7677).

Theory of operation
-------------------
A shell (smtpserver.py) owns the socket. For every framed command line from wire.LineReader it
calls `session.handle(line)` (the line, or the reader's OVERLONG / BAD_LINE) and gets the bytes of
one reply. Before sending them it looks at what the session asked for:

    (None)             handle() answers None while an AUTH's password hash runs (session._check
                       is set): the shell lets other sessions run and calls
                       `smtpauth.resume(session)` until it answers (not a method here: smtp.py is
                       held by every session, smtpauth.py only while one can log in)
                       (auth.LoginCheck in ~10 ms slices; same users, hashes, delays and rehash as POP3)
    session.delay      seconds to wait before sending (failed AUTH; 0 otherwise)
    session.starttls   after sending, switch to TLS and drop buffered plaintext (RFC 3207 4.2)
    session.closing    after sending, close the connection
    session.in_data    after sending (the 354), the bytes that follow are message text: the shell
                       hands everything it has to `feed(buf, start, end)` -> bytes consumed,
                       until in_data is False; then `session.reply` is the final reply to send.

AUTH is offered on the submission ports only. PLAIN and LOGIN send the password, so they need TLS
(or the login service's plain-text policy: "local" peers, or "always"); SCRAM-SHA-256 does not, so
it is offered without TLS too, as the POP3 server does (scram.ServerLogin, shared with it; the
server-final message goes out as a last "334" challenge that the client answers with an empty line,
RFC 4954 section 4). Every failed AUTH, whatever the mechanism, gets 535 5.7.8 after the throttle's
delay, and an unknown user fails exactly as a wrong password does.

Mail is only ever delivered locally: RCPT is accepted for configured addresses (`smtpenv.mailbox`)
and nothing else, authenticated or not (550 5.7.1 for other domains: never an open relay). Paths
are read as Postfix reads them by default (smtpenv.args, parse): RFC 5321's, a space after the
colon, no angle brackets (the path ends at the first space), a quoted local part (matched by its
unquoted form; 553 when that holds an "@" or is empty).

DATA streams (smtpdata.py, loaded for the message phase only): a strict wire.DotUnstuffer (only
CRLF.CRLF ends the text; a bare CR or LF is content and no line starts after one: the
SMTP-smuggling family, <LF>.<LF> and the rest, cannot end the text, so nothing after a look-alike
is read as a command or a second message; from server.trusted_networks a line ends at LF too, as
Postfix reads its mynetworks: <LF>.<LF> ends a device's text) writes into a fixed buffer, which goes to one
store.Delivery per distinct recipient mailbox (groupcommit.begin). At the end, groupcommit.commit makes every copy durable or none,
and only then does the 250 go out: "250 means stored". A message over the size limit, a full flash
or a quota is refused for every recipient (552 5.3.4 / 452 4.3.1 / 552 5.2.2); a drop, RSET or
timeout before the final dot stores nothing (`close()` aborts). A bare LF is stored as CRLF (the
store's own line-end pass, as Postfix's smtpd_forbid_bare_newline = normalize does): curl uploads
a file with LF line ends as it is, and the stored message has CRLF line ends only (it used to be
refused with 554 5.6.0: a permanent failure for every such upload). Trace headers (RFC 5321 4.4:
Return-Path, Received with TLS state and authenticated user) are written first.

Commands dispatch from one table (smtpenv.COMMANDS: the command phase's code, dispatch included,
is smtpenv.py's, so a session in DATA holds none of it; RSET and QUIT are Session.handle's own, so
the QUIT after a message loads none of it); a command out of sequence gets 503, an
unknown one 500; nothing raises. After smtpenv's _MAX_BAD_COMMANDS errors the session is closed
with 421. The texts of the refusals (4xx / 5xx) are none of the session modules': smtptext.py's,
loaded for each refusal and dropped after it (reply(n)), so neither phase holds them.

Names: every name in a loaded module's table is interned for good (docs/ARCHITECTURE.md, "what
costs an interned name"), so the session's attributes, methods and arguments here and in smtpenv,
smtpdata and smtpauth are names MicroPython has built in (step, data, group, reason, fill, text,
...) or ones the listening POP3 server has already interned (out, user, mailboxes, total, abort,
...): a board running POP3 and SMTP receives its first message without the 7.1 KB
pool a 621st name would allocate (host_tests/test_smtp_names.py).
"""

from pocketpost import log
from pocketpost.compat import IS_MICROPYTHON, const, forget, release_cold

# --- limits fixed by the RFCs (the configurable ones live in serverconf.SMTP_DEFAULTS) ---------
# Replies pump() collects into one write: a deep pipeline is answered in batches of this many,
# so the list and the joined write stay small whatever the client queued (RFC 2920 allows it).
_MAX_BATCH = const(32)
# smtpenv.data's answer when the envelope is complete (an int: never a reply, replies are bytes): the
# session hands the envelope's code back, then loads the message phase's code (smtpdata.py), which
# makes the message's deliveries and buffers (smtpdata.begin) and answers the 354 itself, so the
# two are never in the heap together. smtpenv.py keeps a copy.
_GO_DATA = const(354)
# Refusals: smtptext.text's numbers (see reply; private copies, host_tests/test_smtp_texts.py).
_T_LOCAL = const(47)

MX = "mx"  # port 25 style: mail for local addresses, no AUTH needed
SUBMISSION = "submission"  # RFC 6409: AUTH required before MAIL

# The envelope's code (smtpenv.py: EHLO, MAIL, RCPT, DATA's start, STARTTLS, AUTH's checks),
# loaded while some session is in its command phase and dropped while every session is in DATA
# or gone: a message being received keeps none of it.
env_holds = [0]  # sessions in their command phase (Session.loaded)
# The message phase's code (smtpdata.py: the 354, feed, the final reply), loaded by a DATA that
# passed its checks and dropped when no session is in DATA: a session in its command phase keeps
# none of it.
data_holds = [0]  # sessions in DATA (Session.data)


def reply(code, text=None):
    """One reply line: "250 2.0.0 text", the RFC 2034 enhanced code at the start of text: one literal
    per call, as a short "2.0.0" of its own would be one more interned name (qstr) per code.

    reply(n): refusal number n (a _T_ constant), the reply's bytes from smtptext.py; reply(n, v):
    with v for its %d (the size limit in 552 5.3.4: the sender's bounce and our log line say it).
    smtptext.py is cold (its texts were a third of the envelope's code in the heap): loaded for
    this reply and dropped after it. If it cannot be loaded (a MemoryError), the reply is 451,
    which asks the client to try again, as a command that fails on a MemoryError is answered
    (repair). (Not a function of its own: its name would be one more interned name.)"""
    if code < 200:
        try:
            from pocketpost import smtptext

            t = smtptext.text[code >> 4]  # sixteen to a literal: line code % 16 of it
            i = 0
            for _ in range(code & 15):
                i = t.index(b"\n", i) + 1
            t = t[i : t.index(b"\n", i) + 1]
            return t if text is None else t % text
        except Exception:
            return b"451 4.3.0 local error, try again later\r\n"
        finally:
            smtptext = None
            forget(("smtptext",))
    return b"%d %s\r\n" % (code, text.encode())


class Service:
    """What every SMTP session of one server shares: the address map, the store, the limits (cfg:
    the config's "smtp" section) and the POP3 server's password checker and failed-login throttle
    (pop3server.Service: the same users, hashes and delays as POP3). Built by smtpstart.service
    (cold: a session holds no code of its own for its construction, nor for its Session's,
    smtpstart.session).

    The attributes smtpstart.service sets, declared for the type checker: a bare annotation makes
    no code and no name on MicroPython (store and logins, whose types are other modules' classes,
    as class defaults: one slot each of the class's dict)."""

    cfg: dict
    users: dict
    store = None  # a storecore.Store
    logins = None  # a pop3server.Service, or None
    tls_available: bool
    hostname: str
    domains: list
    aliases: dict
    catch_all: dict
    subaddress: str
    max_failures: int
    block_size: int


class Session:
    # Defaults as class attributes: an instance holds only what it has set (less heap per session).
    # A port-25 session sets 22 attributes through its messages (23 with QUIT's closing): its
    # attribute table holds 23 before it grows (to 29 slots, a 464 B block on the 64-bit host;
    # the 24th was DATA's, where bench_heap c ran out), so what needs no value of its own in
    # every session stays a default here.
    delay = 0
    starttls = False
    closing = False
    in_data = False
    # Bytes handed across DATA's ends: the trace fields, from DATA's checks (smtpenv.data) to
    # smtpdata.begin; then the final reply, once in_data turns False, to pump.
    reply = None
    login = None  # authenticated user name
    failures = 0
    bad = 0  # syntax errors and unknown commands so far
    refused = 0  # envelope refusals logged so far (smtpenv.handle: at most _LOG_REFUSED a session)
    stored = 0  # messages stored in this session
    step = None  # SASL exchange in progress: "plain", LOGIN's "user" and "password", "scram" (smtpauth)
    user = None  # AUTH LOGIN's user name, between its two steps
    method = None  # the AUTH mechanism under way, for the log
    _scram = None  # AUTH SCRAM-SHA-256 under way: a scram.ServerLogin
    _check = None  # an auth.LoginCheck under way (the shell calls smtpauth.resume)
    _check_name = None
    data = None  # smtpdata.py while this session is in DATA (data_holds)
    reason = None  # see reset
    unstuffer = None  # smtpdata.begin makes it at the first DATA (a strict wire.DotUnstuffer)
    _held = False  # holds the login code (submission before AUTH)
    loaded = False  # in the command phase: holds the envelope's code (env_holds; smtpstart.session sets it)
    # Set by smtpstart.session (declared for the type checker: no code, no name on MicroPython)
    svc: Service
    peer: str
    mode: str
    tls_active: bool
    helo: str
    esmtp: bool
    passed: bool

    def reset(self):
        """Forget the mail transaction (RSET, EHLO, after DATA, STARTTLS)."""
        self.sender = None
        self.size = 0  # the SIZE= the sender declared (0: none)
        self.count = 0  # recipients accepted (RCPT)
        self.dest = None  # the first recipient (Received's "for <...>" when it is the only one)
        self.mailboxes = []  # the distinct mailboxes the recipients deliver to
        self.group = None  # the store.Delivery per mailbox while DATA runs (groupcommit.begin)
        if self.reason is not None:  # set by a refused message only (a class default otherwise)
            self.reason = None  # the reply once DATA ends, when the message is being refused
        self.fill = 0  # octets in the output block
        self.total = 0  # message octets received
        self.out = None  # DATA's output block (made by handle when DATA starts)
        self.reply = None  # the trace fields of a DATA that failed before its 354

    # -- entry points ----------------------------------------------------------------------
    def timeout_reply(self):
        return reply(421, "4.4.2 %s timeout, closing" % self.svc.hostname)

    def handle(self, line):
        """One command line from the reader (bytes, or its OVERLONG / BAD_LINE) -> the reply;
        None while an AUTH's password hash runs (smtpauth.resume). The command phase's code is
        smtpenv.handle's; a DATA that passed its checks starts the message phase here."""
        if self.delay or self.starttls:  # what the last reply asked of the shell is done
            self.delay = 0
            self.starttls = False
        # RSET and QUIT are answered here, without the envelope's code: after a message the
        # session is out of its command phase (release), and a QUIT loaded smtpenv.py again
        # (~10 KB on the 64-bit host) only to say goodbye, at bench_heap c's edge (where the
        # fetch lists and loads clientget.py). Not as a SASL step, nor once closing (smtpenv's).
        if not isinstance(line, int) and self.step is None and not self.closing:
            kw = bytes(line[:4]).upper()
            if (kw == b"QUIT" or kw == b"RSET") and line[4:5] in (b"", b" "):  # (an argument is ignored)
                try:
                    self.abort()
                    self.reset()
                except Exception as e:  # store trouble: one reply, never a dead session
                    return self.repair(kw, e)
                if kw == b"RSET":
                    return b"250 2.0.0 OK\r\n"
                self.closing = True
                return reply(221, "2.0.0 %s closing" % self.svc.hostname)
        # smtpenv.handle: no reference to the module outlives the call. Loading it is the
        # command's work: a MemoryError there is answered as the command's own would be.
        try:
            from pocketpost import smtpenv
        except Exception as e:
            return self.repair(b"", e)
        r = smtpenv.handle(self, line)
        smtpenv = None
        if r != _GO_DATA:
            return r
        # DATA: the envelope's code is not needed until the message ends.
        try:
            self.release()
            if IS_MICROPYTHON:
                # The envelope's code freed now, so that the message phase's code, the
                # deliveries (store.py at the first), their files and the block take its room
                # instead of splitting the heap past it (bench_heap c: 217-219 -> 213 KiB). A
                # few ms per message on an ESP32.
                import gc

                gc.collect()
            # The output block first, while the envelope's freed room is in one piece: made after
            # the message phase's code and the deliveries (store.py at the first), its 1 KB was
            # the contiguous block bench_heap c ran out at. reset() drops it after the message.
            self.out = bytearray(self.svc.block_size)
            from pocketpost import smtpdata

            data_holds[0] += 1
            self.data = smtpdata
            return smtpdata.begin(self)
        except Exception as e:
            return self.repair(b"DATA", e)

    def repair(self, name, e):
        """The command `name` (bytes, for the log) raised (store trouble, MemoryError): the session
        repaired (the message thrown away, back in the command phase) and one reply, never a dead
        session. (Both names are ones the store interns anyway; fail and kw were two more.)"""
        log.error("smtp %s %s: %s %r", self.peer, name, type(e).__name__, e)
        self.abort()
        self.reset()
        self.in_data = False  # a DATA that failed at its 354: what follows is commands again
        self.forget()
        self.hold()  # still in the command phase
        return reply(_T_LOCAL)

    def close(self):
        """The connection ended (QUIT, drop, timeout, error): a message not yet answered with 250
        is thrown away."""
        self._check = None
        self._scram = None
        self._unhold()
        self.release()
        self.forget()
        self.abort()
        self.reset()
        self.in_data = False

    def feed(self, src, start, end):
        """Message text src[start:end] (any chunking) -> bytes consumed (smtpdata.feed). When
        the terminating CRLF.CRLF has been consumed, in_data turns False and `reply` holds the
        final reply."""
        return self.data.feed(self, src, start, end)  # type: ignore[attr-defined]  # smtpdata while in DATA

    # -- helpers -----------------------------------------------------------------------------
    def abort(self):
        """Throw away the message being received (its deliveries), if any."""
        ds = self.group
        self.group = None
        if ds:
            for d in ds:
                d.abort()

    def _unhold(self):
        if self._held:
            self._held = False
            self.svc.logins.release()  # type: ignore[attr-defined]  # (a pop3server.Service when held)

    def forget(self):
        """Out of DATA: smtpdata.py no longer held by this session (data_holds)."""
        if self.data is not None:
            self.data = None
            release_cold(data_holds, ("smtpdata",))  # imported again by the next DATA

    def hold(self):
        """Back in the command phase: smtpenv.py held again (env_holds)."""
        if not self.loaded:
            self.loaded = True
            env_holds[0] += 1

    def release(self):
        """Out of the command phase (DATA, the end): smtpenv.py no longer held (env_holds)."""
        if self.loaded:
            self.loaded = False
            release_cold(env_holds, ("smtpenv",))  # imported again by the next envelope command

    def auth(self):
        """AUTH is offered: a submission port with a login service."""
        return self.mode == SUBMISSION and self.svc.logins is not None


def pump(session, reader):
    """Run what a wire.LineReader holds through the session (commands, and message text while
    in_data) -> the replies to send, in order (RFC 2920: a pipelined batch is answered as one
    write). Stops early after a reply that asks the shell to act: delay (sleep before sending
    the batch), starttls or closing (after sending it), and when a command answered None
    (session._check set: the shell calls smtpauth.resume(session) until it answers, and appends that
    reply). Bytes it leaves are for the next call."""
    out = []
    while True:
        if session.in_data:
            s = reader.start  # the reader's public buf[start:end]: no tuple per chunk
            e = reader.end
            if s == e:
                break
            reader.consume(session.feed(reader.buf, s, e))
            if not session.in_data:
                out.append(session.reply)
                session.reply = None
            continue
        line = reader.next_line()
        if line is None:
            break
        r = session.handle(line)
        if r is None:  # an AUTH's hash is under way: the shell resumes it, then pumps again
            break
        out.append(r)
        if session.delay or session.starttls or session.closing or len(out) >= _MAX_BATCH:
            break
    return out
