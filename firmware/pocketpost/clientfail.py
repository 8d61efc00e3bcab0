"""The errors of a failed wait or connection in a POP3 client session, in words a user can act on
(Pop3Client._lost: a ConnectionLost; Pop3Client._timeout: a Pop3Timeout naming the deadline that
ran out), and the texts of client.py's, clientget.py's and clientplan.py's other errors and of the
log lines at a session's end (text), and a refused login's hint (clientauth.hint). Cold code:
client.py loads it only for those (client._failed) and drops it after (MicroPython), so its text
is not held while messages download nor at the login (issue 10: the fetch's smallest heap is set
there)."""

from pocketpost import compat
from pocketpost.client import ConnectionLost, Pop3Timeout

# The texts of client.py's, clientget.py's, clientplan.py's and clientauth.py's errors (and of log
# lines at a session's end), by number (their _T_ names, private copies): text(n, *args).
TEXTS = (
    "%s: unexpected data instead of %s",  # 0
    "%s: LIST did not list message %d",  # 1
    "fetch %s: UIDL state full (max_entries %d): new messages wait until messages kept on the "
    "server are deleted there (policy delete, or keep_days once their days pass); raise max_entries",  # 2
    "fetch %s: %s",  # 3
    "fetch %s: state not saved: %s",  # 4
    "%s: store: %s",  # 5
    "%s: %s: unexpected reply inside the message",  # 6
    "%s: %s: message %d is larger than the server said (%d)",  # 7
    "%s: %s: %d octets received (%d line ends, %d CRLF) but LIST said %d: the message is not "
    "provably complete (a server that does not dot-stuff?); not kept, fetched again next time",  # 8
    "%s: NOOP after %s answered -ERR (%s): the message is not proved complete",  # 9
    "message %d (%d octets): %s; make room, or set the account's max_size below it",  # 10
    "message %d (%d octets): %s",  # 11
    "%s ([%s]): try again later",  # 12 (clientplan.py's from here; clientauth.stat's, clientend.quit's)
    "%s: UIDL refused (it listed this account's messages before): try again later%s",  # 13
    "%s: UIDL: the server has no UIDL: only policy 'delete' can fetch each message once; set it, or "
    "use another server",  # 14
    "%s: LIST: malformed size for message %d",  # 15
    "%s: LIST failed",  # 16
    "fetch %s: the UIDL state holds max_entries (%d): the next session fetches more, once this one's "
    "deletions commit",  # 17
    "fetch %s: skipping message %d (%d bytes > max_size)",  # 18 (log lines of client.fetch_account)
    "fetch %s: message %d left on the server: %s",  # 19
    "fetch %s: FAILED: %d sessions in a row each filled the UIDL state (max_entries) and deleted what it "
    "fetched, the most one run starts; %d messages are still on the server: run the fetch again (it goes on "
    "from there), or raise max_entries",  # 20 (fetch.py's: its sessions ran out)
    "message %d (%d octets) left on the server: the local mailbox %s has room for %d octets (store \"quota\", "
    "or the free flash less its \"reserve\"); the messages that fit were fetched: make room (delete mail kept "
    "locally), raise store.quota, or set the account's max_size below it",  # 21 (client.fetch_account's)
    "%s: STAT: the server mailbox holds %d messages, more than %d: empty it with another client first",  # 22
    "%s: connect: no answer within %ss: check the host, the port and the network",  # 23
    "%s: server refused the connection: %s",  # 24
    "%s: APOP: the server's greeting has no timestamp: use auth \"auto\"",  # 25 (clientauth.py's, 22-25)
)


def no_uidl(c, path):
    """TEXTS[13]: UIDL refused by a server that listed this account's messages before; when its
    CAPA no longer lists UIDL (dropped for good, not refused for now), what to do about it."""
    return TEXTS[13] % (c.where, "" if c.caps is None or "UIDL" in c.caps else
                        "; its CAPA no longer lists UIDL: if that is for good, delete %s and %s.who (the UIDs "
                        "there can never match again) and set policy \"delete\" (each message still on the server "
                        "is then stored again, once)" % (path, path[:-5]))


def hint(code, *a):
    """clientauth.hint: what to do about a refused login, by the reply's response code (RFC 2449,
    RFC 3206): a locked mailbox or a server's own failure is no wrong password. With `a` (the
    auth method or None, the ErrReply's text "where: CMD: -ERR text"): the refused login's whole
    error, the server's own text quoted (it often ends in "." already: "failed.: check" read
    badly)."""
    if code == "IN-USE":
        h = ("[IN-USE]: the mailbox is in use by another session (another mail client left "
             "open, or another fetch of it): close that one, or try again later")
    elif code == "LOGIN-DELAY":
        h = "[LOGIN-DELAY]: the server allows a login only so often: fetch less often"
    elif code == "SYS/TEMP":
        h = "[SYS/TEMP]: a temporary failure on the server: try again later"
    elif code == "SYS/PERM":
        h = "[SYS/PERM]: a failure on the server, not of the password: ask its administrator"
    else:
        h = ("check the user name and password (the account's \"user\" in config.json, its \"password\" in "
             "secrets.json: after a password change at the provider, put the new one there)")
    if not a:
        return h
    head = a[1].rsplit(": -ERR ", 1)
    said = ': -ERR "%s"' % head[1] if len(head) > 1 and head[1] else (": -ERR" if len(head) > 1 else "")
    return "%s%s%s; %s" % ("login failed (%s): " % a[0] if a[0] else "", head[0], said, h)


def text(n, *args):
    """TEXTS[n] % args (client._failed("text", n, ...))."""
    return TEXTS[n] % args


def stored(n, size, e):
    """The store's refusal of message n (client._failed("stored", ...)), named; the hint to make
    room or lower max_size only where room is what it lacked (a MemoryError or a flash error is
    not cured by either)."""
    from pocketpost.storecore import QuotaExceeded, StoreFull

    # (A MemoryError often says nothing: its class then, not an empty reason.)
    return TEXTS[10 if isinstance(e, (StoreFull, QuotaExceeded)) else 11] % (n, size, str(e) or type(e).__name__)


def nospace(name, d, e):
    """An OSError of the UIDL state's writes (clientconf.start, client.fetch_account): a full
    flash (ENOSPC) said as such, with what to do (a ClientError), else `e` itself."""
    if compat.errno_of(e) != compat.ENOSPC:
        return e
    from pocketpost.client import ClientError

    return ClientError("fetch %s: the flash is full: the UIDL state in %s cannot be written; nothing more is "
                       "fetched until there is room: delete mail kept locally or other files (the store's "
                       "\"reserve\" keeps room free of mail for it)" % (name, d))


def lost(c, doing, e=None, w=0):
    """Pop3Client._lost."""
    if w:
        doing = "waiting for " + doing
    if e is None:
        why = "the server closed the connection"
    else:
        from pocketpost import tls  # only on an error path: a plain-text fetch never loads it

        why = tls.describe_error(e, c.host, c.port, c.ca_path)
    return ConnectionLost("%s: %s: %s" % (c.where, doing, why))


def timeout(c, deadline, what, w=0):
    """Pop3Client._timeout."""
    if w:
        what = "the server to take " + what
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
    elif what[13:17] in ("AUTH", "PASS", "APOP"):  # "the reply to PASS": a login held back
        why += ("; another session may hold the mailbox: a server can hold a login back until it is free "
                "(Dovecot with pop3_lock_session: up to 10 s, then -ERR [IN-USE]): set read_timeout above 10 s "
                "to hear that" if c.read_timeout <= 10 else "")
    return Pop3Timeout("%s: waiting for %s: %s; the server is stalled or too slow: try again later, "
                       "or raise the account's timeouts" % (c.where, what, why))
