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

NTP answers are not trusted blindly. micropython-lib's ntptime maps any
answer before 2024 into 2036-2160 (a transmit time of 0 reads as
2036-02-07), so:
- every answer must lie in [2024-01-01, 2100), and a first answer from
  2036-02-07 on (where ntptime puts junk) needs a second one to agree;
- after the first sync an answer must agree with the running clock within
  the drift a crystal can have (0.1% of the time since the last sync) plus
  TOLERANCE_MS; one that does not is set aside, and becomes the time only when
  a second answer agrees with it (a real step, such as a server corrected);
- the clock never steps back: a correction backwards is slewed, the wall
  clock running at half speed until it has caught up (an hour takes two),
  so the timestamps of successive readings keep increasing and none repeats
  an hour of stored history. A correction forwards applies at once to the
  times after it; times up to it keep their stamps (a revision of a reading
  published before the correction must land on the same second), for
  times after the oldest of the last HISTORY corrections forwards.
"""

from ticks import ticks_us, ticks_diff, TICKS_MASK

# How far after the last reading a pulse tick may lie (the interrupt can fire
# between the loop's clock reading and its look at the ring): 1 s, generously.
AHEAD_US = 1 << 20

# Every NTP answer must lie in [2024-01-01, 2100).
EARLIEST_UNIX_S = 1704067200
LATEST_UNIX_S = 4102444800
# Disagreement allowed besides 0.1% drift (network delay, NTP's own error).
TOLERANCE_MS = 5000
# ntptime puts every answer before 2024 (junk) at or after 2036-02-07 06:28:16:
# a first answer there needs a second one to agree.
NTP_WRAP_UNIX_S = 2085978496
# Corrections forwards remembered, so that times before them keep their stamps:
# 32 cover revisions.HORIZON_S (25 min) even at the shortest NTP_INTERVAL_S (60 s).
HISTORY = 32


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
    """mono ms -> unix ms: m + A up to mono `_s`, then slewing at half speed
    from A down to the target offset `_off` (A == _off when not slewing)."""

    def __init__(self):
        self.synced = False
        self.syncs = 0
        self.refused = 0     # answers not taken (junk, or a step not yet confirmed)
        self._off = 0
        self._a = 0
        self._s = 0
        # (mono ms of a correction forwards, (A, s, off) in force before it),
        # oldest first, the last HISTORY of them.
        self._steps = []
        self._at = 0         # mono ms of the last accepted answer
        self._pending = None  # (offset, mono ms) of an answer waiting for confirmation

    def _offset(self, mono_ms):
        for b, p in self._steps:
            if mono_ms < b:
                return _slewed(p, mono_ms)
        return _slewed((self._a, self._s, self._off), mono_ms)

    def set(self, unix_ms, mono_ms):
        """Take an NTP answer; ValueError (with the reason) if it is not taken."""
        s = unix_ms // 1000
        if s < EARLIEST_UNIX_S or s >= LATEST_UNIX_S:
            self.refused += 1
            raise ValueError("clock answer %d is outside 2024-2100: junk" % s)
        new = unix_ms - mono_ms
        if self.synced:
            allowed = (mono_ms - self._at) // 1000 + TOLERANCE_MS
            err = new - self._off
            if err > allowed or -err > allowed:
                self._confirm(new, mono_ms, "%+d s off the running clock" % (err // 1000))
        elif s >= NTP_WRAP_UNIX_S:
            self._confirm(new, mono_ms, "%d is where ntptime puts junk" % s)
        self._pending = None
        self._take(new, mono_ms)
        self._at = mono_ms
        self.synced = True
        self.syncs += 1

    def _confirm(self, new, mono_ms, why):
        """Return if the answer kept from at least 2 x TOLERANCE_MS before
        agrees with this one (a junk answer repeated never does: a real clock
        moves on); else keep this one instead and raise."""
        p = self._pending
        if p is not None:
            since = mono_ms - p[1]
            if since >= 2 * TOLERANCE_MS and abs(new - p[0]) <= since // 1000 + TOLERANCE_MS:
                return
        self._pending = (new, mono_ms)
        self.refused += 1
        raise ValueError("clock answer %s; waiting for a second answer to agree" % why)

    def _take(self, new, mono_ms):
        cur = self._offset(mono_ms)
        if not self.synced:
            self._a = self._off = new
        elif new >= cur:
            # Forwards (of where a slew has got to, too): at once from now on;
            # mono times up to now keep the stamps they have.
            if len(self._steps) == HISTORY:
                self._steps.pop(0)
            self._steps.append((mono_ms, (self._a, self._s, self._off)))
            self._a = self._off = new
            self._s = mono_ms
        else:
            # Backwards: slew. Mono times up to now map as before, so no
            # reading stamped (or queued) gets an earlier time.
            if cur == self._off:
                self._a = cur
                self._s = mono_ms
            self._off = new

    def unix_ms(self, mono_ms):
        return mono_ms + self._offset(mono_ms)

    def unix_s(self, mono_ms):
        return self.unix_ms(mono_ms) // 1000

    def mono_ms(self, unix_ms):
        """The mono ms that unix_ms() maps to `unix_ms` (its inverse)."""
        lo = None
        for b, p in self._steps:
            if unix_ms < b + _slewed(p, b):
                m = _inverse(p, unix_ms)
                return m if lo is None or m > lo else lo
            lo = b
        m = _inverse((self._a, self._s, self._off), unix_ms)
        return m if lo is None or m > lo else lo  # a unix time skipped by a step forwards


def _slewed(p, mono_ms):
    """The offset at `mono_ms` of a mapping (A, s, off): A up to s, then
    down towards off at half speed."""
    a, s, off = p
    if a == off or mono_ms <= s:
        return a
    o = a - (mono_ms - s) // 2
    return o if o > off else off


def _inverse(p, unix_ms):
    a, s, off = p
    m = unix_ms - a
    if a == off or m <= s:
        return m
    m = 2 * (unix_ms - a) - s
    end = unix_ms - off
    return m if m < end else end
