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
