"""Commands to pocketpost.mailport (the board side of import/restore) from the tests, both runtimes:
a message record as the host tool writes it, and one in-memory serve() run."""

import binascii
import hashlib
import io

from pocketpost import mailport


def sha1hex(data):
    return binascii.hexlify(hashlib.sha1(data).digest()).decode()


def msg_cmd(box, arrival, data, uid="-", sha=None):
    """An M record: `data` into `box` (under `uid`, or "-" for a new one) in CHUNK-sized pieces;
    `sha` overrides the checksum (a wrong one, to test the refusal)."""
    out = b"M %s %d %s %s\n" % (box.encode(), arrival, (sha or sha1hex(data)).encode(), uid.encode())
    for k in range(0, len(data), mailport.CHUNK):
        piece = data[k : k + mailport.CHUNK]
        out += b"%d\n" % len(piece) + piece
    return out + b"0\n"


def serve(st, commands, config_path=None):
    """mailport.serve on store `st` with the bytes `commands` in; returns the bytes it wrote.
    config_path: the config whose users the C command checks."""
    out = io.BytesIO()
    mailport.serve(st, io.BytesIO(commands), out, config_path=config_path)
    return out.getvalue()
