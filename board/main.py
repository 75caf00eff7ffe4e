# Runs at power-on. All the logic lives in lib/; see lib/app.py.
import micropython

# A hard IRQ that fails must be able to report why (it is disabled for good).
micropython.alloc_emergency_exception_buf(100)

import board
import app

app.main(board)
