"""One-line logging for every pocketpost service, with levels and a small ring of recent errors.

MicroPython has no `logging` module; this is the minimum a board needs: a level filter, one
line per event, and the last few warnings/errors kept in RAM for the REPL `status()` view.
"""

from pocketpost.compat import const, now

DEBUG = const(10)
INFO = const(20)
WARNING = const(30)
ERROR = const(40)
LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}
_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARN", ERROR: "ERROR"}

# Recent warnings/errors kept for status(): bounded so a flood of bad clients costs fixed RAM.
RECENT_MAX = const(8)

level = INFO
recent = []  # type: list
_sink = None  # a callable(line) replacing print, for tests


def set_level(name_or_int):
    global level
    level = LEVELS.get(name_or_int, INFO) if isinstance(name_or_int, str) else name_or_int


def set_sink(fn):
    global _sink
    _sink = fn


def log(lvl, msg, *args):
    if lvl < level:
        return
    if args:
        try:
            msg = msg % args
        except (TypeError, ValueError):
            msg = "%s %r" % (msg, args)
    line = "%d %s %s" % (now(), _NAMES.get(lvl, "?"), msg)
    if lvl >= WARNING:
        recent.append(line)
        if len(recent) > RECENT_MAX:
            recent.pop(0)
    if _sink is not None:
        _sink(line)
    else:
        print(line)


def debug(msg, *args):
    log(DEBUG, msg, *args)


def info(msg, *args):
    log(INFO, msg, *args)


def warning(msg, *args):
    log(WARNING, msg, *args)


def error(msg, *args):
    log(ERROR, msg, *args)
