"""One-line logging for every pocketpost service, with levels and a small ring of recent errors.

MicroPython has no `logging` module; this is the minimum a board needs: a level filter, one
line per event, and the last few warnings/errors kept in RAM for the REPL `status()` view.

Each line starts with when it happened:
    2026-06-01T09:00:00Z INFO ...   ISO 8601 UTC, once the clock is set
    +123.4s INFO ...                seconds since this module was imported (about: since boot),
                                    while it is not
"The clock is set" means the UTC year is _CLOCK_SET_YEAR or later: a board boots at 2000-01-01
(the MicroPython epoch) and keeps that until NTP (or `mpremote rtc --set`) sets it, so a year
before this project existed can only be an unset clock. The uptime form uses ticks_ms, which
wraps (ESP32: every 2**30 ms, about 12 days; ticks_diff is right up to half of that).
"""

import time

from pocketpost.compat import const, ticks_diff, ticks_ms

_DEBUG = const(10)
_INFO = const(20)
_WARNING = const(30)
_ERROR = const(40)
# A line's level word, by level // 10 (0: a level of no name). One literal, split at import: the
# short words of their own ("WARN") would be interned names, as a dict of them (LEVELS) was one more.
_WORDS = "? DEBUG INFO WARN ERROR".split()

# Recent warnings/errors kept for status(): bounded so a flood of bad clients costs fixed RAM.
_RECENT_MAX = const(8)

# A UTC year before this one is a clock nobody has set (see the module docstring).
_CLOCK_SET_YEAR = const(2024)

level = _INFO
recent = []  # type: list
_sink = None  # a callable(line) replacing print, for tests
_gmtime = time.gmtime  # the UTC clock: a callable() -> (year, month, day, hour, min, sec, ...)
_t0 = ticks_ms()


def stamp():
    """The time field of a log line: ISO 8601 UTC if the clock is set, else "+uptime s"."""
    t = _gmtime()
    if t[0] >= _CLOCK_SET_YEAR:
        return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (t[0], t[1], t[2], t[3], t[4], t[5])
    ms = ticks_diff(ticks_ms(), _t0)
    return "+%d.%ds" % (ms // 1000, (ms % 1000) // 100)


def set_level(name):
    global level
    if isinstance(name, str):  # config's level: debug, info, warning or error (else info)
        names = ("debug", "info", "warning", "error")
        name = (_DEBUG, _INFO, _WARNING, _ERROR)[names.index(name)] if name in names else _INFO
    level = name


def set_sink(fn):
    global _sink
    _sink = fn


def log(lvl, msg, args):
    """One line, or none when the heap has no room to make it: a log call never raises
    MemoryError. Callers log in their except and finally clauses, where one would end the
    clean-up (an SMTP session's finally left its socket open and its slot taken: the sender
    waited out its timeout for a message already stored). `args`, the caller's tuple, is passed
    as it is: a star call (`*args`) makes a new one, an allocation outside this try."""
    if lvl < level:
        return
    try:
        if args:
            try:
                msg = msg % args
            except (TypeError, ValueError):
                msg = msg + " " + repr(args)  # (concatenated: a short format is an interned name)
        i = lvl // 10
        line = stamp() + " " + _WORDS[i if lvl % 10 == 0 and 0 < i < 5 else 0] + " " + msg
        if lvl >= _WARNING:
            recent.append(line)
            if len(recent) > _RECENT_MAX:
                recent.pop(0)
        if _sink is not None:
            _sink(line)
        else:
            print(line)
    except MemoryError:
        pass  # the line is lost; what follows it (a disconnect's line) usually finds room again


def debug(msg, *args):
    log(_DEBUG, msg, args)


def info(msg, *args):
    log(_INFO, msg, args)


def warning(msg, *args):
    log(_WARNING, msg, args)


def error(msg, *args):
    log(_ERROR, msg, args)
