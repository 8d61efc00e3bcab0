"""The interned names (qstrs, never freed) of the POP3 server as tools/bench_heap.py runs it
(code from .mpy): listening, then after a POP3 session (USER/PASS, STAT, LIST, UIDL, RETR, DELE,
QUIT), then after a second one over POP3S. MicroPython allocates the names' pools doubling in
size (20, 40, 80, 160, 320 entries: 620 names), and the 621st name allocates a 640-entry pool
in one block (~7.1 KB on the 64-bit host): bench_heap's workloads b and e pay it. See
docs/ARCHITECTURE.md ("what costs a name"); the SMTP side's guard is test_smtp_names.py."""

import os
import poplib
import ssl
import sys

import namesprobe
from serverharness import USERS, Pop3Server, msg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

# The server as tools/heapwork.py (bench_heap's a, b, e) runs it: server.main, servermain.pop3,
# the store's session side imported with the server (as board.Runner.serve does).
_IMPORTS = "server, servermain, storesession"


def pop3_session(srv, tls=False):
    """Log in with USER/PASS, then STAT, LIST, UIDL, RETR 1, DELE 1, QUIT."""
    if tls:
        p = poplib.POP3_SSL("127.0.0.1", srv.pop3s_port, timeout=20,
                            context=ssl.create_default_context(cafile=srv.ca))
    else:
        p = poplib.POP3("127.0.0.1", srv.port, timeout=20)
    p.user("alice")
    p.pass_(USERS["alice"])
    p.stat()
    p.list()
    p.uidl()
    p.retr(1)
    p.dele(1)
    assert p.quit().startswith(b"+OK")


def names_after(tmp_path, sessions, listing=False):
    """namesprobe.names_after on the POP3 server (three messages for alice)."""
    (tmp_path / "srv").mkdir()
    srv = Pop3Server(str(tmp_path / "srv"), messages={"alice": [msg(i) for i in range(3)]})
    return namesprobe.names_after(tmp_path, srv, _IMPORTS, "servermain.pop3(cfg, path)", sessions, listing)


# The names tools/heapwork.py (bench_heap's a, b, e) holds beyond this probe's: its stand-ins for
# the board's glue (board.main's Runner, Wi-Fi, NTP), ~48 (ROMFS b with heapprof's 21 names
# subtracted: 602 when this probe counted 554). At 575 here (stop 28's tree) bench_heap's b
# crossed 620 and paid the 640-entry pool at its peak: ROMFS b 89.9 KiB beyond the image, 80.9
# at 570 (w20-serverheap: argument names). Cut too, and put back: auth.py's own names (559; any
# change to auth.py moved bench_heap e 101 -> 102-104 KiB) and serverconf's two helper functions
# inlined (568; ROMFS a 60.9 -> 61.9): layout, not size. 45 since servermain.py (w24-heap): the
# probe runs through server.main, which loads it, heapwork does not: 3 names of the probe's
# (servermain's file and module name, and "smtpserver") heapwork lacks. heapwork's own count was
# unchanged by it (c's qstr_info at its first peaks, --prof: 784, 825, 832 before and after).
_HEAPWORK_EXTRA = 45


def test_pop3_sessions_intern_fewer_names_than_fill_the_first_five_pools(tmp_path):
    """Listening, then a POP3 session, then a POP3S one: under 620 interned names after each,
    or the board pays a 7.1 KB pool for the sessions' names (issue 12), with room for the
    benchmark's workload script (_HEAPWORK_EXTRA): bench_heap's two sessions pay it too."""
    counts = [n for n, _ in names_after(tmp_path, [pop3_session, lambda srv: pop3_session(srv, True)])]
    assert counts[1] < 620 - _HEAPWORK_EXTRA and counts[2] < 620 - _HEAPWORK_EXTRA, counts


if __name__ == "__main__":  # a measurement aid: the names the sessions add to the listening server's
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        res = names_after(pathlib.Path(d), [pop3_session, lambda srv: pop3_session(srv, True)], listing=True)
        print("listening %d, after a POP3 session %d, then a POP3S one %d" % tuple(n for n, _ in res))
        for (_, a), (_, b) in zip(res, res[1:]):
            print("new:", " ".join(n for n in b if n not in set(a) and not n.startswith("/")))
