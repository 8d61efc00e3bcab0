"""REPL helpers for a maker at the mpremote prompt. Thin wrappers: the work is done by
config (users), store (mailboxes), client (fetching) and board (what is running).

    mpremote exec "from pocketpost import admin; admin.status()"
    mpremote exec "from pocketpost import admin; admin.add_user('alice', 'secret')"
    mpremote exec "from pocketpost import admin; admin.passwd('alice', 'new secret')"
    mpremote exec "from pocketpost import admin; admin.del_user('alice')"     # the mailbox stays
    mpremote exec "from pocketpost import admin; admin.deliver('alice', 'Hello from the REPL')"
    mpremote exec "from pocketpost import admin; admin.mailboxes()"
    mpremote exec "from pocketpost import admin; admin.fetch_now()"
    mpremote exec "from pocketpost import admin; admin.rename_account('isp', 'home')"   # a fetch account
    mpremote exec "from pocketpost import admin; admin.check()"          # admin.check(repair=True)

Each helper prints a human summary and returns the data (None from the prompt-only ones).
A refusal (a user that is not there, a bad name, an empty password, a config that does not load:
a ConfigError) is printed as its sentence alone, what to do included, without the traceback a
raised error shows at the REPL, and the helper returns False: a script tests for that
(`if admin.add_user(...) is False:`). Other errors (flash full, a damaged store) still raise.
Connecting with mpremote interrupts main.py: the services stop until `machine.reset()`.
"""

import gc
import os
import time

from pocketpost import board, boardstart, heapmark, log, safemode
from pocketpost.compat import ConfigError, const, exists, free_bytes, now, urandom

CONFIG_PATH = board.CONFIG_PATH
GC_GRAIN = const(64)  # largest_free()'s step: a few GC blocks (16 B on an ESP32, 32 B on the host)
# A test mail is tiny: the point is to see it arrive in a mail client, not to load the store.
TEST_BODY = "This is a test message delivered from the pocketpost REPL.\r\n"


def _said(fn):
    """fn, with its refusal (a ConfigError: a mistake the maker can fix) printed as its sentence
    alone, as a maker reads it at the REPL, and False returned (the module docstring)."""
    def helper(*args, **kw):
        try:
            return fn(*args, **kw)
        except ConfigError as e:
            print(e)
            return False

    return helper


def _cfg(config_path):
    return board.load_config(config_path)


def _store(cfg):
    return boardstart.open_store(cfg)


@_said
def add_user(name, password, config_path=CONFIG_PATH, iterations=None, replace=False, _existing=False):
    """Add a POP3 user; a user that exists is refused (as ppadmin adduser refuses it: a name typed
    again must not reset someone's password) unless replace=True, which gives it the new password
    (its mailbox and APOP secret stay; admin.passwd does that). config.json keeps only the
    SCRAM-SHA-256 record (PBKDF2 salt, iterations, StoredKey, ServerKey), with the board's
    iteration count (config "server"/"pbkdf2_iterations") unless given."""
    from pocketpost import config

    if not password:  # as ppadmin adduser: a user nobody meant to leave without a password
        raise config.ConfigError("empty password for user %r: give one" % name)
    raw = config.load_raw(config_path)  # edit the file as written: no defaults baked in
    old = (raw.get("users") or {}).get(name)
    old = old if isinstance(old, dict) else None
    if _existing and old is None:  # passwd('alcie', ...): not a new user by a typo
        raise config.ConfigError("no user %r (users: %s): admin.add_user makes one" % (name, _names(raw)))
    if old is not None and not replace:
        raise config.ConfigError("user %r already exists: admin.passwd(%r, ...) gives it a new password "
                                 "(or add_user(..., replace=True))" % (name, name))
    # a new password for an existing user: its mailbox and APOP secret stay (ppadmin adduser --force too)
    config.add_user(raw, name, password, iterations, mailbox=(old or {}).get("mailbox"),
                    apop_secret=(old or {}).get("apop_secret"))
    checked = config.check(raw)  # (before the save: a refused config is not written)
    config.save(config_path, raw)
    store = _store(checked)
    box = _mailbox_of(raw, name)
    if not store.exists(box):
        store.create(box)
    print("user %r %s (mailbox %r); machine.reset() to serve it" % (name, "password replaced" if old else "added", box))


@_said
def passwd(name, password, config_path=CONFIG_PATH):
    """A new password for an existing user (a name that is none is refused, not added)."""
    return add_user(name, password, config_path, replace=True, _existing=True)  # (False: refused, said)


@_said
def del_user(name, config_path=CONFIG_PATH):
    """Remove a POP3 user: no more logins (POP3, SMTP submission). Its mailbox and the mail in it
    stay (export it first: docs/MIGRATE.md; a user of that name added later reads it again)."""
    from pocketpost import config

    raw = config.load_raw(config_path)
    users = raw.get("users") or {}
    if name not in users:
        raise config.ConfigError("no user %r (users: %s)" % (name, _names(raw)))
    box = _mailbox_of(raw, name)
    del users[name]
    config.save(config_path, raw)
    print("user %r removed; its mailbox %r and the mail in it stay; machine.reset() to apply" % (name, box))


def _names(cfg):
    return ", ".join(sorted(cfg.get("users") or {})) or "none"


def _mailbox_of(cfg, user):
    entry = (cfg.get("users") or {}).get(user)
    return entry.get("mailbox") or user if isinstance(entry, dict) else user


def _message(user, text, subject, sender):
    t = now()
    tag = "".join("%02x" % b for b in urandom(6))
    msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d.%s@pocketpost>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s") % (
        sender, user, subject, _rfc5322_date(t), t, tag, _crlf(text))
    return msg.encode()


def _crlf(text):
    out = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return out if out.endswith("\r\n") else out + "\r\n"


_DAYS = ("Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed")  # 1970-01-01 was a Thursday
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _rfc5322_date(unix_t):
    days, rem = divmod(unix_t, 86400)
    # civil-from-days (Howard Hinnant): no dependency on the port's time epoch
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return "%s, %02d %s %d %02d:%02d:%02d +0000" % (
        _DAYS[days % 7], d, _MONTHS[m - 1], y, rem // 3600, rem // 60 % 60, rem % 60)


@_said
def deliver(user, text=TEST_BODY, subject="pocketpost test", sender="pocketpost@localhost",
            config_path=CONFIG_PATH):
    """Put a small test message into `user`'s mailbox; returns its UID. A name that is neither a
    user nor an existing mailbox (a typo) is refused, as ppadmin deliver refuses it: the mail
    would go to a new mailbox no login reads."""
    cfg = _cfg(config_path)
    store = _store(cfg)
    box = _mailbox_of(cfg, user)
    if not store.exists(box):
        users = cfg.get("users") or {}
        if user not in users:
            from pocketpost.config import ConfigError

            raise ConfigError("no user %r (users: %s): admin.add_user first" % (user, _names(cfg)))
        store.create(box)
    d = store.begin(box)
    try:
        d.write(_message(user, text, subject, sender))
        uid = d.commit()
    except BaseException:
        d.abort()
        raise
    print("delivered to %s: uid %s" % (user, uid))
    return uid


@_said
def mailbox_list(config_path=CONFIG_PATH):
    """[(name, messages, octets)]; messages is None for a mailbox a session holds locked."""
    store = _store(_cfg(config_path))
    out = []
    for name in sorted(store.mailboxes()):
        try:
            mb = store.lock(name)
        except Exception as e:  # MailboxLocked: a POP3 session has it open
            if getattr(e, "code", None) != "IN-USE":
                raise
            out.append((name, None, None))
            continue
        try:
            out.append((name, mb.count, mb.total_size))
        finally:
            mb.release()
    return out


@_said
def mailboxes(config_path=CONFIG_PATH):
    """Print every mailbox with its message count and size."""
    rows = mailbox_list(config_path)
    if rows is False:  # refused (said)
        return False
    for name, count, size in rows:
        if count is None:
            print("%-20s (in use by a session)" % name)
        else:
            print("%-20s %5d messages %9d octets" % (name, count, size))
    if not rows:
        print("no mailboxes")


@_said
def check(repair=False, deep=True, config_path=CONFIG_PATH):
    """Check every mailbox (store.Store.check): index records, index against the files, every
    message read to its end (deep); with repair=True fix what was found (damaged messages go to
    <mailbox>/damaged/). Prints one line per mailbox; returns the report."""
    from pocketpost import store as store_mod

    rep = _store(_cfg(config_path)).check(repair=repair, deep=deep)
    for name in sorted(rep["mailboxes"]):
        print(store_mod.describe(name, rep["mailboxes"][name]))
    if not rep["mailboxes"]:
        print("no mailboxes")
    if rep["problems"]:
        print("%d problem(s) %s" % (rep["problems"], "repaired" if repair else
                                     "found: admin.check(repair=True) fixes them"))
    else:
        print("store ok")
    return rep


@_said
def fetch_now(account=None, config_path=CONFIG_PATH):
    """Fetch every configured account (or the one named) once, now; returns {name: stats}."""
    from pocketpost import client, fetchload

    cfg = _cfg(config_path)
    store = _store(cfg)
    out = {}
    accounts = cfg.get("accounts") or []
    for acct in accounts:
        name = acct.get("name") or acct.get("user") or "?"
        if account is not None and name != account:
            continue
        try:
            # An account renamed in config.json whose state files were not would store every
            # message kept on the server a second time: refused, as the CLI and the board do.
            why = fetchload.renamed(acct, accounts)
            out[name] = {"error": "ConfigError: " + why} if why else client.fetch_account_sync(acct, store)
        except MemoryError:
            raise
        except Exception as e:  # network, TLS, login refused...: report it, go on to the next account
            out[name] = {"error": "%s: %s" % (type(e).__name__, e)}
        print("%s: %s" % (name, out[name]))
        r = board.current
        if r is not None and "refused" not in r.fetches.get(name, ()):  # status()'s last fetch: this one
            r.fetches[name] = dict(out[name], at=time.time() - r.started)
    if not out:
        print("no account %r in %s (accounts: %s)" % (account, config_path, ", ".join([str(a.get("name")) for a in accounts]) or "none") if account
              else "no accounts in %s: add one under \"accounts\" (README \"Fetching mail from another server\"), "
                   "then fetch_now() again" % config_path)
    return out


@_said
def rename_account(old, new, config_path=CONFIG_PATH):
    """Rename fetch account `old` to `new`: config.json, secrets.json and its UIDL state files, in
    an order a power cut cannot turn into mail fetched twice (fetchrename.py); run again, it
    finishes a rename a cut stopped (the fetch refuses the account until then, and says so)."""
    from pocketpost import fetchrename

    print(fetchrename.rename(old, new, config_path) + "; machine.reset() to apply")


def status_dict(config_path=CONFIG_PATH):
    """Free flash, heap, sessions, Wi-Fi, clock, services and the last errors, as a dict."""
    gc.collect()
    st = {}  # type: dict
    root = "."
    reserved = None
    try:
        cfg = _cfg(config_path)
        boardstart.check(cfg)  # the board's sections too: what the next start would refuse
        st["config"] = "ok"
        w = boardstart.sockets(cfg)  # what the next start would warn of
        if w:
            st["sockets"] = w
        r = cfg.get("store", {}).get("root")
        if r and exists(r):
            root = r
        # what the store keeps free (its reserve and the accounts' UIDL state's): mail gets the rest
        from pocketpost import config

        reserved = cfg["store"]["reserve"] + config.state_reserve(cfg)  # as config.open_store
    except OSError as e:  # no config yet: report the current filesystem
        st["config"] = "cannot read %s: %s" % (config_path, e)
    except Exception as e:  # a config mistake: said here, where a maker looks first, not raised
        if isinstance(e, MemoryError):
            raise
        st["config"] = str(e)
    try:
        free, bsize = free_bytes(root)
        total = os.statvfs(root)[0] * os.statvfs(root)[2]
        st["flash"] = {"free": free, "total": total, "block": bsize, "tuned": board.tuned}
        if reserved is not None:
            st["flash"]["reserved"] = reserved
            st["flash"]["for_mail"] = max(0, free - reserved)
    except (OSError, AttributeError) as e:
        st["flash"] = {"error": str(e)}
    if hasattr(gc, "mem_free"):
        st["heap"] = {"free": gc.mem_free(), "used": gc.mem_alloc(),  # type: ignore[attr-defined]
                      "largest_free": largest_free(), "peaks": dict(heapmark.peaks)}
    idf = idf_heap()
    if idf is not None:  # ESP32: the C heap TLS buffers come from
        st["idf_heap"] = {"free": idf[0], "largest_free": idf[1]}
    r = board.current
    st["safe_mode"] = safemode.safe
    if r is not None:
        st["uptime_s"] = int(time.time() - r.started)
        st["sessions"] = sessions(r)
        st["wifi"] = wifi_info(r.wifi) if r.wifi else None
        st["clock"] = clock_info(r.clock) if r.clock else {"set": boardstart.clock_is_set()}
        st["watchdog"] = {"timeout_ms": r.watchdog.timeout_ms, "feeds": r.watchdog.feeds} if r.watchdog else None
        st["services"] = services(r.supervisor) or "none started (see config and errors)"
        st["fetches"] = fetches(r)
    else:
        st["services"] = ("not running: safe mode" if safemode.safe else
                          "not running (main.py not started, or it stopped: see errors)")
        st["clock"] = {"set": boardstart.clock_is_set()}
    st["errors"] = list(log.recent)
    return st


# What the board's objects report (here, not in board.py: only the REPL asks, and board.py's code
# stays in the heap while the services run).


def sessions(r):
    """Open sessions of a board.Runner, POP3 and SMTP together."""
    n = 0
    for srv in (r.server, r.smtp):
        if srv is not None:
            n += srv.slots.sessions
    return n


def fetches(r):
    """{account: the last fetch's stats or error}, each with how long ago it ran ("ago_s"; the
    Runner keeps the uptime it ran at: an NTP clock jump does not move it)."""
    up = time.time() - r.started
    out = {}
    for name, st in r.fetches.items():
        st = dict(st)
        at = st.pop("at", None)
        if at is not None:
            st["ago_s"] = int(up - at)
        out[name] = st
    return out


def wifi_info(w):
    """A board.Wifi's state."""
    return {"up": w.up, "ssid": w.ssid, "address": w.address, "connects": w.connects,
            "drops": w.drops, "attempts": w.attempts, "last_error": w.last_error}


def clock_info(c):
    """A board.Clock's state."""
    return {"set": boardstart.clock_is_set(), "host": c.host, "syncs": c.syncs, "failures": c.failures,
            "last_error": c.last_error}


def services(sup):
    """{name: state} of a board.Supervisor's services."""
    return dict((s.name, {"state": s.state, "starts": s.starts, "failures": s.failures,
                          "last_error": s.last_error}) for s in sup.services)


def status(config_path=CONFIG_PATH):
    """Print the board's status for a human at the REPL."""
    st = status_dict(config_path)
    for k in ("config", "sockets", "flash", "heap", "idf_heap", "safe_mode", "uptime_s", "sessions", "wifi", "clock", "watchdog", "services",
              "fetches"):
        if k in st:
            print("%-10s %s" % (k, st[k]))
    print("errors     %d recent" % len(st["errors"]))
    for line in st["errors"]:
        print("  " + line)


# Heap figures asked at the REPL only (here, not in heapmark.py, which every service loads).


def largest_free():
    """The largest block the GC heap can hand out now (bytes, to GC_GRAIN), found by trying
    allocations (the port has no call that returns it; micropython.mem_info() only prints it);
    None on CPython. The heap must not be locked. Costs ~12 allocations, for the REPL only."""
    free = getattr(gc, "mem_free", None)
    if free is None:
        return None
    gc.collect()
    lo, hi = 0, free()
    while hi - lo > GC_GRAIN:
        mid = (lo + hi) // 2
        try:
            b = bytearray(mid)
            del b
            lo = mid
        except MemoryError:
            hi = mid
    gc.collect()
    return lo


def idf_heap():
    """ESP32 only: the IDF (C) heap mbedTLS and Wi-Fi take from, as (free, largest free block)
    summed / maxed over the data regions; None elsewhere."""
    try:
        import esp32  # type: ignore[import-not-found]

        regions = esp32.idf_heap_info(esp32.HEAP_DATA)
    except (ImportError, AttributeError):
        return None
    free = 0
    largest = 0
    for r in regions:  # (total, free, largest free block, minimum free seen)
        free += r[1]
        if r[2] > largest:
            largest = r[2]
    return free, largest
