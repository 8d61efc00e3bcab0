"""Files opened under a test's eye, for drivers run under micropython (test_fetch_syncs.py,
test_fetch_stateread.py) or CPython: install(want, before) replaces builtins.open. before(op, path,
got) is called before each open ("open"), and, for a file that want(path, mode) accepted (it comes
back wrapped), before each of its flushes and its close ("flush", "close": a sync under way is that
call's), got being the bytes read from it so far."""

import builtins

_open = builtins.open


class _Probe:
    def __init__(self, f, path, before):
        self.f = f
        self.path = path
        self.before = before
        self.got = 0

    def read(self, *a):
        r = self.f.read(*a)
        self.got += len(r)
        return r

    def readinto(self, b):
        n = self.f.readinto(b)
        self.got += n or 0
        return n

    def write(self, b):
        return self.f.write(b)

    def flush(self):
        self.before("flush", self.path, self.got)
        return self.f.flush()

    def close(self):
        self.before("close", self.path, self.got)
        return self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def install(want, before):
    def opened(path, mode="r", *a):
        before("open", path, 0)
        f = _open(path, mode, *a)
        return _Probe(f, path, before) if want(path, mode) else f

    builtins.open = opened
