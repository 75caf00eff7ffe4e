"""Time for the loop: an unbounded monotonic timeline and the wall clock.

`Monotonic` extends the 30-bit `ticks_us` counter (which wraps every ~17.9
min) into an integer that never wraps. Time only moves forward, so the
difference between two readings is taken modulo the wrap: exact as long as
the loop reads the clock at least every 2^30 us (17.9 min), which it does many
times a second (and the watchdog resets a loop stalled for 8 s). Pulse ticks
taken by the interrupt are placed on the same timeline by their age modulo
the wrap, so a pulse up to 17.9 min old is placed to the microsecond; a tick
older than that (a loop stalled for longer) is placed up to one wrap late, but
never in the future: it is still counted, in order.

`WallClock` maps that timeline to unix time once NTP has answered. Until
then `synced` is False and readings keep their monotonic time; they are
stamped when they are published, so a reading taken before the first sync
still gets the right unix time.
"""

from ticks import ticks_us, ticks_diff, TICKS_MASK

# How far after the last reading a pulse tick may lie (the interrupt can fire
# between the loop's clock reading and its look at the ring): 1 s, generously.
AHEAD_US = 1 << 20

# An NTP answer before 2020 is junk (a kiss-of-death reply reads as 1900 or 2036).
EARLIEST_UNIX_S = 1577836800


class Monotonic:
    def __init__(self, clock=ticks_us):
        self._clock = clock
        self._tick = clock()
        self.us = 0

    def now_us(self):
        t = self._clock()
        self.us += ticks_diff(t, self._tick) & TICKS_MASK
        self._tick = t
        return self.us

    def now_ms(self):
        return self.now_us() // 1000

    def place(self, tick):
        """Monotonic microseconds of a tick taken at most AHEAD_US after the
        last reading and less than 2^30 us - AHEAD_US before it."""
        back = (ticks_diff(self._tick, tick) + AHEAD_US) & TICKS_MASK
        return self.us + AHEAD_US - back


class WallClock:
    def __init__(self):
        self.synced = False
        self._offset_ms = 0
        self.syncs = 0

    def set(self, unix_ms, mono_ms):
        if unix_ms // 1000 < EARLIEST_UNIX_S:
            raise ValueError("clock answer before 2020: %d" % (unix_ms // 1000))
        self._offset_ms = unix_ms - mono_ms
        self.synced = True
        self.syncs += 1

    def unix_s(self, mono_ms):
        return (self._offset_ms + mono_ms) // 1000

    def unix_ms(self, mono_ms):
        return self._offset_ms + mono_ms
