"""A local mailbox read back by a test, under both runtimes: every message as bytes, oldest first."""


def entries(store, name):
    """[(uid, message)] of mailbox `name` (as a client reads them: un-stuffed), oldest first."""
    mb = store.lock(name)
    try:
        out = []
        for i in range(mb.count):
            f = mb.open(i)
            try:
                out.append((mb.uid(i), f.read()))
            finally:
                f.close()
        return out
    finally:
        mb.release()


def messages(store, name):
    """The stored messages of mailbox `name` (as a client reads them: un-stuffed), oldest first;
    [] when the mailbox does not exist."""
    if not store.exists(name):
        return []
    return [m for _, m in entries(store, name)]
