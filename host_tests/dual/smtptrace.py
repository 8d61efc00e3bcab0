"""A message the SMTP receiver stored, without its trace fields, for the tests (both runtimes)."""


def body_of(stored):
    """`stored` without the Return-Path and Received fields (the latter folded over lines opening
    with a tab) that the receiver prepended."""
    assert stored.startswith(b"Return-Path: <"), stored[:80]
    k = stored.index(b"\r\nReceived: ") + 2
    while True:
        e = stored.index(b"\r\n", k)
        k = e + 2
        if stored[k : k + 1] != b"\t":
            return stored[k:]
