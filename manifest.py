# Freeze pocketpost into a custom MicroPython firmware: the bytecode then stays in flash instead
# of taking GC heap, as from a ROMFS partition (`make deploy` prints the difference it measures;
# see boards/esp32/BUDGET.md and docs/BOARD.md "Code in flash").
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/pocketpost/manifest.py
#
# Every module of firmware/pocketpost is frozen (package() takes the whole folder, so a new
# module is never left out; host_tests/test_deploy.py builds this list). boot.py and main.py are
# not: frozen, they would run instead of the board's own. They, config.json, secrets.json and the
# DER certificate and key still go to the board's flash with `make deploy`, which sees the frozen
# package and copies no code: '.frozen' is searched before /lib and /rom (sys.path), so a copy
# there would never be imported. To update the code, build and flash the firmware again.

# Keep what the port freezes by default (asyncio, ntptime, ...).
include("$(PORT_DIR)/boards/manifest.py")

package("pocketpost", base_path="firmware")
