"""Renaming a fetch account: its "name" in config.json, its secrets (secrets.json "accounts")
and its state files in state_dir (`<name>.uidl`, `<name>.who`, the slot files `<name>.uidl0` ...
`<name>.uidl7`, uidstate.py, and `<name>.oauth`, oauth2.py), which are found by that name: a
state left under the old name is not this account's, and every message kept on the server is
fetched again; a slot file left behind loses the pending entry of a download a power cut stopped
after its commit, which is then stored a second time. admin.rename_account (the REPL) and
tools/ppadmin.py rename-account (a host config or an image) run `rename`. Cold code: loaded for
a rename only.

The order (each step one atomic write or rename), and what a power cut after each leaves:
  1. `<old>.who` written when the state has none (the user and host of the config, as a fetch
     writes it, clientconf._owner): step 4's refusal needs it; a `.who` of another user or host
     refuses the rename (the state is not this account's mailbox: clientconf._owner's words).
  2. secrets.json: the account's secrets copied under the new name (the old entry kept): the
     config names the old one, complete (a secrets entry of a name not in the config: a warning).
  3. config.json names the new name.
  4. the slot files, then `<old>.oauth`, renamed to the new name's: the new name has no `.uidl`
     or `.who` while `<old>.uidl` and `<old>.who` (the same user and host) are there: the fetch
     CLI and the board refuse it (fetchload.renamed), saying to run the rename again.
  5. `<old>.uidl` renamed: the state is whole under the new name from here.
  6. `<old>.who` renamed; 7. the old secrets entry dropped (until then a warning at each load).
Run again with the same two names, `rename` finishes what a cut stopped: the config naming the
new name already, it moves what is left of the old name's files and drops its secrets entry.
(host_tests/test_rename_powercut.py cuts the power at every flash operation of it, in three modes;
test_fetch_rename.py fetches from Dovecot after it.)
A temp file `<old>.uidl.tmp` (a compaction a cut stopped: its state file is whole) is deleted.
"""

import os

from pocketpost import compat
from pocketpost.compat import ConfigError, const

_SLOTS = const(8)  # uidstate's (a private copy)


def _files():
    """The account's state files, by suffix, in the order they are moved (the docstring's steps 4-6)."""
    return [".uidl%d" % k for k in range(_SLOTS)] + [".oauth", ".uidl", ".who"]


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def rename(old, new, config_path="config.json"):
    """Rename fetch account `old` to `new` in config_path, its secrets file and its state_dir
    (the order: the module docstring); or finish such a rename a power cut stopped (config_path
    naming `new` already). Returns a line saying what was done; a refusal raises ConfigError."""
    from pocketpost import config

    raw = config.load_raw(config_path)
    accounts = raw.get("accounts") or []
    names = [a.get("name") if isinstance(a, dict) else None for a in accounts]
    if not isinstance(new, str) or not new or [c for c in new if not (c.isalpha() or c.isdigit() or c in "._-")]:
        raise ConfigError("account name %r: give one of letters, digits and . _ - (README \"Fetching mail\": name)" % (new,))
    if old == new or (old in names) == (new in names):
        raise ConfigError("rename account %s to %s: %s (accounts in %s: %s)" % (
            old, new, "the same name" if old == new else "both are in the config" if old in names else "neither is in the config",
            config_path, ", ".join([str(n) for n in names]) or "none"))
    a = accounts[names.index(old if old in names else new)]
    d = a.get("state_dir", "state")
    i = config_path.rfind("/")
    if i >= 0:  # relative to the config's folder, as fetchload.load takes it
        d = compat.join(config_path[:i + 1], d)
    src = compat.join(d, old)
    dst = compat.join(d, new)
    if old in names:  # a rename begun now
        there = [new + x for x in _files() if compat.exists(dst + x)]
        if there:
            raise ConfigError("rename account %s to %s: %s already holds %s: delete them if they are left over from "
                              "an account of that name, or choose another name" % (old, new, d, ", ".join(there)))
        user = a.get("user")
        who = "%s\n%s" % (user, str(a.get("host")).lower())
        now = _read(src + ".who")
        if now is not None and now != who and now != user:
            raise ConfigError("rename account %s to %s: its UIDL state %s.uidl is for %s, not %s at %s: fetch it "
                              "once first (it says what to do)" % (old, new, src, now.replace("\n", " at "), user, a.get("host")))
        if now is None and compat.exists(src + ".uidl"):
            with open(src + ".who.tmp", "w") as f:  # (step 1)
                f.write(who)
                compat.sync_file(f)
            compat.rename(src + ".who.tmp", src + ".who")
            compat.sync_dir(d)  # (on a host: durable before step 3 names the new name)
    elif compat.exists(src + ".uidl") and compat.exists(dst + ".uidl"):
        raise ConfigError("finish renaming account %s to %s: %s holds both %s.uidl and %s.uidl: keep the one that is "
                          "this account's state (the other's mail may be fetched again)" % (old, new, d, old, new))
    path = config.secrets_path(config_path, raw)
    try:
        sec = config.load_raw(path)
    except OSError:
        sec = None
    sa = sec.get("accounts") if sec else None
    sa = sa if isinstance(sa, dict) and old in sa else None
    save = __import__("pocketpost.configsave", None, None, ("save",)).save
    if sa is not None and new not in sa:  # (step 2)
        sa[new] = sa[old]
        save(path, sec)
    if old in names:  # (step 3)
        a["name"] = new
        save(config_path, raw)
    try:  # (a compaction's temp file: its state file is whole)
        os.remove(src + ".uidl.tmp")
    except OSError:
        pass
    moved = []
    for x in _files():  # (steps 4-6)
        if compat.exists(src + x):
            compat.rename(src + x, dst + x)
            compat.sync_dir(d)
            moved.append(new + x)
    if sa is not None:  # (step 7)
        del sa[old]
        save(path, sec)
    return "account %s renamed to %s in %s%s; state files in %s: %s" % (
        old, new, config_path, " and %s" % path if sa is not None else "", d, ", ".join(moved) or "none to move")
