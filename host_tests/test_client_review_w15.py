"""The fetcher as its users meet it (review, wave 15): against a private Dovecot on loopback, under
MicroPython through the CLI (`micropython -m pocketpost.fetch`), the cases a user runs into that the
other client tests do not reach: a mailbox another session holds ([IN-USE]), max_size raised after a
message was stored as headers only, ..."""

import poplib

import pytest
from dovecot import Dovecot
from test_client_dovecot import MESSAGES, PASSWORD, account, dc, local_messages, run_cli  # noqa: F401 (dc: a fixture)

LOCKED = """\
protocol pop3 {
  pop3_lock_session = yes
}
"""


@pytest.fixture(scope="module")
def dcl():
    d = Dovecot(users={"alice": PASSWORD}, extra=LOCKED)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def test_a_mailbox_another_session_holds_is_not_a_wrong_password(dcl, tmp_path):
    """Dovecot with pop3_lock_session: while another POP3 session (a mail client left open) holds
    the mailbox, the login is answered -ERR [IN-USE] (after Dovecot's ~10 s wait for the lock,
    within the client's default read_timeout of 30 s). The error names the account, host:port and
    command and says the mailbox is in use, not "check the user name and password"; once the other
    session ends, the next run fetches."""
    dcl.seed("alice", MESSAGES[:2])
    acct = account(dcl, tmp_path, auth="plain", timeouts={"read_timeout": 30})
    other = poplib.POP3("127.0.0.1", dcl.port, timeout=30)
    try:
        other.user("alice")
        other.pass_(PASSWORD)
        rc, out = run_cli(tmp_path, acct)
    finally:
        other.quit()
    assert rc == 1 and "FAILED" in out, out
    assert "isp localhost:%d" % dcl.sport in out and "AUTH PLAIN" in out, out
    assert "[IN-USE]" in out and "in use by another session" in out, out
    assert "check the user name and password" not in out, out
    assert local_messages(tmp_path / "store") == []
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "2 fetched" in out, out


def test_a_message_stored_as_headers_only_comes_whole_once_max_size_lets_it_through(dc, tmp_path):
    """oversize "headers": a message over max_size is stored as its header block, once. While it
    stays over max_size, later runs neither store it again nor delete it; once the user raises
    max_size above it (or sets 0), the next run fetches it whole, once, and policy delete may then
    delete it on the server (before, it stayed there for good and never came in whole)."""
    small = [b"Subject: s%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(3)]
    big = b"Subject: big\r\n\r\n" + b"a line of the big one\r\n" * 300
    dc.seed("alice", [small[0], big, small[1], small[2]])
    acct = account(dc, tmp_path, max_size=1000, oversize="headers")
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "4 fetched" in out and "1 headers only" in out, out
    for policy in ("keep", "delete"):  # still over max_size: nothing more, and never deleted
        acct["policy"] = policy
        rc, out = run_cli(tmp_path, acct)
        assert rc == 0 and "0 fetched" in out, out
    assert dc.messages("alice") == [big]
    acct["max_size"] = 100000
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "1 fetched (%d bytes, 0 headers only)" % len(big) in out and "1 deleted" in out, out
    assert dc.messages("alice") == []
    got = local_messages(tmp_path / "store")
    assert sorted(got) == sorted(small + [b"Subject: big\r\n\r\n", big]), got  # the header copy stays
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "0 fetched" in out, out


def test_an_account_renamed_in_the_config_is_refused_until_its_state_follows(dc, tmp_path):
    """Policy keep, the account renamed in config.json (isp -> home) and its state files not: the
    fetch CLI refuses it, naming both files and what to do, and stores nothing (before: every
    message kept on the server was stored a second time). Renamed as told, it fetches nothing new."""
    dc.seed("alice", MESSAGES[:3])
    acct = account(dc, tmp_path)
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "3 fetched" in out, out
    acct["name"] = "home"
    rc, out = run_cli(tmp_path, acct)
    assert rc == 1 and "fetch home: FAILED" in out and "isp.uidl" in out and "rename" in out, out
    assert "Traceback" not in out and len(local_messages(tmp_path / "store")) == 3, out
    state = tmp_path / "state"
    for p in state.glob("isp.*"):  # (as told: the slot files too, fetchload.renamed)
        p.rename(state / ("home" + p.name[3:]))
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "0 fetched" in out, out
    assert len(local_messages(tmp_path / "store")) == 3
    # a second account of another user, new, beside it: not refused
    rc, out = run_cli(tmp_path, account(dc, tmp_path, name="other", user="bob"))
    assert rc == 0, out


UIDL_NUMBERS = """\
pop3_uidl_format = %u
"""


@pytest.fixture(scope="module")
def two_servers():
    """Two Dovecots, each with its own mailbox alice, numbering UIDLs "1", "2", ... as many servers do."""
    ds = [Dovecot(users={"alice": PASSWORD}, extra=UIDL_NUMBERS) for _ in range(2)]
    try:
        for d in ds:
            d.start()
        yield ds
    finally:
        for d in ds:
            d.stop()


def test_an_account_pointed_at_another_server_is_refused_before_it_deletes_unfetched_mail(two_servers, tmp_path):
    """The account "isp" (user alice) fetched three messages from one server; then its host was
    changed to another server, its name and user kept, policy delete. Both number UIDLs "1", "2",
    ...: the new server's two messages were taken for stored (the old server's 1 and 2) and deleted
    there unfetched. Now <name>.who records the host: the account is refused while its state holds
    UIDs, saying to give it a new name (done: it fetches both), or, for the same mailbox under
    another address, to delete the .who file (done: nothing fetched twice). A .who of user only
    (written before) is taken as matching and rewritten with the host."""
    old, new = two_servers
    old.seed("alice", MESSAGES[:3])
    new_mail = [b"Subject: new %d\r\n\r\nnew server %d\r\n" % (i, i) for i in range(2)]
    new.seed("alice", new_mail)
    acct = account(old, tmp_path)
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "3 fetched" in out, out
    who = tmp_path / "state" / "isp.who"
    assert who.read_text() == "alice\nlocalhost"
    who.write_text("alice")  # as written before the host was recorded: matches, and is upgraded
    rc, out = run_cli(tmp_path, acct)
    assert rc == 0 and "0 fetched" in out, out
    assert who.read_text() == "alice\nlocalhost"

    moved = account(new, tmp_path, host="127.0.0.1", policy="delete")
    rc, out = run_cli(tmp_path, moved)
    assert rc == 1 and "fetch isp: FAILED" in out and "for server localhost, not 127.0.0.1" in out, out
    assert "new name" in out and str(who) in out and "Traceback" not in out, out
    assert new.messages("alice") == new_mail  # (before: both deleted there, never fetched)
    assert len(local_messages(tmp_path / "store")) == 3
    moved["name"] = "isp2"  # a new server, a new name: not taken for "isp" renamed (another host)
    rc, out = run_cli(tmp_path, moved)
    assert rc == 0 and "2 fetched" in out and "2 deleted" in out, out
    assert sorted(local_messages(tmp_path / "store")) == sorted(MESSAGES[:3] + new_mail)

    same = account(old, tmp_path, host="127.0.0.1")  # the same mailbox at another address: keep refused too
    rc, out = run_cli(tmp_path, same)
    assert rc == 1 and "for server localhost, not 127.0.0.1" in out, out
    who.unlink()  # confirmed, as the words say
    rc, out = run_cli(tmp_path, same)
    assert rc == 0 and "0 fetched" in out, out
    assert who.read_text() == "alice\n127.0.0.1"
    assert len(local_messages(tmp_path / "store")) == 5


def test_the_boards_schedule_refuses_an_account_renamed_without_its_state(dc, tmp_path):
    """The board's fetch schedule did not check for an account renamed in config.json whose state
    files were not (the fetch CLI did): every message kept on the server was stored a second time.
    Now the board's start refuses it (an error line naming the files to rename; admin.status()
    shows it in "fetches") and the schedule never fetches it, while another account fetches as
    before; restarted with the files renamed as told, it fetches nothing twice. (CPython:
    boardstart.start and Runner.fetch_schedule as board.main runs them, the real client, Dovecot.)"""
    import asyncio

    from pocketpost import admin, board, boardstart, log
    from pocketpost import store as storemod

    dc.seed("alice", MESSAGES[:3])
    dc.seed("bob", MESSAGES[3:4])
    rc, out = run_cli(tmp_path, account(dc, tmp_path))
    assert rc == 0 and "3 fetched" in out, out
    home = account(dc, tmp_path, name="home")
    other = account(dc, tmp_path, name="other", user="bob", mailbox="bob")
    cfg = {"store": {"root": str(tmp_path / "store"), "quota": 0}, "accounts": [home, other],
           "services": {"fetch_interval_s": 3600, "server": False}}
    lines = []
    log.set_sink(lines.append)
    storemod.reboot()
    r = None
    try:
        async def go():
            await boardstart.start(r)
            t = asyncio.create_task(r.fetch_schedule(3600))
            for _ in range(600):  # bounded: 60 s
                if "other" in r.fetches and "home" in r.fetches:
                    break
                await asyncio.sleep(0.1)
            for _ in range(20):  # (a refused account's loop runs once more: still not fetched)
                await asyncio.sleep(0)
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass

        r = board.Runner(cfg, board.Hardware())
        asyncio.run(go())
        board.current = r
        fetches = admin.status_dict()["fetches"]
        board.current = None
        state = tmp_path / "state"
        for p in state.glob("isp.*"):  # (as told: the slot files too, fetchload.renamed)
            p.rename(state / ("home" + p.name[3:]))
        r = board.Runner(cfg, board.Hardware())  # restarted
        asyncio.run(go())
    finally:
        board.current = None
        log.set_sink(None)
        storemod.reboot()
    assert fetches["other"].get("fetched") == 1, (fetches, lines)
    err = fetches["home"]["error"]
    assert "isp.uidl" in err and "rename" in err, fetches
    assert any("fetch home refused until the board restarts" in ln and "isp.uidl" in ln and "home.uidl" in ln for ln in lines), lines
    assert r.fetches["home"].get("fetched") == 0, r.fetches  # renamed as told: nothing twice
    assert len(local_messages(tmp_path / "store")) == 3  # (before: 6, each one stored twice)
    assert local_messages(tmp_path / "store", "bob") == MESSAGES[3:4]


def test_admin_fetch_now_refuses_an_account_renamed_without_its_state(dc, tmp_path):
    """admin.fetch_now() (the REPL's fetch) asks what the CLI and the board's start ask: an account
    renamed in config.json whose state files were not is not fetched (every message kept on the
    server would be stored a second time); its result names the files to rename. Renamed as told,
    it fetches nothing twice. (CPython, the real client, Dovecot.)"""
    import json

    from pocketpost import admin
    from pocketpost import store as storemod

    dc.seed("alice", MESSAGES[:3])
    rc, out = run_cli(tmp_path, account(dc, tmp_path))
    assert rc == 0 and "3 fetched" in out, out
    cfg = {"store": {"root": str(tmp_path / "store"), "quota": 0}, "accounts": [account(dc, tmp_path, name="home")]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    storemod.reboot()
    try:
        got = admin.fetch_now(config_path=str(path))
        err = got["home"].get("error", "")
        assert err.startswith("ConfigError:") and "isp.uidl" in err and "rename" in err, got
        assert len(local_messages(tmp_path / "store")) == 3
        state = tmp_path / "state"
        for p in state.glob("isp.*"):  # (as told: the slot files too, fetchload.renamed)
            p.rename(state / ("home" + p.name[3:]))
        got = admin.fetch_now(config_path=str(path))
    finally:
        storemod.reboot()
    assert got["home"].get("fetched") == 0, got
    assert len(local_messages(tmp_path / "store")) == 3  # (without the check: 6)


def test_no_heap_while_reconciling_a_pending_entry_is_a_memory_error_not_an_accounts_error(monkeypatch):
    """A MemoryError while the last fetch's pending entry is looked for in the local mailbox stays
    a MemoryError (the board's supervisor acts on it: fetch_loop re-raises it), not an account's
    ClientError advising to wait for a local session that does not exist; a flash error still is
    the account's error, without that advice."""
    from pocketpost import clientconf, clientrecover
    from pocketpost.client import ClientError

    def no_heap(st, store, mailbox):
        raise MemoryError()

    def flash(st, store, mailbox):
        raise OSError(5)

    import sys

    import pocketpost

    def patched(fn):  # (_reconcile forgets the module after each call: put it back, patched)
        monkeypatch.setitem(sys.modules, "pocketpost.clientrecover", clientrecover)
        monkeypatch.setattr(pocketpost, "clientrecover", clientrecover, raising=False)
        monkeypatch.setattr(clientrecover, "reconcile", fn)

    patched(no_heap)
    with pytest.raises(MemoryError):
        clientconf._reconcile(None, None, "inbox", "isp")
    patched(flash)
    with pytest.raises(ClientError) as e:
        clientconf._reconcile(None, None, "inbox", "isp")
    assert "fetch isp:" in str(e.value) and "(OSError: " in str(e.value) and "try again later" in str(e.value), e.value
    assert "local session" not in str(e.value), e.value
