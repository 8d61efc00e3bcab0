"""The POP3 client's login (Pop3Client.login): the method choice (best_auth) and the USER/PASS,
APOP and SASL PLAIN exchanges (SCRAM in scram.py, OAuth in oauth2.py). Cold code: client.py
imports it for the login and, on MicroPython, drops it after (its heap is not held while messages
move; its qstrs stay)."""

import binascii

from pocketpost import log
from pocketpost.client import _OAUTH, AuthFailed, ErrReply, _text
from pocketpost.compat import ConfigError


async def login(c, user, password, method="auto"):
    """Authenticate; `method` "auto" picks the strongest the server offers."""
    m = method
    if m == "auto":
        m = best_auth(c)
    log.info("pop3 %s: auth %s as %s%s", c.where, m, user, " over TLS" if c.secure else "")
    try:
        if m == "plain":
            blob = binascii.b2a_base64(b"\x00" + user.encode() + b"\x00" + password.encode()).rstrip(b"\n")
            if len(blob) + 13 <= 255:
                rep = await c.cmd("AUTH", "PLAIN", blob)
            else:
                rep = await c.cmd("AUTH", "PLAIN")
            if rep.ok is None:  # "+ " continuation: the server wants the response on its own
                await c._send(c.s.respond(blob), "AUTH PLAIN")
                rep = await c._status()
                if rep.ok is not True:
                    raise AuthFailed("%s: AUTH PLAIN: %s" % (c.where, _text(rep.text)), rep.code)
        elif m == "scram-sha-256":  # SCRAM (scram.py, loaded only here): no password on the wire
            from pocketpost import scram

            await scram.pop3_auth(c, user, password, AuthFailed)
        elif m == "apop":
            if c.timestamp is None:
                raise AuthFailed("%s: APOP: the server's greeting has no timestamp: use auth \"auto\"" % c.where)
            from pocketpost.auth import apop_digest

            await c.cmd("APOP", user, apop_digest(c.timestamp, password))
        elif m == "user":
            await c.cmd("USER", user)
            await c.cmd("PASS", password)
        elif m in _OAUTH:  # OAuth: `password` is the access token
            from pocketpost import oauth2

            await oauth2.pop3_auth(c, m, user, password, AuthFailed)
        else:
            raise ConfigError("unknown auth method " + m)
    except AuthFailed:
        raise
    except ErrReply as e:
        raise AuthFailed("login failed (%s): %s: check the user name and password" % (m, e.msg), e.code)


def best_auth(c):
    """Strongest offered. SCRAM-SHA-256 first when offered (the password never crosses the
    wire, and the server proves it knows it). Then without TLS, APOP (no password on the
    wire either); over TLS, SASL PLAIN (APOP's MD5 challenge adds nothing there)."""
    caps = c.caps
    if caps is not None and "SCRAM-SHA-256" in caps.get("SASL", ()):
        return "scram-sha-256"
    offered = []
    if caps is not None and "PLAIN" in caps.get("SASL", ()):
        offered.append("plain")
    if c.timestamp is not None:
        offered.append("apop")
    if caps is None or "USER" in caps or not offered:
        offered.append("user")
    order = ("plain", "apop", "user") if c.secure else ("apop", "plain", "user")
    for m in order:
        if m in offered:
            return m
    return "user"

