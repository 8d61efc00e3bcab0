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


def temp_files(box_path):
    """The delivery temp files in a mailbox directory: in its buckets (names with a "t" first or
    after a dot, "<epoch>.<seq>.t<n>.<ticks>" where store.Delivery writes them, "t<n>.<ticks>"
    before) and in tmp/ (where versions before that did); [] when none."""
    from pocketpost import compat

    out = []
    for name, is_dir, _ in compat.listdir_stat(box_path):
        if is_dir and (name == "tmp" or name[0] == "b"):
            for fn, d2, _ in compat.listdir_stat(box_path + "/" + name):
                if not d2 and (name == "tmp" or fn[0] == "t" or ".t" in fn):
                    out.append(name + "/" + fn)
    return sorted(out)
