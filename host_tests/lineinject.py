"""A MemoryError at one line event of the firmware, under CPython (sys.settrace): the MemoryError
sweeps' injector (test_fetch_memoryerror, test_smtp_memoryerror) and their injection points."""

import linecache
import os

from helpers import FIRMWARE

FW = os.path.join(FIRMWARE, "pocketpost") + os.sep
INJECTED = "memory allocation failed, allocating 1024 bytes"  # (MicroPython's words: a line may quote them)


class Injector:
    """sys.settrace's function: counts the line events of each firmware line; raises MemoryError at
    the k-th event of the line `at` = (path, line, k) (tracing then stops: CPython unsets a trace
    function that raised), or, with at=None, records how many times each line ran."""

    def __init__(self, at=None):
        self.at = at
        self.seen = {}
        self.fired = False

    def call(self, frame, event, arg):
        return self.line if frame.f_code.co_filename.startswith(FW) else None

    def line(self, frame, event, arg):
        if event == "line":
            where = (frame.f_code.co_filename, frame.f_lineno)
            k = self.seen[where] = self.seen.get(where, 0) + 1
            if self.at == where + (k,):
                self.fired = True
                raise MemoryError(INJECTED)
        return self.line


def points(rec):
    """The injection points of a recording run's Injector: (path, line, k) for each firmware line
    it ran, its first and its last event; not a line `try:` (CPython's NOP ahead of the block,
    outside its handlers' range: an exception raised there skips them, where no MemoryError can
    arise on either runtime, nothing allocating there)."""
    pts = set()
    for where, k in rec.seen.items():
        if linecache.getline(*where).strip() != "try:":
            pts.add(where + (1,))
            pts.add(where + (k,))
    return sorted(pts)
