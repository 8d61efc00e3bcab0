"""The fetch CLI's texts: its command line (fetch.py run as a program: its arguments read, -h's
text, the usage line) and fetch.main's lines about an account's sessions (line, through
fetch.line). Cold: fetch.py imports it for each and drops it (MicroPython): before fetch.main
loads fetchload.py for the config's load and the store's open, one of the fetch's heap peaks
(these texts there cost the fetch CLI's smallest heap 1 KiB), and after each line. The lines were
fetchload.py's until issue 12's flat heap: loading that module (~11 KB allocated on the 64-bit
port) after a long session, into a heap cut up by it, failed now and then at sizes where the fetch
itself passed (the line then came out bare). Texts in locals and options as words of a longer
text: a global's name or a short literal would be interned at the load, a name held for good
(test_fetch_heap counts them)."""


def command_line(argv):
    """fetch.py's arguments ([-v] config.json [account], the options anywhere) as fetch.main's
    (config_path, only, log_level, headers), the log level from POCKETPOST_LOG; or the exit
    status: 0 after -h's text, 2 after the usage line (an unknown option, too few or too many)."""
    usage = "usage: micropython -m pocketpost.fetch [-v] config.json [account]"
    opts = "-v --verbose -h --help".split()
    verbose = False
    args = []
    for a in argv:
        if a[:1] != "-" or a == "-":
            args.append(a)
        elif a in opts[:2]:
            verbose = True
        elif a in opts[2:]:
            print(usage)
            print("""Fetch the mail of config.json's accounts (or of the one named) into their local mailboxes, from
any directory: secrets.json is read next to config.json, and a relative store root, state_dir or
ca is taken from config.json's folder (README "Fetching mail").
  -v, --verbose  also print each stored message's From and Subject
  -h, --help     this text
Log level: config.json's "log": {"level": "info"}; POCKETPOST_LOG=warning (debug, info, warning,
error) in front of the command overrides it: warning leaves out the INFO lines (cron).
Exit status: 0 every account fetched; 1 an account failed or its UIDL state is full, no account
has that name, or another fetch holds the store; 2 the config does not load, the arguments, or
an older version's store or UIDL state is in the current directory (it says what to move).""")
            return 0
        else:
            print("fetch: unknown option %s (-h: what it takes)" % a)
            print(usage)
            return 2
    if not args or len(args) > 2:
        print(usage)
        return 2
    i = args[0].rfind("/")
    if i >= 0:  # relative paths are config.json's folder's (fetchload.load), else the current directory's
        d = args[0][:i + 1]
        try:  # before stop 30: a store or UIDL state made here while d has none is said, nothing fetched
            # (a fresh UIDL state would fetch every message kept on the server again)
            import json

            with open(args[0]) as f:
                cfg = json.load(f)
            root = (cfg.get("store") or {}).get("root", "/flash/mail")
            for a in cfg.get("accounts") or ():
                s = a.get("state_dir", "state")
                for old in (root + "/" + str(a.get("mailbox", "inbox")) + "/index", s + "/" + str(a.get("name")) + ".uidl"):
                    if old[:1] != "/" and _exists(old) and not _exists(d + old):
                        print("fetch: %s: its relative paths are its folder's now, but an older version made %s here: "
                              "move store root \"%s\" and state_dir \"%s\" into %s, or give absolute paths; nothing "
                              "fetched" % (args[0], old, root, s, d))
                        return 2
        except (OSError, ValueError, AttributeError, TypeError):  # (a config that does not load: fetchload.load
            pass  # says what is wrong)
    lvl = None
    try:
        import os

        lvl = os.getenv("POCKETPOST_LOG")
    except (ImportError, AttributeError):
        pass
    return args[0], args[1] if len(args) > 1 else None, lvl or None, verbose


def line(k, *a):
    """fetch.main's line k (fetch.line): 0 an account's start (name, user, host), 1 its failure
    (name, exception class name, exception), 2 a session's figures (a: client.fetch_account's
    stats), 4 a config without accounts (its path). (No account of the name asked: load.)"""
    if k == 0:
        t = "fetch %s: %s@%s" % a
    elif k == 1:
        t = "fetch %s: FAILED: %s: %s" % a
    elif k == 2:
        s = a[0]
        t = ("fetch %s: %d fetched (%d bytes, %d headers only), %d skipped, %d deleted, %d left on server"
             % (s["account"], s["fetched"], s["bytes"], s["headers_only"], s["skipped"], s["deleted"],
                s["on_server"] - s["deleted"]))
    else:
        t = "fetch: %s has no accounts (\"accounts\": [...], README \"Fetching mail\")" % a
    print(t)


def _exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False
