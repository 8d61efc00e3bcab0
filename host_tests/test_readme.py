"""The README's Python example runs as written, with the command the README gives for it.

The first ```python block of README.md is saved as example.py and run with the command its own
comment gives (`tools/ppadmin.py run run/flash.img example.py`), against a test image in place of
run/flash.img (same config shape: user demo; free port, no TLS so no certificate is needed). The
example ends in server.main(), which serves until stopped: the test reads the message the example
delivered with poplib from that server, then stops it with Ctrl-C (SIGINT to its process group, as
a terminal does) within a bounded wait, and checks the image is free and intact afterwards.
"""

import json
import os
import poplib
import re
import shlex
import signal
import subprocess
import sys
import time

from helpers import ROOT, free_port

PPADMIN = os.path.join(ROOT, "tools", "ppadmin.py")


def readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def example_and_command():
    text = readme()
    m = re.search(r"```python\n(.*?)```", text, re.S)
    assert m, "README.md has no ```python example"
    code = m.group(1)
    cmds = re.findall(r"^#\s+(tools/ppadmin\.py run \S+ example\.py)\s", code, re.M)
    assert cmds == ["tools/ppadmin.py run run/flash.img example.py"], cmds
    assert "ppadmin.py run IMAGE SCRIPT" in text  # the sentence after the block explains the command
    return code, shlex.split(cmds[0])


def test_readme_example_runs_as_written(tmp_path):
    code, argv = example_and_command()
    example = tmp_path / "example.py"
    example.write_text(code)
    # an image like run/flash.img: the host board config, user demo, on a free port (no TLS)
    with open(os.path.join(ROOT, "boards", "host", "config.json")) as f:
        cfg = json.load(f)
    port = free_port()
    cfg["server"].update({"port": port, "pop3s_port": 0, "cert": "", "key": "", "pbkdf2_iterations": 100})
    cfgpath = tmp_path / "cfg.json"
    cfgpath.write_text(json.dumps(cfg))
    image = str(tmp_path / "flash.img")
    for args in (["create", image, "--config", str(cfgpath)], ["adduser", image, "demo", "--password", "demo"]):
        r = subprocess.run([sys.executable, PPADMIN] + args, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    argv = [{"run/flash.img": image, "example.py": str(example)}.get(a, a) for a in argv]
    assert argv[0] == "tools/ppadmin.py"
    log = open(str(tmp_path / "example.log"), "wb")
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        p = None
        while p is None:
            assert proc.poll() is None, "example ended early: %s" % open(str(tmp_path / "example.log")).read()
            assert time.monotonic() < deadline, "example's server did not start"
            try:
                p = poplib.POP3("127.0.0.1", port, timeout=10)
            except OSError:
                time.sleep(0.05)
        p.user("demo")
        p.pass_("demo")
        count = p.stat()[0]
        assert count == 1
        body = b"\r\n".join(p.retr(1)[1])
        p.quit()
        assert b"Hello from example.py" in body
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
        proc.wait(15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
    out = open(str(tmp_path / "example.log")).read()
    assert re.search(r"^delivered [0-9a-f]{8}\.1$", out, re.M), out
    r = subprocess.run([sys.executable, PPADMIN, "ls", image], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "mailbox demo: 1 messages" in r.stdout, r.stderr
