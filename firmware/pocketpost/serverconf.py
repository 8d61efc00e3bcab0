"""The config's server side (config.py's theory of operation): the "server", "users" and "smtp"
sections (their defaults, each with its reason, and their checks), the PBKDF2 ceiling, user and
mailbox names, and the config file's editing (add_user; save: configsave.py).

config.check (and so config.load) imports it for a whole config: the board, the POP3 server, the
admin helpers and the host tools. A fetch (config.load(path, False): fetch.py's start) never loads
it: its code and its ~50 interned names (a name once interned stays for good) are the server's.
Its public names are also config's (config.SERVER_DEFAULTS, config.add_user, ...: config's
module __getattr__ loads this module for them). Dropped with config.py after the start-up
(heapmark.forget).
"""


from pocketpost.compat import WDT_TIMEOUT_MS, ConfigError, const
from pocketpost.config import _merge, _num

# auth.py's PBKDF2 bounds, here so that a config loads without auth.py (~68 interned names and
# its code: a config without users or trusted networks of its own never needs it). Private (no
# interned name); host_tests/dual/test_config.py keeps them equal to auth.DEFAULT_ITERATIONS and
# auth.MAX_ITERATIONS.
_DEFAULT_ITERATIONS = const(1000)
_MAX_ITERATIONS = const(200000)

# --- defaults, each with its reason --------------------------------------------------------
# Ports: 110/995 need root on a host; the demo uses 1100/1995. A board sets 110/995.
_DEFAULT_PORT = const(1100)
_DEFAULT_POP3S_PORT = const(1995)

SERVER_DEFAULTS = {
    "host": "0.0.0.0",
    "port": _DEFAULT_PORT,  # POP3, with STLS when cert/key are set; 0 disables
    "pop3s_port": _DEFAULT_POP3S_PORT,  # implicit TLS (RFC 8314); 0 disables
    "cert": "",  # DER certificate on flash (MicroPython's ssl rejects PEM)
    "key": "",  # DER private key on flash
    "hostname": "pocketpost",  # in the banner's APOP timestamp and CAPA IMPLEMENTATION
    # PBKDF2 iterations of this board: new hashes are made with it, and a stored hash with
    # another count is rehashed to it at the next successful login. An ESP32 spends ~0.3 ms per
    # iteration, so 1000 keeps a login near 0.3 s; the host config can afford more.
    "pbkdf2_iterations": _DEFAULT_ITERATIONS,
    # Assumed cost of one iteration on this board, in microseconds: it sets the ceiling on any
    # count (pbkdf2_ceiling). 300 is the ESP32 estimate (LX6 at 240 MHz: two SHA-256 calls and
    # a 256-bit XOR in Python per iteration; not yet measured on hardware); the unix port on an
    # x86-64 host measures ~1.4 (boards/host/config.json says 2).
    "pbkdf2_iteration_us": 300,
    # Plain-text passwords (USER/PASS, AUTH PLAIN) on a connection without TLS:
    # "never", "local" (only from loopback and trusted_networks) or "always".
    "plaintext_auth": "local",
    "trusted_networks": ["127.0.0.0/8"],  # CIDR list counted as "local"
    # Concurrent sessions: each costs ~5-7 KiB of Python heap on the 64-bit host at block_size
    # 1024 (~4-6 on a board) plus ~20 KB of IDF heap with TLS; boards/*/BUDGET.md sets each
    # board's cap (2 on an ESP32 without PSRAM).
    "max_sessions": 4,
    "max_sessions_per_addr": 2,  # one host must not take every slot
    # Seconds a new connection that finds a cap full waits for a slot (no greeting yet) before
    # the oldest pre-auth one is evicted (listener.py): a mail client's second connection gets in
    # once its first has logged in, read and quit (an ESP32: a few seconds); 0: at once.
    "slot_wait": 8,
    # RFC 2449 section 4: a command line is at most 255 octets including CRLF.
    "max_command_line": 255,
    # RFC 1939 section 3: the autologout timer "MUST be of at least 10 minutes". A board may
    # configure less to free its few session slots sooner. Counts only once logged in.
    "idle_timeout": 600,
    # Seconds for a whole TLS handshake (POP3S and after STLS): a real client needs well under
    # a second even on an ESP32; a peer that never finishes one must not hold a slot longer.
    "tls_handshake_timeout": 20,
    # Seconds from connect to a successful login (AUTHORIZATION state): enough for a human to
    # type a password after a failed try, short enough that silent peers cannot camp.
    "auth_timeout": 60,
    "max_auth_failures": 3,  # per session; then -ERR and close
    # Delay before answering a failed login, by the number of recent failures from the same
    # address (Dovecot: 2, 4, 8, 15 s); the last value repeats.
    "auth_delays": [2, 4, 8, 15],
    "auth_fail_window": 600,  # seconds after which an address's failure count is forgotten
    "block_size": 1024,  # RETR/TOP file block; the out buffer is the same size
}

# The SMTP receiver (smtpserver.py, smtp.py). Off while "domains" is empty: with no local domain
# there is no address it could accept mail for. Passwords, hostname, TLS files, plaintext_auth,
# trusted_networks and the failed-login delays are the "server" section's (one set of users).
SMTP_DEFAULTS = {
    # Ports: 25/587/465 need root on a host; the demo uses 2525/2587/4465. A board sets 25/587/465.
    "port": 2525,  # RFC 5321 relay-to-MX port, STARTTLS when cert/key are set; 0 disables
    "submission_port": 2587,  # RFC 6409 submission with STARTTLS, AUTH required; 0 disables
    "smtps_port": 4465,  # RFC 8314 submission over implicit TLS, AUTH required; 0 disables
    "domains": [],  # mail domains delivered here, e.g. ["home.example"]
    "aliases": {},  # "local@domain" or "local" -> user (its mailbox) or mailbox name
    "subaddress": "+",  # "user+tag@domain" delivers to user; "" turns subaddressing off
    "catch_all": {},  # domain -> user or mailbox for every other local part; absent: 550
    # Largest message (octets of DATA text, advertised as SIZE, RFC 1870). A 4 MB ESP32 keeps
    # ~1-2 MB of flash for mail: one message may not take all of it.
    "max_message_size": 1024 * 1024,
    "max_recipients": 100,  # RFC 5321 4.5.3.1.8: at least 100 recipients must be accepted
    # Distinct mailboxes one message goes to: each holds an open file (a littlefs cache block)
    # while DATA streams. More recipients than that get 452 4.5.3 (the sender retries them).
    "max_mailboxes": 4,
    # RFC 5321 4.5.3.1.6: a text line is at most 1000 octets with CRLF; it also bounds command
    # lines (4.5.3.1.4's 512) so an AUTH PLAIN initial response of a long name fits (RFC 4954).
    "max_line": 1000,
    "max_sessions": 2,  # concurrent SMTP sessions (on top of the POP3 server's)
    "max_sessions_per_addr": 1,  # one host must not take every slot
    "slot_wait": 8,  # as server.slot_wait (a sender waits 5 minutes for a greeting, RFC 5321 4.5.3.2.1)
    # RFC 5321 4.5.3.2.7: the server waits at least 5 minutes for the next command.
    "command_timeout": 300,
    # RFC 5321 4.5.3.2.5: the sender's own DATA-block bound is 3 minutes; the longest we wait
    # for the next bytes of a message.
    "data_timeout": 180,
    # From connect until MAIL (port 25) or a successful AUTH (submission): a scanner or a
    # silent peer frees its slot sooner than the full command timeout.
    "preauth_timeout": 60,
    "max_auth_failures": 3,  # per session; then 421 and close (delays: server.auth_delays)
    "block_size": 1024,  # DATA read buffer and unstuffed-output buffer, each
}

# The PBKDF2 ceiling: one hash, even run synchronously (admin.add_user at the REPL, where nothing
# else feeds the watchdog), must fit in 1/_PBKDF2_WATCHDOG_DIVISOR of the watchdog period.
_PBKDF2_WATCHDOG_DIVISOR = const(2)
# A config without a "watchdog" section (the host) is held to the board default, WDT_TIMEOUT_MS.

# The longest slot_wait: a mail client gives up on a greeting after ~1 minute (Outlook's
# default server timeout), and a waiting connection holds a socket meanwhile.
_SLOT_WAIT_MAX = const(30)

# A user / mailbox name: it becomes a directory name on flash (of these characters: valid_name).
MAX_NAME = const(32)


def valid_name(name):
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME or name[0] == ".":
        return False
    for c in name:  # (a literal: a module-level name for it would be one more interned name)
        if c not in "abcdefghijklmnopqrstuvwxyz0123456789._-":
            return False
    return True


def pbkdf2_ceiling(cfg):
    """(most PBKDF2 iterations this board accepts, why) for a raw or checked config."""
    wd = cfg.get("watchdog")
    ms = wd.get("timeout_ms") if isinstance(wd, dict) else None
    if not isinstance(ms, int) or isinstance(ms, bool) or ms <= 0:
        ms = WDT_TIMEOUT_MS
    sv = cfg.get("server")
    us = sv.get("pbkdf2_iteration_us") if isinstance(sv, dict) else None
    if not isinstance(us, (int, float)) or isinstance(us, bool) or us <= 0:
        us = SERVER_DEFAULTS["pbkdf2_iteration_us"]
    n = min(_MAX_ITERATIONS, int(ms * 1000 / (us * _PBKDF2_WATCHDOG_DIVISOR)))
    return n, "1/%d of the %d ms watchdog at %s us per iteration" % (_PBKDF2_WATCHDOG_DIVISOR, ms, us)


def check(cfg, out):
    """config.check's part for the server side: the "server", "users" and "smtp" sections of the
    raw config cfg, merged with their defaults and checked, put in out (config.check's result)."""
    sv = _merge(SERVER_DEFAULTS, cfg.get("server"), "server")
    for key in ("host", "cert", "key", "hostname"):
        if not isinstance(sv[key], str):
            raise ConfigError("config: server.%s must be a string" % key)
    _num(sv, "server", "port", 0, 65535)
    _num(sv, "server", "pop3s_port", 0, 65535)
    _num(sv, "server", "pbkdf2_iteration_us", 0.001, None, float)
    _num(sv, "server", "pbkdf2_iterations", 1, _MAX_ITERATIONS)
    ceiling, why = pbkdf2_ceiling({"watchdog": cfg.get("watchdog"), "server": sv})
    if sv["pbkdf2_iterations"] > ceiling:
        raise ConfigError("config: server.pbkdf2_iterations %d is above this board's ceiling %d (%s)"
                          % (sv["pbkdf2_iterations"], ceiling, why))
    if sv["plaintext_auth"] not in ("never", "local", "always"):
        raise ConfigError("config: server.plaintext_auth must be never, local or always")
    nets = sv["trusted_networks"]
    if not isinstance(nets, list):
        raise ConfigError("config: server.trusted_networks must be a list")
    if nets is not SERVER_DEFAULTS["trusted_networks"]:  # the default is valid (a test): no auth.py for it
        from pocketpost.auth import parse_cidr

        for n in nets:
            if parse_cidr(n) is None:
                raise ConfigError("config: bad network %r" % (n,))
    _num(sv, "server", "max_sessions", 1, 1000)
    _num(sv, "server", "max_sessions_per_addr", 1, 1000)
    _num(sv, "server", "slot_wait", 0, _SLOT_WAIT_MAX, float)
    # Below 64 octets AUTH PLAIN with a normal name and password cannot fit.
    _num(sv, "server", "max_command_line", 64, 4096)
    _num(sv, "server", "idle_timeout", 0.1, None, float)
    _num(sv, "server", "tls_handshake_timeout", 0.1, None, float)
    _num(sv, "server", "auth_timeout", 0.1, None, float)
    _num(sv, "server", "max_auth_failures", 1, 100)
    d = sv["auth_delays"]
    if not isinstance(d, list) or not d:
        raise ConfigError("config: server.auth_delays must be a non-empty list of seconds")
    for x in d:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0 or x > 300:
            raise ConfigError("config: server.auth_delays must be seconds (0..300)")
    _num(sv, "server", "auth_fail_window", 0, None, float)
    _num(sv, "server", "block_size", 256, 65536)
    if (sv["cert"] == "") != (sv["key"] == ""):
        raise ConfigError("config: server.cert and server.key go together")
    out["server"] = sv

    users = cfg.get("users") or {}
    if not isinstance(users, dict):
        raise ConfigError("config: users must be an object")
    uo = {}
    if users:  # (auth.py, for the hash records: only a config with users loads it)
        from pocketpost import auth
    for name in users:
        u = users[name]
        if not valid_name(name) or not isinstance(u, dict):
            raise ConfigError("config: bad user %r" % (name,))
        pw = u.get("password")
        try:
            its = auth.parse_hash(pw)[0]
        except auth.AuthError:
            raise ConfigError("config: users.%s.password must be a scram-sha-256 (or pbkdf2-sha256) record" % name)
        if its > ceiling:
            raise ConfigError("config: users.%s.password has %d PBKDF2 iterations, above this board's ceiling %d"
                              " (%s): set the password again here" % (name, its, ceiling, why))
        mb = u.get("mailbox", name)
        if not valid_name(mb):
            raise ConfigError("config: users.%s.mailbox is not a valid name" % name)
        sec = u.get("apop_secret")
        if sec is not None and (not isinstance(sec, str) or not sec):
            raise ConfigError("config: users.%s.apop_secret must be a string or null" % name)
        uo[name] = {"password": pw, "mailbox": mb, "apop_secret": sec}
    out["users"] = uo

    out["smtp"] = _check_smtp(_merge(SMTP_DEFAULTS, cfg.get("smtp"), "smtp"))
    _unread(out, cfg.get("accounts"))


def _unread(out, accounts):
    """Warn (not refuse: a user may be added next) of an SMTP alias or catch-all target, or a
    fetch account's mailbox, that is no user and no user's mailbox: its mail is stored (SMTP
    answers 250) where no POP3 login ever reads it."""
    uo = out["users"]
    read = [uo[n]["mailbox"] for n in uo]
    sm = out["smtp"]
    where = []
    if sm["domains"]:
        for key in ("aliases", "catch_all"):
            for k in sm[key]:
                where.append(("smtp.%s.%s" % (key, k), sm[key][k]))
    for a in accounts if isinstance(accounts, list) else ():
        if isinstance(a, dict) and isinstance(a.get("mailbox", "inbox"), str):
            where.append(("accounts %s: mailbox" % a.get("name"), a.get("mailbox", "inbox")))
    for what, t in where:
        if t not in uo and t not in read:
            from pocketpost import log

            log.warning("config: %s: %s is no user and no user's mailbox: its mail is stored where no "
                        "login reads it", what, t)


def _check_smtp(cfg):
    for key in ("port", "submission_port", "smtps_port"):
        _num(cfg, "smtp", key, 0, 65535)
    doms = cfg["domains"]
    if not isinstance(doms, list):
        raise ConfigError("config: smtp.domains must be a list")
    for d in doms:
        if not isinstance(d, str) or not d or "@" in d or " " in d:
            raise ConfigError("config: bad domain %r" % (d,))
    for key in ("aliases", "catch_all"):
        m = cfg[key]
        if not isinstance(m, dict):
            raise ConfigError("config: smtp.%s must be an object" % key)
        for k in m:
            if not isinstance(m[k], str) or not valid_name(m[k]):
                raise ConfigError("config: smtp.%s.%s must name a user or mailbox" % (key, k))
    if not isinstance(cfg["subaddress"], str) or len(cfg["subaddress"]) > 1:
        raise ConfigError("config: smtp.subaddress must be one character or empty")
    _num(cfg, "smtp", "max_message_size", 1024)
    _num(cfg, "smtp", "max_recipients", 100, 10000)  # RFC 5321 asks for at least 100
    _num(cfg, "smtp", "max_mailboxes", 1, 64)
    _num(cfg, "smtp", "max_line", 512, 65536)  # RFC 5321 4.5.3.1.4: command lines of 512
    _num(cfg, "smtp", "max_sessions", 1, 1000)
    _num(cfg, "smtp", "max_sessions_per_addr", 1, 1000)
    _num(cfg, "smtp", "slot_wait", 0, _SLOT_WAIT_MAX, float)
    for key in ("command_timeout", "data_timeout", "preauth_timeout"):
        _num(cfg, "smtp", key, 0.1, None, float)
    _num(cfg, "smtp", "max_auth_failures", 1, 100)
    _num(cfg, "smtp", "block_size", 256, 65536)
    return cfg


def defaults():
    """Every section's defaults (config.check of an empty config)."""
    from pocketpost import config

    return config.check({})


def save(path, cfg):
    """Write atomically and readable (configsave.py: its code is loaded for a save only)."""
    # (by a str, not `from pocketpost import configsave`: that interns the name "configsave" when
    # this module loads, and that one name cost the listening server 2 KiB: bench_heap a 88 -> 90)
    __import__("pocketpost.configsave", None, None, ("save",)).save(path, cfg)


def add_user(cfg, name, password, iterations=None, mailbox=None, apop_secret=None):
    """Add or replace a user in `cfg` (raw or checked), storing only a salted hash."""
    if not valid_name(name):
        raise ConfigError("bad user name %r (a-z 0-9 . _ -, up to %d)" % (name, MAX_NAME))
    if iterations is None:
        iterations = (cfg.get("server") or {}).get("pbkdf2_iterations", SERVER_DEFAULTS["pbkdf2_iterations"])
    users = cfg.get("users")
    if not isinstance(users, dict):
        users = {}
        cfg["users"] = users
    from pocketpost import auth

    entry = {"password": auth.hash_password(password, iterations), "mailbox": mailbox or name}
    if apop_secret:
        entry["apop_secret"] = apop_secret
    users[name] = entry
    return cfg

