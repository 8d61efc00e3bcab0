"""The board's socket budget (boardstart.check; boards/*/BUDGET.md "Sockets"): an ESP32 has lwIP's
CONFIG_LWIP_MAX_SOCKETS, 10 in MicroPython's esp32 builds, and every listening port, session,
connection waiting for a slot, fetch and NTP query holds one. Each board's template fits, with its
SMTP receiver on too (a domain set, as a user turns it on); a config that can hold more is warned
of in one sentence (at start and in admin.status()) that names the count, its parts, what happens
then and what to lower: a warning, not a refusal (past the limit a connection is dropped at accept
or a fetch fails and is retried: test_socket_exhaustion.py), so adding a fetch account to a board
that runs SMTP too never keeps it at the REPL."""

import json
import os
import re

import pytest

from helpers import FIRMWARE, ROOT
from pocketpost import boardstart, config
from pocketpost.compat import ConfigError

TEMPLATES = ("esp32/config.json", "esp32c3/config.json", "esp32s3/config.json", "esp32s3/config-psram.json")


def _load(rel, **services):
    with open(os.path.join(ROOT, "boards", rel)) as f:
        raw = json.load(f)
    sv = dict(raw.get("services") or {})
    sv["sockets"] = 10  # the ESP32's (sys.platform is not "esp32" here)
    sv.update(services)
    raw["services"] = sv
    return raw


def _checked(raw):
    return config.check(raw)


@pytest.mark.parametrize("rel", TEMPLATES)
def test_each_esp32_template_fits_its_sockets_with_smtp_on_too(rel):
    raw = _load(rel)
    cfg = _checked(raw)
    boardstart.check(cfg)
    assert boardstart.sockets(cfg) is None
    raw["smtp"]["domains"] = ["home.example"]  # the SMTP receiver on: 10 of 10
    cfg = _checked(raw)
    boardstart.check(cfg)
    assert boardstart.sockets(cfg) is None


def test_a_config_that_can_hold_more_sockets_is_warned_of_in_one_sentence():
    raw = _load("esp32/config.json")
    raw["smtp"]["domains"] = ["home.example"]
    raw["smtp"]["max_sessions"] = 2  # one more than the template's: 11 of 10
    cfg = _checked(raw)
    boardstart.check(cfg)  # not refused: the board starts
    msg = boardstart.sockets(cfg)
    assert msg and "\n" not in msg
    for w in ("can hold 11 sockets at once", "pop3 2 ports + 2 sessions + 2 waiting",
              "smtp 2 ports + 2 sessions + 0 waiting", "ntp 1", "this board has 10", "dropped at its accept",
              "no mail is lost", "smtp.max_sessions", "slot_wait to 0"):
        assert w in msg, (w, msg)
    # a fetch account on top of the template (SMTP on) is one more socket too
    raw = _load("esp32/config.json", fetch_interval_s=600)
    raw["smtp"]["domains"] = ["home.example"]
    raw["accounts"] = [{"name": "isp", "host": "pop.example.net", "user": "me", "password": "x", "tls": "implicit",
                        "ca": "ca.der"}]
    cfg = _checked(raw)
    boardstart.check(cfg)
    assert re.search("fetch 1 .one per account.", boardstart.sockets(cfg) or "")
    # what the sentence says to do works: the POP3 waiting room off
    raw["server"]["slot_wait"] = 0
    assert boardstart.sockets(_checked(raw)) is None


def test_another_firmware_says_how_many_sockets_it_has():
    raw = _load("esp32s3/config-psram.json", sockets=16)
    raw["server"]["max_sessions"] = 8  # 2 ports + 8 + 2 waiting + SMTP 3 + ntp = 16
    raw["smtp"]["domains"] = ["home.example"]
    assert boardstart.sockets(_checked(raw)) is None
    raw["server"]["max_sessions"] = 9
    assert "can hold 17 sockets" in boardstart.sockets(_checked(raw))
    raw["services"]["sockets"] = 0  # no check
    raw["server"]["max_sessions"] = 100
    assert boardstart.sockets(_checked(raw)) is None
    for bad in (-1, "10", True):
        raw["services"]["sockets"] = bad
        with pytest.raises(ConfigError, match="services.sockets"):
            boardstart.check(_checked(raw))


def test_the_host_has_no_default_limit():
    with open(os.path.join(ROOT, "boards", "host", "config.json")) as f:
        raw = json.load(f)
    raw["server"]["max_sessions"] = 100
    assert boardstart.sockets(_checked(raw)) is None  # (sys.platform is not "esp32" here)


def test_waiting_room_size_is_listeners():
    with open(os.path.join(FIRMWARE, "pocketpost", "listener.py")) as f:
        src = f.read()
    assert int(re.search(r"^_WAITING_MAX = const\((\d+)\)", src, re.M).group(1)) == boardstart._WAITING


def test_admin_status_says_the_warning_and_the_board_would_still_start(tmp_path):
    from pocketpost import admin

    raw = _load("esp32/config.json")
    raw["smtp"]["domains"] = ["home.example"]
    raw["smtp"]["max_sessions"] = 2  # 11 of 10
    raw["store"]["root"] = str(tmp_path / "mail")
    os.mkdir(raw["store"]["root"])
    p = tmp_path / "config.json"
    p.write_text(json.dumps(raw))
    st = admin.status_dict(str(p))
    assert st["config"] == "ok", st["config"]
    assert "can hold 11 sockets at once" in st["sockets"], st
    raw["smtp"]["max_sessions"] = 1  # 10 of 10: no line
    p.write_text(json.dumps(raw))
    assert "sockets" not in admin.status_dict(str(p))
