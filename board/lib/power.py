"""Watts from pulse times: the mean power over each report window.

A meter's pulses mark exact energy steps, so the cumulative energy is known at
every pulse and is interpolated linearly between pulses. The mean power of a
window [t0, t1] is (E(t1) - E(t0)) / (t1 - t0):
- where a pulse has arrived after a window edge, E at that edge is
  interpolated between the pulses around it (this is exact for a steady load
  and is why a window is never quantised to whole pulses);
- past the newest pulse, energy is extrapolated at the last interval's rate
  until one interval has passed; after that the load must have dropped: the
  rate follows the physical bound (one pulse / time since the last pulse) up
  to `KNEE` intervals, which absorbs the ripple of a steady load, and then
  that bound scaled by `TAIL`, so a switched-off load falls away fast;
- once the pulse is `OVERDUE` intervals late, a window without pulses is
  judged with that knowledge: the old load stopped at some moment of the
  interval its pulse was due in (half a pulse on average), not at its end.
The result is then capped by that bound whenever no pulse arrived in the
window, and is 0 once no pulse has arrived for `timeout_s`, unless the last
interval was itself longer: a slow standby (8 W at 1000 imp/kWh pulses every
450 s) is not "off" 300 s after its pulse, so then it is 0 once the pulse is
overdue (`KNEE` intervals), and in any case after `HOLD` timeouts.

Times are integer microseconds on one monotonic timeline (see clock.py), so
32-bit floats on the Pico only ever see differences and ratios.
"""

from math import log

# How overdue pulses are credited; tuned on the load-profile benchmark
# (bench/estimators.py): up to KNEE intervals at the physical bound, then
# TAIL times it.
KNEE = 1.1
TAIL = 0.3
_LOG_KNEE = log(KNEE)
HOLD = 4  # a slow standby's reading lasts at most this many timeouts without a pulse
# A pulse this many intervals late: the load dropped at an unknown moment of
# the interval in which the pulse was due (tuned on the same benchmark).
OVERDUE = 1.5
J_US_PER_KWH = 3.6e12  # joules x microseconds per kWh, as watt-microseconds


def _fraction(tau, interval):
    """Pulses' worth of energy extrapolated `tau` after a pulse."""
    if interval <= 0 or tau <= 0:
        return 0.0
    rho = tau / interval
    if rho <= 1.0:
        return rho
    if rho <= KNEE:
        return 1.0 + log(rho)
    return 1.0 + _LOG_KNEE + TAIL * log(rho / KNEE)


def _overdue(rho):
    """Pulses' worth of energy `rho` intervals after a pulse, seen from a
    moment when the next pulse is overdue: the old load ran until a moment
    spread evenly over the interval in which its pulse was due (half a pulse
    on average), and what runs after it is credited as TAIL times the
    physical bound, as in `_fraction`."""
    e = rho - rho * rho / 2 if rho <= 1.0 else 0.5
    if rho > KNEE:
        e += TAIL * log(rho / KNEE)
    return e


class PowerEstimator:
    def __init__(self, imp_per_kwh, timeout_s=300):
        self._w_us = J_US_PER_KWH / imp_per_kwh  # one pulse, in watt-microseconds
        self._timeout_us = int(timeout_s) * 1000000
        self.last = None       # newest pulse
        self.prev = None       # the pulse before it
        self._t0 = None        # start of the open window
        self._a_last = None    # newest pulse at the window start
        self._a_prev = None
        self._a_next = None    # first pulse after the window start
        self._n = 0            # pulses inside the open window

    def pulse(self, t):
        if self._t0 is not None and self._a_next is None and t > self._t0:
            self._a_next = t
        self.prev = self.last
        self.last = t
        self._n += 1

    def start(self, t):
        """Open the first window at `t` (boot)."""
        self._roll(t)

    def _roll(self, t):
        self._t0 = t
        self._a_last = self.last
        self._a_prev = self.prev
        self._a_next = None
        self._n = 0

    def _energy_at_start(self):
        """Pulses' worth of energy between the window start's last pulse and it."""
        a = self._a_last
        if a is None:
            return None
        if self._a_next is not None:
            return (self._t0 - a) / (self._a_next - a)
        if self._a_prev is None:
            return 0.0
        return _fraction(self._t0 - a, a - self._a_prev)

    def close(self, t1):
        """Mean power in watts of the window ending at `t1`; opens the next one."""
        p = self._mean(t1)
        self._roll(t1)
        return p

    def _mean(self, t1):
        last = self.last
        span = t1 - self._t0
        if last is None or span <= 0 or self.prev is None:
            return 0.0
        tau = t1 - last
        if tau >= self._timeout_us and (tau >= KNEE * (last - self.prev) or tau >= HOLD * self._timeout_us):
            return 0.0
        interval = last - self.prev
        if self._n == 0 and interval > 0 and tau > OVERDUE * interval and self._a_next is None:
            # No pulse since before the window and it is overdue: see the whole
            # window with what is known now (the load stopped), not with the
            # guess made at its start (the load runs on).
            p = (_overdue(tau / interval) - _overdue((self._t0 - last) / interval)) * self._w_us / span
            bound = self._w_us / tau
            return p if p < bound else bound
        tail = _fraction(t1 - last, last - self.prev)
        head = self._energy_at_start()
        if head is None:
            # No pulse before the window: measure from its first pulse.
            if self._n < 2:
                return 0.0
            pulses = self._n - 1 + tail
            span = t1 - self._a_next
        else:
            pulses = self._n + tail - head
        if pulses <= 0:
            return 0.0
        p = pulses * self._w_us / span
        if self._n == 0:
            bound = self._w_us / (t1 - last)
            if p > bound:
                p = bound
        return p
