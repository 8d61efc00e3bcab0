"""The SMTP receiver's admission at a full cap (listener.py; the receiver shares its Slots), under
micropython with real senders: at SMTP caps of 2 sessions, 1 per address (the ESP32 template's
until its socket budget, w18) two senders
from one address at once (smtplib, then curl from the same machine: a NAS and a script, or a
client's two accounts) are both served in turn, the second waiting for a slot while the first is
still before MAIL (it used to evict the first: its next command met a 421 and the close). Each
message is read back over POP3, exactly once. The silent-peer and refusal cases are
test_smtp_hostile.py's."""

import smtplib
import ssl
import subprocess
import threading
import time

import pytest

from serverharness import config
from smtpharness import SmtpPop3Server, body_of


def _esp32_smtp_caps():
    # The ESP32 template's SMTP caps until w18 (2 sessions, 1 per address, the default slot_wait);
    # since, its 10 sockets leave SMTP 1 session and no waiting room (boards/esp32/BUDGET.md
    # "Sockets"): these are caps a config may still set (a firmware with more sockets, fewer POP3 ones).
    return {"max_sessions": 2, "max_sessions_per_addr": 1, "slot_wait": config.SMTP_DEFAULTS["slot_wait"]}


def _wait_log(srv, text, count, limit=10):
    deadline = time.time() + limit
    while srv.log().count(text) < count and time.time() < deadline:
        time.sleep(0.02)
    assert srv.log().count(text) >= count, srv.log()[-3000:]


@pytest.mark.parametrize("tls", [False, True], ids=["smtp", "smtps"])
def test_two_senders_from_one_address_at_once_are_both_served_in_turn(tmp_path, tls):
    caps = _esp32_smtp_caps()
    s = SmtpPop3Server(str(tmp_path), smtp=dict(caps), messages={"alice": [], "bob": []})
    s.start()
    try:
        before = s.log().count("smtp #")
        if tls:
            a = smtplib.SMTP_SSL("localhost", s.smtps_port, timeout=15,
                                 context=ssl.create_default_context(cafile=s.ca))
            url = ["--cacert", s.ca, "-u", "alice:alice pass", "smtps://localhost:%d" % s.smtps_port]
        else:
            a = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=15)
            url = ["smtp://127.0.0.1:%d" % s.smtp_port]
        a.ehlo("first.example")
        second = b"Subject: second\r\n\r\nfrom curl, after waiting\r\n"
        f = tmp_path / "second.eml"
        f.write_bytes(second)
        got = {}

        def curl():
            t0 = time.time()
            r = subprocess.run(["curl", "-s", "-S", "--max-time", "30"] + url
                               + ["--mail-from", "nas@example.net", "--mail-rcpt", "bob@example.org",
                                  "--upload-file", str(f)], capture_output=True, timeout=40)
            got["curl"] = (r.returncode, r.stderr, time.time() - t0)

        t = threading.Thread(target=curl)
        t.start()
        # the server has taken the second connection up (it waits; it used to evict the first)
        deadline = time.time() + 10
        while "127.0.0.1 waits for a slot" not in s.log() and "evicted" not in s.log():
            assert time.time() < deadline, s.log()[-3000:]
            time.sleep(0.02)
        if tls:
            a.login("alice", "alice pass")
        first = b"Subject: first\r\n\r\nfrom smtplib\r\n"
        a.sendmail("script@example.net", ["alice@example.org"], first)
        time.sleep(1.0)  # a slow sender: the second keeps waiting meanwhile
        a.quit()
        t.join(40)
        rc, err, took = got["curl"]
        assert rc == 0, (rc, err, s.log()[-3000:])
        assert 1.0 < took < caps["slot_wait"], took
        log = s.log()
        assert log.count("evicted") == 0 and log.count("refused") == 0, log[-3000:]
        assert log.count("smtp #") > before
        assert [body_of(m) for m in s.pop3_messages("alice", "alice pass")] == [first]
        assert [body_of(m) for m in s.pop3_messages("bob", "bobpw")] == [second]
    finally:
        s.stop()


def test_senders_waiting_for_a_slot_are_served_in_arrival_order(tmp_path):
    """At the ESP32's SMTP caps one machine's first sender holds its slot and a second waits; the
    first quits and a third connects right after: the second, waiting first, gets the slot (the
    third found it free and took it, and the second waited on), the third waits its turn. Each
    message is delivered once."""
    s = SmtpPop3Server(str(tmp_path), smtp=dict(_esp32_smtp_caps(), slot_wait=4), messages={"alice": []})
    s.start()
    try:
        a = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=15)
        a.ehlo("first.example")
        got = {}
        t0 = time.time()

        def sender(name, hold):
            try:
                c = smtplib.SMTP("127.0.0.1", s.smtp_port, timeout=15)
                got[name] = time.time() - t0
                c.sendmail("%s@example.net" % name, ["alice@example.org"], b"Subject: %s\r\n\r\nx\r\n" % name.encode())
                time.sleep(hold)
                c.quit()
            except Exception as e:
                got[name] = repr(e)

        tb = threading.Thread(target=sender, args=("second", 0.5))
        tb.start()
        _wait_log(s, "127.0.0.1 waits for a slot", 1)
        a.quit()
        tc = threading.Thread(target=sender, args=("third", 0))
        tc.start()
        tb.join(20)
        tc.join(20)
        assert isinstance(got.get("second"), float) and isinstance(got.get("third"), float), (got, s.log()[-3000:])
        assert got["second"] + 0.4 < got["third"], got
        log = s.log()
        assert log.count("evicted") == 0 and log.count("refused") == 0, log[-3000:]
        subjects = sorted(body_of(m) for m in s.pop3_messages("alice", "alice pass"))
        assert len(subjects) == 2, subjects
    finally:
        s.stop()
