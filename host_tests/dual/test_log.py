"""pocketpost.log under both runtimes: the time field is ISO 8601 UTC once the clock is set and
"+uptime s" before (a board before NTP), one line per event, warnings kept in a bounded ring."""

import time

from pocketpost import log
from pocketpost.compat import ticks_add, ticks_ms

CLOCK_SET_YEAR = 2024  # log._CLOCK_SET_YEAR (a const: no name at run time)
RECENT_MAX = 8  # log._RECENT_MAX


class Captured:
    """Route log lines to a list, with a fake UTC clock; restores everything on close()."""

    def __init__(self, utc=None, uptime_ms=None):
        self.lines = []
        self._saved = (log._gmtime, log._t0, log.level, list(log.recent))
        if utc is not None:
            log._gmtime = lambda: utc
        if uptime_ms is not None:
            log._t0 = ticks_add(ticks_ms(), -uptime_ms)
        log.set_level("debug")
        log.set_sink(self.lines.append)

    def close(self):
        log._gmtime, log._t0, log.level, recent = self._saved
        log.recent[:] = recent
        log.set_sink(None)


def test_iso_utc_once_the_clock_is_set():
    c = Captured(utc=(2026, 6, 1, 9, 5, 7, 0, 152))
    try:
        log.info("pop3 #%d %s login user=%s", 3, "10.0.0.9", "alice")
        log.error("disk %s", "full")
    finally:
        c.close()
    assert c.lines == ["2026-06-01T09:05:07Z INFO pop3 #3 10.0.0.9 login user=alice", "2026-06-01T09:05:07Z ERROR disk full"]


def test_uptime_marked_as_such_before_the_clock_is_set():
    # A board boots at 2000-01-01 (MicroPython's epoch) until NTP runs: no date is printed then.
    c = Captured(utc=(2000, 1, 1, 0, 2, 3, 5, 1), uptime_ms=123456)
    try:
        log.info("wifi: connected")
    finally:
        c.close()
    stamp, rest = c.lines[0].split(" ", 1)
    assert rest == "INFO wifi: connected"
    assert stamp[0] == "+" and stamp[-1] == "s", stamp
    secs = float(stamp[1:-1])
    assert 123.4 <= secs < 125, stamp  # 123.456 s, shown to a tenth, and this test's own time
    assert stamp[1:-1].split(".")[1] in "0123456789" and len(stamp[1:-1].split(".")[1]) == 1


def test_clock_set_rule_is_the_year():
    for year, iso in ((CLOCK_SET_YEAR - 1, False), (CLOCK_SET_YEAR, True), (2100, True)):
        c = Captured(utc=(year, 12, 31, 23, 59, 59, 0, 365))
        try:
            log.info("x")
        finally:
            c.close()
        assert c.lines[0].startswith("%04d-12-31T23:59:59Z " % year) == iso, c.lines


def test_real_clock_of_this_host_is_iso():
    """The host's clock is set: the stamp is today's UTC date from this runtime's own clock."""
    c = Captured()
    try:
        before = time.gmtime()
        log.info("x")
        after = time.gmtime()
    finally:
        c.close()
    stamp = c.lines[0].split(" ")[0]
    assert len(stamp) == 20 and stamp[4] == "-" and stamp[10] == "T" and stamp[-1] == "Z", stamp
    days = ["%04d-%02d-%02d" % (t[0], t[1], t[2]) for t in (before, after)]
    assert stamp[:10] in days, (stamp, days)


def test_level_filter_and_bounded_recent():
    c = Captured(utc=(2026, 1, 2, 3, 4, 5, 0, 2))
    try:
        log.set_level("warning")
        log.info("hidden")
        for i in range(RECENT_MAX + 3):
            log.warning("w%d", i)
        recent = list(log.recent)
    finally:
        c.close()
    assert len(c.lines) == RECENT_MAX + 3 and "hidden" not in " ".join(c.lines)
    assert len(recent) == RECENT_MAX
    assert recent[-1] == "2026-01-02T03:04:05Z WARN w%d" % (RECENT_MAX + 2)


def test_a_line_with_no_heap_to_make_it_is_dropped_not_raised():
    """A log call in an except or finally clause must not end the clean-up: an SMTP session's
    finally logged session.close()'s MemoryError, the log call raised one too, and the session's
    socket and slot were never released (bench_heap --runner's c at 195 KiB). MicroPython:
    heap_lock() makes every allocation fail, as an exhausted heap does; CPython: a sink raising
    MemoryError (print's place). (The call's own argument tuple is made before log runs: no
    arguments here, so what fails is the line, as it did there.)"""
    c = Captured(utc=(2026, 6, 1, 9, 5, 7, 0, 152))
    try:
        try:
            import micropython

            lock, unlock = micropython.heap_lock, micropython.heap_unlock
        except (ImportError, AttributeError):
            lock = unlock = None
        if lock is not None:
            lock()
            try:
                log.error("smtp close failed")
            finally:
                unlock()
        else:
            def no_heap(line):
                raise MemoryError

            log.set_sink(no_heap)
            log.error("smtp #%d %s close failed: %r", 7, "10.0.0.9", "x")
            log.set_sink(c.lines.append)
        log.info("after")
    finally:
        c.close()
    assert c.lines == ["2026-06-01T09:05:07Z INFO after"], c.lines
