"""compat.TIMEOUT_ERRNOS, what transport and listener take for "timed out" on a socket: EAGAIN and
the runtime's own ETIMEDOUT, which is not one number (Linux 110; newlib's 116, as on an ESP32:
"OSError: [Errno 116] ETIMEDOUT"). No ESP32 here: each runtime imports compat with an errno
module standing in for newlib's numbering (put in sys.modules first, where import finds it), and
then with its own."""

import os
import subprocess
import sys

import pytest

from helpers import FIRMWARE, run_micropython

SCRIPT = r"""
import sys
if sys.argv[-1] == "newlib":
    class errno:  # a stand-in module: ESP-IDF's numbering
        EAGAIN = 11
        ETIMEDOUT = 116
    sys.modules["errno"] = errno
from pocketpost import compat
print("TIMEOUTS", sorted(compat.TIMEOUT_ERRNOS))
"""


def _run(runtime, numbering, tmp_path):
    script = tmp_path / "errnos.py"
    script.write_text(SCRIPT)
    if runtime == "micropython":
        r = run_micropython([str(script), numbering], timeout=60)
    else:
        env = dict(os.environ, PYTHONPATH=FIRMWARE)
        r = subprocess.run([sys.executable, str(script), numbering], capture_output=True, timeout=60, env=env)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    return out


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_timeout_errnos_follow_the_runtimes_numbering(runtime, tmp_path):
    assert "TIMEOUTS [11, 116]" in _run(runtime, "newlib", tmp_path)
    assert "TIMEOUTS [11, 110]" in _run(runtime, "own", tmp_path)  # this Linux host's own
