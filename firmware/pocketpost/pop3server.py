"""The POP3 server's shared part (RFC 1939, 2449, 3206, 5034, 2595): the login `Service` every
session of a server shares (users, store, policy, limits, the failed-login throttle; the SMTP
receiver's logins too), and the counts that keep the cold session code loaded only while some
session needs it.

The session itself, `Session` (sans-I/O: a line in, the reply's bytes out; its theory of
operation is in its module), is pop3cmd.py's, with the command grammar it parses with: the shell
(server.py) loads it with its first connection and drops it when its last one ends, so a server
that only listens (or only receives SMTP) keeps neither in its heap. The code of each state is
colder still: AUTHORIZATION's (LOGIN_MODULES) while some session can log in, TRANSACTION's
(TRANS_MODULES) while some session is logged in.
"""

from pocketpost.compat import const, release_cold

# A login's PBKDF2 runs in slices of about this many ms; between slices the shell serves other
# sessions, so this bounds the stall a login causes (the chunk of iterations between two clock
# reads: serverstart.login_setup). pop3login, serverstart and smtpauth keep private copies.
_LOGIN_SLICE_MS = const(10)
IMPLEMENTATION = "pocketpost"

# The login code: pop3login.py (the AUTHORIZATION state's commands), smtpauth.py (SMTP AUTH),
# auth.py (password records, LoginCheck; authsetup.py, its start-up half, is loaded at start only)
# and scram.py, imported where used and dropped whenever
# no session can be in a login (Service.hold/release): ~12 KiB of heap on the 64-bit host
# (docs/FIGURES.md "Server heap") while every session is logged in, on port 25 or gone.
LOGIN_MODULES = ("pop3login", "smtpauth", "loginsvc", "auth", "authsetup", "scram")
holds = [0]  # sessions that may still log in, every Service's (POP3 and SMTP): Service.hold
# The TRANSACTION state's code: pop3trans.py (its commands and the reply producers), loaded by
# the first session to be logged in and dropped when no session is (pop3cmd.Session._held): a server
# only listening, or with every session before its login, keeps none of it. pop3body.py and
# wirestuff.py (TOP, the RETR of a file from before the wire form) load at their first use and
# are dropped with it (a plain RETR never loads them).
TRANS_MODULES = ("pop3trans", "pop3body", "wirestuff")
trans = [0]  # sessions holding pop3trans.py (logged in, not yet closed), every Service's



def parse_ipv4(s):
    """"a.b.c.d" -> int, or None (a peer's address; a trusted network's: authsetup.parse_cidr)."""
    if not isinstance(s, str):
        return None
    parts = s.split(".")
    if len(parts) != 4:
        return None
    v = 0
    for p in parts:
        if not p or len(p) > 3 or not p.isdigit():
            return None
        n = int(p)
        if n > 255:
            return None
        v = (v << 8) | n
    return v


class Service:
    """What every session of one server shares: users, store, policy, limits, throttle."""

    tls_ctx = None  # the shell's TLS context (server.py), the SMTP receiver's too
    on_rehash = None  # the shell's fn(name, new_hash): make the new hash durable
    nets = ()  # type: tuple  # trusted networks, (net, mask) each: serverstart.login_setup's list

    def __init__(self, sv, users, store, tls_available=False):
        # Its attributes are set by serverstart.login_setup (start-up code: dropped after).
        from pocketpost import serverstart

        serverstart.login_setup(self, sv, users, store, tls_available)

    def hold(self):
        """A session that may log in (POP3 before its login, SMTP submission before AUTH): the
        login code stays loaded until it calls release()."""
        holds[0] += 1

    def release(self):
        """That session logged in or ended. With none left, drop the login code: nothing refers
        to it then (only a session before its login holds a LoginCheck, a scram.ServerLogin or
        an exception of those modules), so no two copies of it can ever meet."""
        release_cold(holds, LOGIN_MODULES)

    def trusted(self, ip):
        """ip is in the configured trusted networks (or is the loopback by name): a plain-text
        login under the "local" policy, and an SMTP peer's bare LF line ends (smtpdata.begin).
        Here, not in the login code (loginsvc.py, auth.py): an SMTP message asks it too."""
        v = parse_ipv4(ip)
        if v is None:
            return ip in ("::1", "localhost")
        for net, mask in self.nets:
            if v & mask == net:
                return True
        return False

    def rehashed(self, name, new_hash):
        from pocketpost import loginsvc

        loginsvc.rehashed(self, name, new_hash)


