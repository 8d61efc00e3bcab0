"""A local mailbox read back by a test, under both runtimes: every message as bytes, oldest first."""


def messages(store, name):
    """The stored messages of mailbox `name` (as a client reads them: un-stuffed), oldest first;
    [] when the mailbox does not exist."""
    if not store.exists(name):
        return []
    mb = store.lock(name)
    try:
        out = []
        for i in range(mb.count):
            f = mb.open(i)
            try:
                out.append(f.read())
            finally:
                f.close()
        return out
    finally:
        mb.release()
