"""The fetcher as its users meet it (review, wave 15): against a private Dovecot on loopback, under
MicroPython through the CLI (`micropython -m pocketpost.fetch`), the cases a user runs into that the
other client tests do not reach: a mailbox another session holds ([IN-USE]), ..."""

import poplib

import pytest
from dovecot import Dovecot
from test_client_dovecot import MESSAGES, PASSWORD, account, local_messages, run_cli

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
