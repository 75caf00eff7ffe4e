"""Host companion of the Pico Power Meter firmware.

The firmware's own modules (board/lib) are imported from here, never copied:
see `picopower.firmware`.
"""

__version__ = "0.1.0"
