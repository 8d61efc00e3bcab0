"""Runs first at every reset. Decides safe mode, then (outside safe mode) remounts the flash with
pocketpost's littlefs geometry (pocketpost.flashfs); nothing else, so the REPL is always reachable.

Safe mode (services not started; the REPL and mpremote work as on a fresh board):
- press RESET, release it, then press and hold the BOOT button (GPIO0 on ESP32/ESP32-S3, GPIO9
  on ESP32-C3) within 1.5 s (holding BOOT *during* reset would start the ROM bootloader), or
- create the flag file:  .venv/bin/mpremote exec "open('safemode', 'w').close()" + reset
  and remove it again:   .venv/bin/mpremote rm :safemode + reset
In safe mode the flash stays as the firmware mounted it (MicroPython's defaults); only a move a
power cut left half done is finished (pocketpost.flashfs.settle), so a listing shows every file.

Only pocketpost.safemode is imported before the decision (not the board glue, not asyncio): safe
mode must not depend on the code it protects the user from. Outside safe mode main.py drops both
modules again (and these globals, which on a board are main.py's and the REPL's) before the
services load, keeping flashfs.tuned in pocketpost.board.tuned.
"""

import gc

from pocketpost import safemode

safemode.check(safemode.board_pin())
try:  # safe mode: the firmware's mount stays, only a move a power cut left half done is finished
    from pocketpost import flashfs

    flashfs.tune_board(safemode.safe)
except Exception as e:  # the flash stays mounted as it was: slower, never unreachable
    print("boot: flash geometry unchanged:", repr(e))
gc.collect()
