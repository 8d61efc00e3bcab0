"""The SMTP receiver's start-up (smtpserver.SmtpServer's cold part): its settings, TLS context and
login service, the size cap from the flash's size, and its listeners; and each session's start:
the shared smtp.Service (built by the first session), the smtp.Session and its greeting.

Loaded by smtpserver.start (and by an SmtpServer made alone) and dropped after it (compat.forget),
as serverstart.py is by the POP3 server: a listening receiver keeps none of this code in its heap
(the listening receiver's live heap 1.1 KB less; bench_heap c median 179 -> 178 KiB). Loaded again
for a moment at each connection (smtpserver.SmtpServer._handle), so that neither the command phase
nor DATA holds the constructors' code.
Nothing here makes a function that outlives the call: the listeners' callbacks are smtpserver's
(SmtpServer.accept), since a function keeps its module's globals, so all of this, alive.
"""

from pocketpost import log
from pocketpost import listener

# Listener modes (smtp.MX, smtp.SUBMISSION; here so that listening needs no smtp.py).
MX = "mx"
SUBMISSION = "submission"


def build(cfg, store, logins):
    """SmtpServer's settings -> (its smtp section, the TLS handshake timeout, the host, the TLS
    context, the smtp.Service's arguments, its listener.Slots). The context is the POP3 server's
    when it runs (same cert and key: one context, ~3 KiB less), and so is the login service (one
    failed-login throttle)."""
    sv = cfg["server"]
    sm = cfg["smtp"]
    ctx = getattr(logins, "tls_ctx", None)
    if ctx is None and sv["cert"] and sv["key"]:
        from pocketpost import tls  # start-up only: dropped after (heapmark.forget)

        ctx = tls.server_context(sv["cert"], sv["key"])
    if logins is None:
        from pocketpost import pop3server

        logins = pop3server.Service(sv, cfg["users"], store, tls_available=ctx is not None)
    return (sm, sv["tls_handshake_timeout"], sv["host"], ctx, (cfg["users"], store, logins, sv["hostname"]),
            listener.Slots(sm, "smtp"))


async def listen(srv, store):
    """The listeners up (none while smtp.domains is empty), after the size cap below."""
    if not srv.sm["domains"]:
        log.info("smtp: no domains configured, not listening")
        return
    # A message larger than the store's whole filesystem (less its reserve) can never be
    # stored: max_message_size is lowered to that (EHLO's SIZE, MAIL's SIZE= check and DATA's
    # limit read it), so such a message is refused for good (552 5.3.4: bounced at once)
    # instead of deferred (452 4.3.1: retried for days by a NAS or Postfix, never stored).
    # (make run's demo: 10 MiB offered on a 2 MiB image.)
    sm = srv.sm
    try:
        import os

        st = os.statvfs(store.root)
        cap = st[0] * st[2] - store.reserve
    except (OSError, AttributeError):  # (no statvfs: the limit as configured)
        cap = 0
    if 0 < cap < sm["max_message_size"]:
        log.warning("smtp: max_message_size %d > this flash's %d octets less the store's reserve: lowered to %d "
                    "(552 above it): set smtp.max_message_size to at most that",
                    sm["max_message_size"], st[0] * st[2], cap)
        sm["max_message_size"] = cap
    for port, name, mode, implicit in ((sm["port"], "smtp", MX, False), (sm["submission_port"], "submission", SUBMISSION, False),
                                       (sm["smtps_port"], "smtps", SUBMISSION, True)):
        if not port or (implicit and srv.ctx is None):
            continue
        try:
            srv._listeners.append(await listener.listen(srv.accept(mode, implicit), srv.host, port, srv.slots))
        except BaseException:  # the ports already listening let go too (serverstart.listen)
            srv.close()
            raise
        log.info("%s listening on %s:%d (TLS %s) for %s", name, srv.host, port, "on" if srv.ctx else "off",
                 ",".join(srv.sm["domains"]))


def service(sm, users, store, logins, tls_available=False, hostname="pocketpost"):
    """The smtp.Service the sessions share (sm: the config's "smtp" section)."""
    from pocketpost import smtp  # (held by the session being made: smtpserver.SmtpServer.hold)

    svc = smtp.Service()
    svc.cfg = sm
    svc.users = users
    svc.store = store
    svc.logins = logins
    svc.tls_available = tls_available
    svc.hostname = hostname
    svc.domains = [d.lower() for d in sm["domains"]]
    svc.aliases = {}
    for k in sm["aliases"]:
        svc.aliases[k.lower()] = sm["aliases"][k]
    svc.catch_all = {}
    for k in sm["catch_all"]:
        svc.catch_all[k.lower()] = sm["catch_all"][k]
    svc.subaddress = sm["subaddress"]
    # (max_message_size, max_recipients and max_mailboxes are read from cfg where used: a
    # key of more than 10 characters is not an interned name, an attribute would be.)
    svc.max_failures = sm["max_auth_failures"]
    svc.block_size = sm["block_size"]
    return svc


def session(svc, peer="?", mode=MX, tls_active=False):
    """A new smtp.Session of `svc` -> (the session, its 220 greeting's bytes)."""
    from pocketpost import smtp

    s = smtp.Session()
    s.svc = svc
    s.peer = peer
    s.mode = mode
    s.tls_active = tls_active
    # Set here rather than left to class defaults: a session that sends mail sets them all,
    # and with them its attribute table takes its 23 slots now, at connect, instead of
    # growing at MAIL with the envelope's code loaded (a 368 B block: where bench_heap c ran
    # out once DATA asked for less).
    s.helo = None  # EHLO/HELO argument; None before the greeting exchange
    s.esmtp = False
    s.passed = False  # MAIL accepted (port 25) or AUTH succeeded: the pre-auth deadline is over
    s.stored = 0  # its own now: counting a stored message needs no heap (smtpdata.finish, the 250 owed)
    s.reset()
    hello = smtp.reply(220, "%s ESMTP pocketpost" % svc.hostname)  # (before the holds: nothing to undo)
    s.loaded = True  # in the command phase: holds the envelope's code (smtp.env_holds)
    smtp.env_holds[0] += 1
    # Submission before AUTH holds the login code (smtpauth.py, auth.py, scram.py:
    # pop3server.Service.hold) until logged in or closed; port 25 never logs in. Last: a
    # session that fails before it holds nothing.
    if s.auth():
        s._held = True
        svc.logins.hold()
    return s, hello
