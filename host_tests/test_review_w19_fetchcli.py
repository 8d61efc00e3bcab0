"""Defects of the fetch CLI found by review w19 (each reproduced by a reviewer), run the way a user
runs it: `micropython -m pocketpost.fetch` from the folder that holds config.json and secrets.json,
against a private Dovecot on loopback where a server is needed. Each test fails without its fix."""

import json
import os
import shutil
import subprocess

import pytest
from helpers import FIRMWARE, MICROPYTHON

PASSWORD = "wonder land"


def run_fetch(folder, *args, timeout=60, log=None):
    """`micropython -m pocketpost.fetch ARGS` from `folder`, as a user runs it."""
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":.frozen"
    env.pop("POCKETPOST_LOG", None)
    if log:
        env["POCKETPOST_LOG"] = log
    r = subprocess.run([MICROPYTHON, "-m", "pocketpost.fetch"] + list(args), capture_output=True,
                       timeout=timeout, cwd=str(folder), env=env)
    return r.returncode, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


def user_folder(tmp, accounts, secrets):
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.json").write_text(json.dumps({"store": {"root": "mail"}, "accounts": accounts}))
    (tmp / "secrets.json").write_text(json.dumps(secrets))
    return tmp


@pytest.fixture(scope="module")
def dc():
    from dovecot import Dovecot

    d = Dovecot(users={"alice": PASSWORD}, mechs="plain login apop scram-sha-256")
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


# --- 1. the server's refusal and the hint after it ------------------------------------------------
@pytest.mark.parametrize("auth", ["user", "plain", "scram-sha-256"])
def test_a_refused_login_quotes_the_servers_text_before_the_hint(dc, tmp_path, auth):
    """Dovecot answers a wrong password with "-ERR [AUTH] Authentication failed.", and the run
    printed `PASS: -ERR Authentication failed.: check the user name and password ...` (SCRAM:
    `... failed.: check`). Now the server's text is quoted, and the hint follows after "; "."""
    dc.seed("alice", [b"Subject: x\r\n\r\nx\r\n"])
    folder = user_folder(tmp_path, [dc_account(dc, auth=auth)], {"accounts": {"isp": {"password": "not it"}}})
    rc, out = run_fetch(folder, "config.json")
    assert rc == 1, out
    assert '-ERR "Authentication failed."; check the user name and password' in out, out
    assert ".:" not in out, out
    assert "login failed (%s): isp localhost:%d: " % (auth, dc.sport) in out, out
    assert len(dc.messages("alice")) == 1


def test_the_refusal_text_is_whole_for_each_caller():
    """clientfail.hint with the ErrReply's text (clientauth, scram, oauth2): the head kept, the
    server's text quoted; a code's hint likewise; an -ERR without text, or a text without -ERR."""
    from pocketpost import clientauth

    assert clientauth.hint("IN-USE", "user", "h:110: PASS: -ERR Mailbox is locked.") == (
        'login failed (user): h:110: PASS: -ERR "Mailbox is locked."; ' + clientauth.hint("IN-USE"))
    assert clientauth.hint(None, None, "h:110: AUTH XOAUTH2: -ERR") == (
        "h:110: AUTH XOAUTH2: -ERR; " + clientauth.hint(None))
    assert clientauth.hint("SYS/TEMP", "plain", "h:1: AUTH: odd") == (
        "login failed (plain): h:1: AUTH: odd; [SYS/TEMP]: a temporary failure on the server: try again later")


# --- 2. the command line -------------------------------------------------------------------------
def _cli_folder(tmp_path):
    acct = {"name": "isp", "host": "127.0.0.1", "port": 9, "tls": "none", "allow_plaintext": True, "user": "u"}
    other = dict(acct, name="work", user="w")
    return user_folder(tmp_path, [acct, other], {"accounts": {"isp": {"password": "p"}, "work": {"password": "p"}}})


@pytest.mark.parametrize("opt", ["-h", "--help"])
def test_help_prints_the_usage_and_what_each_option_does(tmp_path, opt):
    """-h / --help said "-h: file not found" (exit 2): the option was taken for the config."""
    folder = _cli_folder(tmp_path)
    rc, out = run_fetch(folder, opt)
    assert rc == 0, out
    assert out.startswith("usage: micropython -m pocketpost.fetch [-v] config.json [account]\n"), out
    assert "-v, --verbose  also print each stored message's From and Subject" in out, out
    assert "POCKETPOST_LOG=warning" in out and "Exit status" in out, out
    rc, out2 = run_fetch(folder, "config.json", opt)  # anywhere on the line; nothing fetched
    assert rc == 0 and out2 == out, out2
    assert sorted(os.listdir(str(folder))) == ["config.json", "secrets.json"]


@pytest.mark.parametrize("args", [["--frobnicate", "config.json"], ["config.json", "-x"], ["-vv", "config.json"]])
def test_an_unknown_option_is_refused_with_the_usage(tmp_path, args):
    """An unknown option was taken for the config ("-x: file not found") or, after it, for an
    account name ("no account named -x", exit 1)."""
    folder = _cli_folder(tmp_path)
    rc, out = run_fetch(folder, *args)
    assert rc == 2, out
    bad = [a for a in args if a.startswith("-")][0]
    assert out == "fetch: unknown option %s (-h: what it takes)\nusage: micropython -m pocketpost.fetch " \
                  "[-v] config.json [account]\n" % bad, out
    assert sorted(os.listdir(str(folder))) == ["config.json", "secrets.json"]


def test_v_after_the_config_and_verbose_are_v(dc, tmp_path):
    """`config.json -v` said "no account named -v" (exit 1), and --verbose "file not found": -v
    (From and Subject on each progress line) is taken anywhere, and as --verbose."""
    dc.seed("alice", [b"From: ada@example.org\r\nSubject: hello there\r\n\r\nbody\r\n"])
    folder = user_folder(tmp_path, [dc_account(dc, policy="keep")], {"accounts": {"isp": {"password": PASSWORD}}})
    rc, out = run_fetch(folder, "config.json", "-v")
    assert rc == 0, out
    assert "From: ada@example.org  Subject: hello there" in out and "1 fetched" in out, out
    shutil.rmtree(str(folder / "mail"))
    shutil.rmtree(str(folder / "state"))
    rc, out = run_fetch(folder, "--verbose", "config.json", "isp")
    assert rc == 0, out
    assert "From: ada@example.org  Subject: hello there" in out and "1 fetched" in out, out
    # The log level, as -h says: POCKETPOST_LOG (-v is not it); nothing new to fetch now.
    rc, out = run_fetch(folder, "config.json", "-v")
    assert rc == 0 and " INFO " in out and "0 fetched" in out, out
    rc, out = run_fetch(folder, "config.json", log="warning")
    assert rc == 0 and " INFO " not in out and "0 fetched" in out, out


def test_no_account_of_that_name_lists_the_accounts_there_are(tmp_path):
    """"no account named nosuch" did not say which names there are (a typo, or the config of
    another folder); now it lists them, before any store or lock is made."""
    folder = _cli_folder(tmp_path)
    rc, out = run_fetch(folder, "config.json", "nosuch")
    assert rc == 1, out
    assert out == "fetch: config.json has no account named nosuch (its accounts: isp, work)\n", out
    assert sorted(os.listdir(str(folder))) == ["config.json", "secrets.json"]
    user_folder(folder, [], {})
    rc, out = run_fetch(folder, "config.json", "nosuch")
    assert rc == 1 and "has no account named nosuch (it has no accounts)" in out, out


# --- 3. a PEM token_ca ---------------------------------------------------------------------------
def _oauth_refusal(tmp_path, token_ca, pem):
    """clientconf.account_from_dict's refusal of an OAuth account whose token_ca (named token_ca)
    holds `pem`: its text."""
    from pocketpost import clientconf
    from pocketpost.compat import ConfigError

    (tmp_path / token_ca).write_text(pem)
    a = {"name": "g", "host": "pop.example.com", "user": "me@example.com", "auth": "xoauth2",
         "token_url": "https://oauth2.example.com/token", "client_id": "id", "refresh_token": "r",
         "token_ca": str(tmp_path / token_ca)}
    with pytest.raises(ConfigError) as e:
        clientconf.account_from_dict(a)
    return str(e.value)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
@pytest.mark.parametrize("name", ["token-root.der", "token-root.pem", "token-root"])
def test_a_pem_token_cas_hint_works_as_printed(tmp_path, name):
    """A PEM token_ca named .der got `openssl x509 -in X.der -outform DER -out X.der`: one file as
    -in and -out, which openssl may empty before it reads it (the reviewer's finding). Run as printed,
    the hint now leaves a DER certificate where it says (tools/deploy.py's pem_fix: moved aside
    first), and names the file to set where it is a new one."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"), "-subj", "/CN=t",
                    "-days", "1"], check=True, capture_output=True)
    msg = _oauth_refusal(tmp_path, name, (tmp_path / "c.pem").read_text())
    assert "is PEM; the board needs DER" in msg, msg
    cmd = msg.split("convert with `", 1)[1].split("`", 1)[0]
    # Never one file as -in and -out: openssl's pkey empties -out before it reads -in (the key
    # lost: review w19, tools/deploy.py); this host's OpenSSL 3.0 x509 happens to read first, so the
    # run below alone would not tell (another version or build need not).
    words = cmd.split()
    assert words[words.index("-in") + 1] != words[words.index("-out") + 1], cmd
    r = subprocess.run(cmd, shell=True, capture_output=True, cwd=str(tmp_path))
    assert r.returncode == 0, (cmd, r.stderr)
    der = str(tmp_path / name[:-4]) + ".der" if name[-4:-3] == "." else str(tmp_path / name) + ".der"
    with open(der, "rb") as f:
        assert f.read(1) == b"\x30", cmd  # DER: an ASN.1 SEQUENCE
    if not name.endswith(".der"):
        assert msg.endswith('then set "token_ca" to %s' % der), msg
