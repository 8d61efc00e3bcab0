"""The errors of a failed wait or connection in a POP3 client session, in words a user can act on
(Pop3Client._lost: a ConnectionLost; Pop3Client._timeout: a Pop3Timeout naming the deadline that
ran out). Cold code: client.py loads it only when a session fails that way and drops it after
(MicroPython), so its text is not held while messages download (issue 10: the fetch's smallest
heap is set there)."""

from pocketpost import compat
from pocketpost.client import ConnectionLost, Pop3Timeout


def lost(c, doing, e=None):
    """Pop3Client._lost."""
    if e is None:
        why = "the server closed the connection"
    else:
        from pocketpost import tls  # only on an error path: a plain-text fetch never loads it

        why = tls.describe_error(e, c.host, c.port, c.ca_path)
    return ConnectionLost("%s: %s: %s" % (c.where, doing, why))


def timeout(c, deadline, what):
    """Pop3Client._timeout."""
    now = compat.ticks_ms()
    sd = c.session_deadline
    if sd is not None and compat.ticks_diff(sd, now) <= 0:
        why = "the session's deadline passed"
    elif deadline is not None and compat.ticks_diff(deadline, now) <= 0:
        why = "its deadline passed (read_timeout %ss, min_rate %d B/s)" % (c.read_timeout, c.min_rate)
    else:
        why = "no data for %ss" % c.read_timeout
    if what == "the greeting" and not c.secure:  # a POP3S port waits for our TLS ClientHello
        why += "; if port %d is POP3S (implicit TLS, e.g. 995), set \"tls\": \"implicit\"" % c.port
    return Pop3Timeout("%s: waiting for %s: %s; the server is stalled or too slow: try again later, "
                       "or raise the account's timeouts" % (c.where, what, why))
