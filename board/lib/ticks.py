"""Tick arithmetic shared by the board and the host.

On MicroPython these are the port's own `time.ticks_*` functions. CPython has
none, so the host gets the same arithmetic (30-bit wrapping counters, like the
rp2 port) over its monotonic clock; that keeps the board's logic runnable
unchanged in host tests and in the virtual Pico.
"""

try:
    from time import ticks_us, ticks_ms, ticks_diff, ticks_add
except ImportError:
    import time as _time

    _PERIOD = 1 << 30
    _MASK = _PERIOD - 1
    _HALF = _PERIOD >> 1

    def ticks_us():
        return _time.monotonic_ns() // 1000 & _MASK

    def ticks_ms():
        return _time.monotonic_ns() // 1000000 & _MASK

    def ticks_diff(a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    def ticks_add(a, delta):
        return (a + delta) & _MASK

TICKS_PERIOD = 1 << 30
TICKS_MASK = 0x3FFFFFFF  # a tick difference modulo the period: (d & TICKS_MASK)
