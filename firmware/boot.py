"""Runs first at every reset. Decides safe mode and nothing else, so the REPL is always reachable.

Safe mode (services not started; the REPL and mpremote work as on a fresh board):
- press RESET, release it, then press and hold the BOOT button (GPIO0 on ESP32/ESP32-S3, GPIO9
  on ESP32-C3) within 1.5 s (holding BOOT *during* reset would start the ROM bootloader), or
- create the flag file:  .venv/bin/mpremote exec "open('safemode', 'w').close()" + reset
  and remove it again:   .venv/bin/mpremote rm :safemode + reset

Only pocketpost.safemode is imported here (not the board glue, not asyncio): safe mode must not
depend on the code it protects the user from.
"""

import gc

from pocketpost import safemode

safemode.check(safemode.board_pin())
gc.collect()
