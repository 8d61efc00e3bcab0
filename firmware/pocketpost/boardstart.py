"""The board's start-up (pocketpost.board.Runner.run): what runs once before the services start,
then leaves the heap (board.Runner.run loads it after the config and forgets it once it returns). The watchdog, Wi-Fi
and the clock brought up from the config, the Wi-Fi secrets read, the store opened and checked
(repairing), each account's UIDL state settled, the configured services added to the supervisor. Nothing here
is referred to once the services run (a function of this module kept alive would keep all of it):
the objects made are board.py's. admin.py (the REPL) uses its open_store and clock_is_set too.
"""

import json
import sys
import time

from pocketpost import board, compat, log
from pocketpost.compat import IS_MICROPYTHON, WDT_TIMEOUT_MS, const

# Boot: try this many times before starting the services anyway; the keeper goes on trying.
_WIFI_RETRIES = const(5)
_FETCH_INTERVAL_S = const(0)  # 0: no fetch schedule; else fetch every account every N seconds
_SERVICE_SERVER = const(1)  # run the POP3 server
_SERVICE_SMTP = const(1)  # run the SMTP receiver (only ever started when the config names smtp.domains)


# The clock is taken as unset before this year: a board without NTP boots in 2000.
_CLOCK_VALID_YEAR = const(2024)


# The board's own config sections and their keys (config.py checks the others, and passes these
# through): a mistyped key (`"fetch_intervall_s"`) or section (`"service"`) is refused by name, as
# config.py refuses one of its own, rather than left silently at its default (no fetch schedule).
_SECTIONS = {
    "wifi": ("secrets", "retries", "backoff_ms", "backoff_max_ms", "connect_timeout_ms", "check_ms"),
    "ntp": ("host", "interval_s", "retry_s"),
    "watchdog": ("timeout_ms",),
    "services": ("server", "smtp", "fetch_interval_s", "usb_link"),
}
_TOP = ("store", "server", "smtp", "users", "accounts", "log")  # config.py's sections


def check(cfg):
    """Refuse (ConfigError, one line) a top-level key neither config.py nor the board knows
    (keys starting with "_" are comments), a board section that is not an object and a key
    of one it does not have. Called before the watchdog starts (board.main then stays at the
    REPL: a reset would not mend the file) and by admin.status()."""
    from pocketpost.compat import ConfigError

    for k in cfg:
        if k in _SECTIONS:
            v = cfg[k]
            if not isinstance(v, dict):
                raise ConfigError("config: %s must be an object ({...})" % k)
            for kk in v:
                if kk not in _SECTIONS[k]:
                    raise ConfigError("config: unknown key %s.%s (%s has: %s)" % (k, kk, k, ", ".join(_SECTIONS[k])))
        elif k not in _TOP and not k.startswith("_"):
            raise ConfigError("config: unknown section %r (sections: %s)" % (k, ", ".join(_TOP + tuple(_SECTIONS))))


def clock_is_set():
    return time.gmtime()[0] >= _CLOCK_VALID_YEAR


def open_store(cfg):
    from pocketpost import config, heapmark

    st = config.open_store(cfg)
    heapmark.forget()  # config.py's last start-up use: its heap is free before the services load
    return st


def load_secrets(path=board.SECRETS_PATH):
    """The Wi-Fi secrets file, or None if it is missing (logged: the board then runs offline)."""
    try:
        with open(path) as f:
            s = json.load(f)
    except OSError:
        log.warning("wifi: no secrets file %r (copy secrets.json.template)", path)
        return None
    except ValueError as e:
        log.error("wifi: secrets file %r is not valid JSON: %s", path, e)
        return None
    if not isinstance(s, dict) or not s.get("ssid"):
        log.error("wifi: secrets file %r has no \"ssid\"", path)
        return None
    return s


async def start(r, secrets_path=None):
    """Everything board.Runner.run does before its supervisor starts the services. (One function:
    each name a module defines is interned for good, and the board's count sits near the 1,260
    at which MicroPython's qstr pools double, 14 KB on the 64-bit host; bench_heap --runner c.)"""
    cfg = r.cfg
    check(cfg)  # before the watchdog: a config mistake leaves the board at the REPL (board.main)
    hw = r.hw
    wd = board._section(cfg, "watchdog")
    timeout = wd.get("timeout_ms", WDT_TIMEOUT_MS)
    if hw.make_wdt is not None and timeout:
        r.watchdog = board.Watchdog(hw.make_wdt(timeout), timeout)
        r._spawn(r.watchdog.keep())
    w = board._section(cfg, "wifi")
    if hw.wlan is not None:
        secrets = load_secrets(secrets_path or w.get("secrets", board.SECRETS_PATH))
        if secrets is not None:  # the keys the config sets; the rest keep board.Wifi's defaults
            kw = dict((k, w[k]) for k in ("backoff_ms", "backoff_max_ms", "connect_timeout_ms", "check_ms") if k in w)
            r.wifi = board.Wifi(hw.wlan, secrets["ssid"], secrets.get("password", ""), secrets.get("hostname"), **kw)
            await r.wifi.connect(w.get("retries", _WIFI_RETRIES))
            r._spawn(r.wifi.keep())
    n = board._section(cfg, "ntp")
    if hw.ntptime is not None and n.get("host", board.NTP_HOST):
        kw = dict((k, n[k]) for k in ("host", "interval_s", "retry_s") if k in n)  # as for Wi-Fi
        r.clock = board.Clock(hw.ntptime, **kw)
        r._spawn(r.clock.keep(r.wifi))
        await board._sleep_ms(0)  # let the first sync run before services open TLS
    if not clock_is_set():
        log.warning("clock not set: TLS certificate checks will fail until NTP succeeds")
    st = r.store = open_store(cfg)
    # The cheap part of the store check, repairing (what the first lock would do anyway): index
    # records, index against the files, leftover intent logs and temp files. One mailbox at a
    # time, yielding in between, so the watchdog task keeps feeding.
    from pocketpost import storecore as store_mod  # describe (store.py, Delivery, stays out of the heap)

    try:
        names = st.mailboxes()
    except Exception as e:  # a store that cannot be checked is still worth serving
        log.error("store check failed: %s", board._exc_line(e))
        names = ()
    for name in names:
        try:
            rep = st.check(repair=True, names=[name])
        except Exception as e:
            log.error("store check of %s failed: %s", name, board._exc_line(e))
            continue
        if rep["problems"]:
            log.warning("store check: %s", store_mod.describe(name, rep["mailboxes"][name]))
        await board._sleep_ms(0)
    store_mod = rep = None
    sv = board._section(cfg, "services")
    fetch = sv.get("fetch_interval_s", _FETCH_INTERVAL_S) and cfg.get("accounts")
    if fetch:
        # What a power cut left pending in each account's UIDL state is settled (client.settle)
        # before any session can read and delete local mail: a message stored just before the
        # cut is recorded first (else a second download).
        from pocketpost import client, fetchload

        for a in cfg["accounts"]:
            # An account renamed in config.json whose state files were not (fetchload.renamed, as
            # the fetch CLI asks; else every message kept on the server is stored a second time):
            # not fetched until the board restarts with them renamed (board.fetch_loop);
            # admin.status() shows why.
            why = fetchload.renamed(a, cfg["accounts"])
            if why:
                r.fetches[a["name"]] = {"error": "ConfigError: " + why, "refused": 1}
                log.error("fetch %s refused until the board restarts: %s", a["name"], why)
                continue
            try:
                if client.settle(a, st):
                    log.info("fetch %s: state left by an interruption settled at boot", a.get("name") or "?")
            except Exception as e:  # a bad account or state: its fetch says what is wrong
                log.warning("fetch %s: state not settled at boot: %s", a.get("name") or "?", board._exc_line(e))
        client = fetchload = None
        compat.forget(("fetchload",))  # (its qstrs stay: MicroPython never frees them)
    sup = r.supervisor
    if sv.get("server", _SERVICE_SERVER):
        sup.add("server", r.serve)
    else:
        from pocketpost import heapmark

        heapmark.tls[0] = None  # no POP3 server: the context board.main reserved for it goes
    if sv.get("smtp", _SERVICE_SMTP) and (cfg.get("smtp") or {}).get("domains"):
        sup.add("smtp", r.serve_smtp)
    # Export/import over USB while serving (Runner.usb_link, `ppadmin ... --live`): on for a
    # board; off on the unix port, whose stdin is a terminal or the host's (the pseudo-board's
    # config turns it on: its stdin is the pty that stands for the USB serial).
    if sv.get("usb_link", IS_MICROPYTHON and sys.platform != "linux"):
        sup.add("usb_link", r.usb_link)
    if fetch:
        sup.add("fetch", r.fetch_schedule)  # (no interval given: the config's)
