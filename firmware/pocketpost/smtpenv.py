"""The SMTP session's envelope (RFC 5321 EHLO/HELO, MAIL, RCPT, DATA's start, STARTTLS 3207, AUTH
4954's checks, VRFY, HELP): functions of an smtp.Session, dispatched by Session.handle.

Loaded while some SMTP session is in its command phase and dropped when every session is in
DATA or gone (smtp.env_holds; compat.release_cold): a message being received
keeps none of this code in the heap (docs/FIGURES.md "Server heap"). Nothing here makes an object
that outlives the call, so no two copies of it can ever meet.
"""

import binascii
import time

from pocketpost import groupcommit
from pocketpost import storecore as store_mod  # valid_name: store.py (Delivery) loads at DATA
from pocketpost.compat import const, urandom
from pocketpost.smtp import GO_DATA, SUBMISSION, _printable, reply

# RFC 5321 4.5.3.1.3: a reverse-path or forward-path is at most 256 octets.
_MAX_PATH = const(256)
# RFC 5321 4.5.3.1.2: a domain is at most 255 octets (the EHLO argument we keep for Received).
_MAX_DOMAIN = const(255)

# SIZE= values longer than this are refused before int() (RFC 1870: a decimal number).
_MAX_SIZE_DIGITS = const(10)


def _parse_path(b, allow_null):
    """b"<user@domain>" (optionally with an RFC 5321 source route) -> "user@domain" as sent (a
    local part is case-sensitive: matching lower-cases it, the Return-Path keeps it), "" for the
    null path, or None for bad syntax."""
    if len(b) < 2 or b[0] != 60 or b[-1] != 62:  # "<" ">"
        return None
    a = b[1:-1]
    if len(a) > _MAX_PATH:
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


def _mail_args(arg):
    """The text after "MAIL FROM:" / "RCPT TO:" -> (path bytes, [param bytes]) or None."""
    arg = arg.strip()
    if not arg.startswith(b"<"):
        return None
    k = arg.find(b">")
    if k < 0:
        return None
    params = [p for p in arg[k + 1 :].split(b" ") if p]
    return arg[: k + 1], params


def _date():
    """RFC 5322 date-time in UTC for the Received header."""
    t = time.gmtime()
    # The names cut from one literal each: a tuple of 7 or 12 short names is a heap object with
    # an interned name per item.
    d = t[6] * 3
    m = t[1] * 3 - 3
    return "%s, %02d %s %d %02d:%02d:%02d +0000" % (
        "MonTueWedThuFriSatSun"[d : d + 3], t[2], "JanFebMarAprMayJunJulAugSepOctNovDec"[m : m + 3],
        t[0], t[3], t[4], t[5])


def _target(svc, name):
    u = svc.users.get(name)
    if u is not None:
        return u["mailbox"]
    return name if store_mod.valid_name(name) else None


def _resolve(svc, addr):
    """A lower-cased "local@domain" -> the mailbox it delivers to, or None. Looks up, in
    order: the full address in aliases, the local part in aliases, a user of that name; then
    the same without a "+tag" (subaddressing); then the domain's catch-all."""
    at = addr.rfind("@")
    local = addr[:at]
    domain = addr[at + 1 :]
    if domain not in svc.domains:
        return None
    sep = svc.subaddress
    for lp in (local, local.split(sep)[0] if sep and sep in local else None):
        if not lp:
            continue
        t = svc.aliases.get(lp + "@" + domain) or svc.aliases.get(lp)
        if t is not None:
            return _target(svc, t)
        if lp in svc.users:
            return svc.users[lp]["mailbox"]
    t = svc.catch_all.get(domain)
    return _target(svc, t) if t else None


def cmd_ehlo(s, arg):
    return _hello(s, arg, True)


def cmd_helo(s, arg):
    return _hello(s, arg, False)


def _hello(s, arg, esmtp):
    arg = arg.strip()
    if not arg or len(arg) > _MAX_DOMAIN:
        return s._error(reply(501, "5.5.4 a domain or address literal is required"))
    s._abort()
    s._reset()
    s.helo = _printable(arg)
    s.esmtp = esmtp
    if not esmtp:
        return reply(250, s.svc.hostname)
    # The fixed lines in one literal: a keyword of its own ("8BITMIME") would be an interned name.
    head = "250-%s greets %s\r\n250-SIZE %d\r\n250-8BITMIME\r\n250-PIPELINING\r\n" % (
        s.svc.hostname, s.helo, s.svc.max_size)
    ext = ["ENHANCEDSTATUSCODES"]
    if s.svc.tls_available and not s.tls_active:
        ext.append("STARTTLS")
    if s._auth_offered() and s.login is None:
        ext.append("AUTH PLAIN LOGIN SCRAM-SHA-256" if s._plain_allowed() else "AUTH SCRAM-SHA-256")
    out = [head]
    for i in range(len(ext)):
        out.append("250%s%s\r\n" % (" " if i == len(ext) - 1 else "-", ext[i]))
    return "".join(out).encode()


def cmd_starttls(s, arg):
    if arg.strip():
        return s._error(reply(501, "5.5.4 STARTTLS takes no argument"))
    if s.tls_active:
        return reply(503, "5.5.1 TLS already active")
    if not s.svc.tls_available:
        return reply(454, "4.7.0 TLS not available")
    s._abort()
    s._reset()
    s.helo = None  # RFC 3207 4.2: the client starts again with EHLO
    s.starttls = True
    return reply(220, "2.0.0 ready to start TLS")


def cmd_auth(s, arg):
    if not s._auth_offered():
        return reply(502, "5.5.1 AUTH is offered on the submission ports only")
    if s.helo is None:
        return reply(503, "5.5.1 EHLO first")
    if s.login is not None:
        return reply(503, "5.5.1 already authenticated")
    if s.sender is not None:
        return reply(503, "5.5.1 AUTH not allowed during a mail transaction")
    from pocketpost import smtpauth

    return smtpauth.start(s, arg)


def cmd_mail(s, arg):
    if s.helo is None:
        return reply(503, "5.5.1 EHLO or HELO first")
    if s.sender is not None:
        return reply(503, "5.5.1 nested MAIL command")
    if s.mode == SUBMISSION and s.login is None:
        return reply(530, "5.7.0 authentication required")
    # (One literal per reply: each copy of it would be an object of its own in the heap.)
    parsed = _mail_args(arg[5:]) if arg[:5].upper() == b"FROM:" else None
    if parsed is None:
        return s._error(reply(501, "5.5.4 syntax: MAIL FROM:<address>"))
    path, params = parsed
    sender = _parse_path(path, True)
    if sender is None:
        return s._error(reply(501, "5.1.7 bad sender address syntax"))
    size = 0
    for p in params:
        if not s.esmtp:
            return reply(555, "5.5.4 parameters need EHLO")
        k = p.find(b"=")
        key = (p if k < 0 else p[:k]).upper()
        val = b"" if k < 0 else p[k + 1 :]
        if key == b"SIZE":
            if not val or len(val) > _MAX_SIZE_DIGITS or not val.isdigit():
                return reply(501, "5.5.4 bad SIZE value")
            size = int(val)
        elif key == b"BODY":
            if val.upper() not in (b"7BIT", b"8BITMIME"):
                return reply(501, "5.5.4 BODY is 7BIT or 8BITMIME")
        elif key == b"AUTH":
            pass  # RFC 4954 5: we deliver locally and never relay, so it changes nothing
        else:
            return reply(555, "5.5.4 unsupported MAIL parameter")
    if size > s.svc.max_size:
        return reply(552, "5.3.4 message size exceeds fixed maximum message size")
    if size:
        room = groupcommit.flash_room(s.svc.store)
        if 0 <= room < size:  # RFC 1870 6.1: a temporary shortage is 452 (the sender retries)
            return reply(452, "4.3.1 insufficient system storage for a message of that size")
    s.sender = sender
    s.size = size
    s.passed = True
    return reply(250, "2.1.0 sender ok")


def cmd_rcpt(s, arg):
    if s.sender is None:
        return reply(503, "5.5.1 MAIL first")
    parsed = _mail_args(arg[3:]) if arg[:3].upper() == b"TO:" else None
    if parsed is None:
        return s._error(reply(501, "5.5.4 syntax: RCPT TO:<address>"))
    path, params = parsed
    if params:
        return reply(555, "5.5.4 unsupported RCPT parameter")
    addr = _parse_path(path, False)
    if addr is not None:
        addr = addr.lower()
    if addr is None:
        # "<postmaster>" without a domain (RFC 5321 4.5.1) goes to the first domain's postmaster
        if path.lower() == b"<postmaster>" and s.svc.domains:
            addr = "postmaster@" + s.svc.domains[0]
        else:
            return s._error(reply(501, "5.1.3 bad recipient address syntax"))
    if s.rcpts >= s.svc.max_recipients:
        return reply(452, "4.5.3 too many recipients")
    box = _resolve(s.svc, addr)
    if box is None:
        if addr[addr.rfind("@") + 1 :] in s.svc.domains:
            return reply(550, "5.1.1 no such mailbox here")
        return reply(550, "5.7.1 relaying denied: this server delivers only to its own domains")
    if box not in s.boxes:
        if len(s.boxes) >= s.svc.max_mailboxes:
            return reply(452, "4.5.3 too many mailboxes for one message, send the rest later")
        if s.size:
            room = groupcommit.room(s.svc.store, box)
            if 0 <= room < s.size:
                return reply(452, "4.3.1 insufficient storage for a message of that size")
        s.boxes.append(box)
    s.rcpts += 1
    if s.first_rcpt is None:
        s.first_rcpt = addr
    return reply(250, "2.1.5 recipient ok")


def cmd_data(s, arg):
    """The envelope's checks and the trace fields; the message itself begins in the session
    (smtpdata.begin), once this module has been handed back (GO_DATA)."""
    if arg.strip():
        return s._error(reply(501, "5.5.4 DATA takes no argument"))
    if s.sender is None:
        return reply(503, "5.5.1 MAIL first")
    if not s.rcpts:
        return reply(554, "5.5.1 no valid recipients")
    s._hdr = _trace(s)
    return GO_DATA


def _trace(s):
    """RFC 5321 4.4 trace fields for the top of the stored message."""
    # RFC 3848 with-protocol: SMTP, ESMTP, ESMTPS (TLS), ESMTPA (authenticated), ESMTPSA: cut from
    # one literal, as each short word of its own ("S", "SMTP") would be an interned name.
    w = "ESMTPSA"
    with_ = w[:5] if s.esmtp else w[1:5]
    if s.esmtp and s.tls_active:
        with_ += w[5]
    if s.esmtp and s.login is not None:
        with_ += w[6]
    user = _printable(s.login.encode()) if s.login is not None else None
    if s.tls_active:
        comment = " (using TLS, authenticated user %s)" % user if user is not None else " (using TLS)"
    else:
        comment = " (authenticated user %s)" % user if user is not None else ""
    rid = binascii.hexlify(urandom(4)).decode() + str(s.stored)
    return ("Return-Path: <%s>\r\nReceived: from %s ([%s])\r\n\tby %s (pocketpost) with %s%s id %s%s;\r\n\t%s\r\n" % (
        s.sender, s.helo, _printable(s.peer.encode()), s.svc.hostname, with_,
        comment, rid,
        ("\r\n\tfor <%s>" % s.first_rcpt) if s.rcpts == 1 else "", _date())).encode()


def cmd_vrfy(s, arg):
    # RFC 5321 3.5.3: 252 when we will not confirm (no user enumeration).
    return reply(252, "2.5.0 cannot VRFY user, but will accept message and attempt delivery")


def cmd_help(s, arg):
    return reply(214, "2.0.0 see RFC 5321")
