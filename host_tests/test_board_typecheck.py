"""boot.py, main.py and pocketpost/board.py type-check against micropython-esp32-stubs, and the
check bites: a misspelt board call in main.py, or in board.py through its WLAN type comments,
is an error."""

import os
import shutil
import subprocess
import tempfile

from helpers import ROOT, tool

BOARD_FILES = ["firmware/boot.py", "firmware/main.py", "firmware/pocketpost/board.py",
               "firmware/pocketpost/boardend.py", "firmware/pocketpost/admin.py"]


def mypy(paths):
    return subprocess.run([tool("mypy"), "--config-file", "mypy-esp32.ini", "--no-error-summary"] + paths,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_board_glue_typechecks_against_esp32_stubs():
    assert os.path.isdir(os.path.join(ROOT, "typings-esp32")), "make setup installs the stubs"
    r = mypy(BOARD_FILES)
    assert r.returncode == 0, r.stdout + r.stderr


def _mutated(src, old, new, d, name):
    with open(os.path.join(ROOT, src)) as f:
        text = f.read()
    assert old in text, old
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))
    return os.path.relpath(path, ROOT)


def test_typecheck_catches_misspelt_board_calls():
    d = tempfile.mkdtemp(dir=ROOT, prefix=".tc_")
    try:
        bad_main = _mutated("firmware/main.py", "machine.WDT(timeout=timeout_ms)", "machine.WDT(timout=timeout_ms)",
                            d, "bad_main.py")
        bad_board = _mutated("firmware/pocketpost/board.py", "self.wlan.connect(self.ssid, self.password)",
                             "self.wlan.conect(self.ssid, self.password)", d, "bad_board.py")
        r = mypy([bad_main])
        assert r.returncode != 0 and "timout" in r.stdout, r.stdout
        r = mypy([bad_board])
        assert r.returncode != 0 and "conect" in r.stdout, r.stdout
    finally:
        shutil.rmtree(d)
