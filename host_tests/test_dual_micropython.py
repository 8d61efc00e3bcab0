"""Runs the dual-runtime suite (host_tests/dual) under the real micropython binary and reports
each test function as its own pytest outcome: passed, failed (with the MicroPython traceback) or
skipped (dualtest.skip under MicroPython), so a skip is never counted as a pass.

pytest runs the same modules under CPython directly; this makes MicroPython run them too, so a
construct MicroPython lacks fails here rather than on a board. Each module runs once (one
micropython process, as host_tests/dual/run.py does it; the modules' processes run side by side,
one per core); its per-test lines are then looked up.
"""

import os
import re

import pytest

from helpers import ROOT, SWEEP_SHARDS, run_micropython

DUAL = os.path.join(ROOT, "host_tests", "dual")
MODULES = sorted(n[:-3] for n in os.listdir(DUAL) if n.startswith("test_") and n.endswith(".py"))


def _tests(module):
    """The test functions a module defines at top level, as run.py finds them (sorted)."""
    with open(os.path.join(DUAL, module + ".py")) as f:
        text = f.read()
    return sorted(set(re.findall(r"^def (test_\w+)\(", text, re.M) + re.findall(r"^(test_\w+) = ", text, re.M)))


CASES = [(m, t) for m in MODULES for t in _tests(m)]
_RUNS = {}  # module -> a Future of _run_module(module)
_POOL = []


def _run_module(module):
    """{test: (kind, detail)} from one micropython run of the module, its whole output, its exit."""
    r = run_micropython(["host_tests/dual/run.py", module], timeout=600)
    out = r.stdout.decode(errors="replace")
    results = {}
    current = None
    for line in out.splitlines():
        m = re.match(r"(ok  |FAIL|SKIP) %s\.(test_\w+):? ?(.*)$" % module, line)
        if m:
            kind = m.group(1).strip()
            current = m.group(2)
            results[current] = [kind, m.group(3)]
        elif line.startswith("micropython:"):
            current = None
        elif current is not None and results[current][0] == "FAIL":
            results[current][1] += "\n" + line  # the traceback run.py prints after FAIL
    return results, out + r.stderr.decode(errors="replace")[-4000:], r.returncode


def _run(module, request):
    """_run_module(module), once. At the first call the run of every module this session selected
    starts, SWEEP_SHARDS at a time (each its own micropython process, as alone): while pytest
    reports one module's tests the next modules run on the other cores."""
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        ex = ThreadPoolExecutor(SWEEP_SHARDS)
        _POOL.append(ex)
        wanted = [item.callspec.params.get("module") for item in request.session.items
                  if item.module is not None and item.module.__name__ == __name__ and hasattr(item, "callspec")]
        for m in MODULES:
            if m in wanted:
                _RUNS[m] = ex.submit(_run_module, m)
    if module not in _RUNS:
        _RUNS[module] = _POOL[0].submit(_run_module, module)
    return _RUNS[module].result()


def test_every_dual_module_is_collected():
    assert {"test_wire", "test_pop3", "test_store", "test_pop3server", "test_log"} <= set(MODULES)
    assert len(CASES) > 50


@pytest.mark.parametrize("module,test", CASES, ids=["%s.%s" % c for c in CASES])
def test_under_micropython(module, test, request):
    results, out, rc = _run(module, request)
    if test not in results:
        raise AssertionError("%s.%s did not run under micropython (exit %d):\n%s" % (module, test, rc, out[-4000:]))
    kind, detail = results[test]
    if kind == "SKIP":
        pytest.skip("under micropython: " + detail)
    assert kind == "ok", detail


@pytest.mark.parametrize("module", MODULES)
def test_runner_reports_each_test_once(module, request):
    results, out, rc = _run(module, request)
    assert sorted(results) == _tests(module), out[-4000:]
    summary = [ln for ln in out.splitlines() if ln.startswith("micropython:")][-1]
    kinds = [k for k, _ in results.values()]
    assert summary == "micropython: %d passed, %d failed, %d skipped" % (
        kinds.count("ok"), kinds.count("FAIL"), kinds.count("SKIP")), summary
    assert rc == (1 if "FAIL" in kinds else 0)


def test_a_skip_is_reported_as_a_skip_on_both_runtimes(request):
    # MicroPython: the runner prints SKIP (and the test above turns it into a pytest skip)
    results, out, _ = _run("test_auth", request)
    assert results["test_pbkdf2_matches_cpython_when_available"][0] == "SKIP", out[-2000:]
    # CPython: dualtest.skip is pytest's skip, never a silent pass
    import test_store

    with pytest.raises(pytest.skip.Exception):
        test_store.test_full_flash_and_delete_frees_space()
