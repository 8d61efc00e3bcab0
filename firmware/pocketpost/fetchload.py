"""The fetch CLI's start (fetch.main: load; its command line and lines are fetchargs.py's): the config loaded and checked, the log level set, the store opened and each
local mailbox loaded (recovered) before the client is imported. Cold code: fetch.main imports it
for this and, on MicroPython, drops it after it, with config.py and heapmark.py when
this call loaded them (a fetch never needs them again; docs/FIGURES.md); its qstrs stay. The
config is loaded without its server side (config.load(path, False): serverconf.py and auth.py
are never loaded, their names never interned: a fetch checks only "store", "accounts", "log")."""

import sys

from pocketpost import compat, log
from pocketpost.compat import IS_MICROPYTHON, const


def renamed(a, accounts):
    """Why account `a` must not fetch yet, or None: another of the config's `accounts` fetches
    the same server mailbox (user and host; each with its own UIDL state, every message would be
    stored twice: an account copied under a new name with the old one left in; on a board both
    fetch at once); or it has no UIDL state of its own, but its state_dir holds the state of an
    account no longer in the config for the same user (and host, where its .who records one:
    clientconf._owner): an account renamed in config.json whose state files were not. Fetching
    would take every message kept on the server for new and store it a second time (README:
    `name`). Or its state_dir holds the slot 0 (uidstate.py) of a name not in the config whose
    .uidl is gone, not empty: a rename that moved .uidl (and .who) but not the slot files, whose
    pending entry (a download a power cut stopped after its commit) is looked up only under the
    name it was written for: that message would be stored a second time. Which account it was
    renamed to is not on file: every account of that state_dir is refused, each told to take the
    files if it is the one. (Slot files whose slot 0 is empty or gone hold nothing a load reads:
    left alone; the rename tool, fetchrename.py, moves them too.) The board asks this at start too
    (boardstart.py)."""
    name = a.get("name")
    d = a.get("state_dir", "state")
    user = a.get("user")
    host = a.get("host")
    if not isinstance(name, str) or not isinstance(d, str) or not isinstance(host, str):
        return None  # (client.account_from_dict says what is wrong with it)
    names = []
    for x in accounts:
        names.append(x.get("name"))
        h = x.get("host")
        if x is not a and x.get("user") == user and isinstance(h, str) and h.lower() == host.lower():
            return ("accounts %s and %s both fetch %s's mailbox at %s: each message would be stored twice; "
                    "keep one of them (renamed: README \"Fetching mail\", name)" % (name, x.get("name"), user, host))
    mine = compat.exists(compat.join(d, name + ".uidl")) or compat.exists(compat.join(d, name + ".who"))
    try:
        files = compat.listdir(d)
    except OSError:
        return None
    for f in files:
        if f[-6:-1] == ".uidl" and f[-1:] == "0":  # <old>.uidl0, a slot 0
            old = f[:-6]
            s = compat.stat_or_none(compat.join(d, f))
            if old in names or not (s and s[6]) or compat.exists(compat.join(d, old + ".uidl")):
                continue
            return ("account %s: %s/%s.uidl0 and the other slot files %s.uidl1 ... %s.uidl7 are of an account %s no "
                    "longer in the config whose %s.uidl is gone (a rename that left them behind): a message a power "
                    "cut left pending in them would be stored a second time. If %s was renamed to %s, rename each "
                    "%s.uidl<k> file to %s.uidl<k>; if not, delete them. (A rename begun by admin.rename_account or "
                    "ppadmin rename-account: run it again to finish it.)"
                    % (name, d, old, old, old, old, old, old, name, old, name))
        old = f[:-4]
        if mine or f[-4:] != ".who" or old in names or not compat.exists(compat.join(d, old + ".uidl")):
            continue
        try:
            with open(compat.join(d, f)) as h:
                who = h.read()
        except OSError:
            continue
        if who == user or who == "%s\n%s" % (user, host.lower()):
            # (its slot files <old>.uidl0 ... too: a pending entry a cut left in one is looked up only
            # under the name it was written for, else that message is stored a second time)
            return ("account %s: its UIDL state %s/%s.uidl does not exist, but %s/%s.uidl, of an account %s no "
                    "longer in the config, is for the same user %s: if the account was renamed, rename %s.who "
                    "and each %s.uidl* file to %s.who and %s.uidl* (else every message kept on the server is "
                    "stored a second time; or run admin.rename_account / ppadmin rename-account with the two names: "
                    "it finishes a rename it began); if not, delete them" % (name, d, name, d, old, old, user, old, old, name, name))
    return None


_GUARD_STALE_S = const(60)  # a takeover guard (or a pid-less lock) older than this was left by a killed run


def _stale(path):
    """Is the directory `path` older than _GUARD_STALE_S (held for milliseconds: a killed run's)?"""
    import os
    import time

    return time.time() - os.stat(path)[8] > _GUARD_STALE_S


def lock(root):
    """On a host (a Linux /proc: a board runs one fetch at a time in one process), take the store's
    fetch lock, the directory <root>.fetch-lock holding the pid: its path; None where there is no
    /proc (a board); 1 (the exit status) after a line saying why not: a fetch of another process
    (a cron run overlapping a slow one) holds it. Two at once would download the same messages
    and collide in the store and in the UIDL state. A lock left by a killed run (its pid gone) is
    taken over, by one run at a time: a run that finds it makes the guard directory
    <root>.fetch-lock.takeover first (one mkdir wins; the others look at the lock again a moment
    later) and removes the dead lock only if it still holds the pid found dead, then all take
    the free lock as at first (one mkdir wins). (Without the guard, runs started together after
    a killed one each removed "the dead lock", a later one the new lock of an earlier one, and
    both fetched: every message twice.) A guard left by a run killed right then is removed by
    the next run that holds the lock, or, when the lock is a dead run's, once it is older than
    _GUARD_STALE_S. A lock without a pid (a run killed between the lock's mkdir and its pid, or
    between its release's two steps) is taken over as a dead run's once older than _GUARD_STALE_S,
    and said with what to delete until then."""
    try:
        with open("/proc/self/stat") as f:
            pid = f.read().split(" ", 1)[0]
    except OSError:
        return None
    import os
    import time

    path = root.rstrip("/") + ".fetch-lock"
    guard = "%s.takeover" % path
    other = ""
    for _ in range(10):  # (waits of 0.2 s: a lock being made, or taken over by another run)
        try:
            # The lock sits beside the store: their folder made first. A root naming no folder is
            # in the current one (not the root itself made: a rename left an empty store behind).
            compat.makedirs(path[:path.rfind("/") + 1] or ".")
            os.mkdir(path)
        except OSError as e:
            if compat.errno_of(e) != compat.EEXIST:
                return None  # (no lock where none can be made: the store's open says what is wrong)
            try:
                with open(path + "/pid") as f:
                    other = f.read().strip()
            except OSError:
                other = ""  # (being made: looked at again; left by a run killed right then: taken over once stale)
            alive = False
            if other:
                try:  # whether its process still runs a fetch (another program under a reused pid: no)
                    with open("/proc/%s/cmdline" % other, "rb") as f:
                        alive = b"fetch" in f.read()
                except OSError:
                    pass
            if alive:
                break
            try:  # pid-less for over _GUARD_STALE_S: a run killed between its mkdir and its pid's write,
                # or between its release's two steps (a MemoryError, Ctrl-C or kill there)
                dead = other or _stale(path)
            except OSError:
                dead = False  # (released meanwhile: looked at again)
            if dead:  # a killed run's lock
                try:
                    os.mkdir(guard)  # this run takes it over
                except OSError:  # another run does (the lock is looked at again), or a killed one did:
                    try:  # a guard is held for ms: one older than _GUARD_STALE_S was left by a killed
                        # run; renamed to a name of this run's first (of runs finding it so, one wins)
                        if _stale(guard):
                            os.rename(guard, guard + pid)
                            os.rmdir(guard + pid)
                            continue
                    except OSError:
                        pass
                    time.sleep(0.2)
                    continue
                try:
                    try:
                        with open(path + "/pid") as f:
                            now = f.read().strip()
                    except OSError:
                        now = ""
                    # (else another run's new lock since: its pid, or none yet and young)
                    if now == other and (other or _stale(path)):
                        if other:
                            os.remove(path + "/pid")
                        os.rmdir(path)
                except OSError:
                    pass
                try:
                    os.rmdir(guard)
                except OSError:  # (deleted by hand meanwhile: nothing to undo)
                    pass
                continue
            time.sleep(0.2)
            continue
        try:
            with open(path + "/pid", "w") as f:
                f.write(pid)
        except BaseException:  # (no heap or flash for it: a lock without a pid would stop every run after)
            release(path)
            raise
        try:  # a guard left by a run killed in its takeover would stop the next one: with a live
            os.rmdir(guard)  # pid in the lock no run removes the lock (not the dead pid it read)
        except OSError:
            pass
        return path
    if alive or not other:
        print("fetch: another fetch (pid %s) is using the store %s: nothing fetched by this run; if no fetch is "
              "running, delete the directory %s%s" % (other or "?", root, path,
                                                     " and the directory %s" % guard if compat.exists(guard) else ""))
    else:  # a dead run's lock behind a takeover guard under _GUARD_STALE_S old: no fetch of pid `other` runs
        print("fetch: the store %s is locked by a fetch that is no longer running (pid %s), and %s says a run "
              "took that lock over less than %d s ago (it was killed then, or still is at it): nothing fetched by "
              "this run; a run after that minute takes the lock over by itself; if no fetch is running, delete "
              "the directory %s and the directory %s" % (root, other, guard, _GUARD_STALE_S, path, guard))
    return 1


def release(path):
    """Release the fetch lock `lock` took (its path; None: no lock); a pid file not written yet or
    a lock deleted by hand meanwhile (its refusal line says to) is no error. (Names a fetch already
    interns, the argument's too: each new one is kept for good, test_fetch_heap.)"""
    if path:
        import os

        try:
            os.remove(path + "/pid")
        except OSError:
            pass
        try:
            os.rmdir(path)
        except OSError:
            pass


def load(config_path, only, log_level):
    """(store, the config's accounts to fetch, the count of those refused: renamed, said here, the
    fetch lock's path or None: lock), or None when the config does not load (said in one line), or
    1 when another fetch holds the store, or the config has no account named `only` (said, with the
    names it has)."""
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
    # A mistyped section ("stor", "acounts") was left at its default, unsaid. The board refuses it
    # (boardstart.check, whose _TOP and _SECTIONS these are: test_review_w18_fetch keeps them
    # equal; boardstart is not imported here: it loads the board module); "_...": a comment.
    known = "store accounts log server users smtp services wifi ntp watchdog".split()
    for k in cfg:
        if k[:1] != "_" and k not in known:
            print("fetch: %s: config: unknown section \"%s\" (sections: %s)" % (config_path, k, ", ".join(known)))
            return None
    # A config named with its folder d (the host's fetch CLI, from cron or any directory): its
    # relative store.root and each account's state_dir and ca are taken from d, as a board takes
    # them from config.json's folder, its current directory (a board's "config.json" names no
    # folder), and as ppadmin's export/import do. (A store an older version made in the current
    # directory: fetchargs.py. Inline, and no new short literal: each name a fetch interns is kept
    # for good, test_fetch_heap.)
    i = config_path.rfind("/")
    if i >= 0:
        d = config_path[:i + 1]
        root = cfg["store"]["root"]
        cfg["store"]["root"] = compat.join(d, root)
        for a in cfg["accounts"]:
            s = a.get("state_dir", "state")
            if not isinstance(s, str) or not isinstance(a.get("ca", ""), str):
                continue  # (client.account_from_dict says what is wrong with it)
            a["state_dir"] = compat.join(d, s)
            if a.get("ca"):
                a["ca"] = compat.join(d, a["ca"])
    accounts = cfg["accounts"]
    names = [a.get("name") for a in accounts]
    if only is not None and only not in names:  # said before the store is opened or locked
        print("fetch: %s has no account named %s (%s)" % (
            config_path, only, "its accounts: " + ", ".join([str(n) for n in names]) if names else "it has no accounts"))
        return 1
    names = None
    log.set_level(log_level or cfg["log"]["level"])
    lk = lock(cfg["store"]["root"])  # before the store's open: it may roll another run's commit forward
    if lk == 1:
        return 1
    try:  # (the lock is fetch.main's to release once returned; released here on any other exit)
        try:
            store = config.open_store(cfg)  # the one place that turns cfg["store"] into a Store
        except OSError as e:  # (a root that is a file, say): one line, and the lock not left behind
            print("fetch: store %s cannot be opened (OSError %s): check config.json's store root" % (
                cfg["store"]["root"], compat.errno_of(e)))
            release(lk)
            return None
        config = None
        compat.forget(loaded)
        every = list(accounts)
        failed = 0
        for acct in every:
            if only is None or acct.get("name") == only:
                why = renamed(acct, every)
                if why:  # said here, in fetch.main's words (its lines: fetch.line), and not fetched
                    from pocketpost import fetch

                    failed += 1
                    fetch.line(0, acct.get("name"), acct.get("user"), acct.get("host"))
                    fetch.line(1, acct.get("name"), "ConfigError", why)
                    accounts.remove(acct)
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
    except BaseException:  # (a MemoryError on the way)
        release(lk)
        raise
    return store, accounts, failed, lk
