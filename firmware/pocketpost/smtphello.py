"""The SMTP session's opening (RFC 5321 EHLO/HELO, VRFY, HELP; RFC 3207 STARTTLS; RFC 4954 AUTH's
checks before smtpauth.py): functions of an smtp.Session, dispatched by Session.handle.

Once or twice per session: loaded for the call and dropped after it (smtp.HELLO_MODULES,
compat.forget), so no session keeps it in the heap while it sends mail. Nothing here makes an
object that outlives the call.
"""

from pocketpost.smtp import MAX_DOMAIN, _printable, reply


def cmd_ehlo(s, arg):
    return _hello(s, arg, True)


def cmd_helo(s, arg):
    return _hello(s, arg, False)


def _hello(s, arg, esmtp):
    arg = arg.strip()
    if not arg or len(arg) > MAX_DOMAIN:
        return s._error(reply(501, "5.5.4", "a domain or address literal is required"))
    s._abort()
    s._reset()
    s.helo = _printable(arg)
    s.esmtp = esmtp
    if not esmtp:
        return reply(250, None, s.svc.hostname)
    ext = ["%s greets %s" % (s.svc.hostname, s.helo), "SIZE %d" % s.svc.max_size, "8BITMIME",
           "PIPELINING", "ENHANCEDSTATUSCODES"]
    if s.svc.tls_available and not s.tls_active:
        ext.append("STARTTLS")
    if s._auth_offered() and s.login is None:
        ext.append("AUTH PLAIN LOGIN SCRAM-SHA-256" if s._plain_allowed() else "AUTH SCRAM-SHA-256")
    out = []
    for i in range(len(ext)):
        out.append("250%s%s\r\n" % (" " if i == len(ext) - 1 else "-", ext[i]))
    return "".join(out).encode()


def cmd_starttls(s, arg):
    if arg.strip():
        return s._error(reply(501, "5.5.4", "STARTTLS takes no argument"))
    if s.tls_active:
        return reply(503, "5.5.1", "TLS already active")
    if not s.svc.tls_available:
        return reply(454, "4.7.0", "TLS not available")
    s._abort()
    s._reset()
    s.helo = None  # RFC 3207 4.2: the client starts again with EHLO
    s.starttls = True
    return reply(220, "2.0.0", "ready to start TLS")


def cmd_auth(s, arg):
    if not s._auth_offered():
        return reply(502, "5.5.1", "AUTH is offered on the submission ports only")
    if s.helo is None:
        return reply(503, "5.5.1", "EHLO first")
    if s.login is not None:
        return reply(503, "5.5.1", "already authenticated")
    if s.sender is not None:
        return reply(503, "5.5.1", "AUTH not allowed during a mail transaction")
    from pocketpost import smtpauth

    return smtpauth.start(s, arg)


def cmd_vrfy(s, arg):
    # RFC 5321 3.5.3: 252 when we will not confirm (no user enumeration).
    return reply(252, "2.5.0", "cannot VRFY user, but will accept message and attempt delivery")


def cmd_help(s, arg):
    return reply(214, "2.0.0", "see RFC 5321")
