"""A rename cut by the power during a store's recovery, for the dual tests (both runtimes).

CutRename makes compat.rename raise OSError at its n-th call, before or after doing it (a move
between directories is two littlefs commits: either half may be the last). cut_each_rename runs
one test case with the first rename cut, then the second, and so on until the recovery renames
fewer times than that.
"""

from flashdev import fresh_root
from pocketpost import compat
from pocketpost import store as store_mod

MOST_RENAMES = 20  # far more than any test's recovery does: a run that never ends is a bug


class CutRename:
    """compat.rename raises OSError on its n-th call (1-based), before or after doing it."""

    def __init__(self, n, after):
        self.n = n
        self.after = after
        self.calls = 0
        self.fired = False
        self.real = compat.rename

    def __enter__(self):
        compat.rename = self.call
        return self

    def __exit__(self, *a):
        compat.rename = self.real

    def call(self, a, b):
        self.calls += 1
        if self.calls == self.n and not self.after:
            self.fired = True
            raise OSError(5, "cut before rename")
        self.real(a, b)
        if self.calls == self.n:
            self.fired = True
            raise OSError(5, "cut after rename")


def cut_each_rename(after, case):
    """case(root, recover) for n = 1, 2, ...: on a fresh store root, it makes the damage, calls
    recover(st) (the store's recovery, st.lock("x").release(), with the n-th rename cut, before
    or with `after` after it happens; the process goes on) and checks. Ends at the first n the
    recovery did not reach; returns it."""
    n = 1
    while True:
        root, cleanup = fresh_root()
        store_mod.reboot()
        cut = CutRename(n, after)

        def recover(st):
            with cut:
                try:
                    st.lock("x").release()
                except Exception:  # the cut, whatever the store made of it
                    pass

        try:
            case(root, recover)
        finally:
            store_mod.reboot()
            cleanup()
        if not cut.fired:
            return n
        n += 1
        assert n < MOST_RENAMES
