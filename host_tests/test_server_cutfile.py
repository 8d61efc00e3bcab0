"""A message file cut short while the real server (micropython) sends it to a client: the server
must close the connection with no terminator after the partial message (a terminator would make
it look complete to the client, e.g. poplib), and set the file aside, so the next session no
longer lists it while the other message is still served (poplib). The in-process cases (nothing
sent yet: -ERR [SYS/PERM]; TOP; dot-stuffed) are in host_tests/dual/test_server_readfail.py."""

import os
import poplib
import socket

from serverharness import Pop3Server

# Larger than what the kernel can hold in flight on loopback (tcp_wmem's 4 MiB maximum plus the
# small receive buffer set below), so the server is still reading the file when it is cut.
BIG = b"Subject: big\r\n\r\n" + b"".join(b"%07d " % i + b"x" * 100 + b"\r\n" for i in range(80000))  # ~8.7 MB
SMALL = b"Subject: small\r\n\r\nhello\r\n"


def _file_of_size(root, n):
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if os.path.getsize(p) == n:
                return p
    raise AssertionError("no file of %d octets" % n)


def test_file_cut_mid_retr_closes_without_terminator_and_is_set_aside(tmp_path):
    srv = Pop3Server(str(tmp_path), {"alice": [SMALL, BIG]}, server={"idle_timeout": 20})
    srv.start()
    try:
        path = _file_of_size(os.path.join(srv.store_root, "alice"), len(BIG))
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        s.settimeout(10)  # less than the idle timeout: a server that does not close fails here
        s.connect(("127.0.0.1", srv.port))
        f = s.makefile("rb")
        assert f.readline().startswith(b"+OK")
        s.sendall(b"USER alice\r\nPASS alice pass\r\nLIST\r\n")
        for _ in range(2):
            assert f.readline().startswith(b"+OK")
        assert f.readline().startswith(b"+OK")  # LIST
        assert f.readline() == b"1 %d\r\n" % len(SMALL) and f.readline() == b"2 %d\r\n" % len(BIG)
        assert f.readline() == b".\r\n"
        s.sendall(b"RETR 2\r\n")
        assert f.readline() == b"+OK %d octets\r\n" % len(BIG)
        got = f.read(100000)  # the server is sending (and blocked on the full socket buffers)
        os.truncate(path, 1000000)  # cut behind the open file: its next reads end early
        rest = f.read()  # to the close (bounded by the socket timeout)
        got += rest
        assert len(got) < len(BIG)
        assert b"\r\n.\r\n" not in got, got[-40:]  # closed without the terminator (BIG has no dot line)
        f.close()
        s.close()
        p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        try:
            p.user("alice")
            p.pass_("alice pass")
            assert p.stat() == (1, len(SMALL))  # the cut message is set aside at this lock
            assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == SMALL
            p.quit()
        finally:
            p.close()
        aside = os.listdir(os.path.join(srv.store_root, "alice", "damaged"))
        assert len(aside) == 1, aside
        assert "unreadable mid-reply, closing" in srv.log()
    finally:
        srv.stop()
