"""The POP3 grammar: commands, strict numbers, replies, response codes, multi-line rules."""

from pocketpost.pop3 import (
    ProtocolError,
    command,
    is_multiline,
    parse_command,
    parse_listing,
    parse_reply,
    reply,
    valid_uid,
)


def rejects(line):
    try:
        parse_command(line)
    except ProtocolError:
        return True
    return False


def test_keywords_case_insensitive():
    assert parse_command(b"stat") == ("STAT", ())
    assert parse_command(b"LiSt 3") == ("LIST", (3,))
    assert parse_command(b"uidl") == ("UIDL", ())
    assert parse_command(b"TOP 2 0") == ("TOP", (2, 0))
    assert parse_command(b"USER alice") == ("USER", (b"alice",))


def test_pass_keeps_spaces():
    assert parse_command(b"PASS  two  spaces ") == ("PASS", (b" two  spaces ",))
    assert rejects(b"PASS")
    assert rejects(b"PASS ")


def test_strict_numbers():
    for bad in (b"LIST 4294967297", b"RETR -1", b"RETR 1x", b"RETR 01", b"RETR 0", b"RETR +1",
                b"RETR 2147483648", b"RETR", b"RETR 1 2", b"TOP 1", b"TOP 1 -1", b"DELE  1",
                b"LIST ", b"STAT 1", b"TOP 1 00", b"RETR \xff"):
        assert rejects(bad), bad
    assert parse_command(b"RETR 2147483647") == ("RETR", (2147483647,))
    assert parse_command(b"TOP 1 0") == ("TOP", (1, 0))


def test_unknown_and_garbage():
    for bad in (b"", b" ", b"FOO", b"STATS", b"ST\xffT", b"\x00", b"12 3", b"USER " + b"a" * 41,
                b"USER a\tb", b"APOP onlyone"):
        assert rejects(bad), bad


def test_auth_forms():
    assert parse_command(b"AUTH") == ("AUTH", ())
    assert parse_command(b"AUTH PLAIN") == ("AUTH", (b"PLAIN",))
    blob = b"A" * 200
    assert parse_command(b"AUTH PLAIN " + blob) == ("AUTH", (b"PLAIN", blob))
    assert parse_command(b"AUTH PLAIN =") == ("AUTH", (b"PLAIN", b"="))


def test_apop():
    assert parse_command(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb") == (
        "APOP", (b"mrose", b"c4c9334bac560ecc979e58001b3e22fb"))


def test_multiline_rules():
    assert is_multiline("LIST", 0) and not is_multiline("LIST", 1)
    assert is_multiline("UIDL", 0) and not is_multiline("UIDL", 1)
    assert is_multiline("RETR", 1) and is_multiline("TOP", 2) and is_multiline("CAPA", 0)
    assert not is_multiline("STAT", 0) and not is_multiline("DELE", 1)


def test_replies():
    assert reply(True, "2 320") == b"+OK 2 320\r\n"
    assert reply(False, "mailbox busy", "IN-USE") == b"-ERR [IN-USE] mailbox busy\r\n"
    r = parse_reply(b"-ERR [SYS/TEMP] try later")
    assert r.ok is False and r.code == "SYS/TEMP" and r.text == b"try later"
    r = parse_reply(b"+OK")
    assert r.ok is True and r.code is None and r.text == b""
    r = parse_reply(b"+OK [weird text")
    assert r.ok and r.code is None and r.text == b"[weird text"
    r = parse_reply(b"-ERR [AUTH] bad")
    assert r.code == "AUTH"
    r = parse_reply(b"+ ")
    assert r.ok is None
    for bad in (b"OK", b"+OKAY", b"-ERRx", b"", b"* OK"):
        try:
            parse_reply(bad)
        except ProtocolError:
            continue
        raise AssertionError(bad)


def test_command_builder_and_listing():
    assert command("RETR", 3) == b"RETR 3\r\n"
    assert command("USER", "a") == b"USER a\r\n"
    assert parse_listing(b"1 120") == (1, b"120")
    assert parse_listing(b"2 abc-XYZ extra") == (2, b"abc-XYZ")
    assert valid_uid(b"a" * 70) and not valid_uid(b"a" * 71) and not valid_uid(b"a b") and not valid_uid(b"")
