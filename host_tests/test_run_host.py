"""`make run` (tools/run_host.py) as a newcomer meets it: a port already taken is one line naming
it and how to choose another; Ctrl-C stops with a one-line goodbye, no traceback, exit 0 (also
through make under a real terminal); the banner lists the image's own users and gives the demo
password only while it is still the demo user's password."""

import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import ROOT, free_port

sys.path.insert(0, os.path.join(ROOT, "tools"))
import run_host  # noqa: E402

RUN_HOST = os.path.join(ROOT, "tools", "run_host.py")
PY = sys.executable


def _wait_port(port, proc, timeout=20):
    """Poll until something accepts on port (bounded); fail if the process died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("run_host.py exited %s before listening" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(5)
                return s.recv(100)
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nothing listening on %d after %ds" % (port, timeout))


@pytest.fixture(scope="module")
def rundir(tmp_path_factory):
    """One demo image for the module (built once, ~1 s), reused by every test."""
    d = str(tmp_path_factory.mktemp("run"))
    r = subprocess.run([PY, RUN_HOST, "--dir", d, "--no-serve", "--port", str(free_port()),
                        "--pop3s-port", str(free_port())] + _smtp_ports(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def _smtp_ports():
    """Free ports for the image's SMTP receiver (the defaults, 2525/4465, may be taken here)."""
    return ["--smtp-port", str(free_port()), "--smtps-port", str(free_port())]


def _start(rundir, port, pop3s_port, **kw):
    return subprocess.Popen([PY, RUN_HOST, "--dir", rundir, "--port", str(port), "--pop3s-port", str(pop3s_port)]
                            + _smtp_ports(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def test_ctrl_c_stops_with_one_line_goodbye_and_exit_0(rundir):
    port, pop3s = free_port(), free_port()
    p = _start(rundir, port, pop3s)
    try:
        assert _wait_port(port, p).startswith(b"+OK")
        os.killpg(p.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 0, out + err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, out + err
    assert out.rstrip().splitlines()[-1] == "pocketpost: server stopped (Ctrl-C). Bye."
    # Other ports moved the image (kept in its config for later runs) without rebuilding it.
    assert "building" not in out
    cfg = run_host.image_config(os.path.join(rundir, "flash.img"))
    assert (cfg["server"]["port"], cfg["server"]["pop3s_port"]) == (port, pop3s) and cfg["users"]["demo"]


@pytest.mark.parametrize("which", ["pop3", "pop3s"])
def test_port_in_use_is_one_line_naming_it(rundir, which):
    port, pop3s = free_port(), free_port()
    taken = port if which == "pop3" else pop3s
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", taken))
        blocker.listen(1)
        p = _start(rundir, port, pop3s)
        try:
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert p.returncode != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(taken) in lines[0] and "already in use" in lines[0]
    assert 'make run RUN_ARGS="--port N --pop3s-port M"' in lines[0]
    assert "Traceback" not in out + err


def test_other_ports_on_an_image_in_use_are_refused_without_claiming_them(rundir):
    # A second `make run` with other ports while the first serves the image: one line naming the
    # holder; it used to print "serving on ports ... from now on" first, which it then was not.
    port, pop3s = free_port(), free_port()
    p = _start(rundir, port, pop3s)
    try:
        assert _wait_port(port, p).startswith(b"+OK")
        q = _start(rundir, free_port(), free_port())
        try:
            out, err = q.communicate(timeout=60)
        finally:
            if q.poll() is None:
                os.killpg(q.pid, signal.SIGKILL)
                q.wait()
        assert q.returncode == 2, out + err
        assert "in use by pid %d" % p.pid in err and len(err.strip().splitlines()) == 1, err
        assert "from now on" not in out, out
        assert "Traceback" not in out + err
    finally:
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    cfg = run_host.image_config(os.path.join(rundir, "flash.img"))
    assert (cfg["server"]["port"], cfg["server"]["pop3s_port"]) == (port, pop3s)  # the first run's, kept


def test_banner_lists_the_images_users(rundir):
    image = os.path.join(rundir, "flash.img")
    r = subprocess.run([PY, os.path.join(ROOT, "tools", "ppadmin.py"), "adduser", image, "zoe", "--password", "zoe pw"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([PY, RUN_HOST, "--dir", rundir, "--no-serve"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    line = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("users")][0]
    assert line.split(":", 1)[1].strip() == 'demo (password "demo"), zoe'


def test_banner_drops_the_demo_password_once_changed():
    sys.path.insert(0, os.path.join(ROOT, "firmware"))
    from pocketpost import config

    cfg = {"users": {}}
    config.add_user(cfg, "demo", "demo", 1000)
    assert 'demo (password "demo")' in run_host.banner("img", cfg, 1, 2, "c.pem")
    assert "-u demo:demo " in run_host.banner("img", cfg, 1, 2, "c.pem")
    config.add_user(cfg, "demo", "a new secret", 1000)
    text = run_host.banner("img", cfg, 1, 2, "c.pem")
    assert "users       : demo\n" in text
    assert "password \"demo\"" not in text and "demo:demo" not in text and "demo:PASSWORD" in text


def _read_until(fd, want, deadline, buf):
    while want not in buf[0] and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the terminal's last user is gone
                return
            if not chunk:
                return
            buf[0] += chunk


def test_make_run_ctrl_c_under_a_terminal_exits_0(rundir):
    """The real thing: `make run` in a terminal and Ctrl-C typed into it. make must not see the
    SIGINT (else it dies of it and adds its own '*** Interrupt' line)."""
    port, pop3s = free_port(), free_port()
    master, slave = pty.openpty()

    def ctty():
        os.setsid()
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    args = 'RUN_ARGS=--dir %s --port %d --pop3s-port %d %s' % (rundir, port, pop3s, " ".join(_smtp_ports()))
    p = subprocess.Popen(["make", "-s", "run", args], cwd=ROOT, stdin=slave, stdout=slave, stderr=slave,
                         preexec_fn=ctty, close_fds=True)
    os.close(slave)
    buf = [b""]
    try:
        _read_until(master, b"listening on 127.0.0.1:%d" % pop3s, time.monotonic() + 120, buf)
        assert b"listening on 127.0.0.1:%d" % pop3s in buf[0], buf[0][-2000:]
        os.write(master, b"\x03")  # Ctrl-C typed at the terminal
        _read_until(master, b"Bye.", time.monotonic() + 30, buf)
        rc = p.wait(timeout=30)
        _read_until(master, b"\x00never", time.monotonic() + 1, buf)  # drain what is left
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    text = buf[0].decode(errors="replace")
    assert rc == 0, text[-2000:]
    assert "Interrupt" not in text and "Traceback" not in text, text[-2000:]
    assert text.rstrip().endswith("pocketpost: server stopped (Ctrl-C). Bye."), text[-500:]
