"""Sans-I/O ESMTP receiver session (RFC 5321; SIZE 1870, PIPELINING 2920, 8BITMIME 6152,
ENHANCEDSTATUSCODES 2034/3463, STARTTLS 3207, AUTH 4954 with PLAIN 4616, LOGIN and
SCRAM-SHA-256 5802/7677).

Theory of operation
-------------------
A shell (smtpserver.py) owns the socket. For every framed command line from wire.LineReader it
calls `session.handle(line)` (or `handle_bad(kind)` for OVERLONG / BAD_LINE) and gets the bytes of
one reply. Before sending them it looks at what the session asked for:

    (None)             handle() answers None while an AUTH's password hash runs: the shell lets
                       other sessions run and calls `resume()` until it answers
                       (auth.LoginCheck in ~10 ms slices; same users, hashes, delays and rehash as POP3)
    session.delay      seconds to wait before sending (failed AUTH; 0 otherwise)
    session.starttls   after sending, switch to TLS and drop buffered plaintext (RFC 3207 4.2)
    session.closing    after sending, close the connection
    session.in_data    after sending (the 354), the bytes that follow are message text: the shell
                       hands everything it has to `data_in(buf, start, end)` -> bytes consumed,
                       until in_data is False; then `session.reply` is the final reply to send.

AUTH is offered on the submission ports only. PLAIN and LOGIN send the password, so they need TLS
(or the login service's plain-text policy: "local" peers, or "always"); SCRAM-SHA-256 does not, so
it is offered without TLS too, as the POP3 server does (scram.ServerLogin, shared with it; the
server-final message goes out as a last "334" challenge that the client answers with an empty line,
RFC 4954 section 4). Every failed AUTH, whatever the mechanism, gets 535 5.7.8 after the throttle's
delay, and an unknown user fails exactly as a wrong password does.

Mail is only ever delivered locally: RCPT is accepted for configured addresses (`Service.resolve`)
and nothing else, authenticated or not (550 5.7.1 for other domains: never an open relay).

DATA streams: a strict wire.DotUnstuffer (only CRLF.CRLF ends the text; a bare CR or LF anywhere
makes the message refused with 554 5.6.0 once its end arrives: the SMTP-smuggling family cannot
put a second message into this one or into any later hop) writes into a fixed buffer, which goes
to one store.Delivery per distinct recipient mailbox (store.begin_group). At the end,
store.commit_group makes every copy durable or none, and only then does the 250 go out: "250
means stored". A message over the size limit, a full flash or a quota is refused for every
recipient (552 5.3.4 / 452 4.3.1 / 552 5.2.2); a drop, RSET or timeout before the final dot stores
nothing (`close()` aborts). Trace headers (RFC 5321 4.4: Return-Path, Received with TLS state and
authenticated user) are written first.

Commands dispatch from one table; a command out of sequence gets 503, an unknown one 500; nothing
raises. After MAX_BAD_COMMANDS errors the session is closed with 421.
"""

import binascii
import time

from pocketpost import groupcommit, log
from pocketpost import store as store_mod
from pocketpost.compat import const, urandom
from pocketpost.wire import OVERLONG, DotUnstuffer

# --- limits fixed by the RFCs (the configurable ones live in config.SMTP_DEFAULTS) -------------
# RFC 5321 4.5.3.1.3: a reverse-path or forward-path is at most 256 octets.
MAX_PATH = const(256)
# RFC 5321 4.5.3.1.2: a domain is at most 255 octets (the EHLO argument we keep for Received).
MAX_DOMAIN = const(255)
# Syntax errors and unknown commands tolerated per session, as Postfix's smtpd_hard_error_limit:
# a peer speaking another protocol (or garbage) is let go instead of answered forever.
MAX_BAD_COMMANDS = const(20)
# SIZE= values longer than this are refused before int() (RFC 1870: a decimal number).
_MAX_SIZE_DIGITS = const(10)
# Replies pump() collects into one write: a deep pipeline is answered in batches of this many,
# so the list and the joined write stay small whatever the client queued (RFC 2920 allows it).
MAX_BATCH = const(32)
# Characters of the HELO name and of a login name copied into a Received header or a log line.
_MAX_TRACE_NAME = const(64)

MX = "mx"  # port 25 style: mail for local addresses, no AUTH needed
SUBMISSION = "submission"  # RFC 6409: AUTH required before MAIL



def reply(code, enh, text):
    """One reply line: "250 2.0.0 text" (RFC 2034 enhanced code after the basic one)."""
    if enh:
        return b"%d %s %s\r\n" % (code, enh.encode(), text.encode())
    return b"%d %s\r\n" % (code, text.encode())


def _printable(b, n=_MAX_TRACE_NAME):
    """Peer-given bytes made safe for a header or a log line: printable ASCII, no parentheses."""
    out = bytearray()
    for c in bytes(b[:n]):
        out.append(c if 33 <= c <= 126 and c not in (40, 41, 92) else 63)  # "?"
    return out.decode()


def _parse_path(b, allow_null):
    """b"<user@domain>" (optionally with an RFC 5321 source route) -> "user@domain" as sent (a
    local part is case-sensitive: matching lower-cases it, the Return-Path keeps it), "" for the
    null path, or None for bad syntax."""
    if len(b) < 2 or b[0] != 60 or b[-1] != 62:  # "<" ">"
        return None
    a = b[1:-1]
    if len(a) > MAX_PATH:
        return None
    if a.startswith(b"@"):  # "<@relay,@relay:user@domain>": the route is ignored (RFC 5321 C)
        k = a.find(b":")
        if k < 0:
            return None
        a = a[k + 1 :]
    if not a:
        return "" if allow_null else None
    for c in a:
        if c <= 32 or c >= 127 or c in (60, 62):
            return None
    at = a.find(b"@")
    if at <= 0 or at == len(a) - 1 or a.find(b"@", at + 1) >= 0:  # exactly one "@": no quoted tricks
        return None
    return a.decode()


def _mail_args(rest):
    """The text after "MAIL FROM:" / "RCPT TO:" -> (path bytes, [param bytes]) or None."""
    rest = rest.strip()
    if not rest.startswith(b"<"):
        return None
    k = rest.find(b">")
    if k < 0:
        return None
    params = [p for p in rest[k + 1 :].split(b" ") if p]
    return rest[: k + 1], params


def _date():
    """RFC 5322 date-time in UTC for the Received header."""
    t = time.gmtime()
    return "%s, %02d %s %d %02d:%02d:%02d +0000" % (
        ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[t[6]], t[2],
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[t[1] - 1],
        t[0], t[3], t[4], t[5])


class Service:
    """What every SMTP session of one server shares: the address map, the store, the limits and
    the POP3 server's password checker and failed-login throttle (pop3server.Service: the same
    users, hashes and delays as POP3)."""

    def __init__(self, smtp_cfg, users, store, logins, tls_available=False, hostname="pocketpost"):
        self.cfg = smtp_cfg
        self.users = users
        self.store = store
        self.logins = logins
        self.tls_available = tls_available
        self.hostname = hostname
        self.domains = [d.lower() for d in smtp_cfg["domains"]]
        self.aliases = {}
        for k in smtp_cfg["aliases"]:
            self.aliases[k.lower()] = smtp_cfg["aliases"][k]
        self.catch_all = {}
        for k in smtp_cfg["catch_all"]:
            self.catch_all[k.lower()] = smtp_cfg["catch_all"][k]
        self.subaddress = smtp_cfg["subaddress"]
        self.max_size = smtp_cfg["max_message_size"]
        self.max_recipients = smtp_cfg["max_recipients"]
        self.max_mailboxes = smtp_cfg["max_mailboxes"]
        self.max_failures = smtp_cfg["max_auth_failures"]
        self.block_size = smtp_cfg["block_size"]

    def busy_reply(self):
        """The one reply to a connection refused at admission (no Session is built for it)."""
        return reply(421, "4.7.0", "%s too many connections, try later" % self.hostname)

    def _target(self, name):
        u = self.users.get(name)
        if u is not None:
            return u["mailbox"]
        return name if store_mod.valid_name(name) else None

    def is_local_domain(self, domain):
        return domain in self.domains

    def resolve(self, addr):
        """A lower-cased "local@domain" -> the mailbox it delivers to, or None. Looks up, in
        order: the full address in aliases, the local part in aliases, a user of that name; then
        the same without a "+tag" (subaddressing); then the domain's catch-all."""
        at = addr.rfind("@")
        local = addr[:at]
        domain = addr[at + 1 :]
        if domain not in self.domains:
            return None
        sep = self.subaddress
        for lp in (local, local.split(sep)[0] if sep and sep in local else None):
            if not lp:
                continue
            t = self.aliases.get(lp + "@" + domain) or self.aliases.get(lp)
            if t is not None:
                return self._target(t)
            if lp in self.users:
                return self.users[lp]["mailbox"]
        t = self.catch_all.get(domain)
        return self._target(t) if t else None


class Session:
    def __init__(self, service, peer="?", mode=MX, tls_active=False):
        self.svc = service
        self.peer = peer
        self.mode = mode
        self.tls_active = tls_active
        self.delay = 0
        self.starttls = False
        self.closing = False
        self.in_data = False
        self.reply = None  # the final reply once in_data turns False
        self.helo = None  # EHLO/HELO argument; None before the greeting exchange
        self.esmtp = False
        self.login = None  # authenticated user name
        self.failures = 0
        self.bad = 0  # syntax errors and unknown commands so far
        self.stored = 0  # messages stored in this session
        self.passed = False  # MAIL accepted (port 25) or AUTH succeeded: the pre-auth deadline is over
        self._auth = None  # SASL exchange in progress: "plain", "login-user", "login-pass", "scram-*"
        self._auth_user = None
        self._mech = None  # the AUTH mechanism under way, for the log
        self._scram = None  # AUTH SCRAM-SHA-256 under way: a scram.ServerLogin
        self._check = None  # an auth.LoginCheck under way (see resume)
        self._check_name = None
        self._out = None  # DATA output buffer, made at the first DATA
        self._omv = None
        self._u = None
        self._reset()
        # Submission before AUTH holds the login code (smtpauth.py, auth.py, scram.py:
        # pop3server.Service.hold) until logged in or closed; port 25 never logs in. Last: a
        # constructor that fails before it holds nothing.
        self._held = self._auth_offered()
        if self._held:
            service.logins.hold()

    def _reset(self):
        """Forget the mail transaction (RSET, EHLO, after DATA, STARTTLS)."""
        self.sender = None
        self.size = 0  # the SIZE= the sender declared (0: none)
        self.rcpts = 0
        self.first_rcpt = None
        self.boxes = []
        self._ds = None  # store.Delivery per mailbox while DATA runs
        self._fail = None  # the reply once DATA ends, when the message is being refused
        self._fill = 0
        self._got = 0

    # -- entry points ----------------------------------------------------------------------
    def greeting(self):
        return reply(220, None, "%s ESMTP pocketpost" % self.svc.hostname)

    def timeout_reply(self):
        return reply(421, "4.4.2", "%s timeout, closing" % self.svc.hostname)

    def handle(self, line):
        self.delay = 0
        self.starttls = False
        if self.closing:
            return reply(421, "4.7.0", "closing")
        if self._auth is not None:
            from pocketpost import smtpauth

            return smtpauth.step(self, bytes(line))
        sp = line.find(b" ")
        kw = bytes(line if sp < 0 else line[:sp]).upper()
        arg = b"" if sp < 0 else bytes(line[sp + 1 :])
        fn = _TABLE.get(kw)
        if fn is None:
            return self._error(reply(500, "5.5.2", "command not recognized"))
        try:
            return fn(self, arg)
        except Exception as e:  # store trouble: one reply, never a dead session
            log.error("smtp %s %s: %s %r", self.peer, kw, type(e).__name__, e)
            self._abort()
            self._reset()
            return reply(451, "4.3.0", "local error, try again later")

    @property
    def checking(self):
        """An AUTH's password check is under way: call resume()."""
        return self._check is not None

    def resume(self):
        """Continue the password check that made handle() answer None (smtpauth.resume): None
        while it is unfinished, then the reply to the AUTH."""
        if self._check is None:
            return reply(503, "5.5.1", "nothing to resume")
        from pocketpost import smtpauth

        return smtpauth.resume(self)

    def handle_bad(self, kind):
        self.delay = 0
        self.starttls = False
        if self._auth is not None:
            self._auth = None
            self._scram = None
            return reply(501, "5.5.2", "bad AUTH response")
        if kind == OVERLONG:
            return self._error(reply(500, "5.5.2", "line too long"))
        return self._error(reply(500, "5.5.2", "invalid octet in command"))

    def close(self):
        """The connection ended (QUIT, drop, timeout, error): a message not yet answered with 250
        is thrown away."""
        self._check = None
        self._scram = None
        self._unhold()
        self._abort()
        self._reset()
        self.in_data = False

    # -- helpers -----------------------------------------------------------------------------
    def _error(self, r):
        self.bad += 1
        if self.bad >= MAX_BAD_COMMANDS:
            self.closing = True
            return reply(421, "4.7.0", "too many errors, closing")
        return r

    def _abort(self):
        ds = self._ds
        self._ds = None
        if ds:
            for d in ds:
                d.abort()

    def _unhold(self):
        if self._held:
            self._held = False
            self.svc.logins.release()

    def _auth_offered(self):
        return self.mode == SUBMISSION and self.svc.logins is not None

    def _plain_allowed(self):
        """PLAIN and LOGIN (the password crosses): with TLS, or where the policy allows it."""
        lg = self.svc.logins
        if not self._auth_offered():
            return False
        p = lg.policy
        return self.tls_active or p == "always" or (p == "local" and lg.trusted(self.peer))

    # -- commands ----------------------------------------------------------------------------
    def cmd_ehlo(self, arg):
        return self._hello(arg, True)

    def cmd_helo(self, arg):
        return self._hello(arg, False)

    def _hello(self, arg, esmtp):
        arg = arg.strip()
        if not arg or len(arg) > MAX_DOMAIN:
            return self._error(reply(501, "5.5.4", "a domain or address literal is required"))
        self._abort()
        self._reset()
        self.helo = _printable(arg)
        self.esmtp = esmtp
        if not esmtp:
            return reply(250, None, self.svc.hostname)
        ext = ["%s greets %s" % (self.svc.hostname, self.helo), "SIZE %d" % self.svc.max_size, "8BITMIME",
               "PIPELINING", "ENHANCEDSTATUSCODES"]
        if self.svc.tls_available and not self.tls_active:
            ext.append("STARTTLS")
        if self._auth_offered() and self.login is None:
            ext.append("AUTH PLAIN LOGIN SCRAM-SHA-256" if self._plain_allowed() else "AUTH SCRAM-SHA-256")
        out = []
        for i in range(len(ext)):
            out.append("250%s%s\r\n" % (" " if i == len(ext) - 1 else "-", ext[i]))
        return "".join(out).encode()

    def cmd_starttls(self, arg):
        if arg.strip():
            return self._error(reply(501, "5.5.4", "STARTTLS takes no argument"))
        if self.tls_active:
            return reply(503, "5.5.1", "TLS already active")
        if not self.svc.tls_available:
            return reply(454, "4.7.0", "TLS not available")
        self._abort()
        self._reset()
        self.helo = None  # RFC 3207 4.2: the client starts again with EHLO
        self.starttls = True
        return reply(220, "2.0.0", "ready to start TLS")

    def cmd_auth(self, arg):
        if not self._auth_offered():
            return reply(502, "5.5.1", "AUTH is offered on the submission ports only")
        if self.helo is None:
            return reply(503, "5.5.1", "EHLO first")
        if self.login is not None:
            return reply(503, "5.5.1", "already authenticated")
        if self.sender is not None:
            return reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
        from pocketpost import smtpauth

        return smtpauth.start(self, arg)

    def cmd_mail(self, arg):
        if self.helo is None:
            return reply(503, "5.5.1", "EHLO or HELO first")
        if self.sender is not None:
            return reply(503, "5.5.1", "nested MAIL command")
        if self.mode == SUBMISSION and self.login is None:
            return reply(530, "5.7.0", "authentication required")
        if not arg[:5].upper() == b"FROM:":
            return self._error(reply(501, "5.5.4", "syntax: MAIL FROM:<address>"))
        parsed = _mail_args(arg[5:])
        if parsed is None:
            return self._error(reply(501, "5.5.4", "syntax: MAIL FROM:<address>"))
        path, params = parsed
        sender = _parse_path(path, True)
        if sender is None:
            return self._error(reply(501, "5.1.7", "bad sender address syntax"))
        size = 0
        for p in params:
            if not self.esmtp:
                return reply(555, "5.5.4", "parameters need EHLO")
            k = p.find(b"=")
            key = (p if k < 0 else p[:k]).upper()
            val = b"" if k < 0 else p[k + 1 :]
            if key == b"SIZE":
                if not val or len(val) > _MAX_SIZE_DIGITS or not val.isdigit():
                    return reply(501, "5.5.4", "bad SIZE value")
                size = int(val)
            elif key == b"BODY":
                if val.upper() not in (b"7BIT", b"8BITMIME"):
                    return reply(501, "5.5.4", "BODY is 7BIT or 8BITMIME")
            elif key == b"AUTH":
                pass  # RFC 4954 5: we deliver locally and never relay, so it changes nothing
            else:
                return reply(555, "5.5.4", "unsupported MAIL parameter")
        if size > self.svc.max_size:
            return reply(552, "5.3.4", "message size exceeds fixed maximum message size")
        if size:
            room = groupcommit.flash_room(self.svc.store)
            if 0 <= room < size:  # RFC 1870 6.1: a temporary shortage is 452 (the sender retries)
                return reply(452, "4.3.1", "insufficient system storage for a message of that size")
        self.sender = sender
        self.size = size
        self.passed = True
        return reply(250, "2.1.0", "sender ok")

    def cmd_rcpt(self, arg):
        if self.sender is None:
            return reply(503, "5.5.1", "MAIL first")
        if not arg[:3].upper() == b"TO:":
            return self._error(reply(501, "5.5.4", "syntax: RCPT TO:<address>"))
        parsed = _mail_args(arg[3:])
        if parsed is None:
            return self._error(reply(501, "5.5.4", "syntax: RCPT TO:<address>"))
        path, params = parsed
        if params:
            return reply(555, "5.5.4", "unsupported RCPT parameter")
        addr = _parse_path(path, False)
        if addr is not None:
            addr = addr.lower()
        if addr is None:
            # "<postmaster>" without a domain (RFC 5321 4.5.1) goes to the first domain's postmaster
            if path.lower() == b"<postmaster>" and self.svc.domains:
                addr = "postmaster@" + self.svc.domains[0]
            else:
                return self._error(reply(501, "5.1.3", "bad recipient address syntax"))
        if self.rcpts >= self.svc.max_recipients:
            return reply(452, "4.5.3", "too many recipients")
        box = self.svc.resolve(addr)
        if box is None:
            if self.svc.is_local_domain(addr[addr.rfind("@") + 1 :]):
                return reply(550, "5.1.1", "no such mailbox here")
            return reply(550, "5.7.1", "relaying denied: this server delivers only to its own domains")
        if box not in self.boxes:
            if len(self.boxes) >= self.svc.max_mailboxes:
                return reply(452, "4.5.3", "too many mailboxes for one message, send the rest later")
            if self.size:
                room = groupcommit.room(self.svc.store, box)
                if 0 <= room < self.size:
                    return reply(452, "4.3.1", "insufficient storage for a message of that size")
            self.boxes.append(box)
        self.rcpts += 1
        if self.first_rcpt is None:
            self.first_rcpt = addr
        return reply(250, "2.1.5", "recipient ok")

    def cmd_data(self, arg):
        if arg.strip():
            return self._error(reply(501, "5.5.4", "DATA takes no argument"))
        if self.sender is None:
            return reply(503, "5.5.1", "MAIL first")
        if not self.rcpts:
            return reply(554, "5.5.1", "no valid recipients")
        try:
            self._ds = groupcommit.begin_group(self.svc.store, self.boxes)
            trace = self._trace()
            for d in self._ds:
                d.write(trace)
        except store_mod.StoreError as e:
            self._abort()
            self._reset()
            return self._store_reply(e)
        if self._out is None:
            self._out = bytearray(self.svc.block_size)
            self._omv = memoryview(self._out)
            self._u = DotUnstuffer(True)
        self._u.reset()
        self._fill = 0
        self._got = 0
        self.in_data = True
        return reply(354, None, "end data with <CR><LF>.<CR><LF>")

    def _trace(self):
        """RFC 5321 4.4 trace fields for the top of the stored message."""
        with_ = "ESMTP" if self.esmtp else "SMTP"
        if self.esmtp and self.tls_active:
            with_ += "S"
        if self.esmtp and self.login is not None:
            with_ += "A"  # RFC 3848
        info = []
        if self.tls_active:
            info.append("using TLS")
        if self.login is not None:
            info.append("authenticated user " + _printable(self.login.encode()))
        rid = "%s%d" % (_hex(urandom(4)), self.stored)
        return ("Return-Path: <%s>\r\nReceived: from %s ([%s])\r\n\tby %s (pocketpost) with %s%s id %s%s;\r\n\t%s\r\n" % (
            self.sender, self.helo, _printable(self.peer.encode()), self.svc.hostname, with_,
            (" (" + ", ".join(info) + ")") if info else "", rid,
            ("\r\n\tfor <%s>" % self.first_rcpt) if self.rcpts == 1 else "", _date())).encode()

    def cmd_rset(self, arg):
        self._abort()
        self._reset()
        return _OK

    def cmd_noop(self, arg):
        return _OK

    def cmd_vrfy(self, arg):
        # RFC 5321 3.5.3: 252 when we will not confirm (no user enumeration).
        return reply(252, "2.5.0", "cannot VRFY user, but will accept message and attempt delivery")

    def cmd_help(self, arg):
        return reply(214, "2.0.0", "see RFC 5321")

    def cmd_quit(self, arg):
        self._abort()
        self._reset()
        self.closing = True
        return reply(221, "2.0.0", "%s closing" % self.svc.hostname)

    # -- DATA ------------------------------------------------------------------------------
    def data_in(self, src, start, end):
        """Message text src[start:end] (any chunking) -> bytes consumed. When the terminating
        CRLF.CRLF has been consumed, in_data turns False and `reply` holds the final reply."""
        u = self._u
        out = self._out
        cap = len(out)
        pos = start
        while pos < end and not u.done:
            fill = self._fill
            n = u.unstuff_into(src, pos, end, out, fill)  # from out[fill] on: no slice per chunk
            pos += u.consumed
            self._got += n
            if self._fail is not None:
                continue  # being refused: read to the end, keep nothing
            if self._got > self.svc.max_size:
                self._refuse(reply(552, "5.3.4", "message size exceeds fixed maximum message size"))
                continue
            self._fill = fill + n
            if self._fill == cap:
                self._write(out)
        if u.done:
            self._finish()
        return pos - start

    def _refuse(self, r):
        self._fail = r
        self._abort()
        self._fill = 0

    def _write(self, piece):
        self._fill = 0
        # The strict un-stuffer has checked the line ends (a bare CR or LF refuses the whole
        # message at its end, so these copies are then thrown away) and knows whether any line
        # started with ".": each recipient's Delivery skips its own scans of the same bytes.
        crlf = not self._u.bad
        dots = self._u.dots
        try:
            for d in self._ds:
                d.write(piece, crlf, dots)
        except store_mod.StoreError as e:
            self._refuse(self._store_reply(e))

    def _store_reply(self, e):
        if isinstance(e, store_mod.QuotaExceeded):
            return reply(552, "5.2.2", "mailbox full")
        if isinstance(e, store_mod.StoreFull):
            return reply(452, "4.3.1", "insufficient system storage, try later")
        return reply(451, "4.3.0", "local storage error, try later")

    def _finish(self):
        self.in_data = False
        if self._fail is None and self._u.bad:
            # RFC 5321 2.3.8: CR and LF only as CRLF. Refused, not repaired: see the module doc.
            self._refuse(reply(554, "5.6.0", "bare CR or LF in message text (RFC 5321 2.3.8)"))
        if self._fail is None and self._fill:
            self._write(self._omv[: self._fill])
        r = self._fail
        if r is None:
            ds = self._ds
            self._ds = None
            try:
                uids = groupcommit.commit_group(self.svc.store, ds)
            except store_mod.StoreError as e:
                log.warning("smtp %s commit failed, nothing stored: %r", self.peer, e)
                r = self._store_reply(e)
            else:
                self.stored += 1
                log.info("smtp %s stored %d octets from <%s> for %d recipient(s) in %s as %s", self.peer, self._got,
                         self.sender, self.rcpts, ",".join(self.boxes), ",".join(uids))
                r = reply(250, "2.0.0", "stored as %s" % uids[0])
        else:
            log.info("smtp %s refused message from <%s>: %s", self.peer, self.sender, r.decode().strip())
        self._abort()
        self._reset()
        self.reply = r


def _hex(b):
    return binascii.hexlify(b).decode()


_OK = reply(250, "2.0.0", "OK")

_TABLE = {
    b"EHLO": Session.cmd_ehlo,
    b"HELO": Session.cmd_helo,
    b"STARTTLS": Session.cmd_starttls,
    b"AUTH": Session.cmd_auth,
    b"MAIL": Session.cmd_mail,
    b"RCPT": Session.cmd_rcpt,
    b"DATA": Session.cmd_data,
    b"RSET": Session.cmd_rset,
    b"NOOP": Session.cmd_noop,
    b"VRFY": Session.cmd_vrfy,
    b"HELP": Session.cmd_help,
    b"QUIT": Session.cmd_quit,
}


def pump(session, lines):
    """Run what a wire.LineReader holds through the session (commands, and message text while
    in_data) -> the replies to send, in order (RFC 2920: a pipelined batch is answered as one
    write). Stops early after a reply that asks the shell to act: delay (sleep before sending
    the batch), starttls or closing (after sending it), and when a command answered None
    (session.checking: the shell calls session.resume() until it answers, and appends that
    reply). Bytes it leaves are for the next call."""
    out = []
    while True:
        if session.in_data:
            s = lines.start  # the reader's public buf[start:end]: no tuple per chunk
            e = lines.end
            if s == e:
                break
            lines.consume(session.data_in(lines.buf, s, e))
            if not session.in_data:
                out.append(session.reply)
                session.reply = None
            continue
        line = lines.next_line()
        if line is None:
            break
        r = session.handle_bad(line) if isinstance(line, int) else session.handle(line)
        if r is None:  # an AUTH's hash is under way: the shell resumes it, then pumps again
            break
        out.append(r)
        if session.delay or session.starttls or session.closing or len(out) >= MAX_BATCH:
            break
    return out
