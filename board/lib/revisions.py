"""Revisions: a published window's exact mean power, once the meter has told it.

A pulse meter knows the energy between two pulses exactly and nothing about
how it was spread, so the firmware's reference for a window [t0, t1] is
power.py's own rule with hindsight: cumulative energy interpolated between
the pulses around each edge, mean = (E(t1) - E(t0)) / (t1 - t0). The live
reading had to guess E(t1) (and E(t0) too, if no pulse had come since t0);
once pulses land after t1 the guess can be checked. Revisions are published
on REVISION_TOPIC (default `<MQTT_TOPIC>/revised`) in the seed's format with
the live reading's timestamp, so InfluxDB and the bridge's SQLite overwrite
the live point, and Home Assistant, on MQTT_TOPIC, never sees one.

The rules:
- A window can be revised only if a pulse came at or before its start (its
  start edge needs a pulse on each side); windows before the first pulse
  after boot stay as published.
- When the first pulse after a window's end arrives, the window's exact mean
  is final. It is queued as a revision (same channel, same monotonic time,
  same pulse total as the live reading, so the same timestamp and energy)
  only if it differs from the published value by more than
  max(1 W, 1 % of the exact value); otherwise the live value stands.
- Each window is revised at most once, revisions are queued in the order
  their windows end, and always after the live reading of the same window
  (a window's revision needs a pulse that comes after it was published).
- The energy between two pulses is spread evenly, except where the
  interval's rate lies between those of the intervals before and after it:
  the load stepped inside it, so power is taken at the earlier rate up to a
  step and at the later one after it, the step placed so the interval still
  holds exactly one pulse (a kettle switched off mid-pulse). A window is thus
  final only when the pulse after the one following its end has come.
- Horizon: `slots` windows per channel are kept pending. A window that falls
  out is final with what is known then: spread evenly if a pulse came after
  its end, else as published. The App sizes `slots` to cover HORIZON_S
  (25 min: two intervals of a 5 W standby at 1000 imp/kWh, a pulse every
  12 min), at most MAX_SLOTS.

RAM: three preallocated arrays of `slots` entries (end time and pulse total
as 32-bit integers modulo 2**32, published watts as a 32-bit float), 12 bytes
a window: 151 windows, 1812 bytes, per channel at the defaults. Nothing is
allocated per pulse or per window beyond the integers of the arithmetic.
"""

from array import array

from power import J_US_PER_KWH

_MASK32 = 0xFFFFFFFF
HORIZON_S = 1500
MAX_SLOTS = 256


def slots_for(interval_s, horizon_s=HORIZON_S):
    """Pending windows needed to keep `horizon_s` open for revision."""
    n = (horizon_s + interval_s - 1) // interval_s + 1
    return n if n < MAX_SLOTS else MAX_SLOTS


def differs(exact, published):
    """Whether a revision is worth a message: more than max(1 W, 1 %) apart."""
    limit = exact * 0.01
    if limit < 1.0:
        limit = 1.0
    d = exact - published
    return d > limit or -d > limit


def _share(x, rp, rn):
    """Share of an interval's pulse spent in its first fraction `x` (0-1).

    `rp` and `rn` are the rates of the intervals before and after it in units
    of this interval's rate (None when unknown). When this interval's rate
    lies strictly between them the load stepped inside it: power was at the
    earlier rate until the step, then at the later one, the step placed so
    the interval holds exactly one pulse. Otherwise the power was steady."""
    if rp is None or rn is None or (rp - 1.0) * (1.0 - rn) <= 0.0:
        return x
    xs = (1.0 - rn) / (rp - rn)
    if x <= xs:
        return rp * x
    return 1.0 - rn * (1.0 - x)


class Revisions:
    """Pending windows of one channel; `emit(end_ms, watts, total)` queues a revision."""

    def __init__(self, imp_per_kwh, slots, emit):
        self._w_us = J_US_PER_KWH / imp_per_kwh  # one pulse, in watt-microseconds
        self.slots = slots
        self._emit = emit
        # Filled from a generator: no temporary list as long as the array.
        self._end = array("I", (0 for _ in range(slots)))      # window end, monotonic ms mod 2**32
        self._watts = array("f", (0.0 for _ in range(slots)))  # as published
        self._total = array("I", (0 for _ in range(slots)))    # pulse total of the live reading, mod 2**32
        self._head = 0
        self.pending = 0
        self._head_start = 0   # monotonic ms where the oldest pending window starts
        self._head_acc = 0.0   # pulses between that start and the settled pulse
        self._open = None      # monotonic ms where the open window starts
        self._open_acc = 0.0   # pulses between the open window's start and the settled pulse
        self._anchored = False  # a pulse came at or before the open window's start
        # The newest pulses, monotonic µs: energy is settled up to _settled
        # (the second newest); the interval from it to _last waits for the
        # next pulse, whose rate tells whether the load stepped inside it.
        self._last = None
        self._settled = None
        self._span_before = 0  # length of the interval ending at _settled (0: unknown)
        self._now_ms = 0       # newest window end, for rebuilding stored ends
        self.revised = 0
        self.final = 0         # windows that fell out of the horizon unrevised

    def start(self, t_us):
        """The first window opens at `t_us` (boot)."""
        self._open = t_us // 1000
        self._open_acc = 0.0
        self._anchored = False

    def _end_at(self, i):
        return self._now_ms - ((self._now_ms - self._end[i]) & _MASK32)

    def closed(self, t_us, watts, total):
        """The open window ended at `t_us` and `watts` was published for it."""
        end = t_us // 1000
        if self._anchored and end > self._open:
            if self.pending == 0:
                self._head_start = self._open
                self._head_acc = self._open_acc
            elif self.pending == self.slots:
                self._drop()
            i = (self._head + self.pending) % self.slots
            self._end[i] = end & _MASK32
            self._watts[i] = watts
            self._total[i] = total & _MASK32
            self.pending += 1
        self._now_ms = end
        self._open = end
        self._open_acc = 0.0
        self._anchored = self._settled is not None

    def _finish(self, end, watts, total, pulses):
        start = self._head_start
        exact = pulses * self._w_us / ((end - start) * 1000)
        if differs(exact, watts):
            self.revised += 1
            self._emit(end, exact, total)
        self._head_start = end
        self._head_acc = 0.0
        self._head = (self._head + 1) % self.slots
        self.pending -= 1

    def _drop(self):
        """The oldest window leaves the horizon: final with what is known."""
        i = self._head
        end = self._end_at(i)
        a = self._settled
        b = self._last
        if a is not None and b > a and end * 1000 <= b:
            # Its end lies before the newest pulse: steady power since _settled.
            lo = self._head_start * 1000
            if lo < a:
                lo = a
            self._finish(end, self._watts[i], self._total[i], self._head_acc + (end * 1000 - lo) / (b - a))
            return
        self._head_start = end
        self._head_acc = 0.0
        self._head = (i + 1) % self.slots
        self.pending -= 1
        self.final += 1

    def pulse(self, c):
        """A pulse at monotonic µs `c` (never earlier than the previous one)."""
        b = self._last
        if b is not None and c <= b:
            c = b + 1  # two pulses on one µs: keep the intervals positive
        a = self._settled
        self._settled = b
        self._last = c
        if a is None:
            if b is not None:
                self._span_before = 0
            return
        span = b - a
        rp = span / self._span_before if self._span_before else None
        rn = span / (c - b)
        self._span_before = span
        # Settle the interval (a, b]: every pending window ending in it is final.
        while self.pending:
            i = self._head
            end = self._end_at(i)
            lo = self._head_start * 1000
            x0 = 0.0 if lo <= a else (lo - a) / span
            if end * 1000 > b:
                self._head_acc += 1.0 - _share(x0, rp, rn)
                return
            share = _share((end * 1000 - a) / span, rp, rn) - _share(x0, rp, rn)
            self._finish(end, self._watts[i], self._total[i], self._head_acc + share)
        if self._open is not None:
            lo = self._open * 1000
            if lo <= a:
                self._open_acc += 1.0
            elif lo < b:
                self._open_acc += 1.0 - _share((lo - a) / span, rp, rn)
