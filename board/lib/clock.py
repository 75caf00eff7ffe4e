"""Time for the loop: an unbounded monotonic timeline and the wall clock.

`Monotonic` extends the 30-bit `ticks_us` counter (which wraps every ~17.9
min) into an integer that never wraps. It must be updated at least every ~8.9
minutes, which the main loop does many times a second; pulse ticks taken by
the interrupt are placed on the same timeline while they are younger than
that, so a pulse interval of hours is still measured to the microsecond.

`WallClock` maps that timeline to unix time once NTP has answered. Until
then `synced` is False and readings keep their monotonic time; they are
stamped when they are published, so a reading taken before the first sync
still gets the right unix time.
"""

from ticks import ticks_us, ticks_diff

# An NTP answer before 2020 is junk (a kiss-of-death reply reads as 1900 or 2036).
EARLIEST_UNIX_S = 1577836800


class Monotonic:
    def __init__(self, clock=ticks_us):
        self._clock = clock
        self._tick = clock()
        self.us = 0

    def now_us(self):
        t = self._clock()
        self.us += ticks_diff(t, self._tick)
        self._tick = t
        return self.us

    def now_ms(self):
        return self.now_us() // 1000

    def place(self, tick):
        """Monotonic microseconds of a recent tick (younger than ~8.9 min)."""
        return self.us + ticks_diff(tick, self._tick)


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
