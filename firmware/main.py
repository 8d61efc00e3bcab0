"""Runs after boot.py: start pocketpost (POP3 server and/or fetch schedule) from config.json.

Skipped in safe mode (see boot.py). Ctrl-C, or connecting with mpremote, returns to the REPL
once every session has been closed cleanly (pocketpost.board.main); `import machine;
machine.reset()` (or `mpremote reset`) starts it again, and so do tools/ppadmin.py's
export/import/backup/restore over USB when they finish (pocketpost.mailport.restart).
"""

from pocketpost import board, safemode


def hardware():
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
    try:
        hw = hardware()
    except ImportError:  # unix port (pseudo-board): the host's network, no watchdog
        hw = None
    board.main(board.CONFIG_PATH, hw)


start()
