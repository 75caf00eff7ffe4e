"""Pulse capture: the only code that runs in the hard interrupt.

The handler stores the microsecond tick of each accepted pulse in a
preallocated ring and bumps a counter; it allocates nothing, so it is safe with
`Pin.irq(hard=True)`, where the heap is locked and an exception would disable
the callback for good. Everything else (converting ticks to time, power,
energy) is done by the main loop from the ring.

Ghost pulses are rejected two ways:
- a minimum gap between accepted pulses, derived from the meter constant and
  the highest power the installation can draw (`min_gap_us`): a second edge
  sooner than that would mean more power than the mains fuse allows, so it is
  bounce or flicker;
- optionally a pulse-width window, using both edges: the LED (or S0 contact)
  must stay active between `width_min_us` and `width_max_us`.

Limits: the ring holds `size` pulse times; the loop must read it before that
many further pulses arrive (at 64 and a 100 ms loop that is 640 pulses/s, far
above any meter). The count stays exact even if the loop falls behind.
"""

from array import array

from ticks import ticks_us, ticks_diff

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

RING_SIZE = const(64)
US_PER_HOUR_KW = 3600000000000  # microseconds x watts in one kWh


def min_gap_us(imp_per_kwh, max_power_w):
    """Shortest plausible pulse interval: one pulse's energy at the maximum power."""
    return US_PER_HOUR_KW // (int(imp_per_kwh) * int(max_power_w))


class PulseCapture:
    def __init__(self, min_gap_us, width_min_us=0, width_max_us=0,
                 active_level=0, size=RING_SIZE, clock=ticks_us):
        if size & (size - 1):
            raise ValueError("ring size must be a power of two")
        self.count = 0
        self.rejected = 0
        self.ring = array("L", [0] * size)
        self._mask = size - 1
        self._min_gap = min_gap_us
        self._wmin = width_min_us
        self._wmax = width_max_us
        self._level = active_level
        self._clock = clock
        self._last = 0
        self._start = 0
        self._active = False
        # Fetching a bound method allocates; bind once so the IRQ does not.
        if width_max_us > 0:
            self.handler = self._on_either_edge
        else:
            self.handler = self._on_active_edge

    @property
    def width_filter(self):
        return self._wmax > 0

    def _accept(self, t):
        if self.count and ticks_diff(t, self._last) < self._min_gap:
            self.rejected += 1
            return
        self.ring[self.count & self._mask] = t
        self._last = t
        # The count is bumped after the slot is written, so the loop never
        # reads a slot the handler has not finished.
        self.count += 1

    def _on_active_edge(self, pin):
        self._accept(self._clock())

    def _on_either_edge(self, pin):
        t = self._clock()
        if pin.value() == self._level:
            self._start = t
            self._active = True
            return
        if not self._active:
            return
        self._active = False
        w = ticks_diff(t, self._start)
        if w < self._wmin or w > self._wmax:
            self.rejected += 1
            return
        self._accept(self._start)

    def tick_of(self, index):
        """Tick of pulse number `index` (0-based), or None once overwritten."""
        if index >= self.count or self.count - index > self._mask + 1:
            return None
        return self.ring[index & self._mask]
