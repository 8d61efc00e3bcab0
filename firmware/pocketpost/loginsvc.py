"""The login Service's code (pop3server.Service, shared by the POP3 server and the SMTP
receiver): the failed-login throttle, a rehashed password record, user names fit for a log
line (trusted networks: pop3server.Service.trusted). Login code (pop3server.LOGIN_MODULES):
loaded while a session can log in and needs it (a POP3 login that succeeds from an address with
no failure on record does not), dropped with pop3login.py, smtpauth.py and auth.py; the Service
keeps only the throttle's state (`fails`: address -> [failures, last failure ticks]; its delays
and window are read from `cfg`, the "server" section).
"""

from pocketpost import log
from pocketpost.compat import const, forget, ticks_diff, ticks_ms

# Failure records kept per address for the login delay: bounded so a scan from many addresses
# costs fixed RAM (the oldest record is forgotten first).
_MAX_THROTTLE_ENTRIES = const(32)


# Names here cost no interned name of their own where the listening server interns one (issue 12):
# ip, recent, text. (fail and succeed are smtpauth's too: kept.)


def recent(svc, ip, now):
    """ip's failure record within the window, or None."""
    e = svc.fails.get(ip)
    if e is not None and ticks_diff(now, e[1]) > svc.cfg["auth_fail_window"] * 1000:
        del svc.fails[ip]
        e = None
    return e


def failures(svc, ip, now=None):
    """Failed logins from ip within the window."""
    e = recent(svc, ip, ticks_ms() if now is None else now)
    return 0 if e is None else e[0]


def succeed(svc, ip):
    """A successful login from ip forgets its failures (as Dovecot does); other addresses keep
    theirs. Returns the seconds its answer waits: what is left of the delay ip's last failure
    got. A right password is answered no sooner than a wrong one would have been: else a peer
    hanging up on each failure's delay (no answer within the hash's time: wrong) tried a
    password every ~0.3 s whatever the delays. A user who read the failure and typed again
    has waited it out already."""
    e = svc.fails.pop(ip, None)
    if e is None:
        return 0
    left = delay(svc, e[0]) * 1000 - ticks_diff(ticks_ms(), e[1])
    return left / 1000 if left > 0 else 0


def fail(svc, ip, now=None):
    """Record a failure; returns the delay in seconds before answering it."""
    now = ticks_ms() if now is None else now
    e = recent(svc, ip, now)
    d = svc.fails
    if e is None:
        if len(d) >= _MAX_THROTTLE_ENTRIES:
            oldest = None
            for k in d:
                if oldest is None or ticks_diff(d[oldest][1], d[k][1]) > 0:
                    oldest = k
            del d[oldest]
        e = [0, now]
        d[ip] = e
    e[0] += 1
    e[1] = now
    return delay(svc, e[0])


def delay(svc, n):
    """The delay in seconds before answering the n-th failure (server.auth_delays)."""
    d = svc.cfg["auth_delays"]
    return d[n - 1] if n <= len(d) else d[-1]


def rehashed(svc, name, new_hash):
    """A login rehashed name's password to the board's count: the new record in the users, then
    made durable by the shell's on_rehash (a failure is logged; the login stands)."""
    u = svc.users.get(name)
    if u is None:
        return
    u["password"] = new_hash
    from pocketpost import auth

    log.info("pop3 user=%s password record now %s, %d iterations", text(name), new_hash[: new_hash.find("$")],
             auth.parse_hash(new_hash)[0])
    if svc.on_rehash is not None:
        try:
            svc.on_rehash(name, new_hash)
        except Exception as e:  # the login stands; the old hash keeps working until next time
            log.error("pop3 user=%s rehash not saved: %s %r", text(name), type(e).__name__, e)


def save_hash(config_path, name, new_hash):
    """server.Server's on_rehash: name's new record written to the config file as written
    (defaults not baked in), atomically (config.save: temp file, then rename)."""
    from pocketpost import config as config_mod

    try:
        raw = config_mod.load_raw(config_path)
        users = raw.get("users")
        if not isinstance(users, dict) or not isinstance(users.get(name), dict):
            return
        users[name]["password"] = new_hash
        config_mod.save(config_path, raw)
    finally:
        forget(("config", "serverconf", "configsave"))  # start-up code (heapmark.forget): not kept for a rare save


def text(name):
    """A user name as sent by a peer, fit for one log line."""
    out = ""
    for c in name[:40]:
        out += c if 32 < ord(c) < 127 else "?"  # (no "~" literal: an interned name)
    return out
