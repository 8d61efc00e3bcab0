"""The board's start-up (pocketpost.board.Runner.run): what runs once before the services start,
then leaves the heap (board.Runner.run loads it after the config and forgets it once it returns). The watchdog, Wi-Fi
and the clock brought up from the config, the Wi-Fi secrets read, the store opened and checked
(repairing), each account's UIDL state settled, the configured services added to the supervisor. Nothing here
is referred to once the services run (a function of this module kept alive would keep all of it):
the objects made are board.py's. admin.py (the REPL) uses its open_store and clock_is_set too.
"""

import asyncio
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

# Sockets (boards/*/BUDGET.md "Sockets"). An ESP32's lwIP has CONFIG_LWIP_MAX_SOCKETS of them, and
# MicroPython's esp32 builds leave it at ESP-IDF's default, 10 (ports/esp32/boards/sdkconfig.base
# and the board files read set none). Each open one takes one: a listening port, a session,
# a connection waiting for a slot, a fetch, an NTP query. sockets() warns at start (and in
# admin.status()) of a config that can hold more at once (one more socket() or accept() would
# fail: that connection or fetch fails and is tried again; the board lives on).
# "services": {"sockets": N} says how many another firmware has (0: no check); elsewhere (the
# unix port) there is no default limit.
_ESP32_SOCKETS = const(10)
_WAITING = const(2)  # listener._WAITING_MAX: connections of a service waiting for a slot (a test keeps them equal)


# The board's own config sections and their keys (config.py checks the others, and passes these
# through): a mistyped key (`"fetch_intervall_s"`) or section (`"service"`) is refused by name, as
# config.py refuses one of its own, rather than left silently at its default (no fetch schedule).
_SECTIONS = {
    "wifi": ("secrets", "retries", "backoff_ms", "backoff_max_ms", "connect_timeout_ms", "check_ms"),
    "ntp": ("host", "interval_s", "retry_s"),
    "watchdog": ("timeout_ms",),
    "services": ("server", "smtp", "fetch_interval_s", "usb_link", "sockets"),
}
_TOP = ("store", "server", "smtp", "users", "accounts", "log")  # config.py's sections


def check(cfg):
    """Refuse (ConfigError, one line) a top-level key neither config.py nor the board knows
    (keys starting with "_" are comments), a board section that is not an object and a key
    of one it does not have, and a services.sockets that is not a count. Called before the watchdog starts (board.main then stays at the REPL: a
    reset would not mend the file) and by admin.status()."""
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
    limit = (cfg.get("services") or {}).get("sockets", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ConfigError("config: services.sockets must be how many sockets this firmware has (0: no check)")


def sockets(cfg):
    """The warning (one line) for a config that can hold more sockets at once than the board has
    (_ESP32_SOCKETS), or None. A warning, not a refusal: past the limit a new connection is closed
    by lwIP at its accept and a fetch or NTP query fails and is tried again later; the board
    lives on and no mail is lost (host_tests/test_socket_exhaustion.py), and the count is of what
    may coincide (waiting connections and the NTP query are brief). cfg checked by check()."""
    sv = cfg.get("services") or {}
    limit = sv.get("sockets", _ESP32_SOCKETS if sys.platform == "esp32" else 0)
    if not limit or "server" not in cfg:
        return None
    parts = []
    total = 0
    for name, key, ports, on in (("pop3", "server", ("port", "pop3s_port"), sv.get("server", _SERVICE_SERVER)),
                                 ("smtp", "smtp", ("port", "submission_port", "smtps_port"),
                                  sv.get("smtp", _SERVICE_SMTP) and cfg["smtp"]["domains"])):
        c = cfg[key]
        if on:
            n = 0
            for p in ports:  # (the implicit-TLS ports listen only with a certificate)
                if c[p] and (p not in ("pop3s_port", "smtps_port") or cfg["server"]["cert"]):
                    n += 1
            w = _WAITING if c["slot_wait"] > 0 else 0
            total += n + c["max_sessions"] + w
            parts.append("%s %d ports + %d sessions + %d waiting" % (name, n, c["max_sessions"], w))
    acc = cfg.get("accounts") or ()
    if sv.get("fetch_interval_s", _FETCH_INTERVAL_S) and acc:
        total += len(acc)
        parts.append("fetch %d (one per account)" % len(acc))
    if (cfg.get("ntp") or {}).get("host", board.NTP_HOST):
        total += 1
        parts.append("ntp 1")
    if total <= limit:
        return None
    return ("sockets: this config can hold %d sockets at once (%s), this board has %d (lwIP's "
            "CONFIG_LWIP_MAX_SOCKETS; \"services\": {\"sockets\": N} for another firmware): when they "
            "coincide, a new connection is dropped at its accept and a fetch or NTP query fails until a socket "
            "frees (tried again later; no mail is lost); to avoid it lower server.max_sessions or "
            "smtp.max_sessions, set a slot_wait to 0 (no waiting room), turn a port off (0) or fetch fewer "
            "accounts (boards/*/BUDGET.md, \"Sockets\")" % (total, "; ".join(parts), limit))


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
    w = sockets(cfg)
    if w:
        log.warning(w)
    hw = r.hw
    wd = board._section(cfg, "watchdog")
    timeout = wd.get("timeout_ms", WDT_TIMEOUT_MS)
    if hw.make_wdt is not None and timeout:
        r.watchdog = board.Watchdog(hw.make_wdt(timeout), timeout)
        r.tasks.append(asyncio.create_task(r.watchdog.keep()))
    w = board._section(cfg, "wifi")
    if hw.wlan is not None:
        secrets = load_secrets(secrets_path or w.get("secrets", board.SECRETS_PATH))
        if secrets is not None:  # the keys the config sets; the rest keep board.Wifi's defaults
            kw = dict((k, w[k]) for k in ("backoff_ms", "backoff_max_ms", "connect_timeout_ms", "check_ms") if k in w)
            r.wifi = board.Wifi(hw.wlan, secrets["ssid"], secrets.get("password", ""), secrets.get("hostname"), **kw)
            await r.wifi.connect(w.get("retries", _WIFI_RETRIES))
            r.tasks.append(asyncio.create_task(r.wifi.keep()))
    n = board._section(cfg, "ntp")
    if hw.ntptime is not None and n.get("host", board.NTP_HOST):
        kw = dict((k, n[k]) for k in ("host", "interval_s", "retry_s") if k in n)  # as for Wi-Fi
        r.clock = board.Clock(hw.ntptime, **kw)
        r.tasks.append(asyncio.create_task(r.clock.keep(r.wifi)))
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
