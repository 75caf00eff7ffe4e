"""A virtual Pico W: the firmware's board layer on a PC, on a virtual clock.

`VirtualBoard` implements the interface of board/lib/board.py. Time is
virtual microseconds that only move when the driver says so; meter pulses
are edges fired into the firmware's own interrupt handler at their exact
instants (LED on at the pulse, off `width_us` later), as the hardware would.
Wi-Fi, NTP and the broker can be switched off and on to inject faults. The
MQTT client is whatever `mqtt_factory` returns: a recorder for `replay`, a
paho-mqtt connection to a real broker for `simulate`.
"""

import heapq
import os
import ssl
import threading

from picopower.firmware import app, config

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
    """An always-up MQTT client that keeps what is published."""

    def __init__(self, sink):
        self.sink = sink

    def connect(self):
        pass

    def publish(self, topic, payload, retain=False, qos=1):
        self.sink(topic, payload if isinstance(payload, str) else bytes(payload).decode(), retain)

    def ping(self):
        pass

    def close(self):
        pass


class PahoClient:
    """The board's MQTT client interface over paho-mqtt, synchronous like umqtt."""

    TIMEOUT_S = 5.0

    def __init__(self, url, client_id, will_topic):
        import paho.mqtt.client as mqtt
        self.url = url
        self._connected = threading.Event()
        self._rc = None
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if url.username:
            c.username_pw_set(url.username, url.password)
        if url.tls:
            c.tls_set(ca_certs=url.ca_file, cert_reqs=ssl.CERT_REQUIRED if url.ca_file else ssl.CERT_NONE)
            if not url.ca_file:
                c.tls_insecure_set(True)
        c.will_set(will_topic, b"offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self.c = c

    def _on_connect(self, client, userdata, flags, reason, props):
        self._rc = reason
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason, props):
        self._connected.clear()

    def connect(self):
        try:
            self.c.connect(self.url.host, self.url.port, keepalive=60)
        except (OSError, ValueError, ssl.SSLError) as e:
            raise OSError("cannot reach %s: %s" % (self.url.safe, e)) from None
        self.c.loop_start()
        if not self._connected.wait(self.TIMEOUT_S):
            self.close()
            raise OSError("no answer from %s in %.0f s" % (self.url.safe, self.TIMEOUT_S))
        if self._rc is not None and self._rc.is_failure:
            self.close()
            raise OSError("%s refused the connection: %s" % (self.url.safe, self._rc))

    def publish(self, topic, payload, retain=False, qos=1):
        if not self._connected.is_set():
            raise OSError("not connected to %s" % self.url.safe)
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(self.TIMEOUT_S)
        except (RuntimeError, ValueError) as e:
            raise OSError("publish failed: %s" % e) from None
        if not info.is_published():
            raise OSError("no PUBACK from %s in %.0f s" % (self.url.safe, self.TIMEOUT_S))

    def ping(self):
        pass  # paho's network thread keeps the connection alive

    def close(self):
        try:
            self.c.disconnect()
        except Exception:
            pass
        self.c.loop_stop()


class VirtualBoard:
    def __init__(self, sources, mqtt_factory, data_dir, start_unix_s, board_id="0", log=None):
        self.us = 0
        self.sources = list(sources)
        self.mqtt_factory = mqtt_factory
        self.data_dir = data_dir
        self.start_unix_ms = int(round(start_unix_s * 1000))
        self.board_id = board_id
        self.wifi_up = True
        self.ntp_up = True
        self.led_on = False
        self.logs = []
        self._log = log
        self._handlers = {}
        self._wifi_on = False
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
        return "e6614103e7" + self.board_id

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

    # --- the driver's side -------------------------------------------
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
        raise ValueError("; ".join(errors))
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
        board.advance(board.us + min(app.idle_ms(), step_ms) * 1000 + 1)
