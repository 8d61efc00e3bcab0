"""config.py for both runtimes: account secrets from the secrets file, the explicit plaintext
opt-in, and (MicroPython) no certificate verification without a CA file."""

import json
import sys

from flashdev import in_fresh_root
from pocketpost import compat, config
from pocketpost.config import ConfigError

IS_MP = sys.implementation.name == "micropython"


def _acct(**kw):
    a = {"name": "isp", "host": "pop.example.net", "user": "me", "ca": "ca.der"}
    for k in kw:
        a[k] = kw[k]
    return a


def _files(d, cfg, secrets=None, secrets_name="secrets.json"):
    compat.makedirs(d)
    f = open(d + "/config.json", "w")
    f.write(json.dumps(cfg))
    f.close()
    if secrets is not None:
        f = open(d + "/" + secrets_name, "w")
        f.write(secrets if isinstance(secrets, str) else json.dumps(secrets))
        f.close()
    return d + "/config.json"


def _refused(fn, *words):
    try:
        fn()
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg, msg  # one line
        for w in words:
            assert w in msg, (w, msg)
        return msg
    raise AssertionError("not refused")


def test_account_secrets_merged_from_the_secrets_file():
    def body(d):
        cfg = {"accounts": [_acct(), _acct(name="other", password="in-config")]}
        path = _files(d, cfg, {"ssid": "wifi", "password": "wifi-pw",
                               "accounts": {"isp": {"password": "s3cret"}, "gone": {"password": "x"}}})
        got = config.load(path)
        byname = {}
        for a in got["accounts"]:
            byname[a["name"]] = a
        assert byname["isp"]["password"] == "s3cret"  # by account name, not the Wi-Fi password
        assert byname["other"]["password"] == "in-config"  # none in secrets: config.json's stays
        assert "password" not in config.load_raw(path)["accounts"][0]  # tools editing the file never see it
        # no secrets file: the config loads as written (the client then asks for a password)
        path2 = _files(d + "/none", cfg)
        assert "password" not in config.load(path2)["accounts"][0]

    in_fresh_root(body)


def test_secrets_path_follows_the_wifi_setting_and_the_config_folder():
    def body(d):
        cfg = {"wifi": {"secrets": "board-secrets.json"}, "accounts": [_acct()]}
        path = _files(d, cfg, {"accounts": {"isp": {"password": "p2"}}}, "board-secrets.json")
        assert config.secrets_path(path, cfg) == d + "/board-secrets.json"
        assert config.load(path)["accounts"][0]["password"] == "p2"
        assert config.secrets_path("config.json", {}) == "secrets.json"

    in_fresh_root(body)


def test_bad_secrets_refused_in_one_line():
    def body(d):
        path = _files(d, {"accounts": [_acct(password="p")]}, {"accounts": {"isp": {"password": "q"}}})
        _refused(lambda: config.load(path), "isp", "password", "config.json and", "secrets.json")
        path = _files(d + "/b", {"accounts": [_acct()]}, {"accounts": {"isp": {"host": "evil"}}})
        _refused(lambda: config.load(path), "isp", "host", "not an account secret")
        path = _files(d + "/c", {"accounts": [_acct()]}, "{not json")
        _refused(lambda: config.load(path), "secrets.json", "JSON")
        path = _files(d + "/e", {"accounts": [_acct()]}, {"accounts": {"isp": {"password": 5}}})
        _refused(lambda: config.load(path), "isp", "password", "string")

    in_fresh_root(body)


def test_config_that_is_not_json_is_refused_naming_the_file():
    # config.json with a JSON mistake raised json's bare ValueError ("syntax error in JSON"): the
    # board's boot log did not say which file (config.json or secrets.json) to fix.
    def body(d):
        path = _files(d, {"accounts": [_acct()]}, {"accounts": {"isp": {"password": "p"}}})
        f = open(path, "w")
        f.write('{"users": {}, "server": {"port": 110,}')
        f.close()
        _refused(lambda: config.load(path), path, "not valid JSON")
        _refused(lambda: config.load_raw(path), path, "not valid JSON")

    in_fresh_root(body)


def test_plaintext_account_needs_an_explicit_allow():
    _refused(lambda: config.check({"accounts": [_acct(tls="none")]}), "isp", '"tls": "none"', "allow_plaintext")
    _refused(lambda: config.check({"accounts": [_acct(tls="none", allow_plaintext="yes")]}), "allow_plaintext")
    ok = config.check({"accounts": [_acct(tls="none", allow_plaintext=True)]})
    assert ok["accounts"][0]["allow_plaintext"] is True
    config.check({"accounts": [_acct(tls="stls")]})  # TLS: nothing to allow


def test_verify_without_ca_refused_on_micropython_only():
    no_ca = _acct(tls="implicit")
    del no_ca["ca"]
    if IS_MP:
        _refused(lambda: config.check({"accounts": [no_ca]}), "isp", "ca", "DER", "MicroPython")
    else:
        config.check({"accounts": [no_ca]})  # CPython verifies against the system store
    no_ca["verify"] = False  # explicitly unverified: allowed (client.py logs it)
    config.check({"accounts": [no_ca]})
    config.check({"accounts": [_acct(tls="stls")]})  # with a CA: fine everywhere


def test_client_warns_each_session_of_a_plaintext_account():
    """The warning comes at the start of every session, before the connection is tried."""
    from pocketpost import client, log
    from pocketpost.store import Store

    lines = []
    log.set_sink(lines.append)

    def body(d):
        acct = _acct(tls="none", allow_plaintext=True, host="127.0.0.1", port=1, password="p",
                     state_dir=d + "/state", timeouts={"connect_timeout": 2, "read_timeout": 2})
        del acct["ca"]
        store = Store(d + "/mail")
        for _ in range(2):
            try:
                client.fetch_account_sync(acct, store)
            except Exception:  # noqa: BLE001 - nothing listens on port 1: refused
                pass
        warned = [l for l in lines if "no TLS" in l and "127.0.0.1:1" in l and "isp" in l]
        assert len(warned) == 2, lines

    try:
        in_fresh_root(body)
    finally:
        log.set_sink(None)


def test_pem_ca_refused_at_load_with_the_conversion():
    def body(d):
        compat.makedirs(d)
        pem = d + "/isp-ca.pem"
        f = open(pem, "w")
        f.write("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        f.close()
        _refused(lambda: config.check({"accounts": [_acct(ca=pem)]}), "isp", "PEM", "DER",
                 "openssl x509 -in %s -outform DER -out %s/isp-ca.der" % (pem, d))
        der = d + "/isp-ca.der"
        f = open(der, "wb")
        f.write(b"\x30\x82\x01\x0a")
        f.close()
        config.check({"accounts": [_acct(ca=der)]})
        config.check({"accounts": [_acct(ca=d + "/missing.der")]})  # not here (a board path): the connect says so

    in_fresh_root(body)


def test_a_bad_account_is_the_same_config_error_the_file_checks_raise():
    """fetch.py (and every caller) catches config.ConfigError: client.py's account checks raise
    that very class, so one except clause catches every config mistake."""
    from pocketpost import client

    _refused(lambda: client.account_from_dict({"name": "x", "host": "h", "user": "u", "password": "p",
                                               "policy": "sometimes"}), "account x", "policy")


def test_config_checks_without_auth_py_match_auth():
    """config.py loads a config without auth.py (the fetch CLI's heap): its copies of auth's
    PBKDF2 bounds equal auth's, the default trusted network (not parsed when left as is) parses,
    a given one is still checked, and users' hash records still are (auth.py loaded for them)."""
    from pocketpost import auth

    from pocketpost import serverconf

    if not IS_MP:  # (const() names are not module attributes on MicroPython: by behaviour below)
        assert (serverconf._DEFAULT_ITERATIONS, serverconf._MAX_ITERATIONS) == (auth.DEFAULT_ITERATIONS,
                                                                                auth.MAX_ITERATIONS)
    assert config.defaults()["server"]["pbkdf2_iterations"] == auth.DEFAULT_ITERATIONS
    # The ceiling is capped at the most iterations: a watchdog and an iteration cost that allow more.
    assert serverconf.pbkdf2_ceiling({"watchdog": {"timeout_ms": 10 ** 9}})[0] == auth.MAX_ITERATIONS
    nets = config.SERVER_DEFAULTS["trusted_networks"]
    assert nets and all(auth.parse_cidr(n) is not None for n in nets)
    for bad in ({"server": {"trusted_networks": ["10.0.0.0/33"]}},
                {"users": {"bob": {"password": "plain-text"}}}):
        try:
            config.check(bad)
            raise AssertionError("must be refused: %r" % (bad,))
        except ConfigError:
            pass
    assert config.check({"server": {"trusted_networks": ["10.0.0.0/8"]}})["server"]["trusted_networks"] == ["10.0.0.0/8"]


def test_a_fetch_load_checks_the_fetch_sections_only():
    """config.load(path, False) (the fetch CLI's start: serverconf.py never loaded) checks and
    fills "store", "accounts" and "log" as load(path) does, with the secrets merged, and leaves
    the server's sections ("server", "users", "smtp") as written; load(path) refuses them."""
    def body(d):
        bad_server = {"server": {"port": "pop3"}, "users": {"Bad Name": {}}, "smtp": {"domains": "x"},
                      "store": {"root": d + "/mail"}, "accounts": [_acct()]}
        path = _files(d, bad_server, {"accounts": {"isp": {"password": "s3cret"}}})
        got = config.load(path, False)
        assert got["store"] == {"root": d + "/mail", "quota": 0, "reserve": 65536}, got["store"]
        assert got["log"] == {"level": "info"} and got["accounts"][0]["password"] == "s3cret", got
        assert got["server"] == {"port": "pop3"} and got["users"] == {"Bad Name": {}} and got["smtp"] == {"domains": "x"}
        _refused(lambda: config.load(path), "server.port")
        for fetch_bad, words in (({"store": {"root": ""}}, ("store.root",)),
                                 ({"store": {"quota": -1}}, ("store.quota",)),
                                 ({"log": {"level": "loud"}}, ("log.level",)),
                                 ({"accounts": [_acct(tls="none")]}, ("isp", "allow_plaintext"))):
            path = _files(d, fetch_bad)
            _refused(lambda: config.load(path, False), *words)
        # The server side's names are config's too (module __getattr__), as before the split.
        assert config.SERVER_DEFAULTS["port"] == 1100 and config.valid_name("inbox") and not config.valid_name(".x")
    in_fresh_root(body)


def test_an_account_that_is_not_an_object_is_a_config_error():
    """"accounts": ["oops"] (a name where an object belongs): a ConfigError naming the entry; the
    fetch CLI and the board's start both read the list with a.get() before client.py's checks,
    so it was an AttributeError traceback (at boot before POP3 and SMTP were started)."""
    _refused(lambda: config.check({"accounts": [_acct(), "oops"]}), "accounts[1]", "object")


SAVED = {"store": {"root": "mail", "quota": 0}, "server": {"trusted_networks": ["10.0.0.0/8"], "auth_delays": [2, 4]},
         "users": {"alice": {"password": "scram-sha-256$1$ab$cd$ef", "mailbox": "alice"}},
         "accounts": [{"name": "isp", "timeouts": {"read_timeout": 10}}, {"name": "b", "port": 995}],
         "smtp": {"aliases": {}, "domains": []}, "wifi": None, "log": {"level": "info"}, "zz": [[1, 2], []],
         "t": True, "f": 1.5, "s": "qu\"ote \\ caf\u00e9"}


def test_save_writes_one_key_per_line_indented_and_loads_back():
    """config.save (admin.add_user, passwd, del_user, a login's rehash): the file a maker opens
    again is readable, one key per line, indented two spaces a level, lists of plain values on one
    line (before: the whole config on one line); keys in the order loaded (CPython: the file's)
    or sorted (MicroPython: its dicts keep no order); and it loads back the same."""
    def body(d):
        compat.makedirs(d)
        path = d + "/config.json"
        config.save(path, SAVED)
        with open(path) as f:
            text = f.read()
        assert config.load_raw(path) == SAVED
        lines = text.split("\n")
        assert lines[0] == "{" and lines[-2:] == ["}", ""], text
        bare = [ln[:-1] if ln[-1:] == "," else ln for ln in lines]  # (the last of each has none)
        for want in ('  "store": {', '    "root": "mail"', '    "quota": 0', '  }', '    "trusted_networks": ["10.0.0.0/8"]',
                     '  "accounts": [', '    {', '      "name": "isp"', '      "timeouts": {', '        "read_timeout": 10',
                     '      }', '    }', '  "wifi": null', '    "aliases": {}', '    [1, 2]', '    []', '    "auth_delays": [2, 4]'):
            assert want in bare, (want, text)
        tops = [ln[3:ln.index('":')] for ln in lines if ln[:3] == '  "']
        assert tops == (sorted(SAVED) if IS_MP else list(SAVED)), tops
        config.save(path, config.load_raw(path))  # stable: the same file again
        with open(path) as f:
            assert f.read() == text

    in_fresh_root(body)


def test_save_syncs_the_folder_after_its_rename():
    """config.save renames its temp file over config.json: on a host that rename is durable only
    once the folder is synced, and fetchrename's steps (secrets, config, then the state files,
    each synced) rely on their order surviving a power cut. (littlefs and MicroPython: a no-op.)"""
    from pocketpost import configsave

    def body(d):
        compat.makedirs(d)
        synced = []
        real = configsave.sync_dir
        configsave.sync_dir = lambda path: synced.append(path)
        try:
            configsave.save(d + "/config.json", {"a": 1})
        finally:
            configsave.sync_dir = real
        assert synced == [d], synced

    in_fresh_root(body)


def test_save_refuses_a_config_nested_past_its_bound():
    def body(d):
        compat.makedirs(d)
        deep = 1
        for _ in range(40):
            deep = {"k": deep}
        _refused(lambda: config.save(d + "/config.json", deep), "nested deeper")

    in_fresh_root(body)
