"""The POP3 client's STLS upgrade (clientauth.connect, tls "stls"; RFC 2595). Cold code: loaded
for the upgrade of an STLS account only and, on MicroPython, dropped after it."""

from pocketpost import transport
from pocketpost.client import ClientError
from pocketpost.pop3 import ProtocolError


class TlsRequired(ClientError):
    """TLS is required (tls "stls") but the server does not offer STLS."""


async def stls(c):
    """STLS (RFC 2595) on Pop3Client c after its first CAPA: TLS required, so a server that does not
    offer it is refused; CAPA is asked again over TLS."""
    if c.caps is None or "STLS" not in c.caps:
        raise TlsRequired("%s: TLS required but the server does not offer STLS: use tls \"implicit\" "
                          "and the POP3S port, or another server" % c.where)
    await c.cmd("STLS")
    try:
        c.s.after_stls()
    except ProtocolError as e:
        raise ProtocolError("%s: %s" % (c.where, e.msg))
    try:
        await c._conn.start_tls(c.ctx, c.host, False, c._left(None))
    except transport.Timeout:
        raise c._timeout(None, "the STLS handshake")
    except (OSError, ValueError) as e:
        raise c._lost("STLS: TLS handshake failed", e)
    c.secure = True
    from pocketpost.clientauth import capa  # (loaded: the connect runs in it)

    await capa(c)  # RFC 2595 section 4: discard what we knew, ask again
