"""Load profiles and the meter pulses they make, with exact ground truth.

A profile is piecewise-constant power: a sorted list of (seconds, watts),
each value holding until the next. From it come the exact energy in any span
(the ground truth the estimators are scored against) and the exact instants
a meter of a given constant emits its pulses. Used by the virtual Pico, the
replay tests and the estimator benchmark.
"""

import math
import random
from bisect import bisect_right

from picopower.errors import Invalid, Unavailable

J_PER_KWH = 3.6e6


class Profile:
    def __init__(self, steps):
        steps = sorted((float(t), float(w)) for t, w in steps)
        if not steps:
            raise Invalid("a profile needs at least one (time, watts) step")
        for t, w in steps:
            if w < 0 or not math.isfinite(w):
                raise Invalid("profile watts must be finite and >= 0, got %r at t=%r" % (w, t))
        self.times = [t for t, _ in steps]
        self.watts = [w for _, w in steps]
        # Cumulative joules at each step start.
        self._cum = [0.0]
        for i in range(1, len(steps)):
            self._cum.append(self._cum[-1] + self.watts[i - 1] * (self.times[i] - self.times[i - 1]))

    @classmethod
    def constant(cls, watts, start=0.0):
        return cls([(start, watts)])

    @classmethod
    def from_file(cls, path):
        """A text file of `seconds watts` per line (comma or space separated)."""
        steps = []
        try:
            f = open(path)
        except OSError as e:
            raise Unavailable("cannot read %s: %s" % (path, e.strerror or e)) from None
        with f:
            for n, line in enumerate(f, 1):
                line = line.split("#")[0].strip()
                if not line:
                    continue
                parts = line.replace(",", " ").split()
                if len(parts) != 2:
                    raise Invalid("%s:%d: expected 'seconds watts', got %r" % (path, n, line))
                try:
                    steps.append((float(parts[0]), float(parts[1])))
                except ValueError:
                    raise Invalid("%s:%d: not numbers: %r" % (path, n, line)) from None
        return cls(steps)

    def power_at(self, t):
        i = bisect_right(self.times, t) - 1
        return self.watts[max(i, 0)]

    def energy_to(self, t):
        """Joules from the profile's start to `t`."""
        if t <= self.times[0]:
            return 0.0
        i = bisect_right(self.times, t) - 1
        return self._cum[i] + self.watts[i] * (t - self.times[i])

    def mean_power(self, t0, t1):
        return (self.energy_to(t1) - self.energy_to(t0)) / (t1 - t0)

    def pulses(self, imp_per_kwh, phase=0.5, end=None):
        """Exact pulse instants (profile seconds), lazily, up to `end` (None: as
        long as the last step's power lasts): one every 3.6e6/imp joules.

        `phase` is how far into the first pulse's energy the meter already is
        at the profile's start (a real meter is somewhere mid-pulse). Lazy, so
        a fleet of virtual boards running for days holds no pulse lists.
        """
        e = J_PER_KWH / imp_per_kwh
        times, watts, cum = self.times, self.watts, self._cum
        n = len(times)
        i = 0
        k = 1
        target = e * (k - phase)
        while True:
            while i + 1 < n and cum[i + 1] < target:
                i += 1
            w = watts[i]
            if not ((i + 1 < n and cum[i + 1] >= target) or w > 0):
                return  # no energy left to make another pulse
            # The crossing is inside step i (w > 0 there since the energy grows), or past the last step.
            t = times[i] + (target - cum[i]) / w
            if end is not None and t > end:
                return
            yield t
            k += 1
            target = e * (k - phase)

    def pulse_times(self, imp_per_kwh, end, phase=0.5):
        """`pulses()` up to `end`, as a list."""
        return list(self.pulses(imp_per_kwh, phase, end))


def household_day(start=0.0, seed=1, hours=24.0):
    """A plausible household: standby, fridge cycles, kettle, oven, evening lights."""
    rng = random.Random(seed)
    end = start + hours * 3600
    base = 60.0
    events = []  # (t0, t1, watts) added on top of the base
    t = start
    while t < end:  # fridge: ~20 min on, ~40 min off
        on = t + rng.uniform(1500, 2700)
        events.append((on, on + rng.uniform(900, 1500), 110.0 + rng.uniform(-10, 10)))
        t = on + 1500
    for h, dur, w in ((7.2, 180, 2200), (8.1, 150, 2200), (12.5, 2400, 2800), (18.0, 3600, 2400),
                      (16.5, 200, 2100), (20.5, 5400, 180), (19.0, 4000, 350)):
        t0 = start + h * 3600 + rng.uniform(-600, 600)
        if t0 < end:
            events.append((t0, t0 + dur, float(w)))
    cuts = {start, end}
    for t0, t1, _ in events:
        cuts.update((max(start, t0), min(end, t1)))
    steps = []
    for c in sorted(x for x in cuts if start <= x <= end):
        w = base + sum(w for t0, t1, w in events if t0 <= c < t1)
        steps.append((c, w))
    return Profile(steps)
