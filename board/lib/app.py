"""The firmware's application: channels, report windows, queue, connection.

`App(board, settings)` runs on whatever `board` it is given: the Pico's
`board` module on the device, or picopower's virtual board on a PC. One call
of `step()` is one pass of the main loop: place new pulses on the monotonic
timeline, close a report window when one is due (a reading per channel goes
into the outbox), save the energy total when due, advance the connection by
one operation, show the state on the LED. It returns how long the loop may
sleep before the next pass.
"""

import energy
import files
import health
import scratch
import status
from clock import Monotonic, WallClock
from link import Link
from outbox import Outbox, capacity_for, nearest
from spill import Durable, FLUSH_AGE_MS
from power import PowerEstimator
from pulses import PulseCapture, RING_SIZE, min_gap_us

LOOP_MS = 100
# At most this many overwritten pulses are spread over one gap for the power
# estimate (the energy total counts them all): 4096 is a minute at 10000
# imp/kWh and 24 kW, far longer than any loop is held up.
SPREAD_MAX = 4096


class Channel:
    """One meter: its pulse input, power estimator and energy total."""

    revisions = None  # revisions.Revisions while REVISION_TOPIC is set

    def __init__(self, index, spec, settings, board, log):
        self.index = index
        self.spec = spec
        self.imp = spec["imp_per_kwh"]
        self.series = spec["seriesname"]
        self.name = spec["name"]
        width = spec["pulse_width_max_ms"] > 0
        self.capture = PulseCapture(
            min_gap_us(self.imp, spec["max_power_w"]),
            int(spec["pulse_width_min_ms"] * 1000), int(spec["pulse_width_max_ms"] * 1000),
            0 if spec["edge"] == "falling" else 1, RING_SIZE * 4, board.ticks_us)
        self.estimator = PowerEstimator(self.imp, settings["power_timeout_s"])
        name = energy.FILE if index == 0 else "energy%d.dat" % index
        self.store = energy.EnergyStore(self.imp, settings["persist_interval_s"] * 1000,
                                        board.data_path(name), log, _files(board))
        self.keeper = None  # scratch.Keeper for channels 0-2
        self.seen = 0
        self.lost = 0
        self._board = board
        self._width = width

    def attach(self):
        s = self.spec
        handler = self.keeper.handler if self.keeper is not None else self.capture.handler
        self._board.pulse_input(s["pin"], s["pull"], s["edge"], self._width, handler)

    def total(self):
        return self.store.base + self.capture.total()

    def ingest(self, mono, now_us):
        """Feed the estimator every pulse up to `now_us`, oldest first."""
        cap = self.capture
        count = cap.total()  # unbounded: the IRQ's own count wraps at 2^30
        est = self.estimator
        lost = 0
        i = self.seen
        if count - i > cap.size:
            # Overwritten long ago (a loop held up for seconds): skip to the ring.
            lost = count - cap.size - i
            i = count - cap.size
        while i < count:
            tick = cap.tick_of(i)
            if tick is None:
                lost += 1
                i += 1
                continue
            t = mono.place(tick)
            if t > now_us:
                break
            if est.last is not None and t < est.last:
                t = est.last  # only a loop stalled past 17.9 min gets here
            if lost:
                # Overwritten ticks: spread them evenly before this pulse.
                start = est.last if est.last is not None else t
                n = lost if lost < SPREAD_MAX else SPREAD_MAX  # bounded work per pass
                for k in range(1, n + 1):
                    self._pulse(start + (t - start) * k // (n + 1))
                self.lost += lost
                lost = 0
            self._pulse(t)
            i += 1
        self.seen = i - lost  # overwritten ticks before a pulse not yet due: next pass
        cap.settle()

    def _pulse(self, t):
        self.estimator.pulse(t)
        if self.revisions is not None:
            self.revisions.pulse(t)


# Stands in for the RAM queue until everything else is built (see App).
_NO_QUEUE = Outbox(0)


def _files(board):
    # The virtual board hands out flash operations it can cut the power in.
    return board.files() if hasattr(board, "files") else files.Files()


class App:
    def __init__(self, board, settings):
        self.board = board
        self.s = settings
        self.log = board.log
        self.mono = Monotonic(board.ticks_us)
        self.wall = WallClock()
        self.started = scratch.Boot(board)
        # Modules first, the RAM queue last: it is sized from the heap the rest
        # left (board.heap_free collects first), so RESERVE_BYTES stays free
        # for the socket and TLS (bench/heap.py).
        if settings["revision_topic"]:
            from revisions import Revisions, slots_for
        if settings["ha_discovery"]:
            import discovery
        self.outbox = Durable(_NO_QUEUE, _files(board), board.data_path("queue"), self.wall, self.log)
        self.channels = [Channel(i, spec, settings, board, self.log)
                         for i, spec in enumerate(settings["channels"])]
        for ch in self.channels:
            if ch.index < scratch.CHANNELS:
                ch.keeper = scratch.Keeper(board.scratch_write, ch.index, ch.capture)
        self.link = Link(board, settings, self.mono.now_ms, self.wall, self.outbox,
                         self.channels, self.log)
        self.interval_us = settings["report_interval_s"] * 1000000
        self.readings = 0
        # callables(channel_index, mono_ms, watts, pulses, kind) for every reading
        # (kind 0) or revision (kind 1) pushed: the host's simulation records them,
        # Home Assistant's per-board state takes the live ones.
        self.on_reading = []
        self.health = health.Health(self, self.started)
        self.link.on_connect.append(self.health.connected)
        self.link.on_online.append(self.health.publish)
        if settings["revision_topic"]:
            slots = slots_for(settings["report_interval_s"])
            for ch in self.channels:
                ch.revisions = Revisions(ch.imp, slots, self._reviser(ch))
        if settings["ha_discovery"]:
            device = board.unique_id()
            self.link.on_connect.append(discovery.Announcer(settings, self.channels, device))
            ha = discovery.State(settings, self.channels)
            self.on_reading.append(ha.reading)
            self.link.on_online.append(ha.publish)
        self.outbox.ram = Outbox(capacity_for(settings["queue_size"], board.heap_free(), self.log), self.log)
        self._wdt = None
        self._next_report = 0
        self._led = None

    def boot(self):
        self._wdt = self.board.watchdog(self.s["watchdog_ms"])
        boot = self.started
        boot.keep_meta(0, False)
        for ch in self.channels:
            ch.store.load()
            word = boot.word(ch.index)
            if word is not None:
                ch.store.restore(word)
            if ch.keeper is not None:
                ch.keeper.sync(ch.store.saved, ch.store.base)
            ch.attach()
            self.log("channel %d: GP%d, %d imp/kWh, series '%s', %d pulses stored" % (
                ch.index, ch.spec["pin"], ch.imp, ch.series, ch.store.base))
        self.outbox.load(self.outbox.files.free_blocks(self.outbox.dir), self.feed)
        for ch in self.channels:
            # Pulses counted before a power cut and spilled with a reading, but
            # not yet in the energy file: flash has them after all.
            low = self.outbox.last_pulses.get(ch.index)
            if low is not None:
                gap = ch.store.lift(nearest(low, ch.store.base))
                if gap:
                    self.log("energy: channel %d: +%d pulses from the queue on flash" % (ch.index, gap))
        if boot.cause == 1:
            # Maybe a reset loop: put every reading on flash until the board has
            # stayed up 10 minutes, so the next reset loses none.
            self.outbox.flush_age_ms = 0
        self.log("boot: %s, reset %d since power-on; %d readings lost in RAM, %d unstamped" % (
            ("power-on", "watchdog reset", "soft reset")[boot.cause], boot.resets, boot.lost, boot.unstamped))
        now = self.mono.now_us()
        for ch in self.channels:
            ch.estimator.start(now)
            if ch.revisions is not None:
                ch.revisions.start(now)
        self._next_report = now + self.interval_us
        self.log("boot: host '%s', topic '%s', every %d s" % (
            self.s["hostname"], self.s["mqtt_topic"], self.s["report_interval_s"]))

    def feed(self):
        self._wdt.feed()

    def step(self):
        self._wdt.feed()
        now = self.mono.now_us()
        for ch in self.channels:
            ch.ingest(self.mono, now)
        if now >= self._next_report:
            self._report(now)
        now_ms = now // 1000
        for ch in self.channels:
            if ch.store.due(now_ms):
                total = ch.total()
                if ch.keeper is not None:
                    ch.keeper.sync(total, ch.store.base)  # a reset mid-save keeps the total
                ch.store.save(total, now_ms)
        self.link.step(now_ms, self.feed)
        if self.outbox.flush_age_ms == 0 and now_ms > 600000:
            self.outbox.flush_age_ms = FLUSH_AGE_MS
        self.outbox.tick(self.mono.now_ms(), self.link.state == "ONLINE")
        self.keep()
        self._show(self.mono.now_ms())
        wait = self.idle_ms()
        return wait if wait < LOOP_MS else LOOP_MS

    def _reviser(self, ch):
        """A channel's revisions go into the outbox behind its live readings."""
        def revise(end_ms, watts, total):
            now = ch.total()
            total = now - ((now - total) & 0xFFFFFFFF)
            self.outbox.push(ch.index, end_ms, watts, total, 1)
            for hook in self.on_reading:
                hook(ch.index, end_ms, watts, total, 1)
        return revise

    def idle_ms(self):
        """Milliseconds until the next report window closes; 0 while the link
        is part-way through connecting (each of its steps is one bounded
        operation, and the next may follow at once)."""
        if self.link.state == "BROKER":
            return 0
        wait = (self._next_report - self.mono.now_us()) // 1000
        return wait if wait > 0 else 0

    def _report(self, now):
        now_ms = now // 1000
        for ch in self.channels:
            watts = ch.estimator.close(now)
            total = ch.total()
            self.outbox.push(ch.index, now_ms, watts, total)
            self.readings += 1
            for hook in self.on_reading:
                hook(ch.index, now_ms, watts, total, 0)
            if ch.revisions is not None:
                ch.revisions.closed(now, watts, total)
        self._next_report += self.interval_us
        if self._next_report <= now:
            # The loop was held up past a whole window: realign, skip none.
            self._next_report = now + self.interval_us

    def _show(self, now_ms):
        if not self.s["status_led"]:
            return
        state = self.link.state
        if state == "ONLINE" and self.outbox.size > len(self.channels):
            state = "OFFLINE"
        on = status.lit(state, now_ms)
        if on != self._led:
            self.board.led(on)
            self._led = on

    def raise_floor(self, floors):
        """At connect: {channel: (unix s, pulses)} of the newest readings the
        broker holds from this board. Nothing at or before them is published
        again, and no total below them."""
        for ch in self.channels:
            f = floors.get(ch.index)
            if f is None:
                continue
            self.outbox.raise_floor(ch.index, f[0], f[1])
            gap = ch.store.lift(f[1])
            if gap:
                self.outbox.ram.lift(ch.index, gap)
                self.log("energy: channel %d: +%d pulses published before the restart but not on flash" % (
                    ch.index, gap))

    def keep(self):
        """Bring the scratch registers up to date (no flash)."""
        for ch in self.channels:
            if ch.keeper is not None:
                ch.keeper.sync(ch.store.saved, ch.store.base)
        self.started.keep_meta(self.outbox.ram.size, self.wall.synced)

    def shutdown(self):
        """Ctrl-C (before a soft reset or a redeploy): readings to flash, totals kept."""
        if self.wall.synced and self.outbox.ram.size:
            self.outbox.flush()
        self.outbox.files.close()
        self.keep()

    def run(self):
        self.boot()
        try:
            while True:
                self.board.sleep_ms(self.step())
        except KeyboardInterrupt:
            self.shutdown()
            raise


def fail_forever(board, problems):
    """Show configuration problems on the REPL and blink; never reboot-loop."""
    for p in problems:
        board.log("config: " + p)
    board.log("config: fix lib/secrets.py and reset the board")
    t = 0
    while True:
        board.led(status.lit("CONFIG_ERROR", t))
        board.sleep_ms(100)
        t += 100
        if t % 30000 == 0:
            for p in problems:
                board.log("config: " + p)


def checked(secrets):
    """config.from_module(secrets), then the checker leaves the heap: its code
    and tables (~14 KB, bench/heap.py) are needed once per boot, and the
    queue is sized from what stays free."""
    import sys
    import config
    got = config.from_module(secrets)
    if sys.modules.get("config") is config:
        del sys.modules["config"]
    return got


def main(board):
    board.led(True)
    try:
        import secrets
    except ImportError:
        fail_forever(board, ["lib/secrets.py is missing: copy lib/secrets.example.py and fill it in"])
    except Exception as e:
        fail_forever(board, ["lib/secrets.py does not load: %r" % (e,)])
    settings, errors, warnings = checked(secrets)
    for w in warnings:
        board.log("config: " + w)
    if errors:
        fail_forever(board, errors)
    App(board, settings).run()
