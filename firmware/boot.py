"""Runs first at every reset. Decides safe mode and nothing else, so the REPL is always reachable.

Safe mode (services not started; the REPL and mpremote work as on a fresh board):
- press RESET, release it, then press and hold the BOOT button (GPIO0 on ESP32/ESP32-S3, GPIO9
  on ESP32-C3) within 1.5 s (holding BOOT *during* reset would start the ROM bootloader), or
- create the flag file:  mpremote exec "open('safemode', 'w').close()" + reset
  and remove it again:   mpremote rm :safemode + reset
"""

import gc
import sys

from pocketpost import board


def _safe_pin():
    """The BOOT button as an input with pull-up; None on a port without machine.Pin."""
    try:
        import machine
    except ImportError:
        return None
    if not hasattr(machine, "Pin"):  # the unix port's machine module has no Pin
        return None
    pin_no = board.SAFE_PIN
    if "ESP32C3" in sys.implementation._machine.upper().replace("-", ""):
        pin_no = 9  # ESP32-C3 dev boards: BOOT is GPIO9
    try:
        return machine.Pin(pin_no, machine.Pin.IN, machine.Pin.PULL_UP)
    except (ValueError, OSError):
        return None


board.check_safe_mode(_safe_pin())
gc.collect()
