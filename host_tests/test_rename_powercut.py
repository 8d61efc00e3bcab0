"""Power-cut sweep for the fetch account rename (fetchrename.py: admin.rename_account, ppadmin
rename-account) on littlefs (VfsLfs2 on a simulated flash, host_tests/dual/flashdev.py), under
the real micropython binary: the rename of account isp to home is cut at every program/erase
operation of the flash, in the three modes (raise, drop, torn). The state it moves is a fetch's
cut after two store commits: isp.uidl with entries, isp.who, and two pending entries in the slot
files isp.uidl0 and isp.uidl1 (uidstate.py), with isp.oauth and the secrets in secrets.json.

After each cut (the image remounted as it was when power died) one of two things must hold:
  - the account the config names passes the fetch's check (fetchload.renamed, as the fetch CLI
    and the board ask it) and its state files are all there under its name, byte for byte, its
    secrets too: a fetch then stores nothing twice and loses nothing;
  - or the check refuses it, saying to run the rename again.
Then the rename run again must finish it: config.json names home, every state file is home's,
byte for byte (the load finds both pending entries), secrets.json has home's secrets and not
isp's, and the other account of the same state_dir is untouched and passes the check throughout.

Run by pytest (test_rename_power_cuts runs this file under micropython), or directly:
    MICROPYPATH=firmware:host_tests/dual .venv/bin/micropython -X heapsize=16M host_tests/test_rename_powercut.py
"""

import sys

IS_MP = sys.implementation.name == "micropython"
MOUNT = "/rcut"
CONFIG = MOUNT + "/config.json"
STATE = MOUNT + "/state"
SHA = "a" * 40
ISP = {"name": "isp", "host": "Pop.Example.org", "user": "alice", "policy": "keep"}
OTHER = {"name": "other", "host": "pop.example.org", "user": "bob", "policy": "keep"}
SECRETS = {"accounts": {"isp": {"password": "pw isp"}, "other": {"password": "pw other"}}, "wifi": {"ssid": "s"}}


def _base(who):
    """The image the sweep starts from (with or without isp.who: a state written before .who
    files were), and the state files' bytes by name."""
    import json
    import os

    from flashdev import FlashDev, mount_fresh, umount
    from pocketpost.uidstate import UidState
    import vfs

    dev = FlashDev(blocks=32)
    vfs.VfsLfs2.mkfs(dev)
    mount_fresh(dev=dev, at=MOUNT)
    with open(CONFIG, "w") as f:
        f.write(json.dumps({"store": {"root": "mail"}, "accounts": [ISP, OTHER]}))
    with open(MOUNT + "/secrets.json", "w") as f:
        f.write(json.dumps(SECRETS))
    os.mkdir(STATE)
    for name in ("other", "isp"):
        st = UidState(STATE, name, 50).load()
        for i in range(5):
            st.add(b"%s-%d" % (name.encode(), i), 1700000000 + i)
        st.save()  # (a new state: compacted, its eight slot files made empty)
        if name == "isp":
            for i in (5, 6):  # two downloads committed, recorded in slots 0 and 1 only (a cut)
                st.set_pending(100 + i, SHA, "aa.%d" % i, 1700000000 + i, "f", b"isp-%d" % i)
                st.save(1)
                st.add(b"isp-%d" % i, 1700000000 + i)
                st.clear_pending()
        with open("%s/%s.who" % (STATE, name), "w") as f:
            f.write("%s\n%s" % ((ISP if name == "isp" else OTHER)["user"], "pop.example.org"))
    with open(STATE + "/isp.oauth", "w") as f:
        f.write('{"from": "x", "refresh_token": "y"}')
    if not who:
        os.remove(STATE + "/isp.who")
    files = {}
    for n in os.listdir(STATE):
        with open(STATE + "/" + n, "rb") as f:
            files[n] = f.read()
    umount(MOUNT)
    return dev.image(), files


def _accounts():
    """The config's accounts, state_dir as the fetch takes it (fetchload.load), secrets merged."""
    from pocketpost import config

    cfg = config.merge_secrets(config.load_raw(CONFIG), MOUNT + "/secrets.json")
    for a in cfg["accounts"]:
        a["state_dir"] = STATE
    return cfg["accounts"]


def _whole(name, files, ctx, who=True):
    """The state files of `files` (isp's) are all there under `name`, byte for byte, with a .who
    as the rename writes it (who False: or none yet, the rename cut before it moved isp.who: a
    fetch writes it, clientconf._owner)."""
    import os

    # (a .who.tmp a cut left: the next write of that .who, the rename's or a fetch's, replaces it)
    have = sorted([n for n in os.listdir(STATE) if n.startswith(name + ".") and (who or not n.endswith(".tmp"))])
    want = sorted(set([name + n[3:] for n in files if n.startswith("isp.")] + [name + ".who"]))
    assert have == want or not who and have + [name + ".who"] == want, (ctx, name, have, want)
    for n in files:
        if n.startswith("isp.") and (n != "isp.who" or name + ".who" in have):
            with open(STATE + "/" + name + n[3:], "rb") as f:
                assert f.read() == files[n], (ctx, name, n)
    if name + ".who" in have:
        with open(STATE + "/" + name + ".who") as f:
            assert f.read() == "alice\npop.example.org", (ctx, name)


def check(files, ctx):
    """After a cut: the config's account fetches whole or is refused with the way on; the rename
    run again finishes it."""
    from pocketpost import fetchload, fetchrename, log

    log.set_level("error")  # (the secrets entry of a name not configured: a warning per load)
    accts = _accounts()
    a = accts[0]
    assert a["name"] in ("isp", "home") and accts[1]["name"] == "other", (ctx, a)
    assert a.get("password") == "pw isp" and accts[1].get("password") == "pw other", (ctx, accts)
    assert fetchload.renamed(accts[1], accts) is None, ctx
    why = fetchload.renamed(a, accts)
    if why is None:
        _whole(a["name"], files, ctx, False)
    else:
        assert "rename_account" in why and "rename-account" in why, (ctx, why)
    fetchrename.rename("isp", "home", CONFIG)
    accts = _accounts()
    assert [x["name"] for x in accts] == ["home", "other"], (ctx, accts)
    assert accts[0]["password"] == "pw isp", (ctx, accts)
    assert fetchload.renamed(accts[0], accts) is None and fetchload.renamed(accts[1], accts) is None, ctx
    _whole("home", files, ctx)
    import json

    with open(MOUNT + "/secrets.json") as f:
        assert sorted(json.load(f)["accounts"]) == ["home", "other"], ctx


def pendings_found():
    """The two pending entries of the slots, found under home once renamed (the load's and
    clientrecover's reading of them: a setup that left no current slot would test nothing)."""
    from pocketpost import clientrecover
    from pocketpost.uidstate import UidState

    st = UidState(STATE, "home", 50).load()
    return len(st), [p[2] for p in clientrecover.pendings(st)]


def run_one(base, files, cut_at, mode):
    from flashdev import FlashDev, cut_power, mount_fresh, umount
    from pocketpost import fetchrename

    dev = cut_power(base, cut_at, mode, MOUNT, lambda dev: fetchrename.rename("isp", "home", CONFIG))
    mount_fresh(dev=FlashDev(data=dev.image()), at=MOUNT)
    try:
        check(files, (mode, cut_at))
        if not cut_at:
            found = pendings_found()
            assert found == (5, ["aa.5", "aa.6"]), found
    finally:
        umount(MOUNT)
    return dev.ops


def main():
    import time

    from flashdev import cut_at_every_op

    t0 = time.ticks_ms()
    covered = 0
    for who in (True, False):
        base, files = _base(who)
        total = run_one(base, files, 0, "raise")
        covered += cut_at_every_op(total, lambda n, mode: run_one(base, files, n, mode))
    print("RENAME POWERCUT OK: %d cut points in %d ms" % (covered, time.ticks_diff(time.ticks_ms(), t0)))


if IS_MP and __name__ == "__main__":
    from flashdev import shard_report

    main()
    shard_report()


def test_rename_power_cuts():
    from helpers import run_sweep

    run_sweep("host_tests/test_rename_powercut.py", "RENAME POWERCUT OK", timeout=900)
