# Freeze pocketpost into a custom MicroPython firmware: the bytecode then stays in flash instead
# of taking GC heap (~40 KiB for the server on an ESP32, see boards/esp32/BUDGET.md).
#
#   cd micropython/ports/esp32
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/pocketpost/manifest.py
#
# boot.py, main.py, config.json, secrets.json, cert.der and key.der are still copied to the
# board's flash (tools/deploy.py does it; it skips nothing when the package is frozen, but a
# frozen module is shadowed by a /lib/pocketpost copy: remove that with `mpremote rm -r :lib`).

# Keep what the port freezes by default (asyncio, ntptime, ...).
include("$(PORT_DIR)/boards/manifest.py")

package("pocketpost", base_path="firmware")
