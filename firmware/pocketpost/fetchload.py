"""The fetch CLI's start: its command line read (command_line, for fetch.py run as a program), then
(fetch.main: load) the config loaded and checked, the log level set, the store opened and each
local mailbox loaded (recovered) before the client is imported. Cold code: fetch.main imports it
for this and, on MicroPython, drops it after it, with config.py and heapmark.py when
this call loaded them (a fetch never needs them again; docs/FIGURES.md); its qstrs stay. The
config is loaded without its server side (config.load(path, False): serverconf.py and auth.py
are never loaded, their names never interned: a fetch checks only "store", "accounts", "log")."""

import sys

from pocketpost import compat, log
from pocketpost.compat import IS_MICROPYTHON


def command_line(argv):
    """fetch.py's arguments ([-v] config.json [account]) as main's (config_path, only, log_level,
    headers), the log level from POCKETPOST_LOG; or 2 (the exit status) after the usage line."""
    verbose = bool(argv) and argv[0] == "-v"
    if verbose:
        argv = argv[1:]
    if not argv or len(argv) > 2:
        print("usage: micropython -m pocketpost.fetch [-v] config.json [account]")
        return 2
    lvl = None
    try:
        import os

        lvl = os.getenv("POCKETPOST_LOG")
    except (ImportError, AttributeError):
        pass
    return argv[0], argv[1] if len(argv) > 1 else None, lvl or None, verbose


def load(config_path, only, log_level):
    """(store, the config's accounts), or None when the config does not load (said in one line)."""
    # Only on MicroPython (its heap is the point; on CPython a second copy of a module later
    # imported again would only confuse class identities).
    loaded = []
    if IS_MICROPYTHON:
        loaded = [n for n in ("heapmark", "config") if "pocketpost." + n not in sys.modules]
    from pocketpost import heapmark

    heapmark.compact_gc()  # collect every heapmark.GC_THRESHOLD bytes: the large session buffers keep finding room
    heapmark = None  # (dropped with the config checks below when this call loaded it)
    from pocketpost import config

    try:
        cfg = config.load(config_path, False)  # not the server's sections (serverconf.py)
    except (config.ConfigError, OSError, ValueError) as e:  # one line, no traceback: say what to fix
        print("fetch: %s: %s" % (config_path, "file not found" if getattr(e, "errno", 0) == 2 else e))
        return None
    log.set_level(log_level or cfg["log"]["level"])
    store = config.open_store(cfg)  # the one place that turns cfg["store"] into a Store
    config = None
    compat.forget(loaded)
    accounts = cfg["accounts"]
    for acct in accounts:
        # Open (recover) each local mailbox before the client is imported: the first open after
        # boot loads the store's loading code (storemerge.load, and the recovery, storescan.py, ~7 KB,
        # if the mailbox needs repair; dropped after it), which
        # on top of the client and its session's buffers set the smallest heap. Best effort:
        # fetch_account opens it again and reports a failure. ("inbox": clientconf's default.)
        if only is None or acct.get("name") == only:
            try:
                store.usage(acct.get("mailbox", "inbox"))
            except Exception:
                pass
    return store, accounts
