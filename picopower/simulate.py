"""Virtual Pico Ws against a real MQTT broker: the engine of `picopower simulate`.

Each `Meter` is the firmware's own `App` (board/lib/app.py) on a
`VirtualBoard`: a virtual clock, meter pulses fired into the real interrupt
handler at the exact instants a load profile makes (`loads.Profile`), and an
MQTT client that speaks to a real broker. `Simulation` runs any number of them
in one thread: a heap of boards ordered by their next wake-up on one virtual
timeline, paced against the wall clock at `speed` (1 = real time, 0 = as fast
as possible).

Each board talks through `picopower.mqtt.Client` (the host's one MQTT
client, the tests' too) driven by hand, not by a thread per client: every
connection's socket sits in one `Net` selector, read when it has data, and its
keepalive is serviced about once a wall second. `publish()` is synchronous
like the board's umqtt (it returns once the broker's PUBACK is in, else raises
`OSError`), so the firmware's outbox, backoff and queue-while-offline run
exactly as on the board. Board ids (and so MQTT client ids and Home Assistant
unique_ids) are new per run, or kept with `data_dir`.

Limits: one process, one thread. A QoS 1 publish is one loopback round trip
(~0.1 ms), so a burst of N queued readings costs N round trips; a broker
that accepts TCP but never answers holds the whole simulation for the 5 s
timeout of each connect or publish.
"""

import heapq
import math
import os
import secrets
import shutil
import tempfile
import time

from picopower.errors import Invalid
from picopower.firmware import discovery
from picopower.loads import J_PER_KWH, Profile, household_day
from picopower.mqtt import Client, Net
from picopower.urls import parse_broker
from picopower.virtual import PulseSource, VirtualBoard, make_app, settings_for

ONLINE_STEP_MS = 5000   # longest sleep of an online board with nothing queued (< 8.9 min tick wrap)
BUSY_STEP_MS = 1000     # longest sleep of a board that is connecting, offline or has readings queued
GOLDEN = 0.6180339887498949


class Reading:
    """A reading as the firmware took it: host, unix s, watts, pulse total."""

    __slots__ = ("host", "ts", "watts", "pulses", "local_s")

    def __init__(self, host, ts, watts, pulses, local_s):
        self.host = host
        self.ts = ts
        self.watts = watts
        self.pulses = pulses
        self.local_s = local_s

    def __repr__(self):
        return "Reading(%s, %d, %.1f W, %d pulses)" % (self.host, self.ts, self.watts, self.pulses)


class Meter:
    """One virtual board: its profile, VirtualBoard, App and what it took and sent.

    `offset_s` is when it boots on the simulation's timeline; its own clock
    (`board.us`) starts at 0 there and the profile's first step is at its boot.
    """

    def __init__(self, sim, index, host, profile, phase, offset_s, settings, data_dir, uid):
        self.index = index
        self.host = host
        self.profile = profile
        self.phase = phase
        self.offset_us = int(round(offset_s * 1e6))
        self.taken = []
        self.sent = 0  # readings published on MQTT_TOPIC (revisions and the rest not counted)
        self.settings = settings
        t0 = profile.times[0]
        # Every channel (CHANNELS) meters the same load, each at its own constant and phase.
        sources = [PulseSource(int(round((t - t0) * 1e6))
                               for t in profile.pulses(ch["imp_per_kwh"], (phase + k * GOLDEN) % 1.0))
                   for k, ch in enumerate(settings["channels"])]
        self.board = VirtualBoard(sources, self._client, data_dir, sim.start_unix_s + offset_s,
                                  board_id=str(index + 1), log=sim._board_log, uid=uid)
        self._sim = sim
        self.app = make_app(self.board, settings)
        self.base_pulses = self.app.channels[0].store.base
        self.app.on_reading.append(self._taken)

    def _client(self, client_id, will_topic):
        sim = self._sim
        return Client(sim.url, client_id, will_topic, self.settings["mqtt_keepalive"], net=sim.net,
                      on_publish=self._published)

    def _published(self, topic, payload):
        if topic != self.settings["mqtt_topic"]:
            return
        self.sent += 1
        self._sim._on_data(self, payload if isinstance(payload, str) else bytes(payload).decode())

    def _taken(self, channel, mono_ms, watts, pulses, kind):
        if kind == 0:
            self.taken.append(Reading(self.host, (self.board.start_unix_ms + mono_ms) // 1000, watts, pulses,
                                      mono_ms / 1000.0))

    @property
    def now_us(self):
        """The simulation time this board has reached."""
        return self.offset_us + self.board.us

    def next_wake_us(self):
        app = self.app
        idle = app.idle_ms()
        busy = app.link.state != "ONLINE" or app.outbox.size
        cap = BUSY_STEP_MS if busy else ONLINE_STEP_MS
        # Rounded up to the next ms: a report is closed at most 1 ms late, never
        # approached in 1 µs steps.
        return self.now_us + ((idle if idle < cap else cap) + 1) * 1000

    def step(self, until_us):
        """Run the board's clock to `until_us` (simulation time), then one loop pass."""
        self.board.advance(until_us - self.offset_us)
        self.app.step()

    # --- figures ---------------------------------------------------------------
    @property
    def imp(self):
        return self.settings["imp_per_kwh"]

    def pulses(self):
        """Pulses the firmware counted in this run."""
        return self.app.channels[0].total() - self.base_pulses

    def energy_kwh(self):
        """The firmware's energy total (as in its messages)."""
        return self.app.channels[0].total() / self.imp

    def run_kwh(self):
        """The firmware's count for this run, in kWh."""
        return self.pulses() / self.imp

    def true_kwh(self, local_s=None):
        """Ground truth: the profile's energy from boot to `local_s` (default now)."""
        if local_s is None:
            local_s = self.board.us / 1e6
        return self.profile.energy_to(self.profile.times[0] + local_s) / J_PER_KWH

    @property
    def readings(self):
        return self.app.readings

    @property
    def queued(self):
        return self.app.outbox.size


class Simulation:
    """N virtual boards on one virtual timeline against a real broker.

        sim = Simulation("mqtt://127.0.0.1:1883", "power/house", profile=Profile.constant(1200),
                         meters=3, speed=0)
        sim.run(120)                 # two virtual minutes
        sim.meters[0].board.wifi_up = False
        sim.run(300); sim.drain(); sim.close()

    `profile` is one Profile for every board or a callable index -> Profile
    (default: a household day, a different one per board). Boards boot spread
    over the first report interval and start mid-pulse at different phases,
    so a fleet does not publish in lockstep. Timestamps are virtual unix times
    from `start_unix_s` (default: now).
    """

    def __init__(self, broker, topic, profile=None, meters=1, host="picopower", series="power",
                 imp_per_kwh=1000, interval_s=10, speed=1.0, start_unix_s=None, data_dir=None,
                 ca_file="", extra=None, stagger=True, log=None, on_data=None):
        self.url = parse_broker(broker, ca_file) if isinstance(broker, str) else broker
        if self.url.tls and self.url.ca_file and not os.path.isfile(self.url.ca_file):
            raise Invalid("--ca-file %s: no such file" % self.url.ca_file)
        if meters < 1:
            raise Invalid("--meters must be at least 1, got %d" % meters)
        if not speed >= 0:
            raise Invalid("--speed must be 0 (as fast as possible) or a positive number, got %r" % speed)
        self.speed = speed if math.isfinite(speed) else 0
        self.start_unix_s = round(time.time() if start_unix_s is None else start_unix_s, 3)
        self.net = Net()
        self.on_data = on_data
        self._log = log
        self.first_error = None  # the first failed broker connect (one line)
        self.last_error = None   # the latest broker failure (connect or publish)
        self.ever_connected = False
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="picopower-sim-")
        self.run_id = run_id(self.data_dir)
        self.meters = []
        self.now_us = 0
        self.behind_s = 0.0  # the most the virtual clock has lagged its wall-clock schedule
        self._wall0 = None
        self._virt0 = 0
        if profile is None:
            profile = lambda i: household_day(seed=i + 1)  # noqa: E731
        for i in range(meters):
            prof = profile(i) if callable(profile) else profile
            name = host if meters == 1 else "%s-%d" % (host, i + 1)
            peak = max(prof.watts)
            values = {"MQTT_TOPIC": topic, "HOSTNAME": name, "SERIESNAME": series,
                      "IMP_PER_KWH": imp_per_kwh, "REPORT_INTERVAL_S": interval_s,
                      "MQTT_SERVER": self.url.host, "MQTT_PORT": self.url.port,
                      "MQTT_USER": self.url.username, "MQTT_PASS": self.url.password,
                      "MQTT_TLS": self.url.tls,
                      "MAX_POWER_W": max(24000, min(1000000, int(math.ceil(peak * 1.25))))}
            values.update(extra or {})
            settings = settings_for(values)
            phase = 0.5 if meters == 1 else (0.5 + i * GOLDEN) % 1.0
            offset = (interval_s * i / meters) if stagger else 0.0
            self.meters.append(Meter(self, i, name, prof, phase, offset, settings,
                                     os.path.join(self.data_dir, name), "%s%06x" % (self.run_id, i + 1)))
        self._heap = [(m.offset_us, m.index) for m in self.meters]
        heapq.heapify(self._heap)

    # --- hooks -----------------------------------------------------------------
    def _board_log(self, board_id, line):
        if self._log:
            self._log(board_id, line)

    def _on_data(self, meter, payload):
        self.ever_connected = True
        if self.on_data is not None:
            self.on_data(meter, payload)

    # --- running ---------------------------------------------------------------
    @property
    def now_s(self):
        return self.now_us / 1e6

    def _pace(self, t_us, wall_end=None, tick=None):
        """Wait, servicing the network, until the wall clock allows virtual `t_us`.
        Returns False if `wall_end` (monotonic s) comes first. `tick()` is called
        while waiting, at most every 50 ms."""
        if self._wall0 is None:
            self._wall0 = time.monotonic()
            self._virt0 = self.now_us
        if self.speed <= 0:
            self.net.poll(0)
            return True
        due = self._wall0 + (t_us - self._virt0) / 1e6 / self.speed
        while True:
            now = time.monotonic()
            left = due - now
            if left <= 0:
                if -left > self.behind_s:
                    self.behind_s = -left
                self.net.poll(0)
                return True
            if wall_end is not None and now >= wall_end:
                return False
            # the virtual clock shown while waiting moves with the wall clock
            self.now_us = max(self.now_us, min(t_us, self._virt0 + int((now - self._wall0) * self.speed * 1e6)))
            if tick is not None:
                tick()
            wait = min(left, 0.05)
            if wall_end is not None:
                wait = min(wait, max(0.0, wall_end - now))
            self.net.poll(wait)

    def step(self):
        """Wake the board due next (after pacing): move its clock there, one loop pass."""
        self._pace(self._heap[0][0])
        self._step_due()

    def _step_due(self):
        t, i = self._heap[0]
        m = self.meters[i]
        self.now_us = max(self.now_us, t)
        state = m.app.link.state
        m.step(t)
        after = m.app.link.state
        if after == "ONLINE" and state != "ONLINE":
            self.ever_connected = True
        elif after == "OFFLINE" and state in ("BROKER", "ONLINE"):
            self.last_error = _last_failure(m.board.logs)
            if self.first_error is None and state == "BROKER":
                self.first_error = self.last_error
        heapq.heapreplace(self._heap, (m.next_wake_us(), i))

    def run(self, until_s=None, wall_s=None, progress=None, every_s=1.0):
        """Run the virtual timeline to `until_s` seconds (None: forever); returns
        False if `wall_s` wall seconds ran out first. `progress(sim)` is called
        about every `every_s` wall seconds."""
        # A report due exactly at `until_s` is included (boards wake rounded up to the ms).
        until_us = None if until_s is None else int(round(until_s * 1e6)) + 1000
        wall_end = None if wall_s is None else time.monotonic() + wall_s
        next_progress = [time.monotonic() + every_s]

        def tick():
            now = time.monotonic()
            if progress is not None and now >= next_progress[0]:
                next_progress[0] = now + every_s
                progress(self)
            return wall_end is None or now < wall_end

        checks = 0
        while until_us is None or self._heap[0][0] <= until_us:
            if not self._pace(self._heap[0][0], wall_end, tick):
                return False
            self._step_due()
            checks += 1
            if (checks & 63 == 0 or self.speed > 0) and not tick():
                return False
        if until_us is not None:
            until_us -= 1000
            if until_us > self.now_us:
                if not self._pace(until_us, wall_end, tick):
                    return False
                self.now_us = until_us
            for m in self.meters:  # every board's clock (and its meter's pulses) up to now
                if m.now_us < self.now_us:
                    m.board.advance(self.now_us - m.offset_us)
        return True

    def drain(self, max_s=300, wall_s=30.0, progress=None):
        """Keep running, as fast as possible, until every board's queue is empty
        (at most `max_s` more virtual seconds or `wall_s` wall seconds).
        Returns True when nothing is left queued."""
        speed, self.speed = self.speed, 0
        self._wall0 = None
        try:
            end_us = self.now_us + int(max_s * 1e6)
            wall_end = time.monotonic() + wall_s
            next_progress = time.monotonic() + 1.0
            while self.queued():
                if self._heap[0][0] > end_us or time.monotonic() > wall_end:
                    return False
                self._pace(self._heap[0][0])
                self._step_due()
                if progress is not None and time.monotonic() >= next_progress:
                    next_progress = time.monotonic() + 1.0
                    progress(self)
            return True
        finally:
            self.speed = speed
            self._wall0 = None

    def close(self, say_offline=True):
        """Disconnect every board (publishing its retained 'offline' as its last
        will would) and remove the temporary data directory. Boards whose ids
        die with that directory also delete their Home Assistant discovery
        configs, so runs leave no orphaned devices behind."""
        for m in self.meters:
            client = m.app.link.client
            if client is None:
                continue
            if say_offline and getattr(client, "connected", False):
                try:
                    if self._own_dir and m.settings["ha_discovery"]:
                        for topic, cfg in discovery.configs(m.settings, m.app.channels, m.board.unique_id()):
                            if cfg is not None:
                                client.publish(topic, b"", True, 1)
                    client.publish(m.settings["availability_topic"], b"offline", True, 1)
                except OSError:
                    pass
            client.close()
            m.app.link.client = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- figures ---------------------------------------------------------------
    def readings(self):
        return sum(m.app.readings for m in self.meters)

    def published(self):
        return sum(m.sent for m in self.meters)

    def queued(self):
        return sum(m.app.outbox.size for m in self.meters)

    def dropped(self):
        return sum(m.app.outbox.dropped for m in self.meters)

    def online(self):
        return sum(1 for m in self.meters if m.app.link.state == "ONLINE")

    def taken(self):
        """Every reading taken so far, all boards."""
        return [r for m in self.meters for r in m.taken]


RUN_ID_FILE = "board-ids"


def run_id(data_dir):
    """Ten hex digits that start every board id (a Pico's is 16) in this data
    directory: new per run, so two simulations' boards never share an id (the
    MQTT client id and Home Assistant's unique_ids are made of it); kept in the
    directory, so a run on the same --data-dir resumes the same boards."""
    path = os.path.join(data_dir, RUN_ID_FILE)
    try:
        with open(path) as f:
            text = f.read().strip()
        if len(text) == 10 and all(c in "0123456789abcdef" for c in text):
            return text
    except FileNotFoundError:
        pass
    text = secrets.token_hex(5)
    os.makedirs(data_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")
    return text


def _last_failure(logs):
    for line in reversed(logs[-5:]):
        parts = line.split(" ", 1)
        if len(parts) == 2 and parts[1].startswith(("broker ", "publish to ")):
            text = parts[1].split("; retrying", 1)[0]
            return text.split(": ", 1)[1] if ": " in text else text
    return None


def format_clock(seconds):
    seconds = int(seconds)
    d, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return ("%dd " % d if d else "") + "%02d:%02d:%02d" % (h, m, s)


def progress_line(sim):
    return "virtual %s  readings %d  published %d  queued %d  online %d/%d" % (
        format_clock(sim.now_s), sim.readings(), sim.published(), sim.queued(), sim.online(), len(sim.meters))


def summary_lines(sim, limit=10):
    out = ["simulated %s on %d board%s: %d readings taken, %d published, %d still queued, %d dropped" % (
        format_clock(sim.now_s), len(sim.meters), "" if len(sim.meters) == 1 else "s",
        sim.readings(), sim.published(), sim.queued(), sim.dropped())]
    shown = sim.meters if len(sim.meters) <= limit else sim.meters[:limit]
    for m in shown:
        out.append("  %-20s %10.3f kWh counted (profile %.3f kWh), total %.3f kWh, %d readings, %d published" % (
            m.host, m.run_kwh(), m.true_kwh(), m.energy_kwh(), m.readings, m.sent))
    if len(shown) < len(sim.meters):
        counted = sum(m.run_kwh() for m in sim.meters)
        true = sum(m.true_kwh() for m in sim.meters)
        out.append("  ... %d more; all boards: %.3f kWh counted (profile %.3f kWh)" % (
            len(sim.meters) - len(shown), counted, true))
    return out


def load_profile(watts=None, path=None):
    """The profile for the command's flags (None: a household day per board)."""
    if watts is not None and path is not None:
        raise Invalid("give --watts or --profile, not both")
    if watts is not None:
        if not math.isfinite(watts) or watts < 0:
            raise Invalid("--watts must be a number >= 0, got %r" % watts)
        return Profile.constant(watts)
    if path is not None:
        return Profile.from_file(path)
    return None
