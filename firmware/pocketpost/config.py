"""Load and check the JSON config; every default is named once, here.

Layout (see boards/host/config.json):
    {"store":  {"root", "quota", "reserve"},
     "server": {listen address, ports, TLS files, auth policy, limits},
     "users":  {name: {"password": "scram-sha-256$...", "mailbox": name, "apop_secret": null}},
     "accounts": [...],           # the POP3 client's; client.py checks each (config only the transport)
     "log":    {"level": "info"},
     ... other top-level keys ("wifi", "ntp", "watchdog", ...) are board glue: kept untouched.}

`load()` returns a new dict: each known section is the defaults overlaid with the file's values,
checked; a bad value raises ConfigError naming the key. `load_raw()` returns the file as written
(for tools that edit and `save()` it without baking the defaults or the secrets in).

Split by who needs what (a name a loaded module interns stays interned for good, and its code
takes heap while it is loaded): this module reads the file, merges the secrets, checks the
"store", "accounts" (their transport: client.py checks the rest) and "log" sections and opens the
store (open_store) -- all a fetch needs. serverconf.py holds the "server", "users" and "smtp"
sections (their defaults and checks), the PBKDF2 ceiling, user names, add_user and save:
`load(path)` and `check(cfg)` import it for a whole config (the board, the POP3 server, admin and
the host tools); `load(path, False)` (the fetch CLI's start, fetchload.py) leaves those three
sections as written, unchecked, and never loads it. serverconf's public names are config's too
(config.SERVER_DEFAULTS, config.add_user, config.save, ...: the module __getattr__ below).

Secrets live outside config.json, in the secrets file next to it ("secrets.json", or the path
"wifi"/"secrets" names; git-ignored, copied by tools/deploy.py; see
boards/*/secrets.json.template): Wi-Fi keys (board.py) and, under "accounts", each client
account's secrets by account name ({"isp": {"password": "..."}}), merged by `load()`.
"""

import json

from pocketpost.compat import IS_MICROPYTHON, ConfigError, const

_DEFAULT_MAX_ENTRIES = const(500)  # uidstate's (a private copy)

# --- defaults, each with its reason (the server's sections: serverconf.py) -------------------
STORE_DEFAULTS = {
    "root": "/flash/mail",
    "quota": 0,  # bytes per mailbox (store.py enforces it per mailbox); 0 = limited by the flash only
    "reserve": 65536,  # bytes kept free on flash for the index, config and logs
}

# The log section's defaults ({"level": "info"}), the secrets file's name and the account secrets
# are written where they are used (check, secrets_path, merge_secrets): a module-level name is one
# more interned name, never freed, in every process that loads the config.


def load_raw(path):
    with open(path) as f:
        try:
            cfg = json.load(f)
        except ValueError as e:  # json's own words name no file: a boot log said only "syntax error"
            raise ConfigError("config: %s is not valid JSON (%s)" % (path, e))
    if not isinstance(cfg, dict):
        raise ConfigError("config: top level must be an object")
    return cfg


def _merge(defaults, values, name):  # name: the section's, for errors
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError("config: %s must be an object" % name)
    out = {}
    for k in defaults:
        out[k] = defaults[k]
    for k in values:
        if k not in defaults:
            raise ConfigError("config: unknown key %s.%s" % (name, k))
        out[k] = values[k]
    return out


def _num(values, name, key, a, limit=None, b=int):
    # values[key], a number of section `name`, in [a, limit]; b: int, or float for any number.
    # (One-letter arguments: an argument's name is interned for good, and these are interned already.)
    v = values[key]
    ok = isinstance(v, (int, float)) if b is float else isinstance(v, int)
    if isinstance(v, bool) or not ok or v < a or (limit is not None and v > limit):
        raise ConfigError("config: %s.%s must be a number >= %s" % (name, key, a))


def check(cfg, server=True):
    """Merge defaults into a raw config and check it. Returns a new dict. server=False (a fetch):
    the "server", "users" and "smtp" sections are left as written, unchecked (serverconf.py is
    not loaded)."""
    out = {}
    for k in cfg:  # unknown top-level keys (board glue) pass through untouched
        out[k] = cfg[k]
    st = _merge(STORE_DEFAULTS, cfg.get("store"), "store")
    if not isinstance(st["root"], str) or not st["root"]:
        raise ConfigError("config: store.root must be a path")
    _num(st, "store", "quota", 0)
    _num(st, "store", "reserve", 0)
    out["store"] = st

    if server:
        from pocketpost import serverconf

        serverconf.check(cfg, out)

    acc = cfg.get("accounts", [])
    if not isinstance(acc, list):
        raise ConfigError("config: accounts must be a list")
    names = []
    for i, a in enumerate(acc):
        if not isinstance(a, dict):  # (every reader of the list calls a.get: the fetch CLI, the board)
            raise ConfigError("config: accounts[%d] must be an object ({\"name\": ..., \"host\": ...})" % i)
        _check_transport(a)
        n = a.get("name")
        if n is not None and n in names:  # they would share one UIDL state: the second account's
            # policy then deleted, on its own server, messages that only the first had stored
            raise ConfigError("config: two accounts are named %s: give each its own name (it keys the "
                              "account's UIDL state and secrets)" % n)
        names.append(n)
    out["accounts"] = acc  # client.py checks the rest of each account

    lg = _merge({"level": "info"}, cfg.get("log"), "log")
    if lg["level"] not in ("debug", "info", "warning", "error"):
        raise ConfigError("config: log.level must be debug, info, warning or error")
    out["log"] = lg
    return out


def _check_transport(a):
    """An account without TLS must say so twice; on MicroPython a verified one needs its CA
    (the port has no system CA store, so "verify" alone would fail at every connect)."""
    name = a.get("name", "?")
    if a.get("tls") == "none":
        if a.get("allow_plaintext") is not True:
            raise ConfigError('config: account %s: "tls": "none" sends the password and mail in clear; '
                              'add "allow_plaintext": true to allow it' % (name,))
    elif IS_MICROPYTHON and a.get("verify", True) is not False and not a.get("ca"):
        raise ConfigError('config: account %s: certificate verification needs "ca" (the CA certificate, DER) '
                          'on MicroPython, which has no system CA store' % (name,))
    ca = a.get("ca")
    if not isinstance(ca, str) or not ca:
        return
    from pocketpost.tls import is_pem  # only with a CA file: the client loads tls.py for it anyway

    if is_pem(ca):
        raise ConfigError("config: account %s: %s is PEM; the board needs DER: convert with "
                          "`openssl x509 -in %s -outform DER -out %s.der`" % (name, ca, ca, ca.rsplit(".", 1)[0]))


def secrets_path(config_path, cfg):
    """The secrets file for a config file: "wifi"/"secrets" or "secrets.json", relative to the
    config file's folder unless absolute (board.py reads the same file for Wi-Fi)."""
    w = cfg.get("wifi")
    name = w.get("secrets") if isinstance(w, dict) else None
    if not isinstance(name, str) or not name:
        name = "secrets.json"
    if name.startswith("/"):
        return name
    i = config_path.rfind("/")
    return name if i < 0 else config_path[:i + 1] + name


def merge_secrets(cfg, path):
    """Copy each account's secrets from the secrets file ("accounts": {name: {"password": ...}})
    into the config's account of that name. No file, or no "accounts" in it: nothing to do. A
    secret also set in config.json is refused (which one would win is a trap)."""
    # The keys an account may take from it (the rest belongs in config.json); the last two: OAuth
    # (oauth2.py).
    secrets = ("password", "refresh_token", "client_secret")
    try:
        f = open(path)
    except OSError:
        return cfg
    try:
        try:
            sec = json.load(f)
        except ValueError:
            raise ConfigError("config: %s is not valid JSON" % path)
    finally:
        f.close()
    acc = sec.get("accounts") if isinstance(sec, dict) else None
    if acc is None:
        return cfg
    if not isinstance(acc, dict):
        raise ConfigError("config: %s: accounts must be an object (account name -> its secrets)" % path)
    names = [a.get("name") for a in cfg.get("accounts") or () if isinstance(a, dict)]
    for name in acc:  # a mistyped name: its account then lacks its password (said, not refused)
        if name not in names:
            from pocketpost import log

            log.warning("config: %s: accounts.%s names no account in config.json", path, name)
    for a in cfg.get("accounts") or ():
        if not isinstance(a, dict) or not isinstance(a.get("name"), str) or a["name"] not in acc:
            continue
        name = a["name"]
        s = acc[name]
        if not isinstance(s, dict):
            raise ConfigError("config: %s: accounts.%s must be an object" % (path, name))
        for k in s:
            if k not in secrets:
                raise ConfigError("config: %s: accounts.%s.%s is not an account secret (%s); it goes in "
                                  "config.json" % (path, name, k, ", ".join(secrets)))
            if k in a:
                raise ConfigError("config: account %s: %s is set in config.json and in %s; keep it in %s only"
                                  % (name, k, path, path))
            if not isinstance(s[k], str) or not s[k]:
                raise ConfigError("config: %s: accounts.%s.%s must be a string" % (path, name, k))
            a[k] = s[k]
    return cfg


def load(path, server=True):
    """The checked config, with the secrets file's account secrets merged in (server: see check)."""
    cfg = load_raw(path)
    return check(merge_secrets(cfg, secrets_path(path, cfg)), server)


def __getattr__(name):
    """serverconf's public names as config's (config.add_user, config.SERVER_DEFAULTS, ...):
    loaded only when one is asked for."""
    if name[0] == "_":  # (CPython's import machinery asks for __path__ and the like)
        raise AttributeError(name)
    from pocketpost import serverconf

    return getattr(serverconf, name)


# --- the store ----------------------------------------------------------------------------------


def open_store(cfg):
    """The Store the config's "store" section describes, missing keys taking STORE_DEFAULTS:
    the one place that turns a config into a Store (server, fetch CLI, board, REPL helpers)."""
    from pocketpost.storecore import Store  # store.Store: Delivery (store.py) loads at the first delivery

    st = cfg.get("store") or {}
    return Store(st.get("root", STORE_DEFAULTS["root"]), quota=st.get("quota", STORE_DEFAULTS["quota"]),
                 reserve=st.get("reserve", STORE_DEFAULTS["reserve"]) + state_reserve(cfg))


def state_reserve(cfg):
    """Flash the client accounts' UIDL state may need on top of its snapshot (journal + one
    compaction's temp file, uidstate.flash_need), kept free by the store like its own reserve."""
    accounts = cfg.get("accounts") or ()
    if not accounts:  # a server-only board: no client module in its heap (uidstate is ~11 KiB)
        return 0
    import sys

    from pocketpost import heapmark

    loaded = "pocketpost.uidstate" in sys.modules
    from pocketpost import uidstate

    need = 0
    for a in accounts:
        if isinstance(a, dict):
            n = a.get("max_entries", _DEFAULT_MAX_ENTRIES)
            need += uidstate.flash_need(n if isinstance(n, int) and n > 0 else _DEFAULT_MAX_ENTRIES)
    if not loaded:  # imported for this sum only: out of the heap until a fetch needs it
        heapmark.forget(("uidstate",))
    return need
