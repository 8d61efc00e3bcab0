"""A camera burst against the SMTP receiver under micropython (not a test: prints figures).

At a board template's SMTP limits (--board; the ESP32's, boards/esp32/config.json: one session,
no waiting room), N smtplib senders (one thread each, no retry), started GAP ms apart, each deliver one message
and quit; then alice's mailbox is read back over POP3. Per gap: how many were delivered (their
250 came), how many stored, duplicates, messages stored for a sender told it failed, and why the
others failed. host_tests/test_smtp_burst.py holds the server to all of them delivered.

    .venv/bin/python tools/bench_smtp_burst.py [--senders 20] [--gaps 0,10,30] [--runs 1] [--board esp32]
"""

import argparse
import collections
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "host_tests"))
from smtpharness import SmtpPop3Server, body_of, burst, template_smtp_caps  # noqa: E402


def run(senders, gap_ms, board):
    with tempfile.TemporaryDirectory() as d:
        srv = SmtpPop3Server(d, smtp=template_smtp_caps(board), messages={"alice": []}).start()
        try:
            got, took = burst(srv.smtp_port, senders, gap_ms / 1000, timeout=60)
            ok = {i for i, why in got.items() if why == "ok"}
            stored = collections.Counter(int(body_of(m).split(b"\r\n", 1)[0].split()[-1])
                                         for m in srv.pop3_messages("alice", "alice pass"))
            why = collections.Counter(v.split(":")[0] for v in got.values() if v != "ok")
            log = srv.log()
            print("gap %3d ms: delivered %2d/%d, stored %2d, duplicates %d, stored but told failed %d, %.1f s; "
                  "failed: %s; log: %d evicted, %d refused" % (
                      gap_ms, len(ok), senders, len(stored), sum(1 for n in stored.values() if n > 1),
                      len(set(stored) - ok), took, dict(why) or "-", log.count("evicted"), log.count("refused")))
        finally:
            srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--senders", type=int, default=20)
    ap.add_argument("--gaps", default="0,10,30")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--board", default="esp32")
    a = ap.parse_args()
    for _ in range(a.runs):
        for gap in a.gaps.split(","):
            run(a.senders, int(gap), a.board)


if __name__ == "__main__":
    main()
