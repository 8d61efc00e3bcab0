"""helpers.free_port(): the ports two pytest-xdist workers are given never meet, and none is in
the kernel's ephemeral range (every bind to port 0 and outgoing connection's source port)."""

import os
import socket
import subprocess
import sys

import helpers
from helpers import ROOT, free_port

PORTS_ASKED = 300  # per simulated worker: more than a worker's tests ask for in a full suite


def _ephemeral_first():
    with open(helpers.EPHEMERAL_RANGE) as f:
        return int(f.read().split()[0])


def test_two_workers_are_never_given_the_same_port():
    """Two workers of one run (two processes, each as xdist starts it), asking at once: their
    ports are disjoint, none repeats within a worker, none is ephemeral. With the kernel's pick
    (bind to port 0, close) each came from the ephemeral range: a port one worker had been given
    and was polling while its server started could be given to the other, whose one-accept
    server then lost its accept to that poll."""
    script = "import sys; sys.path.insert(0, %r); from helpers import free_port\n" \
             "print(' '.join(str(free_port()) for _ in range(%d)))" % (os.path.join(ROOT, "host_tests"), PORTS_ASKED)
    workers = []
    for worker in ("gw0", "gw1"):
        env = dict(os.environ, PYTEST_XDIST_WORKER=worker, PYTEST_XDIST_WORKER_COUNT="2")
        workers.append(subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True))
    given = []
    for w in workers:
        out, _ = w.communicate(timeout=60)
        assert w.returncode == 0
        given.append([int(p) for p in out.split()])
    for ports in given:
        assert len(set(ports)) == PORTS_ASKED, "a worker was given one port twice"
        assert max(ports) < _ephemeral_first(), "an ephemeral port: %s" % [p for p in ports if p >= _ephemeral_first()]
    assert not set(given[0]) & set(given[1]), "both workers were given %s" % sorted(set(given[0]) & set(given[1]))


def test_the_workers_slices_are_disjoint_and_below_the_ephemeral_range():
    slices = [helpers.port_slice("gw%d" % i, 3) for i in range(3)]
    assert slices[0][0] == helpers.PORT_FLOOR and slices[2][1] <= _ephemeral_first()
    assert all(a[1] <= b[0] for a, b in zip(slices, slices[1:])), slices


def _listen_in_our_slice():
    first, end = helpers.port_slice()
    for port in range(first, end):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        s.listen(1)
        return s, port
    raise AssertionError("no port of %d..%d free" % (first, end))


def test_a_port_in_use_is_passed_over(monkeypatch):
    held, port = _listen_in_our_slice()
    with held:
        monkeypatch.setitem(helpers._port_cursor, "127.0.0.1", port)
        assert free_port() != port


def test_no_room_below_the_ephemeral_range_leaves_the_pick_to_the_kernel(tmp_path, monkeypatch):
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text("1024\t60999\n")
    monkeypatch.setattr(helpers, "EPHEMERAL_RANGE", str(ranges))
    assert helpers.port_slice() is None
    port = free_port()
    assert port >= 1024
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_threads_of_one_worker_asking_at_once_are_never_given_the_same_port():
    """test_mailport_livelink starts two boards at once, each thread asking for its port: both read
    the same cursor, bound and closed the same free port, and were both given it; one board's
    server then failed to listen and its test talked to the other board until that one stopped."""
    import threading

    given = []
    start = threading.Barrier(8)

    def ask():
        start.wait()
        given.extend(free_port() for _ in range(40))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(given) == 8 * 40
    assert len(set(given)) == len(given), "given twice: %s" % sorted(p for p in set(given) if given.count(p) > 1)
