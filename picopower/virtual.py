"""A virtual Pico W: the firmware's board layer on a PC, on a virtual clock.

`VirtualBoard` implements the interface of board/lib/board.py. Time is
virtual microseconds that only move when the driver says so; meter pulses
are edges fired into the firmware's own interrupt handler at their exact
instants (LED on at the pulse, off `width_us` later), as the hardware would.
Wi-Fi, NTP and the broker can be switched off and on to inject faults. The
MQTT client is whatever `mqtt_factory` returns: a recorder for `replay`, a
`picopower.mqtt.Client` to a real broker for `simulate` and the tests.

Resets and power cuts: `restart("watchdog" | "soft" | "power")` drops the
firmware's RAM (make a new App) and keeps the data folder, as flash is kept;
the watchdog SCRATCH0-3 registers survive all but a power cut. `cut_at = N`
cuts the power during the Nth flash operation from then on (PowerCut is
raised out of the firmware, a write leaves a torn half).
"""

import heapq
import os

from picopower.errors import Invalid
from picopower.firmware import app, config
from picopower.firmware import files as files_module

App = app.App

MASK = (1 << 30) - 1


class PulseSource:
    """Edges of one meter: an iterator of pulse instants in virtual µs."""

    def __init__(self, times_us, width_us=30000, active_level=0, bounce_us=()):
        self._times = iter(times_us)
        self.width_us = width_us
        self.active = active_level
        self.bounce = tuple(bounce_us)  # extra edge pairs after each pulse start
        self.pending = []  # heap of (t_us, level)
        self._pull()

    def _pull(self):
        t = next(self._times, None)
        if t is None:
            return
        heapq.heappush(self.pending, (t, self.active))
        heapq.heappush(self.pending, (t + self.width_us, 1 - self.active))
        for b in self.bounce:
            heapq.heappush(self.pending, (t + b, 1 - self.active))
            heapq.heappush(self.pending, (t + b + 200, self.active))
        self._next_start = t

    def next_edge(self):
        return self.pending[0][0] if self.pending else None

    def pop(self):
        t, level = heapq.heappop(self.pending)
        if level == self.active and t == self._next_start:
            self._pull()
        return t, level


class _Pin:
    def __init__(self, level):
        self.level = level

    def value(self):
        return self.level


class RecordingClient:
    """An always-up MQTT client that keeps what is published. With a
    `retained` dict shared across clients it is also the broker's store of
    retained messages, which outlives the board's resets and power cuts."""

    def __init__(self, sink, retained=None):
        self.sink = sink
        self.store = retained

    def connect(self):
        pass

    def publish(self, topic, payload, retain=False, qos=1):
        text = payload if isinstance(payload, str) else bytes(payload).decode()
        if retain and self.store is not None:
            self.store[topic] = text
        self.sink(topic, text, retain)

    def retained(self, topic):
        """The retained message on `topic` (bytes), or None."""
        if self.store is None or topic not in self.store:
            return None
        return self.store[topic].encode()

    def ping(self):
        pass

    def close(self):
        pass


class PowerCut(BaseException):
    """Raised by a flash operation the virtual power cut interrupts. A
    BaseException, so the firmware's own error handling cannot swallow it."""


class VirtualFiles(files_module.Files):
    """The firmware's flash-file operations, counted, with a power cut at the
    `cut_at`-th one: a write then leaves a torn half (harsher than littlefs,
    which keeps the last synced state), a rename or remove does not happen."""

    def __init__(self, board):
        self.board = board
        self.ops = 0

    def _op(self):
        self.ops += 1
        b = self.board
        if b.cut_at is not None and self.ops >= b.cut_at:
            b.cut_at = None
            return True
        return False

    def write(self, path, data):
        if self._op():
            with open(path, "wb") as f:
                f.write(bytes(data)[:len(data) // 2])
            raise PowerCut("power cut writing %s" % path)
        super().write(path, data)

    def replace(self, path, data):
        tmp = path + ".tmp"
        if self._op():
            with open(tmp, "wb") as f:
                f.write(bytes(data)[:len(data) // 2])
            raise PowerCut("power cut writing %s" % tmp)
        with open(tmp, "wb") as f:
            f.write(data)
        if self._op():
            raise PowerCut("power cut renaming %s" % tmp)
        os.rename(tmp, path)

    def append(self, path, data):
        if self._op():
            with open(path, "ab") as f:
                f.write(bytes(data)[:len(data) // 2])
            raise PowerCut("power cut appending to %s" % path)
        super().append(path, data)

    def remove(self, path):
        if self._op():
            raise PowerCut("power cut removing %s" % path)
        super().remove(path)


class VirtualBoard:
    def __init__(self, sources, mqtt_factory, data_dir, start_unix_s, board_id="0", log=None, uid=None):
        self.us = 0
        self.sources = list(sources)
        self.mqtt_factory = mqtt_factory
        self.data_dir = data_dir
        self.start_unix_ms = int(round(start_unix_s * 1000))
        self.board_id = board_id
        self.uid = uid or "e6614103e7" + board_id  # machine.unique_id(), hexlified
        self.wifi_up = True
        self.ntp_up = True
        self.led_on = False
        self.logs = []
        self._log = log
        self._handlers = {}
        self._wifi_on = False
        # Survive a watchdog or soft reset, cleared by a power cut.
        self.scratch = [0, 0, 0, 0]
        self.cause = 2
        self.heap = 180000  # gc.mem_free() of a Pico W after boot, roughly
        self.cut_at = None  # flash operation (counted from now) that a power cut interrupts
        self.fs = VirtualFiles(self)
        os.makedirs(data_dir, exist_ok=True)

    # --- the board interface -------------------------------------------
    def ticks_us(self):
        return self.us & MASK

    def ticks_ms(self):
        return (self.us // 1000) & MASK

    def sleep_ms(self, ms):
        self.advance(self.us + ms * 1000)

    def log(self, text):
        line = "%d %s" % (self.us // 1000000, text)
        self.logs.append(line)
        if self._log:
            self._log(self.board_id, line)

    def unique_id(self):
        return self.uid

    def reset(self):
        raise SystemExit("virtual board reset")

    def data_path(self, name):
        return os.path.join(self.data_dir, name)

    def pulse_input(self, pin, pull, edge, both_edges, handler):
        self._handlers[len(self._handlers)] = (handler, both_edges)
        return _Pin(1)

    def wifi_start(self, ssid, password):
        self._wifi_on = True

    def wifi_status(self):
        return 3 if (self._wifi_on and self.wifi_up) else (1 if self._wifi_on else 0)

    def wifi_stop(self):
        self._wifi_on = False

    def resolve(self, host):
        if not self.wifi_up:
            raise OSError("EHOSTUNREACH: no network")
        return host

    def ntp_unix_ms(self, host):
        if not (self.wifi_up and self.ntp_up):
            raise OSError("ETIMEDOUT: no NTP answer from %s" % host)
        return self.unix_ms()

    def mqtt_client(self, settings, client_id, will_topic):
        if not self.wifi_up:
            raise OSError("EHOSTUNREACH: no network")
        return self.mqtt_factory(client_id, will_topic)

    def led(self, on):
        self.led_on = on

    def watchdog(self, ms):
        return self

    def feed(self):
        pass

    def scratch_read(self, i):
        return self.scratch[i]

    def scratch_write(self, i, value):
        self.scratch[i] = value & 0xFFFFFFFF

    def reset_cause(self):
        return self.cause

    def heap_free(self):
        return self.heap

    def wifi_rssi(self):
        return -58 if self.wifi_status() == 3 else 0

    def files(self):
        return self.fs

    def mqtt_retained(self, client, topic):
        get = getattr(client, "retained", None)
        return get(topic) if get is not None else None

    # --- the driver's side -------------------------------------------
    def restart(self, kind):
        """The board restarts: "watchdog", "soft" (also machine.reset()) or
        "power" (a cut: the scratch registers are cleared). RAM is gone (make
        a new App), flash stays, the meter goes on, the clock does not jump."""
        if kind not in ("watchdog", "soft", "power"):
            raise ValueError("restart kind: watchdog, soft or power")
        self._handlers = {}
        self._wifi_on = False
        self.cut_at = None
        self.cause = 1 if kind == "watchdog" else 2
        if kind == "power":
            self.scratch = [0, 0, 0, 0]

    def unix_ms(self):
        return self.start_unix_ms + self.us // 1000

    def next_edge(self):
        times = [s.next_edge() for s in self.sources]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def advance(self, t_us):
        """Move the clock to `t_us`, firing every edge on the way in order."""
        while True:
            best = None
            for i, src in enumerate(self.sources):
                t = src.next_edge()
                if t is not None and t <= t_us and (best is None or t < best[0]):
                    best = (t, i)
            if best is None:
                break
            t, i = best
            t_edge, level = self.sources[i].pop()
            if t_edge > self.us:
                self.us = t_edge
            handler, both = self._handlers.get(i, (None, False))
            if handler is None:
                continue
            if both or level == self.sources[i].active:
                handler(_Pin(level))
        if t_us > self.us:
            self.us = t_us


def settings_for(values):
    """Validated settings for a virtual board (Wi-Fi names not needed)."""
    base = {"WIFI_SSID": "virtual", "MQTT_SERVER": "127.0.0.1", "WATCHDOG_MS": 0}
    base.update(values)
    settings, errors, _ = config.check(base)
    if errors:
        raise Invalid("; ".join(errors))
    return settings


def make_app(board, settings):
    application = App(board, settings)
    application.boot()
    return application


def run_until(app, board, t_us, step_ms=500):
    """Run the firmware loop until the virtual clock reaches `t_us`, waking at
    least every `step_ms` (the board's loop runs far more often; the firmware
    only needs a pass before each report and within ~8.9 min of each pulse)."""
    while board.us < t_us:
        app.step()
        # idle_ms() floors: under 1 ms to the next report it says 0, so wake 1 ms
        # on (not 1 us, which took a thousand passes a report).
        board.advance(board.us + max(1, min(app.idle_ms(), step_ms)) * 1000)
