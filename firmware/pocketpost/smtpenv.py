"""The SMTP session's envelope (RFC 5321 EHLO/HELO, MAIL, RCPT, DATA's start, STARTTLS 3207, AUTH
4954's checks): functions of an smtp.Session. Session.handle hands every command line to handle()
here, which dispatches it from COMMANDS (each function is named after its command; the other
names here are built-in ones or the POP3 server's, see smtp.py's module doc).

Loaded while some SMTP session is in its command phase and dropped when every session is in
DATA or gone (smtp.env_holds; compat.release_cold): a message being received
keeps none of this code in the heap (docs/FIGURES.md "Server heap"). Nothing here makes an object
that outlives the call, so no two copies of it can ever meet.
"""

import binascii
import time

from pocketpost import log
from pocketpost import storecore  # valid_name: store.py (Delivery) loads at DATA
from pocketpost.compat import const, urandom
from pocketpost.smtp import SUBMISSION, reply
from pocketpost.wire import OVERLONG

# RFC 5321 4.5.3.1.3: a reverse-path or forward-path is at most 256 octets.
_MAX_PATH = const(256)
# RFC 5321 4.5.3.1.2: a domain is at most 255 octets (the EHLO argument we keep for Received).
_MAX_DOMAIN = const(255)
# Characters of the HELO name and of a login name copied into a Received header or a log line.
_MAX_TRACE_NAME = const(64)

# SIZE= values of more digits than this are over any limit (10 GB): refused as too big (552)
# before int() (RFC 1870: a decimal number; an integer of a line's digits would be heap).
_MAX_SIZE_DIGITS = const(10)
# About the most the trace fields (headers(): 256-octet paths, 64-octet names) add to SIZE's octets.
_TRACE_ROOM = const(1024)

# A refused MAIL / RCPT / DATA is logged with this much of its argument (a path is at most 256),
# up to this many a session.
_LOG_ARG = const(80)
_LOG_REFUSED = const(20)

# Syntax errors and unknown commands tolerated per session, as Postfix's smtpd_hard_error_limit:
# a peer speaking another protocol (or garbage) is let go instead of answered forever.
_MAX_BAD_COMMANDS = const(20)

# data's answer when the envelope is complete: smtp.py's _GO_DATA (a private copy).
_GO_DATA = const(354)
# Refusals: smtptext.text's numbers (smtp.reply; private copies, host_tests/test_smtp_texts.py).
_T_ERRORS = const(0)
_T_AUTH_LINE = const(2)
_T_LONG = const(3)
_T_OCTET = const(4)
_T_CLOSING = const(5)
_T_UNKNOWN = const(6)
_T_HELO_ARG = const(7)
_T_TLS_ARG = const(8)
_T_TLS_ON = const(9)
_T_NO_TLS = const(10)
_T_NO_AUTH = const(11)
_T_EHLO_FIRST = const(12)
_T_AUTHED = const(13)
_T_AUTH_IN_MAIL = const(14)
_T_HELO_FIRST = const(15)
_T_NESTED = const(16)
_T_AUTH_FIRST = const(17)
_T_MAIL_SYNTAX = const(18)
_T_SENDER = const(19)
_T_PARAMS_EHLO = const(20)
_T_SIZE = const(21)
_T_BODY = const(22)
_T_MAIL_PARAM = const(23)
_T_TOO_BIG = const(24)
_T_NO_ROOM = const(25)
_T_MAIL_FIRST = const(26)
_T_RCPT_SYNTAX = const(27)
_T_RCPT_PARAM = const(28)
_T_RCPT_ADDR = const(29)
_T_RCPTS = const(30)
_T_BAD_BOX = const(31)
_T_NO_BOX = const(32)
_T_RELAY = const(33)
_T_BOXES = const(34)
_T_BOX_ROOM = const(35)
_T_DATA_ARG = const(36)
_T_NO_RCPT = const(37)


def text(b, n=_MAX_TRACE_NAME):
    """Peer-given bytes made safe for a header or a log line: printable ASCII, no parentheses.
    (The command phase's and AUTH's only: here, not in smtp.py, so that DATA holds none of it.)"""
    out = bytearray()
    for c in bytes(b[:n]):
        out.append(c if 33 <= c <= 126 and c not in (40, 41, 92) else 63)  # "?"
    return out.decode()


def room(store, name=None):
    """Bytes a new message may take in mailbox `name` now (quota and free flash), -1 if unknown;
    for the SIZE checks (RFC 1870). Without a name: in any mailbox (the free flash, the reserve
    and two blocks kept, as Store.begin keeps them), for the SIZE check at MAIL FROM. (Here, not
    in groupcommit.py: the command phase then holds none of the group commit's code.)"""
    if name is None:
        free, bsize = store._free(store.root)
        if free < 0:
            return -1
        return max(0, free - store.reserve - 2 * bsize)
    store.usage(name)  # loads the mailbox, creating it if missing (as before)
    return store.room(name)[0]  # the room Store.begin keeps for a deletion commit


def parse(a):
    """A path without its angle brackets (args), optionally with an RFC 5321 source route ->
    "user@domain" as sent (a local part is case-sensitive: matching lower-cases it, the
    Return-Path keeps it; a quoted local part stays quoted), "" for the null path (only MAIL
    accepts it), or None for bad syntax. The local part is a dot-string's printable ASCII or
    an RFC 5321 4.1.2 Quoted-string: '"' then printable ASCII or space ('\\' quotes the next
    one of those), '"', and nothing else before the "@"."""
    if len(a) > _MAX_PATH:
        return None
    if a.startswith(b"@"):  # "<@relay,@relay:user@domain>": the route is ignored (RFC 5321 C)
        k = a.find(b":")
        if k < 0:
            return None
        a = a[k + 1 :]
    if not a:
        return ""
    i = 0  # where the part checked below starts: past a quoted local part
    if a[0] == 34:  # '"'
        i = 1
        n = len(a)
        while i < n and a[i] != 34:
            if a[i] == 92:  # "\\": a quoted-pair
                i += 1
            if i >= n or a[i] < 32 or a[i] > 126:
                return None
            i += 1
        i += 1  # past the closing '"' (none: a[i] is past the end, not "@")
        if a[i : i + 1] != b"@":
            return None
    for c in a[i:]:
        if c <= 32 or c >= 127 or c in (60, 62):
            return None
    at = a.find(b"@", i)
    if at <= 0 or at == len(a) - 1 or a.find(b"@", at + 1) >= 0:  # exactly one "@" outside quotes
        return None
    return a.decode()


def args(arg):
    """The text after "MAIL FROM:" / "RCPT TO:" -> (the path without its angle brackets, [param
    bytes]) or None. As Postfix with strict_rfc821_envelopes = no: a space may follow the colon,
    and a path without angle brackets runs to the first space (the parameters follow it). A
    ">" in a quoted local part does not end a bracketed path."""
    arg = arg.strip()
    if arg[:1] != b"<":
        k = arg.find(b" ")
        if k < 0:
            k = len(arg)
        if not k:
            return None
        return arg[:k], [p for p in arg[k:].split(b" ") if p]
    q = False  # inside a quoted local part
    k = 1
    n = len(arg)
    while k < n:
        c = arg[k]
        if c == 62 and not q:  # ">"
            break
        if c == 34:  # '"'
            q = not q
        elif c == 92 and q:  # "\\" quotes the next octet
            k += 1
        k += 1
    if k >= n:
        return None
    return arg[1:k], [p for p in arg[k + 1 :].split(b" ") if p]


def target(svc, name):
    """An alias's or catch-all's target (a user or a mailbox) -> its mailbox, or None."""
    u = svc.users.get(name)
    if u is not None:
        return u["mailbox"]
    return name if storecore.valid_name(name) else None


def mailbox(svc, path):
    """A lower-cased "local@domain" -> the mailbox it delivers to, or None. Looks up, in
    order: the full address in aliases, the local part in aliases, a user of that name; then
    the same without a "+tag" (subaddressing); then the domain's catch-all."""
    at = path.rfind("@")
    local = path[:at]
    domain = path[at + 1 :]
    if domain not in svc.domains:
        return None
    sep = svc.subaddress
    for lp in (local, local.split(sep)[0] if sep and sep in local else None):
        if not lp:
            continue
        t = svc.aliases.get(lp + "@" + domain) or svc.aliases.get(lp)
        if t is not None:
            return target(svc, t)
        if lp in svc.users:
            return svc.users[lp]["mailbox"]
    t = svc.catch_all.get(domain)
    return target(svc, t) if t else None


def error(s, r):
    """A syntax error or unknown command: r, or 421 once there were too many (smtpauth's too)."""
    s.bad += 1
    if s.bad >= _MAX_BAD_COMMANDS:
        s.closing = True
        return reply(_T_ERRORS)
    return r


def _plain(s):
    """PLAIN and LOGIN (the password crosses) are offered: with TLS, or where the policy allows
    it (smtpauth's check too)."""
    lg = s.svc.logins
    if not s.auth():
        return False
    p = lg.policy  # "never", "local" or "always" (serverconf; a tuple's strings are not interned names)
    return s.tls_active or p not in ("never", "local") or (p == "local" and lg.trusted(s.peer))


def handle(s, line):
    """Session.handle's command phase: a command line (bytes), or the reader's OVERLONG /
    BAD_LINE, dispatched from COMMANDS -> the reply (None while an AUTH's hash runs), or
    _GO_DATA once DATA's checks passed."""
    if isinstance(line, int):  # the reader's OVERLONG or BAD_LINE
        if s.step is not None:
            s.step = None
            s._scram = None
            return reply(_T_AUTH_LINE)
        if line == OVERLONG:
            return error(s, reply(_T_LONG))
        return error(s, reply(_T_OCTET))
    if s.closing:
        return reply(_T_CLOSING)
    if s.step is not None:
        from pocketpost import smtpauth

        return smtpauth.step(s, bytes(line))
    sp = line.find(b" ")
    kw = bytes(line if sp < 0 else line[:sp]).upper()
    arg = b"" if sp < 0 else bytes(line[sp + 1 :])
    fn = COMMANDS.get(kw)
    if fn is None:
        return error(s, reply(_T_UNKNOWN))
    if isinstance(fn, bytes):
        return fn  # a fixed reply
    try:
        r = fn(s, arg)  # type: ignore[operator]  # a function: COMMANDS' values are of two kinds
        if isinstance(r, bytes) and r[0] > 51 and kw[0] in b"MRDA" and s.refused < _LOG_REFUSED:
            # A 4xx / 5xx to MAIL, RCPT, DATA or AUTH (RSET is smtp.Session.handle's) in the log, as
            # Postfix's "NOQUEUE: reject" lines: a device's mail refused (unknown recipient, no
            # HELO, too big) was a connect and a disconnect with nothing between them, and nothing
            # told the admin why it never arrived. At most _LOG_REFUSED a session: a harvester's
            # thousand RCPTs is not a thousand lines. AUTH is logged with its mechanism only (its
            # initial response is the password): a printer that sends AUTH LOGIN on port 25
            # (502) or without TLS (538) was a connect and a disconnect too. (A failed password
            # is smtpauth's own line.)
            s.refused += 1
            try:
                log.info("smtp %s %s refused: %s%s", s.peer, " ".join([kw.decode()] + [text(w) for w in arg[:_LOG_ARG].split()[: 1 if kw[0] == 65 else _LOG_ARG]]),
                         r.decode().strip(), " (no more refusals of this session logged)" if s.refused == _LOG_REFUSED else "")
            except MemoryError:  # no heap for the line: the reply still goes
                pass
        return r
    except Exception as e:  # store trouble: one reply, never a dead session
        return s.repair(kw, e)


def ehlo(s, arg):
    return helo(s, arg, True)


def helo(s, arg, esmtp=False):
    arg = arg.strip()
    if not arg or len(arg) > _MAX_DOMAIN:
        return error(s, reply(_T_HELO_ARG))
    s.abort()
    s.reset()
    s.helo = text(arg)
    s.esmtp = esmtp
    if not esmtp:
        return reply(250, s.svc.hostname)
    # The fixed lines in one literal: a keyword of its own ("8BITMIME") would be an interned name;
    # each later line is a literal of more than 10 characters (not one either). The last line's
    # "250-" becomes "250 ".
    out = "250-%s greets %s\r\n250-SIZE %d\r\n250-8BITMIME\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n" % (
        s.svc.hostname, s.helo, s.svc.cfg["max_message_size"])
    if s.svc.tls_available and not s.tls_active:
        out += "250-STARTTLS\r\n"
    if s.auth() and s.login is None:
        out += "250-AUTH PLAIN LOGIN SCRAM-SHA-256\r\n" if _plain(s) else "250-AUTH SCRAM-SHA-256\r\n"
    k = out.rfind("\n250-") + 4
    return (out[:k] + " " + out[k + 1 :]).encode()


def starttls(s, arg):
    if arg.strip():
        return error(s, reply(_T_TLS_ARG))
    if s.tls_active:
        return reply(_T_TLS_ON)
    if not s.svc.tls_available:
        return reply(_T_NO_TLS)
    s.abort()
    s.reset()
    s.helo = None  # RFC 3207 4.2: the client starts again with EHLO
    s.starttls = True
    return b"220 2.0.0 ready to start TLS\r\n"


def auth(s, arg):
    if not s.auth():
        return reply(_T_NO_AUTH)
    if s.helo is None:
        return reply(_T_EHLO_FIRST)
    if s.login is not None:
        return reply(_T_AUTHED)
    if s.sender is not None:
        return reply(_T_AUTH_IN_MAIL)
    from pocketpost import smtpauth

    return smtpauth.start(s, arg)


def mail(s, arg):
    if s.helo is None:
        return reply(_T_HELO_FIRST)
    if s.sender is not None:
        return reply(_T_NESTED)
    if s.mode == SUBMISSION and s.login is None:
        return reply(_T_AUTH_FIRST)
    # (One literal per reply: each copy of it would be an object of its own in the heap.)
    parsed = args(arg[5:]) if arg[:5].upper() == b"FROM:" else None
    if parsed is None:
        return error(s, reply(_T_MAIL_SYNTAX))
    path, params = parsed
    sender = parse(path)
    if sender is None:
        return error(s, reply(_T_SENDER))
    size = 0
    limit = s.svc.cfg["max_message_size"]
    for p in params:
        if not s.esmtp:
            return reply(_T_PARAMS_EHLO)
        k = p.find(b"=")
        key = (p if k < 0 else p[:k]).upper()
        val = b"" if k < 0 else p[k + 1 :]
        if key == b"SIZE":
            if not val or not val.isdigit():
                return reply(_T_SIZE)
            if len(val) > _MAX_SIZE_DIGITS:  # RFC 1870 6.1: a size over the limit is 552, however written
                return reply(_T_TOO_BIG, limit)
            size = int(val)
        elif key == b"BODY":
            if val.upper() not in (b"7BIT", b"8BITMIME"):
                return reply(_T_BODY)
        elif key == b"AUTH":
            pass  # RFC 4954 5: we deliver locally and never relay, so it changes nothing
        else:
            return reply(_T_MAIL_PARAM)
    if size > limit:
        return reply(_T_TOO_BIG, limit)
    if size:
        n = room(s.svc.store)
        if 0 <= n < size:  # RFC 1870 6.1: a temporary shortage is 452 (the sender retries)
            return reply(_T_NO_ROOM)
    s.sender = sender
    s.size = size
    s.passed = True
    return b"250 2.1.0 sender ok\r\n"


def rcpt(s, arg):
    if s.sender is None:
        return reply(_T_MAIL_FIRST)
    parsed = args(arg[3:]) if arg[:3].upper() == b"TO:" else None
    if parsed is None:
        return error(s, reply(_T_RCPT_SYNTAX))
    path, params = parsed
    if params:
        return reply(_T_RCPT_PARAM)
    addr = parse(path) or None  # the null path is no recipient
    if addr is not None:
        addr = addr.lower()
    if addr is None:
        # "<postmaster>" without a domain (RFC 5321 4.5.1) goes to the first domain's postmaster
        if path.lower() == b"postmaster" and s.svc.domains:
            addr = "postmaster@" + s.svc.domains[0]
        else:
            return error(s, reply(_T_RCPT_ADDR))
    cfg = s.svc.cfg
    if s.count >= cfg["max_recipients"]:
        return reply(_T_RCPTS)
    key = addr
    if ord(addr[0]) == 34:  # a quoted local part: the mailbox its unquoted form names
        a = addr.encode()
        at = a.rfind(b"@")
        u = bytearray()
        i = 1
        while i < at - 1:
            if a[i] == 92:  # a quoted-pair: the octet after the backslash
                i += 1
            u.append(a[i])
            i += 1
        # An "@" inside it would make a second address (Postfix resolves the inner one: a
        # relay); an empty one names nobody. (Not a syntax error: not counted as one.)
        if not u or b"@" in u:
            return reply(_T_BAD_BOX)
        key = (bytes(u) + a[at:]).decode()
    box = mailbox(s.svc, key)
    if box is None:
        if addr[addr.rfind("@") + 1 :] in s.svc.domains:
            return reply(_T_NO_BOX)
        return reply(_T_RELAY)
    if box not in s.mailboxes:
        if len(s.mailboxes) >= cfg["max_mailboxes"]:
            return reply(_T_BOXES)
        if s.size:
            # With the trace fields: a mailbox that fits the text but not them is deferred here
            # (452), not refused after the text (552 5.2.2: the sender would bounce it).
            n = room(s.svc.store, box)
            if 0 <= n < s.size + _TRACE_ROOM:
                return reply(_T_BOX_ROOM)
        s.mailboxes.append(box)
    s.count += 1
    if s.dest is None:
        s.dest = addr
    return b"250 2.1.5 recipient ok\r\n"


def data(s, arg):
    """The envelope's checks and the trace fields; the message itself begins in the session
    (smtpdata.begin), once this module has been handed back (_GO_DATA)."""
    if arg.strip():
        return error(s, reply(_T_DATA_ARG))
    if s.sender is None:
        return reply(_T_MAIL_FIRST)
    if not s.count:
        return reply(_T_NO_RCPT)
    s.reply = headers(s)  # to smtpdata.begin (Session.reply)
    return _GO_DATA


def stamp():
    """RFC 5322 date-time in UTC for the Received header."""
    t = time.gmtime()
    # The names cut from one literal each: a tuple of 7 or 12 short names is a heap object with
    # an interned name per item.
    d = t[6] * 3
    m = t[1] * 3 - 3
    return "%s, %02d %s %d %02d:%02d:%02d +0000" % (
        "MonTueWedThuFriSatSun"[d : d + 3], t[2], "JanFebMarAprMayJunJulAugSepOctNovDec"[m : m + 3],
        t[0], t[3], t[4], t[5])


def headers(s):
    """RFC 5321 4.4 trace fields for the top of the stored message."""
    # RFC 3848 with-protocol: SMTP, ESMTP, ESMTPS (TLS), ESMTPA (authenticated), ESMTPSA: cut from
    # one bytes literal, as each short word of its own ("S", "SMTP") would be an interned name.
    w = b"ESMTPSA"
    with_ = w[:5] if s.esmtp else w[1:5]
    if s.esmtp and s.tls_active:
        with_ += w[5:6]
    if s.esmtp and s.login is not None:
        with_ += w[6:]
    user = text(s.login.encode()) if s.login is not None else None
    if s.tls_active:
        comment = " (using TLS, authenticated user %s)" % user if user is not None else " (using TLS)"
    else:
        comment = " (authenticated user %s)" % user if user is not None else ""
    rid = binascii.hexlify(urandom(4)).decode() + str(s.stored)
    return ("Return-Path: <%s>\r\nReceived: from %s ([%s])\r\n\tby %s (pocketpost) with %s%s id %s%s;\r\n\t%s\r\n" % (
        s.sender, s.helo, text(s.peer.encode()), s.svc.hostname, with_.decode(),
        comment, rid,
        ("\r\n\tfor <%s>" % s.dest) if s.count == 1 else "", stamp())).encode()


# The commands: an envelope command's function or a fixed reply (RSET and QUIT: smtp.Session.handle's
# own). Bytes keys and long literals: no interned names.
COMMANDS = {
    b"EHLO": ehlo,
    b"HELO": helo,
    b"STARTTLS": starttls,
    b"AUTH": auth,
    b"MAIL": mail,
    b"RCPT": rcpt,
    b"DATA": data,
    b"NOOP": b"250 2.0.0 OK\r\n",
    # RFC 5321 3.5.3: 252 when we will not confirm (no user enumeration).
    b"VRFY": b"252 2.5.0 cannot VRFY user, but will accept message and attempt delivery\r\n",
    b"HELP": b"214 2.0.0 see RFC 5321\r\n",
}
