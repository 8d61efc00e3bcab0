"""Runs after boot.py: start pocketpost (POP3 server and/or fetch schedule) from config.json.

Skipped in safe mode (see boot.py). Ctrl-C, or connecting with mpremote, returns to the REPL
once every session has been closed cleanly (pocketpost.board.main); `import machine;
machine.reset()` (or `mpremote reset`) starts it again, and so do tools/ppadmin.py's
export/import/backup/restore over USB when they finish (pocketpost.mailport.restart).
"""

import sys

from pocketpost import safemode  # boot.py's (a fresh import where none ran: not safe mode)


def hardware(board):
    """The real board modules, handed to pocketpost.board as plain objects (tests pass fakes).
    Raises ImportError on the unix port, which has neither Wi-Fi nor a hardware watchdog."""
    import machine
    import network
    import ntptime

    wlan = network.WLAN(network.STA_IF)

    def make_wdt(timeout_ms):
        return machine.WDT(timeout=timeout_ms)

    def keep_fed(wdt):
        # After Ctrl-C nothing feeds the WDT and it cannot be stopped: a timer feeds it instead.
        def feed(_t):
            wdt.feed()

        timer = machine.Timer(0)
        timer.init(period=board.WDT_TIMEOUT_MS // board.WDT_FEED_DIVISOR, mode=machine.Timer.PERIODIC,
                   callback=feed)

    return board.Hardware(wlan=wlan, ntptime=ntptime, make_wdt=make_wdt, reset=machine.reset,
                          keep_fed=keep_fed)


def start():
    if safemode.safe:
        print("pocketpost: safe mode, not starting (REPL is free)")
        return
    # boot.py's modules (safemode, flashfs: ~2.4 KB of heap on the 64-bit host) leave the heap
    # before the services load; the one fact the REPL reads is kept in board.tuned (a fresh
    # import of safemode says safe is False, which is so). On a board boot.py's globals are this
    # script's (and the REPL's): they go too, or they would keep the modules.
    from pocketpost import board
    from pocketpost.compat import forget

    fs = sys.modules.get("pocketpost.flashfs")  # None: no boot.py ran, or main.py runs again
    if fs is not None:  # (mailport.restart on the unix port: board.tuned is set already)
        board.tuned = fs.tuned
    fs = None
    g = globals()
    for n in ("safemode", "flashfs"):
        g.pop(n, None)
    forget(("safemode", "flashfs"))
    try:
        hw = hardware(board)
    except ImportError:  # unix port (pseudo-board): the host's network, no watchdog
        hw = None
    board.main(board.CONFIG_PATH, hw)


start()
