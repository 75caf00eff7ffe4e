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

Old ticks: `ticks_us` wraps every 2^30 us (17.9 min) and `ticks_diff` is only
meaningful for ticks less than 2^29 us (8.9 min) apart, while a meter can be
quiet for hours. So the handler never trusts a tick difference alone:
- the loop calls `settle()` on every pass; once the last accepted pulse is
  older than the minimum gap it marks the filter settled (by storing the
  count it saw, so a pulse arriving meanwhile cancels the mark), and the next
  pulse is accepted with no tick comparison at all;
- a difference that comes out negative can only mean "more than 2^29 us ago"
  and counts as long ago, so even a loop stalled for minutes misjudges only
  pulses falling within one minimum gap of a whole number of wraps;
- a pulse start (width filter) held longer than the widest pulse is marked
  stale by the loop the same way, so an LED stuck on for 17.9 min is not taken
  for a 0-second pulse.

Counters: `count` and `rejected` are bumped in the hard IRQ, where a value
reaching 2^30 would be a heap-allocated big int on rp2 (MemoryError, handler
disabled for good). They wrap from 2^30-1 to 0 without ever forming 2^30; the
loop reads them through `total()` and `rejected_total()`, which rebuild the
unbounded totals from the deltas. Pulse numbers passed to `tick_of` are those
unbounded totals.

Limits: the ring holds `size` pulse times; the loop must read it before that
many further pulses arrive (at 64 and a 100 ms loop that is 640 pulses/s, far
above any meter). The count stays exact even if the loop falls behind, as
long as it calls `total()` before 2^30 further pulses (days at any rate a
pin can deliver).
"""

from array import array

from ticks import ticks_us, ticks_diff

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

RING_SIZE = const(64)
# The largest small int on rp2 (31-bit): IRQ counters wrap to 0 after it.
TOP = const(0x3FFFFFFF)
US_PER_HOUR_KW = 3600000000000  # microseconds x watts in one kWh
# The longest minimum gap the filter can keep: well under the 2^29 us over
# which ticks_diff is meaningful, and more than any real meter needs (1 imp/kWh
# at 100 W is 36 s). config.py refuses settings above it.
MAX_GAP_US = 60000000


def min_gap_us(imp_per_kwh, max_power_w):
    """Shortest plausible pulse interval: one pulse's energy at the maximum power."""
    return US_PER_HOUR_KW // (int(imp_per_kwh) * int(max_power_w))


class PulseCapture:
    def __init__(self, min_gap_us, width_min_us=0, width_max_us=0,
                 active_level=0, size=RING_SIZE, clock=ticks_us):
        if size & (size - 1):
            raise ValueError("ring size must be a power of two")
        if min_gap_us > MAX_GAP_US:
            raise ValueError("minimum gap %d us is longer than the filter can keep (%d us)" % (min_gap_us, MAX_GAP_US))
        # Written by the handler (wrap below 2^30):
        self.count = 0
        self.rejected = 0
        self._last = 0
        self._start = 0
        self._starts = 0      # pulse starts seen (width filter)
        self._active = False
        # Written by the loop, read by the handler:
        self._settled = 0     # `count` when the last pulse was found older than the gap
        self._stale = -1      # `_starts` when the open pulse was found too long
        # Loop side only:
        self._total = 0
        self._seen = 0
        self._rej_total = 0
        self._rej_seen = 0
        self.ring = array("L", [0] * size)
        self.size = size
        self._mask = size - 1
        self._min_gap = min_gap_us
        self._wmin = width_min_us
        self._wmax = width_max_us
        self._level = active_level
        self._clock = clock
        # Fetching a bound method allocates; bind once so the IRQ does not.
        if width_max_us > 0:
            self.handler = self._on_either_edge
        else:
            self.handler = self._on_active_edge

    @property
    def width_filter(self):
        return self._wmax > 0

    # --- the hard IRQ: no allocation, no big ints ---------------------------
    def _reject(self):
        r = self.rejected
        self.rejected = 0 if r == TOP else r + 1

    def _accept(self, t):
        n = self.count
        if self._settled != n:
            d = ticks_diff(t, self._last)
            # Negative: more than 2^29 us ago, so no ghost.
            if 0 <= d < self._min_gap:
                self._reject()
                return
        self.ring[n & self._mask] = t
        self._last = t
        self._settled = -1  # used up: a count that comes round must not find it
        # The count is bumped after the slot is written, so the loop never
        # reads a slot the handler has not finished.
        self.count = 0 if n == TOP else n + 1

    def _on_active_edge(self, pin):
        self._accept(self._clock())

    def _on_either_edge(self, pin):
        t = self._clock()
        if pin.value() == self._level:
            self._start = t
            s = self._starts
            self._starts = 0 if s == TOP else s + 1
            self._active = True
            return
        if not self._active:
            return
        self._active = False
        w = ticks_diff(t, self._start)
        if w < self._wmin or w > self._wmax or self._stale == self._starts:
            self._reject()
            return
        self._accept(self._start)

    # --- the loop -------------------------------------------------------------
    def settle(self):
        """Age the filter's ticks; call on every loop pass (far more often than
        every 8.9 min). Each mark is a snapshot of a counter the handler moves
        on, so a pulse arriving while the loop decides voids the mark."""
        n = self.count
        last = self._last
        d = ticks_diff(self._clock(), last)
        if n != self._settled and (d >= self._min_gap or d < 0):
            self._settled = n
        if self._wmax > 0:
            s = self._starts
            start = self._start
            if self._active:
                w = ticks_diff(self._clock(), start)
                if w > self._wmax or w < 0:
                    self._stale = s

    def total(self):
        """Pulses accepted since start, unbounded."""
        c = self.count
        self._total += (c - self._seen) & TOP
        self._seen = c
        return self._total

    def rejected_total(self):
        """Edges rejected since start, unbounded."""
        r = self.rejected
        self._rej_total += (r - self._rej_seen) & TOP
        self._rej_seen = r
        return self._rej_total

    def tick_of(self, index):
        """Tick of pulse number `index` (0-based, as counted by `total()`), or
        None once overwritten."""
        total = self.total()
        if index >= total or total - index > self._mask + 1:
            return None
        return self.ring[index & self._mask]
