# Runs at power-on. All the logic lives in lib/; see lib/app.py.
import micropython

# A hard IRQ that fails must be able to report why (it is disabled for good).
micropython.alloc_emergency_exception_buf(100)

import os

# `picopower deploy` leaves this file and hard-resets the board: that one boot
# stays at the REPL with the app and its watchdog off (rp2's watchdog cannot be
# stopped, and would cut the copy off 8 s after mpremote's Ctrl-C). The file is
# used up here, so the next reset runs the app whatever happens to the deploy.
try:
    os.remove("picopower.hold")
    held = True
except OSError:
    held = False

if held:
    print("main: held for picopower deploy; the app starts at the next reset")
else:
    try:
        import board
    except ImportError as e:
        # The plain Pico build (flashed on a W by mistake) has no `network`:
        # say so in one line and stop, before a watchdog could start.
        if "network" not in str(e):
            raise
        print("this firmware has no Wi-Fi: flash the RPI_PICO_W build")
    else:
        import app

        app.main(board)
