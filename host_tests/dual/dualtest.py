"""What a dual-runtime test module needs beyond bare `assert`: a skip that is reported as one.

`skip("why")` inside a test: under pytest (CPython) it is pytest's own skip, so pytest reports the
test as skipped; under MicroPython (host_tests/dual/run.py) it raises Skip, which the runner prints
as `SKIP module.test: why` and counts apart from passed and failed. A test that `return`s early
instead would count as passed without having checked anything.
"""

try:  # CPython under pytest: pytest.skip's exception class, so pytest reports a skip
    import pytest

    Skip = pytest.skip.Exception
except ImportError:  # MicroPython (run.py): no pytest; run.py catches this class

    class Skip(Exception):  # type: ignore[no-redef]
        pass


def skip(reason):
    raise Skip(reason)
