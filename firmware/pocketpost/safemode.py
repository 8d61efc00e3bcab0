"""Safe mode, decided by boot.py before anything else is imported.

Kept apart from pocketpost.board so that boot.py imports neither asyncio nor the board glue
(about 10 KB of heap it would hold for nothing in safe mode, and a bad board module must not
lock the user out of the REPL). Imports only compat and log.
"""

import time

from pocketpost import log
from pocketpost.compat import const, exists

# GPIO0 is the BOOT button on ESP32 and ESP32-S3 dev boards (active low); the ESP32-C3 boards
# use GPIO9. The config cannot choose it: safe mode must work with a bad config.
SAFE_PIN = const(0)
SAFE_PIN_C3 = const(9)
SAFE_FLAG = "safemode"  # a file of this name at the flash root also means safe mode
# BOOT held *during* RESET starts the ROM serial bootloader, not MicroPython; so boot.py watches
# the button for this long after reset: press RESET, release it, then press and hold BOOT.
SAFE_WINDOW_MS = const(1500)
_SAFE_POLL_MS = const(50)

# Set by boot.py through check(); main.py and admin.status() read it. Outside safe mode main.py
# drops this module (and flashfs) from the heap: a fresh import then reads False, which is so.
safe = False


def check(pin=None, flag_path=SAFE_FLAG, window_ms=SAFE_WINDOW_MS, sleep_ms=None):
    """Safe mode if the flag file exists or `pin` (a machine.Pin with pull-up) reads low at any
    time within `window_ms` after boot. Sets the module-level `safe` and returns it."""
    global safe
    why = None
    if exists(flag_path):
        why = "flag file %r" % flag_path
    elif pin is not None:
        if sleep_ms is None:
            sleep_ms = getattr(time, "sleep_ms", None) or (lambda ms: time.sleep(ms / 1000))
        waited = 0
        try:
            while True:
                if pin.value() == 0:
                    why = "BOOT button held after reset"
                    break
                if waited >= window_ms:
                    break
                sleep_ms(_SAFE_POLL_MS)
                waited += _SAFE_POLL_MS
        except (OSError, ValueError) as e:  # a board without that pin: not safe mode
            log.warning("safe mode pin unreadable: %s: %s", type(e).__name__, e)
    safe = why is not None
    if safe:
        log.warning("SAFE MODE (%s): services not started; remove %r and reset", why, flag_path)
    return safe


def board_pin():
    """The BOOT button as an input with pull-up; None on a port without machine.Pin."""
    try:
        import machine
    except ImportError:
        return None
    if not hasattr(machine, "Pin"):  # the unix port's machine module has no Pin
        return None
    import sys

    pin_no = SAFE_PIN_C3 if "ESP32C3" in sys.implementation._machine.upper().replace("-", "") else SAFE_PIN
    try:
        return machine.Pin(pin_no, machine.Pin.IN, machine.Pin.PULL_UP)
    except (ValueError, OSError):
        return None
