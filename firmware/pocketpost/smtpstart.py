"""The SMTP receiver's start-up (smtpserver.SmtpServer's cold part): its settings, TLS context and
login service, the size cap from the flash's size, and its listeners.

Loaded by smtpserver.start (and by an SmtpServer made alone) and dropped after it (compat.forget),
as serverstart.py is by the POP3 server: a listening receiver keeps none of this code in its heap
(the listening receiver's live heap 1.1 KB less; bench_heap c median 179 -> 178 KiB).
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
