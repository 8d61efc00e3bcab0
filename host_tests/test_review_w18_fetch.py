"""Defects found by using the fetcher as its users do (review w18): the fetch CLI (`micropython -m
pocketpost.fetch config.json`) run the way a user runs it, from the folder that holds config.json
and secrets.json, against a private Dovecot on loopback. Each test fails without its fix."""

import json
import os
import re
import subprocess

import pytest
from helpers import FIRMWARE, MICROPYTHON

PASSWORD = "wonder land"


def run_fetch(folder, *args, timeout=60):
    """`micropython -m pocketpost.fetch ARGS` from `folder`, as a user runs it."""
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":.frozen"
    r = subprocess.run([MICROPYTHON, "-m", "pocketpost.fetch"] + list(args), capture_output=True,
                       timeout=timeout, cwd=str(folder), env=env)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def user_folder(tmp, cfg, secrets):
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.json").write_text(json.dumps(cfg))
    (tmp / "secrets.json").write_text(json.dumps(secrets))
    return tmp


@pytest.fixture(scope="module")
def dc():
    from dovecot import Dovecot

    d = Dovecot(users={"alice": PASSWORD, "bob": PASSWORD})
    d.start()
    try:
        yield d
    finally:
        d.stop()


def dc_account(dc, **kw):
    a = {"name": "isp", "host": "localhost", "port": dc.sport, "user": "alice", "ca": dc.path("ca.der"),
         "mailbox": "alice", "timeouts": {"connect_timeout": 5, "read_timeout": 10}}
    a.update(kw)
    return a


def _retrieved(dc):
    """RETRs per session, from Dovecot's logout lines ("retr=N/bytes")."""
    return [int(n) for n in re.findall(r"retr=(\d+)/", dc.log())]


def test_a_message_larger_than_the_room_left_no_longer_holds_back_the_others(dc, tmp_path):
    """A 30 KB message first in the mailbox, a store quota of 20 KB: every run downloaded it,
    the store refused it at its end, and the run stopped there: the small messages after it were
    never fetched (run after run; on a board, every fetch_interval_s, the 30 KB again each time).
    Now a message whose LIST size is over the room left is not downloaded: it stays on the
    server, the messages that fit come in (and are deleted there under policy delete), and the
    run still fails (exit 1) naming the message and what to do."""
    big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 30
    small = [b"Subject: small %d\r\n\r\nsmall\r\n" % i for i in range(2)]
    dc.seed("alice", [big] + small)
    folder = user_folder(tmp_path, {"store": {"root": "mail", "quota": 20000, "reserve": 0},
                                    "accounts": [dc_account(dc, policy="delete")]},
                         {"accounts": {"isp": {"password": PASSWORD}}})
    before = len(_retrieved(dc))
    for _ in range(2):
        rc, out = run_fetch(folder, "config.json")
        assert rc == 1, out
        assert "message 1 (%d octets) left on the server" % len(big) in out, out
        assert "max_size" in out and "quota" in out, out
    assert dc.messages("alice") == [big], out  # the small ones fetched and deleted there
    assert _retrieved(dc)[before:] == [2, 0], dc.log()  # the big one never downloaded
    from pocketpost import store as storemod
    from pocketpost.store import Store

    import storeread

    storemod.reboot()
    got = storeread.messages(Store(str(folder / "mail")), "alice")
    assert sorted(got) == sorted(small), got


def test_a_second_account_for_the_same_server_mailbox_is_refused_before_it_stores_every_message_twice(dc, tmp_path):
    """An account block copied under a new name ("isp2") with the old one left in (a rename half
    done, or a second local mailbox wanted): both fetched alice's mailbox, each with its own UIDL
    state, and every message kept there was stored twice, run after run of new mail (exit 0). Now
    both are refused (exit 1), each naming the other, nothing fetched; so are they by the board
    (boardstart, as for a renamed account) and admin.fetch_now (fetchload.renamed)."""
    dc.seed("alice", [b"Subject: one\r\n\r\none\r\n", b"Subject: two\r\n\r\ntwo\r\n"])
    a = dc_account(dc, policy="keep")
    b = dict(a, name="isp2", host="LOCALHOST", mailbox="bob")  # (a DNS name: any case)
    c = dict(a, name="other", user="bob", mailbox="bob")  # another user at the same server: fetched
    folder = user_folder(tmp_path, {"store": {"root": "mail"}, "accounts": [a, b, c]},
                         {"accounts": {"isp": {"password": PASSWORD}, "isp2": {"password": PASSWORD},
                                       "other": {"password": PASSWORD}}})
    rc, out = run_fetch(folder, "config.json")
    assert rc == 1, out
    assert "accounts isp and isp2 both fetch alice's mailbox at localhost" in out, out
    assert "accounts isp2 and isp both fetch alice's mailbox at LOCALHOST" in out and "twice" in out, out
    assert "fetch other: 0 fetched" in out, out
    assert "  " not in out.split("fetch other:")[0], out  # no progress line before it: nothing stored
    from pocketpost import fetchload

    assert fetchload.renamed(c, [a, b, c]) is None
    d = dict(a, name="d", host="pop.example.org")  # the same user name at another server: fetched
    assert fetchload.renamed(d, [a, d]) is None and fetchload.renamed(a, [a, d]) is None


@pytest.mark.parametrize("typo", ["stor", "acounts", "acount"])
def test_a_mistyped_section_is_refused_by_the_fetch_cli(tmp_path, typo):
    """`"stor": {"root": "mail"}`: the fetch CLI ignored the section and stored the mail under the
    default root /flash/mail (on a host run as root: a /flash made at the filesystem's root, where
    the user never looks; else an OSError 13 about a store the user never named); `"acounts"`: "has
    no accounts", exit 0. The board refuses an unknown section (boardstart.check); now the fetch
    CLI does too, in one line, exit 2, before anything is made."""
    cfg = {"store": {"root": "mail"}, "accounts": [{"name": "isp", "host": "localhost", "port": 1, "user": "u", "verify": False}],
           "_comment": "keys starting with _ are comments", "services": {"fetch_interval_s": 600}}
    cfg[typo] = cfg.pop("store" if typo == "stor" else "accounts")
    folder = user_folder(tmp_path, cfg, {"accounts": {"isp": {"password": PASSWORD}}})
    rc, out = run_fetch(folder, "config.json")
    assert rc == 2, out
    assert 'unknown section "%s"' % typo in out and "store, accounts" in out, out
    assert sorted(os.listdir(str(folder))) == ["config.json", "secrets.json"]  # no store, no state made


def test_a_changed_password_says_where_the_password_lives(dc, tmp_path):
    """The password changed at the provider: the run said "check the user name and password", and
    the user looked in config.json, where no password is (it lives in secrets.json)."""
    folder = user_folder(tmp_path, {"store": {"root": "mail"}, "accounts": [dc_account(dc)]},
                         {"accounts": {"isp": {"password": "the old one"}}})
    rc, out = run_fetch(folder, "config.json")
    assert rc == 1, out
    assert "check the user name and password" in out and '"password" in secrets.json' in out, out


@pytest.mark.parametrize("policy", [None, "keep", "delete"])
def test_keep_days_without_its_policy_is_refused(dc, tmp_path, policy):
    """`"keep_days": 14` written without `"policy": "keep_days"` (or left in when the policy was
    changed): silently ignored, so nothing was ever deleted on the server by age (under the
    default policy keep, the provider's mailbox filled up, run after run, exit 0). Now the
    account is refused, saying which setting to add or remove; nothing is fetched."""
    dc.seed("alice", [b"Subject: one\r\n\r\none\r\n"])
    acct = dc_account(dc, keep_days=14)
    if policy:
        acct["policy"] = policy
    folder = user_folder(tmp_path, {"store": {"root": "mail"}, "accounts": [acct]},
                         {"accounts": {"isp": {"password": PASSWORD}}})
    rc, out = run_fetch(folder, "config.json")
    assert rc == 1, out
    assert 'keep_days is set but policy is "%s"' % (policy or "keep") in out and '"policy": "keep_days"' in out, out
    assert "  " not in out and not (folder / "state").exists(), out  # no message stored, no state made
    acct["policy"] = "keep_days"  # what it says: the account fetches
    folder = user_folder(tmp_path, {"store": {"root": "mail"}, "accounts": [acct]},
                         {"accounts": {"isp": {"password": PASSWORD}}})
    rc, out = run_fetch(folder, "config.json")
    assert rc == 0 and "1 fetched" in out, out


def test_the_fetch_clis_sections_are_the_boards():
    """fetchload.load's list of config sections is a copy of boardstart's (_TOP and _SECTIONS),
    which the fetch CLI does not import (it would load the board module): kept equal here."""
    from pocketpost import boardstart

    with open(os.path.join(FIRMWARE, "pocketpost", "fetchload.py")) as f:
        src = f.read()
    known = re.search(r'known = "([a-z ]+)"\.split\(\)', src).group(1).split()
    assert sorted(known) == sorted(boardstart._TOP + tuple(boardstart._SECTIONS))
