"""Test-only: a password record in the old form (pbkdf2-sha256, SaltedPassword in clear), which
the firmware still reads and upgrades but no longer writes, so only tests make one."""

import binascii

from pocketpost import auth


def format_hash(iterations, salt, dk):
    return "%s$%d$%s$%s" % ("pbkdf2-sha256", iterations, binascii.hexlify(salt).decode(), binascii.hexlify(dk).decode())
