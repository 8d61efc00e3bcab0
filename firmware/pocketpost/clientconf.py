"""The POP3 client's account checks (client.account_from_dict): the named defaults and the
validation of an account object from the JSON config; and the start of a fetch (`start`: the
account checked, its state loaded and checked to be this user's (`_owner`: `<name>.who`), the
session's objects made). Cold code: client.py imports this
module for the check at the start of a fetch and, on MicroPython, drops it again (its ~3 KB of
heap are not held while messages move; its qstrs stay, MicroPython never frees those)."""

import gc

from pocketpost import compat, log
from pocketpost.client import READ_TIMEOUT, SESSION_TIMEOUT, AuthFailed, ClientError, Pop3Client
from pocketpost.compat import ConfigError, const
from pocketpost.uidstate import UidState

_OAUTH = ("xoauth2", "oauthbearer")  # OAuth: SASL with an OAuth access token (oauth2.py); the same in clientauth.py

_DEFAULT_MAX_ENTRIES = const(500)  # uidstate's (a private copy)
_CONNECT_TIMEOUT = const(15)  # client's (a private copy)
_NEW_MAIL = const(16)  # uidcompact's (a private copy)
_MIN_RATE = const(1024)  # client's (a private copy)

# The account's named defaults, by key (one dict: its keys are the account's own names, so the
# defaults cost no interned name each in every process that fetches; MicroPython never frees one).
DEFAULTS = {
    "tls": "implicit",  # POP3S: the safest choice for an ISP account
    "auth": "auto",  # the strongest method the server offers
    "policy": "keep",  # never deletes anything unless asked to
    "keep_days": 7,
    "max_size": 0,  # bytes; 0 = no limit (the store's quota still applies)
    "oversize": "skip",
    "max_messages": 0,  # new messages per session; 0 = no cap
    "mailbox": "inbox",
    "state_dir": "state",
}
# (The default port by TLS mode and the values each choice may take: account_from_dict's locals,
# not module names, which would be interned names never freed.)


def start(account, store, opener):
    """client.fetch_account's start: (a, st, c, token, fresh): the account checked (a), its UIDL
    state loaded (st; pending entries left by a crash settled: did their store commits happen?
    clientrecover.py; client.fetch_account loads it again after STAT if the server holds more than its table has room
    for), an OAuth access token (token, fresh), the Pop3Client (c) with the session's
    deadline set, and the local mailbox loaded."""
    a = account_from_dict(account)
    name = a["name"]
    if a["tls"] == "none":
        log.warning("fetch %s: no TLS to %s:%d: password and mail cross the network in clear", name, a["host"], a["port"])
    if compat.IS_MICROPYTHON:  # the garbage of the config and account checks goes before the large
        gc.collect()  # blocks of the session are made (fetch CLI: 140 -> 139 KiB, docs/FIGURES.md)
    st = _state(a, -1)  # (its table for the entries on file and as many again, + a few: uidstate's RAM)
    if st.pending is not None or st._count:  # a crash left them: did their commits happen? (clientrecover.py)
        _reconcile(st, store, a["mailbox"], name)
    token = fresh = None
    if a["auth"] in _OAUTH:  # the access token, refreshed before connecting (oauth2.py)
        from pocketpost import oauth2

        token, fresh = oauth2.pop3_token(a, AuthFailed)
        oauth2 = None  # (clientauth.start imports it again for the login: still loaded)
    _owner(a, len(st))  # (after the token too: an account whose token cannot be had writes nothing)
    if st.due():
        # A new, old-format or repaired state file (or a journal at its bound): its compaction
        # (uidcompact.py, loaded for it) runs now, while the heap holds no session yet, rather
        # than at the session's first delivery, on top of the session and its listing. (After
        # the OAuth token: an account whose token cannot be had leaves no state file.)
        st.compact()
    ctx = _tls_context(a) if a["tls"] != "none" else None
    c = Pop3Client(a["host"], a["port"], a["tls"], ctx, a["connect_timeout"], a["read_timeout"], a["min_rate"], name, opener)
    c.ca_path = a["ca"]
    c.session_deadline = c.deadline(a["session_timeout"])
    try:
        # Load (recover) the local mailbox now, creating it if missing, after the state's table and
        # the session's buffers are made (the large blocks first) and before anything connects:
        # the store's recovery scan takes and frees ~2 KB of buffers; done by the first begin(),
        # mid-session, it set the fetch CLI's smallest heap (~5 KiB larger, docs/FIGURES.md).
        # Best effort: begin() reports a store failure as before.
        store.usage(a["mailbox"])
    except Exception:
        pass
    return a, st, c, token, fresh


def _state(a, count):
    """The account's UidState, loaded (UidState.load(count): its table for what is on file and
    room for count more; -1, a session's start, guesses, counting the records here: uidstate's
    RAM paragraph): a temp file left by a crash inside a compaction is dropped first
    (uidcompact.py: loaded here, as the load itself loads it; the load drops it)."""
    st = UidState(a["state_dir"], a["name"], a["max_entries"])
    from pocketpost.uidcompact import remove_tmp

    remove_tmp(a["state_dir"], a["name"])
    n = None
    if count < 0:
        # A session's start: the first pass here, by the records' first bytes (this module's code
        # is placed already: none is loaded before the table is made, as the constructor made it
        # until stop 29). S and H lines (the most the replay holds at once), less X lines (each
        # drops one on file), and a P line after the last C line: the entries on file (a torn
        # last line counted too), and as many again + _NEW_MAIL for the server's. (The load then
        # reads the file a second time: a table made before the replay needs the count before the
        # records, which only a count written into the file, a format older firmware refuses, or a
        # table grown while the load's code is placed, would give.)
        sh = x = p = 0
        try:
            f = open(st.path, "rb")
        except OSError:
            f = None
        if f is not None:
            b = bytearray(512)
            t = b""
            try:
                while True:
                    k = f.readinto(b)
                    if not k:
                        break
                    t += b[:k]
                    sh += t.count(b"\nS ") + t.count(b"\nH ")
                    x += t.count(b"\nX ")
                    i = t.rfind(b"\nP ")
                    j = t.rfind(b"\nC ")
                    if i != j:
                        p = i > j  # (pending: a P line after the last C line)
                    t = t[-2:]  # (a record's first bytes across two reads)
            finally:
                f.close()
            b = t = f = None
        p = 1 if p else 0
        st.n = sh - x + p  # (for the refusal's text)
        n = max(sh + p, min(a["max_entries"], 2 * (sh - x + p) + _NEW_MAIL))
    return st.load(count, n)


def _owner(a, entries):
    """The UIDL state is one mailbox's: "<state_dir>/<name>.who" holds its user name and host
    (a line each). While the state holds UIDs, an account whose name now logs in as another user,
    or at another host, is refused: the other mailbox's UIDs (Dovecot's for a mailbox made in the
    same second; "1", "2", ... on many servers) passed its messages for stored, never fetched, and
    policy delete or keep_days deleted them there unfetched. A host change is refused under policy
    keep too: nothing is deleted, but the messages taken for stored never come in, unsaid. The same
    mailbox is often reached under another name or address: the words say to confirm that by
    deleting the .who file (README). A .who of user only (written before the host was) is taken
    as matching and rewritten with the host; with no UIDs remembered the file is simply (re)written."""
    who = a["user"] + "\n" + a["host"].lower()  # (a DNS name: any case; the port may change, the mailbox not)
    path = compat.join(a["state_dir"], a["name"] + ".who")
    try:
        with open(path) as f:
            old = f.read()
    except OSError:
        old = None
    if old == who:
        return
    if old is not None and entries and old != a["user"]:
        user = old.split("\n", 1)
        host = user[-1]
        user = user[0]
        if user != a["user"]:
            raise ConfigError("account %s: its UIDL state is user %s's, not %s's: give this account a new name (or, "
                              "if it is the same mailbox, delete %s)" % (a["name"], user, a["user"], path))
        raise ConfigError("account %s: its UIDL state is for server %s, not %s: if this is another server, give the "
                          "account a new name (its UIDs are not the old server's); if it is the same mailbox under "
                          "another name or address, delete %s (README: name)" % (a["name"], host, a["host"], path))
    compat.makedirs(a["state_dir"])
    with open(path + ".tmp", "w") as f:
        f.write(who)
        compat.sync_file(f)
    compat.rename(path + ".tmp", path)


def _reconcile(st, store, mailbox, name):
    from pocketpost import clientrecover

    try:
        clientrecover.reconcile(st, store, mailbox)
    except MemoryError:
        raise  # (the board's supervisor acts on it; not an account's error)
    except Exception as e:  # MailboxLocked (a local POP3 session holds it), a flash error
        raise ClientError("fetch %s: the message fetched last before an interruption cannot be looked for in the "
                          "local mailbox %s now (%s: %s): nothing fetched; try again later%s"
                          % (name, mailbox, type(e).__name__, e, " (a local session holding the mailbox ends within "
                             "its timeout)" if type(e).__name__ == "MailboxLocked" else ""))
    finally:
        clientrecover = None
        compat.forget(("clientrecover",))


def settle(account, store):
    """client.settle: the pending entries of the account's state settled; True if there were any."""
    a = account_from_dict(account)
    st = _state(a, 0)
    if st.pending is None and not st._count:
        return False
    _reconcile(st, store, a["mailbox"], a["name"])
    return True


def _tls_context(a):
    """The account's TLS context; a CA file that is missing or not DER said in words."""
    from pocketpost import tls  # imported by TLS accounts only (ssl with it)

    try:
        return tls.client_context(a["ca"], a["verify"])
    except (OSError, ValueError) as e:
        raise ConfigError("account %s: %s" % (a["name"], tls.describe_error(e, a["host"], a["port"], a["ca"])))


def account_from_dict(d):
    """Validate an account dict (from the JSON config) and fill in the named defaults."""
    if not isinstance(d, dict):
        raise ConfigError("account must be an object")
    # The values a choice may take, by key.
    choices = {
        "policy": ("delete", "keep", "keep_days"),
        "tls": ("implicit", "stls", "none"),
        "auth": ("auto", "scram-sha-256", "plain", "user", "apop", "xoauth2", "oauthbearer"),
        "oversize": ("skip", "headers"),
    }
    a = {}
    for k in ("name", "host", "user", "password"):
        v = d.get(k)
        if k == "password" and d.get("auth") in _OAUTH:  # OAuth: no password
            continue
        if not isinstance(v, str) or not v:
            if k == "password":  # it lives in secrets.json, keyed by the account's name
                raise ConfigError("account %s: password is required (in secrets.json: \"accounts\": "
                                  "{\"%s\": {\"password\": ...}})" % (a["name"], a["name"]))
            raise ConfigError("account: %s is required (a string)" % k)
        a[k] = v
    name = a["name"]
    for c in name:
        if not (c.isalpha() or c.isdigit() or c in "._-"):
            raise ConfigError("account %s: name may hold letters, digits and . _ -" % name)

    def pick(key):
        v = d.get(key, DEFAULTS[key])
        if v not in choices[key]:
            raise ConfigError("account %s: %s must be one of %s" % (name, key, ", ".join(choices[key])))
        return v

    def number(key, default, minimum=0):
        v = d.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ConfigError("account %s: %s must be an integer >= %d" % (name, key, minimum))
        return v

    a["tls"] = pick("tls")
    a["port"] = number("port", 995 if a["tls"] == "implicit" else 110, 1)  # RFC 8314 / RFC 1939
    a["auth"] = pick("auth")
    if a["auth"] in _OAUTH:  # OAuth: token_url, client_id, refresh_token, ...
        from pocketpost import oauth2

        try:
            oauth2.check_account(d, a)
        except oauth2.OAuthError as e:
            raise ConfigError(e.msg)
    a["policy"] = pick("policy")
    a["keep_days"] = number("keep_days", DEFAULTS["keep_days"], 0)
    if "keep_days" in d and a["policy"] != "keep_days":  # (else ignored: nothing deleted by age, unsaid)
        raise ConfigError("account %s: keep_days is set but policy is \"%s\": to delete each message that many days "
                          "after it is fetched, set \"policy\": \"keep_days\"; else remove keep_days" % (name, a["policy"]))
    a["max_size"] = number("max_size", DEFAULTS["max_size"], 0)
    a["oversize"] = pick("oversize")
    a["max_messages"] = number("max_messages", DEFAULTS["max_messages"], 0)
    # UIDs remembered (heap: see uidstate._DEFAULT_MAX_ENTRIES); with policy keep, the server keeps
    # more mail than this only for a board with the heap to spare.
    a["max_entries"] = number("max_entries", _DEFAULT_MAX_ENTRIES, 1)
    verify = d.get("verify", True)
    if not isinstance(verify, bool):
        raise ConfigError("account %s: verify must be true or false" % name)
    a["verify"] = verify
    allow = d.get("allow_plaintext", False)  # config.load refuses tls "none" without it
    if not isinstance(allow, bool):
        raise ConfigError("account %s: allow_plaintext must be true or false" % name)
    a["allow_plaintext"] = allow
    ca = d.get("ca")
    if ca is not None and not isinstance(ca, str):
        raise ConfigError("account %s: ca must be a path" % name)
    a["ca"] = ca
    for k in ("mailbox", "state_dir"):
        v = d.get(k, DEFAULTS[k])
        if not isinstance(v, str) or not v:
            raise ConfigError("account %s: %s must be a string" % (name, k))
        a[k] = v
    t = d.get("timeouts", {})
    if not isinstance(t, dict):
        raise ConfigError("account %s: timeouts must be an object" % name)
    for k, default in (("connect_timeout", _CONNECT_TIMEOUT), ("read_timeout", READ_TIMEOUT),
                       ("min_rate", _MIN_RATE), ("session_timeout", SESSION_TIMEOUT)):
        v = t.get(k, default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            raise ConfigError("account %s: timeouts.%s must be a positive number" % (name, k))
        a[k] = v
    for k in d:
        if k not in a and k != "timeouts":
            raise ConfigError("account %s: unknown key %s" % (name, k))
    return a
