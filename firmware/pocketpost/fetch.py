"""CLI: fetch the accounts of a JSON config into their local mailboxes, printing progress.

Host:  MICROPYPATH=firmware:.frozen micropython -m pocketpost.fetch [-v] config.json [account]   (-h: help)
       (".frozen" keeps the port's frozen asyncio importable once MICROPYPATH is set)
       python -m pocketpost.fetch [-v] config.json [account]   (CPython, PYTHONPATH=firmware)
Board: from pocketpost import fetch; fetch.main("config.json", "isp")

Per stored message a progress line gives its local UID and size; with -v (main's `headers`) also
its From and Subject, parsed while it streams in (headers.py and its parser, ~6.6 KB of heap on
the 64-bit unix port, are loaded only then).

The config is read with `config.load(path, False)` (the sections a fetch uses, "store", "accounts"
and "log", with their defaults, checked; the server's sections are left unchecked: serverconf.py
is never loaded) and the store opened with `config.open_store(cfg)`, exactly as the server opens
it: "store" gives "root" (default "/flash/mail", so a host config names its own), "quota" and
"reserve"; "log.level" is the log level (POCKETPOST_LOG overrides it). "accounts" is a list of
account objects (see client.account_from_dict). A relative root, state_dir or ca is taken from the
config file's folder (fetchload.load), so a cron job need not cd first; on a board "config.json"
names no folder and the cwd is /.
Heap (MicroPython): the start (fetchargs.py: the command line; fetchload.py: the load; each dropped after it)
imports config.py for the load and drops it after it when this call loaded it (a fetch never
needs it again), with heapmark.py (used once, to set the GC threshold); then each local mailbox
is opened (the store's first open after boot loads its loading code, storemerge.load, and its
recovery, storescan.py, only if the mailbox needs repair, for the call); the client is imported
after that, and drops its own cold modules once used (clientconf, uidcompact, clientauth,
pop3listing, clientplan, clientget, clientend, clientrecover). The store's session side
(storesession.py: lock, Mailbox, deletion commit) loads only to reconcile a fetch cut short by a
crash (clientrecover.py).
Exit status: 0 when every account fetched, 1 otherwise (also when an account's UIDL state is full and new
mail waits: max_entries; a session that filled it and deleted messages is followed by the next at
once, up to _SESSIONS: past them, a FAILED line says how many messages wait), 2 for a config that
does not load or the arguments are wrong (0 for -h); 1 also when another fetch holds the store
(fetchload.lock) or the config has no account of the name given (fetchload.load: its names said).
"""

import gc
import sys

from pocketpost import compat
from pocketpost.compat import const

# Sessions of one account in a run while each fills max_entries and deletes: 64 x 500 messages.
_SESSIONS = const(64)
_T_SESSIONS = const(20)  # clientfail.TEXTS's: the sessions ran out (a private copy)


def on_message(info):
    # The progress line of one stored message (client.fetch_account's on_message).
    h = info["headers"]
    print(
        "  %s %d bytes%s%s"
        % (info["local_uid"], info["size"], " (headers only)" if info["headers_only"] else "",
           "" if h is None else "  From: %s  Subject: %s" % (h.get("from", "?"), h.get("subject", "")))
    )


def line(k, *args):
    """Print main's line k about an account's sessions (fetchargs.line: its texts are cold, loaded
    for each line and dropped after it on MicroPython, never held while a session runs; main
    prints them before and after a session, when the session holds no heap). In fetchargs.py
    (~2.4 KB of .mpy), not fetchload.py (~4.9 KB: the load's code came in for one line): after a
    session, whose heap is cut up by what it left, the bigger load failed now and then at a size
    where the fetch itself passes (bench_client.py's heap line, which wants the line, 2-3 KiB
    above bench_heap.py's d, and the 10 MiB message above the 1 KiB one: issue 12)."""
    try:
        # A collection first: the module's pieces go to the lowest holes. Loaded among the
        # session's garbage, they went above it, and the collection the load then needed freed
        # holes between them (the 10 MiB message's line failed 14 times in 20 at 88 KiB, 0 after).
        gc.collect()
        from pocketpost import fetchargs

        fetchargs.line(k, *args)
    except MemoryError:  # no heap for the texts (what holds it is not this run's): the figures bare
        print("fetch", k, *args)
    finally:
        fetchargs = None
        compat.forget(("fetchargs",))
        gc.collect()  # its code freed now: the session after it finds the heap as before it


def main(config_path, only=None, log_level=None, headers=False):
    # The config loaded, the log level set, the store opened and each local mailbox loaded
    # (fetchload.py: loaded for it, dropped after it; nothing of it is held while accounts fetch)
    from pocketpost import fetchload

    r = lk = None
    try:
        try:
            r = fetchload.load(config_path, only, log_level)
        finally:  # (its forget may find no heap: r, and so the lock, is released below all the same)
            fetchload = None
            compat.forget(("fetchload",))
        if not isinstance(r, tuple):
            return r or 2  # (1: another fetch holds the store, fetchload.lock)
        store, accounts, failed, lk = r  # (failed: the accounts refused before any fetch, fetchload.renamed)
        r = None
        from pocketpost import client

        done = 0
        for acct in accounts:
            if only is not None and acct.get("name") != only:
                continue
            done += 1
            line(0, acct.get("name"), acct.get("user"), acct.get("host"))
            for _ in range(_SESSIONS):
                try:
                    st = client.fetch_account_sync(acct, store, on_message, None, headers)
                except Exception as e:  # one failing account must not stop the others
                    failed += 1
                    line(1, acct.get("name"), type(e).__name__, e)
                    break
                line(2, st)
                if not st["state_full"]:
                    break
                if not st["deleted"]:  # new mail waits (logged as an error): a cron job must see it
                    failed += 1
                    break
                # The state held max_entries, and this session's deletions (committed at its QUIT)
                # freed entries: the next session at once (each one shrinks the server's mailbox).
            else:  # (a server that keeps what it deleted would have this go on): said, exit 1
                failed += 1
                print(client._failed("text", _T_SESSIONS, acct.get("name"), _SESSIONS, st["on_server"] - st["deleted"]))
        if not done and not failed:  # (not a failure: nothing to do; but say so, or a run prints nothing at all)
            line(4, config_path)
        return 1 if failed else 0
    finally:
        if isinstance(r, tuple):
            lk = r[3]
        if lk:  # the host's fetch lock (fetchload.lock) released
            import os

            try:
                os.remove(lk + "/pid")
                os.rmdir(lk)
            except OSError:  # deleted by hand during the run (its refusal line says to): the status stays
                pass


if __name__ == "__main__":
    # The command line read by fetchargs.command_line (cold: its texts, -h's too, are not held
    # while accounts fetch, nor at fetchload's load of the config and the store, a peak of the heap)
    from pocketpost import fetchargs

    _args = fetchargs.command_line(sys.argv[1:])
    fetchargs = None
    compat.forget(("fetchargs",))
    gc.collect()  # its code freed before fetchload's comes in: the load's peak finds the heap as before
    sys.exit(_args if isinstance(_args, int) else main(*_args))
