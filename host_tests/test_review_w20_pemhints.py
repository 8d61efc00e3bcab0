"""The connect's error words and an OAuth account's "token_ca" check tell a user their CA
certificate is PEM with one function, tlserror.pem_words, and its command works as printed. Before
it, the connect's hint for a PEM named ca.der was `... -out ca.der.der` and "set "ca" to
ca.der.der"; the connect's cases below fail on that text.

config.check's own hint (an account's "ca" at load) is not routed here: every way of calling
pem_words from config.py moved the listening server's bisected heap 89 -> 90-91 KiB, and from
tls.py the two-session server's 115 -> 120-122 (the lead's bench_heap runs, stop 29): a placement
step, not bytes. Its command names one file as -in and -out for a PEM named .der, which OpenSSL
3.0's x509 reads before it writes (checked below), unlike pkey."""

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")

NAMES = ["ca.der", "ca.pem", "ca"]


@pytest.fixture
def pem(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(tmp_path / "c.pem"), "-subj", "/CN=t",
                    "-days", "1"], check=True, capture_output=True)
    return (tmp_path / "c.pem").read_text()


def _config_words(path):
    from pocketpost import config
    from pocketpost.compat import ConfigError

    with pytest.raises(ConfigError) as e:
        config.check({"accounts": [{"name": "isp", "host": "pop.example.net", "user": "me", "ca": path}]})
    return str(e.value)


def _connect_words(path):
    from pocketpost import tlserror

    return tlserror._ca_words(ValueError("invalid cert"), "invalid cert", None, path)


def _oauth_words(path):
    from pocketpost import clientconf
    from pocketpost.compat import ConfigError

    a = {"name": "g", "host": "pop.example.com", "user": "me@example.com", "auth": "xoauth2",
         "token_url": "https://oauth2.example.com/token", "client_id": "id", "refresh_token": "r",
         "token_ca": path}
    with pytest.raises(ConfigError) as e:
        clientconf.account_from_dict(a)
    return str(e.value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("where,key", [(_connect_words, "ca"), (_oauth_words, "token_ca")])
def test_the_pem_hint_works_as_printed(tmp_path, pem, name, where, key):
    path = tmp_path / name
    path.write_text(pem)
    msg = where(str(path))
    assert "is PEM; the board needs DER: convert with `" in msg, msg
    cmd = msg.split("convert with `", 1)[1].split("`", 1)[0]
    words = cmd.split()
    assert words[words.index("-in") + 1] != words[words.index("-out") + 1], cmd  # never one file as both
    assert ".der.der" not in msg, msg
    r = subprocess.run(cmd, shell=True, capture_output=True, cwd=str(tmp_path))
    assert r.returncode == 0, (cmd, r.stderr)
    der = tmp_path / "ca.der"  # every name converts to ca.der
    assert der.read_bytes()[:1] == b"\x30", cmd  # DER: an ASN.1 SEQUENCE
    if name == "ca.der":
        assert "then set" not in msg, msg  # the config stays as it is
    else:
        assert msg.endswith('then set "%s" to %s' % (key, der)), msg


def test_configs_own_hint_still_converts(tmp_path, pem):
    """config.check's hint, run as printed, leaves a DER certificate under the name the config
    gives (see the module's words for why it is not pem_words)."""
    for name in NAMES:
        path = tmp_path / name
        path.write_text(pem)
        msg = _config_words(str(path))
        cmd = msg.split("convert with `", 1)[1].split("`", 1)[0]
        r = subprocess.run(cmd, shell=True, capture_output=True, cwd=str(tmp_path))
        assert r.returncode == 0, (cmd, r.stderr)
        out = cmd.split("-out ", 1)[1].strip()
        with open(out, "rb") as f:
            assert f.read(1) == b"\x30", cmd
