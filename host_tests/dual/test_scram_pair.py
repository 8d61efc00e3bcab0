"""The whole client (fetch_account) logging in to the server session with SCRAM-SHA-256 over the
in-process pair (host_tests/dual/pop3pair.py): our scram.pop3_auth against our pop3server, no
sockets, under CPython and MicroPython."""

from pocketpost import client
from test_pop3client import Local, Server, _rmtree
from test_pop3server import MSGS


def _run(policy, **kw):
    srv = Server(MSGS)
    srv.env.svc.policy = policy
    loc = Local()
    try:
        try:
            st = loc.fetch(srv, policy="keep", **kw)
        except client.AuthFailed as e:
            st = e
        return st, srv.sent(), loc.messages()
    finally:
        srv.env.done()
        _rmtree(loc.dir)


def test_auto_picks_scram_and_fetches():
    for policy in ("never", "always"):  # plain-text logins refused, or allowed: SCRAM either way
        st, sent, got = _run(policy)
        assert not isinstance(st, Exception), st
        assert st["fetched"] == 3 and got == MSGS
        assert [l for l in sent if l.startswith(b"AUTH")][0].startswith(b"AUTH SCRAM-SHA-256 ")
        assert not [l for l in sent if l.startswith((b"PASS", b"USER", b"AUTH PLAIN"))]
        assert b"" in sent  # the empty answer to the server's signature (RFC 5034)


def test_wrong_password_is_auth_failed():
    st, sent, got = _run("never", password="pass wore")
    assert isinstance(st, client.AuthFailed) and "AUTH SCRAM-SHA-256" in str(st) and "authentication failed" in str(st)
    assert got == [] and not [l for l in sent if l.startswith((b"STAT", b"UIDL"))]


def test_explicit_plain_still_works_where_allowed():
    st, sent, got = _run("always", auth="plain")
    assert st["fetched"] == 3 and [l for l in sent if l.startswith(b"AUTH")][0].startswith(b"AUTH PLAIN")
